"""FastRLAP's practice on the simulated car: checkpoints from the demonstration lap, laps and
their times, crash and stuck detection with automatic recovery (and without), the reward's
sign, and a short practice run through ``robotrl train`` logging the practice metrics."""

from __future__ import annotations

import csv
import dataclasses
import math

import numpy as np
import pytest

from deploy.practice import PracticeConfig, PracticeEnv, checkpoints_from_path


def test_checkpoints_are_evenly_spaced_along_the_demonstrated_path():
    t = np.linspace(0, 2 * np.pi, 2000)
    path = np.stack([5 * np.cos(t), 5 * np.sin(t)], axis=1)  # 31.4 m around
    points = checkpoints_from_path(path, 2.0)
    assert len(points) == 16  # round(31.4 / 2)
    gaps = np.linalg.norm(np.diff(np.vstack([path[:1], points]), axis=0), axis=1)
    np.testing.assert_allclose(gaps, 2 * 5 * np.sin(np.pi / 16), rtol=0.01)  # chords
    np.testing.assert_allclose(points[-1], path[0], atol=1e-3)


@pytest.fixture(scope="module")
def env():
    env = PracticeEnv(PracticeConfig())
    env.reset(0)
    return env


def _drive(env, policy, steps):
    rows = []
    for _ in range(steps):
        out = env.step(policy(env))
        rows.append({k: float(v[0]) for k, v in out.metrics.items()} | {"r": float(out.reward[0])})
    return rows


def test_the_demonstration_driver_laps_the_checkpoints(env):
    """Driven by the scripted pure-pursuit driver, the practice counts laps over its own
    checkpoints, with lap times that match the lap length at the driven speed."""
    car = env.car
    speed = 2.0
    rows = _drive(env, lambda e: np.asarray(car._pursuit(car.state, speed)), 400)
    laps = [r["lap_time"] for r in rows if r["lap"]]
    assert not any(r["crash"] for r in rows)
    assert len(laps) >= 2
    length = float(car.env.tracks.length[0])
    mean_speed = np.mean([r["speed"] for r in rows[100:]])
    assert abs(laps[-1] - length / mean_speed) < 0.25 * laps[-1]
    assert np.mean([r["r"] for r in rows[50:]]) > 0.5 * mean_speed  # toward the goal


def test_crash_and_stuck_trigger_recovery_or_accumulate_without_it():
    straight = lambda e: np.array([0.0, 0.6], np.float32)
    with_recovery = PracticeEnv(PracticeConfig())
    with_recovery.reset(0)
    rows = _drive(with_recovery, straight, 150)
    crashes = [i for i, r in enumerate(rows) if r["crash"]]
    assert crashes, "driving straight must leave the oval"
    assert rows[crashes[0]]["r"] <= -PracticeConfig().failure_cost + 3.0
    assert all(rows[i]["recovering_s"] == pytest.approx(1.0) for i in crashes)
    # Recovery reverses: the car moves again after each crash instead of staying at the wall.
    assert sum(r["stuck"] for r in rows) == 0

    no_recovery = PracticeEnv(PracticeConfig(recovery=False))
    no_recovery.reset(0)
    rows = _drive(no_recovery, straight, 150)
    first = next(i for i, r in enumerate(rows) if r["crash"])
    # Pressed against the wall, the car stays put: stuck on every step once the window fills.
    window = PracticeConfig().stuck_window
    stuck = [r["stuck"] for r in rows[first + window :]]
    assert len(stuck) > 20 and all(stuck)
    assert all(r["recovering_s"] == 0 for r in rows)

    idle = PracticeEnv(PracticeConfig())
    idle.reset(0)
    rows = _drive(idle, lambda e: np.zeros(2, np.float32), 40)
    assert rows[window - 1]["stuck"] == 1.0 and rows[window - 1]["recovering_s"] == 1.0


