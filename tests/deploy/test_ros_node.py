"""The policy node over real DDS on loopback (rclpy, Fast DDS): its actions equal the bundle's,
faults give the safe action, the e-stop latches, bad bundles are refused, the C backend acts
like numpy, joint states and twists map by name, and SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from deploy.observation import labelled
from deploy.policy import DeployError
from policies.bundle import PolicyBundle
from tests.deploy.conftest import Harness, as_array, float_array
from tests.firmware_export.conftest import raw_obs

rclpy = pytest.importorskip("rclpy")

_count = iter(range(10_000))


def _node(ros, bundle_path: str, **params):
    from rclpy.parameter import Parameter

    from deploy.ros_node import make_node_class

    params = {"bundle": bundle_path, "diagnostics_hz": 20.0, **params}
    overrides = [Parameter(k, value=v) for k, v in params.items()]
    name = f"policy_{next(_count)}"
    return make_node_class()(name, context=ros, parameter_overrides=overrides)


def _topics():
    n = next(_count)
    return {
        "obs_topic": f"obs_{n}",
        "action_topic": f"action_{n}",
        "estop_topic": f"estop_{n}",
        "reset_topic": f"reset_{n}",
    }


@pytest.fixture
def harness(ros, quad_bundle):
    """The quadrotor-like bundle at 100 Hz, a 50 ms watchdog; float arrays both ways."""
    from std_msgs.msg import Float32MultiArray

    bundle, path = quad_bundle
    topics = _topics()
    node = _node(ros, path, watchdog_s=0.05, rate_hz=100.0, **topics)
    h = Harness(ros, node)
    h.collect(Float32MultiArray, topics["action_topic"], as_array)
    h.obs_pub = h.publisher(Float32MultiArray, topics["obs_topic"])
    h.topics = topics
    yield bundle, h
    h.close()


def _send(h, bundle, obs, reverse=False):
    dims, data = labelled(bundle.obs_layout, obs)
    if reverse:  # the fields in another order on the wire: the node assembles by name
        chunks = np.split(np.asarray(data), np.cumsum([s for _, s in dims])[:-1])
        dims, data = dims[::-1], np.concatenate(chunks[::-1])
    return lambda: h.obs_pub.publish(float_array(dims, data))


def test_node_action_equals_the_bundles(harness):
    bundle, h = harness
    obs = raw_obs(1, 21)[0]
    h.spin(0.6, every=_send(h, bundle, obs, reverse=True))
    assert len(h.actions) > 20
    expect = bundle.act(obs[None])[0]
    np.testing.assert_allclose(h.actions[-1], expect, atol=1e-6)
    diag = h.diagnostics[-1]
    assert diag["state"] == "running" and diag["ticks"] > 20
    assert 5 < diag["period_ms_p50"] < 20 and diag["inference_ms_p50"] > 0


def test_stale_nan_and_out_of_range_observations_give_the_safe_action(harness):
    bundle, h = harness
    obs = raw_obs(1, 22)[0]
    h.spin(0.3, every=_send(h, bundle, obs))
    np.testing.assert_allclose(h.actions[-1], bundle.act(obs[None])[0], atol=1e-6)
    h.spin(0.3)  # the publisher goes quiet: the watchdog trips after 50 ms
    np.testing.assert_array_equal(h.actions[-1], bundle.safe_action)
    nan = obs.copy()
    nan[4] = np.nan
    h.spin(0.3, every=_send(h, bundle, nan))
    np.testing.assert_array_equal(h.actions[-1], bundle.safe_action)
    far = obs + 1e3 * bundle.obs_std
    h.spin(0.3, every=_send(h, bundle, far))
    np.testing.assert_array_equal(h.actions[-1], bundle.safe_action)
    h.spin(0.3, every=_send(h, bundle, obs))  # and back
    np.testing.assert_allclose(h.actions[-1], bundle.act(obs[None])[0], atol=1e-6)
    faults = h.diagnostics[-1]["faults"]
    assert faults["stale"] > 5 and faults["nonfinite_obs"] > 5 and faults["out_of_range_obs"] > 5


def test_estop_latches_until_reset_and_pause_resumes(harness):
    from std_msgs.msg import Bool, Empty, String

    bundle, h = harness
    obs = raw_obs(1, 23)[0]
    send = _send(h, bundle, obs)
    estop = h.publisher(Bool, h.topics["estop_topic"])
    reset = h.publisher(Empty, h.topics["reset_topic"])
    command = h.publisher(String, f"{h.node.get_fully_qualified_name()}/command")
    h.spin(0.3, every=send)
    h.spin(0.05, every=lambda: (send(), estop.publish(Bool(data=True))))
    h.spin(0.5, every=send)  # observations keep coming; the stop holds
    np.testing.assert_array_equal(h.actions[-1], bundle.safe_action)
    assert h.diagnostics[-1]["state"] == "estop"
    h.spin(0.05, every=lambda: (send(), reset.publish(Empty())))
    h.spin(0.3, every=send)
    np.testing.assert_allclose(h.actions[-1], bundle.act(obs[None])[0], atol=1e-6)
    h.spin(0.1, every=lambda: (send(), command.publish(String(data="pause"))))
    h.spin(0.2, every=send)
    np.testing.assert_array_equal(h.actions[-1], bundle.safe_action)
    h.spin(0.1, every=lambda: (send(), command.publish(String(data="resume"))))
    h.spin(0.2, every=send)
    np.testing.assert_allclose(h.actions[-1], bundle.act(obs[None])[0], atol=1e-6)


def test_c_backend_acts_like_the_numpy_forward(ros, quad_bundle):
    from std_msgs.msg import Float32MultiArray

    bundle, path = quad_bundle
    topics = _topics()
    h = Harness(ros, _node(ros, path, backend="c", **topics))
    h.collect(Float32MultiArray, topics["action_topic"], as_array)
    h.obs_pub = h.publisher(Float32MultiArray, topics["obs_topic"])
    try:
        obs = raw_obs(1, 24)[0]
        h.spin(0.4, every=_send(h, bundle, obs))
        err = np.abs(h.actions[-1] - bundle.act(obs[None])[0]) / np.abs(bundle.action_scale)
        assert err.max() <= 1e-5
        assert h.diagnostics[-1]["backend"] == "c"
    finally:
        h.close()


def test_joint_state_in_and_twist_out_map_by_name(ros, tmp_path):
    """An RC-car-like bundle: wheel/steer joints in a JointState (sent in another joint order),
    throttle and steering out as a Twist."""
    from geometry_msgs.msg import Twist
    from sensor_msgs.msg import JointState

    rng = np.random.default_rng(0)
    bundle = PolicyBundle(
        spec={"layers": [{"op": "dense", "weight": "w", "bias": "b"}], "head": "tanh"},
        params={"w": rng.normal(size=(4, 2)).astype(np.float32), "b": np.zeros(2, np.float32)},
        obs_layout=[{"name": "joint_pos", "size": 2}, {"name": "joint_vel", "size": 2}],
        action_layout=[{"name": "throttle", "size": 1}, {"name": "steering", "size": 1}],
        action_offset=np.zeros(2, np.float32),
        action_scale=np.array([2.0, 0.5], np.float32),
        ctrl_dt=0.02,
        safe_action=np.zeros(2, np.float32),
        golden_obs=rng.normal(size=(4, 4)).astype(np.float32),
    )
    bundle.golden_actions = bundle.act(bundle.golden_obs)
    path = str(bundle.save(tmp_path / "car.rlb"))
    topics = _topics()
    node = _node(
        ros,
        path,
        obs_type="joint_state",
        joint_state_fields="joint_pos=position,joint_vel=velocity",
        joint_names="wheel,steer",
        action_type="twist",
        twist_fields="linear.x=throttle,angular.z=steering",
        **topics,
    )
    h = Harness(ros, node)
    h.collect(Twist, topics["action_topic"], lambda m: np.array([m.linear.x, m.angular.z]))
    pub = h.publisher(JointState, topics["obs_topic"])
    msg = JointState(name=["steer", "wheel"], position=[0.3, -1.2], velocity=[0.5, 2.0])
    try:
        h.spin(0.4, every=lambda: pub.publish(msg))
        obs = np.array([-1.2, 0.3, 2.0, 0.5], np.float32)  # in joint_names order
        np.testing.assert_allclose(h.actions[-1], bundle.act(obs[None])[0], atol=1e-6)
    finally:
        h.close()


def test_bad_bundle_is_refused_with_one_line(quad_bundle, tmp_path, domain_id):
    import dataclasses

    bundle, _ = quad_bundle
    wrong = dataclasses.replace(bundle, golden_actions=bundle.golden_actions + 0.5)
    path = wrong.save(tmp_path / "wrong.rlb")
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id)}
    for target in (str(path), str(tmp_path / "missing.rlb")):
        out = subprocess.run(
            [sys.executable, "-m", "robotrl", "deploy", "ros", "--bundle", target],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("robotrl deploy: error:"), out.stderr
    assert (
        "golden pairs differ"
        in subprocess.run(
            [sys.executable, "-m", "deploy.ros_node", "--bundle", str(path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        ).stderr
    )


def test_sigterm_sends_the_safe_action_and_exits_cleanly(ros, quad_bundle, domain_id):
    from std_msgs.msg import Float32MultiArray

    bundle, path = quad_bundle
    n = next(_count)
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deploy.ros_node",
            "--bundle",
            path,
            "--ros-args",
            "-p",
            f"obs_topic:=obs_sub_{n}",
            "-p",
            f"action_topic:=action_sub_{n}",
            "-p",
            "watchdog_s:=1.0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    peer = Node(f"sigterm_peer_{n}", context=ros)
    executor = SingleThreadedExecutor(context=ros)
    executor.add_node(peer)
    actions = []
    peer.create_subscription(
        Float32MultiArray, f"action_sub_{n}", lambda m: actions.append(as_array(m)), 50
    )
    pub = peer.create_publisher(Float32MultiArray, f"obs_sub_{n}", 10)
    obs = raw_obs(1, 25)[0]
    dims, data = labelled(bundle.obs_layout, obs)
    expect = bundle.act(obs[None])[0]
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            actions and np.allclose(actions[-1], expect, atol=1e-6)
        ):
            pub.publish(float_array(dims, data))
            executor.spin_once(timeout_sec=0.01)
        assert actions and np.allclose(actions[-1], expect, atol=1e-6), proc.poll()
        proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + 10
        while time.monotonic() < end and proc.poll() is None:
            executor.spin_once(timeout_sec=0.01)
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.01)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        executor.remove_node(peer)
        peer.destroy_node()
    assert proc.returncode == 0, err
    assert f"stopped by signal {int(signal.SIGTERM)}" in out
    np.testing.assert_array_equal(actions[-1], bundle.safe_action)


def test_missing_bundle_parameter_fails_clearly(ros):
    with pytest.raises(DeployError, match="no bundle"):
        _node(ros, "")


def test_observation_trigger_answers_every_observation(ros, quad_bundle):
    """``trigger:=observation``: one action per observation, computed from that observation,
    and the watchdog's timer still sends the safe action when observations stop."""
    from std_msgs.msg import Float32MultiArray

    bundle, path = quad_bundle
    topics = _topics()
    node = _node(ros, path, trigger="observation", rate_hz=20.0, watchdog_s=0.1, **topics)
    h = Harness(ros, node)
    h.collect(Float32MultiArray, topics["action_topic"], as_array)
    pub = h.publisher(Float32MultiArray, topics["obs_topic"])
    try:
        h.discover()  # before the first observation goes out: one action answers each
        observations = raw_obs(20, 26)
        for obs in observations:
            dims, data = labelled(bundle.obs_layout, obs)
            pub.publish(float_array(dims, data))
            h.spin(0.01)
        h.spin(0.05)
        got = np.stack(h.actions[-20:])
        np.testing.assert_allclose(got, bundle.act(observations), rtol=1e-6, atol=1e-6)
        h.spin(0.4)
        np.testing.assert_array_equal(h.actions[-1], bundle.safe_action)
    finally:
        h.close()


