"""Classification heads on noisy regression targets, supervised (no RL): "Stop Regressing"'s claim
that HL-Gauss is more robust to label noise than MSE.

Task: fit ``f(x) = sin(3x) + 0.5x`` on ``x in [-2, 2]`` from ``N`` labels ``y = f(x) + noise``:
  clean     no noise (what each head reaches without it)
  gaussian  N(0, 0.5^2)
  hetero    N(0, (0.1 + 0.5|x|)^2): heteroscedastic, std 0.1 at x = 0 and 1.1 at the ends
  heavy     0.3 * Student-t with 2 degrees of freedom: symmetric, infinite variance
Heads (``robotrl.nets.heads``, one MLP and optimiser for all): ``mse``; ``hl_gauss`` and
``two_hot`` on ``[V_MIN, V_MAX]`` with ``BINS`` bins (they clip labels into that support);
and ``mse_clipped``, MSE on labels clipped into the same support: the control that tells what
the clipping does from what the classification does.
Each cell trains ``--seeds`` seeds vmapped in one jitted ``lax.scan`` (a seed draws its own data,
noise and initialisation; seed ``s`` draws the same data for every head). Measured: RMSE between
the prediction and the noise-free ``f`` on a grid of test points, at the end of training
(fixed budget, no early stopping) and along training (plot).

Results: ``benchmarks/out/noisy_regression.json``, plot ``benchmarks/results/noisy_regression.png``.
Run: ``python -m benchmarks.noisy_regression [--steps 4000 --seeds 10]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from benchmarks.common import ROOT, machine, save

RESULTS = ROOT / "benchmarks" / "results"
NOISES = ("clean", "gaussian", "hetero", "heavy")
HEADS = ("mse", "mse_clipped", "hl_gauss", "two_hot")
V_MIN, V_MAX, BINS = -4.0, 4.0, 101  # support of the classification heads; f lies in [-2, 2]
X_RANGE = 2.0
HIDDEN = (128, 128)


def target_fn(x: np.ndarray) -> np.ndarray:
    """The noise-free function ``f(x) = sin(3x) + 0.5x``."""
    return np.sin(3 * x) + 0.5 * x


def make_data(noise: str, seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x [n, 1], y [n])``: inputs uniform on ``[-2, 2]`` and noisy labels."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-X_RANGE, X_RANGE, n)
    f = target_fn(x)
    if noise == "clean":
        eps = np.zeros(n)
    elif noise == "gaussian":
        eps = 0.5 * rng.standard_normal(n)
    elif noise == "hetero":
        eps = (0.1 + 0.5 * np.abs(x)) * rng.standard_normal(n)
    elif noise == "heavy":
        eps = 0.3 * rng.standard_t(2, n)
    else:
        raise ValueError(f"unknown noise {noise!r}; choose from {NOISES}")
    return x[:, None].astype(np.float32), (f + eps).astype(np.float32)


def make_trainer(head_name: str, steps: int, batch: int, lr: float, evals: int):
    """``train(keys [S], x [S, N, 1], y [S, N], x_test [T, 1], f_test [T]) -> rmse [S, evals]``:
    every seed's test RMSE after each of ``evals`` equal parts of ``steps`` Adam steps."""
    import jax
    import jax.numpy as jnp
    import optax

    from robotrl.nets import MLP, ValueHeadConfig, make_value_head

    kind = "mse" if head_name == "mse_clipped" else head_name
    head = make_value_head(ValueHeadConfig(kind=kind, num_bins=BINS, v_min=V_MIN, v_max=V_MAX))
    net = MLP(HIDDEN, head.num_outputs)
    opt = optax.adam(lr)
    clip = head_name == "mse_clipped"

    def train_one(key, x, y, x_test, f_test):
        k_init, k_batches = jax.random.split(key)
        params = net.init(k_init, x[:1])
        opt_state = opt.init(params)

        def loss_fn(params, xb, yb):
            target = jnp.clip(yb, V_MIN, V_MAX) if clip else yb
            return head.loss(net.apply(params, xb), target).mean()

        def step(carry, k):
            params, opt_state = carry
            idx = jax.random.randint(k, (batch,), 0, x.shape[0])
            grads = jax.grad(loss_fn)(params, x[idx], y[idx])
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        def part(carry, keys):
            carry, _ = jax.lax.scan(step, carry, keys)
            pred = head.value(net.apply(carry[0], x_test))
            return carry, jnp.sqrt(jnp.mean((pred - f_test) ** 2))

        keys = jax.random.split(k_batches, steps).reshape(evals, steps // evals, -1)
        _, rmse = jax.lax.scan(part, (params, opt_state), keys)
        return rmse

    return jax.jit(jax.vmap(train_one, in_axes=(0, 0, 0, None, None)))


def run(
    noises: tuple[str, ...] = NOISES,
    heads: tuple[str, ...] = HEADS,
    *,
    steps: int = 4000,
    seeds: int = 10,
    n_train: int = 1024,
    batch: int = 128,
    lr: float = 1e-3,
    evals: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """Every (noise, head) cell: ``rmse[noise][head] = [S, evals]`` test RMSE along training."""
    import jax

    if steps % evals:
        raise ValueError(f"steps ({steps}) must be a multiple of evals ({evals})")
    x_test = np.linspace(-X_RANGE, X_RANGE, 512, dtype=np.float32)[:, None]
    f_test = target_fn(x_test[:, 0]).astype(np.float32)
    keys = jax.random.split(jax.random.PRNGKey(seed), seeds)
    data = {
        noise: [make_data(noise, 1000 * seed + s, n_train) for s in range(seeds)]
        for noise in noises
    }
    rmse: dict[str, dict[str, list]] = {noise: {} for noise in noises}
    seconds: dict[str, float] = {}
    for head_name in heads:
        train = make_trainer(head_name, steps, batch, lr, evals)
        start = time.perf_counter()
        for noise in noises:
            x = np.stack([d[0] for d in data[noise]])
            y = np.stack([d[1] for d in data[noise]])
            out = np.asarray(jax.device_get(train(keys, x, y, x_test, f_test)))
            rmse[noise][head_name] = out.tolist()
        seconds[head_name] = time.perf_counter() - start
    label_std = {
        noise: float(np.std(np.concatenate([d[1] - target_fn(d[0][:, 0]) for d in data[noise]])))
        for noise in noises
    }
    clipped = {
        noise: float(
            np.mean(np.concatenate([(d[1] < V_MIN) | (d[1] > V_MAX) for d in data[noise]]))
        )
        for noise in noises
    }
    return {
        "steps": steps,
        "seeds": seeds,
        "n_train": n_train,
        "batch": batch,
        "lr": lr,
        "hidden": list(HIDDEN),
        "support": [V_MIN, V_MAX, BINS],
        "eval_steps": [steps // evals * (i + 1) for i in range(evals)],
        "label_noise_std": label_std,
        "labels_outside_support": clipped,
        "seconds_per_head": seconds,
        "rmse": rmse,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4000, help="Adam steps per run")
    p.add_argument("--seeds", type=int, default=10, help="seeds, vmapped")
    p.add_argument("--n-train", type=int, default=1024, help="noisy training points")
    p.add_argument("--noises", nargs="*", default=list(NOISES), choices=NOISES)
    args = p.parse_args([] if argv is None else argv)
    print(f"noisy regression: {args.steps} steps, {args.seeds} seeds", flush=True)
    data = {
        "machine": machine(),
        **run(tuple(args.noises), steps=args.steps, seeds=args.seeds, n_train=args.n_train),
    }
    save("noisy_regression", data)
    plot(data)
    return data


def final(data: dict, noise: str, head: str) -> np.ndarray:
    """Every seed's test RMSE at the end of training ``[S]``."""
    return np.asarray(data["rmse"][noise][head])[:, -1]


def plot(data: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    noises = list(data["rmse"])
    fig, axes = plt.subplots(1, len(noises), figsize=(4.5 * len(noises), 3.6), squeeze=False)
    for ax, noise in zip(axes[0], noises, strict=True):
        for head, curves in data["rmse"][noise].items():
            c = np.asarray(curves)
            ax.plot(data["eval_steps"], c.mean(0), label=head)
            ax.fill_between(data["eval_steps"], c.min(0), c.max(0), alpha=0.2)
        ax.set_title(f"{noise} (label noise std {data['label_noise_std'][noise]:.2f})")
        ax.set_xlabel("Adam steps")
        ax.set_yscale("log")
    axes[0, 0].set_ylabel(f"test RMSE vs f (mean, min-max of {data['seeds']} seeds)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "noisy_regression.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(data: dict) -> str:
    heads = list(next(iter(data["rmse"].values())))
    lo, hi, bins = data["support"]
    lines = [
        "## Classification heads on noisy regression targets",
        "",
        f"1-D `sin(3x) + 0.5x`, {data['n_train']} noisy labels, MLP {data['hidden']}, Adam "
        f"{data['lr']}, batch {data['batch']}, {data['steps']} steps, {data['seeds']} seeds; "
        f"classification support [{lo}, {hi}], {bins} bins. Test RMSE against the noise-free "
        "function at the end of training, mean ± std over seeds (lower is better; "
        "plot: `benchmarks/results/noisy_regression.png`).",
        "",
        "| noise (label std, outside support) | "
        + " | ".join(heads)
        + " | seeds where hl_gauss < mse |",
        "|---|" + "---|" * (len(heads) + 1),
    ]
    for noise in data["rmse"]:
        cells = []
        means = {h: final(data, noise, h).mean() for h in heads}
        best = min(means, key=means.get)
        for h in heads:
            v = final(data, noise, h)
            cell = f"{v.mean():.3f} ± {v.std():.3f}"
            cells.append(f"**{cell}**" if h == best else cell)
        std = data["label_noise_std"][noise]
        out = 100 * data["labels_outside_support"][noise]
        wins = ""
        if "hl_gauss" in heads and "mse" in heads:
            beat = final(data, noise, "hl_gauss") < final(data, noise, "mse")
            wins = f"{int(beat.sum())}/{len(beat)}"
        lines.append(f"| {noise} ({std:.2f}, {out:.1f}%) | " + " | ".join(cells) + f" | {wins} |")
    return "\n".join(lines)


if __name__ == "__main__":
    result = main(sys.argv[1:])
    print(report(result))
    print(json.dumps({"plot": str(RESULTS / "noisy_regression.png")}))
