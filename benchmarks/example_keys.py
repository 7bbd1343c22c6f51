"""The cost of randomness independent of the layout: one key per example.

A jitted training step (``jrnn.make_train_step``, Adam) of a sequence model over an LSTM
with zoneout, recurrent dropout and dropout before the readout, at one configuration
(``--config B,T,I,H``, default the medium one, 64,128,128,256), with one key for the
batch (``example_keys=False``) and with one key per example (``example_keys=True``, what
``jrnn train`` uses), timed in one process, on one device, in interleaved rounds.

Writes ``benchmarks/results/example_keys.{json,md}``.

Run: ``PYTHONPATH=$PWD python benchmarks/example_keys.py`` (about 40 s).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

import jrnn
from benchmarks.measure import machine_info, write_result

OUT = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="64,128,128,256", help="B,T,I,H")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=5, help="steps per round and variant")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    b, t, i, h = map(int, args.config.split(","))
    cell = jrnn.zoneout(jrnn.recurrent_dropout(jrnn.lstm(h), 0.1), 0.1)
    model = jrnn.sequence_model(cell, input_size=i, output_size=i, dropout=0.1)
    params = model.init(jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (b, t, i), jnp.float32)

    def loss_fn(p, batch, key):
        out, _ = model.apply(p, batch, key=key)
        return jnp.mean((out[:, :-1] - batch[:, 1:]) ** 2), {}

    opt = optax.adam(1e-3)
    variants = {}
    for name, per_example in (("one key", False), ("one key per example", True)):
        step = jrnn.make_train_step(loss_fn, opt, example_keys=per_example, donate=False)
        state = jrnn.init_train_state(params, opt, jax.random.key(2))
        jax.block_until_ready(step(state, xs))  # compile
        variants[name] = (step, state)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (step, state) in variants.items():
            began = time.perf_counter()
            for _ in range(args.iters):
                state, m = step(state, xs)
            jax.block_until_ready(m)
            times[name].append((time.perf_counter() - began) / args.iters)
    best = {name: min(ts) for name, ts in times.items()}
    median = {name: statistics.median(ts) for name, ts in times.items()}
    base = "one key"
    rows = [
        [name, f"{best[name] * 1e3:.1f}", f"{median[name] * 1e3:.1f}",
         f"{best[name] / best[base]:.3f}"]
        for name in variants
    ]  # fmt: skip
    m = machine_info()
    precision = jax.config.jax_default_matmul_precision or "default"
    caption = (
        f"Training step (LSTM + zoneout 0.1 + recurrent dropout 0.1 + dropout 0.1, Adam), "
        f"B={b}, T={t}, I={i}, H={h}; {m['cpu_model']}, {m['usable_cores']} usable cores, "
        f"1 device, float32, matmul precision {precision}; "
        f"{args.rounds} interleaved rounds of {args.iters} steps"
    )
    result = {"machine": m, "config": [b, t, i, h], "times_s": times, "best_s": best}
    write_result(args.out, "example_keys", result, caption,
                 ["variant", "best ms/step:", "median ms/step:", "/ one key:"], rows)  # fmt: skip
    return result


if __name__ == "__main__":
    main()
