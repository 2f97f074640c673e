"""Shared helpers for the peer benchmark scripts (stdlib + numpy + gymnasium only).

Contract of every peer script:
  * exactly ONE line of JSON goes to the real stdout, at the very end;
  * everything else (library chatter, C++ printf, JAX warnings) goes to stderr;
  * exit code 0 on success (a run that does not solve is still a success: see
    the "solved" field), non-zero with a message on stderr and a JSON line with
    "ok": false on failure.

The stdout hygiene is done at the file-descriptor level, because RLtools' C++
code prints to fd 1 directly and would otherwise corrupt the JSON line.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import sys
import time
import traceback
import typing

_JSON_FD: int | None = None


def process_start_time() -> float:
    """Wall-clock time (time.time() scale) at which this process was started."""
    try:
        import psutil  # installed in the peer venv (dependency of orbax/sbx)

        return float(psutil.Process().create_time())
    except Exception:  # pragma: no cover - fallback via /proc
        try:
            with open("/proc/self/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            start_ticks = int(fields[19])
            hz = os.sysconf("SC_CLK_TCK")
            with open("/proc/uptime") as f:
                uptime = float(f.read().split()[0])
            return time.time() - uptime + start_ticks / hz
        except Exception:
            return time.time()


def redirect_stdout_to_stderr() -> None:
    """Keep a private copy of the real stdout for the JSON line, send fd 1 to stderr."""
    global _JSON_FD
    if _JSON_FD is not None:
        return
    sys.stdout.flush()
    _JSON_FD = os.dup(1)
    os.dup2(2, 1)


def emit_json(obj: dict) -> None:
    """Write the single JSON result line to the real stdout."""
    line = json.dumps(obj, sort_keys=False, default=_json_default) + "\n"
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    fd = _JSON_FD if _JSON_FD is not None else 1
    os.write(fd, line.encode())


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except Exception:
        pass
    return str(o)


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def package_versions(names) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = None
    return out


def machine_info() -> dict:
    info = {"nproc": os.cpu_count(), "platform": platform.platform()}
    with contextlib.suppress(OSError):
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    env_keys = [
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "XLA_FLAGS",
        "JAX_PLATFORMS",
        "JAX_ENABLE_X64",
        "JAX_COMPILATION_CACHE_DIR",
    ]
    info["env"] = {k: os.environ[k] for k in env_keys if k in os.environ}
    return info


class HardTimeout(Exception):
    pass


def install_hard_timeout(seconds: float) -> None:
    """SIGALRM after `seconds`: raises HardTimeout in the main thread (checked
    whenever control is back in Python, i.e. between env steps / train calls)."""
    if not seconds or seconds <= 0:
        return

    def _handler(signum, frame):
        raise HardTimeout(f"hard timeout of {seconds:.0f} s reached")

    signal.signal(signal.SIGALRM, _handler)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))


def run_main(peer: str, benchmark: str, main, argv=None) -> None:
    """Run `main(args_list) -> dict`, emit its JSON, map failures to exit codes.

    exit 0: success; 1: error inside the benchmark; 2: hard timeout.
    """
    redirect_stdout_to_stderr()
    try:
        result = main(sys.argv[1:] if argv is None else argv)
        result.setdefault("ok", True)
        emit_json(result)
        code = 0
    except SystemExit as e:  # argparse --help / usage errors
        code = e.code if isinstance(e.code, int) else 2
        if code != 0:
            emit_json(
                {
                    "peer": peer,
                    "benchmark": benchmark,
                    "ok": False,
                    "error": f"bad arguments (exit {code})",
                }
            )
        os._exit(code)
    except HardTimeout as e:
        log(f"[{peer}/{benchmark}] FAILED: {e}")
        emit_json({"peer": peer, "benchmark": benchmark, "ok": False, "error": str(e)})
        code = 2
    except BaseException as e:
        traceback.print_exc(file=sys.stderr)
        msg = f"{type(e).__name__}: {e}"
        log(f"[{peer}/{benchmark}] FAILED: {msg}")
        emit_json({"peer": peer, "benchmark": benchmark, "ok": False, "error": msg})
        code = 1
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    # os._exit: skip interpreter teardown (JAX/XLA and pybind11 atexit hooks can
    # hang or crash at shutdown; nothing is left to flush).
    os._exit(code)


class BatchedPendulumEval:
    """Deterministic evaluation on gymnasium Pendulum-v1: `n_episodes` envs
    stepped in lockstep (all Pendulum episodes are exactly 200 steps, ended by the
    TimeLimit truncation), so the policy is queried with a batch of observations.

    The same episode seeds are used at every evaluation (`base_seed + i`), so two
    evaluations of the same policy give the same number and two peers are scored
    on the same start states.

    `rescale_to_unit`: wrap each env in RescaleAction(-1, 1) (for policies that
    output actions in [-1, 1], like RLtools'); otherwise the policy must output
    raw torques in [-2, 2].
    """

    def __init__(
        self, n_episodes: int = 10, base_seed: int = 10_000, rescale_to_unit: bool = False
    ):
        import gymnasium as gym

        self.n = n_episodes
        self.base_seed = base_seed
        self.envs = []
        for _ in range(n_episodes):
            env = gym.make("Pendulum-v1")
            if rescale_to_unit:
                env = gym.wrappers.RescaleAction(env, -1.0, 1.0)
            self.envs.append(env)

    def evaluate(self, policy_batch) -> tuple[float, list]:
        """policy_batch: (n, obs_dim) float32 array -> (n, act_dim) actions."""
        import numpy as np

        obs = np.stack(
            [env.reset(seed=self.base_seed + i)[0] for i, env in enumerate(self.envs)]
        ).astype(np.float32)
        returns = np.zeros(self.n, dtype=np.float64)
        done = np.zeros(self.n, dtype=bool)
        while not done.all():
            actions = np.asarray(policy_batch(obs))
            for i, env in enumerate(self.envs):
                if done[i]:
                    continue
                o, r, term, trunc, _ = env.step(actions[i])
                returns[i] += float(r)
                obs[i] = o
                if term or trunc:
                    done[i] = True
        return float(returns.mean()), [round(float(x), 2) for x in returns]


class JaxCompileMeter:
    """Sums JAX's own compile-time events (tracing, lowering to MLIR, XLA backend
    compile) via jax.monitoring, so compilation is measured directly instead of
    being inferred from "first call minus steady call" (unreliable on a noisy
    machine). Nested jits traced inside an outer trace may be counted in both
    trace events, so `trace` can slightly overcount; `backend` is exact."""

    EVENTS: typing.ClassVar[dict[str, str]] = {
        "/jax/core/compile/jaxpr_trace_duration": "trace",
        "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
        "/jax/core/compile/backend_compile_duration": "backend",
    }

    def __init__(self):
        import jax

        self.totals = {"trace": 0.0, "lower": 0.0, "backend": 0.0}
        self.count = 0

        def _listener(name, duration, **kwargs):
            key = self.EVENTS.get(name)
            if key is not None:
                self.totals[key] += float(duration)
                if key == "backend":
                    self.count += 1

        jax.monitoring.register_event_duration_secs_listener(_listener)

    def total(self) -> float:
        return sum(self.totals.values())

    def snapshot(self) -> dict:
        return dict(self.totals, total=self.total(), n_backend_compiles=self.count)

    @staticmethod
    def diff(after: dict, before: dict) -> dict:
        return {k: round(after[k] - before[k], 4) for k in after}
