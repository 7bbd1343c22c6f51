"""Training-step speed of jrnn's modern cells against their authors' code, on this CPU.

* RG-LRU: ``jrnn.rglru`` (``lax.scan`` and the associative scan) against
  ``recurrentgemma.jax.layers.RGLRU`` (its own scan, ``ScanType.AUTO``: ``lax.scan`` on CPU);
* mLSTM: ``jrnn.mlstm`` (``lax.scan``) against ``xlstm``'s ``mLSTMCell`` (PyTorch, the
  vanilla backend: its parallel form ``parallel_stabilized_simple``, quadratic in ``T``);
* sLSTM: ``jrnn.slstm`` (``lax.scan``) against ``xlstm``'s ``sLSTMCell`` (PyTorch, the
  vanilla backend: a Python loop over the steps), both on the same input projection
  (``x @ W_x`` in PyTorch, the cell's own ``W_x`` in jrnn).

A training step is the gradient of the summed outputs with respect to all parameters
(``jax.jit(jax.grad(...))``; PyTorch ``forward`` + ``backward``), on the same random
weights (converted) and inputs.  The implementations run interleaved (A, B, A, B, ...) so
that the machine's load drifts equally over all; the table reports the median of
``--rounds`` and tokens/s = batch x T / time.  jrnn's mLSTM takes ``[q | k | v]`` through
its own projections (three ``[3H, H]`` matmuls the authors' cell does not have).

Writes ``benchmarks/results/modern_refs.{json,md}`` (or ``--out``) and prints the table.

Run: ``PYTHONPATH=$PWD nice -n 5 python benchmarks/modern_refs.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import jax
import jax.numpy as jnp

import jrnn
from benchmarks.measure import machine_info, time_call

OUT = Path(__file__).resolve().parent / "results"
SIZES = {  # name: (batch, T, width, heads)
    "small": (8, 128, 64, 4),
    "medium": (8, 512, 256, 4),
}


def _rglru(batch, steps, width, heads):
    from recurrentgemma.jax.layers import RGLRU

    from jrnn.griffin import from_recurrentgemma

    layer = RGLRU(width=width, num_heads=heads)
    xs = jax.random.normal(jax.random.key(1), (batch, steps, width))
    pos = jnp.broadcast_to(jnp.arange(1, steps + 1), (batch, steps))
    variables = layer.init(jax.random.key(0), xs, pos)
    cell = jrnn.rglru(width, num_heads=heads)
    params = from_recurrentgemma(variables)
    ref = jax.jit(jax.grad(lambda v: jnp.sum(layer.apply(v, xs, pos)[0])))

    def ours(method):
        fn = jax.jit(jax.grad(lambda p: jnp.sum(jrnn.unroll(cell, p, xs, method=method)[0])))
        return lambda: jax.block_until_ready(fn(params))

    return {
        "recurrentgemma": lambda: jax.block_until_ready(ref(variables)),
        "jrnn scan": ours("scan"),
        "jrnn associative": ours("newton"),
    }


def _mlstm(batch, steps, width, heads):
    import torch
    from xlstm.blocks.mlstm.cell import mLSTMCell, mLSTMCellConfig

    from jrnn.xlstm import from_xlstm

    torch.manual_seed(0)
    ref = mLSTMCell(mLSTMCellConfig(context_length=steps, embedding_dim=width, num_heads=heads))
    q, k, v = (torch.randn(batch, steps, width) for _ in range(3))

    def torch_step():
        ref.zero_grad()
        ref(q, k, v).sum().backward()

    cell = jrnn.mlstm(width, num_heads=heads)
    params = from_xlstm(ref)
    xs = jnp.asarray(torch.cat([q, k, v], -1).numpy())
    fn = jax.jit(jax.grad(lambda p: jnp.sum(jrnn.unroll(cell, p, xs)[0])))
    return {"xlstm (torch)": torch_step, "jrnn scan": lambda: jax.block_until_ready(fn(params))}


def _slstm(batch, steps, width, heads):
    import torch
    from xlstm.blocks.slstm.cell import sLSTMCell, sLSTMCellConfig

    from jrnn.xlstm import from_xlstm

    torch.manual_seed(0)
    config = sLSTMCellConfig(
        hidden_size=width, num_heads=heads, backend="vanilla", output_shape="BSH"
    )
    ref = sLSTMCell(config)
    w_x = (torch.randn(width, 4 * width) / width**0.5).requires_grad_()
    x = torch.randn(batch, steps, width)

    def torch_step():
        ref.zero_grad()
        w_x.grad = None
        ref(x @ w_x)[0].sum().backward()

    cell = jrnn.slstm(width, num_heads=heads)
    params = from_xlstm(ref, w_x=w_x.detach())
    xs = jnp.asarray(x.numpy())
    fn = jax.jit(jax.grad(lambda p: jnp.sum(jrnn.unroll(cell, p, xs)[0])))
    return {"xlstm (torch)": torch_step, "jrnn scan": lambda: jax.block_until_ready(fn(params))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--cells", default="rglru,mlstm,slstm")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    rows = []
    for cell_name in args.cells.split(","):
        make = {"rglru": _rglru, "mlstm": _mlstm, "slstm": _slstm}[cell_name]
        for size in args.sizes.split(","):
            batch, steps, width, heads = SIZES[size]
            fns = make(batch, steps, width, heads)
            times = {name: [] for name in fns}
            for _ in range(args.rounds):
                for name, fn in fns.items():
                    times[name].append(time_call(fn, target=0.3))
            for name, ts in times.items():
                med = statistics.median(ts)
                row = {
                    "cell": cell_name,
                    "size": size,
                    "batch": batch,
                    "T": steps,
                    "width": width,
                    "heads": heads,
                    "impl": name,
                    "ms": 1e3 * med,
                    "tokens_per_s": batch * steps / med,
                }
                rows.append(row)
                print(
                    f"{cell_name:6s} {size:7s} {name:18s} {row['ms']:9.2f} ms "
                    f"{row['tokens_per_s']:12.0f} tok/s",
                    flush=True,
                )
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine_info(), "rounds": args.rounds, "rows": rows}
    (args.out / "modern_refs.json").write_text(json.dumps(result, indent=1))
    lines = [
        f"Training step (gradient of the summed outputs), median of {args.rounds} interleaved "
        "rounds, float32, CPU.",
        "",
        "| cell | size (B, T, width, heads) | implementation | ms | tokens/s |",
        "|---|---|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['size']} ({r['batch']}, {r['T']}, {r['width']}, {r['heads']}) "
            f"| {r['impl']} | {r['ms']:.2f} | {r['tokens_per_s']:.0f} |"
        )
    (args.out / "modern_refs.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
