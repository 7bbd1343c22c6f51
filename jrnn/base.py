"""The cell protocol, state containers and the checks shared by every entry point.

A recurrent cell is data plus pure functions (like ``optax.GradientTransformation``):
a factory such as :func:`jrnn.lstm` closes over hyper-parameters and returns a
:class:`Cell` whose fields are pure functions of an explicit parameter pytree.

``step`` is split so that sequences run fast and differentiate fast.  With the
pre-activations ``xa = x @ w_ih + b`` (``project``, one large matmul for all time steps at
once) and ``ha = h_{t-1} @ recurrent_kernel(params)`` (the only matmul in the loop), a step
is ``gates(params, carry, xa, ha)``: element-wise gate math only.  ``unroll`` builds both the
scan body and a hand-structured backward pass from these three pieces, for any cell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Params = Any  # a pytree of arrays, usually a dict
Carry = Any  # a pytree of arrays, e.g. LSTMState(h, c)
PRNGKey = jax.Array
DType = Any


class RNNState(NamedTuple):
    """Carry of the simple RNN and the GRU: the hidden state ``h`` of shape ``[..., H]``."""

    h: Array


class LSTMState(NamedTuple):
    """Carry of the LSTM: hidden state ``h`` ``[..., H]`` and cell state ``c`` ``[..., H]``.

    With a projection (``proj_size=P``) ``h`` is ``[..., P]``.
    """

    h: Array
    c: Array


class Cell(NamedTuple):
    """A recurrent cell as pure functions over an explicit parameter pytree.

    Attributes:
      init: ``init(key, input_size) -> params``.
      initial_carry: ``initial_carry(params, batch_shape=()) -> carry`` (zeros).
      step: ``step(params, carry, x_t) -> (carry, y_t)`` with ``x_t: [..., input_size]`` and
        ``y_t: [..., output_size]``; with ``params`` bound it is the function ``lax.scan`` wants.
      project: ``project(params, xs) -> xa``: the input part of every gate's pre-activation,
        ``xs @ w_ih + b`` for inputs of any leading shape (``[..., kH]``).
      recurrent_kernel: ``recurrent_kernel(params) -> w [H, k'H]``: the weight that multiplies
        ``carry.h`` in every step, ``ha_t = h_{t-1} @ w``.
      gates: ``gates(params, carry, xa_t, ha_t) -> (carry, y_t)``: the element-wise rest of
        a step; it may read only the parameters named in ``gate_params``.
      gate_params: names of the parameters ``gates`` reads (e.g. ``("w_peep",)``).
      hidden_size: ``H``.
      output_size: size of ``y_t`` (``H`` unless the cell projects its output).
      dtype: compute dtype, or ``None`` to compute in the parameters' dtype.
      param_dtype: storage dtype of the parameters made by ``init``.
      name: a short description, e.g. ``"lstm(256, peephole=True)"``.
    """

    init: Callable[[PRNGKey, int], Params]
    initial_carry: Callable[..., Carry]
    step: Callable[[Params, Carry, Array], tuple[Carry, Array]]
    project: Callable[[Params, Array], Array]
    recurrent_kernel: Callable[[Params], Array]
    gates: Callable[[Params, Carry, Array, Array], tuple[Carry, Array]]
    gate_params: tuple[str, ...]
    hidden_size: int
    output_size: int
    dtype: DType | None
    param_dtype: DType
    name: str


def recur(cell: Cell, params: Params, carry: Carry, xa_t: Array) -> tuple[Carry, Array]:
    """One step given the projected input ``xa_t`` (compute-dtype params and carry)."""
    return cell.gates(params, carry, xa_t, carry.h @ cell.recurrent_kernel(params))


# --------------------------------------------------------------------------------------
# dtypes


def compute_dtype(cell: Cell, params: Params) -> jnp.dtype:
    """The dtype a cell computes in: ``cell.dtype`` if set, else the dtype of ``params``."""
    if cell.dtype is not None:
        return jnp.dtype(cell.dtype)
    leaves = jax.tree.leaves(params)
    if not leaves:
        return jnp.dtype(cell.param_dtype)
    return jnp.result_type(*leaves)


def cast_tree(tree: Any, dtype: DType) -> Any:
    """Casts every floating-point leaf of ``tree`` to ``dtype`` (a no-op where it already is)."""

    def cast(x):
        x = jnp.asarray(x)
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree.map(cast, tree)


# --------------------------------------------------------------------------------------
# checks (all run at trace time on static shapes)


def _shape_str(shape: tuple[int | str, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def check_int(name: str, value: Any, where: str, minimum: int = 1) -> int:
    """Returns ``value`` if it is an int (not a bool) ``>= minimum``, else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{where}: `{name}` must be {what}, got {value!r}")
    return value


def check_float_input(name: str, x: Any, where: str) -> Array:
    """Returns ``x`` as an array; raises ``TypeError`` unless it has a floating dtype."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{where}: `{name}` must be a floating-point array, got dtype {x.dtype}; "
            f"cast it, e.g. {name}.astype(jnp.float32)"
        )
    return x


def input_size_of(params: Params) -> int | None:
    """The input size recorded in ``params['w_ih']`` (``None`` for cells without one)."""
    if isinstance(params, dict) and "w_ih" in params:
        return int(np.shape(params["w_ih"])[0])
    return None


def check_features(name: str, x: Array, expected: int | None, where: str, layout: str) -> None:
    """Raises ``ValueError`` unless the last axis of ``x`` has size ``expected``."""
    if expected is not None and x.shape[-1] != expected:
        raise ValueError(
            f"{where}: `{name}` must have shape {layout} with input_size={expected} "
            f"(from params['w_ih']), got shape {_shape_str(x.shape)}"
        )


def check_carry(carry: Carry, template: Carry, where: str, name: str = "carry") -> Carry:
    """Checks ``carry`` against the structure and shapes of ``template`` (from
    ``initial_carry``) and casts it to the template's dtypes."""
    t_leaves, t_def = jax.tree.flatten(template)
    try:
        leaves = t_def.flatten_up_to(carry)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"{where}: `{name}` must have the structure {t_def}, got {jax.tree.structure(carry)}"
        ) from e
    out = []
    for i, (leaf, t) in enumerate(zip(leaves, t_leaves, strict=True)):
        leaf = check_float_input(f"{name}[{i}]", leaf, where)
        if leaf.shape != t.shape:
            raise ValueError(
                f"{where}: `{name}` leaf {i} must have shape {_shape_str(t.shape)} "
                f"([*batch, features]), got {_shape_str(leaf.shape)}"
            )
        out.append(leaf.astype(t.dtype))
    return jax.tree.unflatten(t_def, out)


def check_lengths(lengths: Any, batch_shape: tuple[int, ...], num_steps: int, where: str) -> Array:
    """Checks ``lengths`` (int ``[*batch]``, ``0 <= lengths <= T`` when concrete)."""
    concrete = None if isinstance(lengths, jax.core.Tracer) else np.asarray(lengths)
    lengths = jnp.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"{where}: `lengths` must be an integer array, got dtype {lengths.dtype}")
    if lengths.shape != tuple(batch_shape):
        raise ValueError(
            f"{where}: `lengths` must have the batch shape {_shape_str(batch_shape)} of xs, "
            f"got shape {_shape_str(lengths.shape)}"
        )
    if concrete is not None and concrete.size:
        lo, hi = int(concrete.min()), int(concrete.max())
        if lo < 0 or hi > num_steps:
            raise ValueError(
                f"{where}: `lengths` must lie in [0, T={num_steps}], got values in [{lo}, {hi}]"
            )
    return lengths.astype(jnp.int32)
