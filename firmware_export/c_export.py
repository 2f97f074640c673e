"""PolicyBundle -> dependency-free C99: ``<name>.h`` and ``<name>.c``.

The generated code is meant to be read and checked, RLtools-style: every weight is a ``static
const`` array (float32, or int8 with one float scale per output channel), scratch is two static
float buffers as wide as the widest layer, nothing is allocated, and the only library is
``<math.h>`` (``tanhf``, ``expf``, ``expm1f``, ``log1pf``, ``sqrtf``, ``fabsf`` where used) plus
the freestanding ``<stdint.h>`` for ``int8_t``. The API, for ``name="policy"``::

    typedef struct { float position_error[3]; /* m, world: ... */ ... } policy_obs_t;
    typedef struct { float rotor_command[4];  /* ... */ } policy_action_t;
    int policy_step(const policy_obs_t *obs, policy_action_t *action);  /* 0 = POLICY_OK */
    int policy_step_flat(const float *obs, float *action);             /* [O] -> [A] */
    int policy_self_test(void);  /* failures among the embedded golden pairs; -1 if compiled
                                    out with -DPOLICY_NO_SELF_TEST */
    extern const float policy_safe_action[POLICY_ACTION_DIM];

A step normalises the observation, runs the layer program, applies the head and scales to env
units, exactly like ``PolicyBundle.act`` (adding the raw observation values that
``spec["action_reference"]`` names, for a policy acting relative to the robot's state; an
action-chunking bundle's ``spec["chunk"]`` is recorded in the header, the observation being the
flat frame history and the action the flat chunk). A NaN/Inf observation
(``POLICY_ERR_OBS_NONFINITE``) or a non-finite action (``POLICY_ERR_ACTION_NONFINITE``) returns
nonzero and writes the bundle's safe action. The static scratch makes a step non-reentrant:
one caller at a time.

Golden pairs: the float32 export embeds the bundle's own pairs (the JAX policy's actions). The
int8 export embeds the same observations with the *int8 reference's* actions
(``quantize.act_int8``), so its self-test checks the C against the quantised policy at the same
tolerance; ``<NAME>_INT8_GOLDEN_ERROR`` records how far those actions are from the float32
goldens. A golden action passes when ``|c - golden| <= <NAME>_SELF_TEST_TOL * (1 + |scale|)``
(``scale`` = the action scale: the tolerance is in [-1, 1] head units, plus an absolute part).

ARSQ (``program: arsq``, ``firmware_export.arsq_c``): the layer program is the advantage net,
emitted as ``mlp()``, and ``network()`` is the fixed loop over levels and action dimensions
that calls it ``L x A`` times; everything around it is the same.

Recurrent policies: none of today's bundles has a carry. A layer program that does declares
``spec["carry"] = [{"name", "size", ...}]``; the generator then has to emit a
``<name>_carry_t`` struct (one float member per field, like the observation struct), a
``<name>_init_carry(<name>_carry_t *)`` that writes the initial values, take the carry as a
``<name>_carry_t *`` in ``<name>_step`` / ``<name>_step_flat`` (read before, written after the
network, and reset to the initial carry with the safe action on error), and give the recurrent
layer op (e.g. ``gru``) an emitter in ``_layer_arrays``. ``write_c`` refuses such a bundle today.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from firmware_export.quantize import act_int8, quantized_weights
from policies.bundle import PolicyBundle

QUANTIZATIONS = ("float32", "int8")
SELF_TEST_TOL = 1e-5  # golden tolerance in head units, float32 and int8 alike (see docstring)

# C99 keywords, and <math.h> macros a struct member must not be named after.
_RESERVED = {
    *("auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else"),
    *("enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register"),
    *("restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch"),
    *("typedef", "union", "unsigned", "void", "volatile", "while", "_Bool", "_Complex"),
    *("_Imaginary", "NAN", "INFINITY", "HUGE_VAL", "HUGE_VALF", "isfinite", "isnan", "isinf"),
    *("signbit", "fpclassify", "errno"),
    # C++ keywords: the header is also included from C++ (extern "C")
    *("and", "bool", "catch", "class", "delete", "explicit", "export", "false", "friend"),
    *("mutable", "namespace", "new", "not", "nullptr", "operator", "or", "private"),
    *("protected", "public", "template", "this", "throw", "true", "try", "typename", "using"),
    *("virtual", "xor"),
}
_ACTIVATION_C = {
    "relu": "x > 0.0f ? x : 0.0f",
    "tanh": "tanhf(x)",
    "elu": "x > 0.0f ? x : expm1f(x)",
    # flax's default gelu, the tanh approximation: 0.7978846f = float32(sqrt(2 / pi))
    "gelu": "0.5f * x * (1.0f + tanhf(0.7978846f * (x + 0.044715f * x * x * x)))",
    "silu": "x / (1.0f + expf(-x))",
}


class CExportError(ValueError):
    """The bundle cannot be exported to C as asked."""


# ---- C text helpers ----------------------------------------------------------------------------
def c_float(value: float) -> str:
    """A float32 as a C literal that parses back to the same bits (shortest round trip)."""
    v = np.float32(value)
    if np.isnan(v):
        return "NAN"
    if np.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    text = str(v)
    if not any(c in text for c in ".e"):
        text += ".0"
    return text + "f"


def c_string(text: str) -> str:
    """A C string literal: quotes, backslashes and ``?`` (trigraphs) escaped, non-ASCII octal."""
    out = []
    for byte in text.encode():
        ch = chr(byte)
        if ch in '\\"?':
            out.append("\\" + ch)
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def c_comment(text: str) -> str:
    """Text safe inside ``/* */``: one line, no comment terminator, no trigraph."""
    return " ".join(str(text).split()).replace("*/", "* /").replace("??", "? ?")


def c_identifier(name: str, taken: set[str]) -> str:
    """A C identifier for a layout field name, unique within ``taken`` (which it extends)."""
    ident = re.sub(r"\W", "_", str(name), flags=re.ASCII).strip("_") or "field"
    if ident[0].isdigit():
        ident = "f_" + ident
    if ident in _RESERVED:
        ident += "_field"
    base, n = ident, 2
    while ident in taken:
        ident, n = f"{base}_{n}", n + 1
    taken.add(ident)
    return ident


def c_array(ctype: str, name: str, values: np.ndarray, *, static: bool = True) -> str:
    """``static const <ctype> name[...] = {...};`` for a 1-D or 2-D array, 8 values a line."""
    values = np.asarray(values)
    fmt = c_float if ctype == "float" else (lambda x: str(int(x)))
    dims = "".join(f"[{n}]" for n in values.shape)
    rows = values.reshape(-1, values.shape[-1]) if values.ndim > 1 else values[None]
    body = []
    for row in rows:
        items = [fmt(x) for x in row]
        lines = [", ".join(items[i : i + 8]) for i in range(0, len(items), 8)]
        inner = (",\n    " + "    " * (values.ndim > 1)).join(lines)
        body.append("{" + inner + "}" if values.ndim > 1 else inner)
    joined = ",\n    ".join(body)
    prefix = "static const" if static else "const"
    return f"{prefix} {ctype} {name}{dims} = {{\n    {joined}\n}};\n"


# ---- the layer program -------------------------------------------------------------------------
def _fields(layout: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Layout fields with their C identifier, offset in the flat vector and a comment."""
    taken: set[str] = set()
    out, offset = [], 0
    for f in layout:
        size = int(f["size"])
        where = ", ".join(x for x in (f.get("units", ""), f.get("frame", "")) if x)
        comment = f"[{size}] {where or 'no units'}" + (
            f": {f['description']}" if f.get("description") else ""
        )
        out.append(
            {
                "name": f["name"],
                "ident": c_identifier(f["name"], taken),
                "size": size,
                "offset": offset,
                "comment": c_comment(comment),
            }
        )
        offset += size
    return out


