"""The Learning-to-Fly reward as a pure function of a stored transition, and its curriculum.

    r = -scale * (w_p |e_p|^2 + w_o (1 - q_w^2) + w_v |e_v|^2 + w_w |w|^2 + w_a |a - a_hover|^2)
        + constant                                   (termination_penalty instead on termination)

``e_p`` is the position error to the target/reference (m, world), ``q_w`` the quaternion's scalar
part (``1 - q_w^2 = sin^2(angle/2)`` of the attitude), ``e_v`` the velocity error (m/s, world),
``w`` the body angular velocity (rad/s), ``a`` the normalised action in [-1, 1]^4 and ``a_hover``
the normalised hover command. As in RLtools, the state is the one *before* the step (the reward is
a function of (s, a)), and a step whose next state terminates gets ``termination_penalty``.

To recompute the rewards of stored transitions with new weights (the curriculum), a transition
must hold ``obs["privileged_state"]`` (the pre-step privileged observation: its first 18 entries
are position error, rotation matrix, velocity error and angular velocity, noise-free, in every
task), ``action`` (normalised, as the env received it) and ``terminated``:

    rewards = reward(batch.obs["privileged_state"], batch.action, weights, batch.terminated)

Defaults are RLtools' ``reward_squared_position_only_torque`` (the paper's initial reward); its
``..._curriculum_target`` raises position to 40 and velocity and action to 1, which
``curriculum_step`` approaches (x1.2 position, x1.4 velocity and action per call, capped).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, kw_only=True)
class RewardWeights:
    """Weights of the reward; a pytree, so the values may be traced arrays (``form`` is static).

    ``form="squared"`` (the paper's): squared position/velocity errors and ``1 - q_w^2``.
    ``form="norm"``: RLtools' current ``Squared`` reward function (its L2F zoo configs), which
    despite the name charges the *norms* ``|e_p|``, ``|e_v|``, ``|w|``, the yaw-like
    ``2 acos(1 - |q_z|)`` for orientation, and the action in throttle units
    ``|(a + 1) / 2 - (a_hover + 1) / 2|^2``. A norm keeps a constant pull toward the target where
    a square's vanishes, which is what lets a policy hover within centimetres.
    """

    scale: float = 0.5  # multiplies the weighted cost
    constant: float = 2.0  # added after scaling (keeps the reward of a good hover positive)
    termination_penalty: float = 0.0  # the reward of a step whose next state terminates
    position: float = 5.0  # w_p, per m^2 of position error
    orientation: float = 5.0  # w_o, per unit of 1 - q_w^2
    linear_velocity: float = 0.01  # w_v, per (m/s)^2 of velocity error
    angular_velocity: float = 0.0  # w_w, per (rad/s)^2
    action: float = 0.01  # w_a, per unit^2 of normalised action deviation
    action_baseline: float = 0.334  # a_hover: normalised hover command (RLtools' constant)
    form: str = dataclasses.field(default="squared", metadata=dict(static=True))  # or "norm"

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"reward form must be one of {FORMS}, got {self.form!r}")


FORMS = ("squared", "norm")


# Layout of the leading entries of every task's privileged state (see ``Quadrotor.spec``).
_POS, _ROT, _VEL, _OMEGA = slice(0, 3), slice(3, 12), slice(12, 15), slice(15, 18)


def state_cost_terms(privileged_state: jax.Array, form: str = "squared") -> dict[str, jax.Array]:
    """The unweighted state terms ``[...]`` of ``privileged_state [..., P]`` (see
    ``RewardWeights`` for the two forms)."""
    rot = privileged_state[..., _ROT]
    if form == "norm":
        # |q_z| of R(q): 1 + R22 - R00 - R11 = 4 q_z^2 (either sign of q).
        qz2 = 0.25 * (1.0 + rot[..., 8] - rot[..., 0] - rot[..., 4])
        qz = jnp.sqrt(jnp.clip(qz2, 0.0, 1.0))
        norm = lambda x: jnp.sqrt(jnp.sum(jnp.square(x), axis=-1))
        return {
            "position": norm(privileged_state[..., _POS]),
            "orientation": 2.0 * jnp.arccos(jnp.clip(1.0 - qz, -1.0, 1.0)),
            "linear_velocity": norm(privileged_state[..., _VEL]),
            "angular_velocity": norm(privileged_state[..., _OMEGA]),
        }
    # trace R = 4 q_w^2 - 1 for a unit quaternion, so 1 - q_w^2 = (3 - trace R) / 4.
    trace = rot[..., 0] + rot[..., 4] + rot[..., 8]
    return {
        "position": jnp.sum(jnp.square(privileged_state[..., _POS]), axis=-1),
        "orientation": (3.0 - trace) * 0.25,
        "linear_velocity": jnp.sum(jnp.square(privileged_state[..., _VEL]), axis=-1),
        "angular_velocity": jnp.sum(jnp.square(privileged_state[..., _OMEGA]), axis=-1),
    }


def reward(
    privileged_state: jax.Array,
    action: jax.Array,
    weights: RewardWeights,
    terminated: jax.Array | bool = False,
) -> jax.Array:
    """Reward ``[...]`` of (pre-step privileged state ``[..., P]``, normalised action
    ``[..., 4]``, ``terminated [...]``); the same function the env's ``step`` uses."""
    w = weights
    terms = state_cost_terms(privileged_state, w.form)
    deviation = jnp.clip(action, -1.0, 1.0) - w.action_baseline
    if w.form == "norm":  # throttle units: (a + 1) / 2
        deviation = 0.5 * deviation
    action_cost = jnp.sum(jnp.square(deviation), axis=-1)
    cost = (
        w.position * terms["position"]
        + w.orientation * terms["orientation"]
        + w.linear_velocity * terms["linear_velocity"]
        + w.angular_velocity * terms["angular_velocity"]
        + w.action * action_cost
    )
    r = w.constant - w.scale * cost
    return jnp.where(terminated, jnp.asarray(w.termination_penalty, r.dtype), r)


# The paper's curriculum (RLtools learning-to-fly): per stage, multiply then cap.
CURRICULUM = {"position": (1.2, 40.0), "linear_velocity": (1.4, 1.0), "action": (1.4, 1.0)}


def curriculum_step(weights: RewardWeights) -> RewardWeights:
    """One curriculum stage (RLtools: every 100k steps): position x1.2 up to 40, velocity and
    action x1.4 up to 1. Recompute the replay buffer's rewards with ``reward`` afterwards."""
    changes = {
        name: jnp.minimum(getattr(weights, name) * factor, cap)
        for name, (factor, cap) in CURRICULUM.items()
    }
    return dataclasses.replace(weights, **changes)


def curriculum_weights(weights: RewardWeights, stages: jax.Array | int) -> RewardWeights:
    """``weights`` after ``stages`` calls of ``curriculum_step`` (closed form, traceable)."""
    changes = {
        name: jnp.minimum(getattr(weights, name) * jnp.power(factor, stages), cap)
        for name, (factor, cap) in CURRICULUM.items()
    }
    return dataclasses.replace(weights, **changes)
