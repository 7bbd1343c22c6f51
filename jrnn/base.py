"""The cell contract, the state containers and the dtype rules.

A recurrent cell is data plus pure functions (like ``optax.GradientTransformation``): a
[`Cell`][jrnn.base.Cell] whose ``init``, ``initial_carry`` and ``step`` are pure functions of an
explicit parameter pytree.  That is the whole contract:
[`jrnn.custom_cell`][jrnn.custom.custom_cell] makes a cell of three functions of your own, and every
feature of jrnn runs it.

Optional capabilities make a cell faster or let it do more: ``fast``
([`FastPath`][jrnn.base.FastPath]: the input projection ``unroll`` can hoist out of the scan and the
pieces of its hand-structured backward pass), ``noise``/``train_step`` (a regulariser's randomness)
``affine`` (an element-wise linear recurrence, evaluated by an associative scan) and
``parallel`` (a whole-sequence form of any carry, e.g. the mLSTM's by associative scans).  The
built-in cells give the ones that apply to them.

The argument checks every entry point shares are in [`jrnn.checks`][].
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
Params = Any  # a pytree of arrays, usually a dict
Carry = Any  # a pytree of arrays, e.g. LSTMState(h, c)
PRNGKey = jax.Array
DType = Any

VJPMode = Literal["hoisted", "autodiff"]
"""How ``jax.grad`` differentiates [`jrnn.unroll`][jrnn.unrolling.unroll]'s scan."""
RematMode = Literal["none", "step", "sqrt"]
"""The memory budget of backpropagation through time in [`jrnn.unroll`][jrnn.unrolling.unroll]."""
Method = Literal["scan", "newton", "quasi-newton", "auto"]
"""How [`jrnn.unroll`][jrnn.unrolling.unroll] evaluates the recurrence: the sequential ``lax.scan``,
or in parallel over time by Newton's method with full or diagonal Jacobians ([`jrnn.newton`][])
— by an exact associative scan for a cell with ``affine`` or ``parallel``
([`jrnn.linear_scan`][]) — or chosen by `jrnn.newton.auto_method`."""


def exportable(cls: type) -> type:
    """Registers the NamedTuple ``cls`` for ``jax.export`` serialization under the name
    ``jrnn.<ClassName>``, so a function exported with jrnn's containers in its inputs or
    outputs serializes and deserializes (every jrnn container that holds arrays is
    registered when jrnn is imported).  Use it on a carry type of your own.

    Examples:
      >>> from typing import NamedTuple
      >>> import jax
      >>> @exportable
      ... class MyCarry(NamedTuple):
      ...     h: jax.Array
      ...     n: jax.Array
      >>> MyCarry.__name__
      'MyCarry'
    """
    module = cls.__module__
    prefix = "jrnn" if module.split(".")[0] == "jrnn" else module
    jax.export.register_namedtuple_serialization(cls, serialized_name=f"{prefix}.{cls.__name__}")
    return cls


@exportable
class RNNState(NamedTuple):
    """Carry of the simple RNN and the GRU: the hidden state ``h`` of shape ``[..., H]``."""

    h: Array


@exportable
class LSTMState(NamedTuple):
    """Carry of the LSTM: hidden state ``h`` ``[..., H]`` and cell state ``c`` ``[..., H]``.

    With a projection (``proj_size=P``) ``h`` is ``[..., P]``.
    """

    h: Array
    c: Array


class LinearRecurrence(NamedTuple):
    """The element-wise linear recurrence of a cell over a whole sequence (``Cell.affine``).

    ``h_t = a_t * h_{t-1} + b_t`` element-wise, for all ``t`` at once.  ``a``, ``b``:
    ``[T, *batch, S]``, real, or complex for a diagonal complex state (then ``carry.h`` is
    the state's real view ``[*batch, 2S] = [Re h | Im h]``).  With ``log_space=True`` they
    are ``log a_t`` and ``log b_t`` (real, ``b_t > 0``): ``h_t = exp(a_t) * h_{t-1} +
    exp(b_t)``, composed in log space by [`jrnn.linear_scan.associative_unroll`][].

    Examples:
      >>> import jax.numpy as jnp
      >>> LinearRecurrence(jnp.ones((3, 2)), jnp.zeros((3, 2))).log_space
      False
    """

    a: Array
    b: Array
    log_space: bool = False


