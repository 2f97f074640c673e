"""RC-car racing: a 1/10-scale dynamic bicycle model on closed tracks (FastRLAP, CaRL)."""

from sims.rccar.env import RCCar, RCCarConfig, RCCarPhysics
from sims.rccar.pure_pursuit import pure_pursuit_action
from sims.rccar.randomize import PARAMETER_SETS
from sims.rccar.tracks import HELDOUT_TRACKS, TRACK_NAMES, TRAIN_TRACKS

__all__ = [
    "HELDOUT_TRACKS",
    "PARAMETER_SETS",
    "TRACK_NAMES",
    "TRAIN_TRACKS",
    "RCCar",
    "RCCarConfig",
    "RCCarPhysics",
    "pure_pursuit_action",
]
