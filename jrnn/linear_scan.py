"""Parallel-in-time evaluation of cells whose recurrence is element-wise linear (``affine``) or
that give a whole-sequence form (``parallel``).

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

A cell with ``Cell.parallel`` (any carry: [`jrnn.mlstm`][jrnn.xlstm.mlstm]'s ``(C, n, m)``)
evaluates the whole sequence itself, typically by
[`scan_recurrence`][jrnn.linear_scan.scan_recurrence] (the prefix maps above, also in the
max-plus semiring ``h -> max(a + h, b)`` of a log-space stabiliser) or
[`scan_stabilised`][jrnn.linear_scan.scan_stabilised] (an exponentially gated recurrence at the
scale of its max-plus stabiliser, xLSTM's); this engine flips it for ``reverse``, zeroes the
padded outputs and takes the final carry from the last step (padded steps keep the carry).

Gradients are ordinary autodiff through the associative scan.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from jrnn.base import Array, Carry, Cell, LinearRecurrence, Params
from jrnn.prepare import Prepared


def _neg_big(dtype) -> Array:
    """``log 0`` stand-in: finite (no ``inf - inf`` in ``logaddexp`` or its gradient)."""
    return jnp.asarray(jnp.finfo(dtype).min / 4, dtype)


def _compose(log_space: bool | str, with_resets: bool):
    """The composition of two maps (``log_space``: ``False`` -> ``h -> a h + b``, ``True`` ->
    the same in log space, ``"max-plus"`` -> ``h -> max(a + h, b)``), resets segmenting."""

    def combine(e1, e2):  # e1 is the earlier map, e2 the later one
        if with_resets:
            (a1, b1, r1), (a2, b2, r2) = e1, e2
        else:
            (a1, b1), (a2, b2) = e1, e2
        if log_space == "max-plus":
            a, b = a1 + a2, jnp.maximum(b1 + a2, b2)
        elif log_space:
            a, b = a1 + a2, jnp.logaddexp(b1 + a2, b2)
        else:
            a, b = a1 * a2, b1 * a2 + b2
        if not with_resets:
            return a, b
        return jnp.where(r2, a2, a), jnp.where(r2, b2, b), r1 | r2

    return combine


@partial(jax.jit, static_argnames="semiring")  # one compilation, not one per eager op
def scan_recurrence(
    a: Array,
    b: Array,
    h0: Array,
    mask: Array | None = None,
    resets: Array | None = None,
    semiring: str = "linear",
) -> Array:
    """Every state of a recurrence over the leading (time) axis, by ``jax.lax.associative_scan``.

    ``semiring="linear"``: ``h_t = a_t * h_{t-1} + b_t``; ``"max-plus"``: ``h_t = max(a_t +
    h_{t-1}, b_t)`` (exact up to the rounding of the additions: a maximum rounds nothing).
    ``a [T, ...]`` broadcasts against ``b [T, ...]`` (e.g. one coefficient per head for a
    matrix state: ``a [T, *batch, NH, 1, 1]``, ``b [T, *batch, NH, DH, DH]``) and ``h0``
    against ``b[0]``.  ``mask`` and ``resets`` (bool, ``[T, *batch]``, their trailing axes
    added here) as in [`associative_unroll`][jrnn.linear_scan.associative_unroll]: a padded
    step keeps the state (the identity map), a reset step reads ``h0``.

    Returns:
      ``h [T, ...]`` (``b``'s shape).

    Examples:
      >>> import jax.numpy as jnp
      >>> scan_recurrence(jnp.zeros((3, 1)), jnp.array([[1.0], [0.0], [2.0]]), jnp.zeros(1),
      ...                 semiring="max-plus").ravel().tolist()
      [1.0, 1.0, 2.0]
    """
    if semiring not in ("linear", "max-plus"):
        raise ValueError(
            f"scan_recurrence: `semiring` must be 'linear' or 'max-plus', got {semiring!r}"
        )
    tropical = semiring == "max-plus"
    extra = lambda flags, like: flags.reshape(flags.shape + (1,) * (like.ndim - flags.ndim))
    if mask is not None:
        if tropical:
            a = jnp.where(extra(mask, a), a, jnp.zeros_like(a))
            b = jnp.where(extra(mask, b), b, _neg_big(b.dtype))
        else:
            a = jnp.where(extra(mask, a), a, jnp.ones_like(a))
            b = jnp.where(extra(mask, b), b, jnp.zeros_like(b))
    op = _compose("max-plus" if tropical else False, resets is not None)
    elems = (a, b) if resets is None else (a, b, extra(resets, b))
    out = jax.lax.associative_scan(op, elems, axis=0)
    big_a, big_b = out[0], out[1]
    if tropical:
        return jnp.maximum(big_a + h0, big_b)
    return big_a * h0 + big_b


@jax.jit  # one compilation, not one per eager op (inlined under an outer jit)
def scan_stabilised(
    log_a: Array,
    log_i: Array,
    bs: tuple[Array, ...],
    m0: Array,
    h0s: tuple[Array, ...],
    mask: Array | None = None,
    resets: Array | None = None,
) -> tuple[Array, tuple[Array, ...]]:
    """Every state of an exponentially gated recurrence kept at the scale of a log-space
    stabiliser, by one ``jax.lax.associative_scan`` (xLSTM's; the scaled-partial-sum trick of
    online softmax)::

        m_t = max(log_a_t + m_{t-1}, log_i_t)
        h_t = exp(log_a_t + m_{t-1} − m_t) h_{t-1} + exp(log_i_t − m_t) b_t   (each h of ``h0s``)

    An element is ``(A, M, B)``: the map ``(h, m) -> (exp(A + m − m') h + exp(M − m') B, m' =
    max(A + m, M))``; ``(A₁, M₁, B₁)`` then ``(A₂, M₂, B₂)`` is ``(A₁ + A₂, M = max(A₂ + M₁,
    M₂), exp(A₂ + M₁ − M) B₁ + exp(M₂ − M) B₂)``.  ``m`` is the max-plus recurrence (exact up
    to the rounding of its additions); every ``exp`` argument is ``<= 0``; where one branch
    wins along a run its weight is ``exp(0) = 1`` exactly, so the rounding of ``m`` does not
    accumulate over the steps (a product of per-step gates computed from a separately scanned
    ``m`` would: ``T`` independent roundings of ``m`` in float32).

    Args:
      log_a, log_i: ``[T, *S]``.
      bs: arrays ``[T, *S, ...]`` (trailing axes broadcast against ``log_a``).
      m0: ``[*S]``; h0s: like ``bs`` without ``T``.
      mask, resets: bool ``[T, *S']`` with ``S'`` a prefix of ``S`` (as in
        [`scan_recurrence`][jrnn.linear_scan.scan_recurrence]): a padded step keeps
        ``(h, m)``, a reset step reads ``(h0s, m0)``.

    Returns:
      ``(m [T, *S], hs)`` with every ``hs[j]`` of ``bs[j]``'s shape.

    Examples:
      >>> import jax.numpy as jnp
      >>> m, (h,) = scan_stabilised(jnp.log(jnp.full((3,), 0.5)), jnp.zeros(3),
      ...                           (jnp.ones(3),), jnp.zeros(()), (jnp.zeros(()),))
      >>> [round(float(v), 4) for v in jnp.exp(m) * h]  # 0.5 h + 1, unscaled
      [1.0, 1.5, 1.75]
    """
    extra = lambda x, like: x.reshape(x.shape + (1,) * (like.ndim - x.ndim))
    bs, h0s = tuple(bs), tuple(h0s)
    if mask is not None:
        log_a = jnp.where(extra(mask, log_a), log_a, jnp.zeros_like(log_a))
        log_i = jnp.where(extra(mask, log_i), log_i, _neg_big(log_i.dtype))
        bs = tuple(jnp.where(extra(mask, b), b, jnp.zeros_like(b)) for b in bs)

    def combine(e1, e2):  # e1 is the earlier map, e2 the later one
        (a1, m1, b1), (a2, m2, b2) = e1[:3], e2[:3]
        a = a1 + a2
        m = jnp.maximum(a2 + m1, m2)
        w1, w2 = jnp.exp(a2 + m1 - m), jnp.exp(m2 - m)
        b = tuple(extra(w1, x) * x + extra(w2, y) * y for x, y in zip(b1, b2, strict=True))
        if resets is None:
            return a, m, b
        r1, r2 = e1[3], e2[3]
        keep = lambda new, late: jnp.where(extra(r2, late), late, new)
        b = tuple(keep(x, y) for x, y in zip(b, b2, strict=True))
        return keep(a, a2), keep(m, m2), b, r1 | r2

    elems = (log_a, log_i, bs) if resets is None else (log_a, log_i, bs, resets)
    out = jax.lax.associative_scan(combine, elems, axis=0)
    big_a, big_m, big_b = out[:3]
    m = jnp.maximum(big_a + m0, big_m)
    w0, wb = jnp.exp(big_a + m0 - m), jnp.exp(big_m - m)
    hs = tuple(extra(w0, b) * h0 + extra(wb, b) * b for h0, b in zip(h0s, big_b, strict=True))
    return m, hs


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
      cell: a cell with ``parallel`` (its whole-sequence form, see
        [`jrnn.Cell`][jrnn.base.Cell]; any carry), or with ``affine`` and a one-field carry
        ``RNNState(h)``.
      params: compute-dtype parameters (checked by the caller).
      xs: time-major inputs ``[T, *batch, I]`` (``T >= 1``), padded steps already zero.
      carry: the initial carry ``[*batch, ...]``.
      mask: bool ``[T, *batch]`` (valid steps) or ``None``.
      resets: bool ``[T, *batch]`` or ``None``: where the carry entering a step, in the
        order the steps are read, is the initial carry.
      reverse: read the steps from ``T - 1`` down to ``0``.
      emit: ``"y"`` -> ``ys``; ``"carries"`` -> ``(ys, carries)`` (the carry after every
        step, every leaf with a leading ``T``, e.g. ``RNNState(h [T, *batch, ...])``).

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
    if cell.parallel is not None:
        return _parallel_unroll(cell, params, xs, carry, mask, resets, reverse, emit)
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


def _parallel_unroll(cell, params, xs, carry, mask, resets, reverse, emit):
    """``associative_unroll`` by the cell's whole-sequence form ``cell.parallel`` (``xs``,
    ``mask``, ``resets`` already in the order the steps are read)."""
    out = cell.parallel(params, xs, carry, mask, resets)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(
            f"unroll: `{cell.name}.parallel` must return (carries, ys), got "
            f"{jax.tree.structure(out)}"
        )
    carries, ys = out
    want = jax.tree.structure(carry)
    if jax.tree.structure(carries) != want:
        raise TypeError(
            f"unroll: `{cell.name}.parallel` must return carries of the carry's structure "
            f"{want}, got {jax.tree.structure(carries)}"
        )
    carries = jax.tree.map(lambda c, c0: c.astype(c0.dtype), carries, carry)
    if mask is not None:
        ys = jnp.where(mask[..., None], ys, jnp.zeros_like(ys))
    carry_t = jax.tree.map(lambda c: c[-1], carries)  # a padded step keeps the carry
    if reverse:
        ys = jnp.flip(ys, 0)
        carries = jax.tree.map(lambda c: jnp.flip(c, 0), carries)
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
