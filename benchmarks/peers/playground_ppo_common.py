"""Shared code of the MuJoCo Playground / Brax PPO peer scripts.

Used by `playground_ppo_cartpole.py` (time to a balanced pole + throughput) and
`playground_ppo_steps.py` (pure training throughput). Runs inside the venv made by
`setup_playground_env.sh` (jax/jaxlib 0.9.2, flax 0.12.6, brax 0.14.2, playground 0.2.0,
mujoco/mujoco-mjx 3.17.0); reuses `_peer_common.py` for the JSON/stdout contract.

How training is driven (read from brax 0.14.2 `brax/training/agents/ppo/train.py`):
  * one *training step* = `batch_size * num_minibatches // num_envs` sequential unrolls of
    `unroll_length` steps of all `num_envs` envs (= batch_size * unroll_length *
    num_minibatches env steps; 983,040 with Playground's tuned CartpoleBalance config),
    then `num_updates_per_batch` passes of `num_minibatches` Adam steps over that data;
  * one *epoch* = `ceil(num_timesteps / ((num_evals - 1) * E * max(num_resets_per_eval, 1)))`
    training steps inside one pmapped `lax.scan`; after each epoch brax resets all envs
    when `num_resets_per_eval > 0`, and after `max(num_resets_per_eval, 1)` epochs it runs
    an evaluation and calls `progress_fn(env_steps, metrics)`;
  * `progress_fn` may raise: the exception leaves `ppo.train` (this is how the scripts stop
    at the threshold or before the time limit).

We set `num_resets_per_eval = 1` and `num_evals = ceil(num_timesteps / E) + 1`, so that an
epoch is exactly ONE training step, the envs are reset after every training step and an
evaluation follows every training step. With Playground's tuned config
(num_timesteps 60M, num_evals 10, num_resets_per_eval 10) brax also runs 1 training step
per epoch and resets after each of them, so the training itself (data, updates, RNG
stream) is the same; only the evaluations are 10x more frequent (the tuned schedule
evaluates every 10 training steps = every 9.8M env steps, i.e. ~20 min on this CPU).
"""

from __future__ import annotations

import inspect
import math
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _peer_common as pc  # noqa: E402

PEER = "playground"
VERSION_PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "brax",
    "playground",
    "mujoco",
    "mujoco-mjx",
    "numpy",
    "warp-lang",
    "ml-collections",
)


def set_platform(platform: str) -> None:
    """Must run before jax is imported. Default: the CPU (this benchmark's subject)."""
    if platform and platform != "default":
        os.environ["JAX_PLATFORMS"] = platform
    os.environ.setdefault("MUJOCO_GL", "egl")  # never used (no rendering); Playground's choice


