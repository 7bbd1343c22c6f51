"""What a served model runs: the exported artifacts against the jrnn function and PyTorch.

One LSTM language-model-shaped network, float inputs ``[B, T, I]`` -> LSTM(``H``) -> a
linear readout to ``H`` outputs at every step, all sequences full length, forward only,
timed in one process in interleaved rounds:

* ``jrnn``: ``jax.jit`` of :func:`jrnn.export.inference`'s function (what is exported);
* ``StableHLO``: the same function exported by :func:`jrnn.export.stablehlo` with symbolic
  batch and time, deserialized and called (``jax.jit(exported.call)``);
* ``ONNX``: :func:`jrnn.export.onnx` (ONNX's native LSTM operator) run by onnxruntime
  (when ``onnx``/``onnxruntime`` are installed: ``pip install "jrnn[export]"``; else the
  column is left out);
* ``PyTorch``: ``torch.nn.LSTM`` + ``nn.Linear`` under ``torch.inference_mode()`` (oneDNN),
  the same sizes (when torch is installed).

Per configuration, tokens/s (median of the rounds) and each over ``jrnn``.  Writes
``benchmarks/results/serve.{json,md}``.

The streaming step, one token of a batch: ``(carry, x_t) -> (carry, y_t)`` of the same
network, the carry fed back: ``jrnn`` (``jax.jit`` of :func:`jrnn.export.streaming`'s
function), its ``StableHLO`` export, its ``ONNX`` export (``streaming=True``) in
onnxruntime, Flax (``nn.OptimizedLSTMCell`` + ``nn.Dense``, jitted) and PyTorch
(``nn.LSTMCell`` + ``nn.Linear``), at batch 1 and the configurations' batch; steps/s and
each over ``jrnn``.  Writes ``benchmarks/results/serve_step.{json,md}``.

Run: ``PYTHONPATH=$PWD python benchmarks/serve.py [--rounds N] [--configs small,medium]``
(31 s on 2 idle cores).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

import jrnn
from benchmarks.measure import machine_info, usable_cores, write_result
from jrnn import export

CONFIGS = {"small": (32, 64, 64, 128), "medium": (64, 128, 128, 256)}
OUT = Path(__file__).resolve().parent / "results"


def _time(fn: Callable[[], object], iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / iters


def _torch_fn(i: int, h: int, xs: np.ndarray) -> Callable[[], object] | None:
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    torch.set_num_threads(usable_cores())
    lstm, readout = torch.nn.LSTM(i, h, batch_first=True), torch.nn.Linear(h, h)
    x = torch.from_numpy(xs)

    def run():
        with torch.inference_mode():
            return readout(lstm(x)[0]).numpy()

    return run


def _onnx_fn(model, params, xs: np.ndarray, lengths: np.ndarray) -> Callable[[], object] | None:
    if any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime")):
        return None
    import onnxruntime

    session = onnxruntime.InferenceSession(
        export.onnx(model, params).data, providers=["CPUExecutionProvider"]
    )
    feed = {"inputs": xs, "lengths": lengths}
    return lambda: session.run(["outputs"], feed)[0]


def measure(config: str, rounds: int) -> dict:
    b, t, i, h = CONFIGS[config]
    model = jrnn.sequence_model(jrnn.lstm(h), h, input_size=i)
    params = model.init(jax.random.key(0))
    xs = np.asarray(jax.random.normal(jax.random.key(1), (b, t, i)))
    lengths = np.full((b,), t, np.int32)
    served = export.inference(model, params)
    direct = jax.jit(served.fn)
    exported = jax.export.deserialize(bytearray(export.stablehlo(served).data))
    called = jax.jit(exported.call)
    fns = {
        "jrnn": lambda: direct(xs, lengths)[0],
        "StableHLO": lambda: called(xs, lengths)[0],
        "ONNX": _onnx_fn(model, params, xs, lengths),
        "PyTorch": _torch_fn(i, h, xs),
    }
    fns = {k: f for k, f in fns.items() if f is not None}
    want = np.asarray(fns["jrnn"]())
    for k in ("StableHLO", "ONNX"):
        if k in fns:  # the artifacts compute what jrnn computes
            np.testing.assert_allclose(np.asarray(fns[k]()), want, rtol=1e-4, atol=1e-5)
    for f in fns.values():
        _time(f, 1)
    iters = max(1, int(0.3 / _time(fns["jrnn"], 1)))
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            times[k].append(_time(f, iters))
    rate = {k: b * t / statistics.median(v) for k, v in times.items()}
    return {
        "config": config,
        "shape": [b, t, i, h],
        "tokens_per_s": rate,
        "times_s": times,
        "over_jrnn": {k: rate[k] / rate["jrnn"] for k in rate},
    }


STEP_CONFIGS = {"small, B=1": (1, 64, 128), "small": (32, 64, 128), "medium": (64, 128, 256)}


def _flax_step(i: int, h: int, b: int) -> Callable[[], object] | None:
    if importlib.util.find_spec("flax") is None:
        return None
    import flax.linen as nn
    import jax.numpy as jnp

    class Step(nn.Module):
        @nn.compact
        def __call__(self, carry, x):
            carry, y = nn.OptimizedLSTMCell(h)(carry, x)
            return carry, nn.Dense(h)(y)

    x, carry = jnp.ones((b, i)), (jnp.zeros((b, h)), jnp.zeros((b, h)))
    variables = Step().init(jax.random.key(0), carry, x)
    step = jax.jit(Step().apply)
    state = {"carry": carry}

    def run():
        state["carry"], y = step(variables, state["carry"], x)
        return y

    return run


def _torch_step(i: int, h: int, b: int) -> Callable[[], object] | None:
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    torch.set_num_threads(usable_cores())
    cell, readout = torch.nn.LSTMCell(i, h), torch.nn.Linear(h, h)
    x, state = torch.ones(b, i), {"carry": (torch.zeros(b, h), torch.zeros(b, h))}

    def run():
        with torch.inference_mode():
            state["carry"] = cell(x, state["carry"])
            return readout(state["carry"][0]).numpy()

    return run


def _onnx_step(model, params, x: np.ndarray, carry: list) -> Callable[[], object] | None:
    if any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime")):
        return None
    import onnxruntime

    art = export.onnx(model, params, streaming=True)
    session = onnxruntime.InferenceSession(art.data, providers=["CPUExecutionProvider"])
    names = [p["name"] for p in art.signature["inputs"][:-1]]
    state = {"carry": carry}

    def run():
        *state["carry"], y = session.run(
            None, {**dict(zip(names, state["carry"], strict=True)), "input": x}
        )
        return y

    return run


def measure_step(config: str, rounds: int) -> dict:
    b, i, h = STEP_CONFIGS[config]
    model = jrnn.sequence_model(jrnn.lstm(h), h, input_size=i)
    params = model.init(jax.random.key(0))
    served = export.streaming(model, params)
    x = np.ones((b, i), np.float32)
    carry0 = [np.zeros((b, h), np.float32) for _ in served.initial_carry]
    exported = jax.export.deserialize(bytearray(export.stablehlo(served).data))

    def fed_back(fn):
        state = {"carry": carry0}

        def run():
            *state["carry"], y = fn(*state["carry"], x)
            return y

        return run

    fns = {
        "jrnn": fed_back(jax.jit(served.fn)),
        "StableHLO": fed_back(jax.jit(exported.call)),
        "ONNX": _onnx_step(model, params, x, list(carry0)),
        "Flax": _flax_step(i, h, b),
        "PyTorch": _torch_step(i, h, b),
    }
    fns = {k: f for k, f in fns.items() if f is not None}
    for f in fns.values():
        _time(f, 3)
    iters = max(1, int(0.1 / _time(fns["jrnn"], 20)))
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            times[k].append(_time(f, iters))
    rate = {k: 1 / statistics.median(v) for k, v in times.items()}
    return {
        "config": config,
        "shape": [b, i, h],
        "steps_per_s": rate,
        "times_s": times,
        "over_jrnn": {k: rate[k] / rate["jrnn"] for k in rate},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--configs", default="small,medium")
    args = ap.parse_args()
    machine = machine_info()
    where = f"{machine['cpu_model']} ({machine['usable_cores']} cores usable)"
    rows = [measure(c, args.rounds) for c in args.configs.split(",")]
    caption = (
        f"Served inference of an LSTM (+ linear readout), forward only, tokens/s (median of "
        f"{args.rounds} interleaved rounds, one process) and the ratio to the jitted jrnn "
        f"function; {where}, 1 device, float32 (CPU matmuls are full float32). "
        f"Command: `PYTHONPATH=$PWD python benchmarks/serve.py`."
    )
    _write("serve", rows, "tokens_per_s", ("B/T/I/H", "tok/s", "{:.0f}k"), caption, machine, args)
    steps = [measure_step(c, args.rounds) for c in STEP_CONFIGS]
    caption = (
        f"Streaming step of the same LSTM (+ linear readout): one step of a batch, the carry "
        f"fed back, steps/s (median of {args.rounds} interleaved rounds, one process) and the "
        f"ratio to the jitted jrnn step; {where}, float32. Command: `PYTHONPATH=$PWD python "
        f"benchmarks/serve.py`."
    )
    _write(
        "serve_step", steps, "steps_per_s", ("B/I/H", "steps/s", "{:.1f}k"), caption, machine, args
    )


def _write(
    name: str,
    rows: list[dict],
    rate: str,
    columns: tuple[str, str, str],
    caption: str,
    machine: dict,
    args,
) -> None:
    """``benchmarks/results/{name}.{json,md}``: per row its rates (``rate``, in thousands,
    ``columns``: the shape's header, the unit, the format) and each over ``jrnn``."""
    shape, unit, fmt = columns
    impls = list(rows[0][rate])
    header = ["config", shape, *(f"{k} {unit}:" for k in impls)]
    header += [f"{k} / jrnn:" for k in impls if k != "jrnn"]
    table = []
    for r in rows:
        cells = [r["config"], "/".join(map(str, r["shape"]))]
        cells += [fmt.format(r[rate][k] / 1e3) for k in impls]
        cells += [f"{r['over_jrnn'][k]:.2f}" for k in impls if k != "jrnn"]
        table.append(cells)
    result = {"machine": machine, "rounds": args.rounds, "rows": rows}
    write_result(OUT, name, result, caption, header, table)


if __name__ == "__main__":
    main()
