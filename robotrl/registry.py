"""The one place that names algorithms and environments (the CLI edge).

Literal dicts; each entry imports its module only when used, so ``import robotrl`` never pulls in
the simulators. Host environments are named by prefix: ``gym/<gymnasium id>`` and
``dmc/<domain>-<task>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class AlgoEntry(NamedTuple):
    load: Callable[[], tuple[type, Callable[..., Any]]]  # -> (Config class, make(config, spec))


class EnvEntry(NamedTuple):
    # -> (Config class, make(config) -> functional env, named randomisation parameter sets)
    load: Callable[[], tuple[type, Callable[[Any], Any], dict[str, Any]]]
    # A native (host, numpy) backend of the same task, or None:
    # -> make_host(config, num_envs, ranges) -> HostEnv (ranges: a parameter set or None)
    native: Callable[[], Callable[[Any, int, Any], Any]] | None = None
    host_only: bool = False  # no functional env (load's make is None): the host loop only


def _sac():
    from robotrl.algos import sac

    return sac.SACConfig, sac.make


def _td3():
    from robotrl.algos import td3

    return td3.TD3Config, td3.make


def _ppo():
    from robotrl.algos import ppo

    return ppo.PPOConfig, ppo.make


def _cql():
    from robotrl.algos import cql

    return cql.CQLConfig, cql.make


def _iql():
    from robotrl.algos import iql

    return iql.IQLConfig, iql.make


def _srl():
    from robotrl.algos import srl

    return srl.SRLConfig, srl.make


def _arsq():
    from robotrl.algos import arsq

    return arsq.ARSQConfig, arsq.make


def _bandit2d():
    from sims.bandit import PARAMETER_SETS, Bandit2D, Bandit2DConfig

    return Bandit2DConfig, Bandit2D, PARAMETER_SETS


def _pendulum():
    from sims.pendulum import PARAMETER_SETS, Pendulum, PendulumConfig

    return PendulumConfig, Pendulum, PARAMETER_SETS


def _rccar():
    from sims.rccar import PARAMETER_SETS, RCCar, RCCarConfig

    return RCCarConfig, RCCar, PARAMETER_SETS


def _pusht():
    from sims.pusht import PARAMETER_SETS, PushT, PushTConfig

    return PushTConfig, PushT, PARAMETER_SETS


def _locomotion(task: str) -> EnvEntry:
    def load():
        from sims.locomotion import PARAMETER_SETS, LocomotionConfig, make_mjx_env

        return LocomotionConfig, lambda cfg: make_mjx_env(task, cfg), PARAMETER_SETS

    def native():
        from sims.locomotion import NativeLocomotionEnv

        return lambda cfg, n, ranges: NativeLocomotionEnv(task, n, cfg, randomize=ranges)

    return EnvEntry(load, native)


def _rccar_practice() -> EnvEntry:
    """FastRLAP's autonomous practice on the RC car (``deploy.practice``): a host env only."""

    def load():
        from deploy.practice import PracticeConfig

        return PracticeConfig, None, {}

    def native():
        from deploy.practice import make_practice_env

        return make_practice_env

    return EnvEntry(load, native, host_only=True)


def _quadrotor():
    from sims.quadrotor import PARAMETER_SETS, Quadrotor, QuadrotorConfig

    return QuadrotorConfig, Quadrotor, PARAMETER_SETS


ALGORITHMS: dict[str, AlgoEntry] = {
    "sac": AlgoEntry(_sac),
    "td3": AlgoEntry(_td3),
    "ppo": AlgoEntry(_ppo),
    "iql": AlgoEntry(_iql),
    "cql": AlgoEntry(_cql),
    "arsq": AlgoEntry(_arsq),
    "srl": AlgoEntry(_srl),
}

ENVS: dict[str, EnvEntry] = {
    "pendulum": EnvEntry(_pendulum),
    "rccar": EnvEntry(_rccar),
    "rccar_practice": _rccar_practice(),
    "pusht": EnvEntry(_pusht),
    "quadrotor": EnvEntry(_quadrotor),
    "bandit2d": EnvEntry(_bandit2d),  # ARSQ's 2-D one-step bandit (sims/bandit)
    # MuJoCo locomotion (gymnasium v5 tasks): MJX (functional) or native MuJoCo (host).
    "hopper": _locomotion("hopper"),
    "halfcheetah": _locomotion("halfcheetah"),
    "walker2d": _locomotion("walker2d"),
    "ant": _locomotion("ant"),
    # dm_control's Cartpole Balance on MuJoCo (Playground's CartpoleBalance), same two backends.
    "cartpole_balance": _locomotion("cartpole_balance"),
}

HOST_PREFIXES = ("gym/", "dmc/")


def is_host_env(name: str) -> bool:
    """Named host envs (gymnasium, dm_control): they only run through the host loop."""
    return name.startswith(HOST_PREFIXES)


BACKENDS = ("auto", "jax", "native")


def resolve_backend(name: str, backend: str) -> str:
    """``"jax"`` (functional env, scan loop) or ``"native"`` (host env, host loop).

    ``auto`` picks the native backend on a CPU when the env has one (native MuJoCo steps ~10x
    faster than MJX there) and the functional one on an accelerator.
    """
    if backend not in BACKENDS:
        raise ValueError(f"env.backend must be one of {BACKENDS}, got {backend!r}")
    if is_host_env(name) or (name in ENVS and ENVS[name].host_only):
        if backend == "jax":
            raise ValueError(f"{name} is a host env: it has no jax backend")
        return "native"
    has_native = ENVS[name].native is not None
    if backend == "native" and not has_native:
        raise ValueError(f"{name} has no native backend; use env.backend=jax")
    if backend == "auto":
        import jax

        return "native" if has_native and jax.default_backend() == "cpu" else "jax"
    return backend
