"""WSRL end to end: offline pretraining, then online fine-tuning that starts from it.

The fine-tuning itself is not a separate loop. These switches of the one scan loop
(``TrainConfig``) make it:

- ``init_from``: start from the pretrained run's actor and critic.
- ``random_warmup: false`` and ``learning_starts``: the frozen pretrained policy fills a fresh
  buffer with no gradient step.
- no ``dataset``: the offline data is never sampled.

This module plans and runs the stages of one preset. A ``pretrain:`` section holds the
offline stage's ``train`` and the ``algo`` keys that differ from the fine-tune's (its ``algo``
overrides the fine-tune's, so both stages have the same networks); ``name``, ``seed`` and
``env`` are shared::

    name: wsrl_pendulum
    env: {name: pendulum}
    pretrain:
      algo: {name: cql, calql: true, batch_size: 256, utd: 1}
      train: {dataset: data/pendulum-medium, total_steps: 20000}
    algo: {name: sac, num_critics: 10, critic_layer_norm: true, utd: 4, batch_size: 1024}
    train: {random_warmup: false, learning_starts: 5000, total_steps: 50000}

The run directory ``OUT`` is the fine-tuning run; the pretraining run is ``OUT/pretrain``.
To fine-tune again from that checkpoint (or any other offline run), train a preset without
``pretrain`` and with ``train.init_from=OUT/pretrain``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from robotrl.config import ConfigError

STAGE_KEYS = ("algo", "train")


class Stage(NamedTuple):
    """One training run of a preset: its validated config and its run directory."""

    cfg: Any  # experiment.ExperimentConfig
    out: Path
    what: str  # a line announcing the stage


def split_stages(data: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Splits a preset into (pretraining config or None, fine-tuning config), both plain data.
    The pretraining ``algo`` overrides the fine-tuning one, so the networks are written once
    and match by construction."""
    data = dict(data)
    pretrain = data.pop("pretrain", None)
    if pretrain is None:
        return None, data
    if not isinstance(pretrain, dict):
        raise ConfigError("pretrain: expected a mapping with 'algo' and 'train'")
    unknown = sorted(set(pretrain) - set(STAGE_KEYS))
    if unknown:
        raise ConfigError(
            f"pretrain.{unknown[0]}: a pretraining stage sets only {' and '.join(STAGE_KEYS)} "
            "(name, seed and env are shared with the fine-tuning stage)"
        )
    if (data.get("train") or {}).get("init_from"):
        raise ConfigError(
            "train.init_from: a preset with a pretrain section fine-tunes from its own "
            "pretraining run; drop one of the two"
        )
    stage = {k: v for k, v in data.items() if k != "train"}
    stage["algo"] = {**(data.get("algo") or {}), **(pretrain.get("algo") or {})}
    stage["train"] = pretrain.get("train") or {}
    stage["name"] = f"{data.get('name', 'run')}-pretrain"
    return stage, data


def plan(data: dict[str, Any], out: str | Path | None = None) -> list[Stage]:
    """The runs of a preset, in order: its own, or the pretraining run in ``OUT/pretrain`` then
    the fine-tune in ``OUT``. Every config and run directory is checked before anything
    trains; ``out`` None is the default run path of the preset's name."""
    from robotrl import experiment
    from robotrl.runs import RunDir, default_run_path

    pre_data, ft_data = split_stages(data)
    ft_cfg = experiment.parse_config(ft_data)
    out = Path(out or default_run_path(ft_cfg.name))
    if pre_data is None:
        return [Stage(ft_cfg, RunDir.check_free(out), f"training {ft_cfg.name} -> {out}")]
    pre_cfg = experiment.parse_config(pre_data)
    if not pre_cfg.train.offline:
        raise ConfigError(
            "pretrain.train.dataset: the pretraining stage trains offline; give it a dataset "
            "folder (robotrl dataset collect) and leave offline_fraction at 1"
        )
    pre_out = RunDir.check_free(out / "pretrain")
    ft_train = dataclasses.replace(ft_cfg.train, init_from=str(pre_out))
    return [
        Stage(pre_cfg, pre_out, f"pretraining offline ({pre_cfg.algo_name}) -> {pre_out}"),
        Stage(
            dataclasses.replace(ft_cfg, train=ft_train),
            RunDir.check_free(out),
            f"fine-tuning online ({ft_cfg.algo_name}) from {pre_out} -> {out}",
        ),
    ]


def run(
    stages: Sequence[Stage],
    *,
    progress: Callable[..., None] | None = None,
    on_log: Sequence[Callable[[int, dict[str, float]], None]] = (),
    on_stage: Callable[[str], None] = lambda what: None,
):
    """Trains ``stages`` (from ``plan``) in order; returns the last run and its last row."""
    from robotrl import experiment

    for stage in stages:
        on_stage(stage.what)
        result = experiment.train(stage.cfg, out=stage.out, progress=progress, on_log=on_log)
    return result
