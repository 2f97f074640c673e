"""Parameter sets for the quadrotor (names are keys of ``Quadrotor.default_params``).

"train" follows RLtools' domain randomisation ranges in spirit (mass, inertia, thrust and torque
constants, motor time constant, arm length within +-10-20%); "heldout" lies outside them:
heavier/lighter vehicles, slower motors, weaker thrust and twice the disturbance.
"""

from robotrl.envs.randomize import Range

PARAMETER_SETS = {
    "train": {
        "mass": Range(0.9, 1.1),
        "inertia": Range(0.85, 1.15),
        "arm_length": Range(0.95, 1.05),
        "thrust_constant": Range(0.9, 1.1),
        "torque_constant": Range(0.85, 1.15),
        "motor_time_constant": Range(0.8, 1.2),
    },
    "heldout": {
        "mass": Range(1.1, 1.25),
        "inertia": Range(1.15, 1.35),
        "arm_length": Range(0.9, 0.95),
        "thrust_constant": Range(0.8, 0.9),
        "torque_constant": Range(1.15, 1.3),
        "motor_time_constant": Range(1.2, 1.5),
        "disturbance_force_std": Range(1.5, 2.0),
        "disturbance_torque_std": Range(1.5, 2.0),
    },
}
