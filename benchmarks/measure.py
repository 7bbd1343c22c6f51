"""Measurement helpers of the benchmark suite: timing, foreign CPU load, memory, FLOPs,
machine information and the markdown report.

Nothing here knows about RNNs except :func:`matmul_flops`; ``benchmarks.run`` drives it.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------------------
# FLOPs


def matmul_flops(batch: int, steps: int, inputs: int, hidden: int, gates: int, mode: str) -> float:
    """Matmul FLOPs of one call, counted analytically.

    Forward: ``2·B·T·(I + H)·G·H`` (the input product ``[B, I] x [I, G·H]`` and the recurrent
    product ``[B, H] x [H, G·H]`` at every step).  A training step (forward + BPTT) is
    counted as 3x the forward: the backward pass holds two products of the same sizes per
    forward product (the input/hidden gradient and the weight gradient).  Element-wise gate
    math, the loss and the optimiser update are not counted.
    """
    forward = 2.0 * batch * steps * (inputs + hidden) * gates * hidden
    return 3.0 * forward if mode == "train" else forward


# --------------------------------------------------------------------------------------
# foreign CPU load


def _proc_stat_busy() -> float | None:
    """Busy CPU seconds of the whole machine (all cores) since boot, from ``/proc/stat``."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    busy = sum(ticks[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadMeter:
    """Measures the CPU time that *other* processes used while it was running.

    ``foreign_cores`` is (machine busy CPU seconds - this process's CPU seconds) / wall
    seconds: 0 on a quiet machine, 1.0 when another job keeps one core busy.  Linux only
    (``/proc/stat``); elsewhere it falls back to the 1-minute load average minus this
    process's own average use, which is much coarser.
    """

    def __init__(self) -> None:
        self._t0 = self._busy0 = self._own0 = 0.0
        self._have_stat = _proc_stat_busy() is not None

    def __enter__(self) -> LoadMeter:
        self._t0 = time.perf_counter()
        self._own0 = _own_cpu()
        self._busy0 = _proc_stat_busy() or 0.0
        self.foreign_cores = 0.0
        self.wall = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = max(time.perf_counter() - self._t0, 1e-9)
        own = _own_cpu() - self._own0
        if self._have_stat:
            busy = (_proc_stat_busy() or 0.0) - self._busy0
            self.foreign_cores = max(0.0, (busy - own) / self.wall)
        else:
            try:
                self.foreign_cores = max(0.0, os.getloadavg()[0] - own / self.wall)
            except OSError:
                self.foreign_cores = float("nan")


def foreign_load(seconds: float = 0.25) -> float:
    """Foreign CPU load (in cores) over a short idle sample."""
    with LoadMeter() as meter:
        time.sleep(seconds)
    return meter.foreign_cores


def wait_until_quiet(
    max_wait: float, threshold: float, sample: float = 0.25
) -> tuple[float, float]:
    """Sleeps until the foreign load over ``sample`` seconds is below ``threshold`` cores, or
    ``max_wait`` seconds have passed.  Returns ``(seconds waited, last foreign load)``."""
    t0 = time.perf_counter()
    load = foreign_load(sample) if max_wait > 0 else float("nan")
    while load > threshold and time.perf_counter() - t0 < max_wait:
        time.sleep(min(1.0, max_wait))
        load = foreign_load(sample)
    return time.perf_counter() - t0, load


# --------------------------------------------------------------------------------------
# timing


@dataclass
class Runner:
    """One timed thing: ``call(state)`` runs one iteration.

    ``threads_state``: the result is the next state (a training step), so iterations are
    chained by a data dependence exactly as in a training loop.  ``sync(out)`` waits for
    the device (``jax.block_until_ready``, ``torch.cuda.synchronize``).
    """

    call: Callable[[Any], Any]
    state: Any
    sync: Callable[[Any], None]
    threads_state: bool = False

    def run(self, iters: int) -> float:
        """Seconds per iteration over ``iters`` back-to-back iterations, synchronised."""
        self.sync(self.state)
        state, out = self.state, None
        t0 = time.perf_counter()
        for _ in range(iters):
            out = self.call(state)
            if self.threads_state:
                state = out
        self.sync(out)
        elapsed = time.perf_counter() - t0
        if self.threads_state:
            self.state = state
        return elapsed / iters


