"""Learning curves of the adding problem as T grows, per cell, within one fixed budget.

Each of the Elman (tanh) RNN, the LSTM (forget bias 1, the library default) and Cho's GRU is
trained with ``jrnn train --task adding`` defaults (hidden 64, batch 64, Adam with warm-up
and cosine decay, lr 1e-2, global-norm clipping 1) for the same number of steps at
``T in {50, 100, 200}``; the validation MSE is recorded every ``EVAL_EVERY`` steps on the
task's fixed held-out set.  The baseline of predicting 1.0 is an MSE of 1/6 ≈ 0.167; a cell
"solves" a length when its final validation MSE is below 0.01 (the usual threshold, e.g. in
the IRNN and uRNN papers, is about a tenth of the baseline or lower).

Writes ``docs/diagnostics/adding_curves.{json,png}`` and prints the markdown table of the
final validation MSE (and the first step where it fell below 0.01).

Run: ``PYTHONPATH=$PWD python benchmarks/adding_curves.py [--steps N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import jax

from jrnn.app import Config, fit
from jrnn.app.runs import read_rows

CELLS = ("rnn", "lstm", "gru")
LENGTHS = (50, 100, 200)
EVAL_EVERY = 100
SOLVED = 0.01
OUT = Path(__file__).resolve().parents[1] / "docs" / "diagnostics"


def curve(cell: str, seq_len: int, steps: int, seed: int) -> tuple[list[list[float]], float]:
    config = Config(
        task="adding",
        cell=cell,
        seq_len=seq_len,
        steps=steps,
        eval_every=EVAL_EVERY,
        checkpoint_every=steps,
        seed=seed,
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        fit(config, Path(tmp) / "run", progress=False)
        seconds = time.perf_counter() - start
        rows = read_rows(Path(tmp) / "run" / "metrics.jsonl")
    return [[r["step"], r["val_mse"]] for r in rows if "val_mse" in r], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="training steps per run (1000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    results: dict[str, dict[str, dict]] = {}
    for seq_len in LENGTHS:
        for cell in CELLS:
            points, seconds = curve(cell, seq_len, args.steps, args.seed)
            solved = next((s for s, v in points if v < SOLVED), None)
            results.setdefault(str(seq_len), {})[cell] = {
                "val_mse": points,
                "final_val_mse": points[-1][1],
                "first_step_below_0.01": solved,
                "seconds": round(seconds, 1),
            }
            print(f"T={seq_len} {cell}: final val_mse {points[-1][1]:.4f} ({seconds:.0f} s)")

    OUT.mkdir(parents=True, exist_ok=True)
    meta = {
        "task": "adding problem, jrnn train --task adding defaults (hidden 64, batch 64)",
        "steps": args.steps,
        "seed": args.seed,
        "solved_threshold": SOLVED,
        "baseline_mse": 1 / 6,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "backend": jax.default_backend(),
        "matmul_precision": str(jax.config.jax_default_matmul_precision or "default"),
        "results": results,
    }
    (OUT / "adding_curves.json").write_text(json.dumps(meta, indent=1) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(LENGTHS), figsize=(15, 4.2), sharey=True)
    for ax, seq_len in zip(axes, LENGTHS, strict=True):
        for cell, r in results[str(seq_len)].items():
            steps, mse = zip(*r["val_mse"], strict=True)
            ax.semilogy(steps, mse, "o-", ms=3, label=cell)
        ax.axhline(1 / 6, color="gray", ls="--", lw=1, label="predict 1.0")
        ax.axhline(SOLVED, color="k", ls=":", lw=1, label="solved (0.01)")
        ax.set_title(f"adding problem, T = {seq_len}")
        ax.set_xlabel("training step")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("validation MSE")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "adding_curves.png", dpi=100)

    print(f"\nfinal validation MSE after {args.steps} steps (first step below {SOLVED})\n")
    print("| cell | " + " | ".join(f"T = {n}" for n in LENGTHS) + " |")
    print("|---|" + "---:|" * len(LENGTHS))
    for cell in CELLS:
        cells = []
        for n in LENGTHS:
            r = results[str(n)][cell]
            first = r["first_step_below_0.01"]
            cells.append(f"{r['final_val_mse']:.4f} ({first if first is not None else '—'})")
        print(f"| {cell} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
