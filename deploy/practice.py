"""FastRLAP's autonomous practice (Stachowicz et al. 2023) for the RC car.

From one slow demonstration lap (a scripted pure-pursuit driver) the car extracts a loop of
checkpoints every ``checkpoint_spacing`` metres of the driven path; then it practises alone:

* goal: the next checkpoint, reached within ``goal_radius``; all of them in order is a lap
  (timed from the first checkpoint to its next passage);
* reward: the car's velocity projected on the direction to the goal (m/s), minus
  ``failure_cost`` on a failure;
* failures: a crash (the car leaves the drivable width: in simulation it stops dead where it
  was, as against a wall) or being stuck (the last ``stuck_window`` positions within
  ``stuck_radius`` of their mean: 3 s in 0.3 m by default);
* after a failure, with ``recovery``, an automatic recovery instead of a human reset: reverse
  with a random steering angle held for ``recovery_steps`` control steps (1 s), then practice
  resumes; those steps are the supervisor's, not the policy's, and are not learned from.

The practice is a host env (``HostEnv``: one car, never reset physically; every
``episode_length`` steps is only a bookkeeping boundary, truncated), so ``robotrl train`` runs
it with the host loop (SAC with 10 critics and UTD 8, ``configs/fastrlap_rccar.yaml``) and
writes a run directory like every other run. Its per-step metrics (laps, lap times, crashes,
steps stuck, seconds recovering; and running figures: practice time, best lap so far, when the
first lap ended) are logged per chunk as ``train/env/*``.

The car is behind ``Car``: ``SimCar`` steps ``sims.rccar`` in process; ``RosCar``
(``deploy.car_bridge``, ``car: ros``) drives the same simulated car through ROS 2 topics, as a
robot's car would be driven; the practice's code is the same for both. Observations are the
car's own: goals in the body frame, body velocities, steering angle, last action, range rays;
no track knowledge.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any, NamedTuple, Protocol

import numpy as np

from robotrl.envs.host import HostStep
from robotrl.types import ArraySpec, EnvSpec, Field


class Reading(NamedTuple):
    """What the car reports after a control step (world frame, SI units)."""

    x: float
    y: float
    yaw: float
    vx: float  # body frame, forward
    vy: float  # body frame, left
    yaw_rate: float
    steer: float  # rad, the steering angle
    rays: np.ndarray  # [R] boundary distances / max range
    crashed: bool  # left the drivable width this step (the car stopped there)


class Car(Protocol):
    ctrl_dt: float
    num_rays: int

    def start(self) -> Reading: ...

    def step(self, action: np.ndarray) -> Reading: ...

    def demo_lap(self, speed: float) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class PracticeConfig:
    track: str = "oval"  # sims.rccar track of the simulated car
    car: str = "sim"  # sim: in process; ros: over ROS 2 topics (deploy.car_bridge)
    # A frozen encoder (``pretrain_encoder``'s .npz): the learner sees its features of the
    # observation instead of the observation ("" = the raw observation).
    encoder: str = ""
    demo_speed: float = 1.0  # m/s, the demonstration lap's speed target (slow)
    checkpoint_spacing: float = 2.0  # m of demonstrated path between checkpoints
    goal_radius: float = 1.0  # m, a checkpoint is reached within this distance
    goals_observed: int = 2  # the next goals in the observation (body frame)
    failure_cost: float = 5.0  # subtracted from the reward on a crash or when stuck
    stuck_window: int = 30  # positions (3 s at 10 Hz) ...
    stuck_radius: float = 0.3  # ... within this many metres of their mean: stuck
    recovery: bool = True  # automatic recovery after a failure (else the car stays put)
    recovery_steps: int = 10  # control steps of the recovery manoeuvre (1 s)
    recovery_throttle: float = -0.6  # reverse
    episode_length: int = 500  # bookkeeping window (truncation; the car is never reset)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.checkpoint_spacing <= 0 or self.goal_radius <= 0 or self.stuck_radius <= 0:
            raise ValueError("checkpoint_spacing, goal_radius and stuck_radius must be positive")
        if self.goal_radius >= self.checkpoint_spacing:
            raise ValueError("goal_radius must be below checkpoint_spacing")
        if self.car not in ("sim", "ros"):
            raise ValueError(f"car must be sim or ros, got {self.car!r}")
        if self.stuck_window < 2 or self.goals_observed < 1 or self.recovery_steps < 1:
            raise ValueError("stuck_window >= 2, goals_observed >= 1, recovery_steps >= 1")


class SimCar:
    """``sims.rccar`` in process, one car on one track, with walls: leaving the drivable width
    stops the car where it last was (its velocities zeroed) instead of ending an episode."""

    def __init__(self, track: str, seed: int = 0):
        import jax

        from sims.rccar import RCCar, RCCarConfig

        self.env = RCCar(
            RCCarConfig(tracks=(track,), use_rays=True, random_start=False, init_speed=0.0)
        )
        self.ctrl_dt = float(self.env.config.ctrl_dt)
        self.num_rays = int(self.env.config.num_rays)
        self._key = jax.random.PRNGKey(seed)
        self._step = jax.jit(self.env.step)
        self._pursuit = jax.jit(
            lambda s, v: self.env.pure_pursuit_action(s, max_speed=v, min_speed=0.5 * v)
        )
        self._read = jax.jit(self._reading_vector)  # one compiled call, one transfer a step
        self.state = None

    def _reading_vector(self, state):
        import jax.numpy as jnp

        car = state.physics.car
        pose = jnp.stack([car.x, car.y, car.psi, car.vx, car.vy, car.r, car.delta])
        rays = self.env.rays(state.physics) / self.env.config.ray_max_range
        return jnp.concatenate([pose, rays]).astype(jnp.float32)

    def _reading(self, crashed: bool) -> Reading:
        v = np.asarray(self._read(self.state))
        return Reading(*(float(x) for x in v[:7]), v[7:].copy(), crashed)

    def start(self) -> Reading:
        self.state = self.env.reset_to(self._key, 0, 0.0)
        return self._reading(False)

    def step(self, action: np.ndarray) -> Reading:
        before = self.state
        after = self._step(before, np.asarray(action, np.float32))
        crashed = bool(after.terminated)
        if crashed:  # against the wall: where it was, stopped
            car = before.physics.car.replace(
                vx=0.0 * before.physics.car.vx,
                vy=0.0 * before.physics.car.vy,
                r=0.0 * before.physics.car.r,
            )
            after = before.replace(physics=before.physics.replace(car=car))
        self.state = after
        return self._reading(crashed)

    def demo_lap(self, speed: float) -> np.ndarray:
        """Drives one lap with the scripted pure-pursuit driver at ``speed``; the path
        ``[T, 2]`` (m, world frame)."""
        self.start()
        path = [(float(self.state.physics.car.x), float(self.state.physics.car.y))]
        limit = int(10 * float(self.env.tracks.length[0]) / max(speed, 0.1) / self.ctrl_dt)
        for _ in range(limit):
            action = np.asarray(self._pursuit(self.state, speed))
            reading = self.step(action)
            path.append((reading.x, reading.y))
            if float(self.state.metrics["laps"]) >= 1:
                return np.asarray(path, np.float32)
        raise RuntimeError(f"the demonstration driver did not finish a lap in {limit} steps")


def checkpoints_from_path(path: np.ndarray, spacing: float) -> np.ndarray:
    """Points every ``spacing`` m along a closed demonstrated path ``[T, 2]`` (the first at
    ``spacing`` m from its start, the last at its start)."""
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    count = max(round(float(arc[-1]) / spacing), 2)
    targets = np.linspace(arc[-1] / count, arc[-1], count)
    x = np.interp(targets, arc, path[:, 0])
    y = np.interp(targets, arc, path[:, 1])
    return np.stack([x, y], axis=1).astype(np.float32)


def practice_spec(cfg: PracticeConfig, num_rays: int, ctrl_dt: float, features: int = 0) -> EnvSpec:
    """The practice's spec; with a frozen encoder (``features`` > 0) the observation is its
    ``features`` values."""
    goals = [
        Field(f"goal_{i}", 2, "m", "body", f"checkpoint {i} ahead (x forward, y left)")
        for i in range(cfg.goals_observed)
    ]
    layout = (
        *goals,
        Field("velocity", 3, "m/s, m/s, rad/s", "body", "vx, vy, yaw rate"),
        Field("steer", 1, "rad", "body", "steering angle"),
        Field("last_action", 2, "", "", "steering, throttle commanded last"),
        Field("rays", num_rays, "", "body", "boundary distances / max range, right to left"),
    )
    if features:
        layout = (Field("features", features, "", "", "frozen encoder of the observation"),)
    size = sum(f.size for f in layout)
    return EnvSpec(
        name="rccar_practice",
        obs=ArraySpec((size,)),
        action_low=(-1.0, -1.0),
        action_high=(1.0, 1.0),
        ctrl_dt=ctrl_dt,
        episode_length=cfg.episode_length,
        obs_layout=layout,
        action_layout=(
            Field("steering", 1, "", "body", "wheel angle / max steer, left positive"),
            Field("throttle", 1, "", "", "motor command, negative brakes then reverses"),
        ),
        safe_action=(0.0, -0.2),  # straight, braking
    )


class PracticeEnv:
    """The practice as a ``HostEnv`` of one car (see the module docstring)."""

    def __init__(self, cfg: PracticeConfig, num_envs: int = 1, car: Car | None = None):
        if num_envs != 1:
            raise ValueError(f"one car practises: num_envs must be 1, got {num_envs}")
        self.cfg, self.num_envs = cfg, 1
        if car is None and cfg.car == "ros":
            from deploy.car_bridge import RosCar

            car = RosCar()
        self.car = car if car is not None else SimCar(cfg.track, cfg.seed)
        self.encoder = Encoder.load(cfg.encoder) if cfg.encoder else None
        raw = practice_spec(cfg, self.car.num_rays, self.car.ctrl_dt)
        if self.encoder is not None and self.encoder.in_dim != raw.obs_dim:
            raise ValueError(
                f"encoder {cfg.encoder} reads {self.encoder.in_dim} values, the practice's "
                f"observation has {raw.obs_dim}"
            )
        features = self.encoder.out_dim if self.encoder is not None else 0
        self.spec = practice_spec(cfg, self.car.num_rays, self.car.ctrl_dt, features)
        self.rng = np.random.default_rng(cfg.seed)
        self.checkpoints: np.ndarray | None = None
        self.reading: Reading | None = None

    # --- HostEnv ------------------------------------------------------------------------------
    def reset(self, seed: int) -> np.ndarray:
        """The first call drives the demonstration lap and starts practising; later calls (a
        resumed run) continue from wherever the car is."""
        if self.checkpoints is None:
            self.rng = np.random.default_rng(seed)
            path = self.car.demo_lap(self.cfg.demo_speed)
            self.checkpoints = checkpoints_from_path(path, self.cfg.checkpoint_spacing)
            self.reading = self.car.start()
            self.goal = 0
            self.time = 0.0
            self.lap_start: float | None = None
            self.positions: collections.deque = collections.deque(maxlen=self.cfg.stuck_window)
            self.last_action = np.zeros(2, np.float32)
            self.steps = 0
            self.totals = collections.Counter()
            self.best_lap = math.nan
            self.first_lap_at = math.nan
        return self._obs()[None]

    def step(self, action: np.ndarray) -> HostStep:
        cfg = self.cfg
        action = np.clip(np.asarray(action, np.float32).reshape(2), -1.0, 1.0)
        r = self.car.step(action)
        self.last_action = action
        self.time += self.car.ctrl_dt
        self.steps += 1
        metrics = {
            "lap": 0.0,
            "lap_time": math.nan,
            "crash": float(r.crashed),
            "stuck": 0.0,
            "recovering_s": 0.0,
        }
        # Progress toward the goal, then goals reached.
        goal = self.checkpoints[self.goal]
        heading = goal - np.array([r.x, r.y])
        direction = heading / max(float(np.linalg.norm(heading)), 1e-6)
        c, s = math.cos(r.yaw), math.sin(r.yaw)
        v_world = np.array([c * r.vx - s * r.vy, s * r.vx + c * r.vy])
        reward = float(v_world @ direction)
        while np.linalg.norm(self.checkpoints[self.goal] - [r.x, r.y]) < cfg.goal_radius:
            self.goal = (self.goal + 1) % len(self.checkpoints)
            if self.goal == 1:  # passed checkpoint 0: a lap ends (and the next begins) here
                if self.lap_start is not None:
                    lap = self.time - self.lap_start
                    metrics["lap"], metrics["lap_time"] = 1.0, lap
                    self.best_lap = lap if math.isnan(self.best_lap) else min(self.best_lap, lap)
                    if math.isnan(self.first_lap_at):
                        self.first_lap_at = self.time
                self.lap_start = self.time
        # Failures: a crash, or stuck.
        self.positions.append((r.x, r.y))
        window = np.asarray(self.positions)
        stuck = len(window) == cfg.stuck_window and bool(
            np.max(np.linalg.norm(window - window.mean(0), axis=1)) < cfg.stuck_radius
        )
        metrics["stuck"] = float(stuck)
        if r.crashed or stuck:
            reward -= cfg.failure_cost
            if cfg.recovery:
                r = self._recover()
                metrics["recovering_s"] = cfg.recovery_steps * self.car.ctrl_dt
        self.reading = r
        for k in ("lap", "crash", "stuck"):
            self.totals[k] += metrics[k]
        truncated = self.steps % cfg.episode_length == 0
        obs = self._obs()[None]
        metrics["speed"] = math.hypot(r.vx, r.vy)
        metrics["goal"] = float(self.goal)
        # Running figures (NaN until they exist): the practice's clock, recovery included.
        metrics["practice_s"] = self.time
        metrics["best_lap_time"] = self.best_lap
        metrics["first_lap_at_s"] = self.first_lap_at
        return HostStep(
            obs=obs,
            reward=np.array([reward], np.float32),
            terminated=np.zeros(1, bool),
            truncated=np.array([truncated]),
            final_obs=obs,
            metrics={k: np.array([v], np.float32) for k, v in metrics.items()},
        )

    def close(self) -> None:
        close = getattr(self.car, "close", None)
        if close is not None:
            close()

    # --- pieces -------------------------------------------------------------------------------
    def _recover(self) -> Reading:
        """Reverse with a random steering angle held for ``recovery_steps``."""
        steer = float(self.rng.uniform(-1.0, 1.0))
        action = np.array([steer, self.cfg.recovery_throttle], np.float32)
        r = self.reading
        for _ in range(self.cfg.recovery_steps):
            r = self.car.step(action)
            self.time += self.car.ctrl_dt
        self.positions.clear()
        self.last_action = action
        return r

    def _obs(self) -> np.ndarray:
        raw = self.raw_obs()
        return raw if self.encoder is None else self.encoder(raw)

    def raw_obs(self) -> np.ndarray:
        """The car's own observation (before any frozen encoder)."""
        r = self.reading
        c, s = math.cos(r.yaw), math.sin(r.yaw)
        goals = []
        for i in range(self.cfg.goals_observed):
            g = self.checkpoints[(self.goal + i) % len(self.checkpoints)] - [r.x, r.y]
            goals += [c * g[0] + s * g[1], -s * g[0] + c * g[1]]
        return np.concatenate(
            [goals, [r.vx, r.vy, r.yaw_rate, r.steer], self.last_action, r.rays]
        ).astype(np.float32)


