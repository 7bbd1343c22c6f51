"""Multi-query associative recall (MQAR) across cells at matched parameter counts.

Each cell is trained as a tagger (``jrnn.tagger``: token embedding, ``--layers`` layers of
the cell, a linear readout; two layers by default: one layer of the mLSTM or the RG-LRU
cannot bind a key to the value that follows it, their keys and values being projections of
the same token) on [`jrnn.seqtasks.mqar`][] batches, scored at the queries only: the
model reads ``--pairs`` key-value pairs, then every key once in random order, and must
output the value bound to each key.  The cells are the LSTM (the reference, ``--hidden``),
the GRU, xLSTM's mLSTM (``--mlstm-head-dim`` units per head), Griffin's RG-LRU and, when
the library has it, xLSTM's sLSTM; each other cell's hidden size is the one whose model has
the parameter count nearest the LSTM model's (within 10%, checked; the counts are printed
and recorded).  Every cell gets the same data (one seed-independent stream of batches per
seed), steps, batch, Adam learning-rate schedule (the ``jrnn train`` one: linear warm-up,
cosine decay to a tenth) and gradient clipping; the held-out set is fixed.

Writes ``benchmarks/results/mqar_cells.{json,md}`` and the plot ``docs/assets/mqar_cells.png``
(held-out query accuracy against training step, one line per cell and seed) and prints the
table.  Each cell trains in this process, one after the other.

Run: ``PYTHONPATH=$PWD nice -n 19 python -m benchmarks.mqar_cells [--steps 1500]
[--seeds 0,1]``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jrnn
from benchmarks.measure import machine_info
from jrnn import seqtasks
from jrnn.losses import sequence_softmax_cross_entropy

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
PLOT = ROOT / "docs" / "assets" / "mqar_cells.png"
VAL_KEY = 20240328  # the held-out set, the same for every cell and seed


def cell_factories(mlstm_head_dim: int) -> dict[str, tuple[Callable[[int], Any], int]]:
    """Cell name -> (factory of the hidden size, the step between the hidden sizes tried);
    the mLSTM's heads have ``mlstm_head_dim`` units each, so its sizes step by that."""
    dh = mlstm_head_dim
    cells: dict[str, tuple[Callable[[int], Any], int]] = {
        "lstm": (jrnn.lstm, 1),
        "gru": (jrnn.gru, 1),
        "mlstm": (lambda h: jrnn.mlstm(h, num_heads=h // dh), dh),
        "rglru": (jrnn.rglru, 1),
    }
    slstm = getattr(jrnn, "slstm", None)  # xLSTM's sLSTM, where the library has it
    if slstm is not None:
        cells["slstm"] = (slstm, 1)
    return cells


def make_model(cell: Any, args: argparse.Namespace) -> Any:
    vocab = seqtasks.mqar_vocab_size(args.symbols)
    return jrnn.tagger(cell, vocab, vocab_size=vocab, embed_size=args.embed, num_layers=args.layers)


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
    names: list[str],
    factories: dict[str, tuple[Callable[[int], Any], int]],
    lstm_hidden: int,
    make_model: Callable[[Any], Any],
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


def batches(args: argparse.Namespace, key: jax.Array, size: int):
    return seqtasks.mqar(key, size, args.pairs, args.symbols, seq_len=args.seq_len)


def train(name: str, cell: Any, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One cell, one seed: the held-out curve and the final figures."""
    model = make_model(cell, args)

    def loss_fn(params, batch, key):
        logits, _ = model.apply(params, batch.inputs)
        return sequence_softmax_cross_entropy(logits, batch.targets, mask=batch.mask), {}

    warmup = min(100, max(args.steps // 10, 1))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, args.lr, warmup_steps=warmup, decay_steps=args.steps, end_value=args.lr / 10
    )
    optimizer = optax.adam(schedule)
    k_init, k_data, k_train = jax.random.split(jax.random.key(seed), 3)
    state = jrnn.init_train_state(model.init(k_init), optimizer, k_train)
    step = jrnn.make_train_step(loss_fn, optimizer, clip_norm=1.0)
    make = jax.jit(lambda k: batches(args, k, args.batch_size))
    held_out = [
        batches(args, jax.random.fold_in(jax.random.key(VAL_KEY), i), 256) for i in range(4)
    ]

    @jax.jit
    def evaluate(params, batch):
        logits, _ = model.apply(params, batch.inputs)
        loss = sequence_softmax_cross_entropy(
            logits, batch.targets, mask=batch.mask, reduction="sum"
        ).sum()
        hits = (jnp.argmax(logits, -1).astype(jnp.int32) == batch.targets) & batch.mask
        return loss, hits.sum(), batch.mask.sum()

    def held_out_metrics(params):
        sums = np.sum([np.asarray(evaluate(params, b), np.float64) for b in held_out], axis=0)
        return {"val_loss": sums[0] / sums[2], "val_accuracy": sums[1] / sums[2]}

    curve = []
    train_time = 0.0
    for s in range(1, args.steps + 1):
        batch = make(jax.random.fold_in(k_data, s))
        start = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics["loss"])
        if s > 1:  # the first step compiles
            train_time += time.perf_counter() - start
        if s % args.eval_every == 0 or s == args.steps:
            curve.append({"step": s, **held_out_metrics(state.params)})
    last = curve[-1]
    print(
        f"{name:6s} seed {seed}: query accuracy {last['val_accuracy']:.4f}, "
        f"val_loss {last['val_loss']:.4f}, {train_time:.0f} s",
        flush=True,
    )
    return {
        "seed": seed,
        "curve": curve,
        "val_accuracy": last["val_accuracy"],
        "val_loss": last["val_loss"],
        "train_time_s": train_time,
        "ms_per_step": 1e3 * train_time / max(args.steps - 1, 1),
    }


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
    seed solid, the others faint), saved to ``path``; ``False`` without matplotlib.  Shared
    by this script and ``benchmarks/charlm_cells.py``."""
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


def plot(result: dict[str, Any], path: Path) -> bool:
    a = result["args"]
    return plot_curves(
        result,
        path,
        metric="val_accuracy",
        ylabel="held-out query accuracy",
        ylim=(0.0, 1.02),
        title=f"MQAR, {a['pairs']} pairs, {a['symbols']} keys/values, T={a['seq_len']}",
        baseline=(result["baseline"], "1/pairs (no binding)"),
    )


def markdown(result: dict[str, Any]) -> str:
    m, a = result["machine"], result["args"]
    seeds = ", ".join(str(s) for s in a["seeds"])
    lines = [
        f"MQAR (`jrnn.seqtasks.mqar`): {a['pairs']} key-value pairs, every key queried once, "
        f"{a['symbols']} keys and {a['symbols']} values, T = {a['seq_len']}. Per cell a "
        f"tagger (embedding {a['embed']}, {a['layers']} layer(s) of the cell, a linear "
        f"readout), the hidden size chosen to match the LSTM model's parameter count (mLSTM: "
        f"heads of {a['mlstm_head_dim']} units); {a['steps']} Adam steps of batch "
        f"{a['batch_size']} (peak lr {a['lr']}, warm-up and cosine decay to a tenth, clip 1), "
        f"seeds {seeds}; held-out: {4 * 256} fixed sequences. Baseline 1/pairs = "
        f"{result['baseline']:.3f} (no key-value binding). {m['cpu_model']} "
        f"({m['usable_cores']} cores, shared), {len(m['jax_devices'])} device(s), matmul "
        f"precision {m['jax_default_matmul_precision'] or 'default'}; {result['wall_s']:.0f} s "
        "in all.",
        "",
        f"Command: `{result['command']}`",
        "",
        "| cell | hidden | params | query accuracy | val loss | train time (s) | ms/step |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["cells"]:
        runs = row["runs"]
        acc = " / ".join(f"{r['val_accuracy']:.3f}" for r in runs)
        loss = " / ".join(f"{r['val_loss']:.3f}" for r in runs)
        total = sum(r["train_time_s"] for r in runs)
        ms = statistics.median(r["ms_per_step"] for r in runs)
        lines.append(
            f"| {row['cell']} | {row['hidden']} | {row['params']:,} | {acc} | {loss} "
            f"| {total:.0f} | {ms:.1f} |"
        )
    if len(a["seeds"]) > 1:
        lines += ["", f"Accuracy and loss per seed ({seeds}); time summed over the seeds."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cells",
        default="lstm,gru,mlstm,rglru,slstm",
        help="comma-separated; slstm is skipped where the library lacks it",
    )
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--symbols", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=64, help="the LSTM's hidden size")
    parser.add_argument("--embed", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--mlstm-head-dim", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--plot", default=str(PLOT))
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    factories = cell_factories(args.mlstm_head_dim)
    names = [n for n in args.cells.split(",") if n in factories]
    if "lstm" not in names:
        parser.error("--cells must include lstm (the reference parameter count)")

    start = time.perf_counter()
    rows = match_cells(names, factories, args.hidden, lambda cell: make_model(cell, args))
    for row in rows:
        factory, _ = factories[row["cell"]]
        row["runs"] = [train(row["cell"], factory(row["hidden"]), s, args) for s in args.seeds]

    argv_shown = argv if argv is not None else sys.argv[1:]
    result = {
        "machine": machine_info(),
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "plot")},
        "command": shlex.join(["python", "-m", "benchmarks.mqar_cells", *argv_shown]),
        "baseline": 1.0 / args.pairs,
        "cells": rows,
        "skipped": sorted(set(args.cells.split(",")) - set(names)),
        "wall_s": time.perf_counter() - start,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mqar_cells.json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result)
    (out / "mqar_cells.md").write_text(table)
    if plot(result, Path(args.plot)):
        print(f"plot: {args.plot}")
    print(table)


if __name__ == "__main__":
    main()
