"""Transparent huge pages for XLA:CPU's buffers (``jrnn.app.hugepages``), measured.

glibc reads ``GLIBC_TUNABLES`` only when a process starts, so each setting needs its own
process: every measurement runs once with ``glibc.malloc.hugetlb=0`` and once with ``=1``,
the two alternated pair by pair (``--pairs``), and each row reports the median.

1. The default ``jrnn train`` (the character-level LSTM language model, B=64 T=128 H=256)
   for ``--steps`` steps: the median of the tokens/s it logs after the first 20 steps
   (compilation), and the process's minor page faults per training step.
2. With ``--peers CONFIGS``: ``python -m benchmarks.run`` at those configs (jrnn, Flax,
   Equinox, PyTorch; ``--host-devices 2`` where the machine has 2 cores), every row's
   tokens/s in each setting.  The peers share the process and so the setting: their ratios
   to jrnn are the suite's; this shows what the setting is worth to each.

Writes ``benchmarks/results/hugepages.{json,md}`` and prints the table.

Run: ``PYTHONPATH=$PWD python benchmarks/hugepages.py [--pairs 2] [--steps 200]
[--peers small,medium,large,long] [--train-flags "..."] [--out DIR]`` (the ``jrnn train``
part: about 5 minutes for 2 pairs; ``--peers medium,large,long`` took 23 minutes in all).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.measure import machine_info, usable_cores, write_result

REPO = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "results"
SETTINGS = ("glibc.malloc.hugetlb=0", "glibc.malloc.hugetlb=1")


def _run(cmd: list[str], tunables: str) -> int:
    """Runs ``cmd`` with ``tunables``; returns the minor page faults it caused."""
    env = {**os.environ, "GLIBC_TUNABLES": tunables, "PYTHONPATH": str(REPO)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
    subprocess.run(cmd, env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before


def train(tunables: str, steps: int, warmup: int, flags: list[str]) -> dict[str, float]:
    """``jrnn train`` (the default, plus ``flags``) for ``steps`` steps: the median tokens/s
    logged after step ``warmup``, and page faults per step."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        flags = ["--eval-every", str(10 * steps), "--checkpoint-every", str(10 * steps), *flags]
        cmd = [sys.executable, "-m", "jrnn", "train", "--steps", str(steps), *flags]
        faults = _run([*cmd, "--no-progress", "--out", str(out)], tunables)
        logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["tokens_per_s"] for r in logged if "tokens_per_s" in r and r["step"] > warmup]
    return {"tokens_per_s": statistics.median(speeds), "faults_per_step": faults / steps}


def peers(tunables: str, configs: str) -> dict[str, float]:
    """``benchmarks.run`` at ``configs``: tokens/s by ``cell/config/mode/impl``."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "benchmarks.run", "--configs", configs, "--out", tmp]
        cmd += ["--impls", "jrnn,flax,equinox,torch", "--variants", "none", "--rounds", "5"]
        if usable_cores() > 1:
            cmd += ["--host-devices", str(usable_cores())]
        _run(cmd, tunables)
        groups = json.loads((Path(tmp) / "results.json").read_text())["groups"]
    return {
        f"{g['cell']}/{g['config']['name']}/{r['mode']}/{r['impl']}": r["tokens_per_s"]
        for g in groups
        for r in g["results"]
        if r.get("tokens_per_s")
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=2, help="alternated runs of each setting")
    ap.add_argument("--steps", type=int, default=200, help="jrnn train steps per run")
    ap.add_argument("--warmup", type=int, default=20, help="steps not timed (compilation)")
    ap.add_argument("--train-flags", default="", help="extra jrnn train flags (default none)")
    ap.add_argument("--peers", default="", help="benchmarks.run configs (default: none)")
    ap.add_argument("--out", type=Path, default=OUT, help="folder of hugepages.{json,md}")
    args = ap.parse_args()
    runs: dict[str, list[dict[str, float]]] = {s: [] for s in SETTINGS}
    for _ in range(args.pairs):
        for s in SETTINGS:
            speed = train(s, args.steps, args.warmup, args.train_flags.split())
            measured = {f"jrnn train (default)/{k}": v for k, v in speed.items()}
            if args.peers:
                measured |= peers(s, args.peers)
            runs[s].append(measured)
            print(s, {k: round(v) for k, v in measured.items()}, flush=True)
    median = {
        s: {k: statistics.median(r[k] for r in rs) for k in rs[0] if all(k in r for r in rs)}
        for s, rs in runs.items()
    }
    off, on = (median[s] for s in SETTINGS)
    machine = machine_info()
    caption = (
        f"`glibc.malloc.hugetlb` 0 against 1, one process per setting, median of {args.pairs} "
        f"alternated runs each; {machine['cpu_model']} ({machine['usable_cores']} cores "
        "usable), float32. Rows but the first two: `python -m benchmarks.run` tokens/s "
        "(cell/config/mode/implementation)."
    )
    header = ["measurement", "hugetlb=0:", "hugetlb=1:", "=1 / =0:"]

    def fmt(key: str, v: float) -> str:
        return f"{v:,.0f}" if key.endswith("faults_per_step") else f"{v / 1e3:.1f}k"

    table = [(k, fmt(k, off[k]), fmt(k, on[k]), f"{on[k] / off[k]:.2f}") for k in off if k in on]
    settings = {**vars(args), "out": str(args.out)}
    result = {"machine": machine, "settings": settings, "runs": runs, "median": median}
    write_result(args.out, "hugepages", result, caption, header, table)


if __name__ == "__main__":
    main()
