"""Replay buffers: device-resident (pure functions) and host (numpy)."""

from robotrl.buffers.host import HostReplay
from robotrl.buffers.replay import (
    ReplayState,
    add,
    extend,
    init,
    sample,
    sample_mixed,
    sample_windows,
    window_mask,
)

__all__ = [
    "HostReplay",
    "ReplayState",
    "add",
    "extend",
    "init",
    "sample",
    "sample_mixed",
    "sample_windows",
    "window_mask",
]
