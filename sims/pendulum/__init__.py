"""Pendulum swing-up, identical to gymnasium's ``Pendulum-v1``."""

from sims.pendulum.env import Pendulum, PendulumConfig, randomize_mass_length

__all__ = ["Pendulum", "PendulumConfig", "randomize_mass_length"]
