"""A lever for the cost of layer norm, tried: the normalisation with a closed-form derivative.

jrnn's :func:`jrnn.cells.block_layer_norm` is differentiated op by op by JAX.  This script
swaps in, for the same layer-normalised cells, a normalisation whose JVP is written by hand
(``du -> r * (du - mean(du) - y * mean(du * y))`` with ``y`` the output and
``r = 1/sqrt(var + eps)``; JAX transposes it for the backward pass, which then keeps only
``y`` and ``r``; forward mode keeps working), and a ``jax.custom_vjp`` with the same backward
(reverse mode only).  Each is timed against the plain cell's training step in interleaved
rounds in one process, as in ``benchmarks/regularisers.py`` (same step, sizes and loss).

Writes ``benchmarks/results/layer_norm_jvp.{json,md}`` and prints the table.

Run: ``python -m benchmarks.layer_norm_jvp [--rounds N]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

import jrnn
import jrnn.cells
from benchmarks.regularisers import (
    INPUT,
    SIZES,
    interleaved_times,
    ratio_rows,
    train_step,
    write_results,
)

OUT = Path(__file__).resolve().parent / "results"
EPS = jrnn.cells.LN_EPSILON


def _stats(u: jax.Array) -> tuple[jax.Array, jax.Array]:
    d = u - jnp.mean(u, axis=-1, keepdims=True)
    r = jax.lax.rsqrt(jnp.mean(d * d, axis=-1, keepdims=True) + EPS)
    return d * r, r


def _closed_form(y: jax.Array, r: jax.Array, g: jax.Array) -> jax.Array:
    mean_g = jnp.mean(g, axis=-1, keepdims=True)
    return r * (g - mean_g - y * jnp.mean(g * y, axis=-1, keepdims=True))


@jax.custom_jvp
def normalise_jvp(u: jax.Array) -> jax.Array:
    """``(u - mean) / sqrt(var + eps)`` over the last axis, with a hand-written JVP."""
    return _stats(u)[0]


@normalise_jvp.defjvp
def _jvp(primals, tangents):
    y, r = _stats(primals[0])
    return y, _closed_form(y, r, tangents[0])


@jax.custom_vjp
def normalise_vjp(u: jax.Array) -> jax.Array:
    """The same with a hand-written VJP (saves ``y`` and ``r``)."""
    return _stats(u)[0]


def _vjp_fwd(u: jax.Array):
    y, r = _stats(u)
    return y, (y, r)


def _vjp_bwd(res, g):
    return (_closed_form(*res, g),)


normalise_vjp.defvjp(_vjp_fwd, _vjp_bwd)


def block_layer_norm_with(normalise: Callable[[jax.Array], jax.Array]):
    """:func:`jrnn.cells.block_layer_norm` with another normalisation (float32 inputs)."""

    def block_layer_norm(a: jax.Array, scale: jax.Array, blocks: int = 1) -> jax.Array:
        *lead, width = a.shape
        u = a.reshape(*lead, blocks, width // blocks)
        return normalise(u).reshape(a.shape) * scale

    return block_layer_norm


LEVERS = {
    "layer_norm (jrnn: autodiff)": None,
    "layer_norm (custom_jvp)": block_layer_norm_with(normalise_jvp),
    "layer_norm (custom_vjp)": block_layer_norm_with(normalise_vjp),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iters", type=int, default=3, help="steps per timed call")
    args = parser.parse_args()

    opt = optax.adam(1e-3)
    rows = []
    library = jrnn.cells.block_layer_norm
    for kind in ("lstm", "gru"):
        make = {"lstm": jrnn.lstm, "gru": jrnn.gru}[kind]
        for size, (batch, steps, hidden) in SIZES.items():
            k = jax.random.split(jax.random.key(0), 4)
            xs = jax.random.normal(k[0], (batch, steps, INPUT))
            ys = jax.random.normal(k[1], (batch, steps, hidden))
            prepared = {}
            for name in ["plain", *LEVERS]:
                cell = make(hidden) if name == "plain" else make(hidden, layer_norm=True)
                params = cell.init(k[2], INPUT)
                step = train_step(cell, opt)
                state = (params, opt.init(params))
                # the cells look block_layer_norm up when traced: swap it for the compile
                jrnn.cells.block_layer_norm = LEVERS.get(name) or library
                try:
                    step(*state, xs, ys, k[3])[2].block_until_ready()
                finally:
                    jrnn.cells.block_layer_norm = library
                prepared[name] = (step, state)
            times = interleaved_times(prepared, (xs, ys, k[3]), args.rounds, args.iters)
            rows += ratio_rows(kind, size, (batch, steps, hidden), times)

    write_results("layer_norm_jvp", rows, args)


if __name__ == "__main__":
    main()
