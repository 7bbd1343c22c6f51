"""The hand-structured backward pass of [`jrnn.unroll`][jrnn.unrolling.unroll] (``vjp="hoisted"``).

Built from a cell's [`jrnn.base.FastPath`][].  The forward scan keeps per step what
the backward needs; the reverse scan holds only the VJP of the gates and one
``[B, K'] x [K', H]`` product per step, ``dh_{t-1} += dha_t @ w_rec.T``; after it the weight
and input gradients are single large matmuls over all time steps: ``dw_rec = Σ_t h_{t-1}^T
dha_t`` and the projection's VJP (``dw_ih = Σ_t x_t^T dxa_t``, ``db``, ``dxs``).  Autodiff
of the scan instead accumulates a weight-sized gradient at every step.

Where every residual of the gates' VJP is per-step data
([`per_step_residuals`][jrnn.hoisted.per_step_residuals]), the forward pass saves each step's VJP
and the backward only applies them (no transcendental is evaluated twice; 1.1-1.3x faster training
on CPU, ``benchmarks/results/tune.md``); otherwise it saves the step's inputs and linearises the
gates again.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jrnn.base import Array, Carry, Cell, Params, vary_like
from jrnn.forward import forward, gate_fn, gate_leaves_used, gate_params


class Static(NamedTuple):
    """The static part of [`scan`][jrnn.hoisted.scan] (hashable): the cell and the plan's
    choices."""

    cell: Cell
    hoist: bool  # project before the scan when differentiated
    infer_hoist: bool  # ... when not differentiated (the primal alone)
    reverse: bool
    unroll: int | bool  # lax.scan's unroll factor when differentiated
    save_step_vjps: bool
    infer_unroll: int | bool = 1  # ... when not differentiated


def _abstract_step(cell: Cell, params: Params, carry: Carry, xs: Array):
    """Shapes of one step's ``(x_t, xa_t, ha_t)`` for time-major ``xs``."""
    fast = cell.fast
    x_t = jax.ShapeDtypeStruct(xs.shape[1:], xs.dtype)
    xa_t = jax.eval_shape(fast.project, params, x_t)
    ha_t = jax.eval_shape(lambda p, c: c.h @ fast.recurrent_kernel(p), params, carry)
    return x_t, xa_t, ha_t


def _used(cell: Cell, params: Params, carry: Carry, xs: Array) -> tuple:
    _, xa_t, ha_t = _abstract_step(cell, params, carry, xs)
    return gate_leaves_used(cell.fast, params, carry, xa_t, ha_t)


def per_step_residuals(cell: Cell, params: Params, xs: Array, carry: Carry, mask) -> bool:
    """Whether every residual of the gates' VJP is per-step data ``[*batch, ...]``, so the
    forward pass can save each step's VJP: a residual that is a parameter (a reset-before
    GRU's ``w_hn``, peepholes, layer-norm gains) would be stored once per step.  Decided on
    shapes, with a batch size no parameter has.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> def check(cell):
      ...     p = cell.init(jax.random.key(0), 3)
      ...     xs = jnp.ones((5, 2, 3))
      ...     return per_step_residuals(cell, p, xs, cell.initial_carry(p, (2,)), None)
      >>> check(jrnn.lstm(4)), check(jrnn.gru(4))
      (True, False)
    """
    nb = xs.ndim - 2
    sizes = [d for a in jax.tree.leaves(params) for d in a.shape] + list(xs.shape)
    fake = 1 + max((d for d in sizes if not jax.export.is_symbolic_dim(d)), default=1)
    batch = (fake,) * nb
    used = _used(cell, params, carry, xs)
    spec = lambda a: jax.ShapeDtypeStruct(batch + a.shape[nb:], a.dtype)
    abstract_carry = jax.tree.map(spec, carry)
    x_t = jax.ShapeDtypeStruct(batch + xs.shape[-1:], xs.dtype)
    m_t = None if mask is None else jax.ShapeDtypeStruct(batch, mask.dtype)
    fast = cell.fast

    def residuals(params, carry, x_t, m_t):
        xa_t = fast.project(params, x_t)
        ha_t = carry.h @ fast.recurrent_kernel(params)
        fn = gate_fn(fast, params, used, m_t)
        return jax.tree.leaves(jax.vjp(fn, gate_params(params, used), carry, xa_t, ha_t)[1])

    shapes = jax.eval_shape(residuals, params, abstract_carry, x_t, m_t)
    return all(s.shape[:nb] == batch for s in shapes)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def scan(static: Static, params, xs, carry, mask, resets):
    """``(ys, carry_T)`` of the forward scan, differentiated by the hand-structured VJP."""
    carry_T, ys = forward(
        static.cell, params, xs, carry, mask, resets, emit="y", hoist=static.infer_hoist,
        reverse=static.reverse, unroll=static.infer_unroll,
    )  # fmt: skip
    return ys, carry_T