class FastPath(NamedTuple):
    """The step of a cell split for speed: an optional capability of [`Cell`][jrnn.base.Cell].

    With the input part of the pre-activations ``xa_t = project(params, x_t)`` and the
    recurrent product ``ha_t = carry.h @ recurrent_kernel(params)``, a step is ``gates(params,
    carry, xa_t, ha_t)``.  A cell that gives these pieces lets
    [`jrnn.unroll`][jrnn.unrolling.unroll] project the inputs of all time steps in one matmul before
    the scan (``hoist``) and run the hand-structured backward pass (``vjp="hoisted"``: the weight
    gradients as single large matmuls after the reverse scan).  The built-in cells give it; a cell
    of your own may (``jrnn.custom_cell(..., fast=...)``, see the guide "Write your own cell").
    ``cell.step`` must compute exactly ``gates(params, carry, project(params, x_t), carry.h @
    recurrent_kernel(params))``, and the carry must have a field ``h``.

    Attributes:
      project: ``project(params, xs) -> xa`` ``[..., K]`` for inputs ``xs [..., input_size]``
        of any leading shape (all time steps at once when hoisted).
      recurrent_kernel: ``recurrent_kernel(params) -> w [h_size, K']``, the matrix that
        multiplies ``carry.h`` in every step (``[h_size, 0]`` for a cell without one).
      gates: ``gates(params, carry, xa_t, ha_t) -> (carry, y_t)``: the rest of the step
        (element-wise gate math, plus any product it keeps, e.g. Cho's GRU's ``(r * h) @
        w_hn``).  The parameters it reads are found by tracing it: the hand-structured
        backward differentiates those per step and all others once, after the scan.
      diagonal: optional ``diagonal(params, carry, xa_t) -> [D]``, the exact diagonal of
        the step Jacobian ``∂s_t/∂s_{t-1}`` on the flat carry (one sequence, no batch axes),
        for ``method="quasi-newton"``; ``None``: ``D`` Jacobian-vector products.

    Examples:
      >>> import jrnn
      >>> sorted(jrnn.lstm(4).fast._fields)
      ['diagonal', 'gates', 'project', 'recurrent_kernel']
    """

    project: Callable[[Params, Array], Array]
    recurrent_kernel: Callable[[Params], Array]
    gates: Callable[[Params, Carry, Array, Array], tuple[Carry, Array]]
    diagonal: Callable[[Params, Carry, Array], Array] | None = None


