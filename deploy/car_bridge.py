"""The simulated RC car behind ROS 2 topics, and the practice's ``Car`` over those topics.

    python -m deploy.car_bridge --track oval          # the car (sims.rccar), lockstep
    robotrl train configs/fastrlap_rccar.yaml --set env.options.car=ros   # practises over ROS

``CarBridge`` hosts a ``deploy.practice.SimCar``. Each ``geometry_msgs/Twist`` on ``cmd``
(``angular.z`` = steering, ``linear.x`` = throttle, both in [-1, 1]) steps the car one control
period and answers with its reading on ``car_state`` (``std_msgs/Float32MultiArray``, labelled:
``x, y, yaw, vx, vy, yaw_rate, steer, crashed, rays``). Lockstep: the simulation advances when
a command arrives, so the learner may take as long as it needs per step. ``~/command``
(``std_msgs/String``): ``start`` answers with the current reading; ``demo <speed>`` drives the
scripted demonstration lap and answers with its path on ``~/demo_path`` (flat x, y pairs).

``RosCar`` is the ``Car`` the practice uses over those topics; ``deploy.practice`` runs the
same code against either car.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

import numpy as np

from deploy.practice import Reading

FIELDS = ("x", "y", "yaw", "vx", "vy", "yaw_rate", "steer", "crashed")


def _reading_message(r: Reading):
    from std_msgs.msg import Float32MultiArray, MultiArrayDimension

    msg = Float32MultiArray()
    dims = [(f, 1) for f in FIELDS] + [("rays", len(r.rays))]
    msg.layout.dim = [MultiArrayDimension(label=n, size=s, stride=s) for n, s in dims]
    msg.data = [float(v) for v in (*r[: len(FIELDS) - 1], float(r.crashed), *r.rays)]
    return msg


def _reading(msg) -> Reading:
    d = np.asarray(msg.data, np.float32)
    n = len(FIELDS)
    return Reading(*(float(v) for v in d[: n - 1]), d[n:].copy(), bool(d[n - 1] > 0.5))


def make_bridge_class():
    from geometry_msgs.msg import Twist
    from rclpy.node import Node
    from std_msgs.msg import Float32MultiArray, String

    from deploy.practice import SimCar

    class CarBridge(Node):
        def __init__(self, track: str = "oval", seed: int = 0, **kwargs):
            super().__init__("robotrl_car_bridge", **kwargs)
            self.car = SimCar(track, seed)
            self.reading = self.car.start()
            self.state_pub = self.create_publisher(Float32MultiArray, "car_state", 10)
            self.path_pub = self.create_publisher(Float32MultiArray, "~/demo_path", 10)
            self.create_subscription(Twist, "cmd", self._on_cmd, 10)
            self.create_subscription(String, "~/command", self._on_command, 10)
            self.steps = 0

        def _on_cmd(self, msg) -> None:
            action = np.array([msg.angular.z, msg.linear.x], np.float32)
            self.reading = self.car.step(action)
            self.steps += 1
            self.state_pub.publish(_reading_message(self.reading))

        def _on_command(self, msg) -> None:
            word, _, arg = msg.data.strip().partition(" ")
            if word == "start":
                self.reading = self.car.start()
                self.state_pub.publish(_reading_message(self.reading))
            elif word == "demo":
                path = self.car.demo_lap(float(arg or 1.0))
                self.path_pub.publish(Float32MultiArray(data=[float(v) for v in path.ravel()]))

    return CarBridge


class RosCar:
    """The practice's ``Car`` over ROS: commands out, readings back, one per control period."""

    def __init__(
        self,
        ctrl_dt: float = 0.1,
        num_rays: int = 9,
        bridge: str = "/robotrl_car_bridge",
        timeout_s: float = 30.0,
        context=None,
    ):
        import rclpy
        from geometry_msgs.msg import Twist
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from std_msgs.msg import Float32MultiArray, String

        if context is None and not rclpy.ok():
            rclpy.init()
        self.ctrl_dt, self.num_rays, self.timeout_s = ctrl_dt, num_rays, timeout_s
        self.node = Node(f"robotrl_practice_{time.monotonic_ns()}", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.inbox: list = []
        self.paths: list = []
        self.node.create_subscription(Float32MultiArray, "car_state", self.inbox.append, 10)
        self.node.create_subscription(
            Float32MultiArray, f"{bridge}/demo_path", self.paths.append, 10
        )
        self.cmd = self.node.create_publisher(Twist, "cmd", 10)
        self.bridge, self.connected = bridge, False
        self.command = self.node.create_publisher(String, f"{bridge}/command", 10)
        self._twist, self._string = Twist, String

    def _connect(self) -> None:
        """Waits until the bridge is discovered both ways: every request is then sent once
        (a repeated step would step the car twice)."""
        deadline = time.monotonic() + self.timeout_s
        topics = ("car_state", self.bridge + "/demo_path")
        while not (
            self.cmd.get_subscription_count() > 0
            and self.command.get_subscription_count() > 0
            and all(self.node.count_publishers(t) > 0 for t in topics)
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no car bridge ({self.bridge}) within {self.timeout_s} s")
            self.executor.spin_once(timeout_sec=0.05)
        self.connected = True

    def _ask(self, box: list, send) -> object:
        if not self.connected:
            self._connect()
        box.clear()
        send()
        deadline = time.monotonic() + self.timeout_s
        while not box:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer from the car within {self.timeout_s} s")
            self.executor.spin_once(timeout_sec=0.01)
        return box.pop(0)

    def start(self) -> Reading:
        msg = self._ask(self.inbox, lambda: self.command.publish(self._string(data="start")))
        return _reading(msg)

    def step(self, action: np.ndarray) -> Reading:
        msg = self._twist()
        msg.angular.z, msg.linear.x = float(action[0]), float(action[1])
        return _reading(self._ask(self.inbox, lambda: self.cmd.publish(msg)))

    def demo_lap(self, speed: float) -> np.ndarray:
        msg = self._ask(
            self.paths, lambda: self.command.publish(self._string(data=f"demo {speed}"))
        )
        return np.asarray(msg.data, np.float32).reshape(-1, 2)

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.car_bridge", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--track", default="oval")
    parser.add_argument("--seed", type=int, default=0)
    args, ros_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=["robotrl", *ros_args], signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node = make_bridge_class()(args.track, args.seed)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)
    finally:
        print(f"car bridge: {node.steps} steps", flush=True)
        node.destroy_node()
        rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