def _scan_fwd(static: Static, params, xs, carry, mask, resets):
    used = _used(static.cell, params, carry, xs)
    emit = "linearized" if static.save_step_vjps else "residuals"
    carry_T, (ys, residuals) = forward(
        static.cell, params, xs, carry, mask, resets, emit=emit, hoist=static.hoist,
        reverse=static.reverse, unroll=static.unroll, used=used,
    )  # fmt: skip
    return (ys, carry_T), (params, xs, mask, resets, residuals)


def _flat2(a: Array) -> Array:
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])  # also for a zero-width a


def _expand(m: Array, like: Array) -> Array:
    return m.reshape(m.shape + (1,) * (like.ndim - m.ndim))


def _scan_bwd(static: Static, res, cotangents):
    """BPTT from the cell's pieces (see the module).  With ``resets`` the carry a reset
    step read is the initial carry: its cotangent does not flow on into the previous
    episode but is added to the initial carry's (an extra ``[*batch, ...]`` accumulator in
    the reverse scan)."""
    fast = static.cell.fast
    params, xs, mask, resets, residuals = res
    dys, dcarry_T = cotangents
    used = _used(static.cell, params, dcarry_T, xs)
    w_rec_t = fast.recurrent_kernel(params).T
    saved = static.save_step_vjps  # residuals: (h_prev, step VJPs) or (c_prev, xa, ha)
    steps = residuals[1] if saved else residuals

    def body(acc, inp):
        dc, dgp, dc0 = acc
        step_t, dy_t, m_t, r_t = inp
        if saved:
            step_vjp = step_t
        else:
            c_tm1, xa_t, ha_t = step_t
            fn = gate_fn(fast, params, used, m_t)
            _, step_vjp = jax.vjp(fn, gate_params(params, used), c_tm1, xa_t, ha_t)
        dg, dc_tm1, dxa_t, dha_t = step_vjp((dc, dy_t))
        dc_tm1 = dc_tm1._replace(h=dc_tm1.h + dha_t @ w_rec_t)
        if r_t is not None:  # the step read the initial carry: route its cotangent there
            zero = jnp.zeros_like
            read = lambda d: jnp.where(_expand(r_t, d), d, zero(d))
            dc0 = jax.tree.map(lambda a, d: a + read(d), dc0, dc_tm1)
            dc_tm1 = jax.tree.map(lambda d: jnp.where(_expand(r_t, d), zero(d), d), dc_tm1)
        # one array where both products entered as a sum (the LSTM's xa + ha): written once
        dgp = tuple(a + b for a, b in zip(dgp, dg, strict=True))
        return (dc_tm1, dgp, dc0), (dxa_t, None if dha_t is dxa_t else dha_t)

    zeros_gp = tuple(jnp.zeros_like(a) for a in gate_params(params, used))
    zeros_c0 = None if resets is None else jax.tree.map(jnp.zeros_like, dcarry_T)
    (dcarry0, dgp, dc0), (dxa, dha) = jax.lax.scan(
        body,
        (dcarry_T, zeros_gp, zeros_c0),
        (steps, dys, mask, resets),
        reverse=not static.reverse,
        unroll=static.unroll,
    )
    if resets is not None:
        dcarry0 = jax.tree.map(jnp.add, dcarry0, dc0)
    dha = dxa if dha is None else dha
    h_prev = residuals[0] if saved else residuals[0].h
    dw_rec = _flat2(h_prev).T @ _flat2(dha)
    # typed like its cotangent inside shard_map (a kernel made of constants, e.g. the LRU's
    # empty one, is not device-varying by itself)
    kernel = lambda p: vary_like(fast.recurrent_kernel(p), dw_rec)
    (dp_rec,) = jax.vjp(kernel, params)[1](dw_rec)
    _, proj_vjp = jax.vjp(fast.project, params, _flat2(xs))  # 2-d: one plain matmul each
    dp_proj, dxs = proj_vjp(_flat2(dxa))
    leaves, treedef = jax.tree.flatten(params)
    it = iter(dgp)
    dp_gates = [next(it) if u else jnp.zeros_like(a) for a, u in zip(leaves, used, strict=True)]
    dp_gates = jax.tree.unflatten(treedef, dp_gates)
    dparams = jax.tree.map(lambda a, b, c: a + b + c, dp_rec, dp_proj, dp_gates)
    return dparams, dxs.reshape(xs.shape), dcarry0, None, None


scan.defvjp(_scan_fwd, _scan_bwd)
