"""Observations and actions as messages, by the bundle's named layouts (no ROS here).

The layouts are the single source of truth: the env's ``EnvSpec.obs_layout`` is what training
saw, the bundle carries it, and a publisher labels its ``Float32MultiArray`` with it
(``labelled``: one ``dim`` per field, label = field name, size = field size). The node then
assembles the observation by name (``Layout.assemble``), so a publisher that orders its fields
differently still gives the policy the vector it was trained on, and one that sends other fields
is refused with one line instead of acting on a shuffled vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class LayoutError(ValueError):
    """A message does not carry the fields, sizes or values the bundle's layout needs."""


def _field(f: Any) -> tuple[str, int]:
    if isinstance(f, tuple) and len(f) == 2:  # (name, size), as Layout.fields
        return str(f[0]), int(f[1])
    if isinstance(f, dict):
        return str(f["name"]), int(f["size"])
    return str(f.name), int(f.size)  # robotrl.types.Field


def labelled(layout: Sequence[Any], values: np.ndarray) -> tuple[list[tuple[str, int]], list]:
    """``([(label, size), ...], data)`` of a flat vector under a layout (bundle dicts or
    ``Field``s): what a publisher puts in a ``Float32MultiArray``'s ``layout.dim`` and ``data``."""
    dims = [_field(f) for f in layout]
    values = np.asarray(values, np.float32).reshape(-1)
    if sum(size for _, size in dims) != values.size:
        raise LayoutError(f"{values.size} values do not fill the layout {dims}")
    return dims, values.tolist()


class Layout:
    """The named slices of a flat vector (a bundle's ``obs_layout`` or ``action_layout``)."""

    def __init__(self, layout: Sequence[Any]):
        self.fields = [_field(f) for f in layout]
        self.size = sum(size for _, size in self.fields)
        self.slices: dict[str, slice] = {}
        offset = 0
        for name, size in self.fields:
            self.slices[name] = slice(offset, offset + size)
            offset += size

    def assemble(self, dims: Sequence[tuple[str, int]], data: Sequence[float]) -> np.ndarray:
        """The flat vector in this layout's order from a labelled message. Unlabelled data
        (no dims) must have exactly this layout's size and order."""
        data = np.asarray(data, np.float32)
        if not dims:
            if data.size != self.size:
                raise LayoutError(f"message has {data.size} values, the layout needs {self.size}")
            return data
        out = np.empty(self.size, np.float32)
        offset, seen = 0, set()
        for label, size in dims:
            if label not in self.slices:
                raise LayoutError(f"message field {label!r} is not in the layout {self.names}")
            want = self.slices[label]
            if size != want.stop - want.start:
                raise LayoutError(
                    f"field {label!r} has {size} values, the layout has {want.stop - want.start}"
                )
            if offset + size > data.size:
                raise LayoutError(f"message declares more values than its {data.size}")
            out[want] = data[offset : offset + size]
            offset += size
            seen.add(label)
        missing = [n for n in self.names if n not in seen]
        if missing:
            raise LayoutError(f"message lacks the fields {missing}")
        return out

    def from_joint_state(
        self,
        names: Sequence[str],
        arrays: dict[str, Sequence[float]],
        fields: dict[str, str],
        joint_names: Sequence[str] = (),
    ) -> np.ndarray:
        """The flat vector from a ``JointState``: ``fields`` maps each layout field to the
        message array that fills it (``"position"``, ``"velocity"`` or ``"effort"``), in the
        order of ``joint_names`` (matched by name) or the message's own order."""
        missing = [n for n in self.names if n not in fields]
        if missing:
            raise LayoutError(f"no joint-state array is mapped to the fields {missing}")
        order = None
        if joint_names:
            index = {n: i for i, n in enumerate(names)}
            absent = [n for n in joint_names if n not in index]
            if absent:
                raise LayoutError(f"joint state lacks the joints {absent}")
            order = [index[n] for n in joint_names]
        out = np.empty(self.size, np.float32)
        for name, sl in self.slices.items():
            values = np.asarray(arrays.get(fields[name], ()), np.float32)
            if order is not None and values.size:
                values = values[order] if values.size == len(names) else np.empty(0)
            if values.size != sl.stop - sl.start:
                raise LayoutError(
                    f"field {name!r} needs {sl.stop - sl.start} values from joint-state "
                    f"{fields[name]!r}, got {values.size}"
                )
            out[sl] = values
        return out

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.fields]


def parse_mapping(entries: Sequence[str], what: str) -> dict[str, str]:
    """``["a=b", ...]`` -> ``{"a": "b"}`` (ROS parameters are string lists)."""
    out = {}
    for entry in entries:
        key, sep, value = str(entry).partition("=")
        if not sep or not key or not value:
            raise LayoutError(f"{what} entries look like 'key=value', got {entry!r}")
        out[key.strip()] = value.strip()
    return out


__all__ = ["Layout", "LayoutError", "labelled", "parse_mapping"]
