"""The safety layer between a policy and a robot: no ROS, no jax, numpy only.

``Guard.step(act, obs, age_s, dt)`` turns an observation into the action a robot may execute:

* e-stop: latched by ``estop()`` until ``reset()``; every step meanwhile gives the safe action;
* watchdog: no observation yet, or one older than ``watchdog_s`` -> the safe action;
* NaN/Inf observation, or one beyond the bundle's normaliser range (``|obs - mean| / std >
  obs_limit``, the training data's scale: by default the bundle's ``obs_clip``) -> the safe
  action, never an exception;
* a non-finite action from the policy -> the safe action;
* otherwise the action is clipped to the bundle's action range (relative to the referenced
  observation values for a relative-action bundle) and rate-limited: each value moves at most
  ``max_action_rate`` of its range per second from the previous command.

Every fall-back is counted in ``faults`` under its reason. The safe action (the bundle's: zero,
hover thrust or brake, else the centre of the action range) bypasses the rate limit: stopping is
never slowed down.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable

import numpy as np

from policies.bundle import PolicyBundle

REASONS = ("estop", "stale", "nonfinite_obs", "out_of_range_obs", "nonfinite_action", "paused")


@dataclasses.dataclass(frozen=True)
class SafetyConfig:
    watchdog_s: float = 0.1  # observations older than this are stale
    obs_limit: float | None = None  # normalised |obs| beyond this is out of range (None: obs_clip)
    max_action_rate: float | None = None  # fraction of each action's range per second (None: off)
    clip_actions: bool = True

    def __post_init__(self) -> None:
        if not self.watchdog_s > 0:
            raise ValueError(f"watchdog_s must be positive, got {self.watchdog_s}")
        if self.obs_limit is not None and not self.obs_limit > 0:
            raise ValueError(f"obs_limit must be positive, got {self.obs_limit}")
        if self.max_action_rate is not None and not self.max_action_rate > 0:
            raise ValueError(f"max_action_rate must be positive, got {self.max_action_rate}")


def safe_action(bundle: PolicyBundle) -> np.ndarray:
    """The bundle's safe action, else the centre of its action range (as the generated C)."""
    if bundle.safe_action is not None:
        return np.asarray(bundle.safe_action, np.float32)
    return np.asarray(bundle.action_offset, np.float32)


@dataclasses.dataclass(frozen=True)
class Limits:
    """What the guard checks against, for the observation and action of one control tick:
    normaliser (mean, std, clip), action range (offset +- |scale|, plus the observation values
    ``reference`` names, -1 for none) and the safe action."""

    safe: np.ndarray  # [A]
    offset: np.ndarray  # [A]
    scale: np.ndarray  # [A]
    reference: np.ndarray | None  # [A] observation indices or -1
    obs_mean: np.ndarray | None  # [O]
    obs_std: np.ndarray | None
    obs_clip: float

    @classmethod
    def of(cls, bundle: PolicyBundle) -> Limits:
        """A bundle's limits per tick: as they are, or, for an action-chunking bundle, those of
        its latest frame and of the chunk's first action (every action of a chunk has the same
        range, relative to the same frame)."""
        safe, ref = safe_action(bundle), bundle.action_reference
        mean, std = bundle.obs_mean, bundle.obs_std
        offset, scale = bundle.action_offset, bundle.action_scale
        chunk = bundle.spec.get("chunk")
        if chunk:
            o = bundle.obs_dim // int(chunk["obs_history"])
            a = bundle.action_dim // int(chunk["action_steps"])
            start = bundle.obs_dim - o  # the latest frame
            safe, offset, scale = safe[:a], offset[:a], scale[:a]
            if ref is not None:
                ref = np.where(ref[:a] >= start, ref[:a] - start, -1)
            if mean is not None:
                mean, std = mean[start:], std[start:]
        return cls(
            np.asarray(safe, np.float32),
            np.asarray(offset, np.float32),
            np.asarray(scale, np.float32),
            ref,
            mean,
            std,
            float(bundle.obs_clip),
        )

    def centre(self, obs: np.ndarray) -> np.ndarray:
        if self.reference is None:
            return self.offset
        picked = np.take(obs, np.maximum(self.reference, 0))
        return self.offset + np.where(self.reference >= 0, picked, 0.0)


class Guard:
    def __init__(self, bundle: PolicyBundle | Limits, cfg: SafetyConfig = SafetyConfig()):
        self.limits = bundle if isinstance(bundle, Limits) else Limits.of(bundle)
        self.cfg = cfg
        self.safe = self.limits.safe
        self.limit = self.limits.obs_clip if cfg.obs_limit is None else cfg.obs_limit
        self.faults: Counter[str] = Counter()
        self.estopped = False
        self.paused = False
        self.previous: np.ndarray | None = None
        self.last_reason = "none"

    # --- operator commands ------------------------------------------------------------------
    def estop(self) -> None:
        self.estopped = True

    def reset(self) -> None:
        """Releases a latched e-stop; the next command is not rate-limited from the stop."""
        self.estopped = False
        self.previous = None

    # --- one control step -------------------------------------------------------------------
    def _fallback(self, reason: str) -> tuple[np.ndarray, str]:
        self.faults[reason] += 1
        self.previous = self.safe
        self.last_reason = reason
        return self.safe.copy(), reason

    def check(self, obs: np.ndarray | None, age_s: float) -> str | None:
        """Why ``obs`` must not reach the policy, or None."""
        if self.estopped:
            return "estop"
        if self.paused:
            return "paused"
        if obs is None or not age_s <= self.cfg.watchdog_s:
            return "stale"
        if not np.all(np.isfinite(obs)):
            return "nonfinite_obs"
        b = self.limits
        if b.obs_mean is not None:
            z = np.abs((obs - b.obs_mean) / b.obs_std)
            if not np.all(z <= self.limit):
                return "out_of_range_obs"
        return None

    def step(
        self,
        act: Callable[[np.ndarray], np.ndarray],
        obs: np.ndarray | None,
        age_s: float,
        dt: float,
    ) -> tuple[np.ndarray, str]:
        """``(action, reason)``: the policy's action and ``"ok"``, or the safe action and why.
        ``age_s``: how old ``obs`` is; ``dt``: the control period (for the rate limit)."""
        obs = None if obs is None else np.asarray(obs, np.float32)
        reason = self.check(obs, age_s)
        if reason is not None:
            return self._fallback(reason)
        action = np.asarray(act(obs), np.float32)
        if action.shape != self.safe.shape or not np.all(np.isfinite(action)):
            return self._fallback("nonfinite_action")
        return self._limit(action, obs, dt), "ok"

    def _limit(self, action: np.ndarray, obs: np.ndarray, dt: float) -> np.ndarray:
        span = np.abs(self.limits.scale)
        if self.cfg.clip_actions:
            centre = self.limits.centre(obs)  # offset (+ the referenced observation values)
            action = np.clip(action, centre - span, centre + span)
        if self.cfg.max_action_rate is not None and self.previous is not None:
            step = self.cfg.max_action_rate * 2 * span * max(dt, 0.0)
            action = np.clip(action, self.previous - step, self.previous + step)
        action = action.astype(np.float32)
        self.previous = action
        self.last_reason = "ok"
        return action


def percentile_ms(values: list[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` (s) in ms; NaN when empty."""
    return float(np.percentile(values, q) * 1e3) if values else math.nan


__all__ = ["REASONS", "Guard", "Limits", "SafetyConfig", "percentile_ms", "safe_action"]
