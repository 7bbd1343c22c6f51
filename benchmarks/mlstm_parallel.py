"""The mLSTM's sequential step against its parallel form (associative scan), on this CPU.

``jrnn.mlstm`` at a given size (default batch 2, input 8, hidden 16, 2 heads of 8) and ``T``
in {256, 4096, 16384}: times a jitted forward (``jrnn.unroll``; with ``--train`` the value
and gradient of a loss of its outputs) with ``method="scan"`` (the step in ``lax.scan``)
and ``method="newton"`` (``Cell.parallel``: one associative scan of ``(C, n, m)``,
``jrnn.linear_scan.scan_stabilised``), interleaved (scan, parallel, scan, ...) in one
process so that the machine's load drifts equally over both, and reports the
median of each and their ratio.

Writes ``benchmarks/results/{--name}.{json,md}`` (default ``mlstm_parallel``) and prints
the table.

Run: ``PYTHONPATH=$PWD nice -n 5 python benchmarks/mlstm_parallel.py [--rounds N] [--train]
[--batch B --input I --hidden H --heads NH --steps T1,T2 --name NAME]``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import jax
import jax.numpy as jnp

import jrnn
from benchmarks.measure import machine_info, time_call, write_result

STEPS = (256, 4096, 16384)
OUT = Path(__file__).resolve().parent / "results"
METHODS = ("scan", "newton")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", default=",".join(map(str, STEPS)))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--input", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument(
        "--train", action="store_true", help="time the gradient of a loss, not the forward"
    )
    parser.add_argument("--name", default="mlstm_parallel", help="the results' file name")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    cell = jrnn.mlstm(args.hidden, num_heads=args.heads)
    params = cell.init(jax.random.key(0), args.input)

    def forward(p, xs, method):
        return jrnn.unroll(cell, p, xs, method=method)[0]

    def train(p, xs, method):  # the gradient of a loss through the whole sequence
        loss = lambda p: jnp.mean(jnp.square(forward(p, xs, method)))
        return jax.value_and_grad(loss)(p)

    run = train if args.train else forward
    fns = {m: jax.jit(lambda p, xs, m=m: run(p, xs, m)) for m in METHODS}
    rows = []
    for steps in map(int, args.steps.split(",")):
        xs = jax.random.normal(jax.random.key(1), (args.batch, steps, args.input))
        ys = {m: jax.tree.leaves(fns[m](params, xs)) for m in METHODS}
        diff = max(
            float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
            for a, b in zip(ys["newton"], ys["scan"], strict=True)
        )
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
    size = {k: getattr(args, k) for k in ("batch", "input", "hidden", "heads")}
    result = {"machine": machine_info(), "size": size, "train": args.train, "rounds": args.rounds}
    result["rows"] = rows
    what = "value and gradient of a mean-square loss" if args.train else "forward only"
    caption = (
        f"jrnn.mlstm({args.hidden}, num_heads={args.heads}), batch {args.batch}, input "
        f"{args.input}, float32, {what}; median ms of jitted calls ({args.rounds} interleaved "
        "rounds); speedup = scan / parallel; max rel diff = max |parallel - scan| / max |scan| "
        f"over {'the loss and every gradient' if args.train else 'the outputs'}."
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
    write_result(args.out, args.name, result, caption, header, table)


if __name__ == "__main__":
    main()
