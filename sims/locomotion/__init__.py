"""Gymnasium's v5 MuJoCo locomotion tasks (Hopper, HalfCheetah, Walker2d, Ant) with two backends
behind one task definition (``tasks.py``):

- ``MJXLocomotion`` (``mjx_env.py``): functional, jittable, vmappable MJX env for accelerators;
- ``NativeLocomotionEnv`` (``native_env.py``): a batched host env on native MuJoCo for CPUs,
  step for step gymnasium's env.

``default_backend()`` says which fits the default JAX device ("mjx" on an accelerator, "native" on
a CPU). Both read gymnasium's model XML from the installed package and share ``PARAMETER_SETS``
for domain randomisation.
"""

import os

# Headless machines: mujoco chooses its GL backend when it is first imported.
os.environ.setdefault("MUJOCO_GL", "egl")

from sims.locomotion.mjx_env import MJXLocomotion, make_mjx_env
from sims.locomotion.native_env import NativeLocomotionEnv, make_native_env
from sims.locomotion.randomize import PARAMETER_SETS
from sims.locomotion.tasks import TASKS, LocomotionConfig, LocomotionTask


def default_backend() -> str:
    """``"mjx"`` when JAX's default device is an accelerator, else ``"native"``."""
    import jax

    return "native" if jax.default_backend() == "cpu" else "mjx"


__all__ = [
    "PARAMETER_SETS",
    "TASKS",
    "LocomotionConfig",
    "LocomotionTask",
    "MJXLocomotion",
    "NativeLocomotionEnv",
    "default_backend",
    "make_mjx_env",
    "make_native_env",
]
