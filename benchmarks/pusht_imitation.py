"""Diffusion-policy imitation on Push-T from the scripted expert: state or image observations.

The first stage of ``benchmarks/rl100_study.py`` on its own, for either encoder: demonstrations
from the scripted expert (``sims/pusht/expert.py``), DDPM training, and the K-step DDIM
policy's success rate on ``--episodes`` evaluation episodes, every ``--eval-every`` updates.
The policy is the RL-100 study's (``benchmarks/rl100_study.py``'s ``POLICY``); the image
policy sees a 96x96 render plus the pusher's position instead of the state.

``--pretrain-encoder N`` (image): privileged state supervision. The CNN trunk first learns, in
``N`` updates, to regress the state from the demonstration frames (``rl100.pretrain_encoder``;
its error is measured on ``--heldout`` expert episodes it never saw), then imitation keeps it
frozen and trains the MLP after it and the noise network on its features of every frame,
computed once (``rl100.frame_demos``). The policy that acts sees only the image and the
pusher's position. Run: ``--encoder image --demos 300 --batch 256 --pretrain-encoder 6000
--no-augment --steps 80000 --eval-every 20000 --episodes 100``.

Results: ``benchmarks/out/pusht_imitation_<encoder>.json`` (``_pretrained`` appended with
``--pretrain-encoder``).
Run: ``python -m benchmarks.pusht_imitation --encoder image --steps 6000``. The state policy's
ablation in the README: ``--encoder state --demos 300 --batch 256 --steps 20000 --eval-every
20000 --episodes 100`` with ``--obs-horizon``, ``--action-steps`` and ``--state-hidden``.
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
    parser.add_argument("--obs-horizon", type=int, default=None, help="To (default: the study's)")
    parser.add_argument("--action-steps", type=int, default=None, help="E (default: the study's)")
    parser.add_argument(
        "--state-hidden",
        type=int,
        nargs="*",
        default=None,
        help="state encoder MLP; no values: the flat history (default: the study's)",
    )
    parser.add_argument(
        "--image-hidden",
        type=int,
        nargs="*",
        default=None,
        help="image encoder MLP after the CNN (default: the study's state encoder MLP with "
        "--pretrain-encoder, none without)",
    )
    parser.add_argument(
        "--pretrain-encoder",
        type=int,
        default=0,
        metavar="N",
        help="image: N updates of privileged state regression, then the CNN frozen",
    )
    parser.add_argument("--pretrain-batch", type=int, default=64)
    parser.add_argument(
        "--no-augment", action="store_true", help="image: no random shift in training"
    )
    parser.add_argument("--heldout", type=int, default=30, help="episodes to measure it on")
    parser.add_argument(
        "--action-noise", type=float, default=0.0, help="px, DART noise in the demonstrations"
    )
    parser.add_argument(
        "--rate-only",
        type=int,
        default=0,
        metavar="N",
        help="only time N updates in 3 chunks (no evaluation); prints updates/s after the first",
    )
    args = parser.parse_args([] if argv is None else argv)
    pretrain = args.pretrain_encoder > 0
    if pretrain and args.encoder != "image":
        parser.error("--pretrain-encoder trains the image encoder: needs --encoder image")

    from benchmarks.rl100_study import POLICY
    from policies.diffusion import data
    from policies.diffusion.policy import DiffusionConfig, DiffusionPolicy
    from robotrl.train import rl100
    from sims.pusht.env import PushT, PushTConfig
    from sims.pusht.expert import collect_demonstrations

    t0 = time.perf_counter()
    raw = collect_demonstrations(
        jax.random.PRNGKey(0), args.demos, obs=args.encoder, action_noise=args.action_noise
    )
    demos = data.from_episodes(raw["obs"], raw["actions"], raw["lengths"])
    chosen = {
        "obs_horizon": args.obs_horizon,
        "action_steps": args.action_steps,
        "state_hidden": None if args.state_hidden is None else tuple(args.state_hidden),
        "image_hidden": None if args.image_hidden is None else tuple(args.image_hidden),
    }
    if pretrain and args.image_hidden is None:
        chosen["image_hidden"] = chosen.get("state_hidden") or POLICY["state_hidden"]
    chosen = {k: v for k, v in chosen.items() if v is not None}
    cfg = DiffusionConfig(
        **{**POLICY, **chosen},
        encoder=args.encoder,
        batch_size=args.batch,
        freeze_encoder=pretrain,
        augment=not args.no_augment,
    )
    policy = DiffusionPolicy(cfg, state_dim=5, action_dim=2)
    idx = jnp.arange(demos.size)
    states = demos._replace(obs={"state": demos.obs["state"]})
    obs, actions = data.windows(states, idx, cfg.obs_horizon, cfg.horizon)
    state = policy.init(
        jax.random.PRNGKey(1), policy.fit_normalizer(demos.obs["state"], obs, actions)
    )
    evaluate = rl100.make_evaluator(PushT(PushTConfig(obs=args.encoder)), policy, args.episodes)
    print(f"{cfg}", flush=True)
    print(f"{args.demos} demos, {demos.size} steps ({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.rate_only:
        from benchmarks.diffusion_latency import imitation_rate

        rate = imitation_rate(policy, state, demos, args.rate_only, jax.random.PRNGKey(2))
        print(f"{args.encoder}: {rate:.3f} updates/s after compilation (batch {args.batch})")
        return {"updates_per_s": rate}
    pretrained = {}
    if pretrain:
        state, pretrained = pretrain_encoder(args, policy, state, demos)
        demos = rl100.frame_demos(policy, state.params, demos)
    rows = []
    for i in range(args.steps // args.eval_every):
        start = time.perf_counter()
        state = rl100.imitate(
            policy,
            state,
            demos,
            jax.random.PRNGKey(10 + i),
            args.eval_every,
            log_every=min(args.eval_every, 1000),
            on_log=lambda step, row: None,
        )
        jax.block_until_ready(state.params)
        train_s = time.perf_counter() - start
        result = evaluate(state.ema_params, state.norm, jax.random.PRNGKey(99))
        row = {
            "updates": (i + 1) * args.eval_every,
            "train_s": train_s,
            "updates_per_s": args.eval_every / train_s,
            **result,
        }
        rows.append(row)
        print(row, flush=True)
    report = {
        "args": vars(args),
        "machine": machine(),
        "pretrain": pretrained,
        "rows": rows,
        "wall_s": time.perf_counter() - t0,
    }
    save(f"pusht_imitation_{args.encoder}{'_pretrained' if pretrain else ''}", report)
    return report


def pretrain_encoder(args, policy, state, demos) -> tuple:
    """Privileged state regression of the image trunk, measured on ``args.heldout`` expert
    episodes of other starts: mean errors of the pusher and block positions (px, Euclidean) and
    of the block angle (degrees, wrapped). Returns the state (trunk trained) and the figures."""
    import numpy as np

    from policies.diffusion import data
    from robotrl.train import rl100
    from sims.pusht.expert import collect_demonstrations

    raw = collect_demonstrations(jax.random.PRNGKey(7), args.heldout, obs="image")
    held = data.from_episodes(raw["obs"], raw["actions"], raw["lengths"])

    true = np.asarray(held.obs["state"])

    def errors(pred):
        turn = (pred[:, 4] - true[:, 4] + np.pi) % (2 * np.pi) - np.pi
        return {
            "agent_px": float(np.linalg.norm(pred[:, :2] - true[:, :2], axis=1).mean()),
            "block_px": float(np.linalg.norm(pred[:, 2:4] - true[:, 2:4], axis=1).mean()),
            "angle_deg": float(np.degrees(np.abs(turn)).mean()),
        }

    # The baseline: always the training frames' mean state (circular mean of the angle).
    train = np.asarray(demos.obs["state"])
    mean = np.append(train[:, :4].mean(0), np.angle(np.exp(1j * train[:, 4]).mean()))
    start = time.perf_counter()
    state, head = rl100.pretrain_encoder(
        policy,
        state,
        demos,
        jax.random.PRNGKey(3),
        args.pretrain_encoder,
        angles=(4,),
        batch_size=args.pretrain_batch,
        on_log=lambda step, row: print(f"pretrain {step}: {row}", flush=True),
    )
    jax.block_until_ready(state.params)
    train_s = time.perf_counter() - start
    seen = rl100.predict_state(policy, state.params, head, state.norm, held.obs["pixels"], (4,))
    out = {
        "updates": args.pretrain_encoder,
        "train_s": train_s,
        "updates_per_s": args.pretrain_encoder / train_s,
        "heldout_frames": held.size,
        "heldout_error_of_the_mean_state": errors(np.broadcast_to(mean, true.shape)),
        "heldout_error": errors(np.asarray(seen)),
    }
    print(out, flush=True)
    return state, out


if __name__ == "__main__":
    main(sys.argv[1:])
