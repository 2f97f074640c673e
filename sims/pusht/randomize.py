"""Parameter sets for Push-T: training variations and a held-out set partly outside them.

Physical: block mass, inertia and centre of gravity, velocity damping times (0 = the benchmark's
quasi-static block), pusher/block friction, PD gains. Visual: colours (RGB offsets in [0, 1]),
camera jitter (offset in workspace px, rotation in rad, scale), brightness and contrast. The
held-out set draws colours, lighting, camera and physics beyond the training ranges (darker
backgrounds, shifted hues, lower contrast, heavier and more sliding blocks, more friction).
"""

from robotrl.envs.randomize import Range

PARAMETER_SETS = {
    "train": {
        "block_mass": Range(0.8, 1.2),
        "block_inertia": Range(0.8, 1.2),
        "block_cog": Range(-4.0, 4.0, "offset"),
        "linear_damping_time": Range(0.0, 0.02, "value"),
        "angular_damping_time": Range(0.0, 0.02, "value"),
        "friction": Range(0.0, 0.3, "value"),
        "kp": Range(0.9, 1.1),
        "kv": Range(0.9, 1.1),
        "background_color": Range(-0.1, 0.0, "offset"),
        "wall_color": Range(-0.1, 0.1, "offset"),
        "goal_color": Range(-0.1, 0.1, "offset"),
        "block_color": Range(-0.1, 0.1, "offset"),
        "agent_color": Range(-0.1, 0.1, "offset"),
        "camera_offset": Range(-6.0, 6.0, "offset"),
        "camera_rotation": Range(-0.03, 0.03, "offset"),
        "camera_scale": Range(0.97, 1.03),
        "brightness": Range(-0.08, 0.08, "offset"),
        "contrast": Range(0.85, 1.15),
    },
    "heldout": {
        "block_mass": Range(1.2, 1.5),
        "block_inertia": Range(1.2, 1.5),
        "block_cog": Range(4.0, 8.0, "offset"),
        "linear_damping_time": Range(0.02, 0.05, "value"),
        "angular_damping_time": Range(0.02, 0.05, "value"),
        "friction": Range(0.3, 0.6, "value"),
        "kp": Range(1.1, 1.2),
        "kv": Range(1.1, 1.2),
        "background_color": Range(-0.45, -0.25, "offset"),
        "wall_color": Range(-0.3, -0.15, "offset"),
        "goal_color": Range(-0.3, -0.15, "offset"),
        "block_color": Range(0.15, 0.3, "offset"),
        "agent_color": Range(0.15, 0.3, "offset"),
        "camera_offset": Range(6.0, 12.0, "offset"),
        "camera_rotation": Range(0.03, 0.08, "offset"),
        "camera_scale": Range(1.03, 1.08),
        "brightness": Range(-0.2, -0.08, "offset"),
        "contrast": Range(0.6, 0.85),
    },
}
