"""Compile the generated C on the host, load it with ctypes, and run it under sanitizers.

- ``CPolicy.build(bundle, work_dir)``: ``write_c`` + ``gcc -std=c99 -Wall -Wextra -Werror
  -pedantic -O2`` (plus the stricter warnings in ``EXTRA_WARNINGS``) into a shared library;
  ``act(obs [..., O]) -> [..., A]`` calls ``<name>_step_flat`` once per observation and keeps the
  status codes in ``step_status``; ``self_test()`` runs the embedded golden pairs.
- ``write_harness``: a C ``main`` with a batch of observations embedded at generation time that
  prints the self-test result and, per observation, the status and the action's float bits (hex,
  exact), and checks that the struct entry point gives the same bits as the flat one. The same
  harness runs on the host under ``-fsanitize=address,undefined`` (``run_sanitized``) and on the
  emulated Cortex-M4 (``cortex_m4.py``); ``parse_harness_output`` reads both.
- ``host_ns_per_step``: ns per ``<name>_step_flat`` timed inside a C loop (``-O2``).
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from string import Template

import numpy as np

from firmware_export.c_export import (
    action_field_lines,
    c_float,
    field_copy_lines,
    write_c,
)
from policies.bundle import PolicyBundle

STRICT_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2")
# Beyond what was asked: no shadowing, no silent double arithmetic (a Cortex-M4F has a
# single-precision FPU only), no implicit narrowing, prototypes everywhere.
EXTRA_WARNINGS = (
    "-Wshadow",
    "-Wdouble-promotion",
    "-Wconversion",
    "-Wcast-qual",
    "-Wstrict-prototypes",
    "-Wmissing-prototypes",
)
SANITIZE_FLAGS = (
    "-fsanitize=address,undefined",
    "-fsanitize=float-cast-overflow",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-g",
)


class BuildError(RuntimeError):
    """The C did not compile, or a compiled program failed or reported a finding."""


def host_cc() -> str:
    """The host C compiler: ``$CC`` or gcc."""
    cc = os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        raise BuildError(f"no host C compiler {cc!r} on PATH: install gcc (apt-get install gcc)")
    return cc


def compile_c(
    sources: Sequence[Path],
    out: Path,
    flags: Sequence[str],
    *,
    cc: str | None = None,
    libs: Sequence[str] = ("-lm",),
) -> Path:
    """Runs ``cc flags sources -o out libs``; raises ``BuildError`` with the compiler's output."""
    cmd = [cc or host_cc(), *flags, *map(str, sources), "-o", str(out), *libs]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed:\n{result.stderr[-4000:]}")
    return out


