"""``robotrl`` command line: train, eval, runs list|compare.

Bad input (unknown config keys, wrong types, missing files, corrupt checkpoints, a run that goes
non-finite) ends with one ``robotrl: error: ...`` line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

EXIT_USAGE, EXIT_FAILED = 2, 1


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + error
        print(f"robotrl: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _progress(quiet: bool):
    """A rich progress bar with steps, SPS, last return and ETA; returns (callback, context)."""
    if quiet:
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn("{task.completed:>9,.0f}/{task.total:,.0f} steps"),
        TextColumn("{task.fields[sps]:>7,.0f} sps"),
        TextColumn("return {task.fields[ret]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    task = None

    def update(step: int, total: int, sps: float, row: dict[str, float]) -> None:
        nonlocal task
        ret = row.get("eval/return_mean", row.get("train/episode_return", math.nan))
        text = f"{ret:9.1f}" if math.isfinite(ret) else "      n/a"
        if task is None:
            task = progress.add_task("train", total=total, sps=sps, ret=text)
        progress.update(task, completed=step, total=total, sps=sps, ret=text)

    return update, progress


def cmd_train(args: argparse.Namespace) -> int:
    from robotrl import experiment

    if args.resume is None and args.config is None:
        raise experiment.ConfigError("give a CONFIG file, or --resume RUN_DIR")
    if args.resume is not None and args.config is not None:
        raise experiment.ConfigError("give either a CONFIG file or --resume RUN_DIR, not both")
    from robotrl.config import apply_overrides, load_yaml
    from robotrl.runs import RunDir
    from robotrl.runs.wandb_log import require_wandb, wandb_callbacks
    from robotrl.train import finetune

    if args.wandb:
        require_wandb()  # the install hint before anything is read or trained
    stages = (
        []
        if args.resume
        else finetune.plan(apply_overrides(load_yaml(args.config), args.set), args.out)
    )
    update, progress = _progress(args.quiet)

    def print_eval(step: int, row: dict[str, float]) -> None:
        if "eval/return_mean" in row:
            line = (
                f"step {step:>9,}  eval return {row['eval/return_mean']:9.2f} "
                f"± {row['eval/return_std']:.2f} (IQM {row['eval/return_iqm']:.2f})"
            )
            (progress.console.print if progress else print)(line)

    import jax

    # One W&B run per run directory, from the first process of a multi-host run only.
    project = args.wandb if jax.process_index() == 0 else None
    if progress is not None:
        progress.start()
    try:
        if args.resume:
            config = RunDir.open(args.resume).config()
            with wandb_callbacks(project, args.resume, config) as extra:
                run, _ = experiment.train(
                    resume=args.resume,
                    overrides=args.set,
                    progress=update,
                    on_log=[print_eval, *extra],
                )
        else:
            say = progress.console.print if progress else print
            for stage in stages:
                config = experiment.config_to_dict(stage.cfg)
                with wandb_callbacks(project, stage.out, config) as extra:
                    run, _ = finetune.run(
                        [stage],
                        progress=update,
                        on_log=[print_eval, *extra],
                        on_stage=say if len(stages) > 1 else lambda what: None,
                    )
    finally:
        if progress is not None:
            progress.stop()
    print(f"run directory: {run.path}")
    print(f"learning curve: {run.path / 'learning_curve.png'}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from robotrl.train import sweep

    update, progress = _progress(args.quiet)
    say = progress.console.print if progress else print
    if progress is not None:
        progress.start()
    try:
        summary = sweep.sweep(
            args.config, args.seeds, args.grid, args.set, args.out, progress=update, say=say
        )
    finally:
        if progress is not None:
            progress.stop()
    print(f"sweep folder: {summary['folder']}")
    keys = " ".join(f"--group-by {k}" for k in list(summary["grid"])[:1])
    print(f"compare: robotrl runs compare {summary['folder']}/*/ {keys}".rstrip())
    return 0


def _intervals(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected positive integers like 1,2,4,8,16, got {text!r}"
        )
    return values


def cmd_eval_intervals(args: argparse.Namespace) -> int:
    from robotrl import experiment

    if args.randomize is not None or args.set:
        raise experiment.ConfigError("--decision-intervals evaluates the run's own env")
    result = experiment.evaluate_decision_intervals(
        args.run_dir,
        args.decision_intervals,
        episodes=args.episodes,
        step=args.step,
        seed=args.seed,
        reference=args.reference_return,
    )
    out = Path(args.run_dir) / "eval_intervals.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"{result['run']} @ step {result['step']}, {args.episodes} episodes per seed:")
    print("| decision interval | return |\n|---|---|")
    for k, ret in zip(result["intervals"], result["return_mean"], strict=True):
        print(f"| {k} | {ret:.2f} |")
    print(
        f"FAS {result['fas']:.3f} (floor: random policy {result['random_return']:.2f}, "
        f"reference {result['reference_return']:.2f})  -> {out}"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from robotrl import experiment

    if args.decision_intervals:
        return cmd_eval_intervals(args)
    result = experiment.evaluate_run(
        args.run_dir,
        episodes=args.episodes,
        step=args.step,
        seed=args.seed,
        randomize=args.randomize,
        env_overrides=args.set,
    )
    out = Path(args.run_dir) / "eval.json"
    out.write_text(json.dumps(result, indent=2))
    print(
        f"{result['run']} @ step {result['step']}: return {result['eval/return_mean']:.2f} "
        f"± {result['eval/return_std']:.2f} (IQM {result['eval/return_iqm']:.2f}) over "
        f"{args.episodes} episodes per seed  -> {out}"
    )
    extra = {k: v for k, v in result.items() if k.startswith("eval/") and "return" not in k}
    if extra:
        print("  final-step metrics: " + ", ".join(f"{k[5:]} {v:.3g}" for k, v in extra.items()))
    return 0


def cmd_runs_list(args: argparse.Namespace) -> int:
    from robotrl.runs import compare

    rows = compare.list_runs(args.root)
    if not rows:
        print(f"no runs under {args.root}")
        return 0
    print(compare.format_table(rows))
    return 0


def cmd_runs_compare(args: argparse.Namespace) -> int:
    from robotrl.runs import compare

    report = compare.compare_runs(
        args.run_dirs, metric=args.metric, out=args.out, group_by=args.group_by
    )
    print(f"{args.metric}: IQM over seeds with stratified-bootstrap 95% CIs")
    print(report["table"])
    for note in report["notes"]:
        print(note)
    for kind, path in report["files"].items():
        print(f"{kind}: {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from robotrl.export import export_run

    result = export_run(args.run_dir, fmt=args.format, out=args.out, step=args.step)
    src = result["source"]
    print(
        f"exported {src['algo']} on {src['env']} (step {src['checkpoint_step']}), "
        f"{result['golden_pairs']} golden pairs verified:"
    )
    for kind, path in result["files"].items():
        print(f"  {kind}: {path}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from robotrl.render import render

    result = render(args.target, args.out, steps=args.steps, seed=args.seed, fps=args.fps)
    print(f"{result['frames']} frames of {result['source']} -> {result['out']}")
    return 0


def _dataset_summary(path: Path, meta: dict) -> str:
    ret = meta.get("behaviour_return_mean")
    ret_text = "n/a" if ret is None else f"{ret:.1f}"
    return (
        f"{path}: {meta['num_transitions']:,} transitions, {meta['num_episodes']:,} episodes of "
        f"{meta.get('env_name')}, behaviour {meta['behaviour'].get('policy')} "
        f"(return {ret_text})"
    )


def cmd_dataset_collect(args: argparse.Namespace) -> int:
    from robotrl.data import collect_from, save

    dataset = collect_from(
        args.source,
        transitions=args.transitions,
        num_envs=args.num_envs,
        seed=args.seed,
        step=args.step,
        deterministic=args.deterministic,
        gamma=args.gamma,
        env_overrides=tuple(args.set),
    )
    path = save(dataset, args.out)
    print(_dataset_summary(path, dataset.meta))
    return 0


def cmd_dataset_mix(args: argparse.Namespace) -> int:
    from robotrl.data import load, mix, save

    dataset = mix([load(p) for p in args.datasets])
    path = save(dataset, args.out)
    print(_dataset_summary(path, dataset.meta))
    return 0


def cmd_dataset_info(args: argparse.Namespace) -> int:
    from robotrl.data import load

    dataset = load(args.dataset)
    print(_dataset_summary(Path(args.dataset), dataset.meta))
    returns = dataset.episode_returns()
    print(
        f"episode returns: mean {returns.mean():.1f}, min {returns.min():.1f}, "
        f"max {returns.max():.1f}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="robotrl", description="JAX reinforcement learning for robots.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train from a YAML preset, or resume a run")
    train.add_argument("config", nargs="?", help="YAML preset (configs/*.yaml)")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, e.g. --set algo.actor_lr=1e-4 (repeatable)",
    )
    train.add_argument("--out", help="run directory (default: runs/<preset>-<timestamp>)")
    train.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--wandb",
        metavar="PROJECT",
        default=None,
        help="also log to Weights & Biases (pip install wandb; WANDB_MODE=offline for no upload)",
    )
    train.set_defaults(func=cmd_train)

    sw = sub.add_parser(
        "sweep",
        help="seeds x a grid of hyperparameters (vmapped in one program where shapes allow)",
    )
    sw.add_argument("config", help="YAML preset (configs/*.yaml)")
    sw.add_argument("--seeds", type=int, default=1, help="seeds per point of the grid")
    sw.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="values of one key, e.g. --grid algo.actor_lr=1e-4,3e-4 (repeatable: product)",
    )
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    sw.add_argument("--out", help="sweep folder (default: runs/sweep-<preset>-<timestamp>)")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    sw.set_defaults(func=cmd_sweep)

    ev = sub.add_parser("eval", help="evaluate a run's checkpoint (deterministic policy)")
    ev.add_argument("run_dir")
    ev.add_argument("--episodes", type=int, default=10)
    ev.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    ev.add_argument("--seed", type=int, default=123)
    ev.add_argument(
        "--randomize",
        default=None,
        metavar="SET",
        help="evaluate under a named parameter set of the env, e.g. heldout",
    )
    ev.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="env.KEY=VALUE",
        help="evaluate in a changed env, e.g. --set env.options.tracks=[hook]",
    )
    ev.add_argument(
        "--decision-intervals",
        type=_intervals,
        default=None,
        metavar="K1,K2,...",
        help="return when the policy decides every k steps (open loop in between), and the FAS",
    )
    ev.add_argument(
        "--reference-return",
        type=float,
        default=None,
        help="FAS ceiling (default: the policy's best return over the intervals)",
    )
    ev.set_defaults(func=cmd_eval)

    ex = sub.add_parser("export", help="export a run's policy: bundle, C99 (float32/int8), ONNX")
    ex.add_argument("run_dir")
    ex.add_argument(
        "--format",
        default="bundle",
        choices=("bundle", "c", "c-int8", "onnx"),
        help="bundle (always written), c, c-int8 or onnx",
    )
    ex.add_argument("--out", default=None, help="folder (default: RUN_DIR/export)")
    ex.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    ex.set_defaults(func=cmd_export)

    dp = sub.add_parser(
        "deploy",
        help="run a policy bundle on a robot: the ROS 2 policy node (robotrl deploy ros --help)",
        add_help=False,
    )
    dp.add_argument("target", choices=("ros",), help="ros: the ROS 2 policy node")
    dp.add_argument("rest", nargs=argparse.REMAINDER, help="the node's arguments")
    dp.set_defaults(func=cmd_deploy)
    br = sub.add_parser(
        "sim-bridge",
        help="a sims env as a ROS 2 node (observations out, actions in; robotrl sim-bridge -h)",
        add_help=False,
    )
    br.add_argument("rest", nargs=argparse.REMAINDER, help="the bridge's arguments")
    br.set_defaults(func=cmd_sim_bridge)

    rd = sub.add_parser("render", help="video (.mp4/.gif) or frame strip (.png) of an episode")
    rd.add_argument("target", help="a run directory (its policy) or an env name (random actions)")
    rd.add_argument("--out", required=True, help="output file: .mp4, .gif or .png")
    rd.add_argument("--steps", type=int, default=None, help="episode length (default: the env's)")
    rd.add_argument("--seed", type=int, default=0)
    rd.add_argument("--fps", type=float, default=None)
    rd.set_defaults(func=cmd_render)

    runs = sub.add_parser("runs", help="list and compare run directories")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True, parser_class=_Parser)
    ls = runs_sub.add_parser("list", help="runs under a folder")
    ls.add_argument("root", nargs="?", default="runs")
    ls.set_defaults(func=cmd_runs_list)
    cmp = runs_sub.add_parser(
        "compare",
        help="IQM and 95%% CIs over seeds (rliable): table, CSV and plots (pip install "
        "'robotrl[compare]')",
    )
    cmp.add_argument("run_dirs", nargs="+", help="run directories; each seed is one sample")
    cmp.add_argument("--metric", default="eval/return_mean", help="a metrics.csv column")
    cmp.add_argument(
        "--group-by",
        default=None,
        help="config key whose runs are pooled, e.g. algo.name (default: the config's name)",
    )
    cmp.add_argument(
        "--out",
        default=None,
        help="folder for compare.md/.csv, iqm.png, profile.png, sample_efficiency.png, "
        "wall_time.png (default: runs/compare-<timestamp>)",
    )
    cmp.set_defaults(func=cmd_runs_compare)

    ds = sub.add_parser("dataset", help="offline datasets from the project's own policies")
    ds_sub = ds.add_subparsers(dest="dataset_command", required=True, parser_class=_Parser)
    col = ds_sub.add_parser("collect", help="roll out a run's policy (or random actions)")
    col.add_argument("source", help="a run directory (its checkpoint) or an env name (random)")
    col.add_argument("--out", required=True, help="new dataset folder")
    col.add_argument("--transitions", type=int, default=100_000)
    col.add_argument("--step", type=int, default=None, help="checkpoint step (a medium policy)")
    col.add_argument("--num-envs", type=int, default=16)
    col.add_argument("--seed", type=int, default=0)
    col.add_argument("--gamma", type=float, default=0.99, help="for the Monte-Carlo returns")
    col.add_argument("--deterministic", action="store_true", help="the policy's mean action")
    col.add_argument("--set", action="append", default=[], metavar="env.KEY=VALUE")
    col.set_defaults(func=cmd_dataset_collect)
    mx = ds_sub.add_parser("mix", help="concatenate datasets (e.g. medium + expert)")
    mx.add_argument("datasets", nargs="+")
    mx.add_argument("--out", required=True)
    mx.set_defaults(func=cmd_dataset_mix)
    info = ds_sub.add_parser("info", help="size, env and behaviour return of a dataset")
    info.add_argument("dataset")
    info.set_defaults(func=cmd_dataset_info)
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    from policies.bundle import BundleError
    from robotrl.config import ConfigError
    from robotrl.data import DatasetError
    from robotrl.runs import CheckpointError, RunDirError
    from robotrl.train.session import NonFiniteError

    return (
        ConfigError,
        RunDirError,
        CheckpointError,
        NonFiniteError,
        BundleError,
        DatasetError,
        FileNotFoundError,
    )


def cmd_deploy(args) -> int:
    from deploy.ros_node import main as ros_main  # imports rclpy only when run

    return ros_main(args.rest)


def cmd_sim_bridge(args) -> int:
    from deploy.sim_bridge import main as bridge_main

    return bridge_main(args.rest)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    if args.command in ("train", "sweep", "eval", "render", "export", "dataset", "sim-bridge"):
        from robotrl.cache import enable_compilation_cache, use_cpu_cores_as_devices
        from robotrl.parallel import init_distributed

        # One process of a multi-host run (ROBOTRL_COORDINATOR...) keeps the devices its host
        # gives it; a single process makes every CPU core a device.
        if not init_distributed():
            use_cpu_cores_as_devices()
        enable_compilation_cache()
    try:
        return args.func(args)
    except _known_errors() as err:
        print(f"robotrl: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("robotrl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