def _net_view(bundle: PolicyBundle) -> PolicyBundle:
    """The bundle whose observation is the layer program's input: itself, or for an ``arsq``
    program its advantage net (input ``[obs, level, dimension, centres]``)."""
    if bundle.program == "arsq":
        from firmware_export.arsq_c import network_view

        return network_view(bundle)
    return bundle


def _widths(bundle: PolicyBundle) -> list[int]:
    """Width of the vector after each layer, starting with the observation."""
    widths = [bundle.obs_dim]
    for layer in bundle.spec["layers"]:
        if layer["op"] == "dense":
            widths.append(int(bundle.params[layer["weight"]].shape[1]))
        else:
            widths.append(widths[-1])
    return widths


def _check(bundle: PolicyBundle, quantize: str, name: str) -> None:
    if quantize not in QUANTIZATIONS:
        raise CExportError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or name in _RESERVED:
        raise CExportError(f"name must be a C identifier (letters, digits, _), got {name!r}")
    if bundle.program not in ("layers", "arsq"):
        raise CExportError(
            f"a {bundle.program!r} bundle (a K-step diffusion sampler) has no C export: "
            "export its distilled one-step policy"
        )
    if bundle.spec.get("carry"):
        raise CExportError(
            "this bundle's policy has a carry (recurrent state), which the C export does not "
            "generate yet (see firmware_export.c_export's docstring)"
        )
    bundle.validate("bundle")
    if bundle.golden_obs is None or bundle.golden_actions is None or not len(bundle.golden_obs):
        raise CExportError("the bundle has no golden pairs: the C self-test needs them")
    for key, value in bundle.params.items():
        if not np.all(np.isfinite(value)):
            raise CExportError(f"parameter {key!r} has NaN or Inf values")


