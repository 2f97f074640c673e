"""The ROS 2 policy node: a bundle, a fixed-rate control loop, and the safety layer.

    robotrl deploy ros --bundle policy.rlb [--backend c] [--ros-args -p rate_hz:=100 ...]
    python -m deploy.ros_node --bundle policy.rlb

Every tick (``rate_hz``, default ``1 / ctrl_dt``; or on every new observation with
``trigger:=observation``, the timer then only acting when observations stop) the latest
observation goes through
``deploy.safety.Guard`` (e-stop latch, watchdog, NaN/Inf and range checks, action clipping and
rate limit) and the action is published. Observations arrive as ``std_msgs/Float32MultiArray``
(fields labelled by ``layout.dim``, assembled by name with ``deploy.observation.Layout``) or
``sensor_msgs/JointState`` (``joint_state_fields``: ``"joint_pos=position,joint_vel=velocity"``);
actions leave as a labelled ``Float32MultiArray`` or a ``geometry_msgs/Twist``
(``twist_fields``: ``"linear.x=throttle,angular.z=steering"``, the RC car). A message that does
not fit the layout is dropped and counted (``bad_message``): the watchdog then takes over.

Operator topics: ``estop`` (``std_msgs/Bool``, true latches the stop), ``reset``
(``std_msgs/Empty``, releases it), ``~/command`` (``std_msgs/String``: ``pause``, ``resume``;
paused publishes the safe action). Diagnostics: ``~/diagnostics`` (``std_msgs/String``, JSON at
``diagnostics_hz``): loop period p50/p99, jitter p50/p99 (|period - nominal|), inference time
p50/p99, ticks, fault counters, state. SIGINT/SIGTERM: the safe action is published once more and
the node exits 0. With ROS's ``use_sim_time:=true`` the node runs on the simulator's
``/clock`` (``robotrl sim-bridge`` publishes it): its rate, watchdog and timing figures are in
simulated seconds, however fast the simulator runs. A bundle that fails its golden-pair
self-test is refused at start (exit 2, one line).
"""

from __future__ import annotations

import argparse
import collections
import json
import signal
import sys
import time
from typing import Any

import numpy as np

from deploy.observation import Layout, LayoutError, parse_mapping
from deploy.policy import BACKENDS, DeployError, LoadedPolicy, load_policy
from deploy.safety import Guard, SafetyConfig, percentile_ms

OBS_TYPES = ("float32_multi_array", "joint_state")
ACTION_TYPES = ("float32_multi_array", "twist")
TWIST_SLOTS = ("linear.x", "linear.y", "linear.z", "angular.x", "angular.y", "angular.z")

# name: (default, help). Lists are comma-separated strings (ROS parameters need a type).
PARAMETERS: dict[str, tuple[Any, str]] = {
    "bundle": ("", "path of the PolicyBundle (.rlb)"),
    "backend": ("numpy", "numpy forward or the exported C (compiled here): numpy | c"),
    "rate_hz": (0.0, "control rate; 0 = 1 / the bundle's ctrl_dt"),
    "trigger": ("timer", "timer: act every tick; observation: act on each new observation"),
    "obs_topic": ("observation", "observation topic"),
    "obs_type": ("float32_multi_array", "float32_multi_array | joint_state"),
    "joint_state_fields": ("", "layout field=position|velocity|effort, comma-separated"),
    "joint_names": ("", "joint order for joint_state, comma-separated (default: as sent)"),
    "action_topic": ("action", "action topic"),
    "action_type": ("float32_multi_array", "float32_multi_array | twist"),
    "twist_fields": ("", "twist slot=action field, comma-separated (twist only)"),
    "watchdog_s": (0.1, "observations older than this give the safe action"),
    "obs_limit": (0.0, "normalised |obs| limit; 0 = the bundle's obs_clip"),
    "max_action_rate": (0.0, "fraction of each action's range per second; 0 = off"),
    "estop_topic": ("estop", "std_msgs/Bool; true latches the e-stop"),
    "reset_topic": ("reset", "std_msgs/Empty; releases the e-stop"),
    "diagnostics_hz": (1.0, "diagnostics publication rate"),
    "self_test_tol": (1e-5, "golden-pair tolerance, head units"),
}


