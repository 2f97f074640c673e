"""Open-loop agreement of the distilled student with its teacher, after ``rl100_study``.

Loads the ``online`` (teacher) and ``distilled`` (student) checkpoints that
``python -m benchmarks.rl100_study`` wrote under ``benchmarks/out/rl100/``, and on every 50th
demonstration state (the study's demonstrations, seed 0) prints, per chunk index, the median
distance in px between:
  * the student's one-step action and the teacher's K-step action from the same noise;
  * the teacher's action and the expert's;
  * the teacher's actions from two different noise draws (how much the teacher itself varies).

Run: ``python -m benchmarks.rl100_distill_check``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import OUT
from benchmarks.rl100_study import POLICY
from policies.diffusion import data
from policies.diffusion.policy import DiffusionConfig, DiffusionPolicy
from robotrl.runs.checkpoint import CheckpointStore
from sims.pusht.expert import collect_demonstrations


def main() -> None:
    cfg = DiffusionConfig(**POLICY)
    policy = DiffusionPolicy(cfg, 5, 2)
    raw = collect_demonstrations(jax.random.split(jax.random.PRNGKey(0), 4)[0], 300)
    demos = data.from_episodes(raw["obs"], raw["actions"], raw["lengths"])
    obs, act = data.windows(demos, jnp.arange(demos.size), cfg.obs_horizon, cfg.horizon)
    norm = policy.fit_normalizer(demos.obs["state"], obs, act)
    state = policy.init(jax.random.PRNGKey(1), norm)

    def load(stage, like):
        store = CheckpointStore(OUT / "rl100" / stage, read_only=True)
        params, _ = store.restore(like)
        store.close()
        return params

    teacher = load("online", state.ema_params)
    student = load("distilled", policy.init_student(jax.random.PRNGKey(2), state.ema_params))
    idx = jnp.arange(0, demos.size, 50)
    o = {"state": obs["state"][idx]}
    noise = jax.random.normal(jax.random.PRNGKey(5), (idx.shape[0], 16, 2))
    t = norm.unaction(policy.denoise(teacher, norm, o, noise))
    s1 = norm.unaction(jnp.clip(policy.denoise_one_step(student, norm, o, noise), -1, 1))
    median = lambda d: np.round(np.median(np.asarray(jnp.linalg.norm(d, axis=-1)), 0), 1)
    print("student vs teacher, px per chunk index", median(t - s1))
    print("teacher vs expert", median(t - act[idx]))
    noise2 = jax.random.normal(jax.random.PRNGKey(6), noise.shape)
    print(
        "teacher, two noise draws",
        median(t - norm.unaction(policy.denoise(teacher, norm, o, noise2))),
    )


if __name__ == "__main__":
    main()
