"""Pendulum swing-up, identical to gymnasium's ``Pendulum-v1``."""

from sims.pendulum.env import Pendulum, PendulumConfig
from sims.pendulum.randomize import PARAMETER_SETS

__all__ = ["PARAMETER_SETS", "Pendulum", "PendulumConfig"]
