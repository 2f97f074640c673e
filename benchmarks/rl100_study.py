"""RL-100 on Push-T (state observations), stage by stage, with the OPE gate's signature.

All data from the project (nothing downloaded):
  1. imitation: the scripted expert's demonstrations; a diffusion policy (K = 10 DDIM steps)
     trained with the DDPM loss; its success rate over ``--episodes`` evaluation episodes;
  2. offline RL: rollouts of the imitation policy (stochastic sampler) + the demonstrations
     train an IQL critic and a dynamics ensemble; PPO over the denoising steps on dataset
     states, AM-Q scored every ``ope_every`` updates; gated (the reference moves only when the
     score improves by ``--ope-z`` paired standard errors; AM-Q reads a second critic fitted on
     the half of the episodes PPO's critic never sees, ``--ope-critic``, to the mean return,
     ``--ope-expectile``; RL-100: 0 and the PPO critic) and ungated (it
     always moves), both from the same start; at every check
     the candidate's real success is measured too. This stage runs with ``--gate-seeds``
     seeds (its own rollouts, critic, dynamics and PPO noise each) from the one imitation
     policy, for the gate's signature with intervals;
  3. online RL: PPO over the denoising steps with GAE, from the gated offline result;
  4. distillation: a one-step student of the final policy, trained on the demonstration
     states and the states the teacher visits, then ``--dagger-rounds`` rounds that add the
     states the student visits (teacher-labelled); its success (latency:
     ``benchmarks/diffusion_latency.py``; open-loop agreement: ``rl100_distill_check.py``).
Each stage's policy is checkpointed (orbax) and written as a ``PolicyBundle`` (``<stage>.rlb``,
the zero-noise policy: a numpy DDIM program for the K-step stages, a layer program for the
student) under ``benchmarks/out/rl100/``. The student's bundle is exported to C, checked on the
host and on the emulated Cortex-M4 (self-test, agreement with numpy, flash/RAM, instructions per
step), and evaluated in closed loop from zero noise, as deployed.

RL's reward (``--reward``) is Push-T's sparse success by default: 1 at the step that succeeds.
The benchmark's per-step coverage reward pays for hovering near the goal (``--reward coverage``
credits success as absorbing at the maximal reward; ``coverage-raw`` does not).

Results: ``benchmarks/out/rl100_study.json``, plot ``benchmarks/results/rl100_gate.png``
(``--quick`` writes ``rl100_quick*`` instead, so a smoke run never replaces a full one).
Run: ``python -m benchmarks.rl100_study`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import shutil
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import OUT, ROOT, machine, save

RESULTS = ROOT / "benchmarks" / "results"
REWARDS = ("success", "coverage", "coverage-raw")
# The policy of every stage. Push-T's scripted expert is memoryless and reactive, so one
# observation frame and 4 executed actions of each 16-action chunk imitate it best: at 20k
# updates (100 episodes) To 2 / E 8 reached 0.21 success, To 1 / E 8 0.44, To 1 / E 4 0.65,
# To 1 / E 2 0.58; the state MLP encoder (256, 256) raised To 2 / E 8 from 0.04 (flat
# history straight into FiLM) to 0.21.
# The one-step student keeps the encoder, so its MLP is two layers: with three, the float32
# student (encoder included) overflows the STM32F405's 1 MB of flash by 62 KB.
POLICY = dict(
    horizon=16,
    obs_horizon=1,
    action_steps=4,
    state_hidden=(256, 256),
    features=128,
    student_hidden=(256, 256, 256, 256),
)


def add_student_hidden(parser: argparse.ArgumentParser) -> None:
    """``--student-hidden``: the one-step student's MLP (here and in ``diffusion_latency``)."""
    parser.add_argument(
        "--student-hidden",
        type=int,
        nargs="+",
        default=list(POLICY["student_hidden"]),
        help="the one-step student's MLP (default: the study's); past the M4's flash in float32 "
        "its C runs in int8",
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets: a smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--demos", type=int, default=300)
    parser.add_argument("--imitation-steps", type=int, default=60_000)
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes")
    parser.add_argument("--offline-updates", type=int, default=500)
    parser.add_argument("--offline-lr", type=float, default=1e-5, help="RL-100: 1e-5")
    parser.add_argument(
        "--ope-critic",
        choices=("heldout", "independent", "shared"),
        default="heldout",
        help="the critic AM-Q reads: shared (RL-100: the one PPO's advantage reads), "
        "independent (a second critic on a bootstrap resample of the same data) or heldout "
        "(PPO's critic on half the episodes, AM-Q's on the other half)",
    )
    parser.add_argument(
        "--ope-z",
        type=float,
        default=2.0,
        help="accept a candidate when its AM-Q gain beats this many paired standard errors "
        "(RL-100: 0)",
    )
    parser.add_argument(
        "--ope-horizon",
        type=int,
        default=20,
        help="AM-Q's imagined decisions per rollout (RL-100: 20); 1 reads the critic at the "
        "dataset states alone, without the dynamics model",
    )
    parser.add_argument(
        "--ope-expectile",
        type=float,
        default=0.5,
        help="the expectile of AM-Q's own critic (PPO's critic: 0.7); 0.5 fits the mean "
        "return, not an optimistic upper expectile",
    )
    parser.add_argument("--online-iterations", type=int, default=10)
    parser.add_argument("--distill-steps", type=int, default=15_000)
    parser.add_argument("--distill-lr", type=float, default=3e-4)
    add_student_hidden(parser)
    parser.add_argument(
        "--dagger-rounds",
        type=int,
        default=2,
        help="distillation rounds that add the states the one-step student visits (teacher "
        "labels), each --distill-steps more steps",
    )
    parser.add_argument(
        "--reuse-imitation",
        action="store_true",
        help="restore the imitation policy checkpointed by an earlier run with the same seed "
        "and budgets instead of training it again",
    )
    parser.add_argument("--stop-after-offline", action="store_true")
    parser.add_argument(
        "--redo-distillation",
        action="store_true",
        help="keep the stages of the last saved run (its report and online checkpoint) and "
        "run the distillation again",
    )
    parser.add_argument(
        "--reward",
        choices=REWARDS,
        default="success",
        help="RL's reward: success (sparse, 1 at the step that succeeds), coverage (the "
        "benchmark's per-step coverage, success credited as absorbing at the maximal reward), "
        "coverage-raw (per-step coverage alone)",
    )
    parser.add_argument(
        "--gate-seeds",
        type=int,
        default=3,
        help="offline stages (rollouts, critic, dynamics, gated and ungated PPO) run from the "
        "imitation policy with this many seeds; online RL continues from the first",
    )
    args = parser.parse_args([] if argv is None else argv)
    if args.quick:
        args.demos, args.imitation_steps, args.episodes = 20, 2_000, 16
        args.offline_updates, args.online_iterations, args.distill_steps = 100, 2, 500

    from policies.diffusion import data
    from policies.diffusion.policy import DiffusionConfig, DiffusionPolicy
    from robotrl.algos import diffusion_ppo, iql
    from robotrl.algos.dynamics import DynamicsConfig
    from robotrl.runs.checkpoint import CheckpointStore
    from robotrl.train import rl100
    from sims.pusht.env import PushT, PushTConfig
    from sims.pusht.expert import collect_demonstrations

    t0 = time.perf_counter()
    key = jax.random.PRNGKey(args.seed)
    env = PushT(PushTConfig(reward="success" if args.reward == "success" else "coverage"))
    name = "rl100_quick" if args.quick else "rl100_study"
    out_dir = OUT / ("rl100-quick" if args.quick else "rl100")
    report: dict = {"name": name, "args": vars(args), "machine": machine(), "stages": {}}

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", flush=True)

    # Compiled once each; every stage is evaluated on the same episodes.
    eval_key = jax.random.PRNGKey(10_000 + args.seed)

    def evaluate(state, student=None) -> dict:
        if student is None:
            return k_step_eval(state.ema_params, state.norm, eval_key)
        return one_step_eval(student, state.norm, eval_key)

    def checkpoint(stage: str, tree, meta: dict) -> None:
        # A fresh directory per run: orbax keeps an existing step rather than overwrite it.
        shutil.rmtree(out_dir / stage, ignore_errors=True)
        store = CheckpointStore(out_dir / stage, keep=1)
        store.save(0, tree, meta)
        store.close()

    def write_bundle(stage: str, params, norm, one_step: bool = False) -> dict:
        from policies.bundle import PolicyBundle

        golden = obs["state"][:: max(1, obs["state"].shape[0] // 16)][:16]
        source = {"study": name, "stage": stage, "seed": args.seed}
        bundle = rl100.to_bundle(policy, params, norm, env.spec, golden, one_step, source)
        path = bundle.save(out_dir / f"{stage}.rlb")
        err = PolicyBundle.load(path).self_test(atol=1e-3)
        return {
            "bundle": str(path.relative_to(ROOT)),
            "bundle_kb": path.stat().st_size / 1024,
            "bundle_golden_error": err,
        }

    def restore(stage: str, like):
        store = CheckpointStore(out_dir / stage, read_only=True)
        params, meta = store.restore(like)
        store.close()
        return params, meta

    # 1. Imitation ------------------------------------------------------------------------
    k_demo, k_init, k_imit, key = jax.random.split(key, 4)
    demos_raw = collect_demonstrations(k_demo, args.demos, env_config=env.config)
    demos = data.from_episodes(demos_raw["obs"], demos_raw["actions"], demos_raw["lengths"])
    cfg = DiffusionConfig(**{**POLICY, "student_hidden": tuple(args.student_hidden)})
    policy = DiffusionPolicy(cfg, state_dim=5, action_dim=2)
    k_step_eval = rl100.make_evaluator(env, policy, args.episodes)
    one_step_eval = rl100.make_evaluator(env, policy, args.episodes, one_step=True)
    obs, actions = data.windows(demos, jnp.arange(demos.size), cfg.obs_horizon, cfg.horizon)
    norm = policy.fit_normalizer(demos.obs["state"], obs, actions)
    state = policy.init(k_init, norm)
    log(
        f"{args.demos} demonstrations, {demos.size} steps, expert success "
        f"{demos_raw['success'].mean():.3f}; imitation for {args.imitation_steps} steps"
    )
    start = time.perf_counter()
    if args.redo_distillation:
        import json

        previous = json.loads((OUT / f"{name}.json").read_text())
        report["stages"] = {k: v for k, v in previous["stages"].items() if k != "distilled"}
        report["wall_s"] = previous["wall_s"] - previous["stages"]["distilled"].get("wall_s", 0.0)
        params, _ = restore("online", state.ema_params)
        online_state = state.replace(params=params, ema_params=params)
        starts = obs["state"]  # every demonstration step's history [S, To, O]
        k_dist = jax.random.fold_in(key, 4)
        return _distill_stage(
            args,
            report,
            env,
            policy,
            online_state,
            starts,
            evaluate,
            checkpoint,
            write_bundle,
            log,
            k_dist,
            t0,
        )
    if args.reuse_imitation:
        params, meta = restore("imitation", state.ema_params)
        state = state.replace(params=params, ema_params=params)
        imitation = {
            **evaluate(state),
            "train_s": meta["train_s"],
            "updates_per_s": meta["updates_per_s"],
            "reused": True,
        }
    else:
        state = rl100.imitate(policy, state, demos, k_imit, args.imitation_steps, log_every=1000)
        imitation = {
            **evaluate(state),
            "train_s": time.perf_counter() - start,
            "updates_per_s": args.imitation_steps / (time.perf_counter() - start),
        }
        checkpoint("imitation", state.ema_params, {"stage": "imitation", **imitation})
        imitation.update(write_bundle("imitation", state.ema_params, state.norm))
    report["stages"]["imitation"] = imitation
    log(f"imitation: {imitation}")

    # 2. Offline RL -----------------------------------------------------------------------
    k_off_all, key = jax.random.split(key)
    gamma = 0.99
    # Coverage rewards: success ends a Push-T episode, so credit it as absorbing at the maximal
    # reward (1 per step), or the per-step coverage pays more for hovering near the goal than
    # for finishing. The sparse success reward needs no credit.
    terminal = 1.0 / (1.0 - gamma) if args.reward == "coverage" else 0.0
    spec = rl100.chunk_spec(env.spec, cfg.obs_horizon, cfg.action_steps)
    off_cfg = rl100.OfflineConfig(
        critic=iql.IQLConfig(expectile=0.7, gamma=gamma**cfg.action_steps),
        critic_steps=2_000 if args.quick else 20_000,
        dynamics=DynamicsConfig(),
        dynamics_steps=500 if args.quick else 5_000,
        ppo=diffusion_ppo.DiffusionPPOConfig(lr=args.offline_lr),
        updates=args.offline_updates,
        ope_z=args.ope_z,
        ope_horizon=args.ope_horizon,
    )
    starts = obs["state"]  # every demonstration step's history [S, To, O]

    def stochastic_rollouts(params, key):
        def act(hist, k):
            return policy.sample_chain(params, norm, hist, k).actions, ()

        return rl100.rollout(env, act, key, args.demos, cfg.obs_horizon, cfg.action_steps)

    stochastic_rollouts = jax.jit(stochastic_rollouts)

    def real(row, candidate):
        result = evaluate(candidate)
        log(
            f"  update {row['update']}: OPE {row['ope']:.3f} accepted {row['accepted']} "
            f"real success {result['success']:.3f}"
        )
        return {"real_success": result["success"], "real_return": result["return"]}

    def offline_seed(seed: int) -> tuple[dict, object]:
        """Rollouts of the imitation policy, critic, dynamics and gated/ungated PPO, one seed."""
        k_roll, k_critic, k_dyn, k_off, k_ope = jax.random.split(
            jax.random.fold_in(k_off_all, seed), 5
        )
        rollouts = stochastic_rollouts(state.ema_params, k_roll)

        def decisions(demo_episodes, rollout_episodes):
            return rl100.concat(
                rl100.demo_transitions(
                    demo_episodes, norm, cfg.obs_horizon, cfg.action_steps, gamma, terminal
                ),
                rl100.rollout_transitions(
                    rollout_episodes, norm, cfg.action_steps, gamma, terminal
                ),
            )

        transitions = decisions(demos_raw, rollouts)
        k_boot, k_fit = jax.random.split(k_ope)
        ppo_data, ope_data = transitions, None  # shared: AM-Q reads PPO's critic
        if args.ope_critic == "heldout":
            # Whole episodes split in two: PPO's critic never sees the episodes AM-Q's is
            # fitted on, so the errors PPO exploits are not the ones the gate reads.
            first = lambda tree: jax.tree.map(lambda x: x[: x.shape[0] // 2], tree)
            second = lambda tree: jax.tree.map(lambda x: x[x.shape[0] // 2 :], tree)
            ppo_data = decisions(first(demos_raw), first(rollouts))
            ope_data = decisions(second(demos_raw), second(rollouts))
        elif args.ope_critic == "independent":
            # A bootstrap resample: the same episodes, weighted differently.
            n = transitions.reward.shape[0]
            pick = jax.random.randint(k_boot, (n,), 0, n)
            ope_data = jax.tree.map(lambda x: x[pick], transitions)
        critic, critic_metrics = rl100.fit_critic(
            spec, ppo_data, off_cfg.critic, off_cfg.critic_steps, k_critic
        )
        dyn, dyn_state, dyn_metrics = rl100.fit_dynamics(
            transitions, off_cfg.dynamics, off_cfg.dynamics_steps, k_dyn
        )
        log(
            f"seed {seed}: {int(transitions.reward.shape[0])} decisions (rollout success "
            f"{float(rollouts.success.mean()):.3f}); critic {critic_metrics}; dynamics "
            f"{dyn_metrics}"
        )
        ope_q = None  # RL-100: AM-Q reads the critic that PPO's advantage reads
        if ope_data is not None:
            # A second critic with its own initialisation: PPO exploits the first critic's
            # errors, which this one should not share.
            ope_cfg = dataclasses.replace(off_cfg.critic, expectile=args.ope_expectile)
            ope_critic, ope_metrics = rl100.fit_critic(
                spec, ope_data, ope_cfg, off_cfg.critic_steps, k_fit
            )
            ope_q = ope_critic.q
            log(f"seed {seed}: OPE critic {ope_metrics}")
        model = lambda s, a, k: dyn.predict(dyn_state, s, a, k)
        result, gated_state = {"rollout_success": float(rollouts.success.mean())}, None
        for name, gated in (("gated", True), ("ungated", False)):
            log(f"offline PPO, seed {seed}, {name}")
            out = rl100.offline_improve(
                policy,
                state,
                critic,
                model,
                starts,
                dataclasses.replace(off_cfg, gate=gated),
                k_off,
                on_check=real,
                ope_q=ope_q,
            )
            result[name] = {"history": out.history, "final": evaluate(out.policy_state)}
            if gated:
                gated_state = out.policy_state
        return result, gated_state

    first, offline_state = offline_seed(0)  # online RL continues from seed 0's gated policy
    seeds = [first] + [offline_seed(seed)[0] for seed in range(1, args.gate_seeds)]
    report["stages"]["offline"] = {"seeds": seeds}
    gated = first["gated"]
    checkpoint("offline", offline_state.ema_params, {"stage": "offline", **gated["final"]})
    gated.update(write_bundle("offline", offline_state.ema_params, norm))
    log(f"offline (gated reference, seed 0): {gated['final']}")
    log(f"gate over {args.gate_seeds} seeds: {gate_summary(report)}")
    if args.stop_after_offline:
        report["wall_s"] = time.perf_counter() - t0
        tag = f"{args.ope_critic}_e{args.ope_expectile}"
        tag += f"_h{args.ope_horizon}" if args.ope_horizon != 20 else ""
        save(f"{name}_offline_{tag}", report)  # a --quick run never overwrites the study's
        _plot(report, OUT / f"{name}_offline_{tag}.png")
        return report

    # 3. Online RL ------------------------------------------------------------------------
    k_on, k_dist, key = jax.random.split(key, 3)
    online_rows = []

    def on_iteration(i, row, _):
        online_rows.append(row)
        log(f"  online {i}: {row}")

    online_cfg = rl100.OnlineConfig(iterations=args.online_iterations, terminal_value=terminal)
    online_state = rl100.online_rl(env, policy, offline_state, online_cfg, k_on, on_iteration)
    online = {**evaluate(online_state), "iterations": online_rows}
    report["stages"]["online"] = online
    checkpoint("online", online_state.ema_params, {"stage": "online", "success": online["success"]})
    online.update(write_bundle("online", online_state.ema_params, norm))
    log(f"online: success {online['success']}")

    # 4. Distillation ---------------------------------------------------------------------
    return _distill_stage(
        args,
        report,
        env,
        policy,
        online_state,
        starts,
        evaluate,
        checkpoint,
        write_bundle,
        log,
        k_dist,
        t0,
    )


def _distill_stage(
    args,
    report,
    env,
    policy,
    online_state,
    starts,
    evaluate,
    checkpoint,
    write_bundle,
    log,
    key,
    t0,
):
    """Stage 4: the one-step student, trained on the demonstration states and on the states the
    teacher visits itself (its own rollouts: a student trained on demonstration states alone
    meets states it never saw as soon as the teacher's closed loop leaves them), then for
    ``--dagger-rounds`` rounds also on the states the student visits (DAgger: the teacher
    labels them; the student's own small errors lead it where the teacher never goes)."""
    from robotrl.train import rl100

    start = time.perf_counter()
    cfg, norm = policy.cfg, online_state.norm
    k_roll, k_dist = jax.random.split(key)

    @functools.partial(jax.jit, static_argnums=2)
    def visit(params, k, one_step):
        act = rl100.policy_act(policy, params, norm, one_step)
        out = rl100.rollout(env, act, k, args.demos, cfg.obs_horizon, cfg.action_steps)
        return out.obs["state"], out.alive

    def visited(params, k, one_step=False):
        hist, alive = visit(params, k, one_step)
        return hist[np.asarray(alive)]  # [decisions, To, O]

    teacher_visits = visited(online_state.ema_params, k_roll)
    states = jnp.concatenate([starts, teacher_visits], axis=0)
    log(f"distillation on {starts.shape[0]} demonstration + {teacher_visits.shape[0]} visits")
    distill_cfg = rl100.DistillConfig(steps=args.distill_steps, lr=args.distill_lr)
    student, distill_metrics = rl100.distill(policy, online_state, states, distill_cfg, k_dist)
    rounds = [{"round": 0, "states": int(states.shape[0]), **evaluate(online_state, student)}]
    log(f"  distilled, round 0: {rounds[-1]}")
    for r in range(1, args.dagger_rounds + 1):
        k_roll, k_dist = jax.random.split(jax.random.fold_in(key, r))
        states = jnp.concatenate([states, visited(student, k_roll, True)], axis=0)
        student, distill_metrics = rl100.distill(
            policy, online_state, states, distill_cfg, k_dist, init=student
        )
        success = evaluate(online_state, student)
        rounds.append({"round": r, "states": int(states.shape[0]), **success})
        log(f"  DAgger round {r}: {rounds[-1]}")
    online = report["stages"]["online"]
    distilled = {
        **{k: v for k, v in rounds[-1].items() if k not in ("round", "states")},  # the last round's
        **distill_metrics,
        "distill_states": int(states.shape[0]),
        "rounds": rounds,
    }
    checkpoint("distilled", student, {"stage": "distilled", **distilled})
    distilled["kept_fraction"] = distilled["success"] / max(online["success"], 1e-9)
    # As deployed: both policies from zero noise (what their bundles hold).
    eval_key = jax.random.PRNGKey(10_000 + args.seed)
    zero = {
        "teacher": rl100.make_evaluator(env, policy, args.episodes, zero_noise=True)(
            online_state.ema_params, norm, eval_key
        ),
        "student": rl100.make_evaluator(env, policy, args.episodes, True, zero_noise=True)(
            student, norm, eval_key
        ),
    }
    zero["kept_fraction"] = zero["student"]["success"] / max(zero["teacher"]["success"], 1e-9)
    distilled["zero_noise"] = zero
    distilled.update(write_bundle("distilled", student, norm, one_step=True))
    distilled["firmware"] = _firmware(ROOT / distilled["bundle"], states, log, env, args.episodes)
    distilled["wall_s"] = time.perf_counter() - start
    report["stages"]["distilled"] = distilled
    log(f"distilled: {distilled}")

    report["wall_s"] = report.get("wall_s", 0.0) + time.perf_counter() - t0
    save(report["name"], report)
    full = report["name"] == "rl100_study"
    _plot(report, RESULTS / "rl100_gate.png" if full else OUT / "rl100_quick.png")
    return report


def _firmware(path, states, log, env, episodes: int) -> dict:
    """The student's bundle as C: host self-test and agreement, the emulated Cortex-M4's
    self-test, agreement, flash/RAM and instructions per step, and Push-T's success of the
    bundle and of its int8 weights in closed loop, tick by tick as the robot runs it
    (``deploy.policy.ChunkRunner`` over all episodes under ``firmware_export.closed_loop.fly``)."""
    from deploy.policy import ChunkRunner
    from firmware_export import CPolicy, fitting_footprint, footprint, run_on_cortex_m4
    from firmware_export.c_export import describe_network
    from firmware_export.closed_loop import fly
    from firmware_export.quantize import dequantized_bundle
    from policies.bundle import PolicyBundle

    bundle = PolicyBundle.load(path)
    out_dir = path.parent
    flat = np.asarray(states, np.float32).reshape(states.shape[0], -1)
    inputs = flat[:: max(1, flat.shape[0] // 256)][:256]
    expect = bundle.act(inputs)
    host = CPolicy.build(bundle, out_dir / "distilled_c")
    unit = lambda a: float(np.max(np.abs(a - expect) / bundle.action_scale))
    # float32 when it links into the STM32F405's 1 MB of flash, else int8 weights
    quantize, on_m4 = fitting_footprint(bundle, out_dir / "distilled_m4_size")
    int8 = (
        on_m4
        if quantize == "int8"
        else footprint(bundle, out_dir / "distilled_m4_int8", quantize="int8")
    )
    run = run_on_cortex_m4(bundle, inputs, out_dir / "distilled_m4", quantize=quantize)
    result = {
        "network": describe_network(bundle),
        "host_self_test_failures": host.self_test(),
        "host_max_unit_error": unit(host.act(inputs)),
        "m4_quantize": quantize,
        "m4_self_test_failures": run.result.self_test_failures,
        "m4_max_unit_error": unit(run.result.actions),
        "m4_instructions_per_step": run.instructions_per_step,
        "m4_flash_bytes": on_m4["object_no_self_test"]["flash"],
        "m4_ram_bytes": on_m4["object_no_self_test"]["ram"],
        "m4_linked_flash_bytes": on_m4["linked"]["flash"],
        "m4_int8_flash_bytes": int8["object_no_self_test"]["flash"],
    }
    for name, weights in (("float32", bundle), ("int8", dequantized_bundle(bundle))):
        flight = fly(env, ChunkRunner(bundle, weights.act), episodes)
        result[f"closed_loop_success_{name}"] = flight.success_rate
    log(f"firmware: {result}")
    return result


def _acting(history: list[dict], gated: bool) -> list[float]:
    """Real success of the acting (reference) policy after each check: the last accepted
    candidate when gated, every candidate when not."""
    acting, current = [], history[0]
    for r in history:
        current = r if (r["accepted"] or not gated) else current
        acting.append(current["real_success"])
    return acting


def offline_seeds(data: dict) -> list[dict]:
    """The offline stage of every gate seed (seed 0 first); a report from before gate seeds
    holds one seed's stage directly."""
    offline = data["stages"]["offline"]
    return offline.get("seeds", [offline])


def seed_summary(offline: dict, imitation: float) -> dict:
    """One seed's signature: accepted policies' OPE monotone, the acting policy's real success
    against imitation's, the ungated run's regressions (real success below imitation)."""
    gated = offline["gated"]["history"]
    accepted = [r["ope"] for r in gated if r["accepted"]]
    acting = _acting(gated, True)[1:]
    ungated = [r["real_success"] for r in offline["ungated"]["history"][1:]]
    return {
        "accepted": len(accepted) - 1,
        "checks": len(gated) - 1,
        "ope_monotone": all(b > a for a, b in itertools.pairwise(accepted)),
        "acting_at_least_imitation": sum(x >= imitation for x in acting) / max(len(acting), 1),
        "ungated_below_imitation": sum(x < imitation for x in ungated),
        "ungated_min_success": min(ungated, default=float("nan")),
        "gated_final": offline["gated"]["final"]["success"],
        "ungated_final": offline["ungated"]["final"]["success"],
    }


def gate_summary(data: dict) -> dict:
    """``seed_summary`` of every gate seed, and the pooled signature: the fraction of all
    checks at which the acting policy is at or above imitation, the seeds whose accepted OPE is
    monotone and the seeds whose ungated run regresses at least once."""
    imitation = data["stages"]["imitation"]["success"]
    seeds = [seed_summary(o, imitation) for o in offline_seeds(data)]
    checks = sum(s["checks"] for s in seeds)
    at_least = sum(s["acting_at_least_imitation"] * s["checks"] for s in seeds)
    # Does the OPE rank candidates as the environment does? Every candidate of every seed,
    # gated and ungated: its OPE gain over the imitation policy against its real success.
    gains, real = [], []
    for o in offline_seeds(data):
        for run in ("gated", "ungated"):
            h = o[run]["history"]
            gains += [r["ope"] - h[0]["ope"] for r in h[1:]]
            real += [r["real_success"] for r in h[1:]]
    return {
        "seeds": seeds,
        # undefined when either side is constant (a smoke run's success is all 0)
        "ope_real_correlation": float(np.corrcoef(gains, real)[0, 1])
        if len(real) > 2 and np.std(gains) > 0 and np.std(real) > 0
        else None,
        "acting_at_least_imitation": at_least / max(checks, 1),
        "ope_monotone_seeds": sum(s["ope_monotone"] for s in seeds),
        "ungated_regressing_seeds": sum(s["ungated_below_imitation"] > 0 for s in seeds),
        "gated_final_mean": float(np.mean([s["gated_final"] for s in seeds])),
        "ungated_final_mean": float(np.mean([s["ungated_final"] for s in seeds])),
    }


def report(data: dict) -> str:
    st = data["stages"]
    d, off = st["distilled"], offline_seeds(data)[0]
    g = gate_summary(data)
    reward = data["args"].get("reward", "coverage")
    lines = [
        f"## RL-100 on Push-T (state observations, reward: {reward})",
        "",
        "| stage | success | mean return |",
        "|---|---|---|",
        f"| imitation | {st['imitation']['success']:.2f} | {st['imitation']['return']:.1f} |",
        f"| offline RL (gated, seed 0) | {off['gated']['final']['success']:.2f} | "
        f"{off['gated']['final']['return']:.1f} |",
        f"| offline RL (ungated, seed 0) | {off['ungated']['final']['success']:.2f} | "
        f"{off['ungated']['final']['return']:.1f} |",
        f"| online RL | {st['online']['success']:.2f} | {st['online']['return']:.1f} |",
        f"| distilled (1 step) | {d['success']:.2f} | {d['return']:.1f} |",
        *(
            [
                f"| online RL, zero noise (its bundle) | {z['teacher']['success']:.2f} | "
                f"{z['teacher']['return']:.1f} |",
                f"| distilled, zero noise (its bundle and C) | {z['student']['success']:.2f} | "
                f"{z['student']['return']:.1f} |",
            ]
            if (z := d.get("zero_noise"))
            else []
        ),
        "",
        f"Gate over {len(g['seeds'])} seeds (offline stage from the same imitation policy): "
        f"the acting policy's real success >= imitation at "
        f"{100 * g['acting_at_least_imitation']:.0f}% of all checks; accepted OPE monotone in "
        f"{g['ope_monotone_seeds']} seeds; the ungated run falls below imitation at least once "
        f"in {g['ungated_regressing_seeds']} seeds. Final success, mean over seeds: gated "
        f"{g['gated_final_mean']:.2f}, ungated {g['ungated_final_mean']:.2f}. Distilled keeps "
        f"{100 * d['kept_fraction']:.0f}% of the online policy's success (latency: "
        "`benchmarks.diffusion_latency`). Plot: `benchmarks/results/rl100_gate.png`; wall time "
        f"{data['wall_s'] / 60:.0f} min.",
        "",
        "| gate seed | accepted / checks | accepted OPE monotone | acting >= imitation | "
        "ungated checks below imitation (lowest) | final gated / ungated |",
        "|---|---|---|---|---|---|",
        *(
            f"| {i} | {x['accepted']} / {x['checks']} | {x['ope_monotone']} | "
            f"{100 * x['acting_at_least_imitation']:.0f}% | {x['ungated_below_imitation']} "
            f"({x['ungated_min_success']:.2f}) | {x['gated_final']:.2f} / "
            f"{x['ungated_final']:.2f} |"
            for i, x in enumerate(g["seeds"])
        ),
    ]
    return "\n".join(lines)


def _plot(report: dict, path) -> None:
    """OPE of the gated candidates per seed (accepted starred); the acting policy's real
    success, gated vs ungated, mean and 95% interval over seeds; each seed's candidates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    seeds = offline_seeds(report)
    imitation = report["stages"]["imitation"]["success"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for i, o in enumerate(seeds):
        rows = o["gated"]["history"]
        line = axes[0].plot([r["update"] for r in rows], [r["ope"] for r in rows], "-o", ms=3)
        acc = [r for r in rows if r["accepted"]]
        axes[0].plot([r["update"] for r in acc], [r["ope"] for r in acc], "k*", ms=8)
        for name, style in (("gated", "-o"), ("ungated", "--s")):
            rows = o[name]["history"]
            axes[2].plot(
                [r["update"] for r in rows],
                [r["real_success"] for r in rows],
                style,
                color=line[0].get_color(),
                ms=3,
                label=f"seed {i} {name}",
            )
    axes[0].set(xlabel="offline PPO updates", ylabel="AM-Q score", title="OPE (gated; * accepted)")
    x = [r["update"] for r in seeds[0]["gated"]["history"]]
    for name, style in (("gated", "-o"), ("ungated", "--s")):
        acting = np.array([_acting(o[name]["history"], name == "gated") for o in seeds])
        mean = acting.mean(0)
        axes[1].plot(x, mean, style, label=f"{name}: acting policy")
        if len(seeds) > 1:
            half = stats.t.ppf(0.975, len(seeds) - 1) * acting.std(0, ddof=1)
            half = half / np.sqrt(len(seeds))
            axes[1].fill_between(x, mean - half, mean + half, alpha=0.2)
    axes[1].set(
        xlabel="offline PPO updates",
        ylabel="success rate",
        title=f"real success, mean and 95% CI over {len(seeds)} seeds",
    )
    axes[2].set(xlabel="offline PPO updates", ylabel="success rate", title="candidates per seed")
    for ax in axes[1:]:
        ax.axhline(imitation, color="grey", lw=1, label="imitation")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    data = main(sys.argv[1:])
    print(report(data) if "distilled" in data["stages"] else gate_summary(data))
