"""Offline datasets: transitions with episode boundaries and Monte-Carlo returns, on disk as one
folder of ``.npy`` files that load memory-mapped.

A dataset is a ``Transition`` of numpy arrays with one leading axis ``[N]`` whose episodes are
contiguous and in time order: an episode ends at the first step with ``terminated`` or
``truncated``, and the next row starts the next episode. ``extras["mc_return"]`` holds each
step's discounted return to the end of its episode (Cal-QL's floor), for ``meta["gamma"]``.
Episodes a collection cut short are marked ``truncated`` (their value is still bootstrapped);
their Monte-Carlo returns only count the steps that were recorded.

Layout of a dataset folder::

    dataset.json            format, version, env, shapes, counts, gamma, behaviour policy
    obs.npy                 or obs.state.npy, obs.privileged_state.npy for dict observations
    next_obs.npy            (likewise)
    action.npy reward.npy terminated.npy truncated.npy mc_return.npy

``load`` memory-maps every array, so a 1M-transition dataset costs no memory until it is read
and is read once when it goes to the device (``to_replay``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robotrl.types import EnvSpec, Transition

FORMAT = "robotrl-dataset"
VERSION = 1
META_FILE = "dataset.json"
_FIELDS = ("action", "reward", "terminated", "truncated", "mc_return")


class DatasetError(ValueError):
    """A dataset that cannot be used: missing, truncated, corrupt, or not for this env."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Transitions ``[N]`` (episodes contiguous) and their metadata (``dataset.json``)."""

    transitions: Transition
    meta: dict[str, Any]

    def __len__(self) -> int:
        return int(self.transitions.reward.shape[0])

    @property
    def done(self) -> np.ndarray:
        return np.logical_or(self.transitions.terminated, self.transitions.truncated)

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every episode, in order."""
        return episode_returns(self.transitions.reward, self.done)


def episode_returns(reward: np.ndarray, done: np.ndarray) -> np.ndarray:
    """Undiscounted return of every episode that ends (``done``) in ``reward [N]``, in order;
    steps after the last end are not counted."""
    ends = np.flatnonzero(done)
    sums = np.cumsum(np.asarray(reward, np.float64))
    return np.diff(np.concatenate([[0.0], sums[ends]]))


def mc_returns(reward: np.ndarray, done: np.ndarray, gamma: float) -> np.ndarray:
    """Discounted return to the end of each step's episode, ``[N]`` (episodes contiguous): one
    reverse ``lax.scan``."""

    def back(running, step):
        r, d = step
        running = r + gamma * jnp.where(d, 0.0, running)
        return running, running

    xs = (jnp.asarray(reward, jnp.float32), jnp.asarray(done, bool))
    return np.asarray(jax.lax.scan(back, jnp.float32(0.0), xs, reverse=True)[1])


def _assemble(raw: Transition, gamma: float, meta: dict[str, Any]) -> Dataset:
    """The dataset of ``raw`` transitions ``[N]`` (episodes contiguous): dtypes fixed, the
    Monte-Carlo returns for ``gamma`` in ``extras``, counts in ``meta``."""
    terminated = np.asarray(raw.terminated, bool)
    truncated = np.asarray(raw.truncated, bool)
    reward = np.asarray(raw.reward, np.float32)
    t = raw._replace(
        action=np.asarray(raw.action, np.float32),
        reward=reward,
        terminated=terminated,
        truncated=truncated,
        extras={"mc_return": mc_returns(reward, terminated | truncated, gamma)},
    )
    returns = episode_returns(reward, terminated | truncated)
    meta = {
        **meta,
        "gamma": gamma,
        "num_transitions": len(reward),
        "num_episodes": len(returns),
        "return_mean": float(returns.mean()) if len(returns) else float("nan"),
        "return_std": float(returns.std()) if len(returns) else float("nan"),
    }
    return Dataset(t, meta)


def from_streams(streams: Transition, gamma: float, meta: dict[str, Any]) -> Dataset:
    """A dataset from ``[T, E]`` env streams (E parallel envs, time-major, auto-reset).

    Each env's stream becomes its episodes in order; the unfinished tail of every stream is
    marked truncated (the collection cut it, not the env). ``meta`` describes the env and the
    behaviour policy; counts and ``gamma`` are added.
    """
    steps, num_envs = np.asarray(streams.reward).shape
    env_done = np.logical_or(streams.terminated, streams.truncated)
    # The behaviour's return: episodes the env ended (not the ones the collection cut).
    complete = np.concatenate(
        [episode_returns(np.asarray(streams.reward)[:, e], env_done[:, e]) for e in range(num_envs)]
    )
    truncated = np.asarray(streams.truncated).copy()
    truncated[-1] = np.logical_not(np.asarray(streams.terminated)[-1])
    # env-major: all of env 0's steps, then env 1's... (each env's episodes stay contiguous)
    flat = lambda x: np.swapaxes(np.asarray(x), 0, 1).reshape(steps * num_envs, *x.shape[2:])
    raw = jax.tree.map(flat, streams._replace(truncated=truncated))
    meta = {
        **meta,
        "behaviour_return_mean": float(np.mean(complete)) if len(complete) else None,
        "behaviour_episodes": len(complete),
        "cut_episodes": int(num_envs - env_done[-1].sum()),
    }
    return _assemble(raw, gamma, meta)


def from_episodes(episodes: Sequence[Mapping[str, Any]], gamma: float, meta: dict) -> Dataset:
    """A dataset from whole episodes, each a mapping with ``obs``, ``next_obs`` (arrays or dicts
    of arrays), ``action``, ``reward``, ``terminated``, ``truncated`` (``[n]`` leading axes). An
    episode whose last step is neither terminated nor truncated gets marked truncated."""
    if not episodes:
        raise DatasetError("no episodes")
    parts = []
    for ep in episodes:
        truncated = np.asarray(ep["truncated"], bool).copy()
        if len(truncated) == 0:
            raise DatasetError("an episode has no steps")
        truncated[-1] |= not bool(np.asarray(ep["terminated"])[-1])
        parts.append(Transition(**{**ep, "truncated": truncated}))
    raw = jax.tree.map(lambda *xs: np.concatenate(xs), *parts)
    returns = [float(np.sum(p.reward, dtype=np.float64)) for p in parts]
    meta = {
        **meta,
        "behaviour_return_mean": float(np.mean(returns)),
        "behaviour_episodes": len(returns),
        "cut_episodes": 0,
    }
    return _assemble(raw, gamma, meta)


def _arrays(t: Transition) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name in ("obs", "next_obs"):
        value = getattr(t, name)
        if isinstance(value, Mapping):
            out.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            out[name] = value
    out.update({f: getattr(t, f) for f in _FIELDS[:-1]})
    out["mc_return"] = t.extras["mc_return"]
    return out


def save(dataset: Dataset, path: str | Path) -> Path:
    """Writes ``dataset`` as a folder (``dataset.json`` last, so a half-written folder never
    reads as a dataset)."""
    folder = Path(path)
    if folder.exists() and any(folder.iterdir()):
        raise DatasetError(f"dataset folder {folder} exists and is not empty")
    folder.mkdir(parents=True, exist_ok=True)
    arrays = _arrays(dataset.transitions)
    for name, value in arrays.items():
        np.save(folder / f"{name}.npy", np.ascontiguousarray(value))
    meta = {
        **dataset.meta,
        "format": FORMAT,
        "version": VERSION,
        "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    return folder


def load(path: str | Path, spec: EnvSpec | None = None) -> Dataset:
    """Memory-maps a dataset folder; with ``spec``, checks it fits that env. Every problem
    (missing file, truncated array, wrong version, wrong shapes) raises ``DatasetError``."""
    folder = Path(path)
    meta_file = folder / META_FILE
    if not meta_file.is_file():
        raise DatasetError(f"{folder} is not a dataset (no {META_FILE})")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{meta_file} is corrupt: {err}") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DatasetError(
            f"{folder}: format {meta.get('format')!r} version {meta.get('version')!r}, expected "
            f"{FORMAT!r} version {VERSION}"
        )
    arrays: dict[str, np.ndarray] = {}
    for name, info in meta["arrays"].items():
        file = folder / f"{name}.npy"
        try:
            arr = np.load(file, mmap_mode="r")
        except FileNotFoundError:
            raise DatasetError(f"{folder}: {file.name} is missing") from None
        except ValueError as err:  # a short file: "mmap length is greater than file size"
            raise DatasetError(f"{folder}: {file.name} is truncated or corrupt ({err})") from None
        if list(arr.shape) != info["shape"] or str(arr.dtype) != info["dtype"]:
            raise DatasetError(
                f"{folder}: {file.name} is {arr.dtype}{list(arr.shape)}, dataset.json says "
                f"{info['dtype']}{info['shape']}"
            )
        arrays[name] = arr
    n = meta["num_transitions"]
    bad = [k for k, v in arrays.items() if v.shape[0] != n]
    if bad:
        raise DatasetError(f"{folder}: {bad[0]} has {arrays[bad[0]].shape[0]} rows, expected {n}")

    def obs(prefix: str):
        if prefix in arrays:
            return arrays[prefix]
        return {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(prefix + ".")}

    dataset = Dataset(
        Transition(
            obs=obs("obs"),
            action=arrays["action"],
            reward=arrays["reward"],
            terminated=arrays["terminated"],
            truncated=arrays["truncated"],
            next_obs=obs("next_obs"),
            extras={"mc_return": arrays["mc_return"]},
        ),
        meta,
    )
    if spec is not None:
        check_fits(dataset, spec, str(folder))
    return dataset


def check_fits(dataset: Dataset, spec: EnvSpec, name: str = "dataset") -> None:
    """Raises ``DatasetError`` unless the dataset's observations and actions fit ``spec``."""
    t = dataset.transitions
    state = t.obs["state"] if isinstance(t.obs, Mapping) else t.obs
    if tuple(state.shape[1:]) != tuple(spec.obs.shape):
        raise DatasetError(
            f"{name}: observations are {tuple(state.shape[1:])}, env {spec.name} has "
            f"{tuple(spec.obs.shape)}"
        )
    if spec.privileged_obs is not None and (
        not isinstance(t.obs, Mapping) or "privileged_state" not in t.obs
    ):
        raise DatasetError(f"{name}: env {spec.name} has a privileged observation, the data none")
    if t.action.shape[1:] != (spec.action_dim,):
        raise DatasetError(
            f"{name}: actions are {tuple(t.action.shape[1:])}, env {spec.name} has "
            f"({spec.action_dim},)"
        )