def _layer_arrays(bundle: PolicyBundle, quantize: str) -> tuple[list[str], list[str]]:
    """(array definitions, network body lines) for the layer program."""
    quantized = quantized_weights(bundle) if quantize == "int8" else {}
    widths = _widths(bundle)
    arrays: list[str] = []
    calls: list[str] = []
    cur, other = "scratch_a", "scratch_b"
    for i, layer in enumerate(bundle.spec["layers"]):
        n_in, n_out = widths[i], widths[i + 1]
        op = layer["op"]
        if op == "dense":
            w_name, b_name = layer["weight"], layer["bias"]
            tag = f"layer {i}: dense {n_in} -> {n_out} ({c_comment(w_name)}, {c_comment(b_name)})"
            arrays.append(f"/* {tag}; weight stored [out][in]: one contiguous dot product */")
            if quantize == "int8":
                q, scale = quantized[w_name]
                arrays.append(c_array("int8_t", f"l{i}_q", q.T))
                arrays.append(c_array("float", f"l{i}_scale", scale))
                args = f"&l{i}_q[0][0], l{i}_scale"
                fn = "dense_i8"
            else:
                arrays.append(c_array("float", f"l{i}_w", bundle.params[w_name].T))
                args = f"&l{i}_w[0][0]"
                fn = "dense_f32"
            arrays.append(c_array("float", f"l{i}_b", bundle.params[b_name]))
            calls.append(f"    {fn}({args}, l{i}_b, {n_in}, {n_out}, {cur}, {other});")
            cur, other = other, cur
        elif op == "layernorm":
            arrays.append(f"/* layer {i}: layernorm over {n_in} (eps {layer['eps']}) */")
            arrays.append(c_array("float", f"l{i}_s", bundle.params[layer["scale"]]))
            arrays.append(c_array("float", f"l{i}_b", bundle.params[layer["bias"]]))
            eps = c_float(layer["eps"])
            calls.append(f"    layernorm(l{i}_s, l{i}_b, {eps}, {n_in}, {cur});")
        elif op == "activation":
            calls.append(f"    act_{layer['fn']}({cur}, {n_in});")
        else:  # validate() already refused it; kept for a new op added without an emitter
            raise CExportError(f"layer op {op!r} has no C emitter")
    calls.append(f"    return {cur};")
    return arrays, calls