class Encoder:
    """A frozen feature map in numpy: dense + activation layers (``w0, b0, w1, b1, ...``)."""

    def __init__(self, weights: list[tuple[np.ndarray, np.ndarray]], activation: str):
        from policies.bundle import activation as act

        self.weights, self.activation = weights, activation
        self._act = lambda x: act(activation, x)
        self.in_dim, self.out_dim = weights[0][0].shape[0], weights[-1][0].shape[1]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        for w, b in self.weights:
            x = self._act(x @ w + b).astype(np.float32)
        return x

    def save(self, path: str) -> None:
        arrays = {f"w{i}": w for i, (w, _) in enumerate(self.weights)}
        arrays |= {f"b{i}": b for i, (_, b) in enumerate(self.weights)}
        np.savez(path, activation=np.array(self.activation), **arrays)

    @classmethod
    def load(cls, path: str) -> Encoder:
        try:
            with np.load(path, allow_pickle=False) as data:
                n = sum(1 for k in data.files if k.startswith("w"))
                weights = [(data[f"w{i}"], data[f"b{i}"]) for i in range(n)]
                activation = str(data["activation"])
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"{path} is not a practice encoder ({err})") from None
        return cls(weights, activation)


def driving_data(tracks: tuple[str, ...], steps: int, seed: int = 0, noise: float = 0.3):
    """ "Other driving": the scripted driver, with Gaussian action noise, practising on
    ``tracks`` (``steps`` each), as ``Transition`` arrays in the practice's observation space."""
    from robotrl.types import Transition

    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("obs", "action", "reward", "next_obs")}
    for track in tracks:
        env = PracticeEnv(PracticeConfig(track=track, seed=seed))
        obs = env.reset(seed)[0]
        car = env.car
        for _ in range(steps):
            action = np.asarray(car._pursuit(car.state, 2.0), np.float32)
            action = np.clip(action + noise * rng.standard_normal(2), -1, 1).astype(np.float32)
            out = env.step(action)
            for k, v in zip(rows, (obs, action, out.reward[0], out.obs[0]), strict=True):
                rows[k].append(v)
            obs = out.obs[0]
    n = len(rows["reward"])
    return Transition(
        obs=np.stack(rows["obs"]),
        action=np.stack(rows["action"]),
        reward=np.asarray(rows["reward"], np.float32),
        terminated=np.zeros(n, bool),
        truncated=np.zeros(n, bool),
        next_obs=np.stack(rows["next_obs"]),
        extras=(),
    )


