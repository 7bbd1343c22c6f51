"""Effect of the regularisers: held-out bits/char of a large character LM with and without
zoneout, recurrent dropout or layer norm, at the same budget.

Each variant is one ``python -m jrnn train --task charlm`` run (the application's own training
loop, run folders under ``--runs``), all with the same seed, steps, batch, window and
learning-rate schedule; only the cell option differs.  The model is large for the text (an
LSTM with H = 512 on a slice of the default corpus, the Python standard-library source) so
that the plain model over-fits within the budget: its training bits/char keep falling while
the held-out bits/char stall and then rise.

The training bits/char are the logged means of the training batches (random windows), so for
zoneout and recurrent dropout they are measured *with* the noise; the held-out bits/char are
the app's evaluation (no key: zoneout's expectation, recurrent dropout off), over the whole
held-out file.

Writes ``benchmarks/results/regularisers_effect.{json,md}`` and ``docs/regularisers_effect.png``
and prints the table.  Each run is a single-threaded XLA:CPU process (``--threads 1``), so the
figures are comparable on a shared machine; ``--jobs 2`` runs two at a time.

Run: ``python -m benchmarks.regularisers_effect [--steps 2000] [--jobs 2]``;
``--report`` rewrites the tables and plot from existing run folders without training.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.measure import machine_info

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
PLOT = ROOT / "docs" / "regularisers_effect.png"

VARIANTS: dict[str, list[str]] = {
    "plain": [],
    "zoneout 0.1": ["--zoneout", "0.1"],
    "recurrent dropout 0.25": ["--recurrent-dropout", "0.25"],
    "layer norm": ["--layer-norm"],
}
"""Variant name -> extra ``jrnn train`` flags."""


def common_flags(args: argparse.Namespace) -> list[str]:
    """The ``jrnn train`` flags every variant shares."""
    return [
        "--task", "charlm",
        "--cell", "lstm",
        "--hidden", str(args.hidden),
        "--max-chars", str(args.max_chars),
        "--steps", str(args.steps),
        "--batch-size", str(args.batch_size),
        "--seq-len", str(args.seq_len),
        "--seed", str(args.seed),
        "--eval-every", str(args.eval_every),
        "--eval-batches", "0",
        "--log-every", str(args.log_every),
        "--checkpoint-every", str(args.steps),
        "--sample-length", "0",
        "--no-progress",
    ]  # fmt: skip


def slug(name: str) -> str:
    return name.replace(" ", "_").replace(".", "")


def run_env(threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env["JAX_PLATFORMS"] = "cpu"
    if threads == 1:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def train(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One variant's run; returns its command and wall time (the folder holds the rest)."""
    out = Path(args.runs) / slug(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "jrnn", "train", *common_flags(args), *VARIANTS[name]]
    cmd += ["--out", str(out), "--force"]
    nice = ["nice", "-n", str(args.nice)] if args.nice else []
    start = time.perf_counter()
    with open(out.parent / f"{slug(name)}.log", "w") as log:
        proc = subprocess.run(
            nice + cmd, cwd=ROOT, env=run_env(args.threads), stdout=log, stderr=subprocess.STDOUT
        )
    wall = time.perf_counter() - start
    print(f"{name}: exit {proc.returncode}, {wall:.0f} s", flush=True)
    return {"returncode": proc.returncode, "wall_s": wall}


def summarise(name: str, args: argparse.Namespace, wall: dict[str, Any] | None) -> dict[str, Any]:
    """Curves and summary figures of one variant, from its run folder's metrics.jsonl."""
    out = Path(args.runs) / slug(name)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
    config = json.loads((out / "config.json").read_text())
    train_rows = [r for r in rows if "bpc" in r]
    evals = [r for r in rows if "val_bpc" in r]
    best = min(evals, key=lambda r: r["val_bpc"])
    last_train = train_rows[-5:]  # the last 5 logged means (5 x log_every steps)
    steps = train_rows[-1]["step"]
    train_time = train_rows[-1]["time"]
    return {
        "variant": name,
        "flags": VARIANTS[name],
        "model": config["model"],
        "data": config["data"],
        "steps": steps,
        "train_bpc_curve": [[r["step"], r["bpc"]] for r in train_rows],
        "val_bpc_curve": [[r["step"], r["val_bpc"]] for r in evals],
        "final_train_bpc": sum(r["bpc"] for r in last_train) / len(last_train),
        "final_val_bpc": evals[-1]["val_bpc"],
        "best_val_bpc": best["val_bpc"],
        "best_step": best["step"],
        "train_time_s": train_time,
        "ms_per_step": 1e3 * train_time / steps,
        "wall_s": None if wall is None else wall["wall_s"],
    }


