"""Regularised cells: zoneout (Krueger et al., 2017) and recurrent (variational) dropout
(Gal & Ghahramani, 2016) as transformations ``Cell -> Cell``.

A transformed cell takes the base cell's parameters unchanged (same ``init``, same
checks) and is deterministic unless [`jrnn.unroll`][jrnn.unrolling.unroll] (or ``stack.apply``, or a
model's ``apply``) is given a PRNG ``key``.  With a key, ``cell.noise`` samples all the
randomness one sequence needs before the scan and ``cell.train_step`` reads one step's
slice of it (see [`jrnn.Cell`][jrnn.base.Cell]).  Noise is sampled in one batch for all steps (one
vectorised RNG call, no per-step ``fold_in`` in the loop); it costs ``T x batch x width``
booleans per zoned-out carry component.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jrnn.base import Array, Carry, Cell, Params, PRNGKey, cast_tree, compute_dtype, core_step
from jrnn.checks import check_rate, type_name


def _carry_template(cell: Cell) -> Carry:
    """The carry's structure (``ShapeDtypeStruct`` leaves) for one unbatched sequence."""
    return jax.eval_shape(lambda k: cell.initial_carry(cell.init(k, 1), ()), jax.random.key(0))


def _check_h(cell: Cell, where: str, what: str) -> None:
    """``ValueError`` unless the cell's carry has a field ``h``."""
    template = _carry_template(cell)
    if not hasattr(template, "h"):
        raise ValueError(
            f"{where}: {what}, but the carry of {cell.name} has no field `h` (got "
            f"{type_name(template)}); give the cell a NamedTuple carry with an `h` field"
        )


def _component_rates(cell: Cell, rate: Any, where: str) -> tuple[float, ...]:
    """One rate per leaf of the carry, from a number or a per-component tuple/NamedTuple."""
    template = _carry_template(cell)
    leaves, _ = jax.tree.flatten(template)
    if isinstance(rate, tuple | list):
        want_fields = getattr(type(template), "_fields", None)
        got_fields = getattr(type(rate), "_fields", None)
        expected = f"{len(leaves)} rates matching the carry {type_name(template)}"
        if len(rate) != len(leaves) or (
            got_fields is not None and want_fields is not None and got_fields != want_fields
        ):
            raise ValueError(
                f"{where}: per-component `rate` must have {expected} of {cell.name}, got {rate!r}"
            )
        return tuple(check_rate(f"rate[{i}]", r, where) for i, r in enumerate(rate))
    return (check_rate("rate", rate, where),) * len(leaves)


