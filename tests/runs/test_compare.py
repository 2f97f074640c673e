"""``runs compare``: IQM and bootstrap CIs over seed-runs checked by hand on fake run directories,
the files it writes, one-line errors; and the Open RL Benchmark keys of ``metrics.csv``/TB."""

import csv
import json
import struct
import sys

import numpy as np
import pytest

from robotrl.runs import MetricsLog, RunDir, read_metrics
from robotrl.runs.compare import _common_steps, _load, _wall_clock, compare_runs, seed_columns
from tests.test_cli import assert_one_error_line, run_cli

STEPS = (100, 200, 300, 400)
PLOTS = ("iqm.png", "profile.png", "sample_efficiency.png", "wall_time.png")


def fake_run(path, finals, *, name="a", algo="sac", steps=STEPS, tensorboard=False):
    """A finished run whose seed ``i`` evaluates to ``finals[i] * k / K`` at its k-th of K
    ``steps``: per-seed columns when there are several seeds, as ``train.num_seeds > 1`` logs."""
    cfg = {"name": name, "algo": {"name": algo}, "train": {"num_seeds": len(finals)}}
    run = RunDir.create(path, cfg, seed=0)
    log = MetricsLog(run, tensorboard=tensorboard)
    for k, step in enumerate(steps, 1):
        values = [f * k / len(steps) for f in finals]
        row = {"train/episode_return": -1.0, "timing/sps": 500.0, "timing/elapsed_s": 2.0 * k}
        row["eval/return_mean"] = float(np.mean(values))
        if len(finals) > 1:
            row.update({f"eval/return/seed{i}": v for i, v in enumerate(values)})
        log(step, row)
    log.close()
    return run.path


def by_group(report):
    return {row["group"]: row for row in report["rows"]}


def test_iqm_pools_seeds_of_runs_in_a_group_and_the_ci_brackets_it(tmp_path):
    a1 = fake_run(tmp_path / "a1", [1, 2, 3, 4])
    a2 = fake_run(tmp_path / "a2", [8, 7, 6, 5], name="a-again")  # same algo, other name
    b = fake_run(tmp_path / "b", [3.0], name="b", algo="ppo")  # one seed: no seed columns
    report = compare_runs([a1, a2, b], out=tmp_path / "cmp", group_by="algo.name", reps=300)
    rows = by_group(report)
    assert list(rows) == ["sac", "ppo"]
    sac = rows["sac"]
    assert (sac["runs"], sac["seeds"], sac["final env steps"]) == (2, 8, "400")
    assert sac["IQM"] == pytest.approx(4.5)  # mean of the middle half of 1..8: 3, 4, 5, 6
    assert sac["mean"] == pytest.approx(4.5)
    assert 1.0 <= sac["CI low"] < 4.5 < sac["CI high"] <= 8.0
    ppo = rows["ppo"]
    assert (ppo["runs"], ppo["seeds"]) == (1, 1)
    assert ppo["IQM"] == ppo["CI low"] == ppo["CI high"] == pytest.approx(3.0)
    # The same inputs and bootstrap seed give the same interval.
    again = compare_runs([a1, a2, b], out=tmp_path / "cmp2", group_by="algo.name", reps=300)
    assert by_group(again)["sac"]["CI low"] == sac["CI low"]


