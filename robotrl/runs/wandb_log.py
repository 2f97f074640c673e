"""Weights & Biases logging (``robotrl train --wandb PROJECT``), an ``on_log`` callback.

One W&B run per run directory: named after it, with the full config, its files in
``RUN_DIR/wandb``, every logged row at its env step, plus the Open RL Benchmark keys
(``global_step``, ``charts/episodic_return``, ``charts/SPS``) that ``metrics.csv`` has too.
``WANDB_MODE=offline`` keeps it on disk (``wandb sync RUN_DIR/wandb/offline-run-*`` uploads it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from robotrl.config import ConfigError
from robotrl.runs.rundir import with_orlb_keys


def require_wandb() -> Any:
    """The ``wandb`` module, or a ``ConfigError`` with the install hint."""
    try:
        import wandb
    except ImportError as err:
        raise ConfigError(
            f"--wandb needs Weights & Biases ({err}): pip install wandb "
            "(or pip install 'robotrl[wandb]')"
        ) from err
    return wandb


class WandbLog:
    """Starts a W&B run for ``run_path`` at once (so a login or network problem stops the
    command before it trains) and logs each ``(step, row)`` to it."""

    def __init__(self, project: str, run_path: str | Path, config: dict[str, Any]):
        wandb = require_wandb()
        path = Path(run_path)
        path.mkdir(parents=True, exist_ok=True)  # wandb writes RUN_DIR/wandb
        try:
            self.run = wandb.init(project=project, name=path.name, config=config, dir=str(path))
        except Exception as err:  # wandb's own errors (no API key, no network) as one line
            raise ConfigError(f"--wandb {project}: W&B could not start a run: {err}") from err

    def __call__(self, step: int, row: dict[str, float]) -> None:
        self.run.log(with_orlb_keys(step, row), step=step)

    def finish(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


@contextlib.contextmanager
def wandb_callbacks(
    project: str | None, run_path: str | Path, config: dict[str, Any]
) -> Iterator[list[Callable[[int, dict[str, float]], None]]]:
    """``[WandbLog]`` for the ``with`` block (finished at its end, marked failed if it
    raised), or ``[]`` when ``project`` is None."""
    if project is None:
        yield []
        return
    log = WandbLog(project, run_path, config)
    try:
        yield [log]
    except BaseException:
        log.finish(failed=True)
        raise
    log.finish()