def _blend_eval(rates: Sequence[float], old: Carry, new: Carry) -> Carry:
    """``rate * old + (1 - rate) * new`` per carry component (``new`` where rate is 0)."""
    o_leaves, treedef = jax.tree.flatten(old)
    n_leaves = jax.tree.leaves(new)
    out = [
        n if r == 0.0 else r * o + (1.0 - r) * n
        for r, o, n in zip(rates, o_leaves, n_leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, out)


def _blend_keep(keeps: Sequence[Array | None], old: Carry, new: Carry) -> Carry:
    """``where(keep, old, new)`` per carry component (``new`` where there is no mask)."""
    o_leaves, treedef = jax.tree.flatten(old)
    n_leaves = jax.tree.leaves(new)
    out = [
        n if k is None else jnp.where(k, o, n)
        for k, o, n in zip(keeps, o_leaves, n_leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, out)


def _fmt_rate(rate: Any) -> str:
    if isinstance(rate, tuple | list):
        fields = getattr(type(rate), "_fields", None)
        if fields is not None:
            inner = ", ".join(f"{f}={float(r)}" for f, r in zip(fields, rate, strict=True))
            return f"{type(rate).__name__}({inner})"
        return "(" + ", ".join(str(float(r)) for r in rate) + ")"
    return str(float(rate))


def _inner_train_step(cell: Cell, params, carry, x_t, seq_noise, step_noise_t):
    """One training step of ``cell``: its own ``train_step`` if it is stochastic."""
    if cell.noise is not None:
        return cell.train_step(params, carry, x_t, seq_noise, step_noise_t)
    return core_step(cell)(params, carry, x_t)


def zoneout(cell: Cell, rate: Any) -> Cell:
    """Zoneout (Krueger et al., 2017): each carry unit keeps its previous value at random.

    With ``(c̃_t, ·) = cell(c_{t-1}, x_t)`` the base step, for every component of the carry
    (``h``, and ``c`` for the LSTM) and every unit, step and sequence independently:

    - training (a ``key``): ``c_t = where(keep_t, c_{t-1}, c̃_t)``,
      ``keep_t ~ Bernoulli(rate)``;
    - evaluation (no key): the expectation ``c_t = rate · c_{t-1} + (1 - rate) · c̃_t``.

    The output is the new hidden state after zoneout, ``y_t = c_t.h`` (as in the paper's
    reference implementation).

    Args:
      cell: any [`jrnn.Cell`][jrnn.base.Cell] whose carry has a field ``h``, also a
          [`recurrent_dropout`][jrnn.regularisers.recurrent_dropout]
        cell (write ``zoneout(recurrent_dropout(cell, p), z)``; the other order is refused).
      rate: a float in ``[0, 1)`` for every component, or one rate per carry component,
        e.g. ``jrnn.LSTMState(h=0.05, c=0.5)`` (the paper's LSTM setting) or ``(0.05,
        0.5)``.  A component with rate 0 is left alone (no noise is sampled for it).

    Returns:
      A [`jrnn.Cell`][jrnn.base.Cell] with the base cell's ``init``, parameters and carry;
      ``step``/``gates`` are the evaluation form, ``noise``/``train_step`` the training one
      (keep masks ``[T, *batch, width]`` per component, sampled before the scan).  Its
      ``affine`` and ``parallel`` are ``None`` (the blend is not the base cell's recurrence),
      so it always runs the sequential scan.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.zoneout(jrnn.lstm(4), jrnn.LSTMState(h=0.05, c=0.5))
      >>> params = cell.init(jax.random.key(0), 3)  # the plain LSTM's parameters
      >>> xs = jnp.ones((2, 5, 3))
      >>> ys, carry = jrnn.unroll(cell, params, xs, key=jax.random.key(1))  # training
      >>> ys_eval, _ = jrnn.unroll(cell, params, xs)  # evaluation: the expectation
      >>> ys.shape, bool(jnp.allclose(ys[:, -1], carry.h))
      ((2, 5, 4), True)
    """
    where = "zoneout"
    if not isinstance(cell, Cell):
        raise TypeError(f"{where}: `cell` must be a jrnn.Cell, got {type(cell).__name__}")
    rates = _component_rates(cell, rate, where)
    _check_h(cell, where, "its output is the zoned-out hidden state `carry.h`")
    inner = cell
    fast = None
    if inner.fast is not None:

        def gates(params: Params, carry: Carry, xa: Array, ha: Array) -> tuple[Carry, Array]:
            new, _ = inner.fast.gates(params, carry, xa, ha)
            new = _blend_eval(rates, carry, new)
            return new, new.h

        fast = inner.fast._replace(gates=gates, diagonal=None)

    def step(params: Params, carry: Carry, x_t: Array) -> tuple[Carry, Array]:
        new, _ = inner.step(params, carry, x_t)  # checks the arguments
        old = cast_tree(carry, compute_dtype(inner, params))
        new = _blend_eval(rates, old, new)
        return new, new.h

    def noise(key: PRNGKey, params: Params, xs_shape: tuple[int, ...]):
        k_inner, k_own = jax.random.split(key)
        inner_seq, inner_step = (
            inner.noise(k_inner, params, xs_shape) if inner.noise is not None else (None, None)
        )
        num_steps, batch_shape = xs_shape[0], tuple(xs_shape[1:-1])
        leaves = jax.tree.leaves(
            jax.eval_shape(lambda p: inner.initial_carry(p, batch_shape), params)
        )
        keys = jax.random.split(k_own, len(leaves))
        keeps = tuple(
            None if r == 0.0 else jax.random.bernoulli(k, r, (num_steps, *leaf.shape))
            for k, r, leaf in zip(keys, rates, leaves, strict=True)
        )
        return inner_seq, (inner_step, keeps)

    def train_step(params, carry, x_t, seq_noise, step_noise_t):
        inner_step_t, keeps = step_noise_t
        new, _ = _inner_train_step(inner, params, carry, x_t, seq_noise, inner_step_t)
        new = _blend_keep(keeps, carry, new)
        return new, new.h

    stochastic = any(r > 0.0 for r in rates) or inner.noise is not None
    return inner._replace(
        step=step,
        fast=fast,
        name=f"zoneout({inner.name}, rate={_fmt_rate(rate)})",
        config=(*inner.config, ("zoneout", rates)),
        noise=noise if stochastic else None,
        train_step=train_step if stochastic else None,
        affine=None,  # the blend changes the recurrence: always the sequential scan
        parallel=None,
    )


def recurrent_dropout(cell: Cell, rate: float, *, input_rate: float = 0.0) -> Cell:
    """Variational recurrent dropout (Gal & Ghahramani, 2016): one mask per sequence.

    Training (a ``key``): one Bernoulli mask per sequence, sampled once and reused at every
    step, with inverted scaling,

    - ``m_h = Bernoulli(1 - rate) / (1 - rate)``, ``[*batch, H]`` (``H`` the width of
      ``carry.h``, ``P`` with an LSTM projection), on the state entering the recurrent
      matmul: ``ha_t = (h_{t-1} * m_h) @ w_hh``;
    - ``m_x = Bernoulli(1 - input_rate) / (1 - input_rate)``, ``[*batch, I]``, on the
      inputs when ``input_rate > 0``: ``xa_t = project(x_t * m_x)``.

    The carry itself is not masked (only what the recurrent matmul reads).  A cell without
    a [`jrnn.FastPath`][jrnn.base.FastPath] (a [`jrnn.custom_cell`][jrnn.custom.custom_cell] of
    three functions) has no recurrent matmul to intercept: its ``step`` reads ``carry.h * m_h`` in
    place of ``carry.h`` (in every use; for the Elman cell and the LSTM that is the same thing,
    since they read ``h`` only through the matmul).  Evaluation (no key): exactly the base cell
    (the same functions, bit-identical outputs).

    Args:
      cell: any deterministic [`jrnn.Cell`][jrnn.base.Cell] whose carry has a field ``h`` (wrap the
        result in [`zoneout`][jrnn.regularisers.zoneout] to combine the two).
      rate: drop rate of ``h`` in the recurrent matmul, a float in ``[0, 1)``.
      input_rate: drop rate of the inputs, a float in ``[0, 1)`` (default 0: none).

    Returns:
      A [`jrnn.Cell`][jrnn.base.Cell] with the base cell's ``init``, parameters, ``step`` and
      ``gates``, plus ``noise``/``train_step`` for training.  The base cell's ``affine``
      and ``parallel`` are kept: evaluation may use the associative scan, training (a key)
      runs the sequential one.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> base = jrnn.gru(4)
      >>> cell = jrnn.recurrent_dropout(base, 0.25, input_rate=0.1)
      >>> params = base.init(jax.random.key(0), 3)
      >>> xs = jnp.ones((2, 5, 3))
      >>> ys, _ = jrnn.unroll(cell, params, xs, key=jax.random.key(1))  # training
      >>> bool(jnp.all(jrnn.unroll(cell, params, xs)[0] == jrnn.unroll(base, params, xs)[0]))
      True
    """
    where = "recurrent_dropout"
    if not isinstance(cell, Cell):
        raise TypeError(f"{where}: `cell` must be a jrnn.Cell, got {type(cell).__name__}")
    rate = check_rate("rate", rate, where)
    input_rate = check_rate("input_rate", input_rate, where)
    if rate > 0.0 and cell.affine is not None:
        raise ValueError(
            f"{where}: `rate` must be 0 for {cell.name}, got {rate!r}: its recurrence is "
            f"element-wise (cell.affine), with no recurrent matmul to drop from; use "
            f"`input_rate`"
        )
    if cell.noise is not None:
        raise ValueError(
            f"{where}: `cell` must be a deterministic cell, got the regularised {cell.name}; "
            f"apply recurrent_dropout first, e.g. zoneout(recurrent_dropout(cell, p), z)"
        )
    if rate > 0.0:
        _check_h(cell, where, "`rate` drops units of the hidden state `carry.h`")
    inner = cell

    def _mask(key: PRNGKey, r: float, shape: tuple[int, ...], dtype) -> Array | None:
        if r == 0.0:
            return None
        keep = jax.random.bernoulli(key, 1.0 - r, shape)
        return jnp.where(keep, jnp.asarray(1.0 / (1.0 - r), dtype), jnp.zeros((), dtype))

    def noise(key: PRNGKey, params: Params, xs_shape: tuple[int, ...]):
        batch_shape, input_size = tuple(xs_shape[1:-1]), xs_shape[-1]
        dt = compute_dtype(inner, params)
        k_h, k_x = jax.random.split(key)
        # only a cell with `rate > 0` has (and needs) a field `h`; input dropout needs none
        h_shape = (
            jax.eval_shape(lambda p: inner.initial_carry(p, batch_shape), params).h.shape
            if rate > 0.0
            else None
        )
        seq = (
            _mask(k_h, rate, h_shape, dt),
            _mask(k_x, input_rate, (*batch_shape, input_size), dt),
        )
        return seq, None

    def train_step(params, carry, x_t, seq_noise, step_noise_t):
        m_h, m_x = seq_noise
        x = x_t if m_x is None else x_t * m_x
        fast = inner.fast
        if fast is None:  # no recurrent matmul to intercept: the step reads the masked h
            seen = carry if m_h is None else carry._replace(h=carry.h * m_h)
            return inner.step(params, seen, x)
        h = carry.h if m_h is None else carry.h * m_h
        return fast.gates(params, carry, fast.project(params, x), h @ fast.recurrent_kernel(params))

    stochastic = rate > 0.0 or input_rate > 0.0
    return inner._replace(
        name=f"recurrent_dropout({inner.name}, rate={rate}, input_rate={input_rate})",
        config=(*inner.config, ("recurrent_dropout", (rate, input_rate))),
        noise=noise if stochastic else None,
        train_step=train_step if stochastic else None,
    )
