"""The driver both loops share: chunks, logging, evaluation, checkpoints, non-finite stops.

A *session* (``ScanSession`` or ``HostSession``) knows how to run one chunk of training,
evaluate, and hand over its state for a checkpoint. ``run_training`` drives any session with the
same cadence, so the two loops log, evaluate and checkpoint identically. Logging goes through
callbacks (``on_log(step, row)``); the core never imports a logging backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Protocol

import numpy as np

from robotrl.train.config import TrainConfig
from robotrl.train.evaluate import EvalResult, summarize_eval


class NonFiniteError(RuntimeError):
    """Training produced a NaN/Inf; carries the env step and the quantity that went bad."""

    def __init__(self, step: int, name: str, detail: str = ""):
        message = f"training stopped: {name} became non-finite at env step {step}"
        super().__init__(f"{message}; {detail}" if detail else message)
        self.step, self.name = step, name


class ChunkResult(NamedTuple):
    metrics: dict[str, np.ndarray]  # name -> [S] chunk averages (NaN where nothing happened)
    bad: tuple[int, str] | None  # first non-finite (env step, quantity), if any


class Session(Protocol):
    num_seeds: int

    def env_steps(self) -> int: ...

    def run_chunk(self) -> ChunkResult: ...

    def evaluate(self, seed: int | None = None) -> EvalResult: ...

    def checkpoint_state(self) -> Any: ...

    def abstract_state(self) -> Any: ...

    def load_state(self, tree: Any) -> None: ...


class Checkpointer(Protocol):
    def save(self, step: int, tree: Any, meta: dict[str, Any]) -> None: ...


def first_non_finite(
    finite: dict[str, np.ndarray], start_step: int, steps_per_iteration: int
) -> tuple[int, str] | None:
    """First (env step, name) where a watched quantity went non-finite.

    ``finite``: name -> ``[S, T]`` (or ``[T]``) flags, one per iteration of a chunk.
    """
    first: tuple[int, str] | None = None
    for name, flags in finite.items():
        flags = np.asarray(flags).reshape(-1, np.shape(flags)[-1]).all(axis=0)  # over seeds
        bad = np.flatnonzero(~flags)
        if bad.size:
            step = start_step + (int(bad[0]) + 1) * steps_per_iteration
            if first is None or step < first[0]:
                first = (step, name)
    return first


def _due(every: int, before: int, after: int) -> bool:
    return every > 0 and after // every > before // every


def _row(metrics: dict[str, np.ndarray], per_seed: bool = False) -> dict[str, float]:
    """Seed means of every metric, plus per-seed columns for returns when there are seeds (for
    every metric with ``per_seed``)."""
    row = {}
    for name, values in metrics.items():
        values = np.asarray(values, np.float64).reshape(-1)
        finite = values[np.isfinite(values)]
        row[name] = float(finite.mean()) if finite.size else float("nan")
        if values.size > 1 and (per_seed or name.endswith("return")):
            row.update({f"{name}/seed{i}": float(v) for i, v in enumerate(values)})
    return row


def run_training(
    session: Session,
    cfg: TrainConfig,
    *,
    on_log: Iterable[Callable[[int, dict[str, float]], None]] = (),
    checkpointer: Checkpointer | None = None,
    progress: Any = None,
    per_seed_columns: bool = False,
) -> dict[str, float]:
    """Trains until ``cfg.total_steps`` (rounded up to whole chunks); returns the last row
    (per-seed columns of every training metric with ``per_seed_columns``).

    Raises ``NonFiniteError`` at the first chunk that produced a NaN/Inf; nothing from that chunk
    is checkpointed, so the last good checkpoint stays the latest.
    """
    callbacks = list(on_log)
    total = -(-cfg.total_steps // cfg.log_every) * cfg.log_every
    row: dict[str, float] = {}
    step = session.env_steps()
    t_start, steps_start = time.perf_counter(), step
    while step < total:
        t0 = time.perf_counter()
        result = session.run_chunk()
        if result.bad is not None:
            raise NonFiniteError(*result.bad)
        before, step = step, session.env_steps()
        elapsed = time.perf_counter() - t0
        row = _row(result.metrics, per_seed_columns)
        row["timing/sps"] = (step - before) * session.num_seeds / elapsed
        row["timing/chunk_s"] = elapsed
        final = step >= total
        if cfg.eval_episodes and (final or _due(cfg.eval_every, before, step)):
            t0 = time.perf_counter()
            result = session.evaluate()
            if not np.all(np.isfinite(result.returns)):
                raise NonFiniteError(step, "eval/return")
            row.update(summarize_eval(result))
            if session.num_seeds > 1:
                per_seed = {"return": result.returns, **result.metrics}
                if result.success is not None:
                    per_seed["success_rate"] = np.asarray(result.success, np.float64)
                for name, values in per_seed.items():
                    means = np.asarray(values).mean(axis=-1)
                    row.update({f"eval/{name}/seed{i}": float(m) for i, m in enumerate(means)})
            row["timing/eval_s"] = time.perf_counter() - t0
        row["timing/elapsed_s"] = time.perf_counter() - t_start
        for callback in callbacks:
            callback(step, row)
        if checkpointer is not None and (final or _due(cfg.checkpoint_every, before, step)):
            checkpointer.save(step, session.checkpoint_state(), {"env_steps": step})
        if progress is not None:
            sps = (step - steps_start) / max(time.perf_counter() - t_start, 1e-9)
            progress(step, total, sps, row)
    return row