def _dense_helper(quantize: str) -> str:
    """``dense_f32`` or ``dense_i8``. Four outputs per pass: four independent sums share each
    ``x[i]`` load and hide the add latency, yet every sum still runs over ``i`` in order, so
    the result is bit-identical to a plain dot product per output."""
    if quantize == "int8":
        fn, wtype, scale = "dense_i8", "int8_t", " const float *scale,"
        term = lambda k: f"x[i] * (float)w{k}[i]"
        result = lambda k: f"s{k} * scale[j + {k}] + b[j + {k}]"
        what = "(sum_i q[j][i] x[i]) * scale[j] + b[j]: int8 weights, float activations"
    else:
        fn, wtype, scale = "dense_f32", "float", ""
        term = lambda k: f"w{k}[i] * x[i]"
        result = lambda k: f"s{k} + b[j + {k}]"
        what = "sum_i w[j][i] x[i] + b[j]"
    return "\n".join(
        [
            f"/* y[j] = {what}; w is [n_out][n_in] */",
            f"static void {fn}(const {wtype} *w,{scale} const float *b, int n_in, int n_out,",
            f"{' ' * (len(fn) + 13)}const float *x, float *y) {{",
            "    int i, j = 0;",
            "    for (; j + 4 <= n_out; j += 4) {",
            *(f"        const {wtype} *w{k} = w + (j + {k}) * n_in;" for k in range(4)),
            "        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;",
            "        for (i = 0; i < n_in; ++i) {",
            *(f"            s{k} += {term(k)};" for k in range(4)),
            "        }",
            *(f"        y[j + {k}] = {result(k)};" for k in range(4)),
            "    }",
            "    for (; j < n_out; ++j) {",
            f"        const {wtype} *w0 = w + j * n_in;",
            "        float s0 = 0.0f;",
            "        for (i = 0; i < n_in; ++i) {",
            f"            s0 += {term(0)};",
            "        }",
            f"        y[j] = {result(0)};",
            "    }",
            "}",
            "",
        ]
    )


def _helpers(bundle: PolicyBundle, quantize: str) -> str:
    """The static functions the layer program and the head use (only those, for -Werror)."""
    ops = {layer["op"] for layer in bundle.spec["layers"]}
    fns = [layer["fn"] for layer in bundle.spec["layers"] if layer["op"] == "activation"]
    parts = []
    if "dense" in ops:
        parts.append(_dense_helper(quantize))
    if "layernorm" in ops:
        parts.append(
            "/* in place: (x - mean) / sqrt(var + eps) * s + b, biased variance (two passes) */\n"
            "static void layernorm(const float *s, const float *b, float eps, int n, float *x) {\n"
            "    int i;\n"
            "    float mean = 0.0f, var = 0.0f, inv;\n"
            "    for (i = 0; i < n; ++i) {\n"
            "        mean += x[i];\n"
            "    }\n"
            "    mean /= (float)n;\n"
            "    for (i = 0; i < n; ++i) {\n"
            "        var += (x[i] - mean) * (x[i] - mean);\n"
            "    }\n"
            "    var /= (float)n;\n"
            "    inv = sqrtf(var + eps);\n"
            "    for (i = 0; i < n; ++i) {\n"
            "        x[i] = (x[i] - mean) / inv * s[i] + b[i];\n"
            "    }\n"
            "}\n"
        )
    for fn in dict.fromkeys(fns):
        parts.append(
            f"static void act_{fn}(float *v, int n) {{\n"
            "    int i;\n"
            "    for (i = 0; i < n; ++i) {\n"
            "        const float x = v[i];\n"
            f"        v[i] = {_ACTIVATION_C[fn]};\n"
            "    }\n"
            "}\n"
        )
    if bundle.spec["head"] == "beta_mean":
        parts.append(
            "/* log(1 + exp(x)) without overflow */\n"
            "static float softplus(float x) {\n"
            "    return (x > 0.0f ? x : 0.0f) + log1pf(expf(-fabsf(x)));\n"
            "}\n"
        )
    return "\n".join(parts)


def _head_lines(head: str, action_dim: int) -> list[str]:
    """C statements (inside the loop over ``a``) that set ``unit = head(z)[a]`` in [-1, 1]."""
    if head == "beta_mean":  # the Beta's mean from z = [alpha logits | beta logits]
        return [
            "const float alpha = 1.0f + softplus(z[a]);",
            f"const float beta = 1.0f + softplus(z[a + {action_dim}]);",
            "const float unit = 2.0f * alpha / (alpha + beta) - 1.0f;",
        ]
    expr = {
        "tanh": "tanhf(z[a])",
        "tanh_mean": "tanhf(z[a]) /* z = [mean | log std]: the mean */",
        "clip": "z[a] < -1.0f ? -1.0f : (z[a] > 1.0f ? 1.0f : z[a])",
        "identity": "z[a]",
    }[head]
    return [f"const float unit = {expr};"]


