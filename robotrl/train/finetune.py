"""WSRL end to end: offline pretraining, then online fine-tuning that starts from it.

The fine-tuning itself is not a separate loop. These switches of the one scan loop
(``TrainConfig``) make it:

- ``init_from``: start from the pretrained run's actor and critic.
- ``random_warmup: false`` and ``learning_starts``: the frozen pretrained policy fills a fresh
  buffer with no gradient step.
- no ``dataset``: the offline data is never sampled.

This module composes the two stages from one preset. The preset holds a ``pretrain:`` section,
which is the offline stage's own ``algo`` and ``train``; ``name``, ``seed`` and ``env`` are
shared::

    name: wsrl_pendulum
    env: {name: pendulum}
    pretrain:
      algo: {name: cql, calql: true, num_critics: 10, critic_layer_norm: true}
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
from typing import Any

from robotrl.config import ConfigError

STAGE_KEYS = ("algo", "train")


def split_stages(data: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Splits a preset into (pretraining config or None, fine-tuning config), both plain data."""
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
    shared = {k: v for k, v in data.items() if k not in STAGE_KEYS}
    stage = {**shared, **pretrain, "name": f"{data.get('name', 'run')}-pretrain"}
    return stage, data


def train(
    data: dict[str, Any],
    *,
    out: str | Path | None = None,
    progress: Callable[..., None] | None = None,
    on_log: Sequence[Callable[[int, dict[str, float]], None]] = (),
    on_stage: Callable[[str], None] | None = None,
):
    """Trains a preset's stages in order and returns the last run and its last row.

    Both stage configs are validated before anything trains. If ``out`` is None, the
    default run path of the preset's name is used.
    """
    from robotrl import experiment
    from robotrl.runs import RunDir, default_run_path

    pre_data, ft_data = split_stages(data)
    if pre_data is None:
        return experiment.train(
            experiment.parse_config(ft_data), out=out, progress=progress, on_log=on_log
        )
    pre_cfg = experiment.parse_config(pre_data)
    if not pre_cfg.train.offline:
        raise ConfigError(
            "pretrain.train.dataset: the pretraining stage trains offline; give it a dataset "
            "folder (robotrl dataset collect) and leave offline_fraction at 1"
        )
    out = Path(out or default_run_path(str(ft_data.get("name", "run"))))
    pre_out = out / "pretrain"
    for path in (out, pre_out):  # fail before hours of pretraining, not after
        RunDir.check_free(path)
    ft_cfg = experiment.parse_config(ft_data)
    ft_cfg = dataclasses.replace(
        ft_cfg, train=dataclasses.replace(ft_cfg.train, init_from=str(pre_out))
    )
    if on_stage is not None:
        on_stage(f"pretraining offline ({pre_cfg.algo_name}) -> {pre_out}")
    experiment.train(pre_cfg, out=pre_out, progress=progress, on_log=on_log)
    if on_stage is not None:
        on_stage(f"fine-tuning online ({ft_cfg.algo_name}) from {pre_out} -> {out}")
    return experiment.train(ft_cfg, out=out, progress=progress, on_log=on_log)
