"""Networks: MLPs, critic ensembles, actors and pluggable value heads."""

from robotrl.nets.actors import (
    ActionScaler,
    DeterministicActor,
    TanhGaussianActor,
    tanh_gaussian_sample,
)
from robotrl.nets.heads import ValueHead, ValueHeadConfig, default_value_range, make_value_head
from robotrl.nets.mlp import MLP, Critic, CriticEnsemble, activation, mlp_program

__all__ = [
    "MLP",
    "ActionScaler",
    "Critic",
    "CriticEnsemble",
    "DeterministicActor",
    "TanhGaussianActor",
    "ValueHead",
    "ValueHeadConfig",
    "activation",
    "default_value_range",
    "make_value_head",
    "mlp_program",
    "tanh_gaussian_sample",
]
