"""The mLSTM's sequential step against its parallel form (associative scan), forward, this CPU.

``jrnn.mlstm`` at a small size (batch 2, input 8, hidden 16, 2 heads of 8) and ``T`` in
{256, 4096, 16384}: times a jitted forward (``jrnn.unroll``) with ``method="scan"`` (the
step in ``lax.scan``) and ``method="newton"`` (``Cell.parallel``: one associative scan of
``(C, n, m)``, ``jrnn.linear_scan.scan_stabilised``), interleaved (scan, parallel, scan,
...) in one process so that the machine's load drifts equally over both, and reports the
median of each and their ratio.

Writes ``benchmarks/results/mlstm_parallel.{json,md}`` and prints the table.

Run: ``PYTHONPATH=$PWD nice -n 5 python benchmarks/mlstm_parallel.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import jax
import jax.numpy as jnp

import jrnn
from benchmarks.measure import machine_info, time_call, write_result

BATCH, INPUT, HIDDEN, HEADS = 2, 8, 16, 2
STEPS = (256, 4096, 16384)
OUT = Path(__file__).resolve().parent / "results"
METHODS = ("scan", "newton")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", default=",".join(map(str, STEPS)))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    cell = jrnn.mlstm(HIDDEN, num_heads=HEADS)
    params = cell.init(jax.random.key(0), INPUT)
    fns = {m: jax.jit(lambda p, xs, m=m: jrnn.unroll(cell, p, xs, method=m)[0]) for m in METHODS}
    rows = []
    for steps in map(int, args.steps.split(",")):
        xs = jax.random.normal(jax.random.key(1), (BATCH, steps, INPUT))
        ys = {m: fns[m](params, xs) for m in METHODS}
        diff = float(jnp.max(jnp.abs(ys["newton"] - ys["scan"])) / jnp.max(jnp.abs(ys["scan"])))
        times = {m: [] for m in METHODS}
        for _ in range(args.rounds):
            for m in METHODS:
                times[m].append(time_call(fns[m], params, xs))
        seq, par = (statistics.median(times[m]) for m in METHODS)
        rows.append(
            {
                "T": steps,
                "scan_ms": 1e3 * seq,
                "parallel_ms": 1e3 * par,
                "speedup": seq / par,
                "max_rel_diff": diff,
            }
        )
        print(f"T={steps:6d} scan {1e3 * seq:9.3f} ms  parallel {1e3 * par:9.3f} ms", flush=True)
    result = {
        "machine": machine_info(),
        "size": {"batch": BATCH, "input": INPUT, "hidden": HIDDEN, "num_heads": HEADS},
        "rounds": args.rounds,
        "rows": rows,
    }
    caption = (
        f"jrnn.mlstm({HIDDEN}, num_heads={HEADS}), batch {BATCH}, input {INPUT}, float32, "
        f"forward only; median ms of jitted calls ({args.rounds} interleaved rounds); "
        "speedup = scan / parallel; max rel diff = max |y_parallel - y_scan| / max |y_scan|."
    )
    table = [
        (
            r["T"],
            f"{r['scan_ms']:.3f}",
            f"{r['parallel_ms']:.3f}",
            f"{r['speedup']:.2f}",
            f"{r['max_rel_diff']:.1e}",
        )
        for r in rows
    ]
    header = ("T:", "scan ms:", "parallel ms:", "speedup:", "max rel diff:")
    write_result(args.out, "mlstm_parallel", result, caption, header, table)


if __name__ == "__main__":
    main()
