"""Parameter sets for the RC car: training variations and a held-out set partly outside them.

"train" covers plausible differences between 1/10 cars and floors (carpet, concrete, foam or
rubber tyres); "heldout" is a slipperier, heavier, laggier car with a slower servo, beyond the
training ranges (the CAD2RL evaluation idea). Latency is drawn as a value and rounded by the env:
train gives 0 or 1 control steps, heldout 2.
"""

from robotrl.envs.randomize import Range

PARAMETER_SETS = {
    "train": {
        "mass": Range(0.85, 1.15),
        "tire_stiffness_front": Range(0.85, 1.15),
        "tire_stiffness_rear": Range(0.85, 1.15),
        "friction": Range(0.8, 1.1),
        "motor_gain": Range(0.8, 1.2),
        "drag": Range(0.7, 1.3),
        "rolling_resistance": Range(0.7, 1.3),
        "steer_rate": Range(0.8, 1.2),
        "latency": Range(-0.5, 1.49, "value"),  # rounds to 0 or 1
    },
    "heldout": {
        "mass": Range(1.15, 1.3),
        "tire_stiffness_front": Range(0.7, 0.85),
        "tire_stiffness_rear": Range(0.75, 0.9),
        "friction": Range(0.6, 0.8),
        "motor_gain": Range(1.2, 1.4),
        "drag": Range(1.3, 1.6),
        "rolling_resistance": Range(1.3, 1.6),
        "steer_rate": Range(0.6, 0.8),
        "latency": Range(1.5, 2.49, "value"),
    },
}
