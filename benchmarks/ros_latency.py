"""The ROS 2 policy node's timing on this machine, over real DDS on loopback.

A quadrotor-shaped bundle (configs/ppo_quadrotor.yaml's actor: the 146-value observation with
its 32-action history, [64, 64] tanh, 4 rotor commands; freshly initialised, as timing does not
depend on the weights) runs in the node as its own process, with the numpy forward and with the
exported C:

1. control loop at 100 Hz (timer), observations published at 100 Hz by this process for
   ``--seconds``: loop period and jitter (|period - 10 ms|) p50/p99 and inference time p50/p99,
   from the node's own diagnostics;
2. observation to action: the node acts on each new observation (``trigger:=observation``);
   this process publishes distinct observations at 100 Hz and times each until the action
   computed from it arrives (matched by value): DDS both ways, assembly, safety checks and
   inference, p50/p99.

Run: ``python -m benchmarks.ros_latency`` (results: ``benchmarks/out/ros_latency.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine, save


def quad_bundle(path: Path):
    import jax

    from robotrl import experiment
    from robotrl.export import bundle_from_state

    cfg = experiment.load_config("configs/ppo_quadrotor.yaml", [])
    exp = experiment.Experiment(cfg)
    state = exp.algo.init(jax.random.PRNGKey(0))
    golden = np.random.default_rng(0).normal(size=(16, exp.spec.obs_dim)).astype(np.float32)
    bundle = bundle_from_state(exp.algo, state, exp.spec, golden, source={"run": "ros_latency"})
    bundle.save(path)
    return bundle


def run_node(bundle_path: Path, backend: str, domain: int, *params: str) -> subprocess.Popen:
    args = [
        sys.executable,
        "-m",
        "deploy.ros_node",
        "--bundle",
        str(bundle_path),
        "--backend",
        backend,
        "--ros-args",
        "-p",
        "diagnostics_hz:=2.0",
    ]
    for p in params:
        args += ["-p", p]
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain)}
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def measure(bundle, bundle_path: Path, backend: str, seconds: float, domain: int) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from std_msgs.msg import Float32MultiArray, MultiArrayDimension

    from deploy.observation import labelled

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    peer = Node("latency_peer", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(peer)
    rng = np.random.default_rng(1)
    mean, std = bundle.obs_mean, bundle.obs_std
    result: dict = {}

    def message(obs):
        dims, data = labelled(bundle.obs_layout, obs)
        msg = Float32MultiArray()
        msg.layout.dim = [MultiArrayDimension(label=n, size=s, stride=s) for n, s in dims]
        msg.data = data
        return msg

    def draw():
        base = np.zeros(bundle.obs_dim, np.float32) if mean is None else mean
        scale = np.ones(bundle.obs_dim, np.float32) if std is None else std
        return (base + scale * rng.uniform(-1, 1, bundle.obs_dim)).astype(np.float32)

    for mode in ("timer", "observation"):
        last, lat, sent = _one_mode(
            peer, executor, bundle, (bundle_path, backend, domain), mode, seconds, draw, message
        )
        if mode == "timer":
            keys = ("period_ms_p50", "period_ms_p99", "jitter_ms_p50", "jitter_ms_p99")
            keys += ("inference_ms_p50", "inference_ms_p99", "ticks", "faults")
            result["loop"] = {k: last[k] for k in keys}
        else:
            result["obs_to_action"] = {
                "p50_ms": float(np.percentile(lat, 50)),
                "p99_ms": float(np.percentile(lat, 99)),
                "matched": int(lat.size),
                "sent": sent,
                "inference_ms_p50": last["inference_ms_p50"],
            }
    peer.destroy_node()
    rclpy.shutdown(context=context)
    return result


def _one_mode(peer, executor, bundle, node_args, mode, seconds, draw, message):
    """Runs the node in ``mode`` for ``seconds``; (last diagnostics, latencies ms, sent)."""
    from std_msgs.msg import Float32MultiArray, String

    proc = run_node(
        *node_args,
        f"trigger:={mode}",
        "rate_hz:=100.0",
        "obs_topic:=lat_obs",
        "action_topic:=lat_action",
        "watchdog_s:=0.2",
    )
    diags: list[dict] = []
    sent: dict[int, float] = {}
    expected: list[np.ndarray] = []
    latencies: list[float] = []
    pub = peer.create_publisher(Float32MultiArray, "lat_obs", 10)

    def on_action(msg):
        now = time.perf_counter()
        a = np.asarray(msg.data, np.float32)
        if not expected:
            return
        recent = expected[-20:]
        errs = [float(np.max(np.abs(a - e))) for e in recent]
        j = int(np.argmin(errs))
        idx = len(expected) - len(recent) + j
        if errs[j] < 1e-5 and idx in sent:
            latencies.append(now - sent.pop(idx))

    sub = peer.create_subscription(Float32MultiArray, "lat_action", on_action, 100)
    dsub = peer.create_subscription(
        String, "/robotrl_policy/diagnostics", lambda m: diags.append(json.loads(m.data)), 10
    )
    deadline = time.monotonic() + 60  # the node comes up and connects: its first diagnostics
    while not diags and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    if not diags:
        proc.kill()
        raise SystemExit(f"the node did not start: {proc.communicate()[1][-2000:]}")
    diags.clear()
    start = next_send = time.perf_counter()
    while time.perf_counter() - start < seconds:
        if time.perf_counter() >= next_send:
            obs = draw()
            expected.append(bundle.act(obs[None])[0])
            sent[len(expected) - 1] = time.perf_counter()
            pub.publish(message(obs))
            next_send += 0.01
        executor.spin_once(timeout_sec=max(0.0, min(0.002, next_send - time.perf_counter())))
    end = time.monotonic() + 1.0  # the last diagnostics
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    peer.destroy_subscription(sub)
    peer.destroy_subscription(dsub)
    peer.destroy_publisher(pub)
    return diags[-1], np.asarray(latencies) * 1e3, len(expected)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args([] if argv is None else argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "quad.rlb"
        bundle = quad_bundle(path)
        domain = random.randint(101, 200)
        report = {
            "machine": machine(),
            "seconds": args.seconds,
            "network": f"{bundle.obs_dim} -> [64, 64] tanh -> {bundle.action_dim}",
            "backends": {b: measure(bundle, path, b, args.seconds, domain) for b in ("numpy", "c")},
        }
    save("ros_latency", report)
    print(render(report))
    return report


def render(data: dict) -> str:
    lines = [
        "## ROS 2 policy node: loop timing and observation-to-action latency",
        "",
        f"Quadrotor-shaped bundle ({data['network']}), node in its own process, Fast DDS on "
        f"loopback, {data['seconds']:.0f} s per measurement (`python -m benchmarks.ros_latency`).",
        "",
        "| backend | period p50 / p99 | jitter p50 / p99 | inference p50 / p99 | "
        "obs -> action p50 / p99 |",
        "|---|---|---|---|---|",
    ]
    for name, r in data["backends"].items():
        loop, e2e = r["loop"], r["obs_to_action"]
        lines.append(
            f"| {name} | {loop['period_ms_p50']:.2f} / {loop['period_ms_p99']:.2f} ms | "
            f"{loop['jitter_ms_p50']:.3f} / {loop['jitter_ms_p99']:.3f} ms | "
            f"{loop['inference_ms_p50']:.3f} / {loop['inference_ms_p99']:.3f} ms | "
            f"{e2e['p50_ms']:.2f} / {e2e['p99_ms']:.2f} ms ({e2e['matched']} of {e2e['sent']}) |"
        )
    return "\n".join(lines)


report = render

if __name__ == "__main__":
    main(sys.argv[1:])
