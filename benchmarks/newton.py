"""Sequential scan against parallel-in-time Newton (DEER) and quasi-Newton (quasi-DEER).

For the GRU and the LSTM (``cell.init``'s parameters, float32, batch 1, input size 16) at
every ``T`` and ``H`` of the grid, the jitted forward pass ``unroll(method="scan")`` and
``jrnn.newton.solve(method=...)`` are timed in interleaved rounds (scan, newton, quasi,
scan, ...; median over rounds), next to the solvers' iteration counts, whether they
converged (else they fell back to the scan: their time then includes it) and XLA's
compiled memory footprint (``memory_analysis()``: temporaries + outputs; on a GPU also the
device's peak bytes in use).  Newton is skipped where its ``T·D²`` Jacobians would exceed
``--max-jacobian-mb``.

Writes ``benchmarks/results/newton{suffix}.{json,md}`` and prints the table.  Device
agnostic: it runs on whatever backend JAX has (``JAX_PLATFORMS=cpu`` or a GPU).

Run: ``PYTHONPATH=$PWD python benchmarks/newton.py [--T 1024 4096 16384] [--H 8 32 64]
[--rounds 5] [--suffix _gpu] [--out DIR]``; on a GPU also ``BENCH_NEWTON=1 bash
benchmarks/gpu.sh``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import jrnn
from benchmarks.measure import machine_info

INPUT = 16
OUT = Path(__file__).resolve().parent / "results"
METHODS = ("scan", "newton", "quasi-newton")


def make_fn(cell, method):
    if method == "scan":
        return jax.jit(lambda p, xs: (jrnn.unroll(cell, p, xs)[0], None))
    return jax.jit(
        lambda p, xs: (lambda r: (r[0], r[2]))(jrnn.newton.solve(cell, p, xs, method=method))
    )


def memory_mb(compiled) -> float | None:
    try:
        m = compiled.memory_analysis()
        return (m.temp_size_in_bytes + m.output_size_in_bytes) / 2**20
    except Exception:  # noqa: BLE001 - not every backend reports it
        return None


def timed(fn, params, xs) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(params, xs))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--T", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--H", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--cells", nargs="+", default=["gru", "lstm"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-jacobian-mb", type=float, default=1024.0)
    parser.add_argument("--suffix", default="", help="results file suffix, e.g. _gpu")
    parser.add_argument("--out", type=Path, default=OUT, help="results folder")
    args = parser.parse_args()

    rows = []
    for steps in args.T:  # the shortest sequences first: a time limit keeps every cell and H
        for hidden in args.H:
            for kind in args.cells:
                cell = {"gru": jrnn.gru, "lstm": jrnn.lstm}[kind](hidden)
                d = hidden * (2 if kind == "lstm" else 1)
                params = cell.init(jax.random.key(0), INPUT)
                xs = jax.random.normal(jax.random.key(1), (1, steps, INPUT))
                methods = [
                    m
                    for m in METHODS
                    if m != "newton" or steps * d * d * 4 / 2**20 <= args.max_jacobian_mb
                ]
                fns = {}
                want = None
                stats = {}
                for m in methods:
                    t0 = time.perf_counter()
                    compiled = make_fn(cell, m).lower(params, xs).compile()
                    fns[m] = fn = compiled
                    ys, info = jax.block_until_ready(fn(params, xs))
                    compile_s = time.perf_counter() - t0
                    if m == "scan":
                        want = ys
                    err = float(jnp.max(jnp.abs(ys - want)))
                    stats[m] = {
                        "compile_s": compile_s,
                        "max_abs_diff_to_scan": err,
                        "iterations": None if info is None else int(info.iterations[0]),
                        "converged": None if info is None else bool(info.converged[0]),
                        "memory_mb": memory_mb(compiled),
                        "times": [],
                    }
                for _ in range(args.rounds):
                    for m, fn in fns.items():
                        stats[m]["times"].append(timed(fn, params, xs))
                scan_ms = 1e3 * statistics.median(stats["scan"]["times"])
                for m in METHODS:
                    row = {"cell": kind, "T": steps, "hidden": hidden, "state": d, "method": m}
                    if m not in stats:
                        row["skipped"] = f"Jacobians > {args.max_jacobian_mb:.0f} MB"
                    else:
                        s = stats.pop(m)
                        row.update(s)
                        row["ms"] = 1e3 * statistics.median(s["times"])
                        row["x_scan"] = row["ms"] / scan_ms
                    if jax.default_backend() != "cpu":
                        ms = jax.devices()[0].memory_stats() or {}
                        row["device_peak_mb"] = ms.get("peak_bytes_in_use", 0) / 2**20
                    rows.append(row)
                    print(
                        kind,
                        hidden,
                        steps,
                        m,
                        row.get("skipped")
                        or f"{row['ms']:.1f} ms x{row['x_scan']:.2f} "
                        f"it={row['iterations']} conv={row['converged']} mem={row['memory_mb']}",
                        flush=True,
                    )
                write(rows, args)


def write(rows, args) -> None:
    info = machine_info()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    result = {"machine": info, "rounds": args.rounds, "input_size": INPUT, "rows": rows}
    name = f"newton{args.suffix}"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"Forward pass, batch 1, float32, input size {INPUT}, median of {args.rounds} "
        f"interleaved rounds; {info['cpu_model']} ({info['usable_cores']} cores usable), "
        f"{len(info['jax_devices'])} device(s) ({info['device_kind']}), backend "
        f"{info['jax_backend']}, matmul precision "
        f"{jax.config.jax_default_matmul_precision or 'default'}.  `iters`: Newton "
        f"iterations (max min(T, 100)); not converged = fell back to the scan (time "
        f"included); memory: XLA's compiled temporaries + outputs.",
        "",
        "| cell | T | H (D) | method | time (ms) | × scan | iters | converged | memory (MB) |",
        "|---|---:|---|---|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        head = f"| {r['cell']} | {r['T']} | {r['hidden']} ({r['state']}) | {r['method']} |"
        if "skipped" in r:
            lines.append(f"{head} skipped: {r['skipped']} | | | | |")
            continue
        mem = "" if r["memory_mb"] is None else f"{r['memory_mb']:.1f}"
        it = "" if r["iterations"] is None else str(r["iterations"])
        conv = "" if r["converged"] is None else ("yes" if r["converged"] else "no")
        lines.append(f"{head} {r['ms']:.1f} | {r['x_scan']:.2f} | {it} | {conv} | {mem} |")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
