"""Parameter sets for the pendulum: training variations and a held-out set outside them."""

from robotrl.envs.randomize import Range

PARAMETER_SETS = {
    "train": {"mass": Range(0.8, 1.2), "length": Range(0.8, 1.2)},
    "heldout": {"mass": Range(1.2, 1.4), "length": Range(1.2, 1.4)},
}