# ---- files -------------------------------------------------------------------------------------
def _header(bundle: PolicyBundle, quantize: str, name: str, meta: dict[str, Any]) -> str:
    up = name.upper()
    obs_fields, act_fields = _fields(bundle.obs_layout), _fields(bundle.action_layout)
    source = bundle.source or {}
    step = source.get("checkpoint_step")
    chunk = bundle.spec.get("chunk") or {}
    lines = [
        f"/* {name}.h: generated by robotrl firmware_export from a PolicyBundle. Do not edit. */",
        f"#ifndef {up}_H",
        f"#define {up}_H",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        f"#define {up}_OBS_DIM {bundle.obs_dim}",
        f"#define {up}_ACTION_DIM {bundle.action_dim}",
        f"#define {up}_WIDTH_MAX {meta['width_max']} /* widest layer: the scratch buffers */",
        f"#define {up}_CTRL_DT {c_float(bundle.ctrl_dt)} /* s, control period */",
        f"#define {up}_OBS_HISTORY {chunk.get('obs_history', 1)} /* frames in the observation */",
        f"#define {up}_ACTION_STEPS {chunk.get('action_steps', 1)} /* actions, one per CTRL_DT */",
        f"#define {up}_OBS_CLIP {c_float(bundle.obs_clip)} /* normalised observation clip */",
        f"#define {up}_QUANTIZATION {c_string(quantize)}",
        f"#define {up}_NETWORK {c_string(meta['network'])}",
        f"#define {up}_SOURCE_RUN {c_string(str(source.get('run', '')))}",
        f"#define {up}_SOURCE_CHECKPOINT_STEP {int(step) if step is not None else -1}L",
        f"#define {up}_SOURCE {c_string(json.dumps(source, sort_keys=True, default=str))}",
        f"#define {up}_BUNDLE_SHA256 {c_string(meta['sha256'])}",
        f"#define {up}_N_GOLDEN {len(bundle.golden_obs)}",
        f"#define {up}_SELF_TEST_TOL {c_float(SELF_TEST_TOL)} /* head units, see {name}.c */",
    ]
    if quantize == "int8":
        lines.append(
            f"#define {up}_INT8_GOLDEN_ERROR {c_float(meta['int8_error'])}"
            " /* max |int8 - float32| over the golden actions, env units */"
        )
    lines += [
        "",
        "/* status codes */",
        f"#define {up}_OK 0",
        f"#define {up}_ERR_OBS_NONFINITE 1 /* a NaN/Inf observation: safe action written */",
        f"#define {up}_ERR_ACTION_NONFINITE 2 /* a NaN/Inf action: safe action written */",
        f"#define {up}_ERR_NULL 3 /* a NULL argument */",
        "",
        "/* where each field sits in the flat vectors of the *_flat entry point */",
    ]
    for kind, fields in (("OBS", obs_fields), ("ACTION", act_fields)):
        for f in fields:
            field = f["ident"].upper()
            lines.append(f"#define {up}_{kind}_{field}_OFFSET {f['offset']}")
            lines.append(f"#define {up}_{kind}_{field}_SIZE {f['size']}")
    for kind, fields, what in (
        ("obs", obs_fields, "the observation in env units (raw: the step normalises it)"),
        ("action", act_fields, "the action in env units (offset + scale * head)"),
    ):
        lines += ["", f"/* {what} */", "typedef struct {"]
        for f in fields:
            dims = f"[{f['size']}]" if f["size"] > 1 else ""
            lines.append(f"    float {f['ident']}{dims}; /* {f['comment']} */")
        lines.append(f"}} {name}_{kind}_t;")
    lines += [
        "",
        f"/* what a robot should do when it cannot trust the policy ({name}_step's error path) */",
        f"extern const float {name}_safe_action[{up}_ACTION_DIM];",
        "",
        f"/* One control step: {up}_OK, or an error code with the safe action written.",
        " * Not reentrant (static scratch): one caller at a time. */",
        f"int {name}_step(const {name}_obs_t *obs, {name}_action_t *action);",
        "",
        f"/* The same on flat vectors: obs[{up}_OBS_DIM] -> action[{up}_ACTION_DIM]. */",
        f"int {name}_step_flat(const float *obs, float *action);",
        "",
        f"/* Runs the {up}_N_GOLDEN embedded golden pairs; returns the number that fail",
        f" * (0 = pass), or -1 when compiled with -D{up}_NO_SELF_TEST. */",
        f"int {name}_self_test(void);",
        "",
        "#ifdef __cplusplus",
        "}",
        "#endif",
        "",
        f"#endif /* {up}_H */",
        "",
    ]
    return "\n".join(lines)


