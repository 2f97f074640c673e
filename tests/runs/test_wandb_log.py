"""``robotrl train --wandb PROJECT``: one W&B run per run directory with the full config and the
rows (Open RL Benchmark keys too), finished (failed on an error); a missing ``wandb`` is one
line before anything trains. Training is replaced by a stand-in that logs one row."""

import sys
import types

import pytest
import yaml

from robotrl.runs import RunDir
from robotrl.train import finetune
from robotrl.train.session import NonFiniteError
from tests.test_cli import TINY, assert_one_error_line, run_cli

ROW = {"train/episode_return": -5.0, "timing/sps": 100.0}
ROW |= {"eval/return_mean": -4.0, "eval/return_std": 1.0, "eval/return_iqm": -4.0}


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def stand_in_training(monkeypatch, fail=False):
    """``finetune.run`` that makes the run directory and logs ``ROW`` at step 100 (or fails)."""

    def run(stages, *, progress, on_log, on_stage):
        (stage,) = stages
        run = RunDir.create(stage.out, {"name": stage.cfg.name}, seed=0)
        for callback in on_log:
            callback(100, ROW)
        if fail:
            raise NonFiniteError(100, "critic_loss")
        return run, ROW

    monkeypatch.setattr(finetune, "run", run)


class FakeWandb(types.ModuleType):
    """Records ``init``/``log``/``finish`` calls instead of talking to W&B."""

    def __init__(self):
        super().__init__("wandb")
        self.calls = []

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))
        calls = self.calls
        return types.SimpleNamespace(
            log=lambda row, step: calls.append(("log", row, step)),
            finish=lambda exit_code: calls.append(("finish", exit_code)),
        )


def test_one_wandb_run_per_run_directory(tmp_path, config, capsys, monkeypatch):
    wandb = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    stand_in_training(monkeypatch)
    out = tmp_path / "run"
    code, _, err = run_cli(["train", config, "--out", out, "--wandb", "proj", "--quiet"], capsys)
    assert code == 0, err
    (_, init), (_, row, step), finish = wandb.calls
    assert init["project"] == "proj" and init["name"] == "run" and init["dir"] == str(out)
    assert init["config"]["algo"]["actor_hidden"] == [16, 16]  # the full config
    assert init["config"]["train"]["num_seeds"] == 1  # defaults included
    assert step == 100 and row["global_step"] == 100 and row["eval/return_mean"] == -4.0
    assert row["charts/episodic_return"] == -5.0 and row["charts/SPS"] == 100.0
    assert finish == ("finish", 0)


def test_a_failed_run_is_finished_as_failed(tmp_path, config, capsys, monkeypatch):
    wandb = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    stand_in_training(monkeypatch, fail=True)
    code, _, err = run_cli(
        ["train", config, "--out", tmp_path / "run", "--wandb", "proj", "--quiet"], capsys
    )
    assert_one_error_line(code, err, "non-finite")
    assert wandb.calls[-1] == ("finish", 1)


def test_missing_wandb_is_one_line_before_training(tmp_path, config, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    stand_in_training(monkeypatch)
    out = tmp_path / "run"
    code, _, err = run_cli(["train", config, "--out", out, "--wandb", "proj", "--quiet"], capsys)
    assert_one_error_line(code, err, "--wandb needs Weights & Biases", "pip install wandb")
    assert not out.exists()


def test_real_wandb_offline(tmp_path, config, capsys, monkeypatch):
    pytest.importorskip("wandb")
    for name, value in {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
    }.items():
        monkeypatch.setenv(name, value)
    stand_in_training(monkeypatch)
    out = tmp_path / "run"
    code, _, err = run_cli(["train", config, "--out", out, "--wandb", "proj", "--quiet"], capsys)
    assert code == 0, err
    (offline,) = (out / "wandb").glob("offline-run-*")
    (records,) = offline.glob("run-*.wandb")  # protobuf records: the key names are in clear
    data = records.read_bytes()
    for key in (b"charts/episodic_return", b"global_step", b"eval/return_mean", b"actor_hidden"):
        assert key in data, key
