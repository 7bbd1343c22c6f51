"""Training throughput against the number of devices: ``jrnn.make_train_step(mesh=...)`` on
1, 2, ... host devices of this CPU (or the GPUs of a node).

One worker process per device count (a CPU's host-device count is fixed when JAX starts:
``jrnn.use_cpu_cores(n)``), all alive at once and driven in interleaved rounds (1 device,
2 devices, 1 device, ...) so that the machine's load drifts equally over every count; each
round times ``--iters`` training steps (forward, BPTT, Adam, clipping) of an LSTM and a
GRU.  The figure is tokens/s (batch x T / step time), median over rounds, and the speed-up
over one device, median of the per-round ratios.

Writes ``benchmarks/results/devices.{json,md}`` and prints the table.

Run: ``PYTHONPATH=$PWD python benchmarks/devices.py [--devices 1 2] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CONFIGS = {  # batch, T, input, hidden (small/medium/large/long as in benchmarks/run.py)
    "tiny": (16, 32, 8, 32),
    "small": (32, 64, 64, 128),
    "medium": (64, 128, 128, 256),
    "large": (64, 256, 256, 512),
    "long": (8, 4096, 64, 256),
}
OUT = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def worker(n: int) -> None:
    """Reads ``CONFIG CELL VJP ITERS`` lines, answers seconds per step (one JSON line)."""
    import jrnn

    jrnn.use_cpu_cores(n)
    import time

    import jax
    import jax.numpy as jnp
    import optax

    from jrnn.sharding import data_mesh

    mesh = data_mesh(n) if n > 1 else None
    prepared = {}
    print(json.dumps({"ready": len(jax.devices())}), flush=True)
    for line in sys.stdin:
        config, kind, vjp, iters = line.split()
        key = (config, kind, vjp)
        if key not in prepared:
            batch, steps, inputs, hidden = CONFIGS[config]
            cell = {"lstm": jrnn.lstm, "gru": jrnn.gru}[kind](hidden)
            k = jax.random.split(jax.random.key(0), 3)
            xs = jax.random.normal(k[0], (batch, steps, inputs))
            ys = jax.random.normal(k[1], (batch, steps, hidden))
            strategy = {} if vjp == "default" else {"vjp": vjp}

            def loss_fn(params, b, key, cell=cell, strategy=strategy):
                out, _ = jrnn.unroll(cell, params, b[0], **strategy)
                return jnp.mean((out - b[1]) ** 2), {}

            opt = optax.adam(1e-3)
            step = jrnn.make_train_step(loss_fn, opt, mesh=mesh)
            state = jrnn.init_train_state(cell.init(k[2], inputs), opt, jax.random.key(1))
            data = (xs, ys) if mesh is None else jrnn.sharding.shard_batch((xs, ys), mesh)
            state, m = step(state, data)  # compile
            jax.block_until_ready(m)
            prepared[key] = [step, state, data]
        step, state, data = prepared[key]
        start = time.perf_counter()
        for _ in range(int(iters)):
            state, m = step(state, data)
        jax.block_until_ready(m)
        prepared[key][1] = state
        print(json.dumps({"s": (time.perf_counter() - start) / int(iters)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker)
        return

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = str(ROOT)
    procs = {
        n: subprocess.Popen(
            [sys.executable, __file__, "--worker", str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for n in args.devices
    }
    for n, p in procs.items():
        assert json.loads(p.stdout.readline())["ready"] == n

    def ask(n: int, what: str) -> float:
        procs[n].stdin.write(what + "\n")
        procs[n].stdin.flush()
        return json.loads(procs[n].stdout.readline())["s"]

    rows = []
    for config in args.configs:
        batch, steps, _, _ = CONFIGS[config]
        for kind in ("lstm", "gru"):
            for vjp in ("default", "hoisted") if config == "long" else ("default",):
                iters = 1 if config == "long" else (20 if config == "tiny" else 3)
                what = f"{config} {kind} {vjp} {iters}"
                for n in args.devices:
                    ask(n, f"{config} {kind} {vjp} 1")  # compile, warm up
                times = {n: [] for n in args.devices}
                for _ in range(args.rounds):
                    for n in args.devices:
                        times[n].append(ask(n, what))
                base = times[args.devices[0]]
                for n in args.devices:
                    ratio = statistics.median(b / t for b, t in zip(base, times[n], strict=True))
                    rows.append(
                        {
                            "config": config,
                            "batch": batch,
                            "T": steps,
                            "cell": kind,
                            "vjp": vjp,
                            "devices": n,
                            "tokens_per_s": batch * steps / statistics.median(times[n]),
                            "speedup": ratio,
                        }
                    )
                    r = rows[-1]
                    print(
                        f"{config} {kind} {vjp} devices={n}: {r['tokens_per_s']:,.0f} tok/s, "
                        f"{ratio:.2f}x",
                        flush=True,
                    )
    for p in procs.values():
        p.stdin.close()
        p.wait()

    sys.path.insert(0, str(ROOT))
    from benchmarks.measure import machine_info, write_result

    info = machine_info()
    caption = (
        f"Training step (forward, BPTT, Adam, clipping) on N host devices of one CPU, "
        f"tokens/s (median of {args.rounds} interleaved rounds) and speed-up over "
        f"{args.devices[0]} device(s); {info['cpu_model']} ({info['usable_cores']} cores "
        f"usable), backend {info['jax_backend']}, float32, matmul precision "
        f"{info['jax_default_matmul_precision'] or 'default'}."
    )
    header = ["config (B, T, I, H)", "cell", "backward", "devices:", "tokens/s:", "speed-up:"]
    table = [
        [
            "{} ({}, {}, {}, {})".format(r["config"], *CONFIGS[r["config"]]),
            r["cell"],
            r["vjp"],
            r["devices"],
            f"{r['tokens_per_s']:,.0f}",
            f"{r['speedup']:.2f}×",
        ]
        for r in rows
    ]
    result = {"machine": info, "rounds": args.rounds, "configs": CONFIGS, "rows": rows}
    write_result(OUT, "devices", result, caption, header, table)


if __name__ == "__main__":
    main()
