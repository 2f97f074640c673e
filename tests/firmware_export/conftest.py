"""Bundles for the export tests: real algorithm actors (perturbed fresh states, as in
``tests/policies/test_bundle.py``) on a spec with a named, multi-field observation layout."""

from __future__ import annotations

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from policies.bundle import PolicyBundle
from robotrl.algos import ppo, sac, td3
from robotrl.envs import RunningStats
from robotrl.export import bundle_from_state
from robotrl.types import ArraySpec, EnvSpec, Field

OBS_LAYOUT = (
    Field("position_error", 3, "m", "world", "position minus target"),
    Field("rotation_matrix", 9, "", "body->world", "R(q), row-major"),
    Field("linear_velocity", 3, "m/s", "world", "velocity"),
    Field("angular_velocity", 3, "rad/s", "body", "body rates"),
    Field("battery", 1, "V", "", "pack voltage"),
)
ACTION_LAYOUT = (
    Field("thrust", 1, "N", "body", "collective thrust"),
    Field("rates", 3, "rad/s", "body", "body-rate setpoint"),
)
SPEC = EnvSpec(
    name="export_fixture",
    obs=ArraySpec((19,)),
    action_low=(0.0, -3.0, -3.0, -1.0),
    action_high=(20.0, 3.0, 3.0, 1.0),
    ctrl_dt=0.01,
    episode_length=100,
    reward_range=(-1.0, 1.0),
    obs_layout=OBS_LAYOUT,
    action_layout=ACTION_LAYOUT,
)
# The Learning-to-Fly actor: 18 state values + 32 x 4 past actions -> [64, 64] tanh -> 4.
L2F_SPEC = EnvSpec(
    name="l2f_fixture",
    obs=ArraySpec((146,)),
    action_low=(-1.0,) * 4,
    action_high=(1.0,) * 4,
    ctrl_dt=0.01,
    episode_length=100,
    reward_range=(-1.0, 1.0),
    obs_layout=(
        *OBS_LAYOUT[:4],
        Field("action_history", 128, "", "", "last 32 actions, oldest first"),
    ),
    action_layout=(Field("rotor_command", 4, "", "", "normalised rpm command"),),
)

VARIANTS = {
    "td3-tanh-64x64-normaliser": (td3, td3.TD3Config(actor_hidden=(64, 64), activation="tanh")),
    "sac-relu-layernorm": (sac, sac.SACConfig(actor_hidden=(64, 64), actor_layer_norm=True)),
    "ppo-beta": (ppo, ppo.PPOConfig(actor_hidden=(64, 64), distribution="beta")),
}
NORMALISED = {"td3-tanh-64x64-normaliser"}
# Raw observations: offset and scaled per field, like sensor values (the normaliser matters).
OBS_LOC = np.linspace(-2.0, 3.0, 19).astype(np.float32)
OBS_SCALE = np.linspace(0.5, 4.0, 19).astype(np.float32)


def raw_obs(n: int, seed: int, dim: int = 19) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dim == 19:
        return (OBS_LOC + OBS_SCALE * rng.normal(size=(n, dim))).astype(np.float32)
    return rng.normal(size=(n, dim)).astype(np.float32)


def make_bundle(variant: str, spec: EnvSpec = SPEC, seed: int = 0):
    module, cfg = VARIANTS[variant]
    algo, state = perturbed_state(module, cfg, spec, seed)
    stats = None
    if variant in NORMALISED:
        stats = RunningStats.create(spec.obs_dim).update(jnp.asarray(raw_obs(500, 11)))
    golden = raw_obs(16, 12, spec.obs_dim)
    source = {"run": f"runs/{variant}", "checkpoint_step": 12_345, "algo": module.__name__}
    return bundle_from_state(algo, state, spec, golden, obs_stats=stats, source=source)


def perturbed_state(module, cfg, spec, seed=0):
    """A fresh state with every parameter nudged (``tests/policies/test_bundle.py``'s recipe,
    on another spec), so the heads see large outputs."""
    algo = module.make(cfg, spec)
    state = algo.init(jax.random.PRNGKey(seed))
    leaves, tree = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    noisy = [
        x + 0.1 * jax.random.normal(k, x.shape) if jnp.issubdtype(x.dtype, jnp.floating) else x
        for x, k in zip(leaves, keys, strict=True)
    ]
    return algo, jax.tree.unflatten(tree, noisy)


def l2f_bundle():
    """A perturbed [146, 64, 64, 4] tanh TD3 actor (the RLtools comparison shape)."""
    cfg = td3.TD3Config(actor_hidden=(64, 64), activation="tanh")
    algo, state = perturbed_state(td3, cfg, L2F_SPEC)
    golden = np.random.default_rng(5).normal(size=(16, 146)).astype(np.float32)
    return bundle_from_state(algo, state, L2F_SPEC, golden, source={"run": "l2f-shape"})


