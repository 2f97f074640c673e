"""PolicyBundle -> ONNX: the same policy (normaliser, layers, head, action scaling) as a graph.

``write_onnx(bundle, path)`` builds the graph with ``onnx.helper`` (opset 17, IR version 8, so
runtimes back to onnxruntime 1.13 load it): input ``obs [batch, O]`` raw float32, output
``action [batch, A]`` in env units, exactly ``PolicyBundle.act``. Every formula mirrors the numpy
forward (``policies/bundle.py``) op for op: ``clip((obs - mean) / std)``, ``x @ W + b``,
LayerNormalization, ``x / (1 + exp(-x))`` for silu, flax's tanh-approximate gelu, the Beta mean
from ``softplus(z) = relu(z) + log(1 + exp(-|z|))``. The layouts, control period, safe action,
source and bundle checksum go into the model's metadata (``metadata_props``, JSON strings).

Needs the optional ``onnx`` package (and ``onnxruntime`` to run the model); imported lazily.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from firmware_export.c_export import bundle_sha256, describe_network
from policies.bundle import PolicyBundle

OPSET = 17  # LayerNormalization is an ONNX op from opset 17
IR_VERSION = 8  # the IR of opset 17's release: readable by older runtimes than the default


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "ONNX export needs the onnx package: pip install onnx onnxruntime"
        ) from None
    return onnx


class _Graph:
    """Accumulates nodes and constant initializers with unique names."""

    def __init__(self, onnx: Any):
        self.onnx, self.nodes, self.inits, self.count = onnx, [], [], 0

    def const(self, name: str, value: Any, dtype: Any = np.float32) -> str:
        array = np.asarray(value, dtype)
        self.inits.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        self.count += 1
        out = f"{op_type.lower()}_{self.count}"
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out


def _activation(g: _Graph, fn: str, x: str, tag: str) -> str:
    if fn == "relu":
        return g.op("Relu", x)
    if fn == "tanh":
        return g.op("Tanh", x)
    if fn == "elu":
        return g.op("Elu", x, alpha=1.0)
    if fn == "silu":  # x / (1 + exp(-x)), as the numpy forward
        one = g.const(f"{tag}.one", 1.0)
        return g.op("Div", x, g.op("Add", one, g.op("Exp", g.op("Neg", x))))
    if fn == "gelu":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = g.op("Mul", g.op("Mul", x, x), x)
        inner = g.op("Add", x, g.op("Mul", g.const(f"{tag}.k", 0.044715), cube))
        t = g.op("Tanh", g.op("Mul", g.const(f"{tag}.c", np.sqrt(2 / np.pi)), inner))
        half_x = g.op("Mul", g.const(f"{tag}.half", 0.5), x)
        return g.op("Mul", half_x, g.op("Add", g.const(f"{tag}.one", 1.0), t))
    raise ValueError(f"activation {fn!r} has no ONNX emitter")


def _slice(g: _Graph, x: str, start: int, end: int, tag: str) -> str:
    return g.op(
        "Slice",
        x,
        g.const(f"{tag}.starts", [start], np.int64),
        g.const(f"{tag}.ends", [end], np.int64),
        g.const(f"{tag}.axes", [-1], np.int64),
    )


def _head(g: _Graph, head: str, z: str, action_dim: int) -> str:
    if head == "tanh":
        return g.op("Tanh", z)
    if head == "tanh_mean":
        return g.op("Tanh", _slice(g, z, 0, action_dim, "head.mean"))
    if head == "clip":
        return g.op("Clip", z, g.const("head.lo", -1.0), g.const("head.hi", 1.0))
    if head == "identity":
        return g.op("Identity", z)
    if head == "beta_mean":  # 2 alpha / (alpha + beta) - 1, alpha/beta = 1 + softplus(.)
        one = g.const("head.one", 1.0)

        def one_plus_softplus(x: str) -> str:
            tail = g.op("Log", g.op("Add", one, g.op("Exp", g.op("Neg", g.op("Abs", x)))))
            return g.op("Add", one, g.op("Add", g.op("Relu", x), tail))

        alpha = one_plus_softplus(_slice(g, z, 0, action_dim, "head.alpha"))
        beta = one_plus_softplus(_slice(g, z, action_dim, 2 * action_dim, "head.beta"))
        ratio = g.op("Div", g.op("Mul", g.const("head.two", 2.0), alpha), g.op("Add", alpha, beta))
        return g.op("Sub", ratio, one)
    raise ValueError(f"head {head!r} has no ONNX emitter")


def build_model(bundle: PolicyBundle) -> Any:
    """The ``onnx.ModelProto`` of ``bundle`` (checked with ``onnx.checker``)."""
    onnx = _onnx()
    bundle.validate("bundle")
    if bundle.spec.get("carry"):
        raise ValueError("policies with a carry are not exported to ONNX yet")
    if bundle.program == "arsq":
        raise ValueError(
            "an 'arsq' bundle (a loop of argmax decisions) has no ONNX export: use the C export"
        )
    if bundle.program != "layers":
        raise ValueError(
            f"a {bundle.program!r} bundle has no ONNX export: export its distilled policy"
        )
    g = _Graph(onnx)
    x = "obs"
    if bundle.obs_mean is not None:
        x = g.op("Sub", x, g.const("obs_mean", bundle.obs_mean))
        x = g.op("Div", x, g.const("obs_std", bundle.obs_std))
        x = g.op("Clip", x, g.const("obs_lo", -bundle.obs_clip), g.const("obs_hi", bundle.obs_clip))
    for i, layer in enumerate(bundle.spec["layers"]):
        op, tag = layer["op"], f"l{i}"
        if op == "dense":
            w = g.const(f"{tag}.w", bundle.params[layer["weight"]])
            x = g.op("Add", g.op("MatMul", x, w), g.const(f"{tag}.b", bundle.params[layer["bias"]]))
        elif op == "layernorm":
            scale = g.const(f"{tag}.scale", bundle.params[layer["scale"]])
            bias = g.const(f"{tag}.bias", bundle.params[layer["bias"]])
            x = g.op("LayerNormalization", x, scale, bias, axis=-1, epsilon=float(layer["eps"]))
        elif op == "activation":
            x = _activation(g, layer["fn"], x, tag)
        else:
            raise ValueError(f"layer op {op!r} has no ONNX emitter")
    unit = _head(g, bundle.spec["head"], x, bundle.action_dim)
    scaled = g.op("Mul", unit, g.const("action_scale", bundle.action_scale))
    ref = bundle.action_reference
    if ref is not None:  # + obs[ref]: a one-hot [O, A] matrix (zero columns for -1)
        pick = np.zeros((bundle.obs_dim, bundle.action_dim), np.float32)
        cols = np.flatnonzero(ref >= 0)
        pick[ref[cols], cols] = 1.0
        scaled = g.op("Add", scaled, g.op("MatMul", "obs", g.const("action_reference", pick)))
    g.nodes.append(
        onnx.helper.make_node(
            "Add", [scaled, g.const("action_offset", bundle.action_offset)], ["action"]
        )
    )
    tensor = onnx.TensorProto.FLOAT
    graph = onnx.helper.make_graph(
        g.nodes,
        "policy",
        [onnx.helper.make_tensor_value_info("obs", tensor, ["batch", bundle.obs_dim])],
        [onnx.helper.make_tensor_value_info("action", tensor, ["batch", bundle.action_dim])],
        initializer=g.inits,
    )
    model = onnx.helper.make_model(
        graph,
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="robotrl.firmware_export",
        doc_string=describe_network(bundle),
    )
    safe = bundle.safe_action if bundle.safe_action is not None else bundle.action_offset
    onnx.helper.set_model_props(
        model,
        {
            "obs_layout": json.dumps(bundle.obs_layout),
            "action_layout": json.dumps(bundle.action_layout),
            "ctrl_dt": repr(bundle.ctrl_dt),
            "safe_action": json.dumps([float(v) for v in safe]),
            "source": json.dumps(bundle.source, sort_keys=True, default=str),
            "bundle_sha256": bundle_sha256(bundle),
        },
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def write_onnx(bundle: PolicyBundle, path: str | Path) -> Path:
    """Writes ``bundle`` as an ONNX model to ``path``; returns the path."""
    onnx = _onnx()
    model = build_model(bundle)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path
