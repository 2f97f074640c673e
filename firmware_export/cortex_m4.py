"""The generated C on a Cortex-M4F: cross-compile, measure flash/RAM, run under QEMU.

Target: the STM32F405 of a Crazyflie-class board, emulated by ``qemu-system-arm -M
netduinoplus2`` (1 MB flash at 0x08000000, 128 KB RAM at 0x20000000). ``cortex_m4/startup.c``
(vector table, FPU enable, .data/.bss, semihosting) and ``cortex_m4/stm32f405.ld`` make a bare
program; the test program is ``build.write_harness``'s main (self-test, a batch of observations
embedded at generation time, the action bits printed over semihosting, exit code = failures).

Flags: ``-mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard``, plus the host's strict
warnings (``-Wdouble-promotion`` matters here: the FPU is single precision only).

Footprint (``footprint``): ``arm-none-eabi-size`` of the policy object alone (with and without
the embedded golden pairs, ``-D<NAME>_NO_SELF_TEST``), the flash/RAM a firmware pays to link it
(a minimal program calling ``<name>_step_flat`` minus the same program without it, so newlib's
``tanhf``/``expf`` are counted), and the whole test program.

Speed: QEMU does not model cycle timing. Under ``-icount shift=0`` its virtual clock advances a
fixed time per guest instruction, so the harness's SysTick readings around ``<name>_step_flat``,
calibrated against a loop of a known number of instructions, give an *instruction count* per
step, not cycles: a real M4F at 168 MHz needs at least that many cycles, plus FPU/load latencies
and flash wait states.

The toolchain is Debian's (``install_toolchain.sh``); ``check_toolchain`` fails with one line
naming that script when a tool is missing.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np

from firmware_export.build import (
    EXTRA_WARNINGS,
    STRICT_FLAGS,
    BuildError,
    HarnessResult,
    compile_c,
    parse_harness_output,
    write_harness,
)
from firmware_export.c_export import QUANTIZATIONS, write_c
from policies.bundle import PolicyBundle

HERE = Path(__file__).resolve().parent
INSTALL_SCRIPT = HERE / "install_toolchain.sh"
STARTUP = HERE / "cortex_m4" / "startup.c"
LINKER_SCRIPT = HERE / "cortex_m4" / "stm32f405.ld"
CC, SIZE, QEMU = "arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"
ARCH_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard")
SECTION_FLAGS = ("-ffunction-sections", "-fdata-sections")  # lets --gc-sections drop the unused
LINK_FLAGS = (
    "--specs=rdimon.specs",  # newlib with semihosting: printf and exit reach the host
    "-nostartfiles",
    f"-T{LINKER_SCRIPT}",
    "-Wl,--gc-sections",
    "-Wl,--no-warn-rwx-segments",
)
QEMU_CMD = (
    QEMU,
    "-M",
    "netduinoplus2",
    "-nographic",
    "-monitor",
    "none",
    "-serial",
    "null",
    "-semihosting-config",
    "enable=on,target=native",
    "-icount",
    "shift=0",
)
FAULT_EXIT = 126  # startup.c's fault handler


class ToolchainMissing(RuntimeError):
    """arm-none-eabi-gcc, newlib or qemu-system-arm is not installed."""


def check_toolchain() -> None:
    """Raises ``ToolchainMissing`` (one line, naming the install script) if a tool is missing."""
    missing = [tool for tool in (CC, SIZE, QEMU) if shutil.which(tool) is None]
    if CC not in missing:
        specs = subprocess.run(
            [CC, "-print-file-name=rdimon.specs"], capture_output=True, text=True
        ).stdout.strip()
        if not Path(specs).is_absolute():
            missing.append("newlib (rdimon.specs)")
    if missing:
        raise ToolchainMissing(
            f"Cortex-M4 toolchain missing ({', '.join(missing)}): run "
            f"`bash firmware_export/install_toolchain.sh` (as root; it apt-get installs "
            f"gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)"
        )


def size(path: Path) -> dict[str, int]:
    """``{"text", "data", "bss", "flash", "ram"}`` bytes from ``arm-none-eabi-size`` (flash =
    text + data, the initial values of .data live in flash; ram = data + bss, static only)."""
    out = subprocess.run([SIZE, str(path)], capture_output=True, text=True, check=True).stdout
    text, data, bss = (int(x) for x in out.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss, "flash": text + data, "ram": data + bss}


def _cc(sources, out, flags, *, link=False) -> Path:
    extra = LINK_FLAGS if link else ("-c",)
    libs = ("-lm",) if link else ()
    return compile_c(sources, out, [*ARCH_FLAGS, *flags, *extra], cc=CC, libs=libs)


def _policy_flags(opt: str) -> list[str]:
    return [*(f for f in STRICT_FLAGS if f != "-O2"), opt, *EXTRA_WARNINGS, *SECTION_FLAGS]


def footprint(
    bundle: PolicyBundle,
    work_dir: str | Path,
    *,
    quantize: str = "float32",
    name: str = "policy",
    opt: str = "-O2",
) -> dict[str, dict[str, int]]:
    """Flash/RAM of the exported policy on the M4 (see the module docstring).

    Returns:
      ``{"object": size, "object_no_self_test": size, "linked": size}``, each a ``size()``
      dict; ``linked`` is the difference of two minimal programs (with and without the policy,
      no self-test), i.e. what linking the policy costs a firmware, libm included.
    """
    check_toolchain()
    work_dir = Path(work_dir)
    files = write_c(bundle, work_dir, quantize=quantize, name=name)
    flags = _policy_flags(opt)
    up = name.upper()
    obj = _cc([files["source"]], work_dir / f"{name}.o", flags)
    lean = _cc([files["source"]], work_dir / f"{name}_lean.o", [*flags, f"-D{up}_NO_SELF_TEST"])
    with_policy = work_dir / "min_with_policy.c"
    with_policy.write_text(
        f'#include "{name}.h"\n'
        f"static float obs[{up}_OBS_DIM];\n"
        "int main(void) {\n"
        f"    float action[{up}_ACTION_DIM];\n"
        f"    return {name}_step_flat(obs, action) + (action[0] > 0.0f);\n"
        "}\n"
    )
    without = work_dir / "min_without_policy.c"
    without.write_text("static float obs[4];\nint main(void) {\n    return obs[0] > 0.0f;\n}\n")
    startup = _cc([STARTUP], work_dir / "startup.o", flags)
    main_flags = [*flags, f"-I{work_dir}"]
    progs = {}
    for label, src in (("with", with_policy), ("without", without)):
        main_obj = _cc([src], work_dir / f"{src.stem}.o", main_flags)
        objs = [startup, main_obj, lean] if label == "with" else [startup, main_obj]
        progs[label] = size(_cc(objs, work_dir / f"{src.stem}.elf", flags, link=True))
    linked = {k: progs["with"][k] - progs["without"][k] for k in progs["with"]}
    return {"object": size(obj), "object_no_self_test": size(lean), "linked": linked}


def fitting_footprint(
    bundle: PolicyBundle, work_dir: str | Path, *, name: str = "policy"
) -> tuple[str, dict[str, dict[str, int]]]:
    """The first of float32 and int8 whose policy links into the STM32F405's flash, and its
    ``footprint``: ``(quantize, footprint)``. Raises ``BuildError`` when neither fits (or on
    any other build failure)."""
    for quantize in QUANTIZATIONS:
        try:
            return quantize, footprint(
                bundle, Path(work_dir) / quantize, quantize=quantize, name=name
            )
        except BuildError as err:
            if "overflowed" not in str(err):  # ld: "region `FLASH' overflowed by N bytes"
                raise
    raise BuildError("the policy does not fit the Cortex-M4's flash even with int8 weights")


@dataclasses.dataclass
class M4Run:
    """A test program's run under QEMU."""

    result: HarnessResult  # self-test failures, actions [N, A], statuses, struct check
    program: dict[str, int]  # size() of the whole test program (newlib's printf included)
    instructions_per_step: float  # QEMU -icount instruction count, not cycles
    returncode: int


