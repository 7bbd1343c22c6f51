"""The run's plots: ``loss.png`` (training and validation curves) and the attention weights
of ``jrnn decode --plot``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jrnn.app.runs import GRAD_NORMS, read_rows

__all__ = ["plot_attention", "plot_loss"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss(out: Path, task: str, val_key: str, ylabel: str) -> None:
    """Draws ``out/loss.png`` from ``out/metrics.jsonl`` (written atomically): the training
    and validation curves, and below them the global gradient norm before and after
    clipping (log scale)."""
    plt = _pyplot()
    rows = read_rows(out / "metrics.jsonl")
    train = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
    val = [(r["step"], r[val_key]) for r in rows if r.get(val_key) is not None]
    fig, (ax, ax_norm) = plt.subplots(
        2, 1, figsize=(7, 6.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    for key, label in zip(GRAD_NORMS, ("before clipping", "after clipping"), strict=True):
        norms = [(r["step"], r[key]) for r in rows if r.get(key)]
        if norms:
            ax_norm.semilogy(*zip(*norms, strict=True), label=label, lw=1)
    ax_norm.set_xlabel("step")
    ax_norm.set_ylabel("gradient norm")
    ax_norm.grid(alpha=0.3)
    if ax_norm.lines:
        ax_norm.legend()
    if train:
        ax.plot(*zip(*train, strict=True), label="train", lw=1)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation", lw=1.5)
    ax.set_ylabel(ylabel)
    ax.set_title(f"jrnn {task}: {out.name}")
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend()
    fig.tight_layout()
    tmp = out / "loss.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out / "loss.png")


def plot_attention(task: Any, params: Any, path: Path) -> None:
    """Heat map of the greedy decoder's attention weights on the first held-out example."""
    import jax
    import numpy as np

    from jrnn import seqtasks
    from jrnn.decode import greedy_decode

    plt = _pyplot()
    batch = jax.tree.map(lambda a: a[:1], next(iter(task.eval_batches())))
    out = greedy_decode(
        task.model, params, batch.src, batch.src_lengths, max_len=batch.tgt_out.shape[1]
    )
    n_src, n_out = int(batch.src_lengths[0]), int(out.lengths[0])
    weights = np.asarray(out.attention[0, :n_out, :n_src])
    src = seqtasks.format_tokens(batch.src[0], n_src).split()
    dec = seqtasks.format_tokens(out.tokens[0], n_out).split()
    fig, ax = plt.subplots(figsize=(0.35 * n_src + 1.5, 0.35 * n_out + 1.2))
    ax.imshow(weights, cmap="Greys", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(n_src), src)
    ax.set_yticks(range(n_out), dec)
    ax.set_xlabel("source")
    ax.set_ylabel("decoded")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