def _pack_lines(fields: list[dict[str, Any]], src: str, dst: str, to_flat: bool) -> list[str]:
    """Copies between a struct (``src->field``) and a flat array, one loop per array field."""
    lines = []
    for f in fields:
        ident, off, size = f["ident"], f["offset"], f["size"]
        if size == 1:
            member, flat = f"{src}->{ident}", f"{dst}[{off}]"
            if to_flat:
                lines.append(f"    {flat} = {member};")
            else:
                lines.append(f"    {src}->{ident} = {dst}[{off}];")
        else:
            if to_flat:
                body = f"{dst}[{off} + i] = {src}->{ident}[i];"
            else:
                body = f"{src}->{ident}[i] = {dst}[{off} + i];"
            lines += [f"    for (i = 0; i < {size}; ++i) {{", f"        {body}", "    }"]
    return lines


def _source(bundle: PolicyBundle, quantize: str, name: str, meta: dict[str, Any]) -> str:
    up = name.upper()
    arrays, calls = _layer_arrays(_net_view(bundle), quantize)
    obs_fields, act_fields = _fields(bundle.obs_layout), _fields(bundle.action_layout)
    uses_i_in_pack = any(f["size"] > 1 for f in obs_fields + act_fields)
    goldens = act_int8(bundle, bundle.golden_obs) if quantize == "int8" else bundle.golden_actions
    golden_note = (
        "the int8 reference's actions (quantize.act_int8) on the bundle's golden observations"
        if quantize == "int8"
        else "the bundle's own golden pairs (the exported policy's actions)"
    )
    normaliser = bundle.obs_mean is not None
    reference = bundle.action_reference
    out = [
        f"/* {name}.c: generated by robotrl firmware_export from a PolicyBundle. Do not edit.",
        f" * network: {meta['network']}",
        f" * weights: {quantize}"
        + (" (per-output-channel symmetric: w = q * scale[out])" if quantize == "int8" else ""),
        f" * source: {c_comment(json.dumps(bundle.source, sort_keys=True, default=str))}",
        f" * bundle sha256: {meta['sha256']}",
        " */",
        "#include <math.h>",
    ]
    if quantize == "int8":
        out.append("#include <stdint.h>")
    out += [f'#include "{name}.h"', ""]
    if normaliser:
        out += [
            "/* observation normaliser: clip((obs - mean) / std, -clip, clip) */",
            c_array("float", "obs_mean", bundle.obs_mean),
            c_array("float", "obs_std", bundle.obs_std),
        ]
    out += [
        "/* env action = offset + scale * head(z) */",
        c_array("float", "action_offset", bundle.action_offset),
        c_array("float", "action_scale", bundle.action_scale),
        *(
            [
                "/* env action += raw observation[action_reference[a]] (-1: nothing) */",
                c_array("int", "action_reference", reference),
                f"static float reference_buf[{up}_ACTION_DIM];",
            ]
            if reference is not None
            else []
        ),
        "/* what the robot gets when a step fails */",
        c_array("float", f"{name}_safe_action", _safe_action(bundle), static=False),
        *arrays,
        f"static float scratch_a[{up}_WIDTH_MAX];",
        f"static float scratch_b[{up}_WIDTH_MAX];",
        f"static float action_buf[{up}_ACTION_DIM];",
        "",
        _helpers(bundle, quantize),
        *_network_function(bundle, calls, up),
        "",
        "static int safe(float *action, int status) {",
        "    int a;",
        f"    for (a = 0; a < {up}_ACTION_DIM; ++a) {{",
        f"        action[a] = {name}_safe_action[a];",
        "    }",
        "    return status;",
        "}",
        "",
        "/* the observation is in scratch_a (raw); writes action[ACTION_DIM] */",
        "static int run(float *action) {",
        "    const float *z;",
        "    int i, a;",
        *(
            [
                f"    for (a = 0; a < {up}_ACTION_DIM; ++a) {{",
                "        i = action_reference[a];",
                "        reference_buf[a] = i >= 0 ? scratch_a[i] : 0.0f;",
                "    }",
            ]
            if reference is not None
            else []
        ),
        f"    for (i = 0; i < {up}_OBS_DIM; ++i) {{",
        "        if (!isfinite(scratch_a[i])) {",
        f"            return safe(action, {up}_ERR_OBS_NONFINITE);",
        "        }",
    ]
    if normaliser:
        out += [
            "        scratch_a[i] = (scratch_a[i] - obs_mean[i]) / obs_std[i];",
            f"        if (scratch_a[i] < -{up}_OBS_CLIP) {{",
            f"            scratch_a[i] = -{up}_OBS_CLIP;",
            f"        }} else if (scratch_a[i] > {up}_OBS_CLIP) {{",
            f"            scratch_a[i] = {up}_OBS_CLIP;",
            "        }",
        ]
    out += [
        "    }",
        "    z = network();",
        f"    for (a = 0; a < {up}_ACTION_DIM; ++a) {{",
        *("        " + ln for ln in _head_lines(bundle.spec["head"], bundle.action_dim)),
        "        action[a] = action_offset[a] + action_scale[a] * unit"
        + (" + reference_buf[a];" if reference is not None else ";"),
        "        if (!isfinite(action[a])) {",
        f"            return safe(action, {up}_ERR_ACTION_NONFINITE);",
        "        }",
        "    }",
        f"    return {up}_OK;",
        "}",
        "",
        f"int {name}_step_flat(const float *obs, float *action) {{",
        "    int i;",
        "    if (action == 0) {",
        f"        return {up}_ERR_NULL;",
        "    }",
        "    if (obs == 0) {",
        f"        return safe(action, {up}_ERR_NULL);",
        "    }",
        f"    for (i = 0; i < {up}_OBS_DIM; ++i) {{",
        "        scratch_a[i] = obs[i];",
        "    }",
        "    return run(action);",
        "}",
        "",
        f"int {name}_step(const {name}_obs_t *obs, {name}_action_t *action) {{",
        "    int status;" + ("\n    int i;" if uses_i_in_pack else ""),
        "    if (action == 0) {",
        f"        return {up}_ERR_NULL;",
        "    }",
        "    if (obs == 0) {",
        f"        status = safe(action_buf, {up}_ERR_NULL);",
        "    } else {",
        *("    " + ln for ln in _pack_lines(obs_fields, "obs", "scratch_a", to_flat=True)),
        "        status = run(action_buf);",
        "    }",
        *_pack_lines(act_fields, "action", "action_buf", to_flat=False),
        "    return status;",
        "}",
        "",
        f"#ifndef {up}_NO_SELF_TEST",
        f"/* golden pairs: {golden_note} */",
        c_array("float", "golden_obs", bundle.golden_obs),
        c_array("float", "golden_actions", goldens),
        f"int {name}_self_test(void) {{",
        f"    float action[{up}_ACTION_DIM];",
        "    int g, a, failures = 0;",
        f"    for (g = 0; g < {up}_N_GOLDEN; ++g) {{",
        f"        int bad = {name}_step_flat(golden_obs[g], action) != {up}_OK;",
        f"        for (a = 0; a < {up}_ACTION_DIM; ++a) {{",
        f"            const float tol = {up}_SELF_TEST_TOL * (1.0f + fabsf(action_scale[a]));",
        "            if (!(fabsf(action[a] - golden_actions[g][a]) <= tol)) {",
        "                bad = 1;",
        "            }",
        "        }",
        "        failures += bad;",
        "    }",
        "    return failures;",
        "}",
        "#else",
        f"int {name}_self_test(void) {{",
        "    return -1;",
        "}",
        "#endif",
        "",
    ]
    return "\n".join(out)


