"""Training on several devices with JAX's own SPMD: a ``("seed", "data")`` mesh and the one
constraint the algorithms put on their minibatches.

The scan loop (``robotrl.train.scan_loop``) lays its state out on the mesh: vmapped seeds split
over ``"seed"``; within a seed, every array with an env axis (env states, the policy carry, the
replay buffer's ``[L, E]`` rows) split over ``"data"``; parameters and optimiser states
replicated over ``"data"``. XLA's partitioner then runs the program on every device and inserts
the collectives itself: the all-reduce of gradients, the gathers of replay samples. Nothing here
communicates by hand.

Layout never changes results: a run gives the same numbers (up to float summation order) on one
device or many, which ``tests/train/test_parallel.py`` checks. Several hosts are one mesh over
``jax.devices()`` after ``jax.distributed.initialize`` (``init_distributed``).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from robotrl.config import ConfigError

SEED, DATA = "seed", "data"


def make_mesh(num_seeds: int, data_parallel: int) -> Mesh | None:
    """A ``(seed, data)`` mesh: ``data_parallel`` devices per seed, and as many seed groups as
    divide ``num_seeds`` and fit the devices; None when that is one device (no layout at all).
    Uses every process's devices after ``jax.distributed.initialize``."""
    devices = jax.devices()
    if data_parallel > len(devices):
        raise ConfigError(
            f"train.data_parallel={data_parallel} needs {data_parallel} devices; this process "
            f"sees {len(devices)} (on a CPU: XLA_FLAGS=--xla_force_host_platform_device_count="
            f"{data_parallel})"
        )
    if jax.process_count() > 1:
        # Several hosts: every process must hold part of the mesh, so it takes every device.
        groups, rest = divmod(len(devices), data_parallel)
        if rest or num_seeds % groups:
            raise ConfigError(
                f"a {jax.process_count()}-process run lays its seeds and data over all "
                f"{len(devices)} devices: train.data_parallel ({data_parallel}) must divide the "
                f"device count and train.num_seeds ({num_seeds}) must be a multiple of "
                "devices / data_parallel"
            )
        return Mesh(np.array(devices).reshape(groups, data_parallel), (SEED, DATA))
    fits = len(devices) // data_parallel
    groups = max(d for d in range(1, num_seeds + 1) if num_seeds % d == 0 and d <= fits)
    if groups * data_parallel == 1:
        return None
    grid = np.array(devices[: groups * data_parallel]).reshape(groups, data_parallel)
    return Mesh(grid, (SEED, DATA))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def shard_batch(tree: Any, axis: int = 0) -> Any:
    """Splits ``axis`` of every leaf (a minibatch's sample axis) over the ambient mesh's
    ``"data"`` devices; unchanged without one. Under ``vmap(..., spmd_axis_name="seed")`` the seed
    axis is added by ``vmap``."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or DATA not in mesh.axis_names or mesh.shape[DATA] == 1:
        return tree
    spec = PartitionSpec(*([None] * axis), DATA)
    return jax.lax.with_sharding_constraint(tree, spec)


def init_distributed() -> bool:
    """Joins this process to a multi-host run when ``ROBOTRL_COORDINATOR`` (``host:port``),
    ``ROBOTRL_NUM_PROCESSES`` and ``ROBOTRL_PROCESS_ID`` are set; returns whether it did. Must
    run before the first JAX operation. On CPUs the collectives go over gloo."""
    address = os.environ.get("ROBOTRL_COORDINATOR")
    if not address:
        return False
    try:
        count = int(os.environ["ROBOTRL_NUM_PROCESSES"])
        index = int(os.environ["ROBOTRL_PROCESS_ID"])
    except (KeyError, ValueError):
        raise ValueError(
            "ROBOTRL_COORDINATOR is set: ROBOTRL_NUM_PROCESSES and ROBOTRL_PROCESS_ID must be "
            "integers too"
        ) from None
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=address, num_processes=count, process_id=index)
    return True
