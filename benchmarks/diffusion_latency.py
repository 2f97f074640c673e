"""Diffusion policy speed: inference latency per action chunk (K-step DDIM vs the one-step
student, JAX and numpy) and training throughput (imitation, offline PPO over the denoising
steps), for the Push-T state policy of ``benchmarks/rl100_study.py``.

Latency does not depend on the weights, so the networks are freshly initialised with the
study's configuration; batch 1 is one robot, batch 64 a batch of simulated envs. Each figure is
the median over 5 rounds of a median of 200 back-to-back calls, the variants taking turns
(``_medians_s``); compilation excluded: a controller compiles once at start-up.

The one-step student also runs as its exported C (``rl100.to_bundle``, compiled here, called
through ctypes: one ``policy_step`` per sample, the executed actions of a chunk).

Results: ``benchmarks/out/diffusion_latency.json``. Run: ``python -m benchmarks.diffusion_latency``.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import machine, save


def _medians_s(fns: dict, calls: int = 200, rounds: int = 5) -> dict[str, float]:
    """Seconds per call of each of ``fns``: the median over ``rounds`` of each variant's median
    of ``calls`` back-to-back calls, the variants taking turns round by round. Back to back, a
    variant's weights stay in the cache (a control loop that does nothing else); taking turns,
    every variant sees the same drift of a shared 2-core VM, where sub-millisecond medians of
    separate runs differ by up to 2x."""
    per_round: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            fn()
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            per_round[name].append(float(np.median(times)))
    return {name: float(np.median(t)) for name, t in per_round.items()}


def imitation_rate(policy, state, demos, updates: int, key) -> float:
    """Imitation updates/s: ``updates`` in three chunks; the first compiles, so the rate is over
    the other two (``on_log`` reads each chunk's metrics, which waits for the device)."""
    from robotrl.train import rl100

    elapsed: list[float] = []
    rl100.imitate(
        policy,
        state,
        demos,
        key,
        updates,
        log_every=updates // 3,
        on_log=lambda step, row: elapsed.append(row["timing/elapsed_s"]),
    )
    return 2 * (updates // 3) / (elapsed[-1] - elapsed[0])


def main(argv: list[str] | None = None) -> dict:
    from benchmarks.rl100_study import POLICY, add_student_hidden
    from policies.diffusion import data
    from policies.diffusion.numpy_policy import NumpyDiffusion
    from policies.diffusion.policy import DiffusionConfig, DiffusionPolicy
    from robotrl.algos import diffusion_ppo
    from sims.pusht.expert import collect_demonstrations

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_student_hidden(parser)
    args = parser.parse_args([] if argv is None else argv)
    hidden = tuple(args.student_hidden)
    cfg = DiffusionConfig(**{**POLICY, "student_hidden": hidden})  # the study's policy
    policy = DiffusionPolicy(cfg, state_dim=5, action_dim=2)
    raw = collect_demonstrations(jax.random.PRNGKey(0), 50)
    demos = data.from_episodes(raw["obs"], raw["actions"], raw["lengths"])
    obs, actions = data.windows(demos, jnp.arange(demos.size), cfg.obs_horizon, cfg.horizon)
    norm = policy.fit_normalizer(demos.obs["state"], obs, actions)
    state = policy.init(jax.random.PRNGKey(1), norm)
    params = {**state.params, **policy.init_student(jax.random.PRNGKey(2), state.params)}
    np_policy = NumpyDiffusion.from_jax(policy, params, norm)
    report: dict = {
        "machine": machine(),
        "K": cfg.schedule.inference_steps,
        "student_hidden": list(hidden),
        "latency_ms": {},
    }

    import tempfile

    from firmware_export import CPolicy
    from robotrl.train import rl100
    from sims.pusht.env import PushT

    student_bundle = rl100.to_bundle(
        policy, params, norm, PushT().spec, obs["state"][:16], one_step=True
    )
    c_student = CPolicy.build(student_bundle, tempfile.mkdtemp(prefix="student-c-"))

    k_step = jax.jit(lambda o, k: policy.sample(params, norm, o, k))
    one_step = jax.jit(lambda o, k: policy.sample_one_step(params, norm, o, k))
    for batch in (1, 64):
        o = {"state": obs["state"][:batch]}
        noise = np.random.default_rng(0).standard_normal((batch, cfg.horizon, 2)).astype(np.float32)
        s = np.asarray(o["state"])
        flat = np.ascontiguousarray(s.reshape(batch, -1))
        key = jax.random.PRNGKey(2)
        row = _medians_s(
            {
                "jax_k_step": lambda o=o, k=key: jax.block_until_ready(k_step(o, k)),
                "jax_one_step": lambda o=o, k=key: jax.block_until_ready(one_step(o, k)),
                "numpy_k_step": lambda s=s, z=noise: np_policy.sample(s, z),
                "numpy_one_step": lambda s=s, z=noise: np_policy.sample_one_step(s, z),
                "c_one_step": lambda f=flat: c_student.act(f),
            },
        )
        row = {k: 1e3 * v for k, v in row.items()}
        row["jax_ratio"] = row["jax_k_step"] / row["jax_one_step"]
        row["numpy_ratio"] = row["numpy_k_step"] / row["numpy_one_step"]
        report["latency_ms"][f"batch_{batch}"] = row
        print(f"batch {batch}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)

    # Training throughput.
    imitation = imitation_rate(policy, state, demos, 3000, jax.random.PRNGKey(4))

    ppo_cfg = diffusion_ppo.DiffusionPPOConfig()
    update = jax.jit(diffusion_ppo.make_update(policy, ppo_cfg))
    opt_state = diffusion_ppo.make_optimizer(ppo_cfg).init(params)
    batch_obs = {"state": obs["state"][:256]}

    @jax.jit
    def ppo_step(params, opt_state, key):
        chain = policy.sample_chain(params, norm, batch_obs, key)
        adv = chain.actions[:, 0, 0]
        return update(params, opt_state, norm, batch_obs, chain.xs, chain.log_probs, adv)

    jax.block_until_ready(ppo_step(params, opt_state, jax.random.PRNGKey(5)))
    start = time.perf_counter()
    n = 50
    p, o_s = params, opt_state
    for i in range(n):
        p, o_s, _ = ppo_step(p, o_s, jax.random.PRNGKey(6 + i))
    jax.block_until_ready(p)
    ppo = n / (time.perf_counter() - start)
    report["throughput"] = {
        "imitation_updates_per_s": imitation,
        "imitation_batch": cfg.batch_size,
        "offline_ppo_updates_per_s": ppo,
        "offline_ppo_batch": 256,
    }
    print(f"throughput: {report['throughput']}")
    default = hidden == tuple(POLICY["student_hidden"])
    save("diffusion_latency" + ("" if default else "_student" + "x".join(map(str, hidden))), report)
    return report


def report(data: dict) -> str:
    lines = [
        f"## Diffusion policy latency (Push-T state policy, K = {data['K']}, student "
        f"{' x '.join(map(str, data.get('student_hidden', [])))})",
        "",
        "| batch | JAX K-step ms | JAX 1-step ms | ratio | numpy K-step ms | numpy 1-step ms "
        "| ratio | C 1-step ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in data["latency_ms"].items():
        lines.append(
            f"| {name.split('_')[1]} | {r['jax_k_step']:.3f} | {r['jax_one_step']:.3f} | "
            f"{r['jax_ratio']:.1f}x | {r['numpy_k_step']:.3f} | {r['numpy_one_step']:.3f} | "
            f"{r['numpy_ratio']:.1f}x | {r.get('c_one_step', float('nan')):.3f} |"
        )
    t = data["throughput"]
    lines += [
        "",
        f"Training: imitation {t['imitation_updates_per_s']:.0f} updates/s (batch "
        f"{t['imitation_batch']}); offline PPO over the denoising steps "
        f"{t['offline_ppo_updates_per_s']:.1f} updates/s (batch {t['offline_ppo_batch']}, "
        f"{data['K']} optimiser steps each).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(main(sys.argv[1:])))