def plot(results: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    for i, r in enumerate(results):
        colour = f"C{i}"
        ts, tv = zip(*r["train_bpc_curve"], strict=True)
        vs, vv = zip(*r["val_bpc_curve"], strict=True)
        ax.plot(ts, tv, color=colour, alpha=0.35, lw=1)
        ax.plot(vs, vv, color=colour, lw=2, marker="o", ms=3, label=r["variant"])
    ax.set_xlabel("training step")
    ax.set_ylabel("bits/char")
    ax.set_ylim(0.0, 3.2)
    ax.grid(alpha=0.3)
    ax.set_title("LSTM H=512 char LM: held-out (bold) and training (faint) bits/char", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def markdown(result: dict[str, Any]) -> str:
    m, a = result["machine"], result["args"]
    data = result["runs"][0]["data"]
    lines = [
        f"Character LM, LSTM H = {a['hidden']}, embed 64, on the first {a['max_chars']:,} "
        f"characters of the default corpus ({data['train_chars']:,} training characters in "
        f"{data['train_files']} files, {data['val_chars']:,} held-out in {data['val_files']}); "
        f"{a['steps']} steps of batch {a['batch_size']} x {a['seq_len']} characters "
        f"({a['steps'] * a['batch_size'] * a['seq_len'] / data['train_chars']:.0f} passes "
        f"over the training text), seed {a['seed']}, Adam 3e-3 with warm-up and cosine decay, "
        f"clip 1. Held-out bits/char on the whole held-out text every {a['eval_every']} steps; "
        "training bits/char the mean of the last 5 logged training-batch means "
        f"(5 x {a['log_every']} steps, with the regulariser's noise). "
        f"{m['cpu_model']} ({m['usable_cores']} cores usable, shared), one XLA:CPU thread per "
        f"run, {a['jobs']} run(s) at a time, {len(m['jax_devices'])} device(s), "
        f"matmul precision {m['jax_default_matmul_precision'] or 'default'}.",
        "",
        f"Command: `{result['command']}`",
        "",
        "| variant | held-out bpc, best (step) | held-out bpc, final | train bpc, final "
        "| final gap | ms/step | train time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['variant']} | {r['best_val_bpc']:.3f} ({r['best_step']}) "
            f"| {r['final_val_bpc']:.3f} | {r['final_train_bpc']:.3f} "
            f"| {r['final_val_bpc'] - r['final_train_bpc']:+.3f} | {r['ms_per_step']:.0f} "
            f"| {r['train_time_s']:.0f} |"
        )
    lines += ["", "Held-out bits/char by step:", ""]
    steps = [s for s, _ in result["runs"][0]["val_bpc_curve"]]
    lines.append("| step | " + " | ".join(r["variant"] for r in result["runs"]) + " |")
    lines.append("|---:|" + "---:|" * len(result["runs"]))
    curves = [dict((s, v) for s, v in r["val_bpc_curve"]) for r in result["runs"]]
    for s in steps:
        cells = [f"{c[s]:.3f}" if s in c else "" for c in curves]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--max-chars", type=int, default=200_000)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="1: single-threaded XLA:CPU")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--nice", type=int, default=10)
    parser.add_argument("--runs", default=str(ROOT / "runs" / "regularisers_effect"))
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--plot", default=str(PLOT))
    parser.add_argument("--report", action="store_true", help="only re-read the run folders")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")

    walls: dict[str, Any] = {}
    if not args.report:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            walls = dict(zip(names, pool.map(lambda n: train(n, args), names), strict=True))
        failed = [n for n, w in walls.items() if w["returncode"] != 0]
        if failed:
            sys.exit(f"runs failed: {failed} (logs in {args.runs})")
    results = [summarise(n, args, walls.get(n)) for n in names]

    os.environ.update({k: v for k, v in run_env(args.threads).items() if k.startswith("XLA_")})
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    argv_shown = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--report"]
    result = {
        "machine": machine_info(),
        "args": {k: v for k, v in vars(args).items() if k not in ("runs", "out", "plot")},
        "command": shlex.join(["python", "-m", "benchmarks.regularisers_effect", *argv_shown]),
        "train_command": shlex.join(["python", "-m", "jrnn", "train", *common_flags(args)]),
        "runs": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "regularisers_effect.json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result)
    (out / "regularisers_effect.md").write_text(table)
    if plot(results, Path(args.plot)):
        print(f"plot: {args.plot}")
    print(table)
    assert all(math.isfinite(r["final_val_bpc"]) for r in results)


if __name__ == "__main__":
    main()
