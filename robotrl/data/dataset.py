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

    @property
    def mc_return(self) -> np.ndarray:
        return self.transitions.extras["mc_return"]

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every episode, in order."""
        ends = np.flatnonzero(self.done)
        sums = np.cumsum(self.transitions.reward, dtype=np.float64)
        return np.diff(np.concatenate([[0.0], sums[ends]]))

    def select(self, rows: np.ndarray) -> Dataset:
        """The rows ``rows`` (whole episodes, for the boundaries to stay right)."""
        pick = lambda x: np.asarray(x[rows])
        t = self.transitions
        return Dataset(
            Transition(
                obs=_map(pick, t.obs),
                action=pick(t.action),
                reward=pick(t.reward),
                terminated=pick(t.terminated),
                truncated=pick(t.truncated),
                next_obs=_map(pick, t.next_obs),
                extras={"mc_return": pick(t.extras["mc_return"])},
            ),
            dict(self.meta),
        )


def _map(fn, obs):
    return {k: fn(v) for k, v in obs.items()} if isinstance(obs, Mapping) else fn(obs)


def mc_returns(reward: np.ndarray, done: np.ndarray, gamma: float) -> np.ndarray:
    """Discounted return to the end of each step's episode, ``[N]`` (episodes contiguous)."""
    out = np.empty(len(reward), np.float64)
    running = 0.0
    for i in range(len(reward) - 1, -1, -1):
        if done[i]:
            running = 0.0
        running = float(reward[i]) + gamma * running
        out[i] = running
    return out.astype(np.float32)


def from_streams(streams: Transition, gamma: float, meta: dict[str, Any]) -> Dataset:
    """A dataset from ``[T, E]`` env streams (E parallel envs, time-major, auto-reset).

    Each env's stream becomes its episodes in order; the unfinished tail of every stream is
    marked truncated (the collection cut it, not the env). ``meta`` describes the env and the
    behaviour policy; counts and ``gamma`` are added.
    """
    steps, num_envs = np.asarray(streams.reward).shape
    # env-major: all of env 0's steps, then env 1's... (each env's episodes stay contiguous)
    flat = lambda x: np.swapaxes(np.asarray(x), 0, 1).reshape(steps * num_envs, *x.shape[2:])
    env_done = np.logical_or(streams.terminated, streams.truncated)
    # The behaviour's return: episodes the env ended (not the ones the collection cut).
    ep_sums = np.cumsum(np.asarray(streams.reward, np.float64), axis=0)
    complete = []
    for e in range(num_envs):
        ends = np.flatnonzero(env_done[:, e])
        complete.extend(np.diff(np.concatenate([[0.0], ep_sums[ends, e]])).tolist())
    truncated = np.asarray(streams.truncated).copy()
    truncated[-1] = np.logical_not(np.asarray(streams.terminated)[-1])
    terminated, truncated, reward = flat(streams.terminated), flat(truncated), flat(streams.reward)
    done = np.logical_or(terminated, truncated)
    transitions = Transition(
        obs=_map(flat, streams.obs),
        action=flat(streams.action).astype(np.float32),
        reward=reward.astype(np.float32),
        terminated=terminated.astype(bool),
        truncated=truncated.astype(bool),
        next_obs=_map(flat, streams.next_obs),
        extras={"mc_return": mc_returns(reward, done, gamma)},
    )
    meta = {
        **meta,
        "gamma": gamma,
        "behaviour_return_mean": float(np.mean(complete)) if complete else None,
        "behaviour_episodes": len(complete),
        "cut_episodes": int(num_envs - env_done[-1].sum()),
    }
    return Dataset(transitions, _with_counts(meta, transitions))


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
        parts.append({**ep, "truncated": truncated})
    cat = lambda key: _map_many(lambda *xs: np.concatenate(xs), [p[key] for p in parts])
    reward = cat("reward").astype(np.float32)
    terminated, truncated = cat("terminated").astype(bool), cat("truncated").astype(bool)
    transitions = Transition(
        obs=cat("obs"),
        action=cat("action").astype(np.float32),
        reward=reward,
        terminated=terminated,
        truncated=truncated,
        next_obs=cat("next_obs"),
        extras={"mc_return": mc_returns(reward, terminated | truncated, gamma)},
    )
    returns = [float(np.sum(p["reward"], dtype=np.float64)) for p in parts]
    meta = {
        **meta,
        "gamma": gamma,
        "behaviour_return_mean": float(np.mean(returns)),
        "behaviour_episodes": len(returns),
        "cut_episodes": 0,
    }
    return Dataset(transitions, _with_counts(meta, transitions))


def _with_counts(meta: dict[str, Any], t: Transition) -> dict[str, Any]:
    done = np.logical_or(t.terminated, t.truncated)
    ends = np.flatnonzero(done)
    sums = np.cumsum(t.reward, dtype=np.float64)
    returns = np.diff(np.concatenate([[0.0], sums[ends]])) if len(ends) else np.zeros(0)
    return {
        **meta,
        "num_transitions": len(t.reward),
        "num_episodes": len(ends),
        "return_mean": float(returns.mean()) if len(returns) else float("nan"),
        "return_std": float(returns.std()) if len(returns) else float("nan"),
    }


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
    meta = _with_counts(meta, dataset.transitions)
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
    cat = lambda *xs: np.concatenate([np.asarray(x) for x in xs])
    t = [d.transitions for d in datasets]
    transitions = Transition(
        obs=_map_many(cat, [x.obs for x in t]),
        action=cat(*[x.action for x in t]),
        reward=cat(*[x.reward for x in t]),
        terminated=cat(*[x.terminated for x in t]),
        truncated=cat(*[x.truncated for x in t]),
        next_obs=_map_many(cat, [x.next_obs for x in t]),
        extras={"mc_return": cat(*[x.extras["mc_return"] for x in t])},
    )
    base = {k: v for k, v in first.meta.items() if k in ("env", "env_name", "gamma")}
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
    return Dataset(transitions, _with_counts(out_meta, transitions))


def _map_many(fn, values):
    if isinstance(values[0], Mapping):
        return {k: fn(*[v[k] for v in values]) for k in values[0]}
    return fn(*values)