def pretrain_encoder(
    tracks: tuple[str, ...] = ("bean", "hairpin", "chicane"),
    steps_per_track: int = 3000,
    iql_steps: int = 5000,
    seed: int = 0,
) -> tuple[Encoder, dict]:
    """FastRLAP's pretrained encoder: IQL (``robotrl.algos.iql``) on driving data from other
    tracks (``driving_data``); the encoder is its value network's hidden layers, to be kept
    frozen while the car practises on a new track. Returns ``(encoder, IQL metrics)``."""
    import jax

    from robotrl.algos import iql
    from robotrl.train.rl100 import fit_critic  # IQL on a Transition batch, scanned

    data = driving_data(tracks, steps_per_track, seed)
    spec = PracticeEnv(PracticeConfig(track=tracks[0])).spec  # the raw observation's
    cfg = iql.IQLConfig(critic_hidden=(256, 256), activation="relu")
    arrays = jax.tree.map(jax.numpy.asarray, data)
    critic, metrics = fit_critic(spec, arrays, cfg, iql_steps, jax.random.PRNGKey(seed))
    state = critic.state
    layers = state.value_params["params"]
    names = sorted(layers, key=lambda k: int(k.split("_")[1]))[:-1]  # hidden layers only
    weights = [
        (np.asarray(layers[k]["kernel"], np.float32), np.asarray(layers[k]["bias"], np.float32))
        for k in names
    ]
    return Encoder(weights, cfg.activation), metrics


