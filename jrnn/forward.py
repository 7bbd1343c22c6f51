"""The sequential forward pass of [`jrnn.unroll`][jrnn.unrolling.unroll]: one ``lax.scan`` over
time.

One scan body serves every cell and every strategy: a step reads the carry (replaced by
the initial carry where an episode starts), runs the cell (its ``step``; the
[`jrnn.base.FastPath`][] pieces with the input projection hoisted or in the step; a
regularised cell's ``train_step`` with its noise), and keeps the carry and zeroes the
output on padded steps.  What it emits serves the caller: outputs, outputs and carries, or
the residuals of the hand-structured backward pass ([`jrnn.hoisted`][]).  ``remat``
checkpoints every step or chunks of about √T steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp

from jrnn.base import Array, Carry, Cell, FastPath, Params

Emit = Literal["y", "carries", "residuals", "linearized"]


def reset(carry: Carry, carry0: Carry, r_t: Array | None) -> Carry:
    """The carry entering a step: ``carry0`` where ``r_t`` (bool ``[*batch]``) is set.

    Examples:
      >>> import jax.numpy as jnp
      >>> reset(jnp.ones((2, 1)), jnp.zeros((2, 1)), jnp.array([True, False])).tolist()
      [[0.0], [1.0]]
    """
    if r_t is None:
        return carry
    return jax.tree.map(lambda c0, c: jnp.where(_expand(r_t, c), c0, c), carry0, carry)


def _expand(m: Array, like: Array) -> Array:
    """``m [*batch]`` with trailing unit axes to broadcast against ``like [*batch, ...]``."""
    return m.reshape(m.shape + (1,) * (like.ndim - m.ndim))


def mask_step(carry: Carry, new_carry: Carry, y_t: Array, m_t: Array | None):
    """Padded steps (``m_t`` false) keep ``carry`` and output zeros.

    Examples:
      >>> import jax.numpy as jnp
      >>> c, y = mask_step(jnp.zeros((2, 1)), jnp.ones((2, 1)), jnp.ones((2, 3)),
      ...                  jnp.array([True, False]))
      >>> c.tolist(), y[1].tolist()
      ([[1.0], [0.0]], [0.0, 0.0, 0.0])
    """
    if m_t is None:
        return new_carry, y_t
    new_carry = jax.tree.map(lambda n, o: jnp.where(_expand(m_t, n), n, o), new_carry, carry)
    return new_carry, jnp.where(m_t[..., None], y_t, jnp.zeros_like(y_t))


# ---- the gates as a function of the parameters they read ----------------------------


def gate_leaves_used(fast: FastPath, params: Params, carry: Carry, xa_t, ha_t) -> tuple:
    """Which leaves of ``params`` (in ``jax.tree.leaves`` order) ``fast.gates`` reads, found
    by tracing it once on shapes (``jax.make_jaxpr``): the hand-structured backward
    differentiates those at every step and all others once, after the scan.

    Examples:
      >>> import jax, jrnn
      >>> cell = jrnn.lstm(4, peephole=True)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> c = cell.initial_carry(p, (2,))
      >>> xa = cell.fast.project(p, jax.numpy.ones((2, 3)))
      >>> used = gate_leaves_used(cell.fast, p, c, xa, xa)
      >>> [k for k, u in zip(sorted(p), used) if u]
      ['w_peep']
    """
    leaves, treedef = jax.tree.flatten(params)
    spec = lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a))

    def gates(leaves, c, a, h):
        return fast.gates(jax.tree.unflatten(treedef, leaves), c, a, h)

    abstract = jax.tree.map(spec, (leaves, carry, xa_t, ha_t))
    jaxpr = jax.make_jaxpr(gates)(*abstract).jaxpr
    position = {id(v): i for i, v in enumerate(jaxpr.invars[: len(leaves)])}
    used = [False] * len(leaves)
    for v in [v for eqn in jaxpr.eqns for v in eqn.invars] + list(jaxpr.outvars):
        if id(v) in position:
            used[position[id(v)]] = True
    return tuple(used)


def gate_params(params: Params, used: tuple) -> tuple:
    """The leaves of ``params`` that [`gate_leaves_used`][jrnn.forward.gate_leaves_used] marks."""
    return tuple(leaf for leaf, u in zip(jax.tree.leaves(params), used, strict=True) if u)


def gate_fn(fast: FastPath, params: Params, used: tuple, m_t: Array | None) -> Callable:
    """The masked step as a function of ``(gate_params, carry, xa_t, ha_t)``, the arguments
    the hand-structured backward differentiates it in."""
    leaves, treedef = jax.tree.flatten(params)

    def fn(g, c, a, h):
        it = iter(g)
        merged = [next(it) if u else leaf for leaf, u in zip(leaves, used, strict=True)]
        new_c, y_t = fast.gates(jax.tree.unflatten(treedef, merged), c, a, h)
        return mask_step(c, new_c, y_t, m_t)

    return fn


# ---- the scan ------------------------------------------------------------------------


def _body(cell: Cell, params, carry0, hoist: bool, emit: Emit, noise, used):
    fast = cell.fast
    w_rec = None if fast is None else fast.recurrent_kernel(params)  # once, outside the loop
    seq_noise = None if noise is None else noise[0]

    def body(c, inp):
        x_t, m_t, r_t = inp
        c = reset(c, carry0, r_t)
        if noise is not None:
            x_t, n_t = x_t
            new_c, y_t = cell.train_step(params, c, x_t, seq_noise, n_t)
        elif fast is not None:  # the FastPath pieces
            xa_t = x_t if hoist else fast.project(params, x_t)
            ha_t = c.h @ w_rec
            if emit == "linearized":
                fn = gate_fn(fast, params, used, m_t)
                (new_c, y_t), step_vjp = jax.vjp(fn, gate_params(params, used), c, xa_t, ha_t)
                return new_c, (y_t, (c.h, step_vjp))
            new_c, y_t = fast.gates(params, c, xa_t, ha_t)
        else:  # the cell's own step
            new_c, y_t = cell.step(params, c, x_t)
        new_c, y_t = mask_step(c, new_c, y_t, m_t)
        if emit == "residuals":
            return new_c, (y_t, (c, xa_t, ha_t))
        return new_c, (y_t if emit == "y" else (y_t, new_c))

    return body


def forward(
    cell: Cell,
    params: Params,
    xs: Array,
    carry: Carry,
    mask: Array | None,
    resets: Array | None,
    *,
    emit: Emit,
    hoist: bool,
    reverse: bool,
    unroll: int | bool = 1,
    remat: str = "none",
    noise: Any = None,
    used: tuple | None = None,
):
    """The forward scan over time-major ``xs`` ``[T, *batch, I]``: ``(carry_T, out)``.

    ``hoist``: project all inputs before the scan (``cell.fast.project``) or in the step.
    ``noise``: ``None``, or a regularised cell's ``(seq_noise, step_noise)`` (see
    [`jrnn.Cell`][jrnn.base.Cell]): then every step is ``cell.train_step`` reading the noise's time
    slice.  ``resets`` (bool ``[T, *batch]`` or ``None``): where the carry entering a step
    (in scan order) is replaced by the initial ``carry``.  ``emit``: ``"y"`` -> ys;
    ``"carries"`` -> (ys, carry after each step); ``"residuals"`` -> (ys, (carry the step
    read, after any reset, xa, ha)); ``"linearized"`` -> (ys, (``h`` the step read, the
    step's VJP in the gate leaves ``used``)); the last two feed [`jrnn.hoisted`][].

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.gru(4)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> c0 = cell.initial_carry(p, (2,))
      >>> c, ys = forward(cell, p, jnp.ones((5, 2, 3)), c0, None, None, emit="y", hoist=True,
      ...                 reverse=False)
      >>> bool(jnp.allclose(ys, jrnn.unroll(cell, p, jnp.ones((5, 2, 3)), time_major=True)[0]))
      True
    """
    inputs = cell.fast.project(params, xs) if hoist and noise is None else xs
    if noise is not None:
        inputs = (xs, noise[1])
    body = _body(cell, params, carry, hoist and noise is None, emit, noise, used)
    scanned = (inputs, mask, resets)
    if remat == "none":
        return jax.lax.scan(body, carry, scanned, reverse=reverse, unroll=unroll)
    if remat == "step":
        return jax.lax.scan(jax.checkpoint(body), carry, scanned, reverse=reverse, unroll=unroll)
    return _sqrt_remat_scan(body, carry, inputs, mask, resets, reverse, unroll)


def _sqrt_remat_scan(body, carry, xs, mask, resets, reverse: bool, unroll):
    """Nested √T checkpointing: an outer scan over ``n ≈ √T`` chunks of ``k ≈ √T`` steps
    whose inner scan is ``jax.checkpoint``-ed, so the backward pass keeps only the ``n``
    chunk-boundary carries plus one chunk's residuals at a time.  A ragged last chunk is
    padded with masked steps (they leave the carry unchanged) that never reset.  ``xs`` may
    be a pytree whose first leaf is the inputs ``[T, *batch, I]`` (and the rest a noise
    slice with a leading ``T`` axis)."""
    x0 = jax.tree.leaves(xs)[0]
    num_steps, batch_shape = x0.shape[0], x0.shape[1:-1]
    if reverse:
        xs = jax.tree.map(lambda a: jnp.flip(a, 0), xs)
        mask = None if mask is None else jnp.flip(mask, 0)
        resets = None if resets is None else jnp.flip(resets, 0)
    k = max(1, math.isqrt(num_steps - 1) + 1) if num_steps > 1 else 1
    n = -(-num_steps // k)
    pad = n * k - num_steps
    if pad:
        if mask is None:
            mask = jnp.ones((num_steps,) + batch_shape, bool)
        xs = jax.tree.map(
            lambda a: jnp.concatenate([a, jnp.zeros((pad,) + a.shape[1:], a.dtype)]), xs
        )
        mask = jnp.concatenate([mask, jnp.zeros((pad,) + batch_shape, bool)])
        if resets is not None:
            resets = jnp.concatenate([resets, jnp.zeros((pad,) + batch_shape, bool)])
    chunk = lambda a: a.reshape((n, k) + a.shape[1:])

    @jax.checkpoint
    def inner(c, chunk_inputs):
        return jax.lax.scan(body, c, chunk_inputs, unroll=unroll)

    carry, out = jax.lax.scan(inner, carry, jax.tree.map(chunk, (xs, mask, resets)))
    out = jax.tree.map(lambda a: a.reshape((n * k,) + a.shape[2:])[:num_steps], out)
    if reverse:
        out = jax.tree.map(lambda a: jnp.flip(a, 0), out)
    return carry, out
