"""Closed loop over DDS: the trained hover policy (``hover_run``) in the policy node flies the
bridged quadrotor simulator through ROS topics, two processes as on a robot, with the success
it has in process; muting the observations mid-flight makes the node fall back to hover."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest

from policies.bundle import PolicyBundle
from tests.conftest import subprocess_env

pytest.importorskip("rclpy")

EPISODES = 8
FACTOR = 2.0  # simulated seconds per wall second: 8 x 5 s episodes in 20 s


def _env(domain_id):
    return {**subprocess_env(), "ROS_DOMAIN_ID": str(domain_id)}


@pytest.mark.slow
def test_hover_policy_flies_the_bridged_simulator_as_in_process(hover_run, tmp_path, domain_id):
    from deploy.sim_bridge import load_env
    from firmware_export.closed_loop import fly

    _, _, bundle_path = hover_run
    bundle = PolicyBundle.load(bundle_path)
    env = load_env("configs/ppo_quadrotor.yaml", ["env.options.success_tolerance=0.1"])
    in_process = fly(env, bundle.act, EPISODES, seed=0)

    node = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "robotrl",
            "deploy",
            "ros",
            "--bundle",
            bundle_path,
            "--ros-args",
            "-p",
            f"rate_hz:={100 * FACTOR}",
            "-p",
            "watchdog_s:=0.05",
        ],
        env=_env(domain_id),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out = tmp_path / "bridge.json"
    try:
        bridge = subprocess.run(
            [
                sys.executable,
                "-m",
                "robotrl",
                "sim-bridge",
                "configs/ppo_quadrotor.yaml",
                "--set",
                "env.options.success_tolerance=0.1",
                "--episodes",
                str(EPISODES),
                "--rate-factor",
                str(FACTOR),
                "--out",
                str(out),
            ],
            env=_env(domain_id),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        node.send_signal(signal.SIGTERM)
        node_out, node_err = node.communicate(timeout=30)
    assert bridge.returncode == 0, bridge.stderr[-2000:]
    assert node.returncode == 0, node_err[-2000:]
    result = json.loads(out.read_text())
    over_ros = np.array([r["success"] for r in result["results"]])
    print(
        f"hover over ROS: {over_ros.mean():.0%} of {EPISODES} episodes, in process "
        f"{in_process.success_rate:.0%}; {result['actions_received']} actions for "
        f"{result['sim_steps']} sim steps in "
        f"{result['wall_s']:.1f} s; node: {node_out.strip().splitlines()[-1]}"
    )
    assert result["episodes"] == EPISODES
    # The sim steps until each episode ends (a crash ends it early).
    assert result["sim_steps"] == sum(r["length"] for r in result["results"])
    # One action per node tick at the sim's rate (100 Hz x FACTOR); a loaded machine drops a
    # few ticks.
    assert result["actions_received"] >= 0.75 * result["sim_steps"]
    # A tick of transport latency and zero-order hold: the same episodes hover, but a
    # borderline one may flip.
    assert np.mean(over_ros == in_process.success) >= 0.75
    assert abs(over_ros.mean() - in_process.success_rate) <= 0.25


@pytest.mark.slow
def test_node_holds_hover_when_the_observations_stop_mid_flight(hover_run, ros):
    """The bridge stops publishing observations 1.5 s into an episode (a dead sensor): within
    the 50 ms watchdog the node commands the bundle's safe action (hover thrust), every tick,
    and counts the stale ticks."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from std_msgs.msg import Float32MultiArray, String

    from deploy.ros_node import make_node_class
    from deploy.sim_bridge import SimEpisodes, load_env, make_bridge_class

    _, _, bundle_path = hover_run
    bundle = PolicyBundle.load(bundle_path)
    env = load_env("configs/ppo_quadrotor.yaml", [])
    sim = SimEpisodes(env, episodes=1, seed=1)
    bridge = make_bridge_class()(sim, 1.0, "obs_mute", "action_mute", context=ros)
    params = {
        "bundle": bundle_path,
        "obs_topic": "obs_mute",
        "action_topic": "action_mute",
        "watchdog_s": 0.05,
        "diagnostics_hz": 10.0,
    }
    node = make_node_class()(
        "policy_mute",
        context=ros,
        parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
    )
    peer = Node("mute_peer", context=ros)
    mute = peer.create_publisher(String, f"{bridge.get_fully_qualified_name()}/command", 10)
    actions: list = []
    peer.create_subscription(
        Float32MultiArray,
        "action_mute",
        lambda m: actions.append(np.asarray(m.data, np.float32)),
        100,
    )
    executor = SingleThreadedExecutor(context=ros)
    for n in (bridge, node, peer):
        executor.add_node(n)
    import time

    def spin(seconds, until=lambda: False):
        """Spins for ``seconds`` or until ``until()`` holds; the test reads events, not the
        wall clock, so a slow machine makes it slower but not wrong."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not sim.finished and not until():
            executor.spin_once(timeout_sec=0.002)

    try:
        spin(30.0, until=lambda: sim.length >= 100)  # 1 s of simulated flight
        flying = len(actions)
        assert sim.length >= 100 and flying > 20
        assert not np.allclose(actions[-1], bundle.safe_action)
        mute.publish(String(data="mute"))
        spin(10.0, until=lambda: node.faults["stale"] > 0)  # the watchdog's 50 ms pass
        spin(0.1)  # actions already on the wire before the watchdog fired arrive
        after = len(actions)
        # Hover thrust without feedback: the quadrotor drifts and the episode may end (a
        # crash) about half a second later, so ask for 0.3 s of held ticks.
        spin(30.0, until=lambda: len(actions) - after >= 30)
        held = actions[after:]
        assert len(held) >= 30, (len(held), sim.finished)
        assert all(np.array_equal(a, bundle.safe_action) for a in held)
        assert node.faults["stale"] >= len(held)
        print(
            f"muted at step {sim.length - len(held) - 10}: node held hover for "
            f"{len(held)} ticks; the simulated quadrotor is at "
            f"{float(sim.traces['position_error'][-1]):.2f} m from its target"
        )
    finally:
        for n in (bridge, node, peer):
            executor.remove_node(n)
            n.destroy_node()


def test_node_follows_the_simulators_clock(ros, tmp_path):
    """``use_sim_time``: the bridge publishes ``/clock`` and the node's 100 Hz loop ticks once
    per 10 ms of simulated time (not of wall time), and reports its period in simulated time."""
    import time

    import jax
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from deploy.ros_node import make_node_class
    from deploy.sim_bridge import SimEpisodes, load_env, make_bridge_class
    from robotrl import experiment
    from robotrl.export import bundle_from_state

    cfg = experiment.load_config("configs/ppo_quadrotor.yaml", [])
    exp = experiment.Experiment(cfg)
    golden = np.random.default_rng(0).normal(size=(8, exp.spec.obs_dim)).astype(np.float32)
    bundle = bundle_from_state(exp.algo, exp.algo.init(jax.random.PRNGKey(0)), exp.spec, golden)
    path = str(bundle.save(tmp_path / "quad.rlb"))
    sim = SimEpisodes(load_env("configs/ppo_quadrotor.yaml", []), episodes=1)
    bridge = make_bridge_class()(sim, 3.0, "obs_clock", "action_clock", context=ros)
    params = {
        "bundle": path,
        "obs_topic": "obs_clock",
        "action_topic": "action_clock",
        "use_sim_time": True,
        "watchdog_s": 0.05,
    }
    node = make_node_class()(
        "policy_clock",
        context=ros,
        parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
    )
    executor = SingleThreadedExecutor(context=ros)
    executor.add_node(bridge)
    executor.add_node(node)
    try:
        end = time.monotonic() + 2.0
        while time.monotonic() < end and not sim.finished:
            executor.spin_once(timeout_sec=0.002)
        steps, ticks = bridge.sim_steps, node.ticks
        diag = node.diagnostics()
    finally:
        for n in (bridge, node):
            executor.remove_node(n)
            n.destroy_node()
    print(f"{steps} simulated steps, {ticks} node ticks, period p50 {diag['period_ms_p50']:.2f} ms")
    assert steps > 50
    assert 0.8 * steps <= ticks <= 1.2 * steps + 2
    assert abs(diag["period_ms_p50"] - 10.0) < 0.5


def test_bridge_without_a_policy_node_fails_with_one_line(domain_id, tmp_path):
    """No node publishes actions: the simulation never starts, and after ``--wait-for-policy``
    the bridge exits 1 with one error line and writes no results."""
    out = tmp_path / "none.json"
    bridge = subprocess.run(
        [
            sys.executable,
            "-m",
            "robotrl",
            "sim-bridge",
            "quadrotor",
            "--action-topic",
            "nobody_publishes_here",
            "--wait-for-policy",
            "1",
            "--out",
            str(out),
        ],
        env=_env(domain_id),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bridge.returncode == 1
    lines = bridge.stderr.strip().splitlines()
    assert len(lines) == 1 and "no node published on 'nobody_publishes_here'" in lines[0], lines
    assert not out.exists()
