"""The five cells on the character language model at matched parameter counts.

Each cell is trained as the ``jrnn train --task charlm`` model (``jrnn.sequence_model`` over
``jrnn.stack``: a character embedding, ``--layers`` layers of the cell, a linear readout
over the vocabulary; two layers by default: the mLSTM's and the RG-LRU's recurrences are
linear in the state and one layer leaves only the readout after them, so two give every cell
a nonlinear stage between recurrences, as in ``benchmarks.mqar_cells``) on a slice of the
default corpus (the Python standard-library source, ``jrnn.data.load_corpus`` with
``--max-chars``).  The cells are the LSTM (the reference, ``--hidden``), the GRU, xLSTM's
mLSTM (``--mlstm-head-dim`` units per head), Griffin's RG-LRU and, when the library has it,
xLSTM's sLSTM; each other cell's hidden size is the one whose model has the parameter count
nearest the LSTM model's (within 10%, checked; ``benchmarks.mqar_cells.match_cells``, the
counts printed and recorded).  Every cell gets the same stream of random training windows
(one per seed), steps, batch, window, Adam learning-rate schedule (the ``jrnn train`` one:
linear warm-up, cosine decay to a tenth) and gradient clipping at 1.

Every ``--eval-every`` steps the held-out bits/char are measured on the whole held-out text
(``jrnn.data.eval_windows``: ``--eval-batch-size`` contiguous streams, the state carried from
window to window, as the app evaluates), with the training bits/char (the mean over the
training batches since the last evaluation).

Writes ``benchmarks/results/charlm_cells.{json,md}`` and the plot
``docs/assets/charlm_cells.png`` (held-out bits/char against training step, one line per
cell and seed) and prints the table.  Each cell trains in this process, one after the other.

Run: ``PYTHONPATH=$PWD nice -n 19 python -m benchmarks.charlm_cells [--steps 1000]
[--seeds 0]``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jrnn
from benchmarks.measure import machine_info
from benchmarks.mqar_cells import cell_factories, match_cells, plot_curves
from jrnn import data as jdata
from jrnn.losses import sequence_softmax_cross_entropy

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
PLOT = ROOT / "docs" / "assets" / "charlm_cells.png"
LN2 = math.log(2.0)


def make_model(cell: Any, vocab_size: int, args: argparse.Namespace) -> Any:
    """The charlm task's model (``jrnn.app.tasks.common.make_model``) for ``cell``."""
    rnn = jrnn.stack(cell, num_layers=args.layers)
    return jrnn.sequence_model(rnn, vocab_size, vocab_size=vocab_size, embed_size=args.embed)


def make_evaluate(model: Any, val: np.ndarray, args: argparse.Namespace):
    """``params -> held-out bits/char`` over the whole held-out text, the state carried
    from window to window of each stream."""
    windows = list(jdata.eval_windows(val, args.eval_batch_size, args.seq_len))

    @jax.jit
    def window(params, carry, ids, lengths):
        logits, (carry, _) = model.apply(params, ids[:, :-1], carry=carry, lengths=lengths)
        total = sequence_softmax_cross_entropy(logits, ids[:, 1:], lengths, reduction="sum")
        return carry, total.sum()

    def evaluate(params) -> float:
        carry = model.initial_carry(params, (args.eval_batch_size,))
        total, count = 0.0, 0
        for b in windows:
            carry, loss = window(params, carry, b.windows, b.lengths)
            total += float(loss)
            count += int(b.lengths.sum())
        return total / count / LN2

    return evaluate


def train(name: str, cell: Any, seed: int, corpus: Any, args: argparse.Namespace) -> dict:
    """One cell, one seed: the held-out and training bits/char curves and the final figures."""
    model = make_model(cell, corpus.vocab.size, args)
    ids = jnp.asarray(corpus.train, jnp.int32)

    def loss_fn(params, windows, key):
        logits, _ = model.apply(params, windows[:, :-1])
        return sequence_softmax_cross_entropy(logits, windows[:, 1:]), {}

    warmup = min(100, max(args.steps // 10, 1))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, args.lr, warmup_steps=warmup, decay_steps=args.steps, end_value=args.lr / 10
    )
    optimizer = optax.adam(schedule)
    k_init, k_data, k_train = jax.random.split(jax.random.key(seed), 3)
    state = jrnn.init_train_state(model.init(k_init), optimizer, k_train)
    step = jrnn.make_train_step(loss_fn, optimizer, clip_norm=1.0)
    make = jax.jit(lambda k: jdata.random_windows(ids, k, args.batch_size, args.seq_len))
    evaluate = make_evaluate(model, np.asarray(corpus.val), args)

    curve: list[dict[str, float]] = []
    losses: list[jax.Array] = []
    train_time = eval_time = 0.0
    for s in range(1, args.steps + 1):
        batch = make(jax.random.fold_in(k_data, s))
        start = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics["loss"])
        if s > 1:  # the first step compiles
            train_time += time.perf_counter() - start
        losses.append(metrics["loss"])
        if s % args.eval_every == 0 or s == args.steps:
            start = time.perf_counter()
            val_bpc = evaluate(state.params)
            eval_time += time.perf_counter() - start
            train_bpc = float(np.mean(jax.device_get(losses))) / LN2
            curve.append({"step": s, "val_bpc": val_bpc, "train_bpc": train_bpc})
            losses = []
    last = curve[-1]
    print(
        f"{name:6s} seed {seed}: held-out {last['val_bpc']:.4f} bits/char, "
        f"train {last['train_bpc']:.4f}, {train_time:.0f} s (+ {eval_time:.0f} s eval)",
        flush=True,
    )
    return {
        "seed": seed,
        "curve": curve,
        "val_bpc": last["val_bpc"],
        "best_val_bpc": min(p["val_bpc"] for p in curve),
        "train_bpc": last["train_bpc"],
        "train_time_s": train_time,
        "eval_time_s": eval_time,
        "ms_per_step": 1e3 * train_time / max(args.steps - 1, 1),
    }


