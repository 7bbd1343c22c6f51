"""The harness shared by ``benchmarks.mqar_cells`` and ``benchmarks.charlm_cells``: the
cells compared, their hidden sizes matched to the LSTM's parameter count, one training
recipe, the command line, the result files and the plot.  A comparison supplies its model,
its batches, its loss and its held-out metrics; everything else is here, the same for both.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jax
import optax

import jrnn
from benchmarks.measure import machine_info

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
Factories = dict[str, tuple[Callable[[int], Any], int]]


def cell_factories(mlstm_head_dim: int) -> Factories:
    """Cell name -> (factory of the hidden size, the step between the hidden sizes tried);
    the mLSTM's heads have ``mlstm_head_dim`` units each, so its sizes step by that."""
    dh = mlstm_head_dim
    cells: Factories = {
        "lstm": (jrnn.lstm, 1),
        "gru": (jrnn.gru, 1),
        "mlstm": (lambda h: jrnn.mlstm(h, num_heads=h // dh), dh),
        "rglru": (jrnn.rglru, 1),
    }
    slstm = getattr(jrnn, "slstm", None)  # xLSTM's sLSTM, where the library has it
    if slstm is not None:
        cells["slstm"] = (slstm, 1)
    return cells


def param_count(model: Any) -> int:
    """The number of parameters of ``model`` (shapes only, nothing initialised)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))


def matched_hidden(
    factory: Callable[[int], Any], step: int, target: int, make_model: Callable[[Any], Any]
) -> int:
    """The hidden size (a multiple of ``step``) whose model (``make_model(factory(hidden))``)
    has the parameter count nearest ``target`` (the counts grow with the hidden size: a
    bisection, then the nearer neighbour)."""

    def count(m: int) -> int:
        return param_count(make_model(factory(m * step)))

    lo, hi = 1, 1
    while count(hi) < target:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(mid) < target:
            lo = mid
        else:
            hi = mid
    counts = {m: count(m) for m in (lo, hi)}
    best = min(counts, key=lambda m: abs(counts[m] - target))
    return best * step


def match_cells(
    names: list[str], factories: Factories, lstm_hidden: int, make_model: Callable[[Any], Any]
) -> list[dict[str, Any]]:
    """``{"cell", "hidden", "params"}`` per cell: the LSTM at ``lstm_hidden``, every other
    cell at the hidden size matching the LSTM model's parameter count (within 10%, checked)."""
    target = param_count(make_model(jrnn.lstm(lstm_hidden)))
    rows = []
    for name in names:
        factory, step = factories[name]
        hidden = (
            lstm_hidden if name == "lstm" else matched_hidden(factory, step, target, make_model)
        )
        count = param_count(make_model(factory(hidden)))
        print(f"{name:6s} hidden {hidden:4d}: {count:,} parameters ({count / target:.3f} x lstm)")
        assert abs(count / target - 1) <= 0.1, (name, hidden, count, target)
        rows.append({"cell": name, "hidden": hidden, "params": count})
    return rows


def parser(doc: str, name: str, **defaults: Any) -> argparse.ArgumentParser:
    """The options every comparison has; ``defaults`` sets theirs (``hidden``, ``embed``,
    ``mlstm_head_dim``, ``steps``, ``batch_size``, ``lr``), the comparison adds its own."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--cells", default="lstm,gru,mlstm,rglru,slstm",
                   help="comma-separated; slstm is skipped where the library lacks it")  # fmt: skip
    p.add_argument("--hidden", type=int, help="the LSTM's hidden size")
    p.add_argument("--embed", type=int)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--mlstm-head-dim", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="the peak learning rate")
    p.add_argument("--seeds", default="0", help="comma-separated")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--out", default=str(OUT), help="folder of the JSON and markdown results")
    p.add_argument("--plot", default=str(ROOT / "docs" / "assets" / f"{name}.png"))
    p.set_defaults(**defaults)
    return p


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = p.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    if "lstm" not in args.cells.split(","):
        p.error("--cells must include lstm (the reference parameter count)")
    return args


def fit(
    name: str,
    seed: int,
    model: Any,
    loss_fn: Callable[..., Any],
    make_batch: Callable[[jax.Array], Any],
    evaluate: Callable[[Any, list[jax.Array]], dict[str, float]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One cell, one seed, the recipe every cell gets: Adam with the ``jrnn train``
    schedule (linear warm-up, cosine decay to a tenth), clipping at 1, the batch of step
    ``s`` made from ``fold_in(data key, s)``.  Every ``--eval-every`` steps and at the end,
    ``evaluate(params, the training losses since the last evaluation)`` adds a point to
    the curve.  Returns the curve, the last point's metrics and the training time (the
    first step, which compiles, left out)."""
    warmup = min(100, max(args.steps // 10, 1))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, args.lr, warmup_steps=warmup, decay_steps=args.steps, end_value=args.lr / 10
    )
    optimizer = optax.adam(schedule)
    k_init, k_data, k_train = jax.random.split(jax.random.key(seed), 3)
    state = jrnn.init_train_state(model.init(k_init), optimizer, k_train)
    step = jrnn.make_train_step(loss_fn, optimizer, clip_norm=1.0)
    make = jax.jit(make_batch)
    curve: list[dict[str, float]] = []
    losses: list[jax.Array] = []
    train_time = eval_time = 0.0
    for s in range(1, args.steps + 1):
        batch = make(jax.random.fold_in(k_data, s))
        start = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics["loss"])
        if s > 1:
            train_time += time.perf_counter() - start
        losses.append(metrics["loss"])
        if s % args.eval_every == 0 or s == args.steps:
            start = time.perf_counter()
            curve.append({"step": s, **evaluate(state.params, losses)})
            eval_time += time.perf_counter() - start
            losses = []
    last = {k: v for k, v in curve[-1].items() if k != "step"}
    shown = ", ".join(f"{k} {v:.4f}" for k, v in last.items())
    print(f"{name:6s} seed {seed}: {shown}, {train_time:.0f} s (+ {eval_time:.0f} s eval)",
          flush=True)  # fmt: skip
    return {
        "seed": seed,
        "curve": curve,
        **last,
        "train_time_s": train_time,
        "eval_time_s": eval_time,
        "ms_per_step": 1e3 * train_time / max(args.steps - 1, 1),
    }


def compare(
    module: str,
    args: argparse.Namespace,
    argv: list[str] | None,
    make_model: Callable[[Any], Any],
    train: Callable[[str, Any, int], dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    """Match the cells, ``train(name, cell, seed)`` each for every seed, and return the
    result: the machine, the arguments, the command, ``extra``, one row per cell."""
    start = time.perf_counter()
    factories = cell_factories(args.mlstm_head_dim)
    names = [n for n in args.cells.split(",") if n in factories]
    rows = match_cells(names, factories, args.hidden, make_model)
    for row in rows:
        factory, _ = factories[row["cell"]]
        row["runs"] = [train(row["cell"], factory(row["hidden"]), s) for s in args.seeds]
    shown = argv if argv is not None else sys.argv[1:]
    return {
        "machine": machine_info(),
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "plot")},
        "command": shlex.join(["python", "-m", f"benchmarks.{module}", *shown]),
        **extra,
        "cells": rows,
        "skipped": sorted(set(args.cells.split(",")) - set(names)),
        "wall_s": time.perf_counter() - start,
    }


def recipe(result: dict[str, Any]) -> str:
    """The caption's sentences on the training recipe and the machine."""
    m, a = result["machine"], result["args"]
    seeds = ", ".join(str(s) for s in a["seeds"])
    return (
        f"the hidden size chosen to match the LSTM model's parameter count (mLSTM: heads of "
        f"{a['mlstm_head_dim']} units); {a['steps']} Adam steps of batch {a['batch_size']} "
        f"(peak lr {a['lr']}, warm-up and cosine decay to a tenth, clip 1), seeds {seeds}. "
        f"{m['cpu_model']} ({m['usable_cores']} cores, shared), {len(m['jax_devices'])} "
        f"device(s), matmul precision {m['jax_default_matmul_precision'] or 'default'}; "
        f"{result['wall_s']:.0f} s in all."
    )


def table(result: dict[str, Any], columns: Iterable[tuple[str, str]]) -> list[str]:
    """The markdown table: cell, hidden, params, each ``(heading, metric)`` of ``columns``
    (one value per seed), the training time summed over the seeds and the median ms/step."""
    columns = list(columns)
    lines = [
        "| cell | hidden | params | " + " | ".join(h for h, _ in columns)
        + " | train time (s) | ms/step |",
        "|---|---:|---:|" + "---:|" * (len(columns) + 2),
    ]  # fmt: skip
    for row in result["cells"]:
        runs = row["runs"]
        values = [" / ".join(f"{r[k]:.3f}" for r in runs) for _, k in columns]
        total = sum(r["train_time_s"] for r in runs)
        ms = statistics.median(r["ms_per_step"] for r in runs)
        lines.append(
            f"| {row['cell']} | {row['hidden']} | {row['params']:,} | " + " | ".join(values)
            + f" | {total:.0f} | {ms:.1f} |"
        )  # fmt: skip
    if len(result["args"]["seeds"]) > 1:
        lines += ["", "One value per seed; time summed over the seeds."]
    return lines


def write(
    name: str,
    result: dict[str, Any],
    args: argparse.Namespace,
    markdown: Callable[[dict[str, Any]], str],
    plot: Callable[[dict[str, Any], Path], bool],
) -> None:
    """``{out}/{name}.json``, ``{out}/{name}.md`` and the plot; prints the table."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    (out / f"{name}.md").write_text(text)
    if plot(result, Path(args.plot)):
        print(f"plot: {args.plot}")
    print(text)


def plot_curves(
    result: dict[str, Any],
    path: Path,
    *,
    metric: str,
    ylabel: str,
    ylim: tuple[float, float],
    title: str,
    baseline: tuple[float, str] | None = None,
) -> bool:
    """The held-out ``metric`` against the training step, one colour per cell (its first
    seed solid, the others faint), saved to ``path``; ``False`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    for i, row in enumerate(result["cells"]):
        for j, run in enumerate(row["runs"]):
            steps = [p["step"] for p in run["curve"]]
            values = [p[metric] for p in run["curve"]]
            label = f"{row['cell']} (H={row['hidden']}, {row['params']:,} params)"
            ax.plot(steps, values, color=f"C{i}", lw=2, alpha=1.0 if j == 0 else 0.5,
                    label=label if j == 0 else None)  # fmt: skip
    if baseline is not None:
        ax.axhline(baseline[0], color="grey", ls="--", lw=1, label=baseline[1])
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.set_title(f"{title}: cells at ~{result['cells'][0]['params']:,} parameters", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True
