"""Memory-budgeted BPTT: XLA temporary memory and time of a GRU training gradient under
``remat="none" | "step" | "sqrt"``.

    python -m benchmarks.remat [--batch 32 --time 4096 --input 64 --hidden 256]
        [--rounds 3] [--out DIR]

Temporary memory is XLA's ``memory_analysis().temp_size_in_bytes`` of the compiled
gradient; time is the median over interleaved rounds in one process.  Two losses: on the
final state only (many-to-one; BPTT's own residuals are all the memory there is) and summed
over every output (the ``[T, B, H]`` outputs and their cotangent then need memory in every
mode).  Writes
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

    losses = {
        "final": lambda ys, carry: jnp.sum(carry.h**2),
        "all": lambda ys, carry: jnp.sum(ys**2),
    }

    def make(mode, loss_name):
        def loss(p):
            return losses[loss_name](*jrnn.unroll(cell, p, xs, remat=mode))

        return jax.jit(jax.grad(loss))

    keys = [(loss_name, mode) for loss_name in losses for mode in MODES]
    fns, temp = {}, {}
    for key in keys:
        compiled = make(key[1], key[0]).lower(params).compile()
        temp[key] = compiled.memory_analysis().temp_size_in_bytes
        fns[key] = compiled
        jax.block_until_ready(compiled(params))
    times = {key: [] for key in keys}
    for _ in range(args.rounds):
        for key in keys:
            t0 = time.perf_counter()
            jax.block_until_ready(fns[key](params))
            times[key].append(time.perf_counter() - t0)
    med = {key: statistics.median(t) for key, t in times.items()}
    result = {
        "config": vars(args),
        "device": jax.devices()[0].device_kind,
        "rows": [
            {
                "loss": loss_name,
                "remat": mode,
                "temp_bytes": temp[(loss_name, mode)],
                "seconds": med[(loss_name, mode)],
                "memory_vs_none": temp[(loss_name, mode)] / temp[(loss_name, "none")],
                "time_vs_none": med[(loss_name, mode)] / med[(loss_name, "none")],
            }
            for loss_name, mode in keys
        ],
    }
    lines = [
        f"GRU H={args.hidden}, B={args.batch}, T={args.time}, I={args.input} ({result['device']})",
        "",
        "| loss | remat | temp memory | vs none | time | vs none |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['loss']} | {r['remat']} | {r['temp_bytes'] / 2**20:.1f} MiB | "
            f"{r['memory_vs_none']:.3f} | {r['seconds']:.3f} s | {r['time_vs_none']:.2f}x |"
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
