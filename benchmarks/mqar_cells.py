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
cosine decay to a tenth) and gradient clipping; the held-out set is fixed.  The matching,
the training loop and the result files are ``benchmarks.cell_comparison``'s.

Writes ``benchmarks/results/mqar_cells.{json,md}`` and the plot ``docs/assets/mqar_cells.png``
(held-out query accuracy against training step, one line per cell and seed) and prints the
table.  Each cell trains in this process, one after the other.

Run: ``PYTHONPATH=$PWD nice -n 19 python -m benchmarks.mqar_cells [--steps 1500]
[--seeds 0,1]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jrnn
from benchmarks import cell_comparison as cc
from jrnn import seqtasks
from jrnn.losses import sequence_softmax_cross_entropy

VAL_KEY = 20240328  # the held-out set, the same for every cell and seed


def make_model(cell: Any, args: Any) -> Any:
    vocab = seqtasks.mqar_vocab_size(args.symbols)
    return jrnn.tagger(cell, vocab, vocab_size=vocab, embed_size=args.embed, num_layers=args.layers)


def batches(args: Any, key: jax.Array, size: int):
    return seqtasks.mqar(key, size, args.pairs, args.symbols, seq_len=args.seq_len)


def train(name: str, cell: Any, seed: int, args: Any) -> dict[str, Any]:
    """One cell, one seed: the held-out query accuracy and loss curve."""
    model = make_model(cell, args)

    def loss_fn(params, batch, key):
        logits, _ = model.apply(params, batch.inputs)
        return sequence_softmax_cross_entropy(logits, batch.targets, mask=batch.mask), {}

    held_out = [
        batches(args, jax.random.fold_in(jax.random.key(VAL_KEY), i), 256) for i in range(4)
    ]

    @jax.jit
    def sums(params, batch):
        logits, _ = model.apply(params, batch.inputs)
        loss = sequence_softmax_cross_entropy(
            logits, batch.targets, mask=batch.mask, reduction="sum"
        ).sum()
        hits = (jnp.argmax(logits, -1).astype(jnp.int32) == batch.targets) & batch.mask
        return loss, hits.sum(), batch.mask.sum()

    def evaluate(params, _losses) -> dict[str, float]:
        total = np.sum([np.asarray(sums(params, b), np.float64) for b in held_out], axis=0)
        return {"val_accuracy": total[1] / total[2], "val_loss": total[0] / total[2]}

    make = lambda k: batches(args, k, args.batch_size)
    return cc.fit(name, seed, model, loss_fn, make, evaluate, args)


def plot(result: dict[str, Any], path: Path) -> bool:
    a = result["args"]
    return cc.plot_curves(
        result,
        path,
        metric="val_accuracy",
        ylabel="held-out query accuracy",
        ylim=(0.0, 1.02),
        title=f"MQAR, {a['pairs']} pairs, {a['symbols']} keys/values, T={a['seq_len']}",
        baseline=(result["baseline"], "1/pairs (no binding)"),
    )


def markdown(result: dict[str, Any]) -> str:
    a = result["args"]
    lines = [
        f"MQAR (`jrnn.seqtasks.mqar`): {a['pairs']} key-value pairs, every key queried once, "
        f"{a['symbols']} keys and {a['symbols']} values, T = {a['seq_len']}. Per cell a "
        f"tagger (embedding {a['embed']}, {a['layers']} layer(s) of the cell, a linear "
        f"readout), {cc.recipe(result)} Held-out: {4 * 256} fixed sequences. Baseline "
        f"1/pairs = {result['baseline']:.3f} (no key-value binding).",
        "",
        f"Command: `{result['command']}`",
        "",
        *cc.table(result, [("query accuracy", "val_accuracy"), ("val loss", "val_loss")]),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = cc.parser(__doc__, "mqar_cells", hidden=64, embed=32, mlstm_head_dim=16, steps=1500,
                  batch_size=64, lr=5e-3)  # fmt: skip
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--symbols", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=16)
    args = cc.parse(p, argv)
    result = cc.compare(
        "mqar_cells",
        args,
        argv,
        lambda cell: make_model(cell, args),
        lambda name, cell, seed: train(name, cell, seed, args),
        baseline=1.0 / args.pairs,
    )
    cc.write("mqar_cells", result, args, markdown, plot)


if __name__ == "__main__":
    main()