def make_practice_env(cfg: PracticeConfig, num_envs: int, ranges: Any = None) -> PracticeEnv:
    """The registry's native backend (``ranges``: no randomisation of a real car)."""
    return PracticeEnv(cfg, num_envs)


__all__ = [
    "Car",
    "Encoder",
    "PracticeConfig",
    "PracticeEnv",
    "Reading",
    "SimCar",
    "checkpoints_from_path",
    "driving_data",
    "make_practice_env",
    "practice_spec",
    "pretrain_encoder",
]


def main(argv: list[str] | None = None) -> int:
    """``python -m deploy.practice pretrain-encoder --out encoder.npz``: the frozen encoder for
    ``env.options.encoder`` (IQL on the scripted driver's noisy driving of other tracks)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m deploy.practice")
    sub = parser.add_subparsers(dest="command", required=True)
    pre = sub.add_parser("pretrain-encoder", help="IQL on other driving -> a frozen encoder")
    pre.add_argument("--out", required=True, help="the encoder file (.npz)")
    pre.add_argument("--tracks", nargs="+", default=["bean", "hairpin", "chicane"])
    pre.add_argument("--steps", type=int, default=3000, help="driving steps per track")
    pre.add_argument("--iql-steps", type=int, default=5000)
    pre.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    encoder, metrics = pretrain_encoder(tuple(args.tracks), args.steps, args.iql_steps, args.seed)
    encoder.save(args.out)
    print(f"encoder {encoder.in_dim} -> {encoder.out_dim} written to {args.out}; IQL {metrics}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
