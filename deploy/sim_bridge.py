"""The simulator bridge: a sims env as a ROS 2 node, so a policy node flies it over DDS.

    robotrl sim-bridge configs/ppo_quadrotor.yaml --episodes 10 --rate-factor 4
    robotrl sim-bridge quadrotor

Every ``ctrl_dt / rate_factor`` seconds of wall time (real time at factor 1) the env steps with
the latest action received (zero-order hold: a late policy repeats its last command, as on a
robot) and publishes the next observation, labelled with the env's ``obs_layout``, the layout
the bundle carries. The simulation starts once a node publishes on the action topic (a policy
node takes seconds to start; ``--wait-for-policy`` bounds the wait); before the first action
arrives the env's safe action is applied. Actions
are assembled by name from the env's ``action_layout`` and clipped to the action bounds.

The simulated time is published on ``/clock`` (``rosgraph_msgs/Clock``) every step, so a policy
node with ``use_sim_time:=true`` ticks in simulated time at any ``rate_factor``.

Episodes are those of ``firmware_export.closed_loop.fly`` with the same ``(episodes, seed)``:
episode ``i`` starts from the ``i``-th initial state of robotrl's evaluation, and is judged by the
env's own ``success``, so a flight through ROS compares one to one with a flight in process.
Each finished episode is published on ``~/episodes`` (``std_msgs/String`` JSON: index, return,
length, success, final metrics); after the last one the bridge stops. ``~/command``
(``std_msgs/String``): ``mute`` stops publishing observations while the simulation goes on (a
dead sensor: the policy node's watchdog must take over), ``unmute`` resumes.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from deploy.observation import Layout, LayoutError, labelled


class SimEpisodes:
    """The simulation behind the bridge (no ROS): ``step(action) -> obs``, episode by episode."""

    def __init__(self, env: Any, episodes: int, seed: int = 0):
        import jax

        from robotrl.envs import make_eval_env
        from robotrl.envs.core import _episodes

        self.env = env
        self.spec = env.spec
        self.single = _episodes(env, None, 1, None)
        batched = make_eval_env(env, episodes)
        k_reset, _ = jax.random.split(jax.random.PRNGKey(seed))  # as closed_loop.fly
        self.starts = jax.jit(batched.reset)(k_reset)
        self.episodes = episodes
        self.low = np.asarray(self.spec.action_low, np.float32)
        self.high = np.asarray(self.spec.action_high, np.float32)
        self.safe = (
            np.asarray(self.spec.safe_action, np.float32)
            if self.spec.safe_action is not None
            else np.clip(np.zeros_like(self.low), self.low, self.high)
        )
        self.results: list[dict[str, Any]] = []
        self.index = -1
        self._next_episode()
        # Compiled now, not on the bridge's first tick: a compile there stalls the executor
        # (and every node on it) for as long as XLA takes, and the policy sees no observations.
        self._step = jax.jit(self.single.step).lower(self.state, self.safe).compile()

    def _next_episode(self) -> None:
        import jax

        self.index += 1
        if self.index < self.episodes:
            i = self.index
            self.state = jax.tree.map(lambda x: x[i], self.starts)
            self.ret, self.length, self.traces = 0.0, 0, {}

    @property
    def finished(self) -> bool:
        return self.index >= self.episodes

    def observation(self) -> np.ndarray:
        from robotrl.types import actor_obs

        return np.asarray(actor_obs(self.state.obs), np.float32)

    def step(self, action: np.ndarray) -> dict[str, Any] | None:
        """Steps the current episode; returns its summary when it ends (then the next one
        begins), else None."""
        action = np.clip(np.asarray(action, np.float32), self.low, self.high)
        self.state = self._step(self.state, action)
        self.ret += float(self.state.reward)
        self.length += 1
        for name, value in self.state.metrics.items():
            self.traces.setdefault(name, []).append(float(value))
        if not bool(self.state.done):
            return None
        summary = self._judge()
        self.results.append(summary)
        self._next_episode()
        return summary

    def _judge(self) -> dict[str, Any]:
        length = int(self.spec.episode_length)
        traces = {}
        for name, values in self.traces.items():
            values = np.asarray(values)
            held = np.concatenate([values, np.full(length - len(values), values[-1])])
            traces[name] = held[:length, None]
        judge = getattr(getattr(self.env, "unwrapped", self.env), "success", None)
        success = None if judge is None else bool(judge(traces, np.array([self.length]))[0])
        return {
            "episode": self.index,
            "return": self.ret,
            "length": self.length,
            "success": success,
            "final": {k: float(v[-1, 0]) for k, v in traces.items()},
        }


def load_env(target: str, overrides: list[str]) -> Any:
    """A functional sims env from a preset (``.yaml``, its ``env`` section) or a name."""
    from robotrl import experiment

    if target.endswith((".yaml", ".yml")):
        cfg = experiment.load_config(target, overrides).env
    else:
        cfg = experiment.EnvConfig(name=target)
    env, _ = experiment.make_functional_env(cfg)
    return env


def make_bridge_class():
    from rclpy.node import Node
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import Float32MultiArray, MultiArrayDimension, String

    class SimBridge(Node):
        def __init__(
            self,
            sim: SimEpisodes,
            rate_factor: float = 1.0,
            obs_topic: str = "observation",
            action_topic: str = "action",
            name: str = "robotrl_sim_bridge",
            wait_for_policy: bool = True,
            **kwargs: Any,
        ):
            super().__init__(name, **kwargs)
            self.sim = sim
            self.action_topic = action_topic
            # the simulation holds its first state until a policy publishes actions
            self.started = not wait_for_policy
            self.obs_fields = Layout(sim.spec.obs_layout).fields
            self.action_layout = Layout(sim.spec.action_layout)
            self.action = sim.safe.copy()
            self.actions_received = 0
            self.bad_actions = 0
            self.muted = False
            self.obs_pub = self.create_publisher(Float32MultiArray, obs_topic, 10)
            self.episode_pub = self.create_publisher(String, "~/episodes", 10)
            self.clock_pub = self.create_publisher(Clock, "/clock", 10)
            self.sim_steps = 0
            self.create_subscription(Float32MultiArray, action_topic, self._on_action, 10)
            self.create_subscription(String, "~/command", self._on_command, 10)
            self.dt = float(sim.spec.ctrl_dt) / rate_factor
            self.timer = self.create_timer(self.dt, self.tick)
            self.publish_obs()

        def _on_action(self, msg) -> None:
            try:
                dims = [(d.label, int(d.size)) for d in msg.layout.dim]
                action = self.action_layout.assemble(dims, msg.data)
            except LayoutError:
                self.bad_actions += 1
                return
            self.action = action
            self.actions_received += 1

        def _on_command(self, msg) -> None:
            self.muted = {"mute": True, "unmute": False}.get(msg.data.strip(), self.muted)

        def publish_obs(self) -> None:
            if self.muted or self.sim.finished:
                return
            dims, data = labelled(self.obs_fields, self.sim.observation())
            msg = Float32MultiArray()
            msg.layout.dim = [MultiArrayDimension(label=n, size=s, stride=s) for n, s in dims]
            msg.data = data
            self.obs_pub.publish(msg)

        def tick(self) -> None:
            if self.sim.finished:
                self.timer.cancel()
                return
            if not self.started:
                self.started = self.count_publishers(self.action_topic) > 0
                if not self.started:
                    return
            summary = self.sim.step(self.action)
            self.sim_steps += 1
            ns = self.sim_steps * round(float(self.sim.spec.ctrl_dt) * 1e9)
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = ns // 10**9, ns % 10**9
            self.clock_pub.publish(msg)
            if summary is not None:
                self.episode_pub.publish(String(data=json.dumps(summary)))
                self.get_logger().info(f"episode {summary}")
            self.publish_obs()

    return SimBridge


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="robotrl sim-bridge", description=__doc__.splitlines()[0])
    parser.add_argument("env", help="a preset (configs/*.yaml) or a sims env name")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="preset overrides, e.g. env.options.task=hover",
    )
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rate-factor",
        type=float,
        default=1.0,
        help="simulated seconds per wall second (1 = real time)",
    )
    parser.add_argument("--obs-topic", default="observation")
    parser.add_argument("--action-topic", default="action")
    parser.add_argument("--out", help="write the episodes' results here (JSON)")
    parser.add_argument(
        "--wait-for-policy",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="start the simulation when a node publishes actions; fail after this long",
    )
    args, ros_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from robotrl.config import ConfigError

    try:
        env = load_env(args.env, args.set)
    except (ConfigError, FileNotFoundError, KeyError) as err:
        print(f"robotrl sim-bridge: error: {err}", file=sys.stderr)
        return 2
    sim = SimEpisodes(env, args.episodes, args.seed)
    rclpy.init(args=["robotrl", *ros_args], signal_handler_options=SignalHandlerOptions.NO)
    stop = {"signal": None}
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _f: stop.update(signal=signum))
    node = make_bridge_class()(sim, args.rate_factor, args.obs_topic, args.action_topic)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    start = time.monotonic()
    waited = False
    try:
        while stop["signal"] is None and not sim.finished:
            executor.spin_once(timeout_sec=0.05)
            if not node.started and time.monotonic() - start > args.wait_for_policy:
                waited = True
                break
    finally:
        node.destroy_node()
        rclpy.shutdown()
    if waited:
        print(
            f"robotrl sim-bridge: error: no node published on {node.action_topic!r} within "
            f"{args.wait_for_policy:g} s (--wait-for-policy); is the policy node running on "
            "this ROS_DOMAIN_ID?",
            file=sys.stderr,
        )
        return 1
    rate = [r["success"] for r in sim.results if r["success"] is not None]
    summary = {
        "episodes": len(sim.results),
        "success_rate": float(np.mean(rate)) if rate else None,
        "mean_return": float(np.mean([r["return"] for r in sim.results])) if sim.results else None,
        "sim_steps": node.sim_steps,
        "actions_received": node.actions_received,
        "wall_s": time.monotonic() - start,
        "results": sim.results,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