def plot(result: dict[str, Any], path: Path) -> bool:
    a = result["args"]
    finals = [r["val_bpc"] for row in result["cells"] for r in row["runs"]]
    return plot_curves(
        result,
        path,
        metric="val_bpc",
        ylabel="held-out bits/char",
        ylim=(max(0.0, min(finals) - 0.3), min(result["baseline"], max(finals) + 1.5)),
        title=f"char LM, {a['layers']} layer(s), T={a['seq_len']}, {a['steps']} steps",
    )


def markdown(result: dict[str, Any]) -> str:
    m, a, d = result["machine"], result["args"], result["data"]
    seeds = ", ".join(str(s) for s in a["seeds"])
    passes = a["steps"] * a["batch_size"] * a["seq_len"] / d["train_chars"]
    lines = [
        f"Character LM on the first {a['max_chars']:,} characters of the default corpus "
        f"(the Python standard-library source: {d['train_chars']:,} training characters, "
        f"{d['val_chars']:,} held out, vocabulary {d['vocab_size']}). Per cell the "
        f"`jrnn train --task charlm` model (embedding {a['embed']}, {a['layers']} layer(s) of "
        f"the cell, a linear readout), the hidden size chosen to match the LSTM model's "
        f"parameter count (mLSTM: heads of {a['mlstm_head_dim']} units); {a['steps']} Adam "
        f"steps of batch {a['batch_size']} x {a['seq_len']} characters ({passes:.1f} passes "
        f"over the training text; peak lr {a['lr']}, warm-up and cosine decay to a tenth, "
        f"clip 1), seeds {seeds}. Held-out bits/char on the whole held-out text every "
        f"{a['eval_every']} steps; training bits/char the mean over the training batches of "
        f"the last {a['eval_every']} steps. Uniform over the vocabulary: "
        f"{result['baseline']:.2f} bits/char. {m['cpu_model']} ({m['usable_cores']} cores, "
        f"shared), {len(m['jax_devices'])} device(s), matmul precision "
        f"{m['jax_default_matmul_precision'] or 'default'}; {result['wall_s']:.0f} s in all.",
        "",
        f"Command: `{result['command']}`",
        "",
        "| cell | hidden | params | held-out bpc, final | held-out bpc, best | train bpc, "
        "final | train time (s) | ms/step |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["cells"]:
        runs = row["runs"]
        val = " / ".join(f"{r['val_bpc']:.3f}" for r in runs)
        best = " / ".join(f"{r['best_val_bpc']:.3f}" for r in runs)
        tr = " / ".join(f"{r['train_bpc']:.3f}" for r in runs)
        total = sum(r["train_time_s"] for r in runs)
        ms = statistics.median(r["ms_per_step"] for r in runs)
        lines.append(
            f"| {row['cell']} | {row['hidden']} | {row['params']:,} | {val} | {best} | {tr} "
            f"| {total:.0f} | {ms:.1f} |"
        )
    if len(a["seeds"]) > 1:
        lines += ["", f"Bits/char per seed ({seeds}); time summed over the seeds."]
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cells",
        default="lstm,gru,mlstm,rglru,slstm",
        help="comma-separated; slstm is skipped where the library lacks it",
    )
    parser.add_argument("--max-chars", type=int, default=200_000)
    parser.add_argument("--hidden", type=int, default=128, help="the LSTM's hidden size")
    parser.add_argument("--embed", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--mlstm-head-dim", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--plot", default=str(PLOT))
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    if "lstm" not in args.cells.split(","):
        parser.error("--cells must include lstm (the reference parameter count)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    factories = cell_factories(args.mlstm_head_dim)
    names = [n for n in args.cells.split(",") if n in factories]

    start = time.perf_counter()
    corpus = jdata.load_corpus(None, max_chars=args.max_chars)
    vocab = corpus.vocab.size
    rows = match_cells(names, factories, args.hidden, lambda c: make_model(c, vocab, args))
    for row in rows:
        factory, _ = factories[row["cell"]]
        runs = [train(row["cell"], factory(row["hidden"]), s, corpus, args) for s in args.seeds]
        row["runs"] = runs

    argv_shown = argv if argv is not None else sys.argv[1:]
    result = {
        "machine": machine_info(),
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "plot")},
        "command": shlex.join(["python", "-m", "benchmarks.charlm_cells", *argv_shown]),
        "data": {
            "train_chars": int(corpus.train.shape[0]),
            "val_chars": int(corpus.val.shape[0]),
            "vocab_size": vocab,
        },
        "baseline": math.log2(vocab),
        "cells": rows,
        "skipped": sorted(set(args.cells.split(",")) - set(names)),
        "wall_s": time.perf_counter() - start,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "charlm_cells.json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result)
    (out / "charlm_cells.md").write_text(table)
    if plot(result, Path(args.plot)):
        print(f"plot: {args.plot}")
    print(table)
    assert all(math.isfinite(r["val_bpc"]) for row in rows for r in row["runs"])


if __name__ == "__main__":
    main()
