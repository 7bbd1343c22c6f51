"""A cell of your own against the built-in LSTM: the cost of ``jrnn.custom_cell``.

Three implementations of the same LSTM (gates ``i, f, g, o``, the same parameters), timed
in one process in interleaved rounds:

* ``built-in``: ``jrnn.lstm(H)``;
* ``custom, step only``: ``jrnn.custom_cell(init, step)`` with the step written out in
  ``jnp`` (what a researcher writes first): ``unroll`` runs it inside ``lax.scan`` and
  differentiates it by autodiff;
* ``custom + FastPath``: the same cell also giving ``fast=jrnn.FastPath(project,
  recurrent_kernel, gates)``: ``unroll`` then picks the built-in cell's strategies (the
  hoisted projection, the hand-structured backward) by the same rules.

Per configuration and mode (``train``: ``jax.jit(jax.grad)`` of a sum of squares through
``unroll``, forward and BPTT; ``forward``: ``jax.jit`` of ``unroll``), tokens/s (median of
the rounds) and each custom cell over the built-in one.  Writes
``benchmarks/results/custom_cell.{json,md}``.

Run: ``PYTHONPATH=$PWD python benchmarks/custom_cell.py [--rounds N] [--configs ...]``
(about 5 minutes on 2 cores at the default small, medium and long).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import jrnn
from benchmarks.measure import machine_info, write_result

CONFIGS = {
    "small": (32, 64, 64, 128),
    "medium": (64, 128, 128, 256),
    "long": (8, 4096, 64, 256),
}
OUT = Path(__file__).resolve().parent / "results"


def user_lstm(hidden_size: int, fast: bool) -> jrnn.Cell:
    """An LSTM as a user writes it: init, step (and the FastPath pieces)."""
    H = hidden_size

    def init(key, input_size):
        k1, k2 = jax.random.split(key)
        return {
            "w_ih": jax.random.normal(k1, (input_size, 4 * H)) / jnp.sqrt(input_size),
            "w_hh": jax.random.normal(k2, (H, 4 * H)) / jnp.sqrt(H),
            "b": jnp.zeros(4 * H).at[H : 2 * H].set(1.0),
        }

    def project(p, x):
        return x @ p["w_ih"] + p["b"]

    def recurrent_kernel(p):
        return p["w_hh"]

    def gates(p, carry, xa, ha):
        i, f, g, o = jnp.split(xa + ha, 4, axis=-1)
        c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return jrnn.LSTMState(h, c), h

    def step(p, carry, x):
        return gates(p, carry, project(p, x), carry.h @ p["w_hh"])

    def initial_carry(p, batch_shape=()):
        zeros = jnp.zeros((*batch_shape, H), p["w_hh"].dtype)
        return jrnn.LSTMState(zeros, zeros)

    path = jrnn.FastPath(project, recurrent_kernel, gates) if fast else None
    name = "user_lstm_fast" if fast else "user_lstm"
    return jrnn.custom_cell(init, step, initial_carry=initial_carry, name=name, fast=path)


def _time(fn, *args, iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / iters


def _functions(cell, mode):
    if mode == "forward":
        return jax.jit(lambda p, x: jrnn.unroll(cell, p, x)[0])
    return jax.jit(jax.grad(lambda p, x: jnp.sum(jrnn.unroll(cell, p, x)[0] ** 2)))


def measure(config: str, mode: str, rounds: int) -> dict:
    b, t, i, h = CONFIGS[config]
    xs = jax.random.normal(jax.random.key(1), (b, t, i))
    builtin = jrnn.lstm(h)
    params = builtin.init(jax.random.key(0), i)  # one set of weights for all three
    cells = {
        "built-in": builtin,
        "custom, step only": user_lstm(h, fast=False),
        "custom + FastPath": user_lstm(h, fast=True),
    }
    fns = {k: _functions(c, mode) for k, c in cells.items()}
    for f in fns.values():
        jax.block_until_ready(f(params, xs))
    iters = max(1, int(0.3 / _time(fns["built-in"], params, xs, iters=1)))
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            times[k].append(_time(f, params, xs, iters=iters))
    rate = {k: b * t / statistics.median(v) for k, v in times.items()}
    return {
        "config": config,
        "shape": [b, t, i, h],
        "mode": mode,
        "tokens_per_s": rate,
        "times_s": times,
        "over_builtin": {k: rate[k] / rate["built-in"] for k in rate},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--configs", default="small,medium,long")
    ap.add_argument("--modes", default="train,forward")
    args = ap.parse_args()
    rows = []
    for config in args.configs.split(","):
        for mode in args.modes.split(","):
            row = measure(config, mode, args.rounds)
            rows.append(row)
            print(config, mode, {k: f"{v:.3f}" for k, v in row["over_builtin"].items()}, flush=True)
    machine = machine_info()
    caption = (
        f"An LSTM as `jrnn.custom_cell` against `jrnn.lstm`, tokens/s (median of {args.rounds} "
        f"interleaved rounds, one process) and the ratio to the built-in cell; "
        f"{machine['cpu_model']} ({machine['usable_cores']} cores usable), 1 device, float32 "
        f"(CPU matmuls are full float32). train: `jax.jit(jax.grad)` through `unroll`; "
        f"forward: `jax.jit` of `unroll`."
    )
    header = ["config", "B/T/I/H", "mode", "built-in:", "step only:", "+ FastPath:",
              "step only / built-in:", "+ FastPath / built-in:"]  # fmt: skip
    table = [
        [r["config"], "/".join(map(str, r["shape"])), r["mode"]]
        + [f"{v / 1e3:.1f}k" for v in r["tokens_per_s"].values()]
        + [f"{r['over_builtin'][k]:.2f}" for k in ("custom, step only", "custom + FastPath")]
        for r in rows
    ]
    result = {"machine": machine, "rounds": args.rounds, "rows": rows}
    write_result(OUT, "custom_cell", result, caption, header, table)


if __name__ == "__main__":
    main()
