"""The levers tried on the LSTM forward pass against PyTorch's oneDNN ``nn.LSTM``.

At one configuration (``--config B,T,I,H``), jitted forward passes of an LSTM, timed in one
process in interleaved rounds, after ``jrnn.use_cpu_cores()`` (every core a host device):

* ``jrnn``: ``jrnn.unroll``'s default (the batch split over the host devices where the
  work pays, the inference unroll factor of ``jrnn.tuned.CPU_INFERENCE``);
* ``jrnn unroll=k``: ``lax.scan`` unrolled ``k`` times; ``jrnn hoist=True``: the input
  projection for all steps before the scan;
* hand-written scans, on one device or split over two by hand (``shard_map`` over the
  batch): ``two products`` (``x @ W + h @ U`` in the step, what jrnn runs), ``one fused
  product`` (``[x, h] @ [W; U]``), ``per-gate hoisted`` (four ``[T, B, H]`` projections
  before the scan, four ``h @ U_k`` in it);
* ``PyTorch``: ``nn.LSTM`` under ``torch.inference_mode()``, one thread per core.

Every variant is checked against the plain scan first.  Prints tokens/s and the ratios to
PyTorch and to jrnn; writes ``benchmarks/results/forward_levers.{json,md}``.

Run: ``PYTHONPATH=$PWD python benchmarks/forward_levers.py --config 64,256,256,512``
(about a minute).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jrnn

jrnn.use_cpu_cores()  # before JAX starts

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from benchmarks.measure import machine_info, usable_cores, write_result  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"


def _gates(z, c):
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return c, jax.nn.sigmoid(o) * jnp.tanh(c)


def _zeros(xs, h):  # [B, H], varying like xs inside shard_map
    return jnp.zeros_like(xs[:, 0, :1]) * jnp.zeros((1, h))


def two_products(p, xs):
    h0 = _zeros(xs, p["w_hh"].shape[0])

    def body(carry, x_t):
        h, c = carry
        c, h = _gates(x_t @ p["w_ih"] + h @ p["w_hh"] + p["b"], c)
        return (h, c), h

    return jnp.swapaxes(jax.lax.scan(body, (h0, h0), jnp.swapaxes(xs, 0, 1))[1], 0, 1)


def one_fused_product(p, xs):
    w = jnp.concatenate([p["w_ih"], p["w_hh"]], 0)
    h0 = _zeros(xs, p["w_hh"].shape[0])

    def body(carry, x_t):
        h, c = carry
        c, h = _gates(jnp.concatenate([x_t, h], -1) @ w + p["b"], c)
        return (h, c), h

    return jnp.swapaxes(jax.lax.scan(body, (h0, h0), jnp.swapaxes(xs, 0, 1))[1], 0, 1)


def per_gate_hoisted(p, xs):
    xt = jnp.swapaxes(xs, 0, 1)
    ws, bs = jnp.split(p["w_ih"], 4, 1), jnp.split(p["b"], 4)
    us = jnp.split(p["w_hh"], 4, 1)
    pre = [xt @ w + b for w, b in zip(ws, bs, strict=True)]
    h0 = _zeros(xs, p["w_hh"].shape[0])

    def body(carry, xg):
        h, c = carry
        zi, zf, zg, zo = [a + h @ u for a, u in zip(xg, us, strict=True)]
        c = jax.nn.sigmoid(zf) * c + jax.nn.sigmoid(zi) * jnp.tanh(zg)
        h = jax.nn.sigmoid(zo) * jnp.tanh(c)
        return (h, c), h

    return jnp.swapaxes(jax.lax.scan(body, (h0, h0), pre)[1], 0, 1)


def _time(fn, iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / iters


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="64,256,256,512", help="B,T,I,H")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    b, t, i, h = map(int, args.config.split(","))
    cell = jrnn.lstm(h)
    params = cell.init(jax.random.key(0), i)
    xs = jax.random.normal(jax.random.key(1), (b, t, i))
    devices = jax.devices("cpu")
    mesh = Mesh(np.array(devices[:2]), ("d",))

    def split(f):
        specs = {"in_specs": (P(), P("d")), "out_specs": P("d"), "check_vma": False}
        return jax.jit(jax.shard_map(f, mesh=mesh, **specs))

    fns = {
        "jrnn": jax.jit(lambda p, x: jrnn.unroll(cell, p, x)[0]),
        "jrnn unroll=1": jax.jit(lambda p, x: jrnn.unroll(cell, p, x, unroll=1)[0]),
        "jrnn unroll=2": jax.jit(lambda p, x: jrnn.unroll(cell, p, x, unroll=2)[0]),
        "jrnn unroll=4": jax.jit(lambda p, x: jrnn.unroll(cell, p, x, unroll=4)[0]),
        "jrnn hoist=True": jax.jit(lambda p, x: jrnn.unroll(cell, p, x, hoist=True)[0]),
        "two products, 1 device": jax.jit(two_products),
        "one fused product, 1 device": jax.jit(one_fused_product),
        "per-gate hoisted, 1 device": jax.jit(per_gate_hoisted),
    }
    if len(devices) >= 2 and b % 2 == 0:
        fns["two products, split over 2"] = split(two_products)
        fns["one fused product, split over 2"] = split(one_fused_product)
        fns["per-gate hoisted, split over 2"] = split(per_gate_hoisted)
    want = np.asarray(fns["two products, 1 device"](params, xs))
    for k, f in fns.items():
        np.testing.assert_allclose(np.asarray(f(params, xs)), want, atol=1e-4, err_msg=k)
    calls = {k: (lambda f=f: f(params, xs)) for k, f in fns.items()}
    torch.set_num_threads(usable_cores())
    lstm, x = torch.nn.LSTM(i, h, batch_first=True), torch.from_numpy(np.array(xs))

    def torch_forward():
        with torch.inference_mode():
            return lstm(x)[0].numpy()

    calls["PyTorch nn.LSTM (oneDNN)"] = torch_forward
    for c in calls.values():
        _time(c, 2)
    iters = max(2, int(0.3 / _time(calls["jrnn"], 2)))
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(args.rounds):
        for k, c in calls.items():
            times[k].append(_time(c, iters))
    med = {k: statistics.median(v) for k, v in times.items()}
    torch_s = med["PyTorch nn.LSTM (oneDNN)"]
    machine = machine_info()
    rows = [
        [k, f"{b * t / s / 1e3:.1f}k", f"{torch_s / s:.2f}", f"{med['jrnn'] / s:.2f}"]
        for k, s in med.items()
    ]
    caption = (
        f"LSTM forward pass, B/T/I/H = {b}/{t}/{i}/{h}, tokens/s (median of {args.rounds} "
        f"interleaved rounds, one process, {len(devices)} host devices), and the ratio to "
        f"PyTorch and to jrnn's default; {machine['cpu_model']} ({machine['usable_cores']} "
        f"cores usable), float32. Command: `PYTHONPATH=$PWD python "
        f"benchmarks/forward_levers.py --config {args.config}`."
    )
    result = {"machine": machine, "config": [b, t, i, h], "times_s": times}
    header = ["variant", "tok/s:", "/ PyTorch:", "/ jrnn:"]
    name = "forward_levers_" + "_".join(map(str, (b, t, i, h)))
    write_result(OUT, name, result, caption, header, rows)


if __name__ == "__main__":
    main()
