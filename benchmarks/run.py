"""The benchmark suite: jrnn against Flax (linen and NNX), Equinox, Haiku, PyTorch and the
NumPy reference, training step and forward pass, LSTM and GRU, side by side in one process.

    python -m benchmarks.run [--quick] [--out DIR] [--configs small,medium,large,long]
        [--impls jrnn,jrnn-variants,flax,nnx,equinox,haiku,torch,numpy]
        [--modes train,forward] [--cells lstm,gru] [--rounds N]

Writes ``results.json`` (every raw number) and ``results.md`` (tables) to ``--out``
(default ``bench_out/``), rewriting both after every (config, cell) group so an
interrupted run keeps what it measured.  ``benchmarks/README.md`` explains the method and
every column.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jax

from benchmarks import measure, peers
from benchmarks.measure import LoadMeter, RSSPeak, Runner

DEFAULT_CONFIGS = ("small", "medium", "large", "long")
QUICK_CONFIGS = ("small", "medium")


def _csv(s: str) -> list[str]:
    return [p.strip() for p in s.split(",") if p.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--quick", action="store_true", help="small+medium, 5 rounds, short timings")
    ap.add_argument("--out", default="bench_out", help="output folder (default bench_out/)")
    ap.add_argument(
        "--configs", default=None, help="names (tiny,small,medium,large,long) or B/T/I/H"
    )
    ap.add_argument("--impls", default=",".join(peers.FAMILIES), help="families to run")
    ap.add_argument("--long-impls", default="jrnn,flax,torch", help="families run at long configs")
    ap.add_argument("--modes", default="train,forward")
    ap.add_argument("--cells", default="lstm,gru")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds (default 7; quick 5)")
    ap.add_argument("--long-rounds", type=int, default=3, help="rounds at long configs")
    ap.add_argument(
        "--target-time",
        type=float,
        default=None,
        help="seconds per timing; iterations per timing are calibrated to it (0.25; quick 0.1)",
    )
    ap.add_argument(
        "--variants",
        choices=("default", "grid", "none"),
        default="default",
        help="jrnn variant rows: flip each default (vjp, hoist) + remat=step, or hoist x vjp grid",
    )
    ap.add_argument(
        "--variant-configs",
        default=None,
        help="configs that get the jrnn variant rows (default: all but long ones)",
    )
    ap.add_argument("--quiet-wait", type=float, default=5.0, help="max s to wait for quiet")
    ap.add_argument("--quiet-threshold", type=float, default=0.3, help="foreign cores = quiet")
    ap.add_argument(
        "--max-foreign", type=float, default=0.5, help="foreign cores that flag a timing"
    )
    ap.add_argument("--max-redos", type=int, default=2, help="passes re-timing flagged rounds")
    ap.add_argument("--torch-threads", type=int, default=None, help="default: usable cores")
    ap.add_argument(
        "--precision",
        choices=peers.PRECISIONS,
        default="default",
        help="float32 matmul precision: each library's default, or the same for all "
        "(highest: full float32; tf32: TensorFloat-32 products on NVIDIA GPUs)",
    )
    ap.add_argument(
        "--host-devices",
        type=int,
        default=1,
        help="jrnn.use_cpu_cores(N) first: jrnn.unroll splits worthwhile batches over N host "
        "devices (the JAX peers still run on one device)",
    )
    args = ap.parse_args(argv)
    if args.rounds is None:
        args.rounds = 5 if args.quick else 7
    if args.target_time is None:
        args.target_time = 0.1 if args.quick else 0.25
    if args.configs is None:
        args.configs = ",".join(QUICK_CONFIGS if args.quick else DEFAULT_CONFIGS)
    unknown = set(_csv(args.impls)) - set(peers.FAMILIES)
    if unknown:
        ap.error(f"--impls: unknown {sorted(unknown)}; choose from {','.join(peers.FAMILIES)}")
    for c in _csv(args.cells):
        if c not in peers.GATES:
            ap.error(f"--cells: unknown {c!r}")
    for m in _csv(args.modes):
        if m not in ("train", "forward"):
            ap.error(f"--modes: unknown {m!r}")
    return args


# --------------------------------------------------------------------------------------
# one entry = one (implementation, mode)


class Entry:
    def __init__(self, impl: peers.Impl, mode: str) -> None:
        self.impl, self.mode = impl, mode
        self.runner: Runner | None = None
        self.iters = 1
        self.times: list[float] = []
        self.foreign: list[float] = []
        self.discarded: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {}

    @property
    def key(self) -> str:
        return f"{self.impl.name} [{self.mode}]"

    def prepare(self, target: float) -> None:
        """Compiles (JAX: ahead of time, timed), runs the first call (timed), warms up,
        calibrates the iterations per timing, and records memory."""
        mf = self.impl.modes[self.mode]
        torch_cuda = self.impl.framework == "torch" and peers.torch_device() == "cuda"
        if torch_cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        with RSSPeak() as rss:
            fn = mf.fn
            if mf.jit:
                t0 = time.perf_counter()
                compiled = mf.fn.lower(*mf.args).compile()
                self.info["compile_s"] = time.perf_counter() - t0
                self.info["xla_memory"] = measure.xla_memory(compiled)
                fn = compiled
            rest = mf.args[1:]
            runner = Runner(lambda s: fn(s, *rest), mf.args[0], mf.sync, mf.threads_state)
            t0 = time.perf_counter()
            first = runner.run(1)
            self.info["first_call_s"] = time.perf_counter() - t0 + self.info.get("compile_s", 0.0)
            del first
            warm = min(runner.run(1) for _ in range(3))  # oneDNN/cuDNN settle in too
        self.info["rss_growth_bytes"] = rss.growth
        if torch_cuda:
            self.info["device_peak_bytes"] = torch.cuda.max_memory_allocated() - base
        self.iters = measure.calibrate_iters(warm, target)
        self.runner = runner

    def time_once(self) -> tuple[float, float]:
        assert self.runner is not None
        with LoadMeter() as meter:
            t = self.runner.run(self.iters)
        return t, meter.foreign_cores


def _flags(entry: Entry, max_foreign: float) -> dict[int, str]:
    """Rounds to re-time, with the reason."""
    bad = {
        i: "slow outlier (> 2x median of the others)" for i in measure.outlier_rounds(entry.times)
    }
    for i, f in enumerate(entry.foreign):
        if f > max_foreign:
            bad.setdefault(i, f"foreign CPU load {f:.2f} cores")
    return bad


def run_rounds(entries: list[Entry], rounds: int, args: argparse.Namespace) -> list[dict]:
    """Interleaved rounds (each round times every entry once, the starting entry rotating),
    then up to ``max_redos`` passes re-timing the flagged (entry, round) pairs."""
    round_log = []
    for r in range(rounds):
        waited, load = measure.wait_until_quiet(args.quiet_wait, args.quiet_threshold)
        with LoadMeter() as meter:
            k = r % len(entries)
            for e in entries[k:] + entries[:k]:
                t, f = e.time_once()
                e.times.append(t)
                e.foreign.append(f)
        round_log.append(
            {
                "round": r,
                "waited_for_quiet_s": waited,
                "foreign_before": load,
                "foreign_cores": meter.foreign_cores,
                "wall_s": meter.wall,
            }
        )
    for p in range(args.max_redos):
        todo = [(e, i, why) for e in entries for i, why in _flags(e, args.max_foreign).items()]
        if not todo:
            break
        waited, load = measure.wait_until_quiet(args.quiet_wait, args.quiet_threshold)
        for e, i, why in todo:
            t, f = e.time_once()
            e.discarded.append(
                {"round": i, "time_s": e.times[i], "foreign_cores": e.foreign[i], "why": why}
            )
            e.times[i], e.foreign[i] = t, f
        round_log.append(
            {
                "redo_pass": p,
                "retimed": len(todo),
                "waited_for_quiet_s": waited,
                "foreign_before": load,
            }
        )
    return round_log


# --------------------------------------------------------------------------------------
# one group = one (config, cell)


def run_group(
    cfg: peers.Config, cell: str, modes: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    families = set(_csv(args.long_impls if cfg.long else args.impls)) & set(_csv(args.impls))
    variant_cfgs = (
        _csv(args.variant_configs)
        if args.variant_configs is not None
        else [c.name for c in args.config_list if not c.long]
    )
    variants = peers.jrnn_variants(args.variants) if cfg.name in variant_cfgs else []
    rounds = args.long_rounds if cfg.long else args.rounds
    data = peers.Data.make(cfg)
    gates = peers.GATES[cell]
    group: dict[str, Any] = {
        "config": cfg.as_dict(),
        "cell": cell,
        "gates": gates,
        "modes": modes,
        "rounds": rounds,
        "skipped": [],
        "notes": [],
        "results": [],
    }
    if cell == "gru":
        group["notes"].append("jrnn GRU is gru(reset_after=True), the Flax/PyTorch/cuDNN form")
    print(f"== {cfg.name} {cell} (B={cfg.batch} T={cfg.steps} I={cfg.inputs} H={cfg.hidden})")

    entries: list[Entry] = []
    for label, build in peers.builders(cell, cfg, data, families, variants):
        try:
            impl = build()
        except (peers.Missing, peers.Unsupported) as e:
            group["skipped"].append(f"{label}: {e}")
            continue
        for mode in modes:
            if mode not in impl.modes:
                continue
            e = Entry(impl, mode)
            try:
                e.prepare(args.target_time)
            except Exception as exc:  # noqa: BLE001 - a failing peer must not stop the suite
                group["skipped"].append(
                    f"{impl.name} [{mode}]: failed: {type(exc).__name__}: {exc}"
                )
                continue
            print(
                f"   prepared {e.key:<52} first call {e.info['first_call_s']:.2f} s, "
                f"{e.iters} iters/timing",
                flush=True,
            )
            entries.append(e)

    # the physical limit: plain matmuls at the same shapes, timed in the same rounds
    probes = {}
    for name, (mf, flops) in peers.matmul_probes(cfg, gates).items():
        impl = peers.Impl(f"matmul probe: {name}", "probe", "jax", {"probe": mf})
        e = Entry(impl, "probe")
        e.prepare(min(args.target_time, 0.1))
        probes[name] = (e, flops)
        entries.append(e)

    if not entries:
        return group
    group["round_log"] = run_rounds(entries, rounds, args)

    limit: dict[str, Any] = {"gates": gates}
    for name, (e, flops) in probes.items():
        med = statistics.median(e.times)
        limit[f"{name}_s"] = med
        limit[f"{name}_gflops"] = flops / med / 1e9
        limit[f"{name}_times_s"] = e.times
    group["matmul_limit"] = limit
    # matmul-bound time of a forward pass; a training step is counted as 3x
    fwd_limit_s = limit["recurrent_s"] + limit["input_s"]

    tokens = cfg.batch * cfg.steps
    for e in entries:
        if e.mode == "probe":
            continue
        med = statistics.median(e.times)
        flops = measure.matmul_flops(cfg.batch, cfg.steps, cfg.inputs, cfg.hidden, gates, e.mode)
        bound = fwd_limit_s * (3.0 if e.mode == "train" else 1.0)
        group["results"].append(
            {
                "impl": e.impl.name,
                "family": e.impl.family,
                "framework": e.impl.framework,
                "mode": e.mode,
                "note": e.impl.note,
                "precision": e.impl.precision or peers.precision_of(e.impl.framework),
                "iters_per_timing": e.iters,
                "times_s": e.times,
                "foreign_cores": e.foreign,
                "discarded": e.discarded,
                "flagged_rounds": sorted(_flags(e, args.max_foreign)),
                "median_s": med,
                "tokens_per_s": tokens / med,
                "flops": flops,
                "gflops": flops / med / 1e9,
                "matmul_bound_s": bound,
                "fraction_of_matmul_limit": bound / med,
                **e.info,
            }
        )
    group["ratios"] = ratios(group["results"])
    return group


def ratios(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per mode: jrnn's tokens/s over the fastest peer's and over the fastest JAX peer's
    (> 1: jrnn is faster).  jrnn's own variant rows are not peers."""
    out: dict[str, dict[str, Any]] = {}
    for mode in dict.fromkeys(r["mode"] for r in results):
        rows = [r for r in results if r["mode"] == mode]
        mine = next((r for r in rows if r["impl"] == "jrnn"), None)
        others = [r for r in rows if r["family"] not in ("jrnn", "jrnn-variants")]
        jax_others = [r for r in others if r["framework"] == "jax"]
        best = max(others, key=lambda r: r["tokens_per_s"], default=None)
        best_jax = max(jax_others, key=lambda r: r["tokens_per_s"], default=None)
        out[mode] = {
            "fastest_peer": best and best["impl"],
            "fastest_jax_peer": best_jax and best_jax["impl"],
            "over_fastest_peer": (
                mine["tokens_per_s"] / best["tokens_per_s"] if mine and best else None
            ),
            "over_fastest_jax_peer": (
                mine["tokens_per_s"] / best_jax["tokens_per_s"] if mine and best_jax else None
            ),
        }
    return out


