"""From a trained run to what leaves training: the policy bundle (and, from it, C and ONNX).

``bundle_from_state`` turns an algorithm state into a ``policies.PolicyBundle``: the
deterministic policy's layer program (``Algorithm.describe_policy``), the observation
normaliser of the run, the layouts and action scaling of the env spec, and golden pairs whose
actions come from the JAX policy itself, so the bundle's self-test checks the numpy forward
against JAX.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

from policies.bundle import PolicyBundle
from robotrl.config import ConfigError
from robotrl.nets import ActionScaler
from robotrl.types import EnvSpec, actor_obs

FORMATS = ("bundle", "c", "c-int8", "onnx")


def _layout(fields) -> list[dict[str, Any]]:
    return [
        {
            "name": f.name,
            "size": f.size,
            "units": f.units,
            "frame": f.frame,
            "description": f.description,
        }
        for f in fields
    ]


def bundle_from_state(
    algo: Any,
    algo_state: Any,
    spec: EnvSpec,
    golden_obs: np.ndarray,
    obs_stats: Any = None,
    obs_clip: float = 10.0,
    source: dict[str, Any] | None = None,
) -> PolicyBundle:
    """The bundle of ``algo_state``'s deterministic policy.

    Args:
      golden_obs: raw (unnormalised) actor observations ``[G, O]`` for the golden pairs.
      obs_stats: the run's ``RunningStats`` when it normalised observations, else None.
    """
    if algo.describe_policy is None:
        raise ConfigError("this algorithm's policy cannot be exported as a layer program")
    program, params = algo.describe_policy(algo_state)
    scaler = ActionScaler.from_bounds(spec.action_low, spec.action_high)
    golden_obs = np.asarray(golden_obs, np.float32)
    normalized = golden_obs
    mean = std = None
    if obs_stats is not None:
        mean = np.asarray(obs_stats.mean, np.float32)
        std = np.sqrt(np.asarray(obs_stats.var, np.float32) + np.float32(1e-8))
        normalized = np.asarray(obs_stats.normalize(golden_obs, obs_clip))
    policy, policy_params = algo.make_policy(algo_state, True)
    golden_actions, _, _ = policy.step(
        policy_params, policy.init_carry((len(golden_obs),)), normalized, jax.random.PRNGKey(0)
    )
    safe = (
        spec.safe_action
        if spec.safe_action is not None
        else np.clip(np.zeros(spec.action_dim), spec.action_low, spec.action_high)
    )
    obs_layout = _layout(spec.obs_layout) or [
        {"name": "obs", "size": spec.obs_dim, "units": "", "frame": "", "description": ""}
    ]
    action_layout = _layout(spec.action_layout) or [
        {"name": "action", "size": spec.action_dim, "units": "", "frame": "", "description": ""}
    ]
    return PolicyBundle(
        spec=program,
        params=params,
        obs_layout=obs_layout,
        action_layout=action_layout,
        action_offset=np.asarray(scaler.offset, np.float32),
        action_scale=np.asarray(scaler.scale, np.float32),
        ctrl_dt=float(spec.ctrl_dt),
        obs_mean=mean,
        obs_std=std,
        obs_clip=obs_clip,
        safe_action=np.asarray(safe, np.float32),
        source=source or {},
        golden_obs=golden_obs,
        golden_actions=np.asarray(golden_actions, np.float32),
    )


def golden_observations(session: Any, count: int = 32, seed: int = 7) -> np.ndarray:
    """Raw actor observations from the run's own env: resets and a short policy rollout."""
    from robotrl.train.host_loop import HostSession

    if isinstance(session, HostSession):
        env = session._make_env(count)
        stats = session.obs_stats()
        seen = (lambda x: x) if stats is None else stats.normalize
        try:
            obs = env.reset(seed)
            policy, params = session.algo.make_policy(session.algo_state, True)
            action, _, _ = policy.step(
                params, policy.init_carry((count,)), seen(obs), jax.random.PRNGKey(seed)
            )
            later = env.step(np.asarray(action)).obs
        finally:
            env.close()
        return np.concatenate([obs, later])[:count]
    from robotrl.train.scan_loop import select_seed

    eval_env = session.eval_env
    stats = session.obs_stats()
    if stats is None:
        state = jax.jit(eval_env.reset)(jax.random.PRNGKey(seed))
    else:
        first = jax.tree.map(lambda x: x[0], stats)
        state = jax.jit(lambda k: eval_env.reset(k, stats=first))(jax.random.PRNGKey(seed))
    algo_state = select_seed(session.state, 0).algo
    policy, params = session.algo.make_policy(algo_state, True)
    step = jax.jit(eval_env.step)
    raws = []
    for _ in range(3):
        raw = state.info.get("raw_obs", state.obs)
        raws.append(np.asarray(actor_obs(raw)))
        action, _, _ = policy.step(
            params, policy.init_carry((len(raws[-1]),)), state.obs, jax.random.PRNGKey(0)
        )
        state = step(state, action)
    return np.concatenate(raws)[:count]


def export_run(
    run_dir: str | Path, fmt: str = "bundle", out: str | Path | None = None, step: int | None = None
) -> dict[str, Any]:
    """Exports a run's (first seed's) deterministic policy; returns what was written."""
    from robotrl import experiment

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {FORMATS}, got {fmt!r}")
    restored = experiment.restore_run(run_dir, step)
    run, exp, session = restored.run, restored.exp, restored.session
    cfg, algo_state, stats = exp.cfg, restored.algo_state, restored.obs_stats
    source = {
        "run": str(run.path),
        "checkpoint_step": restored.step,
        "preset": cfg.name,
        "algo": cfg.algo_name,
        "env": cfg.env.name,
        "seed": cfg.seed,
    }
    bundle = bundle_from_state(
        exp.algo, algo_state, exp.spec, golden_observations(session), obs_stats=stats, source=source
    )
    bundle.self_test(atol=1e-5)
    out_dir = Path(out) if out else run.path / "export"
    written = {"bundle": str(bundle.save(out_dir / "policy.rlb"))}
    if fmt in ("c", "c-int8"):
        from firmware_export.c_export import write_c

        quantize = "int8" if fmt == "c-int8" else "float32"
        c_files = write_c(bundle, out_dir / fmt, quantize=quantize)
        written.update({kind: str(path) for kind, path in c_files.items()})
    elif fmt == "onnx":
        from firmware_export.onnx_export import write_onnx

        if bundle.program != "layers":  # ARSQ's argmax loop, a K-step sampler: no ONNX graph
            hint = "; use --format c" if bundle.program == "arsq" else ""
            raise ConfigError(
                f"--format onnx exports layer programs; this policy is an {bundle.program!r} "
                f"program (its bundle is written: {written['bundle']}){hint}"
            )

        written["onnx"] = str(write_onnx(bundle, out_dir / "policy.onnx"))
    return {"files": written, "source": source, "golden_pairs": len(bundle.golden_obs)}
