"""Push-T planar pushing (Diffusion Policy's benchmark) in pure JAX, with a scripted expert."""

from sims.pusht.env import PushT, PushTConfig
from sims.pusht.randomize import PARAMETER_SETS

__all__ = ["PARAMETER_SETS", "PushT", "PushTConfig"]
