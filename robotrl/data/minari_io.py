"""Minari datasets in and out, so users can bring the community's offline data (and share
theirs). Needs the ``offline`` extra (``minari[hdf5]``). Nothing is downloaded: ``from_minari``
reads a dataset already under ``root`` (default ``$MINARI_DATASETS_PATH`` or ``~/.minari``).

Minari stores each episode's observations ``[N + 1]`` (the last one is the final next
observation), actions, rewards, terminations and truncations ``[N]``; dict observations become a
``gymnasium.spaces.Dict``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from robotrl.data.dataset import Dataset, DatasetError, from_episodes


@contextlib.contextmanager
def _root(root: str | Path | None) -> Iterator[None]:
    if root is None:
        yield
        return
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _space(x: Any):
    import gymnasium as gym

    if isinstance(x, Mapping):
        return gym.spaces.Dict({k: _space(v) for k, v in x.items()})
    return gym.spaces.Box(-np.inf, np.inf, x.shape[1:], np.float32)


def to_minari(
    dataset: Dataset, dataset_id: str, root: str | Path | None = None, author: str = "robotrl"
) -> Path:
    """Writes ``dataset`` as the Minari dataset ``dataset_id`` (``namespace/name-v0``)."""
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    t = dataset.transitions
    ends = np.flatnonzero(dataset.done)
    starts = np.concatenate([[0], ends[:-1] + 1])
    episodes = []
    for i, (a, b) in enumerate(zip(starts, ends + 1, strict=True)):
        obs = jax.tree.map(lambda x, a=a, b=b: np.asarray(x[a:b], np.float32), t.obs)
        last = jax.tree.map(lambda x, b=b: np.asarray(x[b - 1 : b], np.float32), t.next_obs)
        episodes.append(
            EpisodeBuffer(
                id=i,
                observations=jax.tree.map(lambda o, n: np.concatenate([o, n]), obs, last),
                actions=np.asarray(t.action[a:b], np.float32),
                rewards=np.asarray(t.reward[a:b], np.float64).tolist(),
                terminations=np.asarray(t.terminated[a:b]).tolist(),
                truncations=np.asarray(t.truncated[a:b]).tolist(),
            )
        )
    low = np.full(t.action.shape[1:], -np.inf, np.float32)
    behaviour = dataset.meta.get("behaviour", {})
    with _root(root):
        minari.create_dataset_from_buffers(
            dataset_id,
            episodes,
            observation_space=_space(t.obs),
            action_space=gym.spaces.Box(low, -low, dtype=np.float32),
            algorithm_name=str(behaviour.get("algo", behaviour.get("policy", "unknown"))),
            author=author,
            description=f"robotrl dataset of {dataset.meta.get('env_name')}",
            data_format="hdf5",
        )
        return Path(minari.storage.get_dataset_path(dataset_id))


def from_minari(dataset_id: str, root: str | Path | None = None, gamma: float = 0.99) -> Dataset:
    """Reads the local Minari dataset ``dataset_id`` into robotrl's format (in memory)."""
    import minari

    with _root(root):
        try:
            source = minari.load_dataset(dataset_id, download=False)
        except (FileNotFoundError, ValueError) as err:
            raise DatasetError(f"Minari dataset {dataset_id!r}: {err}") from None
        episodes = []
        for ep in source.iterate_episodes():
            obs = ep.observations
            episodes.append(
                {
                    "obs": jax.tree.map(lambda x: np.asarray(x[:-1], np.float32), obs),
                    "next_obs": jax.tree.map(lambda x: np.asarray(x[1:], np.float32), obs),
                    "action": np.asarray(ep.actions, np.float32),
                    "reward": np.asarray(ep.rewards, np.float32),
                    "terminated": np.asarray(ep.terminations, bool),
                    "truncated": np.asarray(ep.truncations, bool),
                }
            )
    meta = {
        "env_name": f"minari/{dataset_id}",
        "behaviour": {"policy": "minari", "dataset_id": dataset_id},
    }
    return from_episodes(episodes, gamma, meta)
