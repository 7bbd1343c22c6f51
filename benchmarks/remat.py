"""Memory-budgeted BPTT: XLA temporary memory and time of a GRU training gradient under
``remat="none" | "step" | "sqrt"``.

    python -m benchmarks.remat [--batch 32 --time 4096 --input 64 --hidden 256]
        [--rounds 3] [--out DIR]

Temporary memory is XLA's ``memory_analysis().temp_size_in_bytes`` of the compiled
gradient; time is the median over interleaved rounds in one process.  Writes
``remat.json`` and ``remat.md`` to ``--out`` (default ``bench_out/``).
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

MODES = ("none", "step", "sqrt")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--time", type=int, default=4096)
    ap.add_argument("--input", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="bench_out")
    args = ap.parse_args(argv)

    cell = jrnn.gru(args.hidden)
    params = cell.init(jax.random.key(0), args.input)
    xs = jax.random.normal(jax.random.key(1), (args.batch, args.time, args.input))

    def make(mode):
        def loss(p):
            ys, _ = jrnn.unroll(cell, p, xs, remat=mode)
            return jnp.sum(ys**2)

        return jax.jit(jax.grad(loss))

    fns, temp = {}, {}
    for mode in MODES:
        compiled = make(mode).lower(params).compile()
        temp[mode] = compiled.memory_analysis().temp_size_in_bytes
        fns[mode] = compiled
        jax.block_until_ready(compiled(params))
    times = {m: [] for m in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            t0 = time.perf_counter()
            jax.block_until_ready(fns[mode](params))
            times[mode].append(time.perf_counter() - t0)
    med = {m: statistics.median(t) for m, t in times.items()}
    result = {
        "config": vars(args),
        "device": jax.devices()[0].device_kind,
        "temp_bytes": temp,
        "seconds": med,
        "memory_ratio_vs_none": {m: temp[m] / temp["none"] for m in MODES},
        "time_ratio_vs_none": {m: med[m] / med["none"] for m in MODES},
    }
    lines = [
        f"GRU H={args.hidden}, B={args.batch}, T={args.time}, I={args.input} "
        f"({result['device']})",
        "",
        "| remat | temp memory | vs none | time | vs none |",
        "|---|---|---|---|---|",
    ]
    for m in MODES:
        lines.append(
            f"| {m} | {temp[m] / 2**20:.1f} MiB | {temp[m] / temp['none']:.3f} | "
            f"{med[m]:.3f} s | {med[m] / med['none']:.2f}x |"
        )
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "remat.json").write_text(json.dumps(result, indent=2))
    (out / "remat.md").write_text(table + "\n")
    return result


if __name__ == "__main__":
    main()
