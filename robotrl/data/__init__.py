"""Offline datasets: the on-disk format, collection from the project's own policies, Minari."""

from robotrl.data.collect import collect, collect_from
from robotrl.data.dataset import (
    Dataset,
    DatasetError,
    check_fits,
    from_episodes,
    from_streams,
    load,
    mc_returns,
    mix,
    save,
)

__all__ = [
    "Dataset",
    "DatasetError",
    "check_fits",
    "collect",
    "collect_from",
    "from_episodes",
    "from_streams",
    "load",
    "mc_returns",
    "mix",
    "save",
]
