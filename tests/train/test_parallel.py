"""Several devices and several processes give the result of one device (``robotrl.parallel``).

The pytest process has one CPU device, so the multi-device checks run in a child process with
``--xla_force_host_platform_device_count=4`` (``_worker``), and the multi-host check runs two
``robotrl train`` processes joined with ``jax.distributed`` on loopback.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robotrl import cli

ROOT = Path(__file__).resolve().parents[2]


def _run_chunks(algo_name: str, cfg, chunks: int = 3):
    from robotrl.algos import ppo, sac
    from robotrl.envs import make_eval_env, make_training_env
    from robotrl.train.scan_loop import ScanSession
    from sims.pendulum import Pendulum, PendulumConfig

    env = Pendulum(PendulumConfig(episode_length=50))
    spec = make_training_env(env, 1).spec
    if algo_name == "sac":
        algo = sac.make(sac.SACConfig(actor_hidden=(32, 32), critic_hidden=(32, 32)), spec)
    else:
        algo = ppo.make(ppo.PPOConfig(rollout_length=25, minibatch_size=50), spec)
    session = ScanSession(
        make_training_env(env, cfg.num_envs), make_eval_env(env, 3), algo, cfg, seed=0
    )
    for _ in range(chunks):
        result = session.run_chunk()
    return session, result


def _worker() -> None:
    """In a 4-device process: SAC's 2 seeds on one device vs 2 seeds x 2 data devices, and PPO on
    one device vs data over 2 devices (both meshes, both kinds of learner: replay and rollout;
    each case compiles twice, so not all four); prints a JSON report."""
    import jax

    from robotrl.train.config import TrainConfig

    base = TrainConfig(
        total_steps=300, num_envs=4, learning_starts=100, buffer_size=1000, log_every=100
    )
    report = {"devices": len(jax.devices())}
    for algo_name, seeds in (("sac", 2), ("ppo", 1)):
        one_cfg = dataclasses.replace(base, num_seeds=seeds)
        single, r_single = _run_chunks(algo_name, one_cfg)  # each seed on one device
        sharded, r_sharded = _run_chunks(algo_name, dataclasses.replace(one_cfg, data_parallel=2))
        leaves = lambda s: [
            np.asarray(x, np.float64)
            for x in jax.tree.leaves(s.state.algo)
            if np.issubdtype(x.dtype, np.floating)
        ]
        diff = max(
            float(np.max(np.abs(a - b)))
            for a, b in zip(leaves(single), leaves(sharded), strict=True)
        )
        with jax.set_mesh(sharded.mesh):
            lowered = sharded._chunk.lower(sharded.state, None, sharded._values)
        compiled = lowered.compile().as_text()
        obs = sharded.state.env.obs
        report[f"{algo_name}/seeds{seeds}"] = {
            "mesh": dict(sharded.mesh.shape),
            "param_diff": diff,
            "loss_single": float(np.nanmean(r_single.metrics["train/entropy"])),
            "loss_sharded": float(np.nanmean(r_sharded.metrics["train/entropy"])),
            "obs_shards": len({s.index for s in obs.addressable_shards}),
            "all_reduce": "all-reduce" in compiled,
            "eval_equal": bool(
                np.allclose(single.evaluate().returns, sharded.evaluate().returns, atol=1e-3)
            ),
        }
    print("REPORT " + json.dumps(report))


def _child(
    code: str, env: dict[str, str], args: list[str] = (), timeout: int = 400
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_data_parallel_run_matches_one_device():
    out = _child(
        "from tests.train.test_parallel import _worker; _worker()",
        {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, out.stderr[-3000:]
    report = json.loads(lines[0][len("REPORT ") :])
    assert report["devices"] == 4
    for name in ("sac/seeds2", "ppo/seeds1"):
        r = report[name]
        seeds = int(name[-1])
        assert r["mesh"] == {"seed": seeds, "data": 2}, name
        assert r["param_diff"] < 1e-4, (name, r)  # same run, float summation order aside
        assert r["loss_single"] == pytest.approx(r["loss_sharded"], rel=1e-4, abs=1e-6), name
        # The envs are split over devices and the gradients all-reduced across them.
        assert r["obs_shards"] == 2 * seeds and r["all_reduce"], (name, r)
        assert r["eval_equal"], name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SMALL_RUN = [
    "configs/sac_pendulum.yaml",
    "--quiet",
    *("--set", "train.total_steps=1000", "--set", "train.num_envs=4"),
    *("--set", "train.data_parallel=2", "--set", "train.log_every=500"),
    *("--set", "train.eval_every=1000", "--set", "train.checkpoint_every=1000"),
    *("--set", "train.learning_starts=200", "--set", "train.eval_episodes=4"),
]


def _metrics(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_two_processes_train_one_run(tmp_path):
    """Two ``robotrl train`` processes (one CPU device each) joined on loopback train one
    data-parallel run; it equals the same config on two devices of one process."""
    port = _free_port()
    robotrl = [sys.executable, "-m", "robotrl"]
    procs = [
        subprocess.Popen(
            [*robotrl, "train", *SMALL_RUN, "--out", str(tmp_path / "joined")],
            cwd=ROOT,
            env={
                **os.environ,
                "ROBOTRL_COORDINATOR": f"127.0.0.1:{port}",
                "ROBOTRL_NUM_PROCESSES": "2",
                "ROBOTRL_PROCESS_ID": str(i),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    single = _child(
        "import sys; from robotrl.cli import main; raise SystemExit(main(sys.argv[1:]))",
        {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
        ["train", *SMALL_RUN, "--out", str(tmp_path / "single")],
    )
    assert single.returncode == 0, single.stderr[-2000:]
    joined, alone = _metrics(tmp_path / "joined"), _metrics(tmp_path / "single")
    assert [r["step"] for r in joined] == ["500", "1000"]
    for key in ("train/critic_loss", "eval/return_mean"):
        assert float(joined[-1][key]) == pytest.approx(float(alone[-1][key]), rel=1e-4), key
    # Both processes joined the checkpoint save; the first alone wrote config and metrics.
    assert (tmp_path / "joined" / "checkpoints" / "1000").is_dir()
    assert all("eval return" in log for log in logs)


def test_data_parallel_errors_are_one_line(capsys, tmp_path):
    preset = "configs/sac_pendulum.yaml"
    out = str(tmp_path / "a")
    many = (
        "--set",
        "train.num_envs=64",
        "--set",
        "train.data_parallel=64",
        "--set",
        "train.log_every=1024",
    )
    code = cli.main(["train", preset, *many, "--out", out])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "data_parallel=64 needs 64 devices" in err[0]
    code = cli.main(
        ["train", preset, "--set", "train.num_envs=5", "--set", "train.data_parallel=2"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "multiple of data_parallel" in err[0]
    assert not (tmp_path / "a").exists()  # nothing written for a config that cannot run
