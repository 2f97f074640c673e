"""Loading a bundle to run on a robot: numpy forward or the exported C, checked before use.

``load_policy(path, backend)`` refuses (``DeployError``, one line) a bundle that is missing,
damaged, or whose golden pairs it does not reproduce: ``|act(golden_obs) - golden_actions| <=
tol * (1 + |action_scale|)`` per value, the C export's own criterion. The ``"c"`` backend
generates the bundle's C, compiles it for this machine and loads it with ctypes
(``firmware_export.CPolicy``), then runs the C self-test too.

An action-chunking bundle (``spec["chunk"]``: the last ``To`` frames in, ``Ha`` actions out) runs
one tick at a time through ``ChunkRunner``: each tick's frame joins the history (the first one
fills it, as the policy's rollouts do), the policy runs when the previous chunk is used up, and
the chunk's actions go out one per tick. The policy's per-tick layouts are the bundle's latest
frame and first action, their names without the ``[t]`` / ``[+0]`` suffix.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from policies.bundle import BundleError, PolicyBundle

BACKENDS = ("numpy", "c")


class DeployError(RuntimeError):
    """A policy cannot be run on the robot (the message says why, in one line)."""


class ChunkRunner:
    """One tick at a time for an action-chunking bundle (see the module docstring). A tick's
    frame is ``[O]`` (one robot: the action is ``[A]``) or ``[B, O]`` (``B`` robots ticking in
    step, each with its own history, one policy call for all: ``[B, A]``), so the same runner
    flies the bundle in simulation under ``firmware_export.closed_loop.fly``."""

    def __init__(self, bundle: PolicyBundle, act_batch: Callable[[np.ndarray], np.ndarray]):
        chunk = bundle.spec["chunk"]
        self.to, self.ha = int(chunk["obs_history"]), int(chunk["action_steps"])
        self.action_dim = bundle.action_dim // self.ha
        self.act_batch = act_batch
        self.history: collections.deque = collections.deque(maxlen=self.to)
        self.queue: collections.deque = collections.deque()

    def reset(self) -> None:
        """Forgets the history and the chunk in progress (after any fall-back)."""
        self.history.clear()
        self.queue.clear()

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame, np.float32)
        if not self.history:
            self.history.extend([frame] * self.to)
        else:
            self.history.append(frame)
        if not self.queue:
            flat = np.concatenate(list(self.history), axis=-1)
            chunk = self.act_batch(flat.reshape(-1, flat.shape[-1]))  # [B, Ha * A]
            chunk = np.reshape(chunk, (*frame.shape[:-1], self.ha, self.action_dim))
            self.queue.extend(np.moveaxis(chunk, -2, 0))  # Ha ticks of [(B,) A]
        return self.queue.popleft()


def _per_tick(layout: list[dict], count: int, last: bool) -> list[dict]:
    """The fields of one frame (the last of ``count``) or one action (the first), unsuffixed."""
    per = len(layout) // count
    part = layout[-per:] if last else layout[:per]
    return [{**f, "name": re.sub(r"\[[^\]]*\]$", "", f["name"])} for f in part]


@dataclasses.dataclass
class LoadedPolicy:
    bundle: PolicyBundle
    act: Callable[[np.ndarray], np.ndarray]  # one tick: raw observation [O] -> env action [A]
    backend: str
    golden_error: float  # worst golden-pair error, head units (see the module docstring)
    obs_layout: list[dict]  # one tick's observation fields (a chunking bundle's latest frame)
    action_layout: list[dict]  # one tick's action fields
    reset: Callable[[], None] = lambda: None  # forget the history (chunking bundles)


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
    chunk = bundle.spec.get("chunk")
    if not chunk:
        act = lambda obs: batch(obs[None])[0]
        return LoadedPolicy(bundle, act, backend, error, bundle.obs_layout, bundle.action_layout)
    runner = ChunkRunner(bundle, batch)
    return LoadedPolicy(
        bundle,
        runner,
        backend,
        error,
        _per_tick(bundle.obs_layout, int(chunk["obs_history"]), last=True),
        _per_tick(bundle.action_layout, int(chunk["action_steps"]), last=False),
        runner.reset,
    )


__all__ = [
    "BACKENDS",
    "ChunkRunner",
    "DeployError",
    "LoadedPolicy",
    "golden_error",
    "load_policy",
]
