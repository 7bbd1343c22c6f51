"""A cell of your own: three plain functions, and every feature of jrnn runs it.

[`custom_cell`][jrnn.custom.custom_cell] turns ``init``, ``step`` and (optionally) ``initial_carry``
into a [`jrnn.Cell`][jrnn.base.Cell]: [`jrnn.unroll`][jrnn.unrolling.unroll] (lengths, reverse,
resets, remat, Newton), [`jrnn.stack`][jrnn.stacks.stack], the models,
[`jrnn.zoneout`][jrnn.regularisers.zoneout],
[`jrnn.recurrent_dropout`][jrnn.regularisers.recurrent_dropout], [`jrnn.diagnostics`][], the Flax
modules and data-parallel training take it like a built-in cell.  Give it a [`jrnn.base.FastPath`][]
to opt in to the hoisted input projection and the hand-structured backward pass of the built-in
cells.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jrnn.base import (
    Array,
    Carry,
    Cell,
    DType,
    FastPath,
    LinearRecurrence,
    Params,
    PRNGKey,
    RNNState,
    cast_tree,
)
from jrnn.base import compute_dtype as cell_dtype
from jrnn.checks import (
    carry_layout,
    check_batch_shape,
    check_carry,
    check_features,
    check_float_input,
    check_params,
    input_size_of,
    shape_str,
    type_name,
)

__all__ = ["custom_cell"]

PROBE_INPUT_SIZE = 3
"""The input size [`custom_cell`][jrnn.custom.custom_cell] traces the user's functions at (shapes
only, with
``jax.eval_shape``) to find the sizes and to check that ``step`` keeps the carry's layout."""


def _fail(name: str, message: str) -> ValueError:
    return ValueError(f"custom_cell({name!r}): {message}")