def build_program(
    bundle: PolicyBundle,
    inputs: np.ndarray,
    work_dir: str | Path,
    *,
    quantize: str = "float32",
    name: str = "policy",
) -> Path:
    """The test ELF: startup + policy + harness (``inputs [N, O]`` embedded, SysTick timing)."""
    check_toolchain()
    work_dir = Path(work_dir)
    files = write_c(bundle, work_dir, quantize=quantize, name=name)
    harness = write_harness(bundle, inputs, work_dir / "m4_main.c", name=name, systick=True)
    flags = _policy_flags("-O2")
    objs = [
        _cc([STARTUP], work_dir / "startup.o", flags),
        _cc([files["source"]], work_dir / f"{name}.o", flags),
        _cc([harness], work_dir / "m4_main.o", [*STRICT_FLAGS, *SECTION_FLAGS]),
    ]
    return _cc(objs, work_dir / "m4_test.elf", flags, link=True)


def run_qemu(elf: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs an ELF on the emulated STM32F405; stdout is the program's semihosting output."""
    check_toolchain()
    try:
        return subprocess.run(
            [*QEMU_CMD, "-kernel", str(elf)], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise BuildError(f"{elf} did not finish within {timeout} s under QEMU") from None


def run_on_cortex_m4(
    bundle: PolicyBundle,
    inputs: np.ndarray,
    work_dir: str | Path,
    *,
    quantize: str = "float32",
    name: str = "policy",
    timeout: float = 120,
) -> M4Run:
    """Builds the test program for ``inputs [N, O]``, runs it under QEMU and parses its output.

    The instruction count is measured on the last (up to 16) inputs: put NaN/Inf inputs first.
    """
    elf = build_program(bundle, inputs, work_dir, quantize=quantize, name=name)
    proc = run_qemu(elf, timeout)
    if proc.returncode == FAULT_EXIT:
        raise BuildError(f"{elf} hit a fault on the Cortex-M4:\n{proc.stdout[-2000:]}")
    result = parse_harness_output(proc.stdout, bundle.action_dim)
    if result.ticks is None:
        raise BuildError(f"{elf} printed no SysTick line:\n{proc.stdout[-2000:]}")
    total, baseline, steps, calib, calib_instructions = result.ticks
    ticks_per_instruction = (calib - baseline / steps) / calib_instructions
    result.instructions_per_step = (total - baseline) / steps / ticks_per_instruction
    return M4Run(
        result=result,
        program=size(elf),
        instructions_per_step=result.instructions_per_step,
        returncode=proc.returncode,
    )