def calibrate_iters(seconds_per_call: float, target: float, max_iters: int = 1000) -> int:
    """Iterations per timing so that one timing lasts about ``target`` seconds."""
    if seconds_per_call <= 0:
        return max_iters
    return int(min(max_iters, max(1, math.ceil(target / seconds_per_call))))


def time_call(fn: Any, *args: Any, target: float = 0.2) -> float:
    """Seconds per call of ``fn(*args)`` (results waited for with
    ``jax.block_until_ready``): one call to warm up, then as many as fill ``target``
    seconds."""
    import jax

    jax.block_until_ready(fn(*args))
    n, start = 0, time.perf_counter()
    while True:
        jax.block_until_ready(fn(*args))
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed > target:
            return elapsed / n


def outlier_rounds(times: Sequence[float], factor: float = 2.0) -> list[int]:
    """Indices of rounds whose time is more than ``factor`` x the median of the others."""
    bad = []
    for i, t in enumerate(times):
        others = [v for j, v in enumerate(times) if j != i]
        if others and t > factor * statistics.median(others):
            bad.append(i)
    return bad


# --------------------------------------------------------------------------------------
# memory


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int | None:
    """Current resident set size of this process."""
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - best effort
        return None


class RSSPeak:
    """Peak RSS growth of this process inside a ``with`` block.

    On Linux the kernel's high-water mark is reset first (``/proc/self/clear_refs``, "5")
    and read back (``VmHWM``) at the end; where that is not allowed a thread samples the RSS
    every 5 ms.  Coarse by nature: memory freed to allocator caches by earlier work is
    reused without new pages, allocators return memory lazily, and the growth includes
    compilation, library caches and threads' stacks, not only the model's tensors.
    """

    def __enter__(self) -> RSSPeak:
        self.before = rss_bytes()
        self.peak: int | None = None
        self._use_hwm = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._use_hwm = _status_kib("VmHWM") is not None
        except OSError:
            self._use_hwm = False
        self._stop = threading.Event()
        self._sampled = self.before or 0
        if not self._use_hwm and self.before is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._sampled = max(self._sampled, rss_bytes() or 0)
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        if self._use_hwm:
            kib = _status_kib("VmHWM")
            self.peak = None if kib is None else kib * 1024
        elif self.before is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._sampled, rss_bytes() or 0)

    @property
    def growth(self) -> int | None:
        if self.before is None or self.peak is None:
            return None
        return max(0, self.peak - self.before)


def xla_memory(compiled: Any) -> dict[str, int] | None:
    """XLA's static memory plan of a compiled executable: temporaries, outputs, arguments,
    and ``peak_bytes = temp + output`` (the memory the call needs beyond its inputs)."""
    try:
        ma = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if ma is None:
        return None
    get = lambda name: int(getattr(ma, name, 0) or 0)
    out = {
        "temp_bytes": get("temp_size_in_bytes"),
        "output_bytes": get("output_size_in_bytes"),
        "argument_bytes": get("argument_size_in_bytes"),
        "alias_bytes": get("alias_size_in_bytes"),
    }
    out["peak_bytes"] = out["temp_bytes"] + out["output_bytes"]
    return out