def mix(datasets: Sequence[Dataset], meta: dict[str, Any] | None = None) -> Dataset:
    """All episodes of ``datasets`` one after another (D4RL's medium-expert is a mix)."""
    if not datasets:
        raise DatasetError("mix needs at least one dataset")
    first = datasets[0]
    for d in datasets[1:]:
        if _arrays(d.transitions).keys() != _arrays(first.transitions).keys():
            raise DatasetError("mix: the datasets have different fields")
        if d.meta.get("gamma") != first.meta.get("gamma"):
            raise DatasetError("mix: the datasets' Monte-Carlo returns use different gammas")
    # The Monte-Carlo returns are recomputed (same gamma, same episodes).
    cat = lambda *xs: np.concatenate([np.asarray(x) for x in xs])
    raw = jax.tree.map(cat, *[d.transitions._replace(extras=()) for d in datasets])
    base = {k: v for k, v in first.meta.items() if k in ("env", "env_name")}
    parts = [{"behaviour": d.meta.get("behaviour"), "num_transitions": len(d)} for d in datasets]
    episodes = [d.meta.get("behaviour_episodes") or 0 for d in datasets]
    returns = [d.meta.get("behaviour_return_mean") for d in datasets]
    known = [(n, r) for n, r in zip(episodes, returns, strict=True) if r is not None and n > 0]
    out_meta = {
        **base,
        "behaviour": {"policy": "mixture", "parts": parts},
        "behaviour_episodes": sum(n for n, _ in known),
        "behaviour_return_mean": (
            sum(n * r for n, r in known) / sum(n for n, _ in known) if known else None
        ),
        **(meta or {}),
    }
    return _assemble(raw, first.meta["gamma"], out_meta)
