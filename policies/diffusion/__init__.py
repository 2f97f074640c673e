"""Diffusion visuomotor policies (Chi et al. 2023) with RL-100's scorable stochastic sampler.

``schedule``: DDPM/DDIM noise schedules and sampler steps in JAX (``diffusers``' semantics);
``network``: observation encoders and the noise-prediction network; ``policy``: the policy
(imitation loss, deterministic and stochastic sampling, per-step log-probabilities, the
one-step student's map); ``data``: demonstration windows. Imports jax/flax/optax, never
``robotrl``.
"""
