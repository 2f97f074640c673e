#!/usr/bin/env python3
"""L2F (``l2f``, the "Learning to Fly in Seconds" simulator from RLtools): quadrotor env steps
per second of its batched (``vectorN``) Python API, and one-step parity data for robotrl's
quadrotor.

Runs inside the peer venv (.bench-venv with ``l2f``: ``setup_peer_env.sh --with-l2f``). Prints
ONE JSON line on stdout; everything else goes to stderr.

Speed (default): for each ``--batch`` N, ``l2f.vectorN`` with its default environment (the
l2f-2.0 Crazyflie, 16-step action history, 82-dim observation, RK4 at 100 Hz). One env step is
``vector.step`` (RK4 dynamics + post-integration, per-env action-noise sample) followed by
``vector.observe`` (82-dim observation with per-entry noise samples), called from Python on
arrays allocated once, the same action array every step, and a fresh initial state every 500
steps (constant actions diverge otherwise); ``full_*`` rates add ``vector.reward`` and
``vector.terminated`` (what robotrl's step also returns). ``OMP_NUM_THREADS`` should be 1
(BENCHMARKS.md: l2f's OpenMP collapses under contention on this machine); ``--cpu`` pins the
process to one core. Rates are steps / CPU time of the process (``process_time``; the machine
is shared) and steps / wall time.

Parity (``--parity CASES.json``): sets l2f's single-env parameters to the paper's Crazyflie
(the values in the cases file), zero disturbance and noise, and for every case (state, action)
returns l2f's next state after one ``l2f.step``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _peer_common as pc

PEER = "l2f"
BENCH = "quadrotor_steps"


def parse(argv):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--batch", type=int, nargs="+", default=[1, 256, 4096])
    p.add_argument(
        "--env-steps",
        type=int,
        default=400_000,
        help="env steps (batch x steps) per timed repeat, per batch size (default 400k)",
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", type=int, default=None, help="pin the process to this core")
    p.add_argument("--parity", default=None, help="JSON file of parity cases (see the doc)")
    p.add_argument("--timeout", type=float, default=170.0)
    return p.parse_args(argv)


def _rates(run, steps, batch, repeats):
    cpu, wall = [], []
    run(max(1, steps // 10))  # warm-up: caches, page faults
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        run(steps)
        c1, t1 = time.process_time(), time.perf_counter()
        cpu.append(batch * steps / max(c1 - c0, 1e-9))
        wall.append(batch * steps / max(t1 - t0, 1e-9))
    return statistics.median(cpu), statistics.median(wall), cpu


def _batch(l2f, n: int, args) -> dict:
    """Rates of one ``vectorN``."""
    import numpy as np

    vec = l2f.vector_selector[n]
    device = l2f.Device()
    rng, env = vec.VectorRng(), vec.VectorEnvironment()
    params, state, nxt = vec.VectorParameters(), vec.VectorState(), vec.VectorState()
    vec.initialize_rng(device, rng, args.seed)
    vec.initialize_environment(device, env)
    vec.sample_initial_parameters(device, env, params, rng)
    vec.sample_initial_state(device, env, params, state, rng)
    obs = np.zeros((n, env.OBSERVATION_DIM), np.float32)
    rewards, flags = np.zeros(n, np.float32), np.zeros(n, bool)
    actions = np.random.default_rng(args.seed).uniform(-0.2, 0.6, (n, 4)).astype(np.float32)
    pair = [state, nxt]

    def run(k: int, full: bool = False) -> None:
        s, t = pair
        for i in range(k):
            if i % 500 == 499:  # a new episode every 500 steps, as training would
                vec.sample_initial_state(device, env, params, s, rng)
            vec.step(device, env, params, s, actions, t, rng)
            if full:
                vec.reward(device, env, params, s, actions, t, rewards, rng)
                vec.terminated(device, env, params, t, flags, rng)
            s, t = t, s
            vec.observe(device, env, params, s, obs, rng)
        pair[:] = [s, t]

    steps = max(1, args.env_steps // n)
    cpu, wall, all_cpu = _rates(run, steps, n, args.repeats)
    cpu_full, wall_full, _ = _rates(lambda k: run(k, True), steps, n, args.repeats)
    assert np.all(np.isfinite(obs))
    pc.log(f"[l2f] batch {n}: {cpu / 1e6:.2f}M steps/s (cpu), full {cpu_full / 1e6:.2f}M")
    return {
        "steps_per_s_cpu": cpu,
        "steps_per_s_wall": wall,
        "steps_per_s_cpu_all": all_cpu,
        "full_steps_per_s_cpu": cpu_full,
        "full_steps_per_s_wall": wall_full,
        "steps_per_repeat": steps,
        "obs_dim": int(env.OBSERVATION_DIM),
    }


def speed(args) -> dict:
    import l2f

    return {"batches": {str(n): _batch(l2f, n, args) for n in args.batch}}


def parity(args) -> dict:
    import l2f
    import numpy as np

    with open(args.parity) as f:
        cases = json.load(f)
    device, env, params, rng = l2f.Device(), l2f.Environment(), l2f.Parameters(), l2f.Rng()
    l2f.initialize_environment(device, env)
    l2f.initialize_rng(device, rng, args.seed)
    l2f.initial_parameters(device, env, params)
    spec = json.loads(l2f.parameters_to_json(device, env, params))
    d, m = spec["dynamics"], cases["model"]
    arm, kf, km, tau = m["arm_length"], m["thrust_constant"], m["torque_constant"], m["tau"]
    d["rotor_positions"] = [[arm, -arm, 0.0], [-arm, -arm, 0.0], [-arm, arm, 0.0], [arm, arm, 0.0]]
    d["rotor_thrust_coefficients"] = [[0.0, 0.0, kf]] * 4
    d["rotor_torque_constants"] = [km] * 4
    d["rotor_time_constants_rising"] = [tau] * 4
    d["rotor_time_constants_falling"] = [tau] * 4
    d["mass"] = m["mass"]
    d["gravity"] = [0.0, 0.0, -m["gravity"]]
    inertia = m["inertia"]
    d["J"] = [[inertia[i] if i == j else 0.0 for j in range(3)] for i in range(3)]
    d["J_inv"] = [[1.0 / inertia[i] if i == j else 0.0 for j in range(3)] for i in range(3)]
    d["action_limit"] = {"min": 0.0, "max": m["max_rpm"]}
    spec["integration"]["dt"] = m["dt"]
    spec["mdp"]["action_noise"]["normalized_rpm"] = 0.0
    spec["disturbances"]["random_force"]["std"] = 0.0
    spec["disturbances"]["random_torque"]["std"] = 0.0
    l2f.parameters_from_json(device, env, json.dumps(spec), params)
    out = []
    for case in cases["cases"]:
        s, t = l2f.State(), l2f.State()
        l2f.initial_state(device, env, params, s)  # zero disturbance, empty histories
        s.position, s.orientation = case["position"], case["quaternion"]
        s.linear_velocity, s.angular_velocity = case["velocity"], case["angular_velocity"]
        s.rpm = case["rpm"]
        l2f.step(device, env, params, s, [float(a) for a in case["action"]], t, rng)
        out.append(
            {
                "position": t.position.tolist(),
                "quaternion": t.orientation.tolist(),
                "velocity": t.linear_velocity.tolist(),
                "angular_velocity": t.angular_velocity.tolist(),
                "rpm": t.rpm.tolist(),
            }
        )
    assert all(np.all(np.isfinite(v)) for o in out for v in o.values())
    return {"next_states": out}


def main(argv) -> dict:
    args = parse(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    pc.install_hard_timeout(args.timeout)
    result = parity(args) if args.parity else speed(args)
    return {
        "peer": PEER,
        "benchmark": "quadrotor_parity" if args.parity else BENCH,
        **result,
        "versions": pc.package_versions(["l2f", "numpy"]),
        "machine": pc.machine_info(),
    }


if __name__ == "__main__":
    pc.run_main(PEER, BENCH, main)
