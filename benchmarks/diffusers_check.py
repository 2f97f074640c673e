"""Checks ``policies/diffusion/schedule.py`` against ``diffusers``' DDPM and DDIM schedulers.

``diffusers`` needs PyTorch for every scheduler, so this runs in a Python that has both (here
the benchmark environment: Python 3.11, ``torch==2.13.0`` CPU, ``diffusers==0.42.1``) and
imports our schedule module by path: it needs only ``jax`` and ``numpy`` besides.

For each beta schedule and inference-step count it compares betas, alphas_cumprod, the
inference timesteps, ``add_noise``, and the outputs of ``DDIMScheduler.step`` (eta 0 and 1, with
the same noise) and ``DDPMScheduler.step`` over a whole chain fed the same model outputs.
Prints one line per case and the largest absolute difference; exits 1 on a mismatch.

    .bench-venv/bin/pip install diffusers==0.42.1   # once; not in requirements-peer.txt
    .bench-venv/bin/python benchmarks/diffusers_check.py
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import numpy as np

TOL = 2e-5  # float32 arithmetic in a different order


def _load_schedule():
    path = pathlib.Path(__file__).resolve().parents[1] / "policies" / "diffusion" / "schedule.py"
    spec = importlib.util.spec_from_file_location("robotrl_schedule", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def main() -> int:
    try:
        import diffusers
        import torch
    except ImportError as err:
        print(f"needs torch and diffusers in this Python ({err}); see the module docstring")
        return 2
    import jax.numpy as jnp

    sch = _load_schedule()
    rng = np.random.default_rng(0)
    worst = 0.0
    failures = []

    def compare(name, ours, theirs):
        nonlocal worst
        diff = float(np.max(np.abs(np.asarray(ours, np.float64) - np.asarray(theirs, np.float64))))
        worst = max(worst, diff)
        if not diff <= TOL:
            failures.append(f"{name}: max |diff| {diff:.3g}")
        return diff

    cases = [
        ("squaredcos_cap_v2", 100, 10),
        ("squaredcos_cap_v2", 100, 100),
        ("linear", 1000, 50),
        ("scaled_linear", 1000, 20),
    ]
    for beta_schedule, train_steps, k in cases:
        cfg = sch.ScheduleConfig(
            train_steps=train_steps, inference_steps=k, beta_schedule=beta_schedule
        )
        ours = sch.make_schedule(cfg)
        common = dict(
            num_train_timesteps=train_steps,
            beta_schedule=beta_schedule,
            beta_start=cfg.beta_start,
            beta_end=cfg.beta_end,
            clip_sample=True,
            prediction_type="epsilon",
        )
        ddim = diffusers.DDIMScheduler(**common, set_alpha_to_one=True, steps_offset=0)
        ddpm = diffusers.DDPMScheduler(**common, variance_type="fixed_small")
        ddim.set_timesteps(k)
        ddpm.set_timesteps(k)
        label = f"{beta_schedule} T={train_steps} K={k}"
        diffs = [
            compare(f"{label} betas", ours.betas, ddim.betas.numpy()),
            compare(f"{label} alphas_cumprod", ours.alphas_cumprod, ddim.alphas_cumprod.numpy()),
        ]
        if not np.array_equal(np.asarray(ours.timesteps), ddim.timesteps.numpy()) or not (
            np.array_equal(np.asarray(ours.timesteps), ddpm.timesteps.numpy())
        ):
            failures.append(f"{label} timesteps differ: {ours.timesteps} vs {ddim.timesteps}")

        shape = (4, 8, 2)  # batch, chunk, action dim
        x0 = rng.uniform(-1, 1, shape).astype(np.float32)
        noise = rng.standard_normal(shape).astype(np.float32)
        t = rng.integers(0, train_steps, shape[0])
        theirs = ddpm.add_noise(torch.from_numpy(x0), torch.from_numpy(noise), torch.from_numpy(t))
        ours_noisy = sch.add_noise(ours, jnp.asarray(x0), jnp.asarray(noise), jnp.asarray(t))
        diffs.append(compare(f"{label} add_noise", ours_noisy, theirs.numpy()))

        for sampler in ("ddim eta=0", "ddim eta=1", "ddpm"):
            x_theirs = rng.standard_normal(shape).astype(np.float32)
            x_ours = jnp.asarray(x_theirs)
            for i, step_t in enumerate(np.asarray(ours.timesteps)):
                # A fixed "model output" per step, the same on both sides.
                eps = rng.standard_normal(shape).astype(np.float32) * 0.8
                z = rng.standard_normal(shape).astype(np.float32)  # DDIM's variance noise
                prev_t = int(ours.prev_timesteps[i])
                if sampler == "ddpm":
                    # diffusers draws its own noise: replay the same draw for ours.
                    gen = torch.Generator().manual_seed(i)
                    z = torch.randn(shape, generator=gen, dtype=torch.float32).numpy()
                    gen = torch.Generator().manual_seed(i)
                    out = ddpm.step(
                        torch.from_numpy(eps),
                        int(step_t),
                        torch.from_numpy(x_theirs),
                        generator=gen,
                    )
                    x_ours = sch.ddpm_step(
                        cfg, ours, x_ours, jnp.asarray(eps), step_t, prev_t, jnp.asarray(z)
                    )
                else:
                    eta = 0.0 if sampler.endswith("0") else 1.0
                    out = ddim.step(
                        torch.from_numpy(eps),
                        int(step_t),
                        torch.from_numpy(x_theirs),
                        eta=eta,
                        variance_noise=torch.from_numpy(z),
                    )
                    x_ours = sch.ddim_step(
                        cfg, ours, x_ours, jnp.asarray(eps), step_t, prev_t, eta, jnp.asarray(z)
                    )
                x_theirs = out.prev_sample.numpy()
                diffs.append(compare(f"{label} {sampler} step {i}", x_ours, x_theirs))
        print(f"{label}: {len(diffs)} comparisons, max |diff| {max(diffs):.2e}")
    print(f"diffusers {diffusers.__version__}, torch {torch.__version__}: worst |diff| {worst:.2e}")
    for line in failures:
        print("MISMATCH", line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
