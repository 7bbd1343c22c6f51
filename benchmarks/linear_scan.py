"""Sequential ``lax.scan`` against the associative scan for the affine cells, on this CPU.

For :func:`jrnn.mingru` (plain and log space), :func:`jrnn.minlstm`, :func:`jrnn.lru` and
:func:`jrnn.rglru` (Griffin's RG-LRU, 4 heads; ``--cells rglru``)
at a small size (batch 8, input 16, hidden 32) and ``T`` in {64, 256, 1024, 4096, 16384},
times a jitted forward (``jrnn.unroll``) and a jitted forward + backward (``jax.grad`` of
the summed outputs) with ``method="scan"`` and ``method="newton"`` (the associative scan),
interleaved (scan, assoc, scan, assoc, ...) so that the machine's load drifts equally over
both, and reports the median time of each and their ratio.  The crossover it finds is
``jrnn.linear_scan.ASSOCIATIVE_MIN_STEPS`` (``method="auto"``).

Writes ``benchmarks/results/linear_scan.{json,md}`` and prints the table.

Run: ``PYTHONPATH=$PWD nice -n 5 python benchmarks/linear_scan.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import jax
import jax.numpy as jnp

import jrnn
from benchmarks.measure import machine_info, time_call

BATCH, INPUT, HIDDEN = 8, 16, 32
STEPS = (64, 256, 1024, 4096, 16384)
OUT = Path(__file__).resolve().parent / "results"

CELLS = {
    "mingru": lambda: jrnn.mingru(HIDDEN),
    "mingru-log": lambda: jrnn.mingru(HIDDEN, log_space=True),
    "minlstm": lambda: jrnn.minlstm(HIDDEN),
    "lru": lambda: jrnn.lru(HIDDEN),
    "rglru": lambda: jrnn.rglru(HIDDEN, num_heads=4),
}


def _fns(cell: jrnn.Cell, method: str):
    fwd = jax.jit(lambda p, xs: jrnn.unroll(cell, p, xs, method=method)[0])
    loss = lambda p, xs: jnp.sum(jrnn.unroll(cell, p, xs, method=method)[0])
    train = jax.jit(jax.grad(loss))
    return {"forward": fwd, "train": train}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cells", default=",".join(CELLS))
    parser.add_argument("--steps", default=",".join(map(str, STEPS)))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    rows = []
    for name in args.cells.split(","):
        cell = CELLS[name]()
        params = cell.init(jax.random.key(0), INPUT)
        fns = {m: _fns(cell, m) for m in ("scan", "newton")}
        for steps in map(int, args.steps.split(",")):
            xs = jax.random.normal(jax.random.key(1), (BATCH, steps, INPUT))
            for mode in ("forward", "train"):
                times = {"scan": [], "newton": []}
                for _ in range(args.rounds):
                    for m in ("scan", "newton"):
                        times[m].append(time_call(fns[m][mode], params, xs))
                seq, par = (statistics.median(times[m]) for m in ("scan", "newton"))
                row = {
                    "cell": name,
                    "T": steps,
                    "mode": mode,
                    "scan_ms": 1e3 * seq,
                    "assoc_ms": 1e3 * par,
                    "speedup": seq / par,
                }
                rows.append(row)
                print(
                    f"{name:11s} T={steps:6d} {mode:7s} scan {row['scan_ms']:9.3f} ms  "
                    f"assoc {row['assoc_ms']:9.3f} ms  scan/assoc {row['speedup']:6.2f}",
                    flush=True,
                )
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": machine_info(),
        "size": {"batch": BATCH, "input": INPUT, "hidden": HIDDEN},
        "rows": rows,
    }
    (args.out / "linear_scan.json").write_text(json.dumps(result, indent=1))
    lines = [
        f"Batch {BATCH}, input {INPUT}, hidden {HIDDEN}; median ms of jitted calls "
        f"({args.rounds} interleaved rounds); speedup = scan / associative.",
        "",
        "| cell | T | mode | scan ms | associative ms | speedup |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['T']} | {r['mode']} | {r['scan_ms']:.3f} | "
            f"{r['assoc_ms']:.3f} | {r['speedup']:.2f} |"
        )
    (args.out / "linear_scan.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