def test_practice_runs_through_robotrl_train_and_logs_its_metrics(tmp_path):
    from robotrl import experiment

    cfg = experiment.load_config(
        "configs/fastrlap_rccar.yaml",
        [
            "train.total_steps=600",
            "train.learning_starts=500",
            "train.log_every=300",
            "train.checkpoint_every=0",
            "algo.utd=2",
            "algo.batch_size=64",
        ],
    )
    run, _ = experiment.train(cfg, out=tmp_path / "practice")
    with open(run.path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    last = rows[-1]
    for name in ("crash_sum", "lap_sum", "stuck_sum", "recovering_s_sum", "speed"):
        assert math.isfinite(float(last[f"train/env/{name}"])), name
    # SAC updated after learning_starts (its losses are logged), and the bookkeeping
    # window of 500 steps closed once.
    learner = [
        k for k in last if k.startswith("train/") and "/env/" not in k and "episode" not in k
    ]
    assert learner and all(math.isfinite(float(last[k])) for k in learner)
    assert float(last["train/episodes"]) == 1.0


def test_one_car_only():
    with pytest.raises(ValueError, match="one car"):
        PracticeEnv(PracticeConfig(), num_envs=2)
    with pytest.raises(ValueError, match="goal_radius"):
        dataclasses.replace(PracticeConfig(), goal_radius=5.0)


def test_practice_over_ros_is_the_practice_in_process(tmp_path):
    """The same practice code against the car behind ROS topics (``deploy.car_bridge`` in its
    own process, lockstep): the demonstration lap gives the same checkpoints, and a fixed
    action sequence gives the same readings, rewards, crashes and recoveries as in process."""
    import os
    import random
    import subprocess
    import sys

    pytest.importorskip("rclpy")
    import rclpy

    from deploy.car_bridge import RosCar

    domain = random.randint(1, 100)
    env_vars = {**os.environ, "ROS_DOMAIN_ID": str(domain)}
    bridge = subprocess.Popen(
        [sys.executable, "-m", "deploy.car_bridge", "--track", "oval"],
        env=env_vars,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    try:
        over_ros = PracticeEnv(PracticeConfig(), car=RosCar(context=context, timeout_s=60))
        in_process = PracticeEnv(PracticeConfig())
        over_ros.reset(0)
        in_process.reset(0)
        np.testing.assert_allclose(over_ros.checkpoints, in_process.checkpoints, atol=1e-5)
        actions = [np.array([0.3 * math.sin(i / 7), 0.6], np.float32) for i in range(80)]
        for a in actions:
            x, y = over_ros.step(a), in_process.step(a)
            np.testing.assert_allclose(x.obs, y.obs, rtol=1e-5, atol=1e-4)
            np.testing.assert_allclose(x.reward, y.reward, rtol=1e-5, atol=1e-4)
            assert x.metrics["crash"] == y.metrics["crash"]
        assert in_process.totals["crash"] >= 1  # the sequence did meet a wall and recover
        over_ros.close()
    finally:
        rclpy.shutdown(context=context)
        bridge.send_signal(2)
        _, err = bridge.communicate(timeout=30)
    assert bridge.returncode == 0, err[-2000:]


def test_a_frozen_encoder_pretrained_on_other_driving(tmp_path):
    """``pretrain_encoder``: IQL on the scripted driver's noisy laps of another track; its value
    network's hidden layers become the frozen encoder. With ``encoder`` set, the practice's
    observation is the encoder's features of the car's own observation (they never change
    while the car practises), and ``robotrl train`` runs on them."""
    from deploy.practice import Encoder, main
    from robotrl import experiment

    path = tmp_path / "encoder.npz"
    assert (
        main(
            [
                "pretrain-encoder",
                "--out",
                str(path),
                "--tracks",
                "bean",
                "--steps",
                "300",
                "--iql-steps",
                "200",
            ]
        )
        == 0
    )
    encoder = Encoder.load(str(path))
    env = PracticeEnv(PracticeConfig(encoder=str(path)))
    assert env.spec.obs_dim == encoder.out_dim == 256 and encoder.in_dim == 19
    env.reset(0)
    out = env.step(np.array([0.0, 0.5], np.float32))
    np.testing.assert_allclose(out.obs[0], encoder(env.raw_obs()), rtol=1e-6, atol=1e-6)
    assert np.ptp(out.obs[0]) > 0
    cfg = experiment.load_config(
        "configs/fastrlap_rccar.yaml",
        [
            f"env.options.encoder={path}",
            "train.total_steps=300",
            "train.learning_starts=200",
            "train.log_every=300",
            "train.checkpoint_every=0",
            "algo.utd=1",
            "algo.batch_size=32",
        ],
    )
    run, _ = experiment.train(cfg, out=tmp_path / "practice")
    assert run.config()["env"]["options"]["encoder"] == str(path)
    after = Encoder.load(str(path))  # frozen: the file is the encoder, untouched by training
    for (w0, b0), (w1, b1) in zip(encoder.weights, after.weights, strict=True):
        np.testing.assert_array_equal(w0, w1)
        np.testing.assert_array_equal(b0, b1)
    with pytest.raises(ValueError, match="not a practice encoder"):
        PracticeEnv(PracticeConfig(encoder=str(tmp_path / "missing.npz")))
