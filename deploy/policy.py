"""Loading a bundle to run on a robot: numpy forward or the exported C, checked before use.

``load_policy(path, backend)`` refuses (``DeployError``, one line) a bundle that is missing,
damaged, chunked (the node runs one action per tick), or whose golden pairs it does not
reproduce: ``|act(golden_obs) - golden_actions| <= tol * (1 + |action_scale|)`` per value, the
C export's own criterion. The ``"c"`` backend generates the bundle's C, compiles it for this
machine and loads it with ctypes (``firmware_export.CPolicy``), then runs the C self-test too.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from policies.bundle import BundleError, PolicyBundle

BACKENDS = ("numpy", "c")


class DeployError(RuntimeError):
    """A policy cannot be run on the robot (the message says why, in one line)."""


@dataclasses.dataclass
class LoadedPolicy:
    bundle: PolicyBundle
    act: Callable[[np.ndarray], np.ndarray]  # one raw observation [O] -> env action [A]
    backend: str
    golden_error: float  # worst golden-pair error, head units (see the module docstring)


def golden_error(bundle: PolicyBundle, act_batch: Callable[[np.ndarray], np.ndarray]) -> float:
    if bundle.golden_obs is None or bundle.golden_actions is None:
        raise DeployError("the bundle has no golden pairs: its self-test cannot run")
    err = np.abs(act_batch(bundle.golden_obs) - bundle.golden_actions)
    return float(np.max(err / (1.0 + np.abs(bundle.action_scale))))


def load_policy(
    path: str | Path,
    backend: str = "numpy",
    tol: float = 1e-5,
    work_dir: str | Path | None = None,
) -> LoadedPolicy:
    if backend not in BACKENDS:
        raise DeployError(f"backend must be one of {BACKENDS}, got {backend!r}")
    try:
        bundle = PolicyBundle.load(path)
    except BundleError as err:
        raise DeployError(str(err)) from None
    if bundle.spec.get("chunk"):
        raise DeployError(
            f"{path} is an action-chunking policy ({bundle.spec['chunk']}); the node runs "
            "one action per tick"
        )
    if backend == "c":
        from firmware_export import CPolicy  # the exporter: stdlib, numpy and a C compiler

        work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="robotrl-policy-"))
        try:
            compiled = CPolicy.build(bundle, work)
        except Exception as err:  # CExportError, BuildError: one line either way
            raise DeployError(f"the bundle's C does not build: {err}") from None
        failures = compiled.self_test()
        if failures:
            raise DeployError(f"refusing {path}: the C self-test failed {failures} golden pairs")
        batch = compiled.act
    else:
        batch = bundle.act
    error = golden_error(bundle, batch)
    if not error <= tol:
        raise DeployError(
            f"refusing {path}: its golden pairs differ by {error:.3g} > {tol:g} "
            "(the bundle does not reproduce the policy it was exported from)"
        )
    return LoadedPolicy(bundle, lambda obs: batch(obs[None])[0], backend, error)


__all__ = ["BACKENDS", "DeployError", "LoadedPolicy", "golden_error", "load_policy"]