# --------------------------------------------------------------------------------------


def _finite(obj: Any) -> Any:
    """NaN and infinities as ``null``: strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite(result), indent=2, default=str, allow_nan=False)
    for name, content in (("results.json", text), ("results.md", measure.markdown_report(result))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(content)
        os.replace(tmp, out / name)  # atomic: an interrupted run leaves whole files


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    args.config_list = [peers.parse_config(c) for c in _csv(args.configs)]
    if args.host_devices > 1:  # before JAX starts its backend
        import jrnn

        jrnn.use_cpu_cores(args.host_devices)
    families = set(_csv(args.impls))
    if "torch" in families:
        try:
            import torch

            if not torch.cuda.is_available():
                torch.set_num_threads(args.torch_threads or measure.usable_cores())
        except ImportError:
            pass
    peers.set_precision(args.precision)
    out = Path(args.out)
    settings = {k: v for k, v in vars(args).items() if k != "config_list"} | {
        "configs": [c.as_dict() for c in args.config_list],
        "argv": sys.argv,
    }
    result: dict[str, Any] = {
        "machine": measure.machine_info(),
        "settings": settings,
        "jrnn_defaults": peers.jrnn_defaults(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "groups": [],
    }
    print(
        f"jrnn benchmarks on {result['machine']['cpu_model']} "
        f"({result['machine']['usable_cores']} cores), JAX {jax.default_backend()} "
        f"({result['machine']['device_kind']}); writing to {out}/",
        flush=True,
    )
    for cfg in args.config_list:
        for cell in _csv(args.cells):
            group = run_group(cfg, cell, _csv(args.modes), args)
            result["groups"].append(group)
            for r in group["results"]:
                flag = f"  ({len(r['flagged_rounds'])} flagged)" if r["flagged_rounds"] else ""
                print(
                    f"   {r['mode']:<7} {r['impl']:<48} {r['tokens_per_s'] / 1e3:9.1f}k tok/s "
                    f"{r['gflops']:7.1f} GFLOP/s{flag}"
                )
            result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            write(result, out)
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return result


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
