"""Measures ``jrnn.unroll``'s training strategies over a grid of shapes on this CPU and
writes the fastest per shape to ``jrnn/tuned.py``, the table ``unroll`` chooses from.

For each (batch, T, hidden) of the grid and each strategy (``hoist`` x ``vjp``: in-step
projection differentiated by autodiff, hoisted projection by autodiff, the hand-structured
``vjp="hoisted"`` backward) an LSTM training step (forward, BPTT, a gradient-sized update)
is compiled and timed in interleaved rounds; the strategy with the lowest median time wins.
Strategies within 3% of the winner count as ties and the one listed first is kept, so
noise does not flip the table.  Also writes ``benchmarks/results/tune.{json,md}``.

Run (minutes): ``python -m benchmarks.tune [--rounds N]``, then commit ``jrnn/tuned.py``.
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

GRID_BT = ((4, 2048), (8, 1024), (16, 512), (32, 256), (64, 128), (128, 64))  # 8k tokens
GRID_H = (64, 128, 256, 512)
INPUT = 64
STRATEGIES = (  # the first is unroll's CPU default when nothing is measured
    (False, "autodiff"),
    (True, "autodiff"),
    (True, "hoisted"),
)
TIE = 1.03
ROOT = Path(__file__).resolve().parents[1]


def _step(cell, hoist, vjp):
    def loss(params, xs):
        ys, _ = jrnn.unroll(cell, params, xs, hoist=hoist, vjp=vjp)
        return jnp.mean(ys**2)

    @jax.jit
    def step(params, xs):
        grads = jax.grad(loss)(params, xs)
        return jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dry-run", action="store_true", help="do not rewrite jrnn/tuned.py")
    args = parser.parse_args()

    rows = []
    for batch, steps in GRID_BT:
        for hidden in GRID_H:
            cell = jrnn.lstm(hidden)
            params = cell.init(jax.random.key(0), INPUT)
            xs = jax.random.normal(jax.random.key(1), (batch, steps, INPUT))
            fns = [_step(cell, h, v) for h, v in STRATEGIES]
            for f in fns:
                jax.block_until_ready(f(params, xs))  # compile
            times = [[] for _ in fns]
            for _ in range(args.rounds):
                for f, ts in zip(fns, times, strict=True):
                    start = time.perf_counter()
                    jax.block_until_ready(f(params, xs))
                    ts.append(time.perf_counter() - start)
            medians = [statistics.median(ts) for ts in times]
            fastest = min(medians)
            best = next(i for i, m in enumerate(medians) if m <= TIE * fastest)
            rows.append(
                {
                    "batch": batch,
                    "T": steps,
                    "hidden": hidden,
                    "ms": {
                        f"{h}/{v}": 1e3 * m for (h, v), m in zip(STRATEGIES, medians, strict=True)
                    },
                    "best": {"hoist": STRATEGIES[best][0], "vjp": STRATEGIES[best][1]},
                    "gain_over_default": medians[0] / medians[best],
                }
            )
            r = rows[-1]
            print(
                f"B={batch} T={steps} H={hidden}: "
                + ", ".join(f"{k} {v:.1f} ms" for k, v in r["ms"].items())
                + f" -> {r['best']} ({r['gain_over_default']:.2f}x the default)",
                flush=True,
            )

    info = machine_info()
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "tune.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=1) + "\n")
    lines = [
        f"Fastest `unroll` strategy for an LSTM training step (I={INPUT}), median of "
        f"{args.rounds} interleaved rounds; {info['cpu_model']} ({info['usable_cores']} cores "
        f"usable), 1 device, float32.",
        "",
        "| B | T | H | in-step / autodiff (ms) | hoisted / autodiff (ms) | hoisted VJP (ms) | "
        "chosen | × default |",
        "|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        ms = list(r["ms"].values())
        chosen = f"hoist={r['best']['hoist']}, vjp={r['best']['vjp']}"
        lines.append(
            f"| {r['batch']} | {r['T']} | {r['hidden']} | {ms[0]:.1f} | {ms[1]:.1f} | "
            f"{ms[2]:.1f} | {chosen} | {r['gain_over_default']:.2f} |"
        )
    (out / "tune.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.dry_run:
        return
    table = "\n".join(
        f"    (({r['batch']}, {r['T']}, {r['hidden']}), {r['best']['hoist']}, "
        f"{json.dumps(r['best']['vjp'])}),"
        for r in rows
    )
    (ROOT / "jrnn" / "tuned.py").write_text(
        '"""The fastest training strategy of :func:`jrnn.unroll` on CPU, by shape, as measured\n'
        "by ``python -m benchmarks.tune`` (do not edit by hand: run it again on another\n"
        'machine).  ``(batch, T, hidden) -> (hoist, vjp)`` for an LSTM training step."""\n\n'
        f"MACHINE = {json.dumps(info['cpu_model'])}\n\n"
        "CPU: tuple[tuple[tuple[int, int, int], bool, str], ...] = (\n"
        f"{table}\n)\n"
    )
    print("wrote jrnn/tuned.py")


if __name__ == "__main__":
    main()