def _network_function(bundle: PolicyBundle, calls: list[str], up: str) -> list[str]:
    """``network()``: the layer program, or ARSQ's decision loop around it."""
    if bundle.program == "arsq":
        from firmware_export.arsq_c import network_function

        return network_function(bundle, calls, up, c_float)
    return [
        "/* the layer program on scratch_a (normalised observation); returns the output z */",
        "static const float *network(void) {",
        *calls,
        "}",
    ]


def _safe_action(bundle: PolicyBundle) -> np.ndarray:
    if bundle.safe_action is not None:
        return np.asarray(bundle.safe_action, np.float32)
    # No safe action in the bundle: the centre of the action range (offset) is the fallback.
    return np.asarray(bundle.action_offset, np.float32)


def describe_network(bundle: PolicyBundle) -> str:
    """One line: ``5 -> dense 64 -> tanh -> dense 64 -> tanh -> dense 2 -> head tanh``."""
    view = _net_view(bundle)
    parts = [str(view.obs_dim)]
    for layer, width in zip(bundle.spec["layers"], _widths(view)[1:], strict=True):
        if layer["op"] == "dense":
            parts.append(f"dense {width}")
        elif layer["op"] == "layernorm":
            parts.append("layernorm")
        else:
            parts.append(layer["fn"])
    line = " -> ".join([*parts, f"head {bundle.spec['head']}"])
    if bundle.program == "arsq":
        from firmware_export.arsq_c import describe

        return describe(bundle, line)
    return line


