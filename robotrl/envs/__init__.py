"""Functional environments: state, wrappers, normalisation, and host (numpy) adapters."""

from robotrl.envs.core import (
    ActionRepeat,
    AutoReset,
    DomainRandomization,
    EnvState,
    EpisodeLimit,
    RewardScale,
    VmapWrapper,
    Wrapper,
    make_eval_env,
    make_training_env,
)
from robotrl.envs.normalize import ObsNormalization, RunningStats

__all__ = [
    "ActionRepeat",
    "AutoReset",
    "DomainRandomization",
    "EnvState",
    "EpisodeLimit",
    "ObsNormalization",
    "RewardScale",
    "RunningStats",
    "VmapWrapper",
    "Wrapper",
    "make_eval_env",
    "make_training_env",
]
