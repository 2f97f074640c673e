"""The portable policy bundle: what leaves training, in one versioned, checksummed file.

A bundle holds everything needed to run a trained policy without the training code (and without
jax): the network as a small program of layers, its parameters as numpy arrays, the observation
normaliser, the named observation and action layouts with units and frames, the action scaling,
the control period, where it came from, and golden (observation, action) pairs that any
re-implementation (the numpy forward here, the generated C, ONNX) must reproduce.

Network program (``spec``), interpreted by ``forward`` here and by ``firmware_export``::

    {"layers": [{"op": "dense", "weight": "l0.w", "bias": "l0.b"},      # y = x @ W + b
                {"op": "layernorm", "scale": "l0.ln.s", "bias": "l0.ln.b", "eps": 1e-6},
                {"op": "activation", "fn": "tanh"}, ...],
     "head": "tanh" | "tanh_mean" | "clip" | "beta_mean" | "identity"}

``head`` maps the last layer's output ``z`` to an action in ``[-1, 1]``: ``tanh(z)``,
``tanh(z[:A])`` (a squashed Gaussian's mean), ``clip(z, -1, 1)``, ``2 a / (a + b) - 1`` with
``a, b = 1 + softplus(z[:A]), 1 + softplus(z[A:])`` (a Beta's mean), or ``z``. The action sent
to the robot is ``offset + scale * head(z)``, plus, where ``spec["action_reference"]`` lists one
observation index per action value (-1 for none), that raw observation value (a policy that
acts relative to where the robot is: Push-T's pusher targets relative to the pusher).

Two more optional spec keys, both read by ``deploy`` and both kept by every exporter:

* ``spec["chunk"] = {"obs_history": To, "action_steps": Ha}``: the observation is the last
  ``To`` frames, oldest first, flattened; the action is ``Ha`` consecutive actions, one per
  ``ctrl_dt``, flattened (an action-chunking policy: diffusion policies and their students).
* ``spec["program"] = "ddim"``: instead of a layer program, ``z`` is the clean chunk of a K-step
  deterministic DDIM sampler started from zero noise, run by
  ``policies.diffusion.numpy_policy`` (numpy only) over the noise-prediction network in
  ``params``; ``spec["ddim"]`` holds its sizes and schedule. Such a bundle runs in numpy (and on
  a robot computer) but has no C or ONNX export: distil it to a one-step layer program first.
* ``spec["program"] = "arsq"``: ``spec["layers"]`` is ARSQ's advantage net, run ``L x A`` times
  in a fixed loop over levels and action dimensions with the intervals chosen so far as input
  (``policies.arsq``; ``spec["arsq"]`` holds ``levels``, ``bins``, ``factorized``); ``z`` is the
  centre of each dimension's finest interval. The C export generates the same loop.

File: a ``.npz`` (no pickles) with the arrays, ``__meta__`` (the JSON of everything else) and
``__checksum__`` (sha256 over the meta and every array's name, dtype, shape and bytes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

BUNDLE_VERSION = 1
ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "silu")
HEADS = ("tanh", "tanh_mean", "clip", "beta_mean", "identity")
PROGRAMS = ("layers", "ddim", "arsq")


class BundleError(ValueError):
    """A bundle is missing, damaged, of another version, or inconsistent."""


def activation(name: str, x: np.ndarray) -> np.ndarray:
    """The numpy activations of a layer program (float32, flax's definitions)."""
    if name == "relu":
        return np.maximum(x, 0)
    if name == "tanh":
        return np.tanh(x)
    if name == "elu":
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0))).astype(np.float32)
    if name == "gelu":  # flax's default: the tanh approximation
        c = np.float32(math.sqrt(2 / math.pi))
        return (0.5 * x * (1 + np.tanh(c * (x + np.float32(0.044715) * x**3)))).astype(np.float32)
    if name == "silu":
        with np.errstate(over="ignore"):  # exp(-x) -> inf gives x / inf = -0, as in C
            return (x / (1 + np.exp(-x))).astype(np.float32)
    raise BundleError(f"unknown activation {name!r}")