class Cell(NamedTuple):
    """A recurrent cell as pure functions over an explicit parameter pytree.

    The contract is three functions and their sizes; everything else is an optional
    capability that makes the cell faster or lets it do more.
    [`jrnn.custom_cell`][jrnn.custom.custom_cell] builds one from your own functions, the factories
    ([`jrnn.lstm`][jrnn.cells.lstm], ...) build the built-in ones.

    Attributes:
      init: ``init(key, input_size) -> params``, any pytree of arrays.
      initial_carry: ``initial_carry(params, batch_shape=()) -> carry``, a pytree of arrays
        with leading axes ``batch_shape`` (zeros for the built-in cells).
      step: ``step(params, carry, x_t) -> (carry, y_t)`` with ``x_t: [*batch, input_size]``
        (``[input_size]`` for one unbatched input) and ``y_t: [*batch, output_size]``; with
        ``params`` bound it is the function ``lax.scan`` wants.  It checks its arguments
        ([`jrnn.checks.check_params`][], [`jrnn.checks.check_carry`][]) at trace time.
      hidden_size: the cell's width ``H`` (what the CPU strategy table and the batch split
        read: the gates' width for the built-in cells).
      output_size: the size of ``y_t`` (``H`` unless the cell projects its output).
      name: the cell and its hyper-parameters, e.g. ``"lstm(hidden_size=256, peephole=False,
        ...)"``; also its ``repr``.
      config: the hyper-parameters as ``(name, value)`` pairs (``dict(cell.config)``).
      dtype: compute dtype, or ``None`` to compute in the parameters' dtype.
      param_dtype: storage dtype of the parameters made by ``init``.
      fast: ``None``, or the step split for speed ([`FastPath`][jrnn.base.FastPath]): the input
          projection
        [`jrnn.unroll`][jrnn.unrolling.unroll] can hoist out of the scan, the recurrent kernel and
        the gates of its hand-structured backward pass.
      noise: ``None`` for a deterministic cell.  A stochastic (regularised) cell such as
        [`jrnn.zoneout`][jrnn.regularisers.zoneout] or
        [`jrnn.recurrent_dropout`][jrnn.regularisers.recurrent_dropout] sets ``noise(key, params,
        xs_shape) -> (seq_noise, step_noise)``: for time-major inputs of shape ``xs_shape = (T,
        *batch, input_size)`` it samples everything one sequence needs before the scan,
        ``seq_noise`` (constant over time, e.g. ``[*batch, H]``) and ``step_noise`` (a pytree whose
        leaves have a leading ``T`` axis, scanned along with the inputs).
        [`jrnn.unroll`][jrnn.unrolling.unroll] calls it only when it is given a ``key`` (training).
      train_step: with ``noise``: ``train_step(params, carry, x_t, seq_noise, step_noise_t)
        -> (carry, y_t)``, the training step given one step's slice of the noise
        (compute-dtype params and carry, unchecked).  ``step`` stays the evaluation (no
        key) form.
      affine: ``None`` for a cell whose step is not linear in its carry.  A cell with
        ``fast`` whose carry is ``RNNState(h)`` with an element-wise linear recurrence
        ([`jrnn.mingru`][jrnn.mincells.mingru], [`jrnn.minlstm`][jrnn.mincells.minlstm],
        [`jrnn.lru`][jrnn.mincells.lru]) sets ``affine(params, xa) ->``
        [`LinearRecurrence`][jrnn.base.LinearRecurrence] ``(a, b, log_space)``: for the projected
        time-major inputs ``xa = fast.project(params, xs)`` (``[T, *batch, K]``, compute-dtype
        params, unchecked) the coefficients of ``h_t = a_t * h_{t-1} + b_t`` for all steps, so that
        [`jrnn.unroll`][jrnn.unrolling.unroll] (``method="newton"``, ``"quasi-newton"`` or
        ``"auto"``) can evaluate the sequence with ``jax.lax.associative_scan``.  The step must
        compute the same recurrence (the outputs are ``fast.gates`` applied to the carries the scan
        finds).  Wrappers that change the recurrence ([`jrnn.zoneout`][jrnn.regularisers.zoneout])
        drop it.
      parallel: ``None``, or the cell's whole-sequence form for a carry of any layout (the
        successor of ``affine`` for recurrences that are not ``RNNState(h)`` element-wise, e.g.
        [`jrnn.mlstm`][jrnn.xlstm.mlstm]'s, evaluated by associative scans):
        ``parallel(params, xs, carry, mask, resets) -> (carries, ys)`` with compute-dtype
        ``params`` (unchecked), time-major inputs ``xs [T, *batch, I]`` (``T >= 1``; padded
        steps zero), the initial ``carry`` (leaves ``[*batch, ...]``), ``mask`` bool ``[T,
        *batch]`` (valid steps) or ``None``, ``resets`` bool ``[T, *batch]`` or ``None`` (the
        carry entering step ``t`` is the initial ``carry``).  It reads the steps forward
        (``t = 0 .. T-1``: [`jrnn.unroll`][jrnn.unrolling.unroll] flips the sequence for
        ``reverse``) and returns every step's carry ``carries`` (the carry's layout with a
        leading ``T`` on every leaf; a padded step keeps the carry it read) and the outputs
        ``ys [T, *batch, output_size]`` (any value at padded steps: ``unroll`` sets them to
        zero), equal to running ``step`` (up to rounding).  ``unroll`` evaluates
        ``method="newton"``, ``"quasi-newton"`` and ``"auto"`` by it exactly as by ``affine``
        (which it takes in place of, where a cell has both); the final carry is
        ``carries[-1]``, training with a ``key`` runs the sequential scan.  Wrappers that change
        the recurrence ([`jrnn.zoneout`][jrnn.regularisers.zoneout]) drop it.

    Examples:
      >>> import jrnn
      >>> jrnn.gru(8, reset_after=True)
      gru(hidden_size=8, reset_after=True, layer_norm=False, gate_fn=sigmoid, activation=tanh,
          dtype=None, param_dtype=float32)
      >>> dict(jrnn.lstm(4).config)["peephole"]
      False
    """

    init: Callable[[PRNGKey, int], Params]
    initial_carry: Callable[..., Carry]
    step: Callable[[Params, Carry, Array], tuple[Carry, Array]]
    hidden_size: int
    output_size: int
    name: str = "custom"
    config: tuple[tuple[str, Any], ...] = ()
    dtype: DType | None = None
    param_dtype: DType = jnp.float32
    fast: FastPath | None = None
    noise: Callable[[PRNGKey, Params, tuple[int, ...]], tuple[Any, Any]] | None = None
    train_step: Callable[..., tuple[Carry, Array]] | None = None
    affine: Callable[[Params, Array], LinearRecurrence] | None = None
    parallel: Callable[..., tuple[Carry, Array]] | None = None

    def __repr__(self) -> str:
        return self.name


def describe(kind: str, config: Mapping[str, Any] | tuple[tuple[str, Any], ...]) -> str:
    """``kind(key=value, ...)`` with dtypes and functions written by name.

    Examples:
      >>> import jax.numpy as jnp
      >>> describe("lstm", {"hidden_size": 4, "param_dtype": jnp.float32})
      'lstm(hidden_size=4, param_dtype=float32)'
    """

    def fmt(v: Any) -> str:
        if v is None or isinstance(v, bool | int | float | str):
            return str(v)
        try:
            return jnp.dtype(v).name
        except TypeError:
            return getattr(v, "__name__", repr(v))

    items = config.items() if isinstance(config, Mapping) else config
    return f"{kind}(" + ", ".join(f"{k}={fmt(v)}" for k, v in items) + ")"


