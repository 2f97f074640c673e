/* Bare-metal start-up for the STM32F405 (Cortex-M4F) that qemu-system-arm's netduinoplus2
 * emulates: the vector table at the start of flash, then a reset handler that enables the FPU
 * before any float instruction, copies .data from flash, zeroes .bss, opens the semihosting
 * handles (printf goes to QEMU's stdout) and runs newlib's constructors before main().
 * exit(main()) becomes QEMU's exit code through semihosting. */
#include <stdlib.h>

extern unsigned long _sidata[], _sdata[], _edata[], _sbss[], _ebss[], _estack[];
extern int main(void);
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);
extern void _exit(int status);

void Reset_Handler(void);
void Fault_Handler(void);
void _init(void);
void _fini(void);

/* A vector holds the initial stack pointer (an address) or a handler (a function). */
typedef union {
    void (*handler)(void);
    void *stack;
} vector_t;

__attribute__((section(".isr_vector"), used)) const vector_t vector_table[16] = {
    {.stack = _estack},        /* initial main stack pointer: top of RAM */
    {.handler = Reset_Handler}, {.handler = Fault_Handler}, /* NMI */
    {.handler = Fault_Handler}, /* HardFault */
    {.handler = Fault_Handler}, /* MemManage */
    {.handler = Fault_Handler}, /* BusFault */
    {.handler = Fault_Handler}, /* UsageFault */
    {.handler = 0}, {.handler = 0}, {.handler = 0}, {.handler = 0},
    {.handler = Fault_Handler}, /* SVCall */
    {.handler = Fault_Handler}, /* DebugMonitor */
    {.handler = 0},
    {.handler = Fault_Handler}, /* PendSV */
    {.handler = Fault_Handler}, /* SysTick (never enabled as an interrupt here) */
};

/* newlib's __libc_init_array calls these; nothing to do on this target. */
void _init(void) {}
void _fini(void) {}

void Reset_Handler(void) {
    /* CP10 and CP11 full access (CPACR bits 20-23): the FPU, before any float instruction. */
    *(volatile unsigned long *)0xE000ED88UL |= 0xFUL << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    unsigned long *src = _sidata;
    for (unsigned long *dst = _sdata; dst < _edata;) {
        *dst++ = *src++;
    }
    for (unsigned long *dst = _sbss; dst < _ebss;) {
        *dst++ = 0;
    }
    initialise_monitor_handles();
    __libc_init_array();
    exit(main());
}

/* Any fault ends the run with a code the host recognises (no printf: the state may be bad). */
void Fault_Handler(void) { _exit(126); }
