"""C for an ``arsq`` bundle (``policies.arsq``): ARSQ's greedy coarse-to-fine decision.

The advantage net is an ordinary layer program, emitted by ``c_export`` as ``mlp()`` (the
scratch buffers hold its input ``[obs, level one-hot, dimension one-hot, centres]``, ``I = O + L
+ 2A`` wide). ``network()`` wraps it in the fixed loop of ``policies.arsq.decide``: for each level,
for each action dimension, fill the input, run ``mlp()``, take the first best of the ``C`` bin
scores and zoom that dimension's interval into the chosen bin; it returns the ``A`` interval
centres, which the usual head (``clip``), action scaling, NaN guard and self-test of
``c_export`` then treat like any network output. Same float32 operations in the same order as
the numpy program, so the intervals agree to the bit; a step costs ``L x A`` network
evaluations and no more memory than the layer program (four static ``[A]`` arrays and a copy
of the normalised observation).
"""

from __future__ import annotations

import dataclasses

from policies.arsq import input_width
from policies.bundle import PolicyBundle


def network_view(bundle: PolicyBundle) -> PolicyBundle:
    """The bundle as its advantage net alone: the layer emitters read the net's input width
    (``I``) from the observation layout."""
    width = input_width(bundle.spec, bundle.obs_dim, bundle.action_dim)
    return dataclasses.replace(bundle, obs_layout=[{"name": "arsq_input", "size": width}])


def describe(bundle: PolicyBundle, mlp: str) -> str:
    """One line: ``arsq 3 x 5 over 2 dims: 6 -> dense 64 -> ... -> dense 5 -> head clip``."""
    arsq = bundle.spec["arsq"]
    kind = "factorised" if arsq.get("factorized") else "auto-regressive"
    return (
        f"arsq {kind} {arsq['levels']} levels x {arsq['bins']} bins over "
        f"{bundle.action_dim} dims, {bundle.obs_dim} obs: {mlp}"
    )


def network_function(bundle: PolicyBundle, calls: list[str], up: str, c_float) -> list[str]:
    """C lines: ``mlp()`` (the layer program ``calls``) and ``network()``, the decision loop."""
    arsq = bundle.spec["arsq"]
    levels, bins = int(arsq["levels"]), int(arsq["bins"])
    obs, act = f"{up}_OBS_DIM", f"{up}_ACTION_DIM"
    ctx = "i == dim ? arsq_centre[i] : 0.0f" if arsq.get("factorized") else "arsq_centre[i]"
    what = "its own dimension's interval" if arsq.get("factorized") else "the intervals so far"
    return [
        f"/* ARSQ: {levels} levels x {bins} bins per action dimension, decided level by level and,",
        f" * inside a level, dimension by dimension; the net sees {what} */",
        f"#define ARSQ_LEVELS {levels}",
        f"#define ARSQ_BINS {bins}",
        f"#define ARSQ_INV_BINS {c_float(1.0 / bins)} /* float32(1 / bins), as numpy and JAX */",
        f"static float arsq_obs[{obs}];",
        f"static float arsq_low[{act}];",
        f"static float arsq_high[{act}];",
        f"static float arsq_centre[{act}];",
        "",
        "/* the advantage net on scratch_a [obs, level, dim, centres]; returns bin scores */",
        "static const float *mlp(void) {",
        *calls,
        "}",
        "",
        "/* the greedy decision for the normalised obs in scratch_a; returns the centres */",
        "static const float *network(void) {",
        "    const float *z;",
        "    float width;",
        "    int i, level, dim, b, best;",
        f"    for (i = 0; i < {obs}; ++i) {{",
        "        arsq_obs[i] = scratch_a[i];",
        "    }",
        f"    for (dim = 0; dim < {act}; ++dim) {{",
        "        arsq_low[dim] = -1.0f;",
        "        arsq_high[dim] = 1.0f;",
        "        arsq_centre[dim] = 0.0f;",
        "    }",
        "    for (level = 0; level < ARSQ_LEVELS; ++level) {",
        f"        for (dim = 0; dim < {act}; ++dim) {{",
        f"            for (i = 0; i < {obs}; ++i) {{",
        "                scratch_a[i] = arsq_obs[i];",
        "            }",
        "            for (i = 0; i < ARSQ_LEVELS; ++i) {",
        f"                scratch_a[{obs} + i] = i == level ? 1.0f : 0.0f;",
        "            }",
        f"            for (i = 0; i < {act}; ++i) {{",
        f"                scratch_a[{obs} + ARSQ_LEVELS + i] = i == dim ? 1.0f : 0.0f;",
        f"                scratch_a[{obs} + ARSQ_LEVELS + {act} + i] = {ctx};",
        "            }",
        "            z = mlp();",
        "            best = 0; /* the first maximum, as numpy's argmax */",
        "            for (b = 1; b < ARSQ_BINS; ++b) {",
        "                if (z[b] > z[best]) {",
        "                    best = b;",
        "                }",
        "            }",
        "            width = (arsq_high[dim] - arsq_low[dim]) * ARSQ_INV_BINS;",
        "            arsq_low[dim] = arsq_low[dim] + width * (float)best;",
        "            arsq_high[dim] = arsq_low[dim] + width;",
        "            arsq_centre[dim] = (arsq_low[dim] + arsq_high[dim]) * 0.5f;",
        "        }",
        "    }",
        "    return arsq_centre;",
        "}",
    ]