def _check_callable(value: Any, arg: str, name: str, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not callable(value):
        raise TypeError(f"custom_cell({name!r}): `{arg}` must be callable, got {value!r}")


def _check_size(value: Any, arg: str, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"custom_cell({name!r}): `{arg}` must be a positive int, got {value!r}")
    return value


def _zero_carry(hidden_size: int) -> Callable[..., Carry]:
    def initial_carry(params: Params, batch_shape: tuple[int, ...] = ()) -> Carry:
        leaves = [a for a in jax.tree.leaves(params) if jnp.issubdtype(a.dtype, jnp.floating)]
        dtype = jnp.result_type(*leaves) if leaves else jnp.float32
        return RNNState(jnp.zeros((*batch_shape, hidden_size), dtype))

    return initial_carry


def _flat_size(carry: Carry) -> int:
    return sum(math.prod(a.shape) for a in jax.tree.leaves(carry))


def _same_layout(got: Any, want: Any) -> bool:
    g_leaves, g_def = jax.tree.flatten(got)
    w_leaves, w_def = jax.tree.flatten(want)
    return g_def == w_def and all(
        g.shape == w.shape and g.dtype == w.dtype for g, w in zip(g_leaves, w_leaves, strict=True)
    )


def _layouts(name, init, initial_carry, step, fast, compute=None):
    """Traces the user's functions on shapes only: ``(params, carry, y)`` of one unbatched
    step at `PROBE_INPUT_SIZE` (in the compute dtype ``compute`` when given, as
    ``cell.step`` runs it), with the contract checked on the way."""
    params = jax.eval_shape(lambda k: init(k, PROBE_INPUT_SIZE), jax.random.key(0))
    carry = jax.eval_shape(lambda p: initial_carry(p, ()), params)
    batched = jax.eval_shape(lambda p: initial_carry(p, (2, 5)), params)
    if not _same_layout(
        batched, jax.tree.map(lambda a: jax.ShapeDtypeStruct((2, 5, *a.shape), a.dtype), carry)
    ):
        raise _fail(
            name,
            "`initial_carry(params, batch_shape)` must give every leaf the leading axes "
            f"batch_shape: for batch_shape=(2, 5) got {jax.tree.map(jnp.shape, batched)} "
            f"where batch_shape=() gives {jax.tree.map(jnp.shape, carry)}",
        )
    dtypes = [a.dtype for a in jax.tree.leaves(params) if jnp.issubdtype(a.dtype, jnp.floating)]
    dtype = jnp.result_type(*dtypes) if dtypes else jnp.dtype(jnp.float32)
    if compute is not None:
        params = jax.tree.map(
            lambda a: (
                jax.ShapeDtypeStruct(a.shape, compute)
                if jnp.issubdtype(a.dtype, jnp.floating)
                else a
            ),
            params,
        )
    x = jax.ShapeDtypeStruct((PROBE_INPUT_SIZE,), dtype if compute is None else compute)
    out = jax.eval_shape(step, params, carry, x)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise _fail(name, f"`step` must return (carry, y_t), got {jax.tree.structure(out)}")
    new_carry, y = out
    if not _same_layout(new_carry, carry):
        raise _fail(
            name,
            "`step(params, carry, x_t)` must return a carry of the layout initial_carry "
            f"makes, {type_name(carry)} {jax.tree.map(lambda a: (a.shape, a.dtype.name), carry)}"
            f", got {type_name(new_carry)} "
            f"{jax.tree.map(lambda a: (a.shape, a.dtype.name), new_carry)}",
        )
    if not isinstance(y, jax.ShapeDtypeStruct) or y.ndim != 1:
        raise _fail(name, f"`step` must return y_t of shape [*batch, output_size], got {y}")
    if fast is not None:
        if not hasattr(carry, "h"):
            raise _fail(name, f"`fast` needs a carry with a field `h`, got {type_name(carry)}")
        piecewise = jax.eval_shape(
            lambda p, c, x_t: fast.gates(
                p, c, fast.project(p, x_t), c.h @ fast.recurrent_kernel(p)
            ),
            params,
            carry,
            x,
        )
        if not _same_layout(piecewise, out):
            raise _fail(
                name,
                "`fast.gates(params, carry, fast.project(params, x_t), carry.h @ "
                "fast.recurrent_kernel(params))` must give what `step` gives, got "
                f"{jax.tree.map(jnp.shape, piecewise)} against {jax.tree.map(jnp.shape, out)}",
            )
    return params, carry, y, dtype


def _check_parallel(name, parallel, params, carry, y) -> None:
    """Traces ``parallel`` on shapes (two steps, one unbatched sequence, no mask or resets):
    it must return ``(carries, ys)`` of the carry's layout with a leading ``T`` and ``y_t``'s
    with a leading ``T``."""
    steps = 2
    xs = jax.ShapeDtypeStruct((steps, PROBE_INPUT_SIZE), y.dtype)
    out = jax.eval_shape(lambda p, x, c: parallel(p, x, c, None, None), params, xs, carry)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise _fail(name, f"`parallel` must return (carries, ys), got {jax.tree.structure(out)}")
    carries, ys = out
    want = jax.tree.map(lambda a: jax.ShapeDtypeStruct((steps, *a.shape), a.dtype), carry)
    if not _same_layout(carries, want):
        raise _fail(
            name,
            "`parallel(params, xs, carry, mask, resets)` must return every step's carry (the "
            f"carry's layout with a leading T): for T={steps} expected "
            f"{jax.tree.map(lambda a: (a.shape, a.dtype.name), want)}, got "
            f"{jax.tree.map(lambda a: (a.shape, a.dtype.name), carries)}",
        )
    if not isinstance(ys, jax.ShapeDtypeStruct) or ys.shape != (steps, *y.shape):
        raise _fail(
            name,
            f"`parallel` must return ys [T, *batch, output_size] = {[steps, *y.shape]}, got {ys}",
        )


def custom_cell(
    init: Callable[[PRNGKey, int], Params],
    step: Callable[[Params, Carry, Array], tuple[Carry, Array]],
    *,
    initial_carry: Callable[..., Carry] | None = None,
    hidden_size: int | None = None,
    output_size: int | None = None,
    name: str = "custom",
    fast: FastPath | None = None,
    noise: Callable[[PRNGKey, Params, tuple[int, ...]], tuple[Any, Any]] | None = None,
    train_step: Callable[..., tuple[Carry, Array]] | None = None,
    affine: Callable[[Params, Array], LinearRecurrence] | None = None,
    parallel: Callable[..., tuple[Carry, Array]] | None = None,
    dtype: DType | None = None,
    config: tuple[tuple[str, Any], ...] = (),
) -> Cell:
    r"""A [`jrnn.Cell`][jrnn.base.Cell] from your own functions: every feature of jrnn runs it.

    The contract is the built-in cells' own:

    - ``init(key, input_size) -> params``: any pytree of arrays (a dict is usual);
    - ``step(params, carry, x_t) -> (carry, y_t)`` for ``x_t [*batch, input_size]`` and
      ``y_t [*batch, output_size]``, written for any number of leading batch axes (or
      none), as ``jnp`` code that broadcasts over them;
    - ``initial_carry(params, batch_shape=()) -> carry``: any pytree of arrays with leading
      axes ``batch_shape``; default zeros ``RNNState(h [*batch, hidden_size])`` in the
      parameters' dtype.

    At construction the three functions are traced on shapes only (``jax.eval_shape`` at
    input size `PROBE_INPUT_SIZE`, nothing is computed): ``step`` must return a carry
    of exactly the layout (structure, shapes, dtypes) ``initial_carry`` makes, or a
    ``ValueError`` names the difference.  ``cell.step`` checks its arguments like a built-in
    cell's (the params against the layout ``init`` makes for the input's size, the carry
    against ``initial_carry``'s), casts them to the parameters' dtype, then calls ``step``.

    The cell then runs everywhere a built-in one does, with the same semantics:
    [`jrnn.unroll`][jrnn.unrolling.unroll] (``lengths``, ``reverse``, ``resets``, ``time_major``,
    ``return_carries``, every ``remat``, ``method="newton"``/``"quasi-newton"``, ``jit``,
    ``vmap``, several batch axes), [`jrnn.stack`][jrnn.stacks.stack] (layers, bidirectional,
    dropout), every model factory, [`jrnn.zoneout`][jrnn.regularisers.zoneout] and
    [`jrnn.recurrent_dropout`][jrnn.regularisers.recurrent_dropout] (on a carry with a field ``h``),
    [`jrnn.diagnostics`][], the Flax modules ([`jrnn.nn`][]) and data-parallel training.

    Speed: without ``fast`` [`jrnn.unroll`][jrnn.unrolling.unroll] runs ``step`` inside ``lax.scan``
        and
    differentiates it by autodiff (the built-in cells' default on CPU for most shapes).
    With ``fast`` (a [`jrnn.base.FastPath`][] of ``project``, ``recurrent_kernel`` and
    ``gates`` whose composition equals ``step``, on a carry with a field ``h``) it gets the
    built-in cells' machinery: the input projection hoisted out of the scan (one matmul for
    all time steps) and the hand-structured backward pass.

    Args:
      init: ``init(key, input_size) -> params``.
      step: ``step(params, carry, x_t) -> (carry, y_t)``.
      initial_carry: ``initial_carry(params, batch_shape=()) -> carry``; default zeros
        ``RNNState(h)`` of ``hidden_size``.
      hidden_size: the cell's width; required without ``initial_carry``, else the width of
        the carry's ``h`` (or the carry's total size per sequence when it has no ``h``).
      output_size: the size of ``y_t``; default read from ``step``.
      name: the cell's name (its ``repr``).
      fast: optional [`jrnn.base.FastPath`][] (above).
      noise, train_step: optional, together: a stochastic cell's ``noise(key, params,
        xs_shape) -> (seq_noise, step_noise)`` and ``train_step(params, carry, x_t,
        seq_noise, step_noise_t) -> (carry, y_t)`` (see [`jrnn.Cell`][jrnn.base.Cell]); ``step`` is
        then the evaluation form.
      affine: optional, with ``fast`` and a carry ``RNNState(h)``: ``affine(params, xa) ->``
        [`LinearRecurrence`][jrnn.base.LinearRecurrence], the coefficients of the
        element-wise linear recurrence ``h_t = a_t * h_{t-1} + b_t`` the step computes,
        for the projected time-major inputs ``xa = fast.project(params, xs)`` of all steps
        at once (see [`jrnn.Cell`][jrnn.base.Cell]); [`jrnn.unroll`][jrnn.unrolling.unroll] then
        evaluates ``method="newton"``/``"auto"`` by an associative scan.
      parallel: optional, any carry: ``parallel(params, xs, carry, mask, resets) -> (carries,
        ys)``, the whole sequence at once (time-major ``xs [T, *batch, I]``, ``carries`` every
        step's carry with a leading ``T``, ``ys [T, *batch, output_size]``; see
        [`jrnn.Cell`][jrnn.base.Cell]), equal to running ``step``;
        [`jrnn.unroll`][jrnn.unrolling.unroll] then evaluates ``method="newton"``/``"auto"`` by it
        (as for ``affine``).  Traced on shapes at construction like ``step``.
      dtype: the compute dtype (``None``: the parameters' dtype); ``cell.step`` casts the
        parameters, the carry and the input to it.
      config: the hyper-parameters as ``(name, value)`` pairs (``cell.config``).

    Returns:
      A [`jrnn.Cell`][jrnn.base.Cell].

    Raises:
      TypeError: an argument that should be callable is not.
      ValueError: a size that is not a positive int, or functions that break the contract
        (the message names which and how).

    Examples:
      IndRNN (Li et al. 2018): every unit has its own scalar recurrent weight.

      >>> import jax, jax.numpy as jnp, jrnn
      >>> def init(key, input_size):
      ...     k1, k2 = jax.random.split(key)
      ...     return {"w": jax.random.normal(k1, (input_size, 8)) / input_size**0.5,
      ...             "u": jax.random.uniform(k2, (8,)), "b": jnp.zeros(8)}
      >>> def step(params, carry, x_t):
      ...     h = jax.nn.relu(x_t @ params["w"] + params["u"] * carry.h + params["b"])
      ...     return jrnn.RNNState(h), h
      >>> cell = jrnn.custom_cell(init, step, hidden_size=8, name="indrnn")
      >>> params = cell.init(jax.random.key(0), 3)
      >>> ys, carry = jrnn.unroll(cell, params, jnp.ones((2, 5, 3)), lengths=jnp.array([5, 2]))
      >>> ys.shape, cell.output_size, bool(jnp.all(ys[1, 2:] == 0))
      ((2, 5, 8), 8, True)
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"custom_cell: `name` must be a non-empty str, got {name!r}")
    _check_callable(init, "init", name)
    _check_callable(step, "step", name)
    _check_callable(initial_carry, "initial_carry", name, optional=True)
    hidden_size = _check_size(hidden_size, "hidden_size", name)
    output_size = _check_size(output_size, "output_size", name)
    if fast is not None and not isinstance(fast, FastPath):
        raise TypeError(
            f"custom_cell({name!r}): `fast` must be a jrnn.base.FastPath, got {type(fast).__name__}"
        )
    _check_callable(noise, "noise", name, optional=True)
    _check_callable(train_step, "train_step", name, optional=True)
    if (noise is None) != (train_step is None):
        raise _fail(name, "`noise` and `train_step` go together: give both or neither")
    _check_callable(affine, "affine", name, optional=True)
    _check_callable(parallel, "parallel", name, optional=True)
    if affine is not None and fast is None:
        raise _fail(name, "`affine` needs `fast` (its `project` and `gates` run the scan)")
    if initial_carry is None:
        if hidden_size is None:
            raise _fail(name, "give `hidden_size` (the default carry's width) or `initial_carry`")
        initial_carry = _zero_carry(hidden_size)
    user_carry, user_step = initial_carry, step
    compute = None if dtype is None else jnp.dtype(dtype)
    probe_params, carry, y, param_dtype = _layouts(name, init, user_carry, user_step, fast, compute)
    if parallel is not None:
        _check_parallel(name, parallel, probe_params, carry, y)
    if output_size is not None and output_size != y.shape[-1]:
        raise _fail(
            name, f"`output_size` is {output_size} but `step` gives y_t {shape_str(y.shape)}"
        )
    if affine is not None and not (isinstance(carry, RNNState)):
        raise _fail(name, f"`affine` needs the carry RNNState(h), got {type_name(carry)}")
    if hidden_size is None:
        hidden_size = carry.h.shape[-1] if hasattr(carry, "h") else _flat_size(carry)

    def initial_carry_checked(params: Params, batch_shape: tuple[int, ...] = ()) -> Carry:
        return user_carry(params, check_batch_shape(batch_shape, f"{name}.initial_carry"))

    def step_checked(params: Params, carry: Carry, x_t: Array) -> tuple[Carry, Array]:
        where = f"{name}.step"
        x_t = check_float_input("x_t", x_t, where)
        if x_t.ndim == 0:
            raise ValueError(f"{where}: `x_t` must have shape [*batch, input_size], got []")
        input_size = check_params(cell, params, where, input_size=x_t.shape[-1])
        if input_size_of(params) is not None:
            check_features("x_t", x_t, input_size, where, "[*batch, input_size]")
        batch_shape = x_t.shape[:-1]
        template = carry_layout(cell, x_t.shape[-1], batch_shape)
        carry = check_carry(carry, template, where, "carry", name, batch_shape)
        dt = cell_dtype(cell, params)
        return user_step(cast_tree(params, dt), cast_tree(carry, dt), x_t.astype(dt))

    cell = Cell(
        init=init,
        initial_carry=initial_carry_checked,
        step=step_checked,
        hidden_size=hidden_size,
        output_size=int(y.shape[-1]),
        name=name,
        config=tuple(config),
        dtype=dtype,
        param_dtype=param_dtype,
        fast=fast,
        noise=noise,
        train_step=train_step,
        affine=affine,
        parallel=parallel,
    )
    return cell
