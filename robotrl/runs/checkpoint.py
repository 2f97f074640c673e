"""Orbax checkpoints of the full training state, written atomically and restored strictly.

Orbax writes each step into a temporary directory and renames it when complete, so a process
killed mid-save (``kill -9``) leaves the previous checkpoint as the latest readable one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not match the run's state."""


def _quiet_absl() -> None:
    # Orbax logs every save at INFO through absl; the run's own log says what matters.
    logging.getLogger("absl").setLevel(logging.ERROR)


def _empty(x: Any) -> bool:
    return int(np.prod(x.shape)) == 0


def _fill_empty(tree: Any, make: Any) -> Any:
    """Orbax refuses zero-size arrays (e.g. MJX's ``act`` for a model without actuator
    state): they are stored as one-element stand-ins, ``make(dtype)``, and rebuilt on restore
    from the abstract tree's shape."""
    return jax.tree.map(lambda x: make(x.dtype) if _empty(x) else x, tree)


def _host_copy(x: Any) -> np.ndarray:
    """The whole array on this host; in a multi-host run, gathered from every process (the
    primary process writes it)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


class CheckpointStore:
    """``save(step, tree, meta)`` / ``restore(abstract_tree, step) -> (tree, meta)``."""

    def __init__(self, directory: str | Path, keep: int = 3, read_only: bool = False):
        _quiet_absl()
        self.directory = Path(directory).absolute()
        if read_only and not self.directory.is_dir():
            raise CheckpointError(f"no checkpoints in {self.directory}")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=not read_only,
            read_only=read_only,
            enable_async_checkpointing=False,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, tree: Any, meta: dict[str, Any]) -> None:
        tree = jax.tree.map(_host_copy, tree)  # host copies: the device state may be donated
        tree = _fill_empty(tree, lambda dtype: np.zeros((1,), dtype))
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(dict(meta))
            ),
        )
        self._manager.wait_until_finished()

    def restore(self, abstract_tree: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoints in {self.directory}")
        if step not in self.steps():
            raise CheckpointError(f"no checkpoint for step {step} in {self.directory}")
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(
                        _fill_empty(abstract_tree, lambda dtype: jax.ShapeDtypeStruct((1,), dtype))
                    ),
                    meta=ocp.args.JsonRestore(),
                ),
            )
        except Exception as err:  # orbax/tensorstore raise many types for damaged files
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise CheckpointError(
                f"checkpoint step {step} in {self.directory} is unreadable or does not match "
                f"this run's config ({type(err).__name__}: {first})"
            ) from err
        state = jax.tree.map(
            lambda r, a: np.zeros(a.shape, a.dtype) if _empty(a) else r,
            restored["state"],
            abstract_tree,
        )
        return state, dict(restored["meta"])

    def close(self) -> None:
        self._manager.close()
