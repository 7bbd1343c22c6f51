"""The first and last stage of [`jrnn.unroll`][jrnn.unrolling.unroll]: prepare the inputs for an
engine, and give the engine's outputs back in the caller's layout.

``unroll`` is prepare → plan → engine → finish.  [`prepare`][jrnn.prepare.prepare] checks every
argument (shapes and dtypes, at trace time), casts to the compute dtype, goes time-major, masks
the padding, turns episode starts into the carry resets of the scan's order, flips each
sequence within its length for ``reverse`` with lengths, and samples a regularised cell's
noise; the result is a [`Prepared`][jrnn.prepare.Prepared].  [`jrnn.strategy`][] makes the
[`Plan`][jrnn.strategy.Plan] from it, an engine ([`jrnn.scan`][],
[`jrnn.linear_scan`][], [`jrnn.newton`][]) runs it, and [`finish`][jrnn.prepare.finish] undoes the
flip and the time-major layout.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn import keys
from jrnn.base import Array, Carry, Cell, Method, Params, PRNGKey, cast_tree, vary_like
from jrnn.base import compute_dtype as cell_dtype
from jrnn.checks import (
    check_bool,
    check_carry,
    check_choice,
    check_features,
    check_float_input,
    check_int,
    check_key,
    check_lengths,
    check_params,
    check_resets,
    input_size_of,
    shape_str,
)


class Options(NamedTuple):
    """[`jrnn.unroll`][jrnn.unrolling.unroll]'s options, checked (see there).

    Examples:
      >>> Options().method, Options(reverse=True).reverse
      ('scan', True)
    """

    reverse: bool = False
    time_major: bool = False
    unroll: int | bool | None = None
    return_carries: bool = False
    hoist: bool | None = None
    vjp: str | None = None
    remat: str = "none"
    debug: bool = False
    method: Method = "scan"


def check_options(options: Options, where: str) -> Options:
    """Checks every field of ``options``; errors name the argument.

    Examples:
      >>> check_options(Options(remat="all"), "unroll")
      Traceback (most recent call last):
      ...
      ValueError: unroll: `remat` must be 'none', 'step' or 'sqrt', got 'all'
    """
    o = options
    for flag in ("reverse", "time_major", "return_carries", "debug"):
        check_bool(flag, getattr(o, flag), where)
    if o.hoist is not None:
        check_bool("hoist", o.hoist, where)
    if o.unroll is not None and not isinstance(o.unroll, bool):
        check_int("unroll", o.unroll, where)
    if o.vjp is not None:
        check_choice("vjp", o.vjp, ("hoisted", "autodiff"), where)
    check_choice("remat", o.remat, ("none", "step", "sqrt"), where)
    check_choice("method", o.method, ("scan", "newton", "quasi-newton", "auto"), where)
    return o._replace(reverse=bool(o.reverse), time_major=bool(o.time_major), debug=bool(o.debug))


class Prepared(NamedTuple):
    """What every engine runs on: time-major, compute dtype, checked.

    Attributes:
      params: the parameters in the compute dtype.
      xs: ``[T, *batch, I]``, padded steps zero.
      carry: the initial carry ``[*batch, ...]``.
      mask: bool ``[T, *batch]`` (valid steps) or ``None`` without lengths.
      resets: bool ``[T, *batch]``, where the carry entering a step (in the order the steps
        are read) is the initial carry, or ``None``.
      lengths: int32 ``[*batch]`` or ``None``.
      noise: a regularised cell's ``(seq_noise, step_noise)`` when training (a key), else
        ``None``.
      guess: a warm start of [`jrnn.newton.solve`][], time-major, or ``None``.
      reverse: the scan reads the steps from ``T - 1`` down (no lengths: with lengths the
        sequences are flipped instead, and ``flipped`` is set).
      flipped: each sequence was reversed within its length; [`finish`][jrnn.prepare.finish]
          reverses back.
    """

    params: Params
    xs: Array
    carry: Carry
    mask: Array | None
    resets: Array | None
    lengths: Array | None
    noise: Any
    guess: Carry | None
    reverse: bool
    flipped: bool

    @property
    def num_steps(self) -> int:
        return self.xs.shape[0]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.xs.shape[1:-1])


def flip(xs: Array, lengths: Array) -> Array:
    """Time-major ``xs [T, *batch, ...]`` with each sequence reversed within its length
    (checked ``lengths``); see [`flip_within_lengths`][jrnn.prepare.flip_within_lengths]."""
    num_steps = xs.shape[0]
    t = jnp.arange(num_steps, dtype=lengths.dtype).reshape((num_steps,) + (1,) * lengths.ndim)
    idx = jnp.where(t < lengths, lengths - 1 - t, t)
    idx = idx.reshape(idx.shape + (1,) * (xs.ndim - idx.ndim))
    return jnp.take_along_axis(xs, idx, axis=0)


def flip_within_lengths(xs: Array, lengths: Array) -> Array:
    """Reverses each sequence within its own length; padding stays in place.

    Args:
      xs: time-major ``[T, *batch, ...]``.
      lengths: int ``[*batch]`` in ``[0, T]``: checked when concrete, clamped to ``[0, T]``
        when traced (as in [`jrnn.unroll`][jrnn.unrolling.unroll]).

    Returns:
      ``out[t, b] = xs[L_b - 1 - t, b]`` for ``t < L_b`` and ``xs[t, b]`` otherwise.  The map
      is its own inverse.

    Examples:
      >>> import jax.numpy as jnp, jrnn
      >>> xs = jnp.arange(8.0).reshape(4, 2)  # [T=4, batch=2]
      >>> jrnn.flip_within_lengths(xs, jnp.array([4, 2]))[:, 1].tolist()
      [3.0, 1.0, 5.0, 7.0]
    """
    where = "flip_within_lengths"
    xs = jnp.asarray(xs)
    n = jnp.ndim(lengths)
    if xs.ndim < 1 + n:
        raise ValueError(
            f"{where}: `xs` must have shape [T, *batch, ...] with batch rank {n} (the rank of "
            f"`lengths`), got {shape_str(xs.shape)}"
        )
    lengths = check_lengths(lengths, xs.shape[1 : 1 + n], xs.shape[0], where)
    return flip(xs, lengths)


def step_mask(lengths: Array, num_steps: int) -> Array:
    """bool ``[T, *batch]``: step ``t`` of a sequence is valid, ``t < lengths``.

    Examples:
      >>> import jax.numpy as jnp
      >>> step_mask(jnp.array([2, 0]), 3).tolist()
      [[True, False], [True, False], [False, False]]
    """
    steps = jnp.arange(num_steps, dtype=lengths.dtype)
    return steps.reshape((num_steps,) + (1,) * lengths.ndim) < lengths


def carry_resets(resets: Array, mask: Array | None, reverse: bool) -> Array:
    """Episode starts ``resets`` (bool ``[T, *batch]``, forward time) -> where the carry
    entering each step, in the order the scan reads the steps, is the initial carry.

    Forward that is ``resets[t]``; reading backwards the carry entering step ``t`` follows
    step ``t + 1``, so it is ``resets[t + 1]`` (nothing for ``t = T - 1``).  Resets on padded
    steps (``mask`` false) are dropped.

    Examples:
      >>> import jax.numpy as jnp
      >>> carry_resets(jnp.array([False, True, False]), None, reverse=True).tolist()
      [True, False, False]
    """
    if mask is not None:
        resets = resets & mask
    if reverse:
        resets = jnp.zeros_like(resets).at[:-1].set(resets[1:])
    return resets


def _inputs(cell: Cell, params, xs, options: Options, where: str, pname: str):
    """Checked params and time-major ``xs`` (not yet cast)."""
    xs = check_float_input("xs", xs, where)
    layout = "[T, *batch, input_size]" if options.time_major else "[*batch, T, input_size]"
    if xs.ndim < 2:
        raise ValueError(
            f"{where}: `xs` must have shape {layout} (rank >= 2), got {shape_str(xs.shape)}"
        )
    input_size = check_params(cell, params, where, pname, input_size=xs.shape[-1])
    if input_size_of(params) is not None:
        check_features("xs", xs, input_size, where, layout)
    return xs if options.time_major else jnp.moveaxis(xs, -2, 0)


def _time_major_resets(resets, num_steps, batch_shape, options: Options, where: str):
    time_major = options.time_major
    r_layout = "[T, *batch]" if time_major else "[*batch, T]"
    r_shape = (num_steps, *batch_shape) if time_major else (*batch_shape, num_steps)
    resets = check_resets(resets, r_shape, where, r_layout, debug=options.debug)
    return resets if time_major else jnp.moveaxis(resets, -1, 0)


def _time_major_guess(cell, guess, template, xs_shape, options: Options, dtype, where):
    """A Newton warm start (the carry after every step, laid out like ``ys``), checked and
    time-major."""
    num_steps, nb = xs_shape[0], len(xs_shape) - 2
    g_shape = (
        (lambda a: (num_steps, *a.shape))
        if options.time_major
        else (lambda a: (*a.shape[:nb], num_steps, *a.shape[nb:]))
    )
    g_template = jax.tree.map(lambda a: jax.ShapeDtypeStruct(g_shape(a), a.dtype), template)
    guess = check_carry(guess, g_template, where, "guess", cell.name)
    if not options.time_major:
        guess = jax.tree.map(lambda a: jnp.moveaxis(a, nb, 0), guess)
    return cast_tree(guess, dtype)


def prepare(
    cell: Cell,
    params: Params,
    xs: Array,
    carry: Carry | None,
    lengths: Array | None,
    resets: Array | None,
    key: PRNGKey | None,
    options: Options,
    *,
    where: str,
    pname: str = "params",
    cname: str = "carry",
    guess: Carry | None = None,
) -> Prepared:
    """Checks and lays out everything [`jrnn.unroll`][jrnn.unrolling.unroll] was given, for the
    engines.

    ``options`` must have passed [`check_options`][jrnn.prepare.check_options].

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.gru(4)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> prep = prepare(cell, p, jnp.ones((2, 5, 3)), None, jnp.array([5, 2]), None, None,
      ...                Options(reverse=True), where="demo")
      >>> prep.xs.shape, prep.mask.shape, prep.reverse, prep.flipped
      ((5, 2, 3), (5, 2), False, True)
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"{where}: `cell` must be a jrnn.Cell, got {type(cell).__name__}")
    xs = _inputs(cell, params, xs, options, where, pname)
    num_steps, batch_shape = xs.shape[0], tuple(xs.shape[1:-1])
    if key is not None:
        key = check_key(key, where, batch_shape=batch_shape)
    dtype = cell_dtype(cell, params)
    params = cast_tree(params, dtype)
    template = cell.initial_carry(params, batch_shape)
    if carry is None:
        carry = template
    else:
        carry = check_carry(carry, template, where, cname, cell.name, batch_shape)
        carry = cast_tree(carry, dtype)
    carry = vary_like(carry, xs, params)  # inside shard_map: typed like the body's output
    xs = xs.astype(dtype)
    if resets is not None:
        resets = _time_major_resets(resets, num_steps, batch_shape, options, where)
    mask = None
    if lengths is not None:
        lengths = check_lengths(lengths, batch_shape, num_steps, where, debug=options.debug)
        mask = step_mask(lengths, num_steps)
        # padded inputs are never read: zeros instead of whatever they hold, so that
        # NaN/inf there cannot reach the outputs or (as NaN * 0) the gradients
        xs = jnp.where(mask[..., None], xs, jnp.zeros_like(xs))
    reverse = options.reverse
    if resets is not None:
        resets = carry_resets(resets, mask, reverse)
    if guess is not None:
        guess = _time_major_guess(cell, guess, template, xs.shape, options, dtype, where)
    flipped = lengths is not None and reverse
    if flipped:  # run forward over the sequences flipped within their lengths
        xs = flip(xs, lengths)
        resets = None if resets is None else flip(resets, lengths)
        guess = None if guess is None else jax.tree.map(lambda a: flip(a, lengths), guess)
        reverse = False
    noise = None
    if key is not None and cell.noise is not None:  # training a regularised cell
        # sampled for all steps before the scan; one draw per example with per-example keys
        noise = keys.noise(cell.noise, key, params, xs.shape)
    return Prepared(params, xs, carry, mask, resets, lengths, noise, guess, reverse, flipped)


def finish(prep: Prepared, carry: Carry, out: Any, options: Options) -> tuple:
    """The engine's time-major ``out`` (``ys``, or ``(ys, carries)``) in the caller's layout:
    ``(ys, carry_T)`` or ``(ys, carry_T, carries)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> prep = Prepared(None, jnp.zeros((4, 2, 1)), None, None, None, None, None, None,
      ...                 False, False)
      >>> finish(prep, "c", jnp.zeros((4, 2, 3)), Options())[0].shape  # [batch, T, F]
      (2, 4, 3)
    """
    if prep.flipped:
        out = jax.tree.map(lambda a: flip(a, prep.lengths), out)
    if not options.time_major:
        out = jax.tree.map(lambda a: jnp.moveaxis(a, 0, len(prep.batch_shape)), out)
    if options.return_carries:
        ys, carries = out
        return ys, carry, carries
    return out, carry
