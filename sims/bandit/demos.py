"""The bandit's suboptimal demonstrations: actions drawn uniformly inside a quadrant chosen with
``DEMO_MIX``'s probabilities (the r = 1 quadrant rare, the r = 0.1 and r = -1 ones common).

``demonstrations`` returns numpy transitions; ``benchmarks/arsq_bandit.py`` writes them as a
dataset folder that ``train.dataset`` reads (``python -m benchmarks.arsq_bandit dataset OUT``).
"""

from __future__ import annotations

import numpy as np

from robotrl.types import Transition
from sims.bandit.env import Bandit2DConfig

# Quadrant (sign of a_0, sign of a_1) -> share of the demonstrations.
DEMO_MIX = {(1, 1): 0.05, (-1, -1): 0.55, (1, -1): 0.20, (-1, 1): 0.20}


def demonstrations(
    count: int,
    seed: int = 0,
    config: Bandit2DConfig | None = None,
    mix: dict[tuple[int, int], float] | None = None,
) -> Transition:
    """``count`` one-step episodes ``[N]`` (numpy): obs ``[N, 1]``, action ``[N, 2]``, the
    quadrant rewards, every step terminated."""
    config = config or Bandit2DConfig()
    mix = DEMO_MIX if mix is None else mix
    rng = np.random.default_rng(seed)
    quadrants = np.array(list(mix), np.float32)  # [Q, 2] signs
    probs = np.array(list(mix.values()), np.float64)
    picks = rng.choice(len(quadrants), size=count, p=probs / probs.sum())
    action = (quadrants[picks] * rng.uniform(0.0, 1.0, (count, 2))).astype(np.float32)
    plus = action >= 0
    reward = np.where(
        plus.all(-1),
        config.optimal_reward,
        np.where((~plus).all(-1), config.common_reward, config.bad_reward),
    ).astype(np.float32)
    obs = np.ones((count, 1), np.float32)
    return Transition(
        obs=obs,
        action=action,
        reward=reward,
        terminated=np.ones(count, bool),
        truncated=np.zeros(count, bool),
        next_obs=obs.copy(),
    )
