"""An experiment: a validated config turned into a training session, a run directory, and
the train / resume / evaluate procedures the CLI exposes.

YAML shape of a preset (every key optional except what differs from the defaults)::

    name: sac_pendulum
    seed: 0
    env: {name: pendulum, options: {mass: 1.0}}
    algo: {name: sac, critic: {kind: hl_gauss}}
    train: {total_steps: 20000, eval_every: 5000}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from robotrl import data, registry
from robotrl.buffers import replay
from robotrl.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from robotrl.envs import ObsNormalization, make_eval_env, make_training_env
from robotrl.envs.host import DMControlEnv, GymnasiumEnv, HostRewardScale
from robotrl.envs.randomize import make_randomizer, select_set
from robotrl.runs import CheckpointStore, MetricsLog, RunDir, RunDirError, default_run_path
from robotrl.runs.plot import learning_curve
from robotrl.train.config import TrainConfig
from robotrl.train.evaluate import summarize_eval
from robotrl.train.host_loop import HostSession
from robotrl.train.scan_loop import Hyper, ScanSession, check_chunking
from robotrl.train.session import NonFiniteError, run_training
from robotrl.types import Algorithm, EnvSpec


@dataclasses.dataclass(frozen=True, kw_only=True)
class EnvConfig:
    name: str = "pendulum"  # a sims env, or gym/<id>, or dmc/<domain>-<task>
    backend: str = "auto"  # "jax" (functional, scan loop) | "native" (host loop) | "auto"
    episode_length: int | None = None  # None: the env's own
    action_repeat: int = 1  # functional envs only
    normalize_obs: bool = False  # running observation normalisation (functional envs)
    randomize: str = ""  # a named parameter set of the env (e.g. "train"), drawn at every reset
    reward_range: tuple[float, float] | None = None  # host envs: lets classification critics
    # derive their value range
    reward_scale: float = 1.0  # training rewards and reward_range times this (the critic's
    # units, and train/episode_return's); evaluation returns stay in the task's own units
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # env-specific settings


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    name: str = "run"  # preset name, used for the run directory
    seed: int = 0
    env: EnvConfig = EnvConfig()
    algo_name: str = "sac"
    algo: Any = None  # the algorithm's own config dataclass
    train: TrainConfig = TrainConfig()


def parse_config(data: dict[str, Any]) -> ExperimentConfig:
    """Validates plain config data (a preset after overrides) into an ``ExperimentConfig``."""
    data = dict(data)
    algo_data = data.pop("algo", {}) or {}
    if not isinstance(algo_data, dict):
        raise ConfigError("algo: expected a mapping with at least 'name'")
    algo_data = dict(algo_data)
    algo_name = algo_data.pop("name", "sac")
    if algo_name not in registry.ALGORITHMS:
        raise ConfigError(
            f"algo.name: unknown algorithm {algo_name!r}; choose from {sorted(registry.ALGORITHMS)}"
        )
    algo_cls, _ = registry.ALGORITHMS[algo_name].load()
    if "algo_name" in data:
        raise ConfigError("unknown config key 'algo_name' (use algo.name)")
    cfg = from_dict(ExperimentConfig, data)
    algo_cfg = from_dict(algo_cls, algo_data, "algo")
    env_name = cfg.env.name
    if not registry.is_host_env(env_name) and env_name not in registry.ENVS:
        raise ConfigError(
            f"env.name: unknown env {env_name!r}; choose from {sorted(registry.ENVS)} or "
            "gym/<id>, dmc/<domain>-<task>"
        )
    try:
        native = registry.resolve_backend(env_name, cfg.env.backend) == "native"
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if native and cfg.env.action_repeat != 1:
        raise ConfigError("env.action_repeat needs the jax backend (env.backend=jax)")
    if (cfg.train.dataset or cfg.train.init_from) and (native or cfg.env.normalize_obs):
        raise ConfigError(
            "train.dataset and train.init_from train in the scan loop: they need "
            "env.backend=jax and no env.normalize_obs"
        )
    if native and cfg.train.num_seeds != 1:
        raise ConfigError("train.num_seeds > 1 needs the jax backend (one program, vmapped)")
    scale = cfg.env.reward_scale
    if not (np.isfinite(scale) and scale > 0):
        raise ConfigError(f"env.reward_scale: expected a positive number, got {scale!r}")
    if scale != 1 and cfg.train.dataset:
        raise ConfigError(
            "env.reward_scale scales env rewards, not a dataset's: train.dataset needs "
            "env.reward_scale=1"
        )
    if registry.is_host_env(env_name) and cfg.env.randomize:
        raise ConfigError(f"env.randomize: {env_name} has no parameter sets")
    if cfg.env.randomize and not registry.is_host_env(env_name):
        sets = registry.ENVS[env_name].load()[2]
        if cfg.env.randomize not in sets:
            raise ConfigError(
                f"env.randomize: {env_name} has no parameter set {cfg.env.randomize!r}; "
                f"choose from {sorted(sets)}"
            )
    return dataclasses.replace(cfg, algo_name=algo_name, algo=algo_cfg)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    return parse_config(apply_overrides(load_yaml(path), overrides))


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    out = to_dict(cfg)
    algo = {"name": out.pop("algo_name"), **out.pop("algo")}
    return {
        "name": out["name"],
        "seed": out["seed"],
        "env": out["env"],
        "algo": algo,
        "train": out["train"],
    }


def _host_env_factory(cfg: EnvConfig) -> Callable[[int], Any]:
    """``make(num_envs) -> HostEnv`` for gym/, dmc/ and the native backend of registered envs."""
    name = cfg.name
    if name in registry.ENVS:
        env_cls, _, sets = registry.ENVS[name].load()
        env_cfg = from_dict(env_cls, cfg.options, "env.options")
        if cfg.episode_length is not None:
            env_cfg = dataclasses.replace(env_cfg, episode_length=cfg.episode_length)
        ranges = select_set(sets, cfg.randomize) if cfg.randomize else None
        make = registry.ENVS[name].native()
        return lambda n: make(env_cfg, n, ranges)
    if name.startswith("gym/"):
        kwargs = dict(cfg.options)
        if cfg.episode_length is not None:
            kwargs["max_episode_steps"] = cfg.episode_length
        return lambda n: GymnasiumEnv(name[4:], n, reward_range=cfg.reward_range, **kwargs)
    domain, _, task = name[4:].partition("-")
    if not task:
        raise ConfigError(f"env.name: dm_control envs are named dmc/<domain>-<task>, got {name!r}")
    return lambda n: DMControlEnv(domain, task, n, **cfg.options)


def make_functional_env(cfg: EnvConfig) -> tuple[Any, Callable[..., Any] | None]:
    """The unwrapped functional env and the randomisation of its ``cfg.randomize`` set."""
    env_cls, make_env, sets = registry.ENVS[cfg.name].load()
    env_cfg = from_dict(env_cls, cfg.options, "env.options")
    randomize = make_randomizer(select_set(sets, cfg.randomize)) if cfg.randomize else None
    return make_env(env_cfg), randomize


class Experiment:
    """A config with its env spec, algorithm and (lazily built) training session."""

    def __init__(self, cfg: ExperimentConfig):
        self.cfg = cfg
        _, make_algo = registry.ALGORITHMS[cfg.algo_name].load()
        self.backend = registry.resolve_backend(cfg.env.name, cfg.env.backend)
        if self.backend == "native":
            self._make_host = _host_env_factory(cfg.env)
            try:
                self.host_env = self.training_env(cfg.train.num_envs)
            except Exception as err:  # gymnasium/dm_control raise many types for a bad name
                raise ConfigError(f"env.name: cannot make {cfg.env.name!r}: {err}") from None
            self.spec: EnvSpec = self.host_env.spec
        else:
            self.base_env, self._randomize = make_functional_env(cfg.env)
            self.spec = make_training_env(
                self.base_env,
                1,
                episode_length=cfg.env.episode_length,
                action_repeat=cfg.env.action_repeat,
                reward_scale=cfg.env.reward_scale,
            ).spec
        try:
            self.algo: Algorithm = make_algo(cfg.algo, self.spec)
            check_chunking(self.algo, cfg.train)
        except ValueError as err:
            raise ConfigError(f"algo: {err}") from None

    @property
    def is_host(self) -> bool:
        return self.backend == "native"

    def resolved_config(self) -> ExperimentConfig:
        """The config with the backend this machine chose, as a run directory records it."""
        env = dataclasses.replace(self.cfg.env, backend=self.backend)
        return dataclasses.replace(self.cfg, env=env)

    def _episodes(self) -> dict[str, Any]:
        env = self.cfg.env
        return dict(
            episode_length=env.episode_length,
            action_repeat=env.action_repeat,
            randomize=self._randomize,
        )

    def training_env(self, num_envs: int):
        """A batch of ``num_envs`` auto-resetting envs as the run trains in: functional
        (``make_training_env``), or host envs on the native backend; rewards times
        ``env.reward_scale`` (evaluation envs keep the task's units)."""
        scale = self.cfg.env.reward_scale
        if self.is_host:
            env = self._make_host(num_envs)
            return env if scale == 1 else HostRewardScale(env, scale)
        return make_training_env(self.base_env, num_envs, reward_scale=scale, **self._episodes())

    def session(self, hyper: Hyper | None = None):
        """The training session; ``hyper`` (``robotrl.train.sweep``): numeric hyperparameters
        vmapped beside the seeds (scan loop only)."""
        cfg = self.cfg
        if self.is_host:
            return HostSession(
                self.host_env,
                self._make_host,
                self.algo,
                cfg.train,
                cfg.seed,
                normalize_obs=cfg.env.normalize_obs,
            )
        train_env = self.training_env(cfg.train.num_envs)
        eval_env = make_eval_env(self.base_env, max(cfg.train.eval_episodes, 1), **self._episodes())
        if cfg.env.normalize_obs:
            train_env = ObsNormalization(train_env)
            eval_env = ObsNormalization(eval_env, update=False)
        dataset = None
        if cfg.train.dataset:
            dataset = offline_data(cfg.train.dataset, self.spec, extras=cfg.train.offline)
        return ScanSession(
            train_env, eval_env, self.algo, cfg.train, cfg.seed, dataset, hyper=hyper
        )


def offline_data(path: str, spec: EnvSpec, extras: bool = True) -> replay.ReplayState:
    """A dataset on the device as a full one-env replay buffer ``[N, 1, ...]``; without
    ``extras`` (Monte-Carlo returns), for mixing into an online buffer's batches."""
    dataset = data.load(path, spec)
    t = dataset.transitions
    if not extras:
        t = t._replace(extras=())
    rows = jax.tree.map(lambda x: jnp.asarray(x)[:, None], t)
    n = len(dataset)
    return replay.ReplayState(rows, jnp.int32(0), jnp.int32(n))


def _restore(session, run: RunDir, keep: int) -> tuple[CheckpointStore, int]:
    store = CheckpointStore(run.checkpoints, keep=keep)
    step = store.latest_step()
    if step is None:
        raise RunDirError(f"{run.path} has no checkpoint to resume from")
    tree, _ = store.restore(session.abstract_state(), step)
    session.load_state(tree)
    return store, step


def train(
    cfg: ExperimentConfig | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    overrides: Sequence[str] = (),
    progress: Callable[..., None] | None = None,
    on_log: Sequence[Callable[[int, dict[str, float]], None]] = (),
) -> tuple[RunDir, dict[str, float]]:
    """Trains a new run (``cfg``) or resumes one (``resume``); returns the run and its last row.

    Everything that can fail on bad input (config, env name, checkpoint) fails before anything in
    an existing run directory is written.
    """
    # A multi-host run (robotrl.parallel.init_distributed): every process trains its part and
    # joins the checkpoint saves; the first process alone writes the config and the metrics.
    primary = jax.process_index() == 0
    if jax.process_count() > 1 and resume is None and out is None:
        raise ConfigError("a multi-host run needs --out: every process saves to one run directory")
    if resume is not None:
        run = RunDir.open(resume)
        bad = [o for o in overrides if not o.startswith("train.total_steps=")]
        if bad:
            raise ConfigError(f"--resume accepts only train.total_steps overrides, got {bad[0]!r}")
        cfg = parse_config(apply_overrides(run.config(), overrides))
        session = Experiment(cfg).session()
        store, step = _restore(session, run, cfg.train.keep_checkpoints)
        log = MetricsLog(run, resume_step=step) if primary else None
    else:
        assert cfg is not None
        exp = Experiment(cfg)
        session = exp.session()
        cfg = exp.resolved_config()  # the run records the backend it trained with
        if cfg.train.init_from:
            start_from(session, cfg.train.init_from)
        path = out or default_run_path(cfg.name)
        run = RunDir.create(path, config_to_dict(cfg), cfg.seed) if primary else RunDir(path)
        store = CheckpointStore(run.checkpoints, keep=cfg.train.keep_checkpoints)
        log = MetricsLog(run) if primary else None
    callbacks = [log, *on_log] if log is not None else list(on_log)
    try:
        row = run_training(
            session, cfg.train, on_log=callbacks, checkpointer=store, progress=progress
        )
    except NonFiniteError as err:
        kept = store.latest_step()
        detail = (
            f"the last good checkpoint (step {kept}) is kept in {run.checkpoints}"
            if kept is not None
            else f"no checkpoint was written; metrics are in {run.path}"
        )
        raise NonFiniteError(err.step, err.name, detail) from None
    finally:
        store.close()
        if log is not None:
            log.close()
        if log is not None and log.rows:
            learning_curve({cfg.name: log.rows}, run.path / "learning_curve.png", title=cfg.name)
    return run, row


def start_from(session: Any, run_path: str | Path) -> None:
    """Gives every seed of ``session`` the algorithm state of ``run_path``'s latest checkpoint
    (fine-tuning from a pretrained run); the networks must match."""
    from robotrl.train.scan_loop import select_seed

    source = restore_run(run_path).algo_state
    shapes = lambda t: jax.tree.map(lambda x: (x.shape, str(x.dtype)), t)
    if shapes(source) != shapes(select_seed(session.state, 0).algo):
        raise ConfigError(
            f"train.init_from: the networks of {run_path} do not match this config's "
            "(algorithm, layer sizes, critics, layer norm must be the same)"
        )
    session.set_algo_state(source)


class RestoredRun(NamedTuple):
    """A run's experiment, with its first seed's algorithm state from a checkpoint."""

    run: RunDir
    exp: Experiment
    session: Any
    algo_state: Any
    obs_stats: Any  # the run's observation statistics (first seed), or None
    step: int | None  # env steps of the checkpoint


def restore_run(
    run_path: str | Path,
    step: int | None = None,
    env_overrides: Sequence[str] = (),
    eval_episodes: int | None = None,
) -> RestoredRun:
    """Restores ``run_path``'s checkpoint ``step`` (default the latest); ``env_overrides``
    (``env.*`` only) change the env the session is built with, never the policy;
    ``eval_episodes`` sizes the session's evaluation batch."""
    from robotrl.train.scan_loop import select_seed

    run = RunDir.open(run_path)
    bad = [o for o in env_overrides if not o.startswith("env.")]
    if bad:
        raise ConfigError(f"--set changes the env only (env.*), got {bad[0]!r}")
    cfg = parse_config(apply_overrides(run.config(), list(env_overrides)))
    if eval_episodes is not None:
        train = dataclasses.replace(cfg.train, eval_episodes=eval_episodes)
        cfg = dataclasses.replace(cfg, train=train)
    exp = Experiment(cfg)
    session = exp.session()
    store = CheckpointStore(run.checkpoints, read_only=True)
    try:
        tree, meta = store.restore(session.abstract_state(), step)
    finally:
        store.close()
    session.load_state(tree)
    if exp.is_host:
        algo_state, stats = session.algo_state, session.obs_stats()
    else:
        algo_state = select_seed(session.state, 0).algo
        stats = session.obs_stats()
        stats = None if stats is None else jax.tree.map(lambda x: x[0], stats)
    return RestoredRun(run, exp, session, algo_state, stats, meta.get("env_steps"))


def evaluate_run(
    run_path: str | Path,
    episodes: int = 10,
    step: int | None = None,
    seed: int = 123,
    randomize: str | None = None,
    env_overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Restores a run's checkpoint and evaluates the deterministic policy (every seed);
    ``randomize`` names a parameter set to evaluate under (e.g. a held-out one), and
    ``env_overrides`` (``env.options.tracks=[hook]``...) change the env, never the policy."""
    overrides = [*env_overrides]
    if randomize is not None:
        overrides.append(f"env.randomize={randomize}")
    restored = restore_run(run_path, step, overrides, eval_episodes=episodes)
    result = restored.session.evaluate(seed)
    return {
        "run": str(restored.run.path),
        "step": restored.step,
        "episodes": episodes,
        "randomize": restored.exp.cfg.env.randomize,
        "returns": result.returns.tolist(),
        **summarize_eval(result),
        **(
            {"success_rate_per_seed": np.asarray(result.success).mean(axis=-1).tolist()}
            if result.success is not None
            else {}
        ),
    }


def evaluate_decision_intervals(
    run_path: str | Path,
    intervals: Sequence[int],
    episodes: int = 10,
    step: int | None = None,
    seed: int = 123,
    reference: float | None = None,
) -> dict[str, Any]:
    """Returns of a run's deterministic policy deciding every k steps of the task's own time
    step (open loop in between, ``evaluate.every_k_steps``), for each k of ``intervals``, and
    the FAS. A run trained with ``env.action_repeat`` is evaluated on the task without it, so
    every policy of a task is measured on the same episodes. FAS normalises returns between a
    uniform random policy's (floor) and ``reference`` (default: this policy's best return over
    the intervals)."""
    from robotrl.train.evaluate import frequency_averaged_score, make_evaluator

    if not intervals or min(intervals) < 1:
        raise ConfigError("--decision-intervals: positive integers, e.g. 1,2,4,8,16")
    restored = restore_run(run_path, step)
    exp = restored.exp
    if exp.is_host:
        raise ConfigError("--decision-intervals evaluates scan-loop (jax backend) runs")
    env = exp.cfg.env
    length = None if env.episode_length is None else env.episode_length * env.action_repeat
    eval_env = make_eval_env(exp.base_env, episodes, episode_length=length)
    if env.normalize_obs:
        eval_env = ObsNormalization(eval_env, update=False)
    steps = eval_env.spec.episode_length
    session = restored.session
    algo_states = session.state.algo  # [S, ...]
    stats = session.obs_stats()
    keys = jax.random.split(jax.random.PRNGKey(seed), session.num_seeds)
    returns = {}
    for k in intervals:
        evaluate = jax.jit(jax.vmap(make_evaluator(eval_env, exp.algo, steps, k)))
        returns[k] = np.asarray(evaluate(algo_states, keys, stats)[0])  # [S, B]
    spec = eval_env.spec
    low, high = np.asarray(spec.action_low), np.asarray(spec.action_high)
    random = evaluate_random(eval_env, steps, low, high, seed, stats)
    means = {k: float(r.mean()) for k, r in returns.items()}
    ceiling = reference if reference is not None else max(means.values())
    per_seed = [
        frequency_averaged_score(
            list(intervals), [float(returns[k][i].mean()) for k in intervals], random, ceiling
        )
        for i in range(session.num_seeds)
    ]
    return {
        "run": str(restored.run.path),
        "step": restored.step,
        "episodes": episodes,
        "intervals": list(intervals),
        "return_mean": [means[k] for k in intervals],
        "return_per_seed": [returns[k].mean(axis=-1).tolist() for k in intervals],
        "random_return": random,
        "reference_return": ceiling,
        "fas": float(np.mean(per_seed)),
        "fas_per_seed": per_seed,
    }


def evaluate_random(
    eval_env: Any, steps: int, low: np.ndarray, high: np.ndarray, seed: int, stats: Any = None
) -> float:
    """Mean return of uniform random actions on ``eval_env`` (the floor of a normalised
    score)."""
    from robotrl.train.evaluate import play_episodes
    from robotrl.types import Policy, no_carry

    def act(params, carry, obs, key):
        batch = jax.tree.leaves(obs)[0].shape[:-1]
        return jax.random.uniform(key, (*batch, len(low)), minval=low, maxval=high), carry, ()

    first = None if stats is None else jax.tree.map(lambda x: x[0], stats)
    play = jax.jit(play_episodes(eval_env, steps), static_argnums=0)
    returns = play(Policy(no_carry, act), (), jax.random.PRNGKey(seed), first)[0]
    return float(np.mean(returns))
