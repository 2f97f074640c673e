"""The MuJoCo side shared by both backends: loading gymnasium's XML, the randomisable physical
parameters and how they map onto model fields, the spec, and rendering.

Physical parameters (``PARAM_NAMES``), one value per model element:
  body_mass      [nbody]     kg; a body's inertia tensor scales with its mass (same shape,
                             denser material) and the subtree masses follow
  geom_friction  [ngeom, 3]  sliding, torsional, rolling friction coefficients
  actuator_gear  [nu]        N m per unit of action (the joint transmission's gear)
  dof_damping    [nv]        N m s/rad (hinges) or N s/m (slides)
Both backends turn parameters into model fields with ``model_fields`` (numpy or jax.numpy), so a
randomised episode runs the same physics on either.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from robotrl.types import ArraySpec, EnvSpec, Field
from sims.locomotion.tasks import LocomotionConfig, LocomotionTask

# Headless machines: mujoco picks its GL backend when first imported.
os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco

PARAM_NAMES = ("body_mass", "geom_friction", "actuator_gear", "dof_damping")


_INSTALL_HINTS = {
    "gymnasium": "pip install 'gymnasium[mujoco]'",
    "dm_control": "pip install 'robotrl[dmc]'",
}


def asset_path(xml: str, package: str = "gymnasium", folder: str = "envs/mujoco/assets") -> Path:
    """Path of a model XML shipped inside an installed package (never copied here)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        hint = _INSTALL_HINTS.get(package, f"pip install {package}")
        raise ImportError(f"{package} is not installed (its model XML is needed): {hint}")
    path = Path(spec.submodule_search_locations[0]) / folder / xml
    if not path.is_file():
        raise FileNotFoundError(f"{xml} not found in the installed {package} ({path})")
    return path


# gymnasium's half_cheetah.xml uses the compiler's "settotalmass", which MuJoCo 3.17 deprecates
# with a warning printed at every load; it does not change the compiled model.
_KNOWN_XML_WARNINGS = ("'settotalmass' is deprecated",)


def _warn(message: str) -> None:
    if not any(known in message for known in _KNOWN_XML_WARNINGS):
        warnings.warn(f"MuJoCo: {message.strip()}", RuntimeWarning, stacklevel=2)


def load_model(task: LocomotionTask, textures: bool = True) -> mujoco.MjModel:
    """The task's MjModel, compiled from its package's XML as that package compiles it.

    ``textures=False`` leaves out the textures (materials keep their colours): the same physics
    without the pictures, for the per-env copies a batch steps. dm_control's cartpole carries
    11.8 MB of skybox and floor textures and gymnasium's models 0.5 MB, so 4,096 textured copies
    would take 48 GB and 2 GB of memory.
    """
    path = str(asset_path(task.xml, *task.assets))
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(_warn)
    try:
        if textures:
            return mujoco.MjModel.from_xml_path(path)
        spec = mujoco.MjSpec.from_file(path)
        for material in spec.materials:
            material.textures = [""] * len(material.textures)
        for texture in list(spec.textures):
            spec.delete(texture)
        with warnings.catch_warnings():  # MjSpec reports the XML's deprecations as warnings
            for known in _KNOWN_XML_WARNINGS:
                warnings.filterwarnings("ignore", message=f".*{known}")
            return spec.compile()
    finally:
        mujoco.set_mju_user_warning(previous)


def import_mjx() -> Any:
    """``mujoco.mjx``, without the "Failed to import warp" lines it prints on CPU machines."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from mujoco import mjx
    except ImportError as err:
        raise ImportError(
            "the MJX backend needs mujoco-mjx: pip install 'mujoco-mjx>=3.17,<4'"
        ) from err
    return mjx


def default_params(model: mujoco.MjModel) -> dict[str, np.ndarray]:
    """The model's own physical parameters, float64 copies (see the module docstring)."""
    return {
        "body_mass": model.body_mass.copy(),
        "geom_friction": model.geom_friction.copy(),
        "actuator_gear": model.actuator_gear[:, 0].copy(),
        "dof_damping": model.dof_damping.copy(),
    }


