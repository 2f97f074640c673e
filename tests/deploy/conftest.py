"""ROS 2 over real DDS on loopback: one rclpy context per test module on its own domain, a
helper node to publish observations and collect actions, and bundles to deploy."""

from __future__ import annotations

import json
import os
import random
import time

import numpy as np
import pytest

from policies.bundle import PolicyBundle
from tests.firmware_export.conftest import make_bundle

rclpy = pytest.importorskip("rclpy", reason="ROS 2 is an extra: pip install -e '.[ros]'")


@pytest.fixture(scope="module")
def domain_id():
    return random.Random(os.getpid() + time.time_ns()).randint(1, 100)


@pytest.fixture(scope="module")
def ros(domain_id):
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    yield context
    rclpy.shutdown(context=context)


@pytest.fixture(scope="session")
def quad_bundle(tmp_path_factory) -> tuple[PolicyBundle, str]:
    """A TD3 actor on a quadrotor-like layout, with a normaliser and a safe action."""
    bundle = make_bundle("td3-tanh-64x64-normaliser")
    path = bundle.save(tmp_path_factory.mktemp("bundles") / "quad.rlb")
    return bundle, str(path)


class Harness:
    """The node under test and a peer node on one executor: publish, spin, collect."""

    def __init__(self, context, node):
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from std_msgs.msg import String

        self.node = node
        self.peer = Node("test_peer", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(node)
        self.executor.add_node(self.peer)
        self.actions: list = []
        self.diagnostics: list[dict] = []
        self._endpoints: list = []  # the peer's publishers and subscriptions, until all is up
        self._silent: set[str] = set()  # the peer's subscriptions that have heard nothing yet
        self._subscribe(
            String,
            f"{node.get_fully_qualified_name()}/diagnostics",
            lambda m: self.diagnostics.append(json.loads(m.data)),
            10,
        )

    def _subscribe(self, msg_type, topic: str, on_message, depth: int) -> None:
        def heard(msg):
            self._silent.discard(topic)
            on_message(msg)

        self._silent.add(topic)
        self._endpoints.append(self.peer.create_subscription(msg_type, topic, heard, depth))

    def collect(self, msg_type, topic: str, convert) -> None:
        self._subscribe(msg_type, topic, lambda m: self.actions.append(convert(m)), 50)

    def publisher(self, msg_type, topic: str):
        pub = self.peer.create_publisher(msg_type, topic, 10)
        self._endpoints.append(pub)
        return pub

    def discover(self, timeout: float = 20.0) -> None:
        """Spins until the data path is up: DDS discovery has matched each of the peer's
        endpoints with the node's, at both ends (a reader may know its writer before the writer
        knows the reader, and a writer sends only to readers it knows), and each of the peer's
        subscriptions has heard its first message. On a loaded machine that takes longer than
        any fixed window a test could afford."""
        end = time.monotonic() + timeout
        while unready := self._unready():
            if time.monotonic() > end:
                raise AssertionError(
                    f"the ROS data path was not up within {timeout:.0f} s: {unready}; "
                    f"node ticks {self.node.ticks}"
                )
            self.executor.spin_once(timeout_sec=0.01)
        self._endpoints = []

    def _unready(self) -> list[str]:
        """What is not up yet: endpoints unmatched at either end, then subscriptions not heard."""
        topics = {e.topic_name for e in self._endpoints}
        node_ends = [
            e for e in [*self.node.publishers, *self.node.subscriptions] if e.topic_name in topics
        ]
        ends = [*self._endpoints, *node_ends]
        unmatched = [f"{e.topic_name} unmatched" for e in ends if not _matched(e)]
        return unmatched or [f"{t} silent" for t in sorted(self._silent)]

    def spin(self, seconds: float, every=None, period: float = 0.01) -> None:
        """Spins for ``seconds`` once discovery is done; ``every()`` is called each ``period``
        (publishing)."""
        self.discover()
        end = time.monotonic() + seconds
        next_call = 0.0
        while time.monotonic() < end:
            if every is not None and time.monotonic() >= next_call:
                every()
                next_call = time.monotonic() + period
            self.executor.spin_once(timeout_sec=0.002)

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.executor.remove_node(self.peer)
        self.node.destroy_node()
        self.peer.destroy_node()


def _matched(endpoint) -> bool:
    """A publisher with a subscriber, or a subscription with a publisher."""
    if hasattr(endpoint, "get_subscription_count"):
        return endpoint.get_subscription_count() > 0
    return endpoint.get_publisher_count() > 0


def float_array(dims, data):
    from std_msgs.msg import Float32MultiArray, MultiArrayDimension

    msg = Float32MultiArray()
    msg.layout.dim = [MultiArrayDimension(label=n, size=s, stride=s) for n, s in dims]
    msg.data = [float(x) for x in data]
    return msg


def as_array(msg) -> np.ndarray:
    return np.asarray(msg.data, np.float32)


@pytest.fixture(scope="session")
def chunk_bundle(tmp_path_factory) -> tuple[PolicyBundle, str]:
    """A one-step diffusion student on Push-T as a chunking bundle: 2 frames of 5 values in,
    2 actions of 2 values out, actions relative to the pusher (``rl100.to_bundle``)."""
    import jax
    import jax.numpy as jnp

    from policies.diffusion.policy import DiffusionConfig, DiffusionPolicy, Normalizer
    from robotrl.train import rl100
    from sims.pusht.env import PushT, PushTConfig

    cfg = DiffusionConfig(
        horizon=4,
        action_steps=2,
        width=32,
        depth=1,
        features=8,
        relative_to=(0, 1),
        student_hidden=(32, 32),
    )
    policy = DiffusionPolicy(cfg, state_dim=5, action_dim=2)
    rng = np.random.default_rng(0)
    states = rng.uniform([0, 0, 0, 0, 0], [512, 512, 512, 512, 6.28], (64, 2, 5))
    norm = Normalizer.fit(states.reshape(-1, 5), rng.uniform(-40, 40, (64, 2)))
    teacher = policy.init(jax.random.PRNGKey(0), norm).params
    student = jax.tree.map(
        lambda x: x + 0.05 * jnp.sin(jnp.arange(x.size).reshape(x.shape)),
        policy.init_student(jax.random.PRNGKey(1), teacher),
    )
    spec = PushT(PushTConfig()).spec
    bundle = rl100.to_bundle(policy, student, norm, spec, states[:8], one_step=True)
    path = bundle.save(tmp_path_factory.mktemp("chunk") / "student.rlb")
    return PolicyBundle.load(path), str(path)
