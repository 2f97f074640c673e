"""Domain randomisation over named parameter sets (the CAD2RL idea: the real world is one more
variation, and a held-out set of variations measures that).

An env keeps the physical (and, for image envs, visual) parameters of an episode in
``EnvState.params``, a flat dict of arrays. A *parameter set* names, per parameter, the range it
is drawn from at every reset; each env's ``randomize.py`` ships ``PARAMETER_SETS`` such as
``{"train": ..., "heldout": ...}``, and ``make_randomizer`` turns one set into the pure
``randomize(key, params) -> params`` that ``DomainRandomization`` applies.

A range is ``Range(low, high, mode)``:
  ``scale``  params * U(low, high)        (masses, inertia, friction, motor constants)
  ``offset`` params + U(low, high)        (colours, camera jitter, biases)
  ``value``  U(low, high), ignoring the default (latency steps, when the env rounds them)
Every element of an array parameter is drawn independently (per-link masses differ).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from robotrl.types import PRNGKey

MODES = ("scale", "offset", "value")


@dataclasses.dataclass(frozen=True)
class Range:
    low: float
    high: float
    mode: str = "scale"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"randomisation mode must be one of {MODES}, got {self.mode!r}")
        if self.high < self.low:
            raise ValueError(f"randomisation range is empty: [{self.low}, {self.high}]")


ParameterSet = Mapping[str, Range]


def make_randomizer(ranges: ParameterSet) -> Callable[[PRNGKey, dict[str, Any]], dict[str, Any]]:
    """``randomize(key, params) -> params`` drawing every named parameter from its range."""
    names = sorted(ranges)

    def randomize(key: PRNGKey, params: dict[str, Any]) -> dict[str, Any]:
        missing = [n for n in names if n not in params]
        if missing:
            raise KeyError(
                f"randomised parameters {missing} are not in the env's params {sorted(params)}"
            )
        out = dict(params)
        for name, sub in zip(names, jax.random.split(key, len(names)), strict=True):
            r, value = ranges[name], jnp.asarray(params[name])
            draw = jax.random.uniform(sub, value.shape, value.dtype, r.low, r.high)
            if r.mode == "scale":
                out[name] = value * draw
            elif r.mode == "offset":
                out[name] = value + draw
            else:
                out[name] = draw
        return out

    return randomize


def select_set(sets: Mapping[str, ParameterSet], name: str) -> ParameterSet:
    """The named set, or a one-line error listing the available names."""
    if name not in sets:
        raise ValueError(f"unknown randomisation set {name!r}; this env has {sorted(sets)}")
    return sets[name]