# ---- ctypes ------------------------------------------------------------------------------------
class CPolicy:
    """The generated C policy as a host shared library.

    Attributes:
      step_status: status codes of the last ``act`` call (``[...]`` int32, 0 = ok).
    """

    def __init__(self, library: str | Path, *, obs_dim: int, action_dim: int, name: str = "policy"):
        self.library = Path(library)
        self.obs_dim, self.action_dim, self.name = obs_dim, action_dim, name
        self._lib = ctypes.CDLL(str(self.library))
        self._step = getattr(self._lib, f"{name}_step_flat")
        self._step.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._step.restype = ctypes.c_int
        self._self_test = getattr(self._lib, f"{name}_self_test")
        self._self_test.argtypes = []
        self._self_test.restype = ctypes.c_int
        self.step_status: np.ndarray = np.zeros((), np.int32)

    @classmethod
    def build(
        cls,
        bundle: PolicyBundle,
        work_dir: str | Path,
        *,
        quantize: str = "float32",
        name: str = "policy",
    ) -> CPolicy:
        """Generates, compiles (strict flags, ``-fPIC -shared``) and loads ``bundle``'s C."""
        work_dir = Path(work_dir)
        files = write_c(bundle, work_dir, quantize=quantize, name=name)
        flags = [*STRICT_FLAGS, *EXTRA_WARNINGS, "-fPIC", "-shared"]
        # Named by content: the dynamic loader caches libraries by path, so rebuilding another
        # policy under the same name in one process must not load the old one again.
        digest = hashlib.sha256(files["source"].read_bytes()).hexdigest()[:12]
        library = compile_c([files["source"]], work_dir / f"lib{name}-{digest}.so", flags)
        return cls(library, obs_dim=bundle.obs_dim, action_dim=bundle.action_dim, name=name)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions ``[..., A]`` for raw observations ``[..., O]``, one C step each."""
        obs = np.ascontiguousarray(obs, np.float32)
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(f"observation has {obs.shape[-1]} values, expected {self.obs_dim}")
        flat = obs.reshape(-1, self.obs_dim)
        out = np.empty((len(flat), self.action_dim), np.float32)
        status = np.empty(len(flat), np.int32)
        base_in, base_out = flat.ctypes.data, out.ctypes.data
        row_in, row_out = 4 * self.obs_dim, 4 * self.action_dim
        for i in range(len(flat)):
            status[i] = self._step(base_in + i * row_in, base_out + i * row_out)
        self.step_status = status.reshape(obs.shape[:-1])
        return out.reshape(*obs.shape[:-1], self.action_dim)

    def self_test(self) -> int:
        """Failures among the embedded golden pairs (0 = pass)."""
        return int(self._self_test())


# ---- the test harness (host sanitizers and Cortex-M4) ------------------------------------------
@dataclasses.dataclass
class HarnessResult:
    """What a harness run printed."""

    self_test_failures: int
    actions: np.ndarray  # [N, A] float32, bit-exact from the device
    status: np.ndarray  # [N] int
    struct_mismatches: int  # observations where the struct entry differed from the flat one
    # SysTick (total, baseline, steps, calibration ticks, calibration instructions), systick only
    ticks: tuple[int, ...] | None = None
    instructions_per_step: float | None = None  # set by cortex_m4 from ticks under -icount
    stdout: str = ""


_HARNESS = Template("""\
/* test harness for $name.c, generated by firmware_export.build */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "$name.h"

#define N_INPUTS $n_inputs
static const float inputs[N_INPUTS][${NAME}_OBS_DIM] = {
    $rows
};

static unsigned long bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (unsigned long)u;
}
$timing
int main(void) {
    float action[${NAME}_ACTION_DIM], via_struct[${NAME}_ACTION_DIM];
    ${name}_obs_t obs;
    ${name}_action_t act;
    int n, a, i, status, failures, mismatches = 0;
    (void)i; /* only array fields use it: a layout of scalars leaves it unused */
    failures = ${name}_self_test();
    printf("self_test %d\\n", failures);
    for (n = 0; n < N_INPUTS; ++n) {
        status = ${name}_step_flat(inputs[n], action);
        printf("out %d %d", n, status);
        for (a = 0; a < ${NAME}_ACTION_DIM; ++a) {
            printf(" %08lx", bits(action[a]));
        }
        printf("\\n");
        /* the struct entry point must give the same status and bits */
        $to_struct
        if (${name}_step(&obs, &act) != status) {
            ++mismatches;
        }
        $from_struct
        if (memcmp(action, via_struct, sizeof action) != 0) {
            ++mismatches;
        }
    }
    printf("struct_mismatches %d\\n", mismatches);
    $call_timing
    printf("done\\n");
    return (failures > 100 ? 100 : failures) + (mismatches > 0);
}
""")

# Cortex-M only. SysTick (24-bit down-counter on the processor clock) over TIMED_STEPS steps on
# the last inputs, over as many empty readings, and over a loop of a known number of
# instructions: under QEMU -icount the ratio is an instruction count.
_SYSTICK = Template("""
#define SYST_CSR (*(volatile uint32_t *)0xE000E010UL)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014UL)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018UL)
#define TIMED_STEPS 16
#define CALIB_LOOPS 20000 /* the asm loop below runs 1 + 2 * CALIB_LOOPS instructions */

