"""Parameter sets for the locomotion tasks (both backends), and their numpy sampler.

Names are the keys of ``default_params`` (``sims.locomotion.model``); all are scale factors on
the model's own values, drawn per element (every body, geom, actuator and joint on its own).
"heldout" lies outside "train" in every parameter: heavier bodies, slipperier contacts, weaker
motors, more damping.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from robotrl.envs.randomize import Range

PARAMETER_SETS = {
    "train": {
        "body_mass": Range(0.8, 1.2),
        "geom_friction": Range(0.7, 1.3),
        "actuator_gear": Range(0.9, 1.1),
        "dof_damping": Range(0.8, 1.2),
    },
    "heldout": {
        "body_mass": Range(1.2, 1.4),
        "geom_friction": Range(0.4, 0.7),
        "actuator_gear": Range(0.75, 0.9),
        "dof_damping": Range(1.2, 1.5),
    },
}


def sample_params(
    ranges: Mapping[str, Range], params: dict[str, np.ndarray], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Numpy twin of ``robotrl.envs.randomize.make_randomizer`` for host envs (same modes)."""
    missing = sorted(set(ranges) - set(params))
    if missing:
        raise KeyError(
            f"randomised parameters {missing} are not in the env's params {sorted(params)}"
        )
    out = dict(params)
    for name in sorted(ranges):
        r, value = ranges[name], np.asarray(params[name])
        draw = rng.uniform(r.low, r.high, size=value.shape)
        if r.mode == "scale":
            out[name] = value * draw
        elif r.mode == "offset":
            out[name] = value + draw
        else:
            out[name] = draw
    return out
