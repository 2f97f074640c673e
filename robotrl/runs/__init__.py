"""Run directories, metrics logs, checkpoints and plots."""

from robotrl.runs.checkpoint import CheckpointError, CheckpointStore
from robotrl.runs.rundir import MetricsLog, RunDir, RunDirError, default_run_path, read_metrics

__all__ = [
    "CheckpointError",
    "CheckpointStore",
    "MetricsLog",
    "RunDir",
    "RunDirError",
    "default_run_path",
    "read_metrics",
]