def model_constants(model: mujoco.MjModel) -> dict[str, np.ndarray]:
    """What ``model_fields`` needs besides the parameters: default fields and the body tree."""
    subtree = np.zeros((model.nbody, model.nbody))  # [i, j] = 1 if body j is in i's subtree
    for j in range(model.nbody):
        i = j
        while True:
            subtree[i, j] = 1.0
            if i == 0:
                break
            i = int(model.body_parentid[i])
    return {
        "body_mass": model.body_mass.copy(),
        "body_inertia": model.body_inertia.copy(),
        "body_subtreemass": model.body_subtreemass.copy(),
        "actuator_gear": model.actuator_gear.copy(),
        "subtree": subtree,
    }


def model_fields(params: dict[str, Any], const: dict[str, Any], xp: Any = np) -> dict[str, Any]:
    """Model fields of one parameter set (unbatched), as deltas from the defaults.

    Written so that the default parameters give the model's fields bit for bit: inertia scales by
    ``mass / default_mass`` (1 where the default is 0, the world body) and subtree masses move by
    the subtree sum of the mass changes.
    """
    mass, base = params["body_mass"], const["body_mass"]
    ratio = xp.where(base > 0, mass / xp.where(base > 0, base, 1.0), 1.0)
    subtreemass = const["body_subtreemass"] + const["subtree"] @ (mass - base)
    gear = const["actuator_gear"]
    gear = xp.concatenate([params["actuator_gear"][:, None], gear[:, 1:]], axis=1)
    return {
        "body_mass": mass,
        "body_inertia": const["body_inertia"] * ratio[:, None],
        "body_subtreemass": subtreemass,
        "geom_friction": params["geom_friction"],
        "actuator_gear": gear,
        "dof_damping": params["dof_damping"],
    }


def set_model_fields(model: mujoco.MjModel, fields: dict[str, np.ndarray]) -> None:
    """Writes ``model_fields`` output into a native MjModel in place."""
    for name, value in fields.items():
        getattr(model, name)[...] = value


def action_layout(model: mujoco.MjModel) -> tuple[Field, ...]:
    out = []
    for a in range(model.nu):
        j = int(model.actuator_trnid[a, 0])
        joint = model.joint(j).name
        gear = float(model.actuator_gear[a, 0])
        slide = int(model.jnt_type[j]) == int(mujoco.mjtJoint.mjJNT_SLIDE)
        effort = "force" if slide else "torque"
        units = "N" if slide else "N m"
        out.append(
            Field(
                model.actuator(a).name or joint,
                1,
                "",
                "joint",
                f"motor on {joint}: {effort} = {gear:g} {units} x action",
            )
        )
    return tuple(out)


def make_spec(task: LocomotionTask, model: mujoco.MjModel, config: LocomotionConfig) -> EnvSpec:
    """The EnvSpec both backends report (reward_range None: forward speed has no bound)."""
    layout = task.obs_layout(model)
    low, high = model.actuator_ctrlrange.T
    return EnvSpec(
        name=task.name,
        obs=ArraySpec((sum(f.size for f in layout),)),
        action_low=tuple(float(x) for x in low),
        action_high=tuple(float(x) for x in high),
        ctrl_dt=float(model.opt.timestep * task.frame_skip),
        episode_length=config.episode_length,
        obs_layout=layout,
        action_layout=action_layout(model),
    )


class FrameRenderer:
    """Draws a (model, data) pair through ``mujoco.Renderer`` from a camera of the XML."""

    def __init__(self, model: mujoco.MjModel, config: LocomotionConfig, camera: str):
        self.model, self.config, self.camera = model, config, camera
        self._renderer: mujoco.Renderer | None = None
        self._data = mujoco.MjData(model)

    def _get(self) -> mujoco.Renderer:
        if self._renderer is None:
            c = self.config
            try:
                self._renderer = mujoco.Renderer(self.model, c.render_height, c.render_width)
            except Exception as err:
                raise RuntimeError(
                    f"cannot create a MuJoCo renderer ({err}); on a machine without a display "
                    "set MUJOCO_GL=egl (or osmesa) before mujoco is first imported"
                ) from err
        return self._renderer

    def render_state(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """``[H, W, 3]`` uint8 of the model at (qpos, qvel)."""
        self._data.qpos[:] = qpos
        self._data.qvel[:] = qvel
        mujoco.mj_forward(self.model, self._data)
        return self.render_data(self._data)

    def render_data(self, data: mujoco.MjData) -> np.ndarray:
        renderer = self._get()
        renderer.update_scene(data, camera=self.camera)
        return renderer.render().copy()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