def _split(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def make_node_class():
    """The node class (rclpy imported here, so ``deploy`` imports without ROS)."""
    from geometry_msgs.msg import Twist
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool, Empty, Float32MultiArray, MultiArrayDimension, String

    class PolicyNode(Node):
        def __init__(self, name: str = "robotrl_policy", **kwargs: Any):
            super().__init__(name, **kwargs)
            p = {k: self.declare_parameter(k, v).value for k, (v, _) in PARAMETERS.items()}
            self.params = p
            self.sim_time = bool(self.get_parameter("use_sim_time").value)
            if not p["bundle"]:
                raise DeployError("no bundle: pass --bundle PATH (or -p bundle:=PATH)")
            self.policy: LoadedPolicy = load_policy(
                p["bundle"], p["backend"], float(p["self_test_tol"])
            )
            b = self.policy.bundle
            self.guard = Guard(
                b,
                SafetyConfig(
                    watchdog_s=float(p["watchdog_s"]),
                    obs_limit=float(p["obs_limit"]) or None,
                    max_action_rate=float(p["max_action_rate"]) or None,
                ),
            )
            self.obs_layout = Layout(self.policy.obs_layout)  # one tick's (a chunk's frame)
            self.action_layout = Layout(self.policy.action_layout)
            rate = float(p["rate_hz"]) or 1.0 / b.ctrl_dt
            self.dt = 1.0 / rate
            if p["obs_type"] not in OBS_TYPES:
                raise DeployError(f"obs_type must be one of {OBS_TYPES}, got {p['obs_type']!r}")
            if p["action_type"] not in ACTION_TYPES:
                raise DeployError(
                    f"action_type must be one of {ACTION_TYPES}, got {p['action_type']!r}"
                )
            try:
                self.joint_fields = parse_mapping(_split(p["joint_state_fields"]), "joint_state")
                self.twist_map = self._twist_map(parse_mapping(_split(p["twist_fields"]), "twist"))
            except LayoutError as err:
                raise DeployError(str(err)) from None
            self.joint_names = _split(p["joint_names"])

            self.obs: np.ndarray | None = None
            self.obs_time = -np.inf
            self.faults = self.guard.faults
            self.periods: collections.deque = collections.deque(maxlen=2000)
            self.inference: collections.deque = collections.deque(maxlen=2000)
            self.last_tick: float | None = None
            self.ticks = 0
            self.last_action = self.guard.safe.copy()
            self.last_reason = "start"

            obs_msg = Float32MultiArray if p["obs_type"] == "float32_multi_array" else JointState
            self.create_subscription(obs_msg, p["obs_topic"], self._on_obs, 10)
            self.create_subscription(Bool, p["estop_topic"], self._on_estop, 10)
            self.create_subscription(Empty, p["reset_topic"], lambda _: self.guard.reset(), 10)
            self.create_subscription(String, "~/command", self._on_command, 10)
            action_msg = Twist if p["action_type"] == "twist" else Float32MultiArray
            self.action_pub = self.create_publisher(action_msg, p["action_topic"], 10)
            self.diag_pub = self.create_publisher(String, "~/diagnostics", 10)
            if p["trigger"] not in ("timer", "observation"):
                raise DeployError(f"trigger must be timer or observation, got {p['trigger']!r}")
            # Observation-triggered: the watchdog still runs on the timer.
            self.timer = self.create_timer(self.dt, self._on_timer)
            if float(p["diagnostics_hz"]) > 0:
                self.create_timer(1.0 / float(p["diagnostics_hz"]), self.publish_diagnostics)
            self.get_logger().info(
                f"policy {p['bundle']} ({self.policy.backend}, golden error "
                f"{self.policy.golden_error:.2g}) at {rate:g} Hz: {p['obs_topic']} -> "
                f"{p['action_topic']}"
            )

        # --- messages in ---------------------------------------------------------------------
        def _on_obs(self, msg) -> None:
            try:
                if isinstance(msg, JointState):
                    arrays = {
                        "position": msg.position,
                        "velocity": msg.velocity,
                        "effort": msg.effort,
                    }
                    obs = self.obs_layout.from_joint_state(
                        list(msg.name), arrays, self.joint_fields, self.joint_names
                    )
                else:
                    dims = [(d.label, int(d.size)) for d in msg.layout.dim]
                    obs = self.obs_layout.assemble(dims, msg.data)
            except LayoutError as err:
                self.faults["bad_message"] += 1
                if self.faults["bad_message"] == 1:
                    self.get_logger().error(f"observation dropped: {err}")
                return
            self.obs, self.obs_time = obs, self.now()
            if self.params["trigger"] == "observation":
                self.tick()

        def _on_estop(self, msg) -> None:
            if msg.data:
                self.guard.estop()

        def _on_command(self, msg) -> None:
            command = msg.data.strip().lower()
            if command == "pause":
                self.guard.paused = True
            elif command == "resume":
                self.guard.paused = False
            else:
                self.faults["bad_command"] += 1

        # --- the control loop ----------------------------------------------------------------
        def _act(self, obs: np.ndarray) -> np.ndarray:
            start = time.perf_counter()
            action = self.policy.act(obs)
            self.inference.append(time.perf_counter() - start)
            return action

        def now(self) -> float:
            """Seconds on the node's clock: the system's, or with ``use_sim_time:=true`` the
            simulator's ``/clock`` (the bridge publishes it), so the loop, the watchdog and the
            jitter figures follow simulated time when the simulator runs faster."""
            if self.sim_time:
                return self.get_clock().now().nanoseconds * 1e-9
            return time.monotonic()

        def _on_timer(self) -> None:
            # Observation-triggered nodes act here only when the observations stopped.
            if self.params["trigger"] == "timer" or not (
                self.now() - self.obs_time <= self.guard.cfg.watchdog_s
            ):
                self.tick()

        def tick(self) -> None:
            now = self.now()
            if self.last_tick is not None:
                self.periods.append(now - self.last_tick)
            self.last_tick = now
            action, reason = self.guard.step(self._act, self.obs, now - self.obs_time, self.dt)
            if reason != "ok":
                self.policy.reset()  # a chunking policy starts a fresh history afterwards
            self.publish_action(action)
            self.last_action, self.last_reason = action, reason
            self.ticks += 1

        def publish_action(self, action: np.ndarray) -> None:
            if self.params["action_type"] == "twist":
                msg = Twist()
                for slot, index in self.twist_map.items():
                    group, axis = slot.split(".")
                    setattr(getattr(msg, group), axis, float(action[index]))
            else:
                msg = Float32MultiArray()
                msg.layout.dim = [
                    MultiArrayDimension(label=n, size=s, stride=s)
                    for n, s in self.action_layout.fields
                ]
                msg.data = [float(x) for x in action]
            self.action_pub.publish(msg)

        def _twist_map(self, mapping: dict[str, str]) -> dict[str, int]:
            if self.params["action_type"] != "twist":
                return {}
            if not mapping:
                raise DeployError("action_type twist needs twist_fields (slot=action field)")
            out = {}
            for slot, field in mapping.items():
                if slot not in TWIST_SLOTS:
                    raise DeployError(f"twist slot {slot!r} is not one of {TWIST_SLOTS}")
                sl = self.action_layout.slices.get(field)
                if sl is None or sl.stop - sl.start != 1:
                    raise DeployError(
                        f"twist field {field!r} is not a one-value action field of "
                        f"{self.action_layout.names}"
                    )
                out[slot] = sl.start
            return out

        # --- diagnostics ---------------------------------------------------------------------
        def diagnostics(self) -> dict[str, Any]:
            periods = list(self.periods)
            jitter = [abs(x - self.dt) for x in periods]
            return {
                "ticks": self.ticks,
                "state": "estop"
                if self.guard.estopped
                else ("paused" if self.guard.paused else "running"),
                "last_reason": self.last_reason,
                "period_ms_p50": percentile_ms(periods, 50),
                "period_ms_p99": percentile_ms(periods, 99),
                "jitter_ms_p50": percentile_ms(jitter, 50),
                "jitter_ms_p99": percentile_ms(jitter, 99),
                "inference_ms_p50": percentile_ms(list(self.inference), 50),
                "inference_ms_p99": percentile_ms(list(self.inference), 99),
                "faults": dict(self.faults),
                "backend": self.policy.backend,
            }

        def publish_diagnostics(self) -> None:
            self.diag_pub.publish(String(data=json.dumps(self.diagnostics())))

        def stop(self) -> None:
            """Clean shutdown: the loop stops and the safe action goes out once more."""
            self.timer.cancel()
            self.publish_action(self.guard.safe)
            self.publish_diagnostics()

    return PolicyNode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="robotrl deploy ros",
        description=__doc__.splitlines()[0],
        epilog="ROS parameters: " + "; ".join(f"{k}: {h}" for k, (_, h) in PARAMETERS.items()),
    )
    parser.add_argument("--bundle", help="PolicyBundle (.rlb) to run")
    parser.add_argument("--backend", choices=BACKENDS, help="numpy (default) or c")
    args, ros_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter
        from rclpy.signals import SignalHandlerOptions
    except ImportError as err:
        print(
            f"robotrl deploy: error: ROS 2 is not installed ({err}): pip install -e '.[ros]'",
            file=sys.stderr,
        )
        return 2
    overrides = [
        Parameter(k, value=v)
        for k, v in (("bundle", args.bundle), ("backend", args.backend))
        if v is not None
    ]
    rclpy.init(args=["robotrl", *ros_args], signal_handler_options=SignalHandlerOptions.NO)
    stop = {"signal": None}

    def on_signal(signum, _frame) -> None:
        stop["signal"] = signum

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    node = None
    try:
        node = make_node_class()(parameter_overrides=overrides)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while stop["signal"] is None and rclpy.ok():
            executor.spin_once(timeout_sec=0.05)
        node.stop()
        executor.spin_once(timeout_sec=0.05)
        diag = node.diagnostics()
        print(
            f"robotrl deploy: stopped by signal {stop['signal']} after {diag['ticks']} ticks; "
            f"faults {diag['faults']}",
            flush=True,
        )
        return 0
    except DeployError as err:
        print(f"robotrl deploy: error: {err}", file=sys.stderr)
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main())
