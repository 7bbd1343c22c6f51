"""Cost of the cell options: a training step with layer normalisation, zoneout or recurrent
dropout, against the plain cell's step, in the same process and run.

For the LSTM and the GRU at a small and a medium size, each variant's jitted training step
(forward with ``jrnn.unroll``, BPTT by ``jax.grad``, an Adam update) is timed in interleaved
rounds (plain, variant, plain, variant, ...) so that the machine's load drifts equally over
both; the reported figure is the median over rounds of ``variant time / plain time``
(target: at most 1.25).  Zoneout and recurrent dropout run with a PRNG key (training).

Writes ``benchmarks/results/regularisers.{json,md}`` and prints the table.

Run: ``PYTHONPATH=$PWD python benchmarks/regularisers.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

import jrnn
from benchmarks.measure import machine_info

SIZES = {"small": (32, 64, 128), "medium": (64, 128, 256)}  # batch, T, hidden
INPUT = 64
OUT = Path(__file__).resolve().parent / "results"


def variants(kind: str, hidden: int) -> dict[str, jrnn.Cell]:
    make = {"lstm": jrnn.lstm, "gru": jrnn.gru}[kind]
    cells = {"plain": make(hidden), "layer_norm": make(hidden, layer_norm=True)}
    if hasattr(jrnn, "zoneout"):
        cells["zoneout 0.1"] = jrnn.zoneout(make(hidden), 0.1)
    if hasattr(jrnn, "recurrent_dropout"):
        cells["recurrent_dropout 0.25"] = jrnn.recurrent_dropout(make(hidden), 0.25)
    return cells


def train_step(cell: jrnn.Cell, opt: optax.GradientTransformation):
    stochastic = cell.name.startswith(("zoneout", "recurrent_dropout"))

    def loss(params, xs, ys, key):
        kw = {"key": key} if stochastic else {}
        hs, _ = jrnn.unroll(cell, params, xs, **kw)
        return jnp.mean((hs - ys) ** 2)

    @jax.jit
    def step(params, opt_state, xs, ys, key):
        value, grads = jax.value_and_grad(loss)(params, xs, ys, key)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def time_calls(step, state, args, iters: int) -> float:
    params, opt_state = state
    start = time.perf_counter()
    for _ in range(iters):
        params, opt_state, value = step(params, opt_state, *args)
    value.block_until_ready()
    return (time.perf_counter() - start) / iters


def interleaved_times(prepared: dict, args_: tuple, rounds: int, iters: int) -> dict:
    """``{name: [seconds per step, one per round]}`` for ``prepared = {name: (step,
    state)}``, every variant timed once per round in turn."""
    times = {name: [] for name in prepared}
    for _ in range(rounds):
        for name, (step, state) in prepared.items():
            times[name].append(time_calls(step, state, args_, iters))
    return times


def ratio_rows(
    kind: str, size: str, shape: tuple[int, int, int], times: dict[str, list[float]]
) -> list[dict]:
    """One row per variant: median step time and median per-round ratio to ``"plain"``."""
    batch, steps, hidden = shape
    rows = []
    for name, ts in times.items():
        ratios = [t / p for t, p in zip(ts, times["plain"], strict=True)]
        rows.append(
            {
                "cell": kind,
                "size": size,
                "batch": batch,
                "T": steps,
                "hidden": hidden,
                "variant": name,
                "step_ms": 1e3 * statistics.median(ts),
                "ratio_to_plain": statistics.median(ratios),
            }
        )
        print(
            f"{kind} {size} {name}: {rows[-1]['step_ms']:.1f} ms, "
            f"{rows[-1]['ratio_to_plain']:.2f}x plain",
            flush=True,
        )
    return rows


def write_results(name: str, rows: list[dict], args: argparse.Namespace) -> None:
    """``benchmarks/results/{name}.json`` (every row and the machine) and ``{name}.md``."""
    info = machine_info()
    OUT.mkdir(exist_ok=True)
    result = {"machine": info, "rounds": args.rounds, "iters": args.iters, "rows": rows}
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    load = info.get("loadavg_at_start") or (float("nan"),)
    lines = [
        f"Training step (forward, BPTT, Adam) relative to the plain cell, median of "
        f"{args.rounds} interleaved rounds; {info['cpu_model']} ({info['usable_cores']} cores "
        f"usable, load average at start {load[0]:.1f}), {len(info['jax_devices'])} device(s), "
        f"backend {info['jax_backend']}, matmul precision "
        f"{jax.config.jax_default_matmul_precision or 'default'}.",
        "",
        "| cell | size (B, T, H) | variant | step (ms) | × plain |",
        "|---|---|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['size']} ({r['batch']}, {r['T']}, {r['hidden']}) | "
            f"{r['variant']} | {r['step_ms']:.1f} | {r['ratio_to_plain']:.2f} |"
        )
    (OUT / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iters", type=int, default=5, help="steps per timed call")
    args = parser.parse_args()

    opt = optax.adam(1e-3)
    rows = []
    for kind in ("lstm", "gru"):
        for size, (batch, steps, hidden) in SIZES.items():
            k = jax.random.split(jax.random.key(0), 4)
            xs = jax.random.normal(k[0], (batch, steps, INPUT))
            ys = jax.random.normal(k[1], (batch, steps, hidden))
            cells = variants(kind, hidden)
            prepared = {}
            for name, cell in cells.items():
                params = cell.init(k[2], INPUT)
                step = train_step(cell, opt)
                state = (params, opt.init(params))
                step(*state, xs, ys, k[3])[2].block_until_ready()  # compile
                prepared[name] = (step, state)
            times = interleaved_times(prepared, (xs, ys, k[3]), args.rounds, args.iters)
            rows += ratio_rows(kind, size, (batch, steps, hidden), times)

    write_results("regularisers", rows, args)


if __name__ == "__main__":
    main()