def test_chunking_bundle_runs_over_ros_one_action_per_tick(ros, chunk_bundle):
    """A diffusion student (2 frames in, a chunk of 2 actions out) in the node: one frame per
    message, labelled with the frame's field names; out goes one action per tick, the chunk's
    actions in turn."""
    from std_msgs.msg import Float32MultiArray

    bundle, path = chunk_bundle
    topics = _topics()
    h = Harness(ros, _node(ros, path, rate_hz=50.0, watchdog_s=0.2, **topics))
    h.collect(Float32MultiArray, topics["action_topic"], as_array)
    pub = h.publisher(Float32MultiArray, topics["obs_topic"])
    frame = np.array([200.0, 300.0, 250.0, 260.0, 1.0], np.float32)
    dims = [("agent_pos", 2), ("block_pos", 2), ("block_angle", 1)]
    try:
        h.spin(0.6, every=lambda: pub.publish(float_array(dims, frame)))
        chunk = bundle.act(np.concatenate([frame, frame])).reshape(2, 2)
        recent = np.stack(h.actions[-10:])
        near = lambda row: np.abs(recent - row).max(axis=1) < 1e-3
        assert np.all(near(chunk[0]) | near(chunk[1]))
        assert near(chunk[0]).any() and near(chunk[1]).any()
    finally:
        h.close()
