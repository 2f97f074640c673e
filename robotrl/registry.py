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
    # -> (Config class, make(config) -> env, named randomisation parameter sets)
    load: Callable[[], tuple[type, Callable[[Any], Any], dict[str, Any]]]


def _sac():
    from robotrl.algos import sac

    return sac.SACConfig, sac.make


def _td3():
    from robotrl.algos import td3

    return td3.TD3Config, td3.make


def _ppo():
    from robotrl.algos import ppo

    return ppo.PPOConfig, ppo.make


def _pendulum():
    from sims.pendulum import PARAMETER_SETS, Pendulum, PendulumConfig

    return PendulumConfig, Pendulum, PARAMETER_SETS


def _rccar():
    from sims.rccar import PARAMETER_SETS, RCCar, RCCarConfig

    return RCCarConfig, RCCar, PARAMETER_SETS


def _pusht():
    from sims.pusht import PARAMETER_SETS, PushT, PushTConfig

    return PushTConfig, PushT, PARAMETER_SETS


ALGORITHMS: dict[str, AlgoEntry] = {
    "sac": AlgoEntry(_sac),
    "td3": AlgoEntry(_td3),
    "ppo": AlgoEntry(_ppo),
}

ENVS: dict[str, EnvEntry] = {
    "pendulum": EnvEntry(_pendulum),
    "rccar": EnvEntry(_rccar),
    "pusht": EnvEntry(_pusht),
}

HOST_PREFIXES = ("gym/", "dmc/")


def is_host_env(name: str) -> bool:
    return name.startswith(HOST_PREFIXES)
