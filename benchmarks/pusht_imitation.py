"""Diffusion-policy imitation on Push-T from the scripted expert: state or image observations.

The first stage of ``benchmarks/rl100_study.py`` on its own, for either encoder: demonstrations
from the scripted expert (``sims/pusht/expert.py``), DDPM training, and the K-step DDIM
policy's success rate on ``--episodes`` evaluation episodes, every ``--eval-every`` updates.
The image policy sees 96x96 renders (two frames) plus the pusher's position; on this 2-core
CPU its CNN makes an update about ten times as costly as the state policy's.

Results: ``benchmarks/out/pusht_imitation_<encoder>.json``.
Run: ``python -m benchmarks.pusht_imitation --encoder image --steps 6000``.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp

from benchmarks.common import machine, save


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", choices=("state", "image"), default="image")
    parser.add_argument("--demos", type=int, default=100)
    parser.add_argument("--steps", type=int, default=6_000)
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument(
        "--rate-only",
        type=int,
        default=0,
        metavar="N",
        help="only time N updates in 3 chunks (no evaluation); prints updates/s after the first",
    )
    args = parser.parse_args([] if argv is None else argv)

    from policies.diffusion import data
    from policies.diffusion.policy import DiffusionConfig, DiffusionPolicy
    from robotrl.train import rl100
    from sims.pusht.env import PushT, PushTConfig
    from sims.pusht.expert import collect_demonstrations

    t0 = time.perf_counter()
    raw = collect_demonstrations(jax.random.PRNGKey(0), args.demos, obs=args.encoder)
    demos = data.from_episodes(raw["obs"], raw["actions"], raw["lengths"])
    cfg = DiffusionConfig(encoder=args.encoder, horizon=16, action_steps=8, batch_size=args.batch)
    policy = DiffusionPolicy(cfg, state_dim=5, action_dim=2)
    idx = jnp.arange(demos.size)
    obs, actions = data.windows(demos._replace(obs={"state": demos.obs["state"]}), idx, 2, 16)
    state = policy.init(
        jax.random.PRNGKey(1), policy.fit_normalizer(demos.obs["state"], obs, actions)
    )
    evaluate = rl100.make_evaluator(PushT(PushTConfig(obs=args.encoder)), policy, args.episodes)
    print(f"{args.demos} demos, {demos.size} steps ({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.rate_only:
        from benchmarks.diffusion_latency import imitation_rate

        rate = imitation_rate(policy, state, demos, args.rate_only, jax.random.PRNGKey(2))
        print(f"{args.encoder}: {rate:.3f} updates/s after compilation (batch {args.batch})")
        return {"updates_per_s": rate}
    rows = []
    for i in range(args.steps // args.eval_every):
        start = time.perf_counter()
        state = rl100.imitate(
            policy,
            state,
            demos,
            jax.random.PRNGKey(10 + i),
            args.eval_every,
            log_every=min(args.eval_every, 500),
            on_log=lambda step, row: None,
        )
        jax.block_until_ready(state.params)
        train_s = time.perf_counter() - start
        result = evaluate(state.ema_params, state.norm, jax.random.PRNGKey(99))
        row = {"updates": (i + 1) * args.eval_every, "train_s": train_s, **result}
        rows.append(row)
        print(row, flush=True)
    report = {
        "args": vars(args),
        "machine": machine(),
        "rows": rows,
        "wall_s": time.perf_counter() - t0,
    }
    save(f"pusht_imitation_{args.encoder}", report)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
