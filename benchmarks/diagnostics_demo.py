"""Vanishing and exploding gradients on the adding problem, at initialisation.

For each cell and ``T in {50, 100, 200}``: ``‖∂L/∂h_t‖₂`` (:func:`jrnn.diagnostics.
state_grad_norms`) for ``t = T`` down to ``t = 1`` (1-based), with ``L`` the mean squared
error of a linear read-out of ``h_T`` on a batch of the adding problem
(:func:`jrnn.seqtasks.adding_problem`).  Cells: the Elman (tanh) RNN, the same with its recurrent
weights scaled by 1.5 (orthogonal init times 1.5), an LSTM with forget-gate bias 0 and 1, and
Cho's GRU, all at hidden size 64 with the library's default initialisation, computed in float64 (the
smallest norms underflow float32).

Writes ``docs/diagnostics/adding_grad_norms.{json,png}`` and prints a markdown table of the
ratio ``‖∂L/∂h_1‖ / ‖∂L/∂h_T‖`` (batch mean of the per-sequence norms); a ratio far below 1
is a vanishing gradient, far above 1 an exploding one.

Run: ``PYTHONPATH=$PWD python benchmarks/diagnostics_demo.py``.
"""

from __future__ import annotations

import json
import os
import time

import jax

jax.config.update("jax_enable_x64", True)  # float64: the vanishing norms underflow float32

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jrnn  # noqa: E402
from jrnn.diagnostics import plot_grad_norms, state_grad_norms  # noqa: E402
from jrnn.seqtasks import adding_problem  # noqa: E402

F64 = jnp.float64

HIDDEN, BATCH, LENGTHS = 64, 32, (50, 100, 200)
OUT = os.path.join(os.path.dirname(__file__), "..", "docs", "diagnostics")


def scaled_rnn_params(cell, key, input_size, scale=1.5):
    params = cell.init(key, input_size)
    return {**params, "w_hh": scale * params["w_hh"]}


CELLS = {
    "rnn (tanh)": (jrnn.simple_rnn(HIDDEN, param_dtype=F64), None),
    "rnn (tanh), w_hh x1.5": (jrnn.simple_rnn(HIDDEN, param_dtype=F64), scaled_rnn_params),
    "lstm, forget bias 0": (jrnn.lstm(HIDDEN, forget_bias=0.0, param_dtype=F64), None),
    "lstm, forget bias 1": (jrnn.lstm(HIDDEN, forget_bias=1.0, param_dtype=F64), None),
    "gru": (jrnn.gru(HIDDEN, param_dtype=F64), None),
}


def grad_norms(cell, make_params, seq_len, key):
    k_data, k_cell, k_out = jax.random.split(key, 3)
    xs, ys = adding_problem(k_data, BATCH, seq_len)
    xs, ys = xs.astype(F64), ys.astype(F64)
    params = (make_params or (lambda c, k, i: c.init(k, i)))(cell, k_cell, 2)
    w_out = jax.nn.initializers.lecun_normal()(k_out, (cell.output_size, 1), F64)

    def loss_fn(outputs):
        pred = (outputs[:, -1] @ w_out)[:, 0]
        return jnp.mean((pred - ys) ** 2)

    return np.asarray(state_grad_norms(cell, params, xs, loss_fn))  # [B, T]


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    key = jax.random.key(0)
    start = time.perf_counter()
    results: dict[str, dict[str, dict]] = {}
    for seq_len in LENGTHS:
        for label, (cell, make_params) in CELLS.items():
            g = grad_norms(cell, make_params, seq_len, jax.random.fold_in(key, seq_len))
            mean = g.mean(axis=0)  # [T]: batch mean of ‖∂L/∂h_t‖
            results.setdefault(str(seq_len), {})[label] = {
                "grad_norm_mean": [float(v) for v in mean],
                "ratio_first_over_last": float(mean[0] / mean[-1]),
            }
    seconds = time.perf_counter() - start

    with open(os.path.join(OUT, "adding_grad_norms.json"), "w") as f:
        json.dump(
            {
                "task": "adding problem (jrnn.seqtasks.adding_problem), MSE of a linear read-out",
                "hidden_size": HIDDEN,
                "batch_size": BATCH,
                "quantity": "batch mean of ||dL/dh_t||_2, t = 1..T (index 0 is t = 1)",
                "backend": jax.default_backend(),
                "seconds": round(seconds, 1),
                "results": results,
            },
            f,
            indent=1,
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(LENGTHS), figsize=(15, 4.2), sharey=True)
    for ax, seq_len in zip(axes, LENGTHS, strict=True):
        curves = {k: v["grad_norm_mean"] for k, v in results[str(seq_len)].items()}
        plot_grad_norms(curves, ax=ax, title=f"adding problem, T = {seq_len}, at initialisation")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "adding_grad_norms.png"), dpi=110)

    print("‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ (batch mean of per-sequence norms), adding problem, init\n")
    print("| cell | " + " | ".join(f"T = {n}" for n in LENGTHS) + " |")
    print("|---|" + "---:|" * len(LENGTHS))
    for label in CELLS:
        cells = [f"{results[str(n)][label]['ratio_first_over_last']:.3g}" for n in LENGTHS]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\n({seconds:.1f} s on {jax.default_backend()})")


if __name__ == "__main__":
    main()