static void time_steps(void) {
    float action[${NAME}_ACTION_DIM];
    uint32_t total = 0, baseline = 0, calib, t0, t1;
    int k;
    SYST_RVR = 0xFFFFFFUL;
    SYST_CVR = 0;
    SYST_CSR = 5; /* enable, processor clock, no interrupt */
    for (k = 0; k < TIMED_STEPS; ++k) {
        t0 = SYST_CVR;
        t1 = SYST_CVR;
        baseline += (t0 - t1) & 0xFFFFFFUL;
        t0 = SYST_CVR;
        (void)${name}_step_flat(inputs[N_INPUTS - 1 - k % N_INPUTS], action);
        t1 = SYST_CVR;
        total += (t0 - t1) & 0xFFFFFFUL;
    }
    t0 = SYST_CVR;
    __asm__ volatile("movw r0, #20000\\n1:\\tsubs r0, r0, #1\\n\\tbne 1b" ::: "r0", "cc");
    t1 = SYST_CVR;
    calib = (t0 - t1) & 0xFFFFFFUL;
    printf("ticks %lu %lu %d %lu %d\\n", (unsigned long)total, (unsigned long)baseline,
           TIMED_STEPS, (unsigned long)calib, 1 + 2 * CALIB_LOOPS);
}
""")


def _rows(values: np.ndarray) -> str:
    return ",\n    ".join("{" + ", ".join(c_float(v) for v in row) + "}" for row in values)


def write_harness(
    bundle: PolicyBundle,
    inputs: np.ndarray,
    path: str | Path,
    *,
    name: str = "policy",
    systick: bool = False,
) -> Path:
    """A C ``main`` running the self-test and ``inputs [N, O]`` (embedded; NaN/Inf allowed).

    Output lines: ``self_test F``, then ``out n status hex...`` per input (the action's float32
    bits), ``struct_mismatches M``, with ``systick`` (Cortex-M only) a ``ticks TOTAL BASELINE K
    CALIB CALIB_INSTRUCTIONS`` line (SysTick ticks over K steps on the last inputs, for the
    instruction count under QEMU ``-icount``), and ``done``. The exit code is the self-test's
    failures (capped at 100) plus one if the struct entry point differed from the flat one.
    """
    inputs = np.asarray(inputs, np.float32).reshape(-1, bundle.obs_dim)
    names = {"name": name, "NAME": name.upper()}
    text = _HARNESS.substitute(
        names,
        n_inputs=len(inputs),
        rows=_rows(inputs),
        timing=_SYSTICK.substitute(names) if systick else "",
        call_timing="time_steps();" if systick else "",
        to_struct="\n        ".join(field_copy_lines(bundle, "obs", "inputs[n]")),
        from_struct="\n        ".join(action_field_lines(bundle, "act", "via_struct")),
    )
    path = Path(path)
    path.write_text(text)
    return path


def parse_harness_output(text: str, action_dim: int) -> HarnessResult:
    """Reads a harness's stdout (see ``write_harness``); raises if it stopped early."""
    failures, mismatches, ticks = None, None, None
    actions, status = {}, {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "self_test":
            failures = int(parts[1])
        elif parts[0] == "out":
            n = int(parts[1])
            status[n] = int(parts[2])
            words = np.array([int(h, 16) for h in parts[3 : 3 + action_dim]], np.uint32)
            actions[n] = words.view(np.float32)
        elif parts[0] == "struct_mismatches":
            mismatches = int(parts[1])
        elif parts[0] == "ticks":
            ticks = tuple(int(x) for x in parts[1:6])
    if failures is None or mismatches is None or "done" not in text.split():
        raise BuildError(f"the harness stopped before the end; its output:\n{text[-2000:]}")
    order = sorted(actions)
    return HarnessResult(
        self_test_failures=failures,
        actions=np.stack([actions[n] for n in order]) if order else np.zeros((0, action_dim)),
        status=np.array([status[n] for n in order], np.int32),
        struct_mismatches=mismatches,
        ticks=ticks,
        stdout=text,
    )


def run_sanitized(
    bundle: PolicyBundle,
    inputs: np.ndarray,
    work_dir: str | Path,
    *,
    quantize: str = "float32",
    name: str = "policy",
    timeout: float = 120,
) -> HarnessResult:
    """Builds the policy + harness with ASan/UBSan (strict flags, ``-O1``), runs it and parses
    its output. Raises ``BuildError`` on any sanitizer finding (they abort the program)."""
    work_dir = Path(work_dir)
    files = write_c(bundle, work_dir, quantize=quantize, name=name)
    harness = write_harness(bundle, inputs, work_dir / "harness_main.c", name=name)
    flags = [*(f for f in STRICT_FLAGS if f != "-O2"), "-O1", *SANITIZE_FLAGS]
    exe = compile_c([files["source"], harness], work_dir / "harness_asan", flags)
    env = {
        **os.environ,
        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    }
    result = subprocess.run(
        [str(exe)], capture_output=True, text=True, timeout=timeout, env=env, cwd=work_dir
    )
    if "runtime error" in result.stderr or "Sanitizer" in result.stderr:
        raise BuildError(f"sanitizer finding in {exe}:\n{result.stderr[-4000:]}")
    parsed = parse_harness_output(result.stdout, bundle.action_dim)
    expected_rc = min(parsed.self_test_failures, 100) + (parsed.struct_mismatches > 0)
    if result.returncode != expected_rc:
        raise BuildError(f"{exe} exited {result.returncode}:\n{result.stderr[-4000:]}")
    return parsed


# ---- host timing -------------------------------------------------------------------------------
_BENCH = Template("""\
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <time.h>
#include "$name.h"

static const float ring[64][${NAME}_OBS_DIM] = {
    $rows
};

int main(void) {
    float action[${NAME}_ACTION_DIM];
    volatile float sink = 0.0f;
    struct timespec t0, t1, c0, c1;
    long k, r;
    for (k = 0; k < 1000; ++k) { /* warm-up */
        (void)${name}_step_flat(ring[k % 64], action);
    }
    for (r = 0; r < $repeats; ++r) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
        for (k = 0; k < ${steps}L; ++k) {
            (void)${name}_step_flat(ring[k % 64], action);
            sink += action[0];
        }
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("ns %.3f %.3f\\n",
               ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) /
                   ${steps}.0,
               ((double)(c1.tv_sec - c0.tv_sec) * 1e9 + (double)(c1.tv_nsec - c0.tv_nsec)) /
                   ${steps}.0);
    }
    return sink != sink; /* NaN -> 1 */
}
""")


def host_ns_per_step(
    bundle: PolicyBundle,
    work_dir: str | Path,
    *,
    quantize: str = "float32",
    name: str = "policy",
    steps: int = 200_000,
    repeats: int = 5,
) -> dict[str, list[float]]:
    """ns per ``<name>_step_flat`` on this host: ``repeats`` timings of ``steps`` calls in a C
    loop (``-O2``, strict flags) over a ring of 64 observations from the golden set.

    Returns:
      ``{"wall": [...], "cpu": [...]}``: wall-clock and process CPU time per step, ns (CPU
      time leaves out the time the process waited for a core on a loaded machine).
    """
    work_dir = Path(work_dir)
    files = write_c(bundle, work_dir, quantize=quantize, name=name)
    ring = np.resize(np.asarray(bundle.golden_obs, np.float32), (64, bundle.obs_dim))
    main = work_dir / "bench_main.c"
    main.write_text(
        _BENCH.substitute(
            name=name, NAME=name.upper(), rows=_rows(ring), steps=steps, repeats=repeats
        )
    )
    exe = compile_c([files["source"], main], work_dir / "bench", [*STRICT_FLAGS])
    result = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise BuildError(f"{exe} exited {result.returncode}: {result.stderr[-2000:]}")
    rows = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("ns")]
    return {"wall": [float(w) for w, _ in rows], "cpu": [float(c) for _, c in rows]}
