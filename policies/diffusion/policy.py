"""A diffusion visuomotor policy (Chi et al. 2023) with RL-100's stochastic, scorable sampler.

The policy maps an observation history (``To`` frames) to a chunk of ``H`` future actions by
denoising Gaussian noise in ``K`` DDIM steps with a noise-prediction network conditioned on the
encoded observations (``policies/diffusion/network.py``). Actions and states are min-max
normalised to [-1, 1] with statistics of the training data (``Normalizer``).

* Imitation: the DDPM loss ``|eps - eps_hat(sqrt(abar_t) a + sqrt(1 - abar_t) eps, t, obs)|^2``
  with ``t`` uniform over the ``T`` training steps (``loss``); an EMA of the weights is the
  policy that acts (``ema_update``).
* Sampling: deterministic DDIM (``sample``, eta = 0) or RL-100's stochastic DDIM
  (``sample_chain``) that keeps the chain ``x_K, ..., x_0`` and the log-probability of every
  transition ``x_k -> x_{k-1}``: a Gaussian with DDIM's mean and a std of at least
  ``std_floor``, summed over the executed actions of the chunk (RL-100's choice: the rest
  never reaches the env). ``step_log_probs`` rescores a stored chain under new parameters:
  that is what PPO over the denoising steps differentiates.

Shapes: ``B`` batch, ``To`` history, ``H`` chunk, ``A`` action dim, ``K`` denoising steps.
Observations are a dict ``{"state": [B, To, O]}`` plus ``"pixels": [B, To, 96, 96, 3]`` (uint8)
for the image encoder, whose proprioception is the first ``proprio_dims`` state entries.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from policies.diffusion import schedule as sch
from policies.diffusion.network import (
    ImageEncoder,
    NoiseNet,
    StateEncoder,
    StudentNet,
    random_shift,
)

Params = Any  # a pytree of arrays
PRNGKey = jax.Array

ENCODERS = ("state", "image")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiffusionConfig:
    encoder: str = "state"  # state (MLP) | image (CNN + proprioception)
    obs_horizon: int = 2  # To: observation frames the policy conditions on
    horizon: int = 8  # H: actions predicted per chunk
    action_steps: int = 4  # actions of each chunk executed before replanning
    proprio_dims: int = 2  # image encoder: leading state entries appended to the image features
    # State entries (of the latest frame) the actions are relative to: the policy predicts
    # ``action - state[relative_to]`` (Push-T: the pusher's xy, so a chunk is a displacement
    # of tens of px instead of a position in 512 px, 10x finer for the same loss). () = absolute.
    relative_to: tuple[int, ...] = ()
    state_hidden: tuple[int, ...] = ()  # state encoder MLP; () feeds the flat history directly
    image_hidden: tuple[int, ...] = ()  # image encoder MLP after the CNN; () concatenates
    # Image encoder: the CNN trunk (convolutions, projection, LayerNorm) gets no updates and its
    # EMA stays equal to it: a trunk pretrained elsewhere (``rl100.pretrain_encoder``) is kept.
    freeze_encoder: bool = False
    features: int = 64  # encoder output per frame (image) or in all (state MLP)
    width: int = 256  # noise network width
    depth: int = 3  # noise network residual blocks
    student_hidden: tuple[int, ...] = (256, 256, 256)  # the one-step student's MLP
    activation: str = "silu"
    lr: float = 1e-3
    weight_decay: float = 1e-6
    batch_size: int = 256
    ema_decay: float = 0.995  # EMA of the weights that act
    augment: bool = True  # random shift of the images in training
    schedule: sch.ScheduleConfig = sch.ScheduleConfig()

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if not 1 <= self.action_steps <= self.horizon:
            raise ValueError("action_steps must be in [1, horizon]")
        if self.obs_horizon < 1:
            raise ValueError("obs_horizon must be positive")
        if any(i < 0 for i in self.relative_to):
            raise ValueError("relative_to holds state indices (non-negative)")
        if self.freeze_encoder and self.encoder != "image":
            raise ValueError("freeze_encoder freezes the image CNN: needs encoder='image'")


class Normalizer(flax.struct.PyTreeNode):
    """Min-max maps to [-1, 1]: ``action_low/high [A]``, ``state_low/high [O]``."""

    action_low: jax.Array
    action_high: jax.Array
    state_low: jax.Array
    state_high: jax.Array

    @classmethod
    def fit(cls, states: np.ndarray, actions: np.ndarray) -> Normalizer:
        """From data ``states [..., O]`` and ``actions [..., A]``."""
        s = np.asarray(states, np.float32).reshape(-1, states.shape[-1])
        a = np.asarray(actions, np.float32).reshape(-1, actions.shape[-1])
        return cls(*(jnp.asarray(v) for v in (a.min(0), a.max(0), s.min(0), s.max(0))))

    @staticmethod
    def _to(x, low, high):
        low, high = (jnp.broadcast_to(v, x.shape) for v in (low, high))
        span = jnp.maximum(high - low, 1e-6)
        return 2.0 * (x - low) / span - 1.0

    @staticmethod
    def _from(x, low, high):
        low, high = (jnp.broadcast_to(v, x.shape) for v in (low, high))
        return (x + 1.0) / 2.0 * (high - low) + low

    def action(self, a: jax.Array) -> jax.Array:
        return self._to(a, self.action_low, self.action_high)

    def unaction(self, a: jax.Array) -> jax.Array:
        return self._from(a, self.action_low, self.action_high)

    def state(self, s: jax.Array) -> jax.Array:
        return self._to(s, self.state_low, self.state_high)

    def unstate(self, s: jax.Array) -> jax.Array:
        return self._from(s, self.state_low, self.state_high)


class DiffusionState(flax.struct.PyTreeNode):
    params: Params  # {"encoder": ..., "noise": ...}
    ema_params: Params
    opt_state: Any
    norm: Normalizer
    step: jax.Array


class Chain(NamedTuple):
    """A stochastic sampling chain: ``xs [B, K+1, H, A]`` (``x_K`` first, normalised actions),
    ``log_probs [B, K]`` of each transition, and ``actions [B, H, A]`` in env units."""

    xs: jax.Array
    log_probs: jax.Array
    actions: jax.Array


class DiffusionPolicy:
    """The networks, schedule and optimiser of one configuration; methods are pure functions."""

    def __init__(self, cfg: DiffusionConfig, state_dim: int, action_dim: int):
        self.cfg, self.state_dim, self.action_dim = cfg, state_dim, action_dim
        if cfg.encoder == "state":
            self.encoder = StateEncoder(cfg.state_hidden, cfg.features, cfg.activation)
        else:
            self.encoder = ImageEncoder(
                features=cfg.features, activation=cfg.activation, hidden=cfg.image_hidden
            )
        self.noise = NoiseNet(cfg.horizon, action_dim, cfg.width, cfg.depth, 64, cfg.activation)
        self.student = StudentNet(cfg.horizon, action_dim, cfg.student_hidden, cfg.activation)
        self.schedule = sch.make_schedule(cfg.schedule)
        self.opt = optax.chain(
            optax.clip_by_global_norm(1.0), optax.adamw(cfg.lr, weight_decay=cfg.weight_decay)
        )
        if cfg.freeze_encoder:
            # Zero updates, not zero gradients: AdamW's weight decay would still move the trunk.
            labels = lambda p: jax.tree.map(lambda f: "frozen" if f else "train", self.frozen(p))
            self.opt = optax.multi_transform(
                {"train": self.opt, "frozen": optax.set_to_zero()}, labels
            )

    # --- construction -----------------------------------------------------------------------
    def example_obs(self, batch: int = 1, image_size: int = 96) -> dict[str, jax.Array]:
        cfg = self.cfg
        obs = {"state": jnp.zeros((batch, cfg.obs_horizon, self.state_dim))}
        if cfg.encoder == "image":
            obs["pixels"] = jnp.zeros(
                (batch, cfg.obs_horizon, image_size, image_size, 3), jnp.uint8
            )
        return obs

    def init(self, key: PRNGKey, norm: Normalizer, image_size: int = 96) -> DiffusionState:
        k_enc, k_noise = jax.random.split(key)
        obs = self.example_obs(1, image_size)
        enc_params = self.encoder.init(k_enc, *self._encoder_inputs(obs, norm))
        cond = self.encoder.apply(enc_params, *self._encoder_inputs(obs, norm))
        x = jnp.zeros((1, self.cfg.horizon, self.action_dim))
        noise_params = self.noise.init(k_noise, x, jnp.zeros((1,), jnp.int32), cond)
        params = {"encoder": enc_params, "noise": noise_params}
        return DiffusionState(
            params=params,
            ema_params=jax.tree.map(jnp.copy, params),
            opt_state=self.opt.init(params),
            norm=norm,
            step=jnp.zeros((), jnp.int32),
        )

    def init_student(self, key: PRNGKey, teacher: Params) -> Params:
        """A one-step student: the teacher's encoder (copied, trained on) and a fresh
        ``StudentNet``. ``{"encoder", "student"}``."""
        x = jnp.zeros((1, self.cfg.horizon, self.action_dim))
        a, o = jnp.ones((self.action_dim,)), jnp.ones((self.state_dim,))
        cond = self.encode(teacher, self.example_obs(1), Normalizer(-a, a, -o, o))
        student = self.student.init(key, x, jnp.zeros_like(cond))
        return {"encoder": jax.tree.map(jnp.copy, teacher["encoder"]), "student": student}

    def frozen(self, params: Params) -> Params:
        """A tree of bools like ``params``: True at the leaves ``freeze_encoder`` keeps (the
        image trunk's)."""

        def leaf(path, _):
            keys = [getattr(k, "key", None) for k in path]
            return self.cfg.freeze_encoder and keys[0] == "encoder" and keys[2] != "mlp"

        return jax.tree_util.tree_map_with_path(leaf, params)

    # --- conditioning -----------------------------------------------------------------------
    def _encoder_inputs(self, obs: dict[str, jax.Array], norm: Normalizer) -> tuple:
        state = norm.state(obs["state"])
        if self.cfg.encoder == "state":
            return (state,)
        return obs["pixels"], state[..., : self.cfg.proprio_dims]

    def encode(self, params: Params, obs: dict[str, jax.Array], norm: Normalizer) -> jax.Array:
        """Observation features ``[B, C]``. An image policy's ``obs`` may hold the trunk's
        features ``"frames" [B, To, F]`` (``frame_features``) instead of ``"pixels"``: a frozen
        trunk's features are computed once, and training skips the CNN."""
        if "frames" in obs:
            proprio = norm.state(obs["state"])[..., : self.cfg.proprio_dims]
            return self.encoder.apply(params["encoder"], obs["frames"], proprio, method="fuse")
        return self.encoder.apply(params["encoder"], *self._encoder_inputs(obs, norm))

    def frame_features(self, params: Params, pixels: jax.Array) -> jax.Array:
        """The image trunk's per-frame features ``[B, To, H, W, 3] -> [B, To, F]``."""
        return self.encoder.apply(params["encoder"], pixels, method="trunk")

    def eps(self, params: Params, x: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array:
        return self.noise.apply(params["noise"], x, t, cond)

    def reference(self, obs: dict) -> jax.Array:
        """``[B, 1, A]`` added to the predicted chunk: ``state[relative_to]`` of the latest
        frame, or 0 for absolute actions."""
        idx = self.cfg.relative_to
        if not idx:
            return jnp.zeros((obs["state"].shape[0], 1, self.action_dim))
        if len(idx) != self.action_dim:
            raise ValueError(f"relative_to needs {self.action_dim} indices, got {idx}")
        return obs["state"][:, -1, jnp.asarray(idx)][:, None]

    def fit_normalizer(self, states: jax.Array, obs: dict, actions: jax.Array) -> Normalizer:
        """Statistics of all states ``[S, O]`` and of the chunks ``actions [B, H, A]`` of the
        windows ``obs`` (in the policy's action frame)."""
        return Normalizer.fit(np.asarray(states), np.asarray(actions - self.reference(obs)))

    # --- imitation --------------------------------------------------------------------------
    def loss(
        self, params: Params, norm: Normalizer, obs: dict, actions: jax.Array, key: PRNGKey
    ) -> tuple[jax.Array, dict]:
        """DDPM loss on a batch: ``obs`` history, ``actions [B, H, A]`` in env units."""
        k_t, k_eps, k_aug = jax.random.split(key, 3)
        if self.cfg.encoder == "image" and self.cfg.augment and "pixels" in obs:
            obs = {**obs, "pixels": random_shift(k_aug, obs["pixels"])}
        x0 = norm.action(actions - self.reference(obs))
        b = x0.shape[0]
        t = jax.random.randint(k_t, (b,), 0, self.cfg.schedule.train_steps)
        noise = jax.random.normal(k_eps, x0.shape)
        x_t = sch.add_noise(self.schedule, x0, noise, t)
        pred = self.eps(params, x_t, t, self.encode(params, obs, norm))
        loss = jnp.mean((pred - noise) ** 2)
        return loss, {"diffusion/loss": loss}

    def update(self, state: DiffusionState, obs: dict, actions: jax.Array, key: PRNGKey):
        """One Adam step on the DDPM loss and one EMA step. Returns ``(state, metrics)``."""
        (_, metrics), grads = jax.value_and_grad(self.loss, has_aux=True)(
            state.params, state.norm, obs, actions, key
        )
        updates, opt_state = self.opt.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = ema_update(state.ema_params, params, self.cfg.ema_decay, state.step)
        if self.cfg.freeze_encoder:  # d * e + (1 - d) * e can round away from e
            keep = lambda f, old, new: old if f else new
            ema = jax.tree.map(keep, self.frozen(ema), state.ema_params, ema)
        return state.replace(
            params=params,
            ema_params=ema,
            opt_state=opt_state,
            step=state.step + 1,
        ), metrics

    # --- sampling ---------------------------------------------------------------------------
    def denoise(self, params: Params, norm: Normalizer, obs: dict, noise: jax.Array) -> jax.Array:
        """Deterministic DDIM (eta = 0) from ``noise [B, H, A]``: the normalised chunk."""
        cond = self.encode(params, obs, norm)
        b = cond.shape[0]
        sched, scfg = self.schedule, self.cfg.schedule

        def step(x, ts):
            t, prev = ts
            eps = self.eps(params, x, jnp.full((b,), t), cond)
            one = lambda xi, ei: sch.ddim_step(scfg, sched, xi, ei, t, prev, 0.0)
            return jax.vmap(one)(x, eps), None

        x, _ = jax.lax.scan(step, noise, (sched.timesteps, sched.prev_timesteps))
        return jnp.clip(x, -1.0, 1.0)

    def denoise_one_step(
        self, params: Params, norm: Normalizer, obs: dict, noise: jax.Array
    ) -> jax.Array:
        """The distilled student's map (``params`` from ``init_student``): one evaluation of the
        ``StudentNet``, its output read as the clean normalised chunk (``prediction_type=
        "sample"``, as RL-100's consistency student; unclipped, so distillation has gradients
        everywhere)."""
        return self.student.apply(params["student"], noise, self.encode(params, obs, norm))

    def _noise(self, key: PRNGKey, obs: dict) -> jax.Array:
        b = obs["state"].shape[0]
        return jax.random.normal(key, (b, self.cfg.horizon, self.action_dim))

    def sample(
        self, params: Params, norm: Normalizer, obs: dict, key: PRNGKey, zero_noise: bool = False
    ) -> jax.Array:
        """The K-step deterministic DDIM policy: ``[B, H, A]`` in env units. ``zero_noise``
        starts from zero noise instead of a draw: the action a ``PolicyBundle`` exports."""
        noise = self._noise(key, obs)
        x = self.denoise(params, norm, obs, jnp.zeros_like(noise) if zero_noise else noise)
        return norm.unaction(x) + self.reference(obs)

    def sample_one_step(
        self, params: Params, norm: Normalizer, obs: dict, key: PRNGKey, zero_noise: bool = False
    ) -> jax.Array:
        """The one-step (distilled) policy: ``[B, H, A]`` in env units (``zero_noise``: as in
        ``sample``)."""
        noise = self._noise(key, obs)
        noise = jnp.zeros_like(noise) if zero_noise else noise
        x = jnp.clip(self.denoise_one_step(params, norm, obs, noise), -1.0, 1.0)
        return norm.unaction(x) + self.reference(obs)

    def sample_chain(self, params: Params, norm: Normalizer, obs: dict, key: PRNGKey) -> Chain:
        """RL-100's stochastic DDIM: every transition Gaussian with std >= ``std_floor``."""
        cond = self.encode(params, obs, norm)
        b = cond.shape[0]
        k0, key = jax.random.split(key)
        x = jax.random.normal(k0, (b, self.cfg.horizon, self.action_dim))
        sched, scfg = self.schedule, self.cfg.schedule

        def denoise(x, inputs):
            t, prev, k = inputs
            mean, std = self._transition(params, cond, x, t, prev)
            x_prev = mean + std * jax.random.normal(k, x.shape)
            return x_prev, (x_prev, self._log_prob(x_prev, mean, std))

        keys = jax.random.split(key, scfg.inference_steps)
        x_last, (xs, logps) = jax.lax.scan(
            denoise, x, (sched.timesteps, sched.prev_timesteps, keys)
        )
        xs = jnp.concatenate([x[None], xs], axis=0).swapaxes(0, 1)  # [B, K+1, H, A]
        # The env acts on the clipped final sample; the chain keeps the raw one that was scored.
        actions = norm.unaction(jnp.clip(x_last, -1.0, 1.0)) + self.reference(obs)
        return Chain(xs, logps.T, actions)

    def _transition(self, params, cond, x, t, prev):
        """Mean ``[B, H, A]`` and std ``[B, 1, 1]`` of ``x_{k-1}`` given ``x_k`` at step ``t``."""
        scfg = self.cfg.schedule
        b = x.shape[0]
        eps = self.eps(params, x, jnp.full((b,), t), cond)
        mean_std = lambda xi, ei: sch.ddim_mean_std(
            scfg, self.schedule, xi, ei, t, prev, scfg.eta, scfg.std_floor
        )
        mean, std = jax.vmap(mean_std)(x, eps)
        return mean, std[:, None, None]

    def _log_prob(self, x_prev, mean, std):
        """``[B]``: summed over the executed actions of the chunk only (as RL-100 does): the
        rest of the chunk never reaches the env, so it would only add noise to the ratio."""
        n = self.cfg.action_steps
        std = jnp.broadcast_to(std, mean.shape)[:, :n]
        return jax.vmap(sch.gaussian_log_prob)(x_prev[:, :n], mean[:, :n], std)

    def step_log_prob(
        self, params: Params, norm: Normalizer, obs: dict, xs: jax.Array, k: jax.Array
    ) -> jax.Array:
        """Log-probability ``[B]`` of transition ``k`` (``xs[:, k] -> xs[:, k + 1]``) of stored
        chains ``xs [B, K+1, H, A]`` under ``params``: what PPO over the denoising steps
        differentiates, one step at a time."""
        cond = self.encode(params, obs, norm)
        sched = self.schedule
        t, prev = sched.timesteps[k], sched.prev_timesteps[k]
        x = jnp.take(xs, k, axis=1)
        x_prev = jnp.take(xs, k + 1, axis=1)
        mean, std = self._transition(params, cond, x, t, prev)
        return self._log_prob(x_prev, mean, std)

    def step_log_probs(
        self, params: Params, norm: Normalizer, obs: dict, xs: jax.Array
    ) -> jax.Array:
        """``[B, K]``: every transition of stored chains ``xs [B, K+1, H, A]``."""
        steps = jnp.arange(self.cfg.schedule.inference_steps)
        one = lambda k: self.step_log_prob(params, norm, obs, xs, k)
        return jax.vmap(one, out_axes=1)(steps)


def ema_update(ema: Params, params: Params, decay: float, step: jax.Array) -> Params:
    """EMA with warm-up: the effective decay ``min(decay, (1 + n) / (10 + n))`` after ``n``
    updates, so early weights are not averaged with the random initialisation for long."""
    d = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
    return jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema, params)


__all__ = [
    "ENCODERS",
    "Chain",
    "DiffusionConfig",
    "DiffusionPolicy",
    "DiffusionState",
    "Normalizer",
    "ema_update",
]