def bundle_sha256(bundle: PolicyBundle) -> str:
    """The checksum that ``PolicyBundle.save`` stores in the bundle file, so a firmware image
    can be traced to the exact ``.rlb`` it came from."""
    return bundle.checksum()


def write_c(
    bundle: PolicyBundle,
    out_dir: str | Path,
    *,
    quantize: str = "float32",
    name: str = "policy",
) -> dict[str, Path]:
    """Writes ``<name>.h`` and ``<name>.c`` for ``bundle`` into ``out_dir``.

    Args:
      quantize: ``"float32"`` weights, or ``"int8"`` weights with per-output-channel scales
        (activations stay float32).
      name: prefix of every exported symbol, type and macro (``policy_step``,
        ``POLICY_OBS_DIM``), so several policies can live in one firmware.

    Returns:
      ``{"header": path, "source": path}``.
    """
    _check(bundle, quantize, name)
    widths = _widths(_net_view(bundle))
    meta = {
        "width_max": max(widths),
        "network": describe_network(bundle),
        "sha256": bundle_sha256(bundle),
        "int8_error": (
            float(np.max(np.abs(act_int8(bundle, bundle.golden_obs) - bundle.golden_actions)))
            if quantize == "int8"
            else 0.0
        ),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    header, source = out_dir / f"{name}.h", out_dir / f"{name}.c"
    header.write_text(_header(bundle, quantize, name, meta))
    source.write_text(_source(bundle, quantize, name, meta))
    return {"header": header, "source": source}


def c_initializer(values: Iterable[float]) -> str:
    """``{1.0f, 2.5f}``: a float initializer list (used by the test harness generators)."""
    return "{" + ", ".join(c_float(v) for v in values) + "}"


def field_copy_lines(bundle: PolicyBundle, struct: str, flat: str) -> list[str]:
    """C lines that fill ``struct`` (a ``<name>_obs_t``, by value) from ``flat[]``; needs
    ``int i`` in scope. For harnesses that check the struct entry against the flat one."""
    lines = []
    for f in _fields(bundle.obs_layout):
        if f["size"] == 1:
            lines.append(f"{struct}.{f['ident']} = {flat}[{f['offset']}];")
        else:
            lines.append(
                f"for (i = 0; i < {f['size']}; ++i) {{ "
                f"{struct}.{f['ident']}[i] = {flat}[{f['offset']} + i]; }}"
            )
    return lines


def action_field_lines(bundle: PolicyBundle, struct: str, flat: str) -> list[str]:
    """C lines that copy an action struct (by value) into ``flat[]``; needs ``int i``."""
    lines = []
    for f in _fields(bundle.action_layout):
        if f["size"] == 1:
            lines.append(f"{flat}[{f['offset']}] = {struct}.{f['ident']};")
        else:
            lines.append(
                f"for (i = 0; i < {f['size']}; ++i) {{ "
                f"{flat}[{f['offset']} + i] = {struct}.{f['ident']}[i]; }}"
            )
    return lines
