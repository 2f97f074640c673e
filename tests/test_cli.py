"""The CLI end to end: bad input gives one clear line and a non-zero exit, nothing saved is
overwritten; a run killed with SIGKILL resumes from its last checkpoint."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from robotrl import cli
from robotrl.runs import read_metrics
from tests.conftest import ROOT, subprocess_env

TINY = {
    "name": "tiny",
    "env": {"name": "pendulum"},
    "algo": {"name": "sac", "actor_hidden": [16, 16], "critic_hidden": [16, 16], "batch_size": 16},
    "train": {
        "total_steps": 600,
        "learning_starts": 100,
        "log_every": 100,
        "eval_every": 300,
        "eval_episodes": 2,
        "checkpoint_every": 200,
        "buffer_size": 2000,
    },
}


def write(tmp_path, data, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(args, capsys):
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_error_line(code, err, *needles):
    assert code != 0
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("robotrl: error:") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    "change, needles",
    [
        (
            {"algo": {**TINY["algo"], "actr_lr": 1.0}},
            ["unknown config key 'algo.actr_lr'", "did you mean 'algo.actor_lr'"],
        ),
        ({"train": {**TINY["train"], "total_steps": "lots"}}, ["train.total_steps", "integer"]),
        ({"algo": {**TINY["algo"], "critic": {"kind": "quantile"}}}, ["kind"]),
        ({"env": {"name": "pendulumm"}}, ["unknown env 'pendulumm'"]),
        ({"algo": {"name": "ppo9"}}, ["unknown algorithm 'ppo9'"]),
        ({"env": {"name": "pendulum", "options": {"masss": 2.0}}}, ["env.options.masss"]),
        ({"env": {"name": "pendulum", "randomize": "mars"}}, ["no parameter set 'mars'"]),
        ({"env": {"name": "pendulum", "backend": "native"}}, ["no native backend"]),
        ({"env": {"name": "gym/Pendulum-v1", "backend": "jax"}}, ["no jax backend"]),
        ({"env": {"name": "pendulum", "backend": "gpu"}}, ["env.backend must be one of"]),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path, capsys, change, needles):
    cfg = write(tmp_path, {**TINY, **change})
    code, _, err = run_cli(["train", cfg, "--out", tmp_path / "run", "--quiet"], capsys)
    assert_one_error_line(code, err, *needles)
    assert not (tmp_path / "run").exists()  # nothing created for a config that cannot run


def test_bad_override_and_missing_file(tmp_path, capsys):
    cfg = write(tmp_path, TINY)
    code, _, err = run_cli(["train", cfg, "--set", "train.num_envs=two", "--quiet"], capsys)
    assert_one_error_line(code, err, "train.num_envs")
    code, _, err = run_cli(["train", tmp_path / "nope.yaml"], capsys)
    assert_one_error_line(code, err, "does not exist")
    (tmp_path / "broken.yaml").write_text("algo: [unclosed\n")
    code, _, err = run_cli(["train", tmp_path / "broken.yaml"], capsys)
    assert_one_error_line(code, err, "not valid YAML")
    code, _, err = run_cli(["eval", tmp_path / "no-run"], capsys)
    assert_one_error_line(code, err, "does not exist")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--bogus"])
    assert exit_.value.code != 0
    assert_one_error_line(exit_.value.code, capsys.readouterr().err, "--bogus")


def test_train_eval_resume_and_refusals(tmp_path, capsys):
    cfg = write(tmp_path, TINY)
    out = tmp_path / "run"
    code, stdout, _ = run_cli(["train", cfg, "--out", out, "--quiet"], capsys)
    assert code == 0 and str(out) in stdout
    for name in ("config.yaml", "metadata.json", "metrics.csv", "learning_curve.png"):
        assert (out / name).is_file(), name
    assert any((out / "tb").iterdir())
    rows = read_metrics(out / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(100, 700, 100))
    assert any(k.startswith("eval/") for k in rows[-1]) and "timing/sps" in rows[-1]
    code, stdout, _ = run_cli(["eval", out, "--episodes", "3"], capsys)
    assert code == 0 and "return" in stdout and (out / "eval.json").is_file()
    code, stdout, _ = run_cli(["eval", out, "--episodes", "3", "--randomize", "heldout"], capsys)
    assert code == 0 and '"randomize": "heldout"' in (out / "eval.json").read_text()
    # Training into an existing run is refused, and the run is untouched.
    before = (out / "metrics.csv").read_bytes()
    code, _, err = run_cli(["train", cfg, "--out", out, "--quiet"], capsys)
    assert_one_error_line(code, err, "already holds a run")
    assert (out / "metrics.csv").read_bytes() == before
    # Extending a finished run continues from its last checkpoint without duplicate rows.
    code, _, _ = run_cli(
        ["train", "--resume", out, "--set", "train.total_steps=800", "--quiet"], capsys
    )
    assert code == 0
    steps = [int(r["step"]) for r in read_metrics(out / "metrics.csv")]
    assert steps == list(range(100, 900, 100))
    # runs list / compare
    code, stdout, _ = run_cli(["runs", "list", tmp_path], capsys)
    assert code == 0 and "| sac | pendulum |" in stdout and "done" in stdout
    code, stdout, _ = run_cli(["runs", "compare", out, "--out", tmp_path / "cmp"], capsys)
    assert code == 0 and (tmp_path / "cmp" / "iqm.png").is_file()


def test_corrupt_checkpoint_is_one_line_and_changes_nothing(tmp_path, capsys):
    cfg = write(tmp_path, {**TINY, "train": {**TINY["train"], "total_steps": 200}})
    out = tmp_path / "run"
    assert run_cli(["train", cfg, "--out", out, "--quiet"], capsys)[0] == 0
    files = [p for p in (out / "checkpoints").rglob("*") if p.is_file()]
    victim = max(files, key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    snapshot = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, err = run_cli(
        ["train", "--resume", out, "--set", "train.total_steps=400", "--quiet"], capsys
    )
    assert_one_error_line(code, err, "checkpoint", "unreadable")
    code, _, err = run_cli(["eval", out], capsys)
    assert_one_error_line(code, err, "unreadable")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == snapshot


def test_diverging_run_stops_naming_step_and_metric(tmp_path, capsys):
    data = {
        **TINY,
        "algo": {**TINY["algo"], "critic_lr": 1e30, "actor_lr": 1e30},
        "train": {**TINY["train"], "learning_starts": 300},
    }
    out = tmp_path / "run"
    code, _, err = run_cli(["train", write(tmp_path, data), "--out", out, "--quiet"], capsys)
    assert_one_error_line(
        code, err, "train/", "non-finite at env step 30", "last good checkpoint (step 200)"
    )
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == [200]


@pytest.mark.slow
def test_resume_after_kill_9(tmp_path):
    data = {
        **TINY,
        "train": {
            **TINY["train"],
            "total_steps": 3000,
            "checkpoint_every": 500,
            "eval_every": 1000,
        },
    }
    cfg = write(tmp_path, data)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "robotrl", "train", str(cfg), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.time() + 300
    ckpts = out / "checkpoints"
    while time.time() < deadline:
        done = [p for p in ckpts.glob("*") if p.name.isdigit()] if ckpts.is_dir() else []
        if any(int(p.name) >= 1000 for p in done):
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = max(int(r["step"]) for r in read_metrics(out / "metrics.csv"))
    assert killed_at < 3000
    result = subprocess.run(
        [sys.executable, "-m", "robotrl", "train", "--resume", str(out), "--quiet"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    steps = [int(r["step"]) for r in read_metrics(out / "metrics.csv")]
    assert steps == list(range(100, 3100, 100))  # one row per step, no duplicates, no gaps
    assert (Path(out) / "learning_curve.png").is_file()
