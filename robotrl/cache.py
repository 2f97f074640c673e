"""JAX's persistent compilation cache, on by default for the CLI.

A second run of the same config on the same machine loads its compiled programs from disk
instead of compiling them again (the equivalent of RLtools' cached trainer build).
"""

from __future__ import annotations

import os
from pathlib import Path


def use_cpu_cores_as_devices() -> int:
    """Makes every CPU core a JAX CPU device, so vmapped seeds can be spread over the cores
    (``scan_loop.seed_shardings``); returns the number of CPU devices. Must run before the
    first JAX operation of the process; afterwards the process keeps the devices it has."""
    import jax

    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        try:
            jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)
        except RuntimeError:
            # JAX already ran in this process (e.g. the CLI called from Python): keep its devices.
            return len(jax.devices("cpu"))
    return len(jax.devices("cpu"))


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "robotrl" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path:
    """Caches every compiled program under ``path`` (``$JAX_COMPILATION_CACHE_DIR`` if set,
    else ``~/.cache/robotrl/jax``); returns the folder."""
    import jax

    folder = Path(path or os.environ.get("JAX_COMPILATION_CACHE_DIR") or default_cache_dir())
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Small programs (evaluation, init) are worth caching too.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
