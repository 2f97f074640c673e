"""RL-100's stages: decision-level data, the OPE gate, distillation, chunked rollouts."""

from __future__ import annotations

import itertools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from policies.diffusion import data
from policies.diffusion.policy import DiffusionConfig, DiffusionPolicy, Normalizer
from robotrl.algos import diffusion_ppo
from robotrl.train import rl100


def test_gate_accepts_only_improvements_over_the_best():
    best, accepted = 1.0, []
    for score in [1.5, 1.2, 1.6, 1.6, 0.3, 2.0]:
        ok = rl100.gate(score, best, delta=0.05)
        accepted.append(ok)
        best = max(best, score) if ok else best
    assert accepted == [True, False, True, False, False, True]


def test_the_gate_asks_for_a_gain_beyond_ope_z_paired_standard_errors(key):
    """The OPE agrees with the critic, so every candidate's score rises: RL-100's gate (ope_z
    0) takes them all, a gate asking for an impossible number of standard errors none; in
    between, a candidate is accepted exactly when its gain over the best beats ope_z times
    the gain's paired standard error (the same start states and noise at every check)."""
    import dataclasses

    policy, state = _tiny_policy(key)
    states = jax.random.uniform(key, (256, 1, 2), minval=-1, maxval=1)
    cfg = _offline_config(updates=40)
    same_state = lambda s, a, k: s
    ope_q = lambda obs, action: action[:, 0]

    def run(z):
        out = rl100.offline_improve(
            policy,
            state,
            _Critic(),
            same_state,
            states,
            dataclasses.replace(cfg, ope_z=z),
            jax.random.PRNGKey(1),
            ope_q=ope_q,
        )
        return out.history

    assert all(r["accepted"] for r in run(0.0))
    assert not any(r["accepted"] for r in run(1e6)[1:])
    history = run(20.0)
    for before, row in itertools.pairwise(history):
        assert row["ope_gain_se"] > 0
        gained = row["ope"] - before["best"]
        assert row["accepted"] == (gained > 20.0 * row["ope_gain_se"]), (row, before)


def test_demo_transitions_discount_the_chunk_and_end_at_success():
    norm = Normalizer.fit(np.array([[0.0], [10.0]]), np.array([[0.0], [1.0]]))
    episodes = {
        "obs": np.arange(8, dtype=np.float32).reshape(1, 8, 1),
        "actions": np.arange(8, dtype=np.float32).reshape(1, 8, 1) / 10,
        "rewards": np.array([[1.0, 2, 3, 4, 5, 0, 0, 0]], np.float32),
        "lengths": np.array([5]),
        "success": np.array([True]),
    }
    tr = rl100.demo_transitions(episodes, norm, obs_horizon=2, action_steps=2, gamma=0.5)
    assert tr.reward.shape == (5,)
    np.testing.assert_allclose(tr.reward, [1 + 0.5 * 2, 2 + 0.5 * 3, 3 + 0.5 * 4, 4 + 0.5 * 5, 5])
    np.testing.assert_array_equal(tr.terminated, [False, False, False, True, True])
    assert not np.any(tr.truncated)
    unnorm = lambda x: np.asarray(norm.unstate(x.reshape(-1, 2, 1)))[..., 0]
    np.testing.assert_allclose(unnorm(tr.obs)[:2], [[0, 0], [0, 1]], atol=1e-5)
    np.testing.assert_allclose(unnorm(tr.next_obs)[:2], [[1, 2], [2, 3]], atol=1e-5)
    np.testing.assert_allclose(unnorm(tr.next_obs)[-1], [5, 5], atol=1e-5)  # after the end
    np.testing.assert_allclose(tr.action[-1], [0.4, 0.4], atol=1e-6)  # edge padding
    # Success credited as an absorbing state: gamma^E * terminal_value on terminated decisions.
    credited = rl100.demo_transitions(episodes, norm, 2, 2, 0.5, terminal_value=8.0)
    np.testing.assert_allclose(credited.reward - tr.reward, [0, 0, 0, 2.0, 2.0])


