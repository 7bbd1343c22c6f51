"""Measures ``jrnn.unroll``'s strategies over a grid of shapes on this CPU and writes the
fastest per shape to ``jrnn/tuned.py``, the tables ``unroll`` chooses from.

``--part training`` (one host device): for each (batch, T, hidden) of the grid and each
training strategy (``hoist`` x ``vjp``: in-step projection differentiated by autodiff,
hoisted projection by autodiff, the hand-structured ``vjp="hoisted"`` backward) an LSTM
training step (forward, BPTT, a gradient-sized update) is compiled and timed in interleaved
rounds; the fastest wins (``jrnn.tuned.CPU``).

``--part inference`` (every core a host device, as after ``jrnn.use_cpu_cores()``, the
setup of a served model): a jitted LSTM forward pass with ``lax.scan``'s unroll factor 1, 2
and 4 (``jrnn.tuned.CPU_INFERENCE``, keyed by each device's share of the batch, as
``unroll`` looks it up).

Choices within 3% (training) or 5% (inference) of the fastest count as ties and the one
listed first is kept, so noise does not flip the table.  Also writes
``benchmarks/results/tune[_inference].{json,md}``.

Run (minutes each): ``python -m benchmarks.tune --part training [--rounds N]`` and
``python -m benchmarks.tune --part inference``, then commit ``jrnn/tuned.py``.
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
UNROLLS = (1, 2, 4)  # the first is unroll's default when nothing is measured
TIE = {"training": 1.03, "inference": 1.05}
ROOT = Path(__file__).resolve().parents[1]


def _train_step(cell, hoist, vjp):
    def loss(params, xs):
        ys, _ = jrnn.unroll(cell, params, xs, hoist=hoist, vjp=vjp)
        return jnp.mean(ys**2)

    @jax.jit
    def step(params, xs):
        grads = jax.grad(loss)(params, xs)
        return jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)

    return step


def _forward(cell, unroll):
    return jax.jit(lambda params, xs: jrnn.unroll(cell, params, xs, unroll=unroll)[0])


def _medians(fns, args, rounds: int) -> list[float]:
    for f in fns:
        jax.block_until_ready(f(*args))  # compile
    once = min(_time(f, args, 1) for f in fns)
    iters = max(1, int(0.05 / once))  # about 50 ms a sample
    times = [[] for _ in fns]
    for _ in range(rounds):
        for f, ts in zip(fns, times, strict=True):
            ts.append(_time(f, args, iters))
    return [statistics.median(ts) for ts in times]


def _time(f, args, iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        out = f(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / iters


def measure(part: str, rounds: int) -> list[dict]:
    """One row per grid shape: the median times of each choice and the chosen one."""
    choices = STRATEGIES if part == "training" else UNROLLS
    devices = len(jax.devices("cpu"))
    rows = []
    for batch, steps in GRID_BT:
        for hidden in GRID_H:
            cell = jrnn.lstm(hidden)
            params = cell.init(jax.random.key(0), INPUT)
            xs = jax.random.normal(jax.random.key(1), (batch, steps, INPUT))
            if part == "training":
                fns = [_train_step(cell, h, v) for h, v in choices]
                share = batch
            else:
                fns = [_forward(cell, k) for k in choices]
                share = batch // jrnn.sharding.host_split(jnp.swapaxes(xs, 0, 1), (batch,), hidden)
            medians = _medians(fns, (params, xs), rounds)
            best = next(i for i, m in enumerate(medians) if m <= TIE[part] * min(medians))
            rows.append(
                {
                    "batch": share,
                    "total_batch": batch,
                    "devices": devices,
                    "T": steps,
                    "hidden": hidden,
                    "ms": {_label(c): 1e3 * m for c, m in zip(choices, medians, strict=True)},
                    "best": choices[best],
                    "gain_over_default": medians[0] / medians[best],
                }
            )
            r = rows[-1]
            print(
                f"B={batch} T={steps} H={hidden}: "
                + ", ".join(f"{k} {v:.2f} ms" for k, v in r["ms"].items())
                + f" -> {_label(r['best'])} ({r['gain_over_default']:.2f}x the default)",
                flush=True,
            )
    return rows


def _label(choice) -> str:
    if isinstance(choice, int):
        return f"unroll={choice}"
    return f"hoist={choice[0]}, vjp={choice[1]}"


def report(part: str, rows: list[dict], rounds: int, info: dict) -> str:
    what = "an LSTM training step" if part == "training" else "an LSTM forward pass (jit)"
    devices = rows[0]["devices"]
    lines = [
        f"Fastest `unroll` {'strategy' if part == 'training' else 'factor'} for "
        f"{what} (I={INPUT}), median of {rounds} interleaved rounds; {info['cpu_model']} "
        f"({info['usable_cores']} cores usable), {devices} host device(s), float32. B is "
        "the whole batch; the table is keyed by each device's share.",
        "",
        "| B | T | H | " + " | ".join(f"{k} (ms)" for k in rows[0]["ms"]) + " | chosen | "
        "× default |",
        "|---:|---:|---:|" + "---:|" * len(rows[0]["ms"]) + "---|---:|",
    ]
    for r in rows:
        ms = " | ".join(f"{v:.2f}" for v in r["ms"].values())
        lines.append(
            f"| {r['total_batch']} | {r['T']} | {r['hidden']} | {ms} | {_label(r['best'])} | "
            f"{r['gain_over_default']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def render(training: tuple, inference: tuple, machines: dict[str, str]) -> str:
    """The source of ``jrnn/tuned.py`` holding both tables."""
    train_rows = "\n".join(
        f"    (({b}, {t}, {h}), {hoist}, {json.dumps(vjp)})," for (b, t, h), hoist, vjp in training
    )
    infer_rows = "\n".join(f"    (({b}, {t}, {h}), {k})," for (b, t, h), k in inference)
    return (
        '"""The fastest strategies of :func:`jrnn.unroll` on CPU, by shape, as measured by\n'
        "``python -m benchmarks.tune --part training|inference`` (do not edit by hand: run it\n"
        'again on another machine)."""\n\n'
        f"MACHINE = {json.dumps(machines['training'])}\n"
        '"""The CPU that measured :data:`CPU`."""\n\n'
        "CPU: tuple[tuple[tuple[int, int, int], bool, str], ...] = (\n"
        f"{train_rows}\n)\n"
        '"""``(batch, T, hidden) -> (hoist, vjp)`` for an LSTM training step, one host '
        'device."""\n\n'
        f"INFERENCE_MACHINE = {json.dumps(machines['inference'])}\n"
        '"""The CPU that measured :data:`CPU_INFERENCE`."""\n\n'
        "CPU_INFERENCE: tuple[tuple[tuple[int, int, int], int], ...] = (\n"
        f"{infer_rows}\n)\n"
        '"""``(batch per device, T, hidden) -> lax.scan unroll factor`` for an LSTM forward\n'
        'pass with every core a host device (``jrnn.use_cpu_cores()``)."""\n'
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("training", "inference"), required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dry-run", action="store_true", help="do not rewrite jrnn/tuned.py")
    args = parser.parse_args()
    if args.part == "inference":
        jrnn.use_cpu_cores()
    info = machine_info()
    rows = measure(args.part, args.rounds)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    stem = "tune" if args.part == "training" else "tune_inference"
    (out / f"{stem}.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=1) + "\n")
    table = report(args.part, rows, args.rounds, info)
    (out / f"{stem}.md").write_text(table)
    print(table)
    if args.dry_run:
        return
    from jrnn import tuned

    training, inference = tuned.CPU, tuned.CPU_INFERENCE
    machines = {"training": tuned.MACHINE, "inference": tuned.INFERENCE_MACHINE}
    measured = tuple(((r["batch"], r["T"], r["hidden"]), r["best"]) for r in rows)
    if args.part == "training":
        training = tuple((shape, *best) for shape, best in measured)
    else:
        inference = measured
    machines[args.part] = info["cpu_model"]
    (ROOT / "jrnn" / "tuned.py").write_text(render(training, inference, machines))
    print("wrote jrnn/tuned.py")


if __name__ == "__main__":
    main()
