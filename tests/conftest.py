"""Strict JAX settings for every test, and the persistent compilation cache."""

from __future__ import annotations

import collections
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".jax_cache"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import pytest  # noqa: E402

from robotrl.cache import enable_compilation_cache  # noqa: E402

# (B,) vs (B, 1) mistakes in TD targets raise instead of broadcasting silently.
jax.config.update("jax_numpy_rank_promotion", "raise")
enable_compilation_cache(CACHE)


# For a large graph (an MJX step) compiled to be run a handful of times: LLVM's optimisations
# take half of XLA's compile time on this CPU (MJX Hopper's one-step check: 30.1 s -> 14.6 s to
# compile, same outputs, each call 2.5x slower). Not for what a test runs thousands of times.
RUN_FEW_TIMES = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@pytest.fixture
def key() -> jax.Array:
    return jax.random.PRNGKey(0)


def subprocess_env() -> dict[str, str]:
    """Environment for CLI subprocesses: same cache, strict ranks."""
    env = dict(os.environ)
    env["JAX_COMPILATION_CACHE_DIR"] = CACHE
    env["JAX_NUMPY_RANK_PROMOTION"] = "raise"
    return env


@pytest.fixture(scope="session")
def hover_run(tmp_path_factory):
    """``(cfg, run, bundle_path)``: configs/ppo_quadrotor.yaml trained as shipped (20M steps,
    a few minutes here) and its bundle exported, once per session: the learning test and the
    ROS bridge's closed-loop test fly the same policy."""
    from robotrl import experiment
    from robotrl.export import export_run

    cfg = experiment.load_config(
        "configs/ppo_quadrotor.yaml",
        ["train.eval_every=0", "train.checkpoint_every=0", "env.options.success_tolerance=0.1"],
    )
    run, _ = experiment.train(cfg, out=tmp_path_factory.mktemp("hover") / "quad")
    bundle_path = export_run(run.path, "bundle")["files"]["bundle"]
    return cfg, run, str(bundle_path)


def pytest_collection_modifyitems(config, items):
    """Mark ``serial`` what must not share the CPU with another test process: the ROS 2 tests
    (real-time deadlines over DDS: stale-data timeouts, e-stop latency, a node's start-up) and
    the tests that read the session's ``hover_run`` (trained once, a few minutes). `make test`
    runs everything else in two processes (pytest-xdist, whole files per process, so module
    fixtures are built once), then these alone.

    Files with more ``slow`` tests come first (a stable sort: a file's tests stay together and
    in order). xdist hands out whole files in collection order, so the long learning files of
    ``tests/train/``, last alphabetically, would otherwise start at the end and leave one
    process alone with them."""
    for item in items:
        if item.path.is_relative_to(ROOT / "tests" / "deploy") or "hover_run" in getattr(
            item, "fixturenames", ()
        ):
            item.add_marker(pytest.mark.serial)
    slow = collections.Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])