class StopTraining(Exception):
    """Raised from progress_fn to end brax's ppo.train early."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Watchdog:
    """Hard timeout that works even while XLA holds the main thread (SIGALRM only fires
    between Python bytecodes, i.e. possibly minutes late inside a long jitted epoch):
    a daemon thread emits the failure JSON (with what was measured so far) and exits 2."""

    def __init__(self, seconds: float, benchmark: str, partial_fn):
        self.lock = threading.Lock()
        self.done = False
        self.seconds = seconds
        self.benchmark = benchmark
        self.partial_fn = partial_fn
        if seconds and seconds > 0:
            t = threading.Thread(target=self._run, daemon=True)
            t.start()

    def _run(self):
        time.sleep(self.seconds)
        with self.lock:
            if self.done:
                return
            self.done = True
            out = {}
            try:
                out = dict(self.partial_fn() or {})
            except Exception as e:  # pragma: no cover
                out = {"partial_error": repr(e)}
            out.update(
                peer=PEER,
                benchmark=self.benchmark,
                ok=False,
                error=f"hard timeout of {self.seconds:.0f} s reached",
            )
            pc.log(f"[{PEER}/{self.benchmark}] FAILED: hard timeout {self.seconds:.0f} s")
            pc.emit_json(out)
            try:
                sys.stderr.flush()
            finally:
                os._exit(2)

    def finish(self) -> bool:
        """Call before emitting the normal JSON; False if the watchdog already fired."""
        with self.lock:
            if self.done:
                return False
            self.done = True
            return True


def load_env_and_config(env_name: str, impl: str):
    """Playground env (train + eval instance, as Playground's train_jax_ppo.py does) and
    Playground's tuned Brax PPO config for it."""
    from mujoco_playground import registry
    from mujoco_playground.config import dm_control_suite_params

    overrides = {"impl": impl}
    default_impl = str(registry.get_default_config(env_name).get("impl", "?"))
    env_cfg = registry.get_default_config(env_name)
    env = registry.load(env_name, config=env_cfg, config_overrides=overrides)
    eval_env = registry.load(
        env_name, config=registry.get_default_config(env_name), config_overrides=overrides
    )
    ppo_cfg = dm_control_suite_params.brax_ppo_config(env_name, impl)
    return env, eval_env, env_cfg, ppo_cfg, default_impl


def env_definition(env, env_cfg, impl: str) -> dict:
    """What the task is, read off the loaded env (for the robotrl side to replicate)."""
    import mujoco

    m = env.mj_model
    integ = {0: "Euler", 1: "RK4", 2: "implicit", 3: "implicitfast"}.get(
        int(m.opt.integrator), str(int(m.opt.integrator))
    )
    d = {
        "class": f"{type(env).__module__}.{type(env).__name__}",
        "xml": os.path.relpath(str(env.xml_path), os.path.dirname(os.path.dirname(mujoco.__file__)))
        if hasattr(env, "xml_path")
        else None,
        "impl": impl,
        "ctrl_dt": float(env_cfg.ctrl_dt),
        "sim_dt": float(env_cfg.sim_dt),
        "n_substeps": int(env.n_substeps),
        "episode_length": int(env_cfg.episode_length),
        "action_repeat_env_cfg": int(env_cfg.action_repeat),
        "observation_size": env.observation_size,
        "action_size": int(env.action_size),
        "opt": {
            "timestep": float(m.opt.timestep),
            "integrator": integ,
            "iterations": int(m.opt.iterations),
            "ls_iterations": int(m.opt.ls_iterations),
            "disableflags": int(m.opt.disableflags),
        },
        "nq": int(m.nq),
        "nv": int(m.nv),
        "nu": int(m.nu),
    }
    return d


def network_description() -> dict:
    """Brax's default PPO networks (Playground's dm_control config does not override them)."""
    from brax.training.agents.ppo import networks as ppo_networks

    sig = inspect.signature(ppo_networks.make_ppo_networks)
    keep = (
        "policy_hidden_layer_sizes",
        "value_hidden_layer_sizes",
        "activation",
        "distribution_type",
        "noise_std_type",
        "init_noise_std",
        "state_dependent_std",
        "policy_network_kernel_init_fn",
        "value_network_kernel_init_fn",
    )
    out = {}
    for k in keep:
        if k in sig.parameters:
            v = sig.parameters[k].default
            out[k] = getattr(v, "__name__", None) or (list(v) if isinstance(v, tuple) else v)
    return out


def brax_train_defaults(keys) -> dict:
    from brax.training.agents.ppo import train as ppo_train

    sig = inspect.signature(ppo_train.train)
    return {k: sig.parameters[k].default for k in keys if k in sig.parameters}


def compile_wall(events, lo: float, hi: float) -> float:
    """Wall time inside [lo, hi] covered by JAX compile events (trace, lowering, XLA
    backend), each given as (end_time, duration). Uses the union of the intervals: a jit
    traced inside another's trace reports its own event inside the outer one, so plain
    sums overcount; the phases themselves run one after another on the calling thread."""
    iv = sorted((max(e - d, lo), min(e, hi)) for (e, d) in events if e - d < hi and e > lo)
    total, cur_s, cur_e = 0.0, None, None
    for a, b in iv:
        if b <= a:
            continue
        if cur_e is None or a > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = a, b
        else:
            cur_e = max(cur_e, b)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


class PPORun:
    """Runs brax ppo.train with Playground's wrapper and records every progress call."""

    def __init__(
        self,
        *,
        env,
        eval_env,
        ppo_cfg,
        num_timesteps: int,
        seed: int,
        run_evals: bool,
        threshold: float | None,
        stop_at_threshold: bool,
        time_limit: float,
        num_eval_envs: int | None,
        deterministic_eval: bool,
    ):
        self.env = env
        self.eval_env = eval_env
        self.cfg = ppo_cfg
        self.seed = seed
        self.run_evals = run_evals
        self.threshold = threshold
        self.stop_at_threshold = stop_at_threshold
        self.time_limit = time_limit
        self.deterministic_eval = deterministic_eval
        self.num_eval_envs = num_eval_envs
        c = ppo_cfg
        self.env_steps_per_train_step = (
            c.batch_size * c.unroll_length * c.num_minibatches * c.action_repeat
        )
        self.n_train_steps = max(1, math.ceil(num_timesteps / self.env_steps_per_train_step))
        self.num_timesteps = num_timesteps
        # records
        self.t0: float | None = None  # perf_counter at ppo.train() call
        self.t_end: float | None = None
        self.init_s: float | None = None  # train() call -> first progress (no training yet)
        self.evals: list = []  # [env_steps, reward, t_since_train_start, reward_std]
        self.epochs: list = []  # [env_steps_after, epoch_s, compile_s_in_epoch]
        self.eval_times: list = []
        self.solved_at: tuple | None = None  # (env_steps, t_since_train_start)
        self.stop_reason: str | None = None
        self.last_metrics: dict = {}
        self._prev_walltime = 0.0
        self._prev_cpu: float | None = None  # process CPU time (all threads) at last progress
        self.cpu_between: list = []  # CPU s between consecutive progress calls, per epoch
        self.first_epoch_start_s: float | None = None
        self.meter = pc.JaxCompileMeter()
        self.compile_before_train = None
        # our own listener: (perf_counter at the end of the event, duration) of every
        # XLA backend compile + trace + lowering, to attribute compiles to epochs by time
        self.compile_events: list = []
        import jax

        def _listener(name, duration, **kwargs):
            if name in pc.JaxCompileMeter.EVENTS:
                self.compile_events.append((time.perf_counter(), float(duration)))

        jax.monitoring.register_event_duration_secs_listener(_listener)

    # -- configuration actually passed to ppo.train ------------------------------------
    def train_kwargs(self) -> dict:
        kw = dict(self.cfg)
        kw.pop("network_factory", None)
        kw.pop("num_eval_envs", None)
        kw["num_timesteps"] = self.num_timesteps
        kw["num_evals"] = self.n_train_steps + 1
        kw["num_resets_per_eval"] = 1
        kw["run_evals"] = self.run_evals
        if self.num_eval_envs:
            kw["num_eval_envs"] = self.num_eval_envs
        else:
            kw["num_eval_envs"] = 128  # Playground's train_jax_ppo.py default
        kw["deterministic_eval"] = self.deterministic_eval
        kw["seed"] = self.seed
        return kw

    def _now(self) -> float:
        return time.perf_counter() - self.t0

    def progress(self, num_steps, metrics):
        now = self._now()
        t = os.times()
        cpu = t.user + t.system
        self.last_metrics = {k: float(v) for k, v in metrics.items() if hasattr(v, "__float__")}
        comp = self.meter.snapshot()
        eval_t = float(metrics.get("eval/epoch_eval_time", 0.0))
        if "training/walltime" in metrics:
            wall = float(metrics["training/walltime"])
            epoch_s = wall - self._prev_walltime
            self._prev_walltime = wall
            # epoch window on our clock: it ends before the env reset + the evaluation
            t_call = time.perf_counter()
            w_end = t_call - eval_t
            w_start = w_end - epoch_s - 0.05
            c_epoch = compile_wall(self.compile_events, w_start, w_end)
            self.epochs.append([int(num_steps), round(epoch_s, 4), round(c_epoch, 4)])
            prev = self._prev_cpu if self._prev_cpu is not None else self._cpu0
            self.cpu_between.append(round(cpu - prev, 3))
            if self.first_epoch_start_s is None:
                self.first_epoch_start_s = now - eval_t - epoch_s
        else:
            epoch_s = None
            self.init_s = now
        self._prev_cpu = cpu
        rew = metrics.get("eval/episode_reward")
        if rew is not None:
            rew = float(rew)
            std = metrics.get("eval/episode_reward_std")
            self.evals.append(
                [
                    int(num_steps),
                    round(rew, 3),
                    round(now, 3),
                    None if std is None else round(float(std), 3),
                ]
            )
            if "eval/epoch_eval_time" in metrics:
                self.eval_times.append(float(metrics["eval/epoch_eval_time"]))
        sps = metrics.get("training/sps")
        pc.log(
            f"[{PEER}] t={now:7.1f}s steps={int(num_steps):>10,d}"
            + (f" eval_reward={rew:8.2f}" if rew is not None else "")
            + (f" epoch={epoch_s:6.1f}s sps={float(sps):8.0f}" if sps is not None else "")
            + f" compile_total={comp['total']:.1f}s"
        )
        # ---- stop conditions (checked after the evaluation that follows each epoch)
        if (
            rew is not None
            and self.threshold is not None
            and rew >= self.threshold
            and self.solved_at is None
            and num_steps > 0
        ):
            self.solved_at = (int(num_steps), now)
            if (
                self.stop_at_threshold
                and num_steps < self.n_train_steps * self.env_steps_per_train_step
            ):
                self.stop_reason = "threshold"
                raise StopTraining("threshold")
        if num_steps >= self.n_train_steps * self.env_steps_per_train_step:
            return  # brax ends by itself
        if self.time_limit and self.time_limit > 0:
            est = self.next_epoch_estimate()
            if now + est > self.time_limit:
                self.stop_reason = "time_limit"
                pc.log(
                    f"[{PEER}] stopping: next epoch would end at ~{now + est:.0f} s "
                    f"> --time-limit {self.time_limit:.0f} s"
                )
                raise StopTraining("time_limit")

    def next_epoch_estimate(self) -> float:
        """Predicted wall time of one more training step + its evaluation. After the first
        epoch, the next one is predicted as long as the first (brax 0.14.2 on jax 0.9.2
        compiles the pmapped training epoch again at its 2nd call); later ones from the
        last epoch minus the compilation inside it."""
        if len(self.epochs) >= 2:
            ep = self.epochs[-1][1] - self.epochs[-1][2]
        elif self.epochs:
            ep = self.epochs[-1][1]
        else:
            ep = 0.0  # unknown before the first epoch: always try one
        ev = self.eval_times[-1] if self.eval_times else 0.0
        return max(ep, 0.0) + ev

    def run(self):
        import functools

        from brax.training.agents.ppo import networks as ppo_networks
        from brax.training.agents.ppo import train as ppo
        from mujoco_playground import wrapper

        kw = self.train_kwargs()
        network_factory = ppo_networks.make_ppo_networks
        if "network_factory" in self.cfg:
            network_factory = functools.partial(
                ppo_networks.make_ppo_networks, **self.cfg.network_factory
            )
        self.compile_before_train = self.meter.snapshot()
        t = os.times()
        self._cpu0 = t.user + t.system
        self.t0 = time.perf_counter()
        self._t0_abs = self.t0
        try:
            ppo.train(
                environment=self.env,
                eval_env=self.eval_env,
                network_factory=network_factory,
                wrap_env_fn=wrapper.wrap_for_brax_training,
                progress_fn=self.progress,
                **kw,
            )
            self.stop_reason = self.stop_reason or "num_timesteps"
        except StopTraining as e:
            self.stop_reason = e.reason
        self.t_end = self._now()

    # -- summary ---------------------------------------------------------------
    def summary(self) -> dict:
        E = self.env_steps_per_train_step
        n_ep = len(self.epochs)
        env_steps = self.epochs[-1][0] if self.epochs else 0
        epoch_s = [e[1] for e in self.epochs]
        comp_in = [e[2] for e in self.epochs]
        train_excl_eval = sum(epoch_s)
        # steady state: epochs without XLA compilation inside them (brax 0.14.2 on jax
        # 0.9.2 compiles the training epoch at its 1st AND 2nd call, identical shapes)
        steady_idx = [i for i in range(n_ep) if i > 0 and comp_in[i] <= max(0.5, 0.02 * epoch_s[i])]
        steady = None
        if steady_idx:
            steady = len(steady_idx) * E / sum(epoch_s[i] for i in steady_idx)
        steady_list = [round(E / epoch_s[i], 1) for i in steady_idx]
        # CPU seconds of this process (all XLA threads) between the progress calls that
        # bracket each steady epoch (includes the env reset and, in the solve script, the
        # evaluation): how much of the 2 cores the run really got under shared load
        cpu_steady = sum(self.cpu_between[i] for i in steady_idx) if steady_idx else 0.0
        wall_steady = 0.0
        for i in steady_idx:
            ev = self.eval_times[i + 1] if i + 1 < len(self.eval_times) else 0.0
            wall_steady += epoch_s[i] + (ev if self.run_evals else 0.0)
        comp_now = self.meter.snapshot()
        comp_run = pc.JaxCompileMeter.diff(comp_now, self.compile_before_train)
        wall = self.t_end if self.t_end is not None else (self._now() if self.t0 else None)
        out = {
            "env_steps": env_steps,
            "train_steps_done": n_ep,
            "env_steps_per_train_step": E,
            "steps_per_s_steady": None if steady is None else round(steady, 1),
            "steps_per_s_steady_per_epoch": steady_list,
            "steps_per_s_first_epoch": round(E / epoch_s[0], 1) if n_ep else None,
            "steps_per_s_excl_eval": round(env_steps / train_excl_eval, 1) if n_ep else None,
            "steps_per_s_excl_eval_and_compile": round(
                env_steps / (train_excl_eval - sum(comp_in)), 1
            )
            if n_ep and train_excl_eval > sum(comp_in)
            else None,
            "steps_per_s_total": round(env_steps / wall, 1) if n_ep and wall else None,
            "first_epoch_s": epoch_s[0] if n_ep else None,
            "first_epoch_compile_s": comp_in[0] if n_ep else None,
            "epoch_compile_s": comp_in,
            "steady_epochs": len(steady_idx),
            "cpu_s_per_epoch_window": self.cpu_between,
            "steady_cpu_cores_used": round(cpu_steady / wall_steady, 2)
            if steady_idx and wall_steady > 0
            else None,
            "steps_per_cpu_s_steady": round(len(steady_idx) * E / cpu_steady, 1)
            if steady_idx and cpu_steady > 0 and not self.run_evals
            else None,
            "epoch_s": epoch_s,
            "train_excl_eval_s": round(train_excl_eval, 3),
            "init_s": None if self.init_s is None else round(self.init_s, 3),
            "first_epoch_start_s": None
            if self.first_epoch_start_s is None
            else round(self.first_epoch_start_s, 3),
            "eval_s": round(sum(self.eval_times), 3),
            "eval_times_s": [round(x, 3) for x in self.eval_times],
            "train_wall_s": None if wall is None else round(wall, 3),
            "compile_s": round(
                compile_wall(self.compile_events, self._t0_abs, time.perf_counter()), 3
            )
            if self.t0 is not None
            else None,
            "compile_detail": comp_run,
            "stop_reason": self.stop_reason,
            "evals": self.evals,
        }
        return out


def common_config_record(ppo_cfg, kw: dict) -> dict:
    """The PPO configuration used, with every brax default that matters spelled out."""
    rec = {k: (v if not hasattr(v, "to_dict") else v.to_dict()) for k, v in dict(ppo_cfg).items()}
    rec = {"tuned": rec}
    used = {
        k: v
        for k, v in kw.items()
        if k not in ("environment", "eval_env", "progress_fn", "wrap_env_fn")
    }
    used.update(
        brax_train_defaults(
            (
                "gae_lambda",
                "clipping_epsilon",
                "max_grad_norm",
                "normalize_advantage",
                "vf_loss_coefficient",
                "bootstrap_on_timeout",
                "normalize_observations_mode",
                "normalize_observations_std_eps",
                "learning_rate_schedule",
            )
        )
    )
    rec["used"] = used
    rec["network"] = network_description()
    return rec


def run_from_args(args, benchmark: str, *, run_evals: bool, proc_start: float) -> dict:
    """Shared main of both scripts (their argparse use the same option names).

    run_evals=True: the solve benchmark (evaluations, threshold, time to threshold).
    run_evals=False: pure training throughput (`args.train_steps` training steps, no
    evaluation at all: brax then calls progress_fn with the training metrics only).
    """
    set_platform(args.platform)
    partial_box: dict = {"fn": None}
    wd = Watchdog(args.timeout, benchmark, lambda: partial_box["fn"]() if partial_box["fn"] else {})

    t_imp = time.time()
    import jax
    from brax.training.agents.ppo import train as _ppo  # noqa: F401
    from mujoco_playground import registry  # noqa: F401  (import cost counted here)

    import_s = time.time() - proc_start
    pc.log(f"[{PEER}] imports {time.time() - t_imp:.1f} s; jax devices: {jax.devices()}")

    t_setup = time.time()
    env, eval_env, env_cfg, ppo_cfg, default_impl = load_env_and_config(args.env, args.impl)
    tuned = {k: ppo_cfg[k] for k in ("num_envs", "num_timesteps", "num_minibatches", "batch_size")}
    changes = []
    if args.impl != default_impl:
        changes.append(f"env impl {default_impl!r} -> {args.impl!r} (warp needs an NVIDIA GPU)")
    for name in ("num_envs", "num_minibatches", "batch_size"):
        v = getattr(args, name, None)
        if v is not None and v != ppo_cfg[name]:
            changes.append(f"{name} {ppo_cfg[name]} -> {v}")
            ppo_cfg[name] = v
    if ppo_cfg.batch_size * ppo_cfg.num_minibatches % ppo_cfg.num_envs:
        raise SystemExit(
            f"batch_size*num_minibatches ({ppo_cfg.batch_size * ppo_cfg.num_minibatches}) "
            f"must be a multiple of num_envs ({ppo_cfg.num_envs})"
        )
    E = ppo_cfg.batch_size * ppo_cfg.unroll_length * ppo_cfg.num_minibatches * ppo_cfg.action_repeat
    if run_evals:
        num_timesteps = args.num_timesteps or int(tuned["num_timesteps"])
    else:
        num_timesteps = args.train_steps * E
    if num_timesteps != int(tuned["num_timesteps"]):
        changes.append(f"num_timesteps {tuned['num_timesteps']} -> {num_timesteps}")
    run = PPORun(
        env=env,
        eval_env=eval_env,
        ppo_cfg=ppo_cfg,
        num_timesteps=num_timesteps,
        seed=args.seed,
        run_evals=run_evals,
        threshold=args.threshold if run_evals else None,
        stop_at_threshold=run_evals and not args.no_stop_at_threshold,
        time_limit=args.time_limit,
        num_eval_envs=getattr(args, "num_eval_envs", None),
        deterministic_eval=getattr(args, "deterministic_eval", False),
    )
    kw = run.train_kwargs()
    if run_evals:
        changes.append(
            f"evaluation schedule: num_evals {ppo_cfg.num_evals} -> {kw['num_evals']}, "
            f"num_resets_per_eval {ppo_cfg.num_resets_per_eval} -> 1 (an eval after every "
            f"training step of {E:,d} env steps; env resets as in the tuned schedule)"
        )
    else:
        changes.append(
            f"no evaluations (run_evals=False); num_resets_per_eval "
            f"{ppo_cfg.num_resets_per_eval} -> 1 (env reset after every training step, as "
            f"the tuned schedule does)"
        )
    config = common_config_record(ppo_cfg, kw)
    envdef = env_definition(env, env_cfg, args.impl)
    setup_s = time.time() - t_setup
    pc.log(f"[{PEER}] Playground tuned PPO config for {args.env}:\n{ppo_cfg}")
    pc.log(f"[{PEER}] changes: " + "; ".join(changes))
    pc.log(f"[{PEER}] ppo.train kwargs: {config['used']}")
    pc.log(f"[{PEER}] networks: {config['network']}")
    pc.log(f"[{PEER}] env: {envdef}")

    base = {
        "peer": PEER,
        "benchmark": benchmark,
        "env": args.env,
        "seed": args.seed,
        "num_envs": int(ppo_cfg.num_envs),
        "num_timesteps": num_timesteps,
    }
    if run_evals:
        base.update(threshold=args.threshold)
    base.update(
        time_limit=args.time_limit,
        config_changes=changes,
        ppo_config=config,
        env_definition=envdef,
        import_s=round(import_s, 3),
        setup_s=round(setup_s, 3),
        versions=pc.package_versions(VERSION_PACKAGES),
        machine=pc.machine_info(),
    )

    def _partial():
        d = dict(base)
        if run.t0 is not None:
            d.update(run.summary())
        d["total_wall_s"] = round(time.time() - proc_start, 3)
        d["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        return d

    partial_box["fn"] = _partial
    t_train_wall0 = time.time()
    run.run()
    res = dict(base)
    res.update(run.summary())
    if run_evals:
        solved = run.solved_at is not None
        res["solved"] = solved
        res["time_to_threshold_s"] = round(run.solved_at[1], 3) if solved else None
        res["steps_to_threshold"] = run.solved_at[0] if solved else None
        res["time_to_threshold_from_process_start_s"] = (
            round(t_train_wall0 - proc_start + run.solved_at[1], 3) if solved else None
        )
        res["final_eval_reward"] = run.evals[-1][1] if run.evals else None
        res["best_eval_reward"] = max((e[1] for e in run.evals), default=None)
    else:
        res.pop("evals", None)
        res.pop("eval_times_s", None)
        res.pop("eval_s", None)
    res["total_wall_s"] = round(time.time() - proc_start, 3)
    res["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    pc.log(
        f"[{PEER}] done: stop={res['stop_reason']} steady_sps={res['steps_per_s_steady']} "
        f"first_epoch_sps={res['steps_per_s_first_epoch']}"
        + (
            f" solved={res['solved']} t_solve={res['time_to_threshold_s']} "
            f"final={res['final_eval_reward']}"
            if run_evals
            else ""
        )
    )
    if not wd.finish():
        time.sleep(3600)  # the watchdog is emitting the timeout JSON and exiting
    return res
