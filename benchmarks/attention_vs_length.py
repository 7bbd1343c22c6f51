"""Why attention exists: an encoder-decoder with and without attention on sequence reversal,
accuracy by source length.

    python -m benchmarks.attention_vs_length [--steps 1500] [--min-len 5] [--max-len 20]
        [--num-symbols 20] [--per-length 256] [--seed 0] [--out bench_out] [--replot]

Both models are exactly what ``jrnn train --task reverse --model {attention,seq2seq}``
builds with its defaults (bidirectional LSTM encoder, LSTM decoder, hidden 128, embeddings
32, Adam with warm-up and cosine decay, batches of 64 with lengths ``min_len..max_len``), and
train for the same number of steps on the same batches.  Without attention the decoder
sees the source only through the encoder's final state (a fixed-size vector); with it, it
reads every encoder state through Luong's general score.  Each is then evaluated with
greedy decoding on ``--per-length`` held-out sequences of every length: token accuracy and
exact (whole-sequence) match.  Writes ``attention_vs_length.json`` and
``attention_vs_length.png`` to ``--out`` (``--replot`` redraws the PNG from the JSON there).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jrnn import seqtasks
from jrnn.app.config import Config, defaults
from jrnn.app.loop import build_state
from jrnn.decode import greedy_decode
from jrnn.train import make_train_step

ARCHS = ("attention", "seq2seq")
LABELS = {"attention": "with attention (Luong general)", "seq2seq": "without attention"}


def _config(args: argparse.Namespace, arch: str) -> Config:
    return Config(
        task="reverse",
        arch=arch,
        steps=args.steps,
        min_len=args.min_len,
        seq_len=args.max_len,
        num_symbols=args.num_symbols,
        seed=args.seed,
    )


def _test_set(length: int, args: argparse.Namespace) -> seqtasks.SeqBatch:
    """``per_length`` reversals of exactly ``length`` symbols, padded to ``max_len``."""
    key = jax.random.fold_in(jax.random.key(20240328), length)
    b = seqtasks.reverse_task(key, args.per_length, length, length, args.num_symbols)
    pad = args.max_len - length
    return seqtasks.SeqBatch(
        jnp.pad(b.src, ((0, 0), (0, pad))),
        b.src_lengths,
        jnp.pad(b.tgt_in, ((0, 0), (0, pad))),
        jnp.pad(b.tgt_out, ((0, 0), (0, pad))),
        b.tgt_lengths,
    )


def _train_and_measure(args: argparse.Namespace, arch: str) -> dict:
    config = _config(args, arch)
    task, optimizer, state, _ = build_state(config)
    step = make_train_step(task.loss_fn, optimizer, clip_norm=config.clip)
    batch_fn = jax.jit(task.batch_fn)
    t0 = time.perf_counter()
    for s in range(config.steps):
        state, m = step(state, batch_fn(task.data, jnp.asarray(s, jnp.int32)))
    jax.block_until_ready(state.params)
    train_s = time.perf_counter() - t0
    model, params = task.model, state.params
    decode = jax.jit(
        lambda p, src, lengths: greedy_decode(model, p, src, lengths, max_len=args.max_len + 1)
    )
    lengths, token_acc, exact = [], [], []
    for n in range(args.min_len, args.max_len + 1):
        b = _test_set(n, args)
        tokens = np.asarray(decode(params, b.src, b.src_lengths).tokens)
        want = np.asarray(b.tgt_out)
        valid = np.arange(want.shape[1])[None, :] < np.asarray(b.tgt_lengths)[:, None]
        hits = (tokens == want) & valid
        lengths.append(n)
        token_acc.append(float(hits.sum() / valid.sum()))
        exact.append(float((hits | ~valid).all(axis=1).mean()))
        print(f"{arch:9s} length {n:2d}: token accuracy {token_acc[-1]:.4f}  exact {exact[-1]:.4f}")
    return {
        "model": model.name,
        "train_seconds": round(train_s, 1),
        "final_train_loss": float(m["loss"]),
        "lengths": lengths,
        "token_accuracy": token_acc,
        "exact": exact,
        "mean_token_accuracy": float(np.mean(token_acc)),
        "mean_exact": float(np.mean(exact)),
    }


def _plot(results: dict, args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.4), sharex=True)
    for arch, style in zip(ARCHS, ("o-", "s--"), strict=True):
        r = results[arch]
        axes[0].plot(r["lengths"], r["token_accuracy"], style, ms=3.5, label=LABELS[arch])
        axes[1].plot(r["lengths"], r["exact"], style, ms=3.5, label=LABELS[arch])
    for ax, title in zip(axes, ("token accuracy", "exact match (whole sequence)"), strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("source length")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle(
        f"Reversal, {args.num_symbols} symbols, trained on lengths {args.min_len}-{args.max_len}, "
        f"{args.steps} steps each (greedy decoding)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    reverse = defaults("reverse")
    ap.add_argument("--steps", type=int, default=reverse["steps"])
    ap.add_argument("--min-len", type=int, default=reverse["min_len"])
    ap.add_argument("--max-len", type=int, default=reverse["seq_len"])
    ap.add_argument("--num-symbols", type=int, default=reverse["num_symbols"])
    ap.add_argument("--per-length", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench_out")
    ap.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON")
    args = ap.parse_args(argv)
    if not 1 <= args.min_len <= args.max_len:
        ap.error(f"need 1 <= --min-len <= --max-len, got {args.min_len} and {args.max_len}")
    out = Path(args.out)
    if args.replot:
        report = json.loads((out / "attention_vs_length.json").read_text())
        saved = argparse.Namespace(**report["settings"])
        _plot(report["results"], saved, out / "attention_vs_length.png")
        return report
    out.mkdir(parents=True, exist_ok=True)
    results = {arch: _train_and_measure(args, arch) for arch in ARCHS}
    report = {
        "task": "reverse",
        "settings": vars(args),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "results": results,
    }
    (out / "attention_vs_length.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(results, args, out / "attention_vs_length.png")
    for arch in ARCHS:
        r = results[arch]
        print(
            f"{arch}: mean token accuracy {r['mean_token_accuracy']:.4f}, mean exact "
            f"{r['mean_exact']:.4f}, trained in {r['train_seconds']} s"
        )
    print(f"wrote {out / 'attention_vs_length.json'} and {out / 'attention_vs_length.png'}")
    return report


if __name__ == "__main__":
    main()