def test_groups_default_to_the_config_name_and_every_file_is_written(tmp_path):
    a = fake_run(tmp_path / "a", [1, 2, 3, 4], name="fast")
    b = fake_run(tmp_path / "b", [2, 4, 6, 8], name="slow")
    out = tmp_path / "cmp"
    report = compare_runs([a, b], out=out, reps=100)
    assert list(by_group(report)) == ["fast", "slow"]
    for name in ("compare.md", "compare.csv", *PLOTS):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    with (out / "compare.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["group"] for r in table] == ["fast", "slow"]
    assert float(table[1]["IQM"]) == pytest.approx(5.0)  # middle half of 2, 4, 6, 8
    markdown = (out / "compare.md").read_text()
    assert "| group | runs | seeds | IQM | CI low | CI high | mean | final env steps |" in markdown
    assert f"| slow | {b} | 3 | 400 | 8.00 |" in markdown  # one sample per seed


def test_seed_columns():
    columns = ["step", "eval/return_mean", *(f"eval/return/seed{i}" for i in (10, 2, 0, 1))]
    columns += ["train/episode_return", "train/episode_return/seed0", "eval/laps/seed0"]
    assert seed_columns(columns, "eval/return_mean") == [
        "eval/return/seed0",
        "eval/return/seed1",
        "eval/return/seed2",
        "eval/return/seed10",
    ]
    assert seed_columns(columns, "train/episode_return") == ["train/episode_return/seed0"]
    assert seed_columns(columns, "eval/laps") == ["eval/laps/seed0"]
    assert seed_columns(columns, "timing/sps") == ["timing/sps"]


def test_sample_efficiency_uses_the_steps_every_run_logged(tmp_path):
    a = fake_run(tmp_path / "a", [1, 2])
    b = fake_run(tmp_path / "b", [3, 4], steps=(200, 400, 600))
    runs = _load([a, b], "eval/return_mean", None)
    assert _common_steps(runs).tolist() == [200, 400]
    c = fake_run(tmp_path / "c", [5, 6], steps=(150, 250))
    report = compare_runs([a, c], out=tmp_path / "cmp", reps=50)
    assert not (tmp_path / "cmp" / "sample_efficiency.png").exists()
    assert report["notes"] == [
        "no sample_efficiency.png: the runs logged 'eval/return_mean' at no common env step"
    ]
    assert by_group(report)["a"]["final env steps"] == "250-400"


def test_wall_clock_continues_across_a_resume():
    elapsed = np.array([1.0, 2.0, 3.0, 0.5, 1.5, 0.2])
    assert _wall_clock(elapsed).tolist() == [1.0, 2.0, 3.0, 3.5, 4.5, 4.7]


def test_cli_compare_and_runs_list(tmp_path, capsys):
    a = fake_run(tmp_path / "runs" / "a", [1, 2, 3, 4])
    b = fake_run(tmp_path / "runs" / "b", [2, 3], name="b")
    out = tmp_path / "runs" / "cmp"
    code, stdout, _ = run_cli(["runs", "compare", a, b, "--out", out], capsys)
    assert code == 0
    assert "| a | 1 | 4 | 2.50 |" in stdout and f"profile: {out / 'profile.png'}" in stdout
    code, stdout, _ = run_cli(["runs", "list", tmp_path / "runs"], capsys)
    assert code == 0 and "| sac |" in stdout and str(out) not in stdout


def test_cli_compare_errors_are_one_line_and_write_nothing(tmp_path, capsys, monkeypatch):
    good = fake_run(tmp_path / "good", [1, 2])
    out = tmp_path / "cmp"

    def compare(*args):
        return run_cli(["runs", "compare", *args, "--out", out], capsys)

    code, _, err = compare(good, tmp_path / "nope")
    assert_one_error_line(code, err, "does not exist")
    (tmp_path / "empty").mkdir()
    code, _, err = compare(good, tmp_path / "empty")
    assert_one_error_line(code, err, "not a run directory")
    corrupt = fake_run(tmp_path / "corrupt", [1, 2])
    (corrupt / "metrics.csv").write_text("step,eval/return_mean\n100,lots\n")
    code, _, err = compare(good, corrupt)
    assert_one_error_line(code, err, "not a readable metrics file")
    code, _, err = compare(good, "--metric", "eval/return_meen")
    assert_one_error_line(code, err, "no run logged --metric 'eval/return_meen'", "charts/SPS")
    partial = fake_run(tmp_path / "partial", [1])
    (partial / "metrics.csv").write_text("step,timing/sps\n100,5\n")
    code, _, err = compare(good, partial)
    assert_one_error_line(code, err, f"{partial} logged no 'eval/return_mean'")
    code, _, err = compare(good, "--group-by", "algo.nam")
    assert_one_error_line(code, err, "--group-by algo.nam", "no config key")
    code, _, err = compare(good, good)
    assert_one_error_line(code, err, "given twice")
    monkeypatch.setitem(sys.modules, "rliable", None)  # not installed
    code, _, err = compare(good)
    assert_one_error_line(code, err, "needs rliable", "pip install 'robotrl[compare]'")
    assert not out.exists()


def tensorboard_scalars(folder):
    """``{tag: [(step, value)]}`` from the TFRecord event files under ``folder``."""
    from tensorboardX.proto import event_pb2

    scalars = {}
    for file in sorted(folder.glob("events.out.tfevents.*")):
        data = file.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_metrics_log_writes_open_rl_benchmark_keys(tmp_path):
    path = fake_run(tmp_path / "run", [1, 2], tensorboard=True)
    rows = read_metrics(path / "metrics.csv")
    assert [r["global_step"] for r in rows] == list(STEPS)
    assert all(r["charts/episodic_return"] == -1.0 and r["charts/SPS"] == 500.0 for r in rows)
    scalars = tensorboard_scalars(path / "tb")
    assert [s for s, _ in scalars["charts/episodic_return"]] == list(STEPS)
    assert scalars["charts/SPS"][0] == (100, 500.0)
    assert scalars["global_step"][-1] == (400, 400.0)
    # A row without a training return (no episode finished yet) has no episodic_return.
    run = RunDir.create(tmp_path / "early", {"name": "early"}, seed=0)
    log = MetricsLog(run, tensorboard=False)
    log(100, {"timing/sps": 10.0})
    log.close()
    (row,) = read_metrics(run.path / "metrics.csv")
    assert row["charts/SPS"] == 10.0 and "charts/episodic_return" not in row
    metadata = json.loads((path / "metadata.json").read_text())
    assert metadata["config"]["algo"] == {"name": "sac"} and "numpy" in metadata["packages"]