def run_layers(
    layers: list[dict[str, Any]], params: dict[str, np.ndarray], x: np.ndarray
) -> np.ndarray:
    """A layer program (dense, layernorm, activation) on ``x [..., I]``, float32."""
    x = np.asarray(x, np.float32)
    for layer in layers:
        op = layer["op"]
        if op == "dense":
            x = x @ params[layer["weight"]] + params[layer["bias"]]
        elif op == "layernorm":
            mean = x.mean(-1, keepdims=True)
            var = ((x - mean) ** 2).mean(-1, keepdims=True)
            x = (x - mean) / np.sqrt(var + np.float32(layer["eps"]))
            x = x * params[layer["scale"]] + params[layer["bias"]]
        elif op == "activation":
            x = activation(layer["fn"], x)
        else:
            raise BundleError(f"unknown layer op {op!r}")
        x = x.astype(np.float32)
    return x


def _softplus(x: np.ndarray) -> np.ndarray:
    return (np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))).astype(np.float32)


@dataclasses.dataclass
class PolicyBundle:
    """A trained policy, portable. Arrays are float32; ``act`` is the numpy forward pass."""

    spec: dict[str, Any]
    params: dict[str, np.ndarray]
    obs_layout: list[dict[str, Any]]  # [{"name", "size", "units", "frame", "description"}]
    action_layout: list[dict[str, Any]]
    action_offset: np.ndarray  # [A]: env action = offset + scale * head(z)
    action_scale: np.ndarray  # [A]
    ctrl_dt: float  # s
    obs_mean: np.ndarray | None = None  # [O] normaliser: clip((obs - mean) / std, -clip, clip)
    obs_std: np.ndarray | None = None
    obs_clip: float = 10.0
    safe_action: np.ndarray | None = None  # [A] what a robot does when it cannot trust the policy
    source: dict[str, Any] = dataclasses.field(default_factory=dict)  # run, step, algo, env
    golden_obs: np.ndarray | None = None  # [G, O]
    golden_actions: np.ndarray | None = None  # [G, A]

    # ---- shapes -------------------------------------------------------------------------------
    @property
    def obs_dim(self) -> int:
        return int(sum(f["size"] for f in self.obs_layout))

    @property
    def action_dim(self) -> int:
        return len(self.action_offset)

    # ---- inference ----------------------------------------------------------------------------
    @property
    def program(self) -> str:
        return self.spec.get("program", "layers")

    @property
    def action_reference(self) -> np.ndarray | None:
        """``[A]`` observation indices added to the action (-1: none), or None."""
        ref = self.spec.get("action_reference")
        return None if ref is None else np.asarray(ref, np.int64)

    def network(self, obs: np.ndarray) -> np.ndarray:
        """The network's raw output ``z`` for (normalised) observations ``[..., O]``."""
        x = np.asarray(obs, np.float32)
        if self.program == "ddim":
            from policies.diffusion.numpy_policy import ddim_program  # numpy only

            return ddim_program(self.spec["ddim"], self.params, x)
        if self.program == "arsq":
            from policies.arsq import decide  # numpy only

            return decide(self.spec, self.params, x, self.action_dim)
        return run_layers(self.spec["layers"], self.params, x)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, np.float32)
        if self.obs_mean is None:
            return obs
        return np.clip((obs - self.obs_mean) / self.obs_std, -self.obs_clip, self.obs_clip)

    def head(self, z: np.ndarray) -> np.ndarray:
        """``[-1, 1]`` action from the raw output (see the module docstring)."""
        kind, a = self.spec["head"], self.action_dim
        if kind == "tanh":
            return np.tanh(z)
        if kind == "tanh_mean":
            return np.tanh(z[..., :a])
        if kind == "clip":
            return np.clip(z, -1.0, 1.0)
        if kind == "beta_mean":
            alpha, beta = 1 + _softplus(z[..., :a]), 1 + _softplus(z[..., a:])
            return (2 * alpha / (alpha + beta) - 1).astype(np.float32)
        if kind == "identity":
            return z
        raise BundleError(f"unknown head {kind!r}")

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Action in env units for observations ``[..., O]`` (raw sensor values)."""
        obs = np.asarray(obs, np.float32)
        if obs.shape[-1] != self.obs_dim:
            raise BundleError(
                f"observation has {obs.shape[-1]} values, the bundle expects "
                f"{self.obs_dim} ({', '.join(f['name'] for f in self.obs_layout)})"
            )
        unit = self.head(self.network(self.normalize(obs)))
        return self.to_env(unit, obs)

    def to_env(self, unit: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """Env action from the head's ``[-1, 1]`` output and the raw observation."""
        action = self.action_offset + self.action_scale * unit
        ref = self.action_reference
        if ref is not None:
            action = action + np.where(ref >= 0, np.take(obs, np.maximum(ref, 0), axis=-1), 0)
        return action.astype(np.float32)

    def self_test(self, atol: float = 1e-5) -> float:
        """Max |act(golden_obs) - golden_actions|; raises if above ``atol`` or absent."""
        if self.golden_obs is None or self.golden_actions is None:
            raise BundleError("the bundle has no golden pairs")
        err = float(np.max(np.abs(self.act(self.golden_obs) - self.golden_actions)))
        if not err <= atol:
            raise BundleError(f"self-test failed: golden actions differ by {err:.3g} > {atol}")
        return err

    # ---- files --------------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"param/{k}": v for k, v in self.params.items()}
        for name in (
            "action_offset",
            "action_scale",
            "obs_mean",
            "obs_std",
            "safe_action",
            "golden_obs",
            "golden_actions",
        ):
            value = getattr(self, name)
            if value is not None:
                arrays[name] = value
        return {k: np.ascontiguousarray(v, np.float32) for k, v in arrays.items()}

    def _meta(self) -> dict[str, Any]:
        return {
            "version": BUNDLE_VERSION,
            "spec": self.spec,
            "obs_layout": self.obs_layout,
            "action_layout": self.action_layout,
            "ctrl_dt": self.ctrl_dt,
            "obs_clip": self.obs_clip,
            "source": self.source,
        }

    def checksum(self) -> str:
        """The sha256 that ``save`` stores: it identifies this exact policy wherever it goes
        (the generated C and ONNX carry it)."""
        meta = json.dumps(self._meta(), sort_keys=True).encode()
        return _checksum(meta, self._arrays())

    def save(self, path: str | Path) -> Path:
        """Writes the bundle (atomically: a temporary file, then a rename)."""
        self.validate()
        path = Path(path)
        arrays = self._arrays()
        meta = json.dumps(self._meta(), sort_keys=True).encode()
        payload = {
            **arrays,
            "__meta__": np.frombuffer(meta, np.uint8),
            "__checksum__": np.frombuffer(self.checksum().encode(), np.uint8),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            np.savez(f, **payload)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> PolicyBundle:
        """Reads and checks a bundle: version, checksum, and shapes against the spec."""
        path = Path(path)
        if not path.is_file():
            raise BundleError(f"policy bundle {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as data:
                contents = {k: data[k] for k in data.files}
        except Exception as err:  # zipfile/numpy raise many types for a damaged file
            raise BundleError(
                f"{path} is not a readable policy bundle ({type(err).__name__})"
            ) from None
        if "__meta__" not in contents or "__checksum__" not in contents:
            raise BundleError(f"{path} is not a policy bundle (no metadata)")
        meta_bytes = contents.pop("__meta__").tobytes()
        stored = contents.pop("__checksum__").tobytes().decode()
        try:
            meta = json.loads(meta_bytes)
        except json.JSONDecodeError:
            raise BundleError(f"{path}: damaged metadata") from None
        if meta.get("version") != BUNDLE_VERSION:
            raise BundleError(
                f"{path} is bundle version {meta.get('version')}, this robotrl "
                f"reads version {BUNDLE_VERSION}: re-export it"
            )
        if _checksum(meta_bytes, contents) != stored:
            raise BundleError(f"{path}: checksum mismatch (the file was modified or damaged)")
        params = {k[len("param/") :]: v for k, v in contents.items() if k.startswith("param/")}
        bundle = cls(
            spec=meta["spec"],
            params=params,
            obs_layout=meta["obs_layout"],
            action_layout=meta["action_layout"],
            action_offset=contents["action_offset"],
            action_scale=contents["action_scale"],
            ctrl_dt=float(meta["ctrl_dt"]),
            obs_mean=contents.get("obs_mean"),
            obs_std=contents.get("obs_std"),
            obs_clip=float(meta["obs_clip"]),
            safe_action=contents.get("safe_action"),
            source=meta.get("source", {}),
            golden_obs=contents.get("golden_obs"),
            golden_actions=contents.get("golden_actions"),
        )
        bundle.validate(str(path))
        return bundle

    def validate(self, where: str = "bundle") -> None:
        """Every shape agrees with the spec and the layouts; raises ``BundleError`` if not."""
        if self.spec.get("head") not in HEADS:
            raise BundleError(f"{where}: unknown head {self.spec.get('head')!r}")
        if self.program not in PROGRAMS:
            raise BundleError(f"{where}: unknown program {self.program!r}")
        self._validate_extras(where)
        width = self.obs_dim
        if self.program == "ddim":
            try:
                width = self.network(np.zeros((1, self.obs_dim), np.float32)).shape[-1]
            except (KeyError, ValueError, TypeError, IndexError) as err:
                raise BundleError(f"{where}: the ddim program does not run ({err})") from None
        if self.program == "arsq":
            from policies.arsq import input_width

            try:
                width = input_width(self.spec, self.obs_dim, self.action_dim)
            except (KeyError, TypeError, ValueError) as err:
                raise BundleError(f"{where}: arsq program without its sizes ({err})") from None
        for i, layer in enumerate(self.spec.get("layers", [])):
            op = layer.get("op")
            if op == "dense":
                w, b = self.params.get(layer["weight"]), self.params.get(layer["bias"])
                if w is None or b is None:
                    raise BundleError(f"{where}: layer {i} has no parameters")
                if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
                    raise BundleError(
                        f"{where}: layer {i} expects {width} inputs but its weight "
                        f"is {w.shape} and bias {b.shape}"
                    )
                width = w.shape[1]
            elif op == "layernorm":
                for key in ("scale", "bias"):
                    if self.params.get(layer[key], np.zeros(0)).shape != (width,):
                        raise BundleError(f"{where}: layernorm {i} does not match width {width}")
            elif op == "activation":
                if layer.get("fn") not in ACTIVATIONS:
                    raise BundleError(f"{where}: unknown activation {layer.get('fn')!r}")
            else:
                raise BundleError(f"{where}: unknown layer op {op!r}")
        if self.program == "arsq":  # the layers score the bins; the loop emits A centres
            if width != int(self.spec["arsq"]["bins"]):
                raise BundleError(
                    f"{where}: the arsq network outputs {width} scores for "
                    f"{self.spec['arsq']['bins']} bins"
                )
            width = self.action_dim
        # A squashed Gaussian emits mean and log-std, a Beta alpha and beta: 2 A outputs.
        two = self.spec["head"] in ("tanh_mean", "beta_mean")
        outputs = 2 * self.action_dim if two else self.action_dim
        if width != outputs:
            raise BundleError(
                f"{where}: network outputs {width} values, the {self.spec['head']}"
                f" head of a {self.action_dim}-D action needs {outputs}"
            )
        if self.action_scale.shape != (self.action_dim,):
            raise BundleError(f"{where}: action scale does not match the action dim")
        if sum(f["size"] for f in self.action_layout) != self.action_dim:
            raise BundleError(f"{where}: action layout does not sum to {self.action_dim}")
        for name in ("obs_mean", "obs_std"):
            value = getattr(self, name)
            if value is not None and value.shape != (self.obs_dim,):
                raise BundleError(
                    f"{where}: {name} has shape {value.shape}, expected ({self.obs_dim},)"
                )
        if self.golden_obs is not None and (
            self.golden_obs.shape[-1] != self.obs_dim
            or self.golden_actions is None
            or self.golden_actions.shape != (len(self.golden_obs), self.action_dim)
        ):
            raise BundleError(f"{where}: golden pairs do not match the observation/action sizes")

    def _validate_extras(self, where: str) -> None:
        ref = self.action_reference
        if ref is not None and (
            ref.shape != (self.action_dim,) or ref.min() < -1 or ref.max() >= self.obs_dim
        ):
            raise BundleError(
                f"{where}: action_reference needs {self.action_dim} observation indices "
                f"in [-1, {self.obs_dim})"
            )
        chunk = self.spec.get("chunk")
        if chunk is not None:
            to, ha = int(chunk.get("obs_history", 0)), int(chunk.get("action_steps", 0))
            if to < 1 or ha < 1 or self.obs_dim % to or self.action_dim % ha:
                raise BundleError(
                    f"{where}: chunk {chunk} does not divide the observation "
                    f"({self.obs_dim}) and action ({self.action_dim}) sizes"
                )


def _checksum(meta: bytes, arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256(meta)
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{value.dtype.str}|{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()
