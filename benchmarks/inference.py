"""``unroll``'s inference path against the hoisted forward, on this CPU.

A call to :func:`jrnn.unroll` that is not differentiated projects its inputs inside the
scan on CPU, whatever the training strategy of its shape (``docs/guide/unroll.md``).  This
times, per shape and cell (LSTM, reset-after GRU), a jitted forward with the default, with
``hoist=True`` (what the default ran before, where training hoists) and with
``hoist=False``, in interleaved rounds, and reports tokens/s and the default over
``hoist=True``.

Writes ``benchmarks/results/inference.{json,md}`` and prints the table.

Run: ``PYTHONPATH=$PWD python benchmarks/inference.py [--rounds N]`` (about a minute).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax

import jrnn
from benchmarks.measure import machine_info, write_result

SHAPES = ((8, 4096, 64, 256), (16, 512, 128, 256), (32, 64, 64, 128), (4, 2048, 64, 128))
OPTIONS = {"default": {}, "hoist=True": {"hoist": True}, "hoist=False": {"hoist": False}}
CELLS = {"lstm": lambda h: jrnn.lstm(h), "gru": lambda h: jrnn.gru(h, reset_after=True)}
OUT = Path(__file__).resolve().parent / "results"


def _time(fn, *args, iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for b, t, i, h in SHAPES:
        xs = jax.random.normal(jax.random.key(1), (b, t, i))
        for name, make in CELLS.items():
            cell = make(h)
            params = cell.init(jax.random.key(0), i)
            fns = {
                k: jax.jit(lambda p, x, kw=kw, cell=cell: jrnn.unroll(cell, p, x, **kw)[0])
                for k, kw in OPTIONS.items()
            }
            for f in fns.values():
                jax.block_until_ready(f(params, xs))
            once = _time(fns["default"], params, xs, iters=1)
            iters = max(1, int(0.2 / once))
            times = {k: [] for k in fns}
            for _ in range(args.rounds):
                for k, f in fns.items():
                    times[k].append(_time(f, params, xs, iters=iters))
            rate = {k: b * t / statistics.median(v) for k, v in times.items()}
            rows.append(
                {
                    "cell": name,
                    "shape": [b, t, i, h],
                    "tokens_per_s": rate,
                    "times_s": times,
                    "default_over_hoisted": rate["default"] / rate["hoist=True"],
                }
            )
            print(name, (b, t, i, h), {k: f"{v / 1e3:.0f}k" for k, v in rate.items()}, flush=True)
    machine = machine_info()
    caption = (
        f"Forward pass (`jax.jit` of `jrnn.unroll`, not differentiated), tokens/s, median of "
        f"{args.rounds} interleaved rounds; {machine['cpu_model']} "
        f"({machine['usable_cores']} cores usable), 1 device, float32."
    )
    header = ["cell", "B/T/I/H", "default:", "hoist=True:", "hoist=False:", "default / hoist=True:"]
    table = [
        [r["cell"], "/".join(map(str, r["shape"]))]
        + [f"{r['tokens_per_s'][k] / 1e3:.0f}k" for k in OPTIONS]
        + [f"{r['default_over_hoisted']:.2f}"]
        for r in rows
    ]
    result = {"machine": machine, "rounds": args.rounds, "rows": rows}
    write_result(OUT, "inference", result, caption, header, table)


if __name__ == "__main__":
    main()
