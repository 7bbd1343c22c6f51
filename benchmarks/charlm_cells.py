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
nearest the LSTM model's (within 10%, checked; ``benchmarks.cell_comparison``, the
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

import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jrnn
from benchmarks import cell_comparison as cc
from jrnn import data as jdata
from jrnn.losses import sequence_softmax_cross_entropy

LN2 = math.log(2.0)


def make_model(cell: Any, vocab_size: int, args: Any) -> Any:
    """The charlm task's model (``jrnn.app.tasks.common.make_model``) for ``cell``."""
    rnn = jrnn.stack(cell, num_layers=args.layers)
    return jrnn.sequence_model(rnn, vocab_size, vocab_size=vocab_size, embed_size=args.embed)


def make_evaluate(model: Any, val: np.ndarray, args: Any):
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


def train(name: str, cell: Any, seed: int, corpus: Any, args: Any) -> dict[str, Any]:
    """One cell, one seed: the held-out and training bits/char curves."""
    model = make_model(cell, corpus.vocab.size, args)
    ids = jnp.asarray(corpus.train, jnp.int32)

    def loss_fn(params, windows, key):
        logits, _ = model.apply(params, windows[:, :-1])
        return sequence_softmax_cross_entropy(logits, windows[:, 1:]), {}

    held_out = make_evaluate(model, np.asarray(corpus.val), args)

    def evaluate(params, losses) -> dict[str, float]:
        train_bpc = float(np.mean(jax.device_get(losses))) / LN2
        return {"val_bpc": held_out(params), "train_bpc": train_bpc}

    make = lambda k: jdata.random_windows(ids, k, args.batch_size, args.seq_len)
    run = cc.fit(name, seed, model, loss_fn, make, evaluate, args)
    return run | {"best_val_bpc": min(p["val_bpc"] for p in run["curve"])}


def plot(result: dict[str, Any], path: Path) -> bool:
    a = result["args"]
    finals = [r["val_bpc"] for row in result["cells"] for r in row["runs"]]
    return cc.plot_curves(
        result,
        path,
        metric="val_bpc",
        ylabel="held-out bits/char",
        ylim=(max(0.0, min(finals) - 0.3), min(result["baseline"], max(finals) + 1.5)),
        title=f"char LM, {a['layers']} layer(s), T={a['seq_len']}, {a['steps']} steps",
    )


def markdown(result: dict[str, Any]) -> str:
    a, d = result["args"], result["data"]
    passes = a["steps"] * a["batch_size"] * a["seq_len"] / d["train_chars"]
    lines = [
        f"Character LM on the first {a['max_chars']:,} characters of the default corpus "
        f"(the Python standard-library source: {d['train_chars']:,} training characters, "
        f"{d['val_chars']:,} held out, vocabulary {d['vocab_size']}). Per cell the "
        f"`jrnn train --task charlm` model (embedding {a['embed']}, {a['layers']} layer(s) of "
        f"the cell, a linear readout), windows of {a['seq_len']} characters ({passes:.1f} "
        f"passes over the training text), {cc.recipe(result)} Held-out bits/char on the "
        f"whole held-out text every {a['eval_every']} steps; training bits/char the mean "
        f"over the training batches of the last {a['eval_every']} steps. Uniform over the "
        f"vocabulary: {result['baseline']:.2f} bits/char.",
        "",
        f"Command: `{result['command']}`",
        "",
        *cc.table(
            result,
            [
                ("held-out bpc, final", "val_bpc"),
                ("held-out bpc, best", "best_val_bpc"),
                ("train bpc, final", "train_bpc"),
            ],
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = cc.parser(__doc__, "charlm_cells", hidden=128, embed=64, mlstm_head_dim=32,
                  steps=1000, batch_size=32, lr=3e-3)  # fmt: skip
    p.add_argument("--max-chars", type=int, default=200_000)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--eval-batch-size", type=int, default=64)
    args = cc.parse(p, argv)
    corpus = jdata.load_corpus(None, max_chars=args.max_chars)
    vocab = corpus.vocab.size
    result = cc.compare(
        "charlm_cells",
        args,
        argv,
        lambda cell: make_model(cell, vocab, args),
        lambda name, cell, seed: train(name, cell, seed, corpus, args),
        data={
            "train_chars": int(corpus.train.shape[0]),
            "val_chars": int(corpus.val.shape[0]),
            "vocab_size": vocab,
        },
        baseline=math.log2(vocab),
    )
    cc.write("charlm_cells", result, args, markdown, plot)
    assert all(math.isfinite(r["val_bpc"]) for row in result["cells"] for r in row["runs"])


if __name__ == "__main__":
    main()