# --------------------------------------------------------------------------------------
# machine information


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        mod = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - absent or broken: not installed for our purpose
        return None
    return str(getattr(mod, "__version__", "unknown"))


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    """CPU, cores, accelerator, library versions and relevant environment variables."""
    import jax

    devices = jax.devices()
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind,
        "versions": {
            name: _version(name)
            for name in ("jax", "jaxlib", "flax", "optax", "equinox", "haiku", "torch", "numpy")
        },
        "env": {
            k: os.environ[k]
            for k in (
                "XLA_FLAGS",
                "OMP_NUM_THREADS",
                "XLA_PYTHON_CLIENT_MEM_FRACTION",
                "GLIBC_TUNABLES",  # glibc.malloc.hugetlb: benchmarks/hugepages.py
            )
            if k in os.environ
        },
        # None: XLA's default float32 matmul precision (TF32 on recent NVIDIA GPUs)
        "jax_default_matmul_precision": getattr(jax.config, "jax_default_matmul_precision", None),
    }
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["torch_threads"] = torch.get_num_threads()
        info["torch_mkldnn"] = bool(
            torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
        )
        if torch.cuda.is_available():
            info["torch_cuda_device"] = torch.cuda.get_device_name(0)
            info["torch_cudnn"] = torch.backends.cudnn.version()
            info["torch_allow_tf32"] = {
                "cudnn": bool(torch.backends.cudnn.allow_tf32),
                "matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            }
    try:
        info["loadavg_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


# --------------------------------------------------------------------------------------
# markdown


def _fmt_rate(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def _fmt(v: float | None, spec: str, scale: float = 1.0) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return format(v * scale, spec)


def _mib(v: int | None) -> str:
    if v is None:
        return "—"
    return f"{v / 2**20:.1f}" if v >= 2**20 else f"{v / 2**20:.3f}"


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def render(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


def summary_tables(groups: Iterable[dict[str, Any]]) -> str:
    """Tokens/s per implementation (rows) and config (columns), one table per cell x mode,
    in the style of the README."""
    groups = list(groups)
    blocks = []
    for cell in dict.fromkeys(g["cell"] for g in groups):
        for mode in ("train", "forward"):
            cols = [g for g in groups if g["cell"] == cell and mode in g["modes"]]
            if not cols:
                continue
            names = list(
                dict.fromkeys(r["impl"] for g in cols for r in g["results"] if r["mode"] == mode)
            )
            if not names:
                continue
            title = "training step" if mode == "train" else "forward (inference)"
            table = Table(["impl"] + [f"{g['config']['name']} tok/s" for g in cols])
            for name in names:
                row = [name]
                for g in cols:
                    r = next(
                        (r for r in g["results"] if r["impl"] == name and r["mode"] == mode),
                        None,
                    )
                    row.append(_fmt_rate(r["tokens_per_s"]) if r else "—")
                table.rows.append(row)
            ratios = []
            for g in cols:
                rat = g.get("ratios", {}).get(mode, {})
                if rat.get("over_fastest_peer") is not None:
                    ratios.append(
                        f"{g['config']['name']}: jrnn / fastest peer "
                        f"{rat['over_fastest_peer']:.2f} ({rat['fastest_peer']}), "
                        f"/ fastest JAX peer "
                        + (
                            f"{rat['over_fastest_jax_peer']:.2f} ({rat['fastest_jax_peer']})"
                            if rat.get("over_fastest_jax_peer") is not None
                            else "—"
                        )
                    )
            blocks.append(
                f"### {cell.upper()} {title}\n\n{table.render()}\n"
                + ("\n" + "; ".join(ratios) + "\n" if ratios else "")
            )
    return "\n".join(blocks)


def detail_table(group: dict[str, Any]) -> str:
    """Every measured number of one (config, cell) group."""
    cfg = group["config"]
    table = Table(
        [
            "mode",
            "impl",
            "tok/s",
            "ms/call",
            "GFLOP/s",
            "% matmul limit",
            "compile s",
            "first call s",
            "peak MiB",
            "RSS growth MiB",
            "precision",
            "rounds (flagged)",
        ]
    )
    for r in group["results"]:
        table.rows.append(
            [
                r["mode"],
                r["impl"],
                _fmt_rate(r["tokens_per_s"]),
                _fmt(r["median_s"], ".3f", 1e3),
                _fmt(r.get("gflops"), ".1f"),
                _fmt(r.get("fraction_of_matmul_limit"), ".0f", 100.0),
                _fmt(r.get("compile_s"), ".2f"),
                _fmt(r.get("first_call_s"), ".2f"),
                _mib((r.get("xla_memory") or {}).get("peak_bytes", r.get("device_peak_bytes"))),
                _mib(r.get("rss_growth_bytes")),
                r.get("precision", "—"),
                f"{len(r['times_s'])} ({len(r['flagged_rounds'])})",
            ]
        )
    probe = group.get("matmul_limit", {})
    lines = [
        f"#### {group['cell'].upper()} {cfg['name']} "
        f"(B={cfg['batch']}, T={cfg['steps']}, I={cfg['inputs']}, H={cfg['hidden']})",
        "",
        table.render(),
        "",
    ]
    if probe:
        lines.append(
            f"Matmul limit (jnp.dot, same run): recurrent "
            f"[{cfg['batch']},{cfg['hidden']}]x[{cfg['hidden']},{probe['gates']}·"
            f"{cfg['hidden']}] {_fmt(probe.get('recurrent_gflops'), '.1f')} GFLOP/s, input "
            f"[{cfg['batch'] * cfg['steps']},{cfg['inputs']}]x[{cfg['inputs']},"
            f"{probe['gates']}·{cfg['hidden']}] {_fmt(probe.get('input_gflops'), '.1f')} "
            "GFLOP/s."
        )
        lines.append("")
    if group.get("skipped"):
        lines.append("Skipped: " + "; ".join(group["skipped"]) + ".")
        lines.append("")
    if group.get("notes"):
        lines.append("Notes: " + "; ".join(group["notes"]) + ".")
        lines.append("")
    return "\n".join(lines)


def write_result(
    out: Path, name: str, result: dict[str, Any], caption: str, header: Sequence[str], rows
) -> None:
    """``out/{name}.json`` (``result``) and ``out/{name}.md``: ``caption``, then a table with
    ``header`` (a trailing ``:`` right-aligns a column) and ``rows`` (cell texts); printed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    align = ["---:" if h.endswith(":") else "---" for h in header]
    lines = [caption, "", "| " + " | ".join(h.rstrip(":") for h in header) + " |"]
    lines += ["|" + "|".join(align) + "|"] + ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def markdown_report(result: dict[str, Any]) -> str:
    m = result["machine"]
    v = m["versions"]
    dev = m["device_kind"]
    if m.get("torch_cuda_device"):
        dev += f" (torch: {m['torch_cuda_device']})"
    head = [
        "# jrnn benchmarks",
        "",
        f"Machine: {m['cpu_model']}, {m['usable_cores']} usable cores; JAX backend "
        f"{m['jax_backend']} ({dev}); "
        + ", ".join(f"{k} {val}" for k, val in v.items() if val is not None)
        + (f"; torch threads {m['torch_threads']}" if "torch_threads" in m else "")
        + (f", oneDNN {'on' if m.get('torch_mkldnn') else 'off'}" if "torch_mkldnn" in m else "")
        + "".join(f"; {k}={val}" for k, val in m.get("env", {}).items())
        + ".",
        "",
        f"Method: median of {result['settings']['rounds']} interleaved rounds (long config: "
        f"{result['settings']['long_rounds']}), all implementations in one process, compile "
        "and warm-up excluded; tokens/s = batch x time steps per second; training step = "
        "forward + BPTT + Adam, loss = MSE over features summed over time, averaged over "
        "batch. GFLOP/s counts matmul FLOPs only (training = 3x forward); % matmul limit "
        "compares the time with plain jnp.dot products at the same shapes timed in the same "
        "rounds. peak MiB: XLA's temp + output bytes (JAX), torch.cuda.max_memory_allocated "
        "growth (PyTorch on CUDA); RSS growth: peak resident memory growth of the process "
        "while compiling and warming up (coarse); precision: what float32 matmuls computed "
        f"(--precision {result['settings'].get('precision', 'default')}). See "
        "benchmarks/README.md.",
        "",
        "## Summary",
        "",
        summary_tables(result["groups"]),
        "## Details",
        "",
    ]
    head += [detail_table(g) for g in result["groups"]]
    return "\n".join(head) + "\n"
