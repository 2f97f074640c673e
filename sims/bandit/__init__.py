"""A 2-D one-step bandit where a per-dimension (factorised) Q is misled by suboptimal data."""

from sims.bandit.demos import DEMO_MIX, demonstrations
from sims.bandit.env import PARAMETER_SETS, Bandit2D, Bandit2DConfig

__all__ = ["DEMO_MIX", "PARAMETER_SETS", "Bandit2D", "Bandit2DConfig", "demonstrations"]
