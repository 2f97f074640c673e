"""Training loops (on-device scan loop, host loop), their shared driver, and evaluation."""

from robotrl.train.config import TrainConfig
from robotrl.train.evaluate import (
    EvalResult,
    evaluate_host,
    iqm,
    make_evaluator,
    summarize,
    summarize_eval,
)
from robotrl.train.host_loop import HostSession
from robotrl.train.scan_loop import LoopState, ScanSession
from robotrl.train.session import ChunkResult, NonFiniteError, run_training

__all__ = [
    "ChunkResult",
    "EvalResult",
    "HostSession",
    "LoopState",
    "NonFiniteError",
    "ScanSession",
    "TrainConfig",
    "evaluate_host",
    "iqm",
    "make_evaluator",
    "run_training",
    "summarize",
    "summarize_eval",
]