def kind_of(cell: Cell) -> str:
    """The factory's name of ``cell``: ``"simple_rnn"``, ``"lstm"``, ``"gru"``, ....

    Examples:
      >>> import jrnn
      >>> kind_of(jrnn.lstm(4, proj_size=2))
      'lstm'
    """
    return cell.name.split("(")[0]


def recur(fast: FastPath, params: Params, carry: Carry, xa_t: Array) -> tuple[Carry, Array]:
    """One step of a [`FastPath`][jrnn.base.FastPath] given the projected input ``xa_t``
    (compute-dtype params and carry).

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.gru(4)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> x, c = jnp.ones((2, 3), p["w_ih"].dtype), cell.initial_carry(p, (2,))
      >>> xa = cell.fast.project(p, x)
      >>> bool(jnp.allclose(recur(cell.fast, p, c, xa)[1], cell.step(p, c, x)[1]))
      True
    """
    return fast.gates(params, carry, xa_t, carry.h @ fast.recurrent_kernel(params))


def core_step(cell: Cell) -> Callable[[Params, Carry, Array], tuple[Carry, Array]]:
    """The step the engines run: ``recur`` of the projected input for a cell with ``fast``
    (nothing checked), else ``cell.step`` (whose checks run once, at trace time).

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.lstm(4)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> c, x = cell.initial_carry(p, (2,)), jnp.ones((2, 3))
      >>> bool(jnp.array_equal(core_step(cell)(p, c, x)[1], cell.step(p, c, x)[1]))
      True
    """
    fast = cell.fast
    if fast is None:
        return cell.step
    return lambda params, carry, x_t: recur(fast, params, carry, fast.project(params, x_t))


# --------------------------------------------------------------------------------------
# dtypes


def compute_dtype(cell: Cell, params: Params) -> jnp.dtype:
    """The dtype a cell computes in: ``cell.dtype`` if set, else the dtype of ``params``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> p = jrnn.lstm(4).init(jax.random.key(0), 3)
      >>> compute_dtype(jrnn.lstm(4, dtype=jnp.bfloat16), p), compute_dtype(jrnn.lstm(4), p)
      (dtype(bfloat16), dtype('float32'))
    """
    if cell.dtype is not None:
        return jnp.dtype(cell.dtype)
    leaves = jax.tree.leaves(params)
    if not leaves:
        return jnp.dtype(cell.param_dtype)
    return jnp.result_type(*leaves)


def cast_tree(tree: Any, dtype: DType) -> Any:
    """Casts every floating-point leaf of ``tree`` to ``dtype`` (a no-op where it already is).

    Examples:
      >>> import jax.numpy as jnp
      >>> out = cast_tree({"w": jnp.ones(2), "n": jnp.arange(2)}, jnp.float16)
      >>> out["w"].dtype, out["n"].dtype == jnp.arange(2).dtype
      (dtype('float16'), True)
    """

    def cast(x):
        x = jnp.asarray(x)
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree.map(cast, tree)


def varying_axes(x: Any) -> set[str]:
    """The mesh axes ``x`` varies over inside ``shard_map`` (empty outside).

    Examples:
      >>> import jax.numpy as jnp
      >>> varying_axes(jnp.ones(3))
      set()
    """
    aval = jax.typeof(x)
    vma = getattr(aval, "vma", None)  # older JAX
    if vma is None:
        vma = getattr(getattr(aval, "manual_axis_type", None), "varying", ())
    return set(vma)


def vary_like(tree: Any, *others: Any) -> Any:
    """``tree`` marked as varying over every mesh axis any leaf of ``others`` varies over.

    Inside ``jax.shard_map`` a value made by ``jnp.zeros`` (the default initial carry, an
    accumulator) is the same on every device, while a scan body fed a device's shard of
    the inputs returns a device-varying carry; ``lax.scan`` wants the two types equal.
    Outside ``shard_map`` (no varying axes) this returns ``tree`` unchanged.

    Examples:
      >>> import jax.numpy as jnp
      >>> float(vary_like(jnp.zeros(()), jnp.ones(3)))
      0.0
    """
    axes: set[str] = set()
    for x in jax.tree.leaves(others):
        axes |= varying_axes(x)
    if not axes:
        return tree

    def leaf(x):
        missing = tuple(sorted(axes - varying_axes(x)))
        return jax.lax.pcast(x, missing, to="varying") if missing else x

    return jax.tree.map(leaf, tree)