def _tiny_policy(key):
    cfg = DiffusionConfig(
        horizon=2,
        action_steps=1,
        obs_horizon=1,
        width=32,
        depth=1,
        student_hidden=(32, 32),
    )
    policy = DiffusionPolicy(cfg, state_dim=2, action_dim=1)
    norm = Normalizer.fit(np.array([[-1.0, -1], [1, 1]]), np.array([[-1.0], [1.0]]))
    return policy, policy.init(key, norm)


def _offline_config(updates):
    """A tiny offline stage: an OPE check every 10 PPO updates, 64 start states."""
    return rl100.OfflineConfig(
        ppo=diffusion_ppo.DiffusionPPOConfig(lr=3e-3),
        batch_size=64,
        updates=updates,
        ope_every=10,
        ope_horizon=2,
        ope_batch=64,
    )


class _Critic:
    """Q rewards a high action; V is 0."""

    def q(self, obs, action):
        return action[:, 0]

    def v(self, obs):
        return jnp.zeros(obs.shape[0])


def test_the_gate_rejects_candidates_whose_ope_score_drops(key):
    """PPO follows the critic's advantage (high actions) while the OPE's Q scores low actions:
    every candidate scores below the reference, so the gated run never replaces it; the
    ungated run takes every candidate."""
    policy, state = _tiny_policy(key)
    states = jax.random.uniform(key, (256, 1, 2), minval=-1, maxval=1)
    cfg = _offline_config(updates=30)
    same_state = lambda s, a, k: s
    ope_q = lambda obs, action: -action[:, 0]
    gated = rl100.offline_improve(
        policy, state, _Critic(), same_state, states, cfg, jax.random.PRNGKey(1), ope_q=ope_q
    )
    assert [r["accepted"] for r in gated.history] == [True, False, False, False]
    assert all(r["ope"] < gated.history[0]["ope"] for r in gated.history[1:])
    for a, b in zip(
        jax.tree.leaves(gated.policy_state.ema_params),
        jax.tree.leaves(state.ema_params),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    import dataclasses

    ungated = rl100.offline_improve(
        policy,
        state,
        _Critic(),
        same_state,
        states,
        dataclasses.replace(cfg, gate=False),
        jax.random.PRNGKey(1),
        ope_q=ope_q,
    )
    assert all(r["accepted"] for r in ungated.history)
    assert ungated.history[-1]["ope"] < ungated.history[0]["ope"]
    # ... and the PPO steps did follow the critic: the ungated policy's actions rose.
    obs = {"state": states[:64]}
    before = policy.sample(state.ema_params, state.norm, obs, key)[:, 0, 0].mean()
    after = policy.sample(ungated.policy_state.ema_params, state.norm, obs, key)[:, 0, 0].mean()
    assert float(after) > float(before)


def test_distilled_student_matches_the_teacher_in_one_step(key):
    policy, teacher = _tiny_policy(key)
    # A teacher with some structure: imitate a = sign(s0) * 0.8.
    states = np.asarray(jax.random.uniform(key, (1, 512, 2), minval=-1, maxval=1))
    actions = (np.sign(states[..., :1]) * 0.8).astype(np.float32)
    demos = data.from_episodes(states, actions, np.array([512]))
    teacher = rl100.imitate(policy, teacher, demos, jax.random.PRNGKey(1), 1500, log_every=500)
    hist = jnp.asarray(states[0, :, None])  # [S, To=1, 2]
    student, metrics = rl100.distill(
        policy, teacher, hist, rl100.DistillConfig(steps=2000, lr=3e-3), jax.random.PRNGKey(2)
    )
    obs = {"state": hist[:128]}
    noise = jax.random.normal(jax.random.PRNGKey(3), (128, 2, 1))
    target = policy.denoise(teacher.ema_params, teacher.norm, obs, noise)[:, :1]
    # The teacher's own one-step guess (its x0 estimate from the first step) as the baseline.
    eps = policy.eps(
        teacher.ema_params,
        noise,
        jnp.full((128,), policy.schedule.timesteps[0]),
        policy.encode(teacher.ema_params, obs, teacher.norm),
    )
    abar = policy.schedule.alphas_cumprod[policy.schedule.timesteps[0]]
    naive = jnp.clip((noise - jnp.sqrt(1 - abar) * eps) / jnp.sqrt(abar), -1, 1)[:, :1]
    distilled = policy.denoise_one_step(student, teacher.norm, obs, noise)[:, :1]
    err = float(jnp.abs(distilled - target).mean())
    assert err < 0.5 * float(jnp.abs(naive - target).mean())
    assert err < 0.1
    assert metrics["distill/loss_last"] < metrics["distill/loss_first"]
    # A DAgger round goes on from the student (``init``): it starts where the first run ended.
    _, again = rl100.distill(
        policy,
        teacher,
        hist,
        rl100.DistillConfig(steps=200, lr=3e-3),
        jax.random.PRNGKey(4),
        init=student,
    )
    assert again["distill/loss_first"] < 0.5 * metrics["distill/loss_first"]


def test_rollout_runs_chunks_with_receding_horizon_on_push_t(key):
    """The scripted expert as a chunked policy (chunks of its action, one executed per
    decision) solves Push-T through ``rollout``; masks and lengths are consistent."""
    from sims.pusht.env import PushT, PushTConfig
    from sims.pusht.expert import expert_action

    env = PushT(PushTConfig(episode_length=200))
    cfg = env.config

    def act(hist, k):
        a = jax.vmap(lambda s: expert_action(s, cfg))(hist["state"][:, -1])
        return jnp.repeat(a[:, None], 3, axis=1), ()

    out = jax.jit(lambda k: rl100.rollout(env, act, k, 6, obs_horizon=2, action_steps=1))(key)
    assert out.chunks.shape == (6, 200, 3, 2) and out.obs["state"].shape == (6, 200, 2, 5)
    assert float(out.success.mean()) >= 5 / 6
    np.testing.assert_array_equal(out.alive.sum(axis=1), out.length)
    np.testing.assert_array_equal(out.terminated.any(axis=1), out.success)
    np.testing.assert_allclose(out.rewards.sum(axis=(1, 2)), out.returns, rtol=1e-5)
    tr = rl100.rollout_transitions(
        out, Normalizer.fit(np.array([[0.0] * 5, [512.0] * 5]), np.zeros((2, 2))), 1, 0.99
    )
    assert tr.reward.shape[0] == int(out.length.sum())
    assert int(tr.terminated.sum()) == int(out.success.sum())


class _TargetEnv:
    """A 1-D task: the reward is 1 - |action - 0.6|; episodes of 4 steps; success when the
    action lands within 0.1 of the target."""

    def __init__(self):
        from robotrl.types import ArraySpec, EnvSpec

        self.spec = EnvSpec(
            name="target",
            obs=ArraySpec((2,)),
            action_low=(-1.0,),
            action_high=(1.0,),
            ctrl_dt=0.1,
            episode_length=4,
        )

    def reset(self, key, params=None):
        from robotrl.envs import EnvState

        return EnvState(
            obs=jnp.zeros(2),
            reward=jnp.zeros(()),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            physics=jnp.zeros(()),
            params={},
            key=key,
            metrics={"success": jnp.zeros(())},
            info={},
        )

    def step(self, state, action):
        err = jnp.abs(action[0] - 0.6)
        obs = jnp.stack([state.physics + 1.0, action[0]])
        return state.replace(
            obs=obs,
            reward=1.0 - err,
            physics=state.physics + 1.0,
            metrics={"success": (err < 0.1).astype(jnp.float32)},
        )


def test_online_ppo_over_denoising_steps_raises_the_return(key):
    policy, state = _tiny_policy(key)
    rows = []
    cfg = rl100.OnlineConfig(
        ppo=diffusion_ppo.DiffusionPPOConfig(clip_eps=0.2, lr=3e-3, train_encoder=True),
        iterations=8,
        num_episodes=64,
        minibatch=64,
        epochs=4,
        value_hidden=(32,),
    )
    rl100.online_rl(
        _TargetEnv(),
        policy,
        state,
        cfg,
        jax.random.PRNGKey(1),
        on_iteration=lambda i, row, s: rows.append(row),
    )
    assert len(rows) == 8 and all(np.isfinite(r["online/value_loss"]) for r in rows)
    returns = [r["online/return"] for r in rows]
    assert returns[-1] > returns[0] + 0.3, returns


@pytest.mark.parametrize("state_hidden", [(), (16,)])
def test_stage_bundles_act_like_the_jax_policy_and_the_student_exports_to_c(
    key, tmp_path, state_hidden
):
    """Each stage's bundle reproduces the JAX policy's deterministic chunk (zero noise) on raw
    Push-T histories, through a save/load: the K-step sampler as a ``ddim`` program, the
    one-step student as a layer program, whose generated C matches it and self-tests; the
    K-step bundle refuses the C export with one line."""
    from firmware_export import CExportError, CPolicy
    from firmware_export.c_export import write_c
    from policies.bundle import PolicyBundle
    from sims.pusht.env import PushT, PushTConfig

    spec = PushT(PushTConfig()).spec
    cfg = DiffusionConfig(
        horizon=4,
        action_steps=2,
        width=32,
        depth=2,
        state_hidden=state_hidden,
        features=8,
        relative_to=(0, 1),
        student_hidden=(32, 32),
    )
    policy = DiffusionPolicy(cfg, state_dim=5, action_dim=2)
    rng = np.random.default_rng(0)
    states = rng.uniform([0, 0, 0, 0, 0], [512, 512, 512, 512, 6.28], (300, 2, 5))
    norm = Normalizer.fit(states.reshape(-1, 5), rng.uniform(-40, 40, (300, 2)))
    base = policy.init(key, norm).params
    nudge = lambda tree: jax.tree.map(
        lambda x: x + 0.05 * jnp.sin(jnp.arange(x.size).reshape(x.shape)), tree
    )
    teacher = nudge(base)
    student = nudge(policy.init_student(jax.random.PRNGKey(1), teacher))
    obs = {"state": jnp.asarray(states[:64], jnp.float32)}
    flat = np.asarray(states[:64], np.float32).reshape(64, -1)
    zeros = jnp.zeros((64, 4, 2))

    def jax_chunk(x):
        chunk = norm.unaction(x) + policy.reference(obs)
        return np.asarray(chunk[:, :2]).reshape(64, -1)

    for name, params, one_step, expect in (
        ("ddim", teacher, False, jax_chunk(policy.denoise(teacher, norm, obs, zeros))),
        (
            "student",
            student,
            True,
            jax_chunk(jnp.clip(policy.denoise_one_step(student, norm, obs, zeros), -1, 1)),
        ),
    ):
        bundle = rl100.to_bundle(policy, params, norm, spec, states[100:108], one_step=one_step)
        bundle = PolicyBundle.load(bundle.save(tmp_path / f"{name}.rlb"))
        assert bundle.spec["chunk"] == {"obs_history": 2, "action_steps": 2}
        assert [f["name"] for f in bundle.obs_layout][:3] == [
            "agent_pos[t-1]",
            "block_pos[t-1]",
            "block_angle[t-1]",
        ]
        unit_err = np.abs(bundle.act(flat) - expect) / bundle.action_scale
        assert unit_err.max() < 1e-4, name
        assert bundle.self_test(atol=1e-3) < 1e-3
        assert np.ptp(expect[:, 0]) > 50  # relative to the pusher: the actions follow it
    assert bundle.program == "layers"
    c_policy = CPolicy.build(bundle, tmp_path / "c")
    assert c_policy.self_test() == 0
    np.testing.assert_allclose(c_policy.act(flat), bundle.act(flat), atol=1e-3)
    teacher_bundle = PolicyBundle.load(tmp_path / "ddim.rlb")
    with pytest.raises(CExportError, match="distilled one-step"):
        write_c(teacher_bundle, tmp_path / "k-step")
    # The K-step bundle runs on a robot computer without jax.
    code = (
        "import sys; from policies.bundle import PolicyBundle; "
        f"PolicyBundle.load({str(tmp_path / 'ddim.rlb')!r}).self_test(atol=1e-3); "
        "assert not any(m == 'jax' or m.startswith('jax.') for m in sys.modules), 'jax'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
