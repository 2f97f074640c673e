"""Crazyflie-2.1-class quadrotor (the "Learning to Fly in Seconds" simulator) in pure JAX."""

from sims.quadrotor.env import Quadrotor, QuadrotorConfig, QuadrotorPhysics
from sims.quadrotor.randomize import PARAMETER_SETS
from sims.quadrotor.reward import RewardWeights, curriculum_step, curriculum_weights, reward

__all__ = [
    "PARAMETER_SETS",
    "Quadrotor",
    "QuadrotorConfig",
    "QuadrotorPhysics",
    "RewardWeights",
    "curriculum_step",
    "curriculum_weights",
    "reward",
]
