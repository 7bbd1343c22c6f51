"""Parallel-in-time evaluation of cells whose recurrence is element-wise linear.

A cell with ``Cell.affine`` ([`jrnn.mingru`][jrnn.mincells.mingru],
[`jrnn.minlstm`][jrnn.mincells.minlstm], [`jrnn.lru`][jrnn.mincells.lru]) gives, for a whole
sequence at once, the coefficients of ``h_t = a_t * h_{t-1} + b_t``. The maps ``h -> a_t * h + b_t``
compose associatively,

    (a_1, b_1) then (a_2, b_2)  =  (a_1 * a_2,  b_1 * a_2 + b_2),

so ``jax.lax.associative_scan`` finds every prefix map ``h_t = A_t * h_0 + B_t`` in
``O(log T)`` depth (Blelloch's scan; the "parallel scan" of Martin & Cundy 2018 and of
Feng et al. 2024, "Were RNNs All We Needed?").  This is exact: Newton's method on a linear
recurrence converges in one step, so [`jrnn.unroll`][jrnn.unrolling.unroll] runs it for
``method="newton"``, ``"quasi-newton"`` and, where it measured faster, ``"auto"``
([`jrnn.strategy`][]).

* Log space (``LinearRecurrence.log_space``): the coefficients are ``log a_t``, ``log b_t``
  and the composition is ``(α_1 + α_2, logaddexp(β_1 + α_2, β_2))``; the initial state
  enters only at the end, ``h_t = exp(A_t) * h_0 + exp(B_t)``, so ``h_0`` may be zero or
  negative (no ``log h_0``).
* Complex ``a``, ``b`` (the LRU): the state is complex; ``carry.h`` holds its real view
  ``[Re h | Im h]``.
* Padded steps (``t >= lengths``) are the identity map ``a = 1, b = 0`` (``log b`` a huge
  negative number in log space): the carry is untouched and the output is set to zero.
* Resets are a *segmented* scan: an element carries a flag "a new episode starts here",
  and composing with a flagged map forgets everything before it, so ``A_t, B_t`` run from
  the last episode start and ``h_t = A_t * h_0 + B_t`` restarts every episode from the
  initial carry exactly as separately unrolled episodes.
* Outputs: the carries the scan finds are fed, all steps at once, to ``cell.fast.gates`` with
  the carry each step read, which returns ``y_t`` (``h_t`` for the min cells,
  ``Re(C h_t) + D x_t`` for the LRU).

Gradients are ordinary autodiff through the associative scan.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jrnn.base import Array, Carry, Cell, LinearRecurrence, Params
from jrnn.prepare import Prepared


def _neg_big(dtype) -> Array:
    """``log 0`` stand-in: finite (no ``inf - inf`` in ``logaddexp`` or its gradient)."""
    return jnp.asarray(jnp.finfo(dtype).min / 4, dtype)


def _compose(log_space: bool, with_resets: bool):
    def combine(e1, e2):  # e1 is the earlier map, e2 the later one
        if with_resets:
            (a1, b1, r1), (a2, b2, r2) = e1, e2
        else:
            (a1, b1), (a2, b2) = e1, e2
        if log_space:
            a, b = a1 + a2, jnp.logaddexp(b1 + a2, b2)
        else:
            a, b = a1 * a2, b1 * a2 + b2
        if not with_resets:
            return a, b
        return jnp.where(r2, a2, a), jnp.where(r2, b2, b), r1 | r2

    return combine


def _to_state(h: Array, complex_state: bool, dtype) -> Array:
    if not complex_state:
        return h
    real = jnp.finfo(dtype).dtype  # float32 for complex64
    re, im = jnp.split(h.astype(real), 2, axis=-1)
    return jax.lax.complex(re, im)


def _to_h(z: Array, complex_state: bool, dtype) -> Array:
    if not complex_state:
        return z.astype(dtype)
    return jnp.concatenate([jnp.real(z), jnp.imag(z)], axis=-1).astype(dtype)


def associative_unroll(
    cell: Cell,
    params: Params,
    xs: Array,
    carry: Carry,
    mask: Array | None,
    resets: Array | None,
    reverse: bool,
    emit: str = "y",
) -> tuple[Carry, Array | tuple[Array, Carry]]:
    """The associative-scan counterpart of ``jrnn.unroll``'s sequential scan.

    Args:
      cell: a cell with ``affine`` and a one-field carry ``RNNState(h)``.
      params: compute-dtype parameters (checked by the caller).
      xs: time-major inputs ``[T, *batch, I]`` (``T >= 1``), padded steps already zero.
      carry: the initial carry ``[*batch, ...]``.
      mask: bool ``[T, *batch]`` (valid steps) or ``None``.
      resets: bool ``[T, *batch]`` or ``None``: where the carry entering a step, in the
        order the steps are read, is the initial carry.
      reverse: read the steps from ``T - 1`` down to ``0``.
      emit: ``"y"`` -> ``ys``; ``"carries"`` -> ``(ys, carries)`` (the carry after every
        step, ``RNNState(h [T, *batch, ...])``).

    Returns:
      ``(carry_T, out)`` as the sequential scan returns them.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.mingru(4)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> xs = jnp.ones((6, 2, 3))  # [T, batch, I]
      >>> c0 = cell.initial_carry(p, (2,))
      >>> c, ys = associative_unroll(cell, p, xs, c0, None, None, False)
      >>> ys_seq, c_seq = jrnn.unroll(cell, p, xs, time_major=True, method="scan")
      >>> bool(jnp.allclose(ys, ys_seq, atol=1e-6)), bool(jnp.allclose(c.h, c_seq.h, atol=1e-6))
      (True, True)
    """
    if reverse:
        flip = lambda a: None if a is None else jnp.flip(a, 0)
        xs, mask, resets = flip(xs), flip(mask), flip(resets)
    h0 = carry.h
    dtype = h0.dtype
    fast = cell.fast
    xa = fast.project(params, xs)
    rec = cell.affine(params, xa)
    if not isinstance(rec, LinearRecurrence):
        raise TypeError(
            f"unroll: `{cell.name}.affine` must return a jrnn.base.LinearRecurrence, got "
            f"{type(rec).__name__}"
        )
    a, b, log_space = rec
    complex_state = jnp.iscomplexobj(a) or jnp.iscomplexobj(b)
    if complex_state and log_space:
        raise ValueError(f"unroll: `{cell.name}.affine` gave complex log-space coefficients")
    if mask is not None:
        m = mask[..., None]
        if log_space:
            a = jnp.where(m, a, jnp.zeros_like(a))
            b = jnp.where(m, b, _neg_big(b.dtype))
        else:
            a = jnp.where(m, a, jnp.ones_like(a))
            b = jnp.where(m, b, jnp.zeros_like(b))
    elems = (a, b) if resets is None else (a, b, resets[..., None])
    out = jax.lax.associative_scan(_compose(log_space, resets is not None), elems, axis=0)
    big_a, big_b = out[0], out[1]
    z0 = _to_state(h0, complex_state, a.dtype)
    if log_space:
        zs = jnp.exp(big_a) * z0 + jnp.exp(big_b)
    else:
        zs = big_a * z0 + big_b
    hs = _to_h(zs, complex_state, dtype)

    # the carry each step read: h_{t-1}, or the initial carry at t = 0 and at resets
    h_read = jnp.concatenate([h0[None], hs[:-1]], axis=0)
    if resets is not None:
        h_read = jnp.where(resets[..., None], h0, h_read)
    c_read = carry._replace(h=h_read)
    _, ys = fast.gates(params, c_read, xa, h_read @ fast.recurrent_kernel(params))
    if mask is not None:
        ys = jnp.where(mask[..., None], ys, jnp.zeros_like(ys))
    carry_t = carry._replace(h=hs[-1])  # after the last step read
    if reverse:
        ys, hs = jnp.flip(ys, 0), jnp.flip(hs, 0)
    carries = carry._replace(h=hs)
    if emit == "carries":
        return carry_t, (ys, carries)
    return carry_t, ys


def run(cell: Cell, prep: Prepared, plan) -> tuple:
    """The associative engine of [`jrnn.unroll`][jrnn.unrolling.unroll]: ``(carry_T, out, None)``
    like
    [`jrnn.scan.run`][]'s."""
    emit = "carries" if plan.return_carries else "y"
    carry, out = associative_unroll(
        cell, prep.params, prep.xs, prep.carry, prep.mask, prep.resets, prep.reverse, emit
    )
    return carry, out, None