@pytest.fixture(scope="session")
def bundles():
    """``{variant: PolicyBundle}``, built once per session."""
    return {name: make_bundle(name) for name in VARIANTS}


@pytest.fixture(scope="session")
def toolchain():
    """Fails (never skips) when the Cortex-M4 toolchain is missing, naming the install script."""
    from firmware_export.cortex_m4 import ToolchainMissing, check_toolchain

    missing = None
    try:
        check_toolchain()
    except ToolchainMissing as err:
        missing = str(err)
    if missing:
        pytest.fail(missing, pytrace=False)


@pytest.fixture(scope="session")
def host_compiler():
    if shutil.which("gcc") is None:
        pytest.fail("no gcc on PATH: apt-get install gcc (the C export tests compile C)")


def synthetic_bundle(
    head: str = "clip",
    activations: tuple[str, ...] = ("gelu", "elu", "silu"),
    layer_norm: bool = True,
    seed: int = 3,
    relative: bool = False,
    hidden: tuple[int, ...] = (32, 16, 16),
) -> PolicyBundle:
    """A numpy-built bundle (no jax) covering what the algorithms above do not: every
    activation, the clip/identity/tanh_mean heads, field names that are not C identifiers, a
    description with comment terminators, and a normaliser; ``relative`` adds an action
    reference (actions relative to observation values) and a chunk. Goldens come from ``act``."""
    rng = np.random.default_rng(seed)
    obs_layout = [
        {
            "name": "base-pos",
            "size": 3,
            "units": "m",
            "frame": "world",
            "description": "a */ b ??=",
        },
        {"name": "int", "size": 1, "units": "°C", "frame": "", "description": "motor temperature"},
        {"name": "2nd", "size": 4, "units": "", "frame": "", "description": ""},
    ]
    action_layout = [
        {"name": "wheel", "size": 2, "units": "rad/s", "frame": "", "description": "speeds"},
        {"name": "steer", "size": 1, "units": "rad", "frame": "body", "description": "angle"},
    ]
    action_dim, width = 3, 8
    layers, params = [], {}
    for i, h in enumerate(hidden[: len(activations)]):
        params[f"l{i}.w"] = (rng.normal(size=(width, h)) / np.sqrt(width)).astype(np.float32)
        params[f"l{i}.b"] = (0.1 * rng.normal(size=h)).astype(np.float32)
        layers.append({"op": "dense", "weight": f"l{i}.w", "bias": f"l{i}.b"})
        if layer_norm:
            params[f"l{i}.s"] = (1 + 0.1 * rng.normal(size=h)).astype(np.float32)
            params[f"l{i}.c"] = (0.1 * rng.normal(size=h)).astype(np.float32)
            layers.append({"op": "layernorm", "scale": f"l{i}.s", "bias": f"l{i}.c", "eps": 1e-6})
        layers.append({"op": "activation", "fn": activations[i]})
        width = h
    out = 2 * action_dim if head in ("tanh_mean", "beta_mean") else action_dim
    params["out.w"] = (rng.normal(size=(width, out)) / np.sqrt(width)).astype(np.float32)
    params["out.b"] = (0.1 * rng.normal(size=out)).astype(np.float32)
    layers.append({"op": "dense", "weight": "out.w", "bias": "out.b"})
    spec = {"layers": layers, "head": head}
    if relative:  # wheel[0] += base-pos[1], wheel[1] += 2nd[3]; steer absolute
        spec |= {"action_reference": [1, 7, -1], "chunk": {"obs_history": 2, "action_steps": 3}}
    bundle = PolicyBundle(
        spec=spec,
        params=params,
        obs_layout=obs_layout,
        action_layout=action_layout,
        action_offset=np.array([0.0, 0.5, 1.0], np.float32),
        action_scale=np.array([2.0, 1.0, 0.5], np.float32),
        ctrl_dt=0.02,
        obs_mean=rng.normal(size=8).astype(np.float32),
        obs_std=(0.5 + rng.random(8)).astype(np.float32),
        safe_action=np.array([0.0, 0.5, 1.0], np.float32),
        source={"run": "synthetic", "checkpoint_step": 7},
        golden_obs=rng.normal(size=(8, 8)).astype(np.float32),
    )
    bundle.golden_actions = bundle.act(bundle.golden_obs)
    return bundle


SYNTHETIC = {
    "synthetic-clip-gelu-elu-silu-ln": dict(head="clip"),
    "synthetic-identity-relu-tanh": dict(
        head="identity", activations=("relu", "tanh"), layer_norm=False
    ),
    "synthetic-tanh-mean-silu": dict(head="tanh_mean", activations=("silu",)),
    "synthetic-relative-chunk": dict(head="tanh", activations=("silu", "relu"), relative=True),
}


@pytest.fixture(scope="session")
def all_bundles(bundles):
    """The algorithm bundles plus the synthetic ones: every op and head the C export knows."""
    return {**bundles, **{k: synthetic_bundle(**v) for k, v in SYNTHETIC.items()}}
