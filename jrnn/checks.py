"""The argument checks shared by every entry point.

Every entry point (``cell.step``, [`jrnn.unroll`][jrnn.unrolling.unroll], ``stack.apply``, the
models) checks its arguments with the functions below: [`check_params`][jrnn.checks.check_params],
[`check_carry`][jrnn.checks.check_carry], [`check_lengths`][jrnn.checks.check_lengths],
[`check_resets`][jrnn.checks.check_resets], [`check_bool`][jrnn.checks.check_bool], ....  They read
only shapes and dtypes, so they run once at trace time (and vanish from a jitted computation); a bad
argument raises a ``ValueError``/``TypeError`` that names the function, the argument, the expected
and the actual value.  Values are checked only where they are concrete: traced ``lengths`` are
clamped to ``[0, T]`` (see [`check_lengths`][jrnn.checks.check_lengths]) and traced integer
``resets`` count as set where nonzero (see [`check_resets`][jrnn.checks.check_resets]).

The layouts a cell's parameters and carry must have come from the cell itself
(``jax.eval_shape`` of its ``init`` and ``initial_carry``,
[`param_layout`][jrnn.checks.param_layout], [`carry_layout`][jrnn.checks.carry_layout]), so they
hold for a cell of your own as for the built-in ones.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jrnn.base import Carry, Cell, Params, PRNGKey, describe, kind_of

Array = jax.Array


def shape_str(shape: tuple[int | str, ...]) -> str:
    """``[2, 3]`` for the shape ``(2, 3)``, as every message writes shapes.

    Examples:
      >>> shape_str((2, 3))
      '[2, 3]'
    """
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _dtype_of(x: Any) -> np.dtype:
    dt = getattr(x, "dtype", None)
    return np.dtype(dt) if dt is not None else np.asarray(x).dtype


def check_int(name: str, value: Any, where: str, minimum: int = 1) -> int:
    """Returns ``value`` if it is an int (not a bool) ``>= minimum``, else ``ValueError``.

    Examples:
      >>> check_int("num_layers", 2, "stack")
      2
      >>> check_int("num_layers", 0, "stack")
      Traceback (most recent call last):
      ...
      ValueError: stack: `num_layers` must be a positive int, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{where}: `{name}` must be {what}, got {value!r}")
    return value


def check_bool(name: str, value: Any, where: str) -> bool:
    """Returns ``value`` as a Python bool; ``TypeError`` for a traced array or a non-bool.

    Flags such as ``reverse`` choose the program that is traced, so they must be known at
    trace time (pass them as static arguments of ``jax.jit``).

    Examples:
      >>> check_bool("reverse", True, "unroll")
      True
    """
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{where}: `{name}` must be a Python bool, got a traced array; it selects the "
            f"computation, so pass it as a static argument (jax.jit(..., static_argnames=))"
        )
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise TypeError(f"{where}: `{name}` must be a Python bool, got {value!r}")


def check_choice(name: str, value: Any, choices: tuple[str, ...], where: str) -> Any:
    """Returns ``value`` if it is one of ``choices``, else ``ValueError`` listing them.

    Examples:
      >>> check_choice("remat", "all", ("none", "step", "sqrt"), "unroll")
      Traceback (most recent call last):
      ...
      ValueError: unroll: `remat` must be 'none', 'step' or 'sqrt', got 'all'
    """
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"
        raise ValueError(f"{where}: `{name}` must be {listed}, got {value!r}")
    return value


def check_key(
    key: Any, where: str, name: str = "key", batch_shape: tuple[int, ...] | None = None
) -> PRNGKey:
    """Returns ``key`` if it is one PRNG key (or, given the data's ``batch_shape``, one key
    per example), else ``TypeError``.

    A key is a typed key array of shape ``[]`` (``jax.random.key(0)``) or a raw ``uint32``
    key of shape ``[2]`` (``jax.random.PRNGKey(0)``); one key per example (see
    [`jrnn.keys`][jrnn.keys]) has the shape ``[*batch_shape]`` (raw: ``[*batch_shape, 2]``).

    Examples:
      >>> import jax
      >>> check_key(jax.random.key(0), "unroll").shape
      ()
      >>> check_key(jax.random.split(jax.random.key(0), 3), "unroll", batch_shape=(3,)).shape
      (3,)
      >>> check_key(0, "unroll")
      Traceback (most recent call last):
      ...
      TypeError: unroll: `key` must be a PRNG key of shape [] (jax.random.key(0)) or a raw uint32 key of shape [2] (jax.random.PRNGKey(0)), got int 0
    """  # noqa: E501
    dt = getattr(key, "dtype", None)
    shape = tuple(getattr(key, "shape", ()))
    batches = [()] if not batch_shape else [(), tuple(batch_shape)]
    if dt is not None:
        if jnp.issubdtype(dt, jax.dtypes.prng_key) and shape in batches:
            return key
        if dt == jnp.uint32 and shape in [(*b, 2) for b in batches]:
            return key
        got = f"an array of dtype {dt} and shape {shape_str(shape)}"
    else:
        got = f"{type(key).__name__} {key!r}"
    per_example = (
        ""
        if not batch_shape
        else f", or one key per example of shape {shape_str(tuple(batch_shape))}"
    )
    raise TypeError(
        f"{where}: `{name}` must be a PRNG key of shape [] (jax.random.key(0)) or a raw "
        f"uint32 key of shape [2] (jax.random.PRNGKey(0)){per_example}, got {got}"
    )


def check_rate(name: str, value: Any, where: str) -> float:
    """Returns ``value`` as a float if it is a real number in ``[0, 1)``, else an error.

    Examples:
      >>> check_rate("rate", 0.25, "zoneout")
      0.25
      >>> check_rate("rate", 1.0, "zoneout")
      Traceback (most recent call last):
      ...
      ValueError: zoneout: `rate` must lie in [0, 1), got 1.0
    """
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"{where}: `{name}` must be a float in [0, 1), got {value!r}")
    value = float(value)
    if not (0.0 <= value < 1.0):
        raise ValueError(f"{where}: `{name}` must lie in [0, 1), got {value!r}")
    return value


def check_float_input(name: str, x: Any, where: str) -> Array:
    """Returns ``x`` as an array; raises ``TypeError`` unless it has a floating dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> check_float_input("xs", jnp.zeros(2, jnp.int32), "unroll")
      Traceback (most recent call last):
      ...
      TypeError: unroll: `xs` must be a floating-point array, got dtype int32; cast it, e.g. xs.astype(jnp.float32)
    """  # noqa: E501
    if isinstance(x, jax.Array):  # the common case: no conversion
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(
                f"{where}: `{name}` must be a floating-point array, got dtype {x.dtype}; "
                f"cast it, e.g. {name}.astype(jnp.float32)"
            )
        return x
    if isinstance(x, Mapping | tuple | list):
        try:
            x = jnp.asarray(x)
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"{where}: `{name}` must be a floating-point array, got {type(x).__name__}"
            ) from e
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{where}: `{name}` must be a floating-point array, got dtype {x.dtype}; "
            f"cast it, e.g. {name}.astype(jnp.float32)"
        )
    return x


def input_size_of(params: Params) -> int | None:
    """The input size recorded in ``params['w_ih']`` (``None`` for cells without one).

    Examples:
      >>> import jax, jrnn
      >>> input_size_of(jrnn.gru(4).init(jax.random.key(0), 3))
      3
    """
    if isinstance(params, Mapping) and "w_ih" in params:
        shape = np.shape(params["w_ih"])
        return int(shape[0]) if shape else None
    return None


def check_features(name: str, x: Array, expected: int | None, where: str, layout: str) -> None:
    """Raises ``ValueError`` unless the last axis of ``x`` has size ``expected``.

    Examples:
      >>> import jax.numpy as jnp
      >>> check_features("x_t", jnp.zeros((2, 5)), 3, "lstm.step", "[*batch, input_size]")
      Traceback (most recent call last):
      ...
      ValueError: lstm.step: `x_t` must have shape [*batch, input_size] with input_size=3 (from params['w_ih']), got shape [2, 5]
    """  # noqa: E501
    if expected is not None and (x.ndim == 0 or x.shape[-1] != expected):
        raise ValueError(
            f"{where}: `{name}` must have shape {layout} with input_size={expected} "
            f"(from params['w_ih']), got shape {shape_str(x.shape)}"
        )


# ---- parameters ---------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _init_layout(init: Callable, input_size: int) -> Any:
    return jax.eval_shape(lambda key: init(key, input_size), jax.random.key(0))


def param_layout(cell: Cell, input_size: int) -> Any:
    """The ``jax.ShapeDtypeStruct`` tree of ``cell.init(key, input_size)``.

    Computed by ``jax.eval_shape`` (nothing is allocated) and remembered per ``(init,
    input_size)``, so the layout every check compares against is exactly what ``init``
    makes and cannot drift from it.

    Examples:
      >>> import jrnn
      >>> {k: v.shape for k, v in param_layout(jrnn.gru(4), 3).items()}
      {'b': (12,), 'w_hh': (4, 12), 'w_ih': (3, 12)}
    """
    try:
        return _init_layout(cell.init, input_size)
    except TypeError:  # an unhashable init: compute without the cache
        return _init_layout.__wrapped__(cell.init, input_size)


def guess_cell(params: Any) -> tuple[str, dict[str, Any]] | None:
    """Which jrnn cell made ``params`` (a dict with ``w_hh``), from its keys and shapes.

    Returns ``(kind, config)``, e.g. ``("gru", {"hidden_size": 4, "reset_after": True})``,
    or ``None`` when the params look like none of the built-in cells.  ``"layer_norm":
    True`` is added for the params of a layer-normalised cell (with ``ln_ih_scale``).

    Examples:
      >>> import jax, jrnn
      >>> guess_cell(jrnn.lstm(4, peephole=True).init(jax.random.key(0), 3))
      ('lstm', {'hidden_size': 4, 'peephole': True, 'proj_size': None})
    """
    if not isinstance(params, Mapping) or "w_hh" not in params:
        return None
    shape = np.shape(params["w_hh"])
    if len(shape) != 2 or shape[0] == 0:
        return None
    rows, cols = (int(d) for d in shape)
    keys = set(params)
    ln = {"layer_norm": True} if "ln_ih_scale" in keys else {}
    if "b_hn" in keys:
        return "gru", {"hidden_size": cols // 3, "reset_after": True, **ln}
    if keys & {"w_peep", "w_proj", "ln_c_scale"} or cols == 4 * rows:
        proj = int(np.shape(params["w_proj"])[-1]) if "w_proj" in keys else None
        peep = "w_peep" in keys
        return "lstm", {"hidden_size": cols // 4, "peephole": peep, "proj_size": proj, **ln}
    if cols == 3 * rows:
        return "gru", {"hidden_size": rows, "reset_after": False, **ln}
    if cols == rows:
        return "simple_rnn", {"hidden_size": rows, **ln}
    return None


def _hint(cell: Cell, params: Any) -> str:
    """`` — did you mean lstm(peephole=True)?`` or `` — these look like the parameters of
    gru(...)``, or ``""``."""
    guess = guess_cell(params)
    if guess is None:
        return ""
    kind, config = guess
    if kind == kind_of(cell):
        own = dict(cell.config)
        config = {**config, "layer_norm": config.get("layer_norm", False)}
        diff = {k: v for k, v in config.items() if k in own and own[k] != v}
        diff.pop("hidden_size", None)
        return f" — did you mean {describe(kind, diff)}?" if diff else ""
    return f" — these look like the parameters of {describe(kind, config)}"


def _explain(cell: Cell, key: str, shape: tuple[int, ...], input_size: int | None) -> str:
    parts = []
    if key == "w_ih" and input_size is not None:
        parts.append(f"input_size={input_size} from params['w_ih']")
    parts.append(f"hidden_size={cell.hidden_size}")
    if cell.output_size != cell.hidden_size:
        parts.append(f"output_size={cell.output_size}")
    if shape and shape[-1] % cell.hidden_size == 0 and shape[-1] // cell.hidden_size > 1:
        parts.append(f"{shape[-1] // cell.hidden_size} gates")
    return ", ".join(parts)


def check_params(
    cell: Cell,
    params: Params,
    where: str,
    name: str = "params",
    input_size: int | None = None,
) -> int | None:
    """Checks ``params`` against the layout ``cell.init`` makes; returns the input size.

    The expected structure, shapes and floating dtypes come from
    [`param_layout`][jrnn.checks.param_layout] (``jax.eval_shape`` of ``cell.init``).  Params that
    record their input size (a dict with ``w_ih [input_size, K]``, as every built-in cell's) are
    checked against the layout for that size, which is returned (the caller then checks its inputs
    against it).  For any other cell the input size is the caller's (``input_size``, read from the
    inputs) and is returned as given; without it, only the structure is checked.  Shapes only:
    nothing is computed, so it is cheap and works on tracers.

    Raises:
      ValueError: a missing or unknown key (with a hint naming the configuration or the
        cell the params look like), another structure, or a wrong shape.
      TypeError: ``params`` is not a dict where the cell's is, or a leaf is not a
        floating-point array.

    Examples:
      >>> import jax, jrnn
      >>> cell = jrnn.lstm(4)
      >>> check_params(cell, cell.init(jax.random.key(0), 3), "demo")
      3
      >>> check_params(cell, jrnn.lstm(4, peephole=True).init(jax.random.key(0), 3), "demo")
      Traceback (most recent call last):
      ...
      ValueError: demo: unknown key 'w_peep' in `params` for lstm(hidden_size=4, peephole=False, forget_bias=1.0, proj_size=None, layer_norm=False, gate_fn=sigmoid, activation=tanh, dtype=None, param_dtype=float32) — did you mean lstm(peephole=True)?
    """  # noqa: E501
    recorded = input_size_of(params)
    base = param_layout(cell, recorded or input_size or 1)
    if not isinstance(base, Mapping):
        return _check_tree(cell, params, base, where, name, input_size)
    if not isinstance(params, Mapping):
        extra = ""
        if isinstance(params, tuple | list):
            extra = " (nested tuples are a jrnn.stack's params: run them with stack.apply)"
        raise TypeError(
            f"{where}: `{name}` must be a dict of arrays as {cell.name}.init makes (keys "
            f"{sorted(base)}), got {type(params).__name__}{extra}"
        )
    layout = base
    if "w_ih" in base:  # the params record their input size
        if "w_ih" not in params:
            raise ValueError(
                f"{where}: `{name}` is missing key 'w_ih' for {cell.name} (got keys "
                f"{sorted(params)}){_hint(cell, params)}"
            )
        w_shape = np.shape(params["w_ih"])
        kh = base["w_ih"].shape[-1]
        if len(w_shape) != 2 or w_shape[0] < 1:
            raise ValueError(
                f"{where}: `{name}['w_ih']` must have shape [input_size, {kh}] "
                f"({_explain(cell, 'w_ih', (1, kh), None)}), got {shape_str(w_shape)}"
            )
        input_size = int(w_shape[0])
    unknown = sorted(set(params) - set(layout))
    if unknown:
        raise ValueError(
            f"{where}: unknown key {unknown[0]!r} in `{name}` for {cell.name}{_hint(cell, params)}"
        )
    missing = sorted(set(layout) - set(params))
    if missing:
        raise ValueError(
            f"{where}: `{name}` is missing key {missing[0]!r} for {cell.name}{_hint(cell, params)}"
        )
    if input_size is None:
        return None
    order = sorted(layout, key=lambda k: (k != "w_hh", k != "w_ih", k != "b", k))
    for key in order:  # the most telling mismatch first
        spec, leaf = layout[key], params[key]
        if not isinstance(spec, jax.ShapeDtypeStruct):  # a nested tree
            _check_tree(cell, leaf, spec, where, f"{name}[{key!r}]", input_size)
            continue
        why, hint = _made_by(cell, input_size), ""
        if "w_ih" in layout:
            why = _explain(cell, key, spec.shape, input_size)
            hint = _hint(cell, params) if key in ("w_hh", "w_ih", "b") else ""
        _check_param_leaf(leaf, spec, where, f"{name}['{key}']", why, hint)
    return input_size


def _made_by(cell: Cell, input_size: int) -> str:
    return f"as {cell.name}.init(key, input_size={input_size}) makes"


def _check_param_leaf(
    leaf: Any, spec: Any, where: str, leaf_name: str, why: str, hint: str = ""
) -> None:
    """One parameter's floating dtype and shape; ``why`` explains the expected shape,
    ``hint`` ends the message (which cell the params look like)."""
    dt = _dtype_of(leaf)
    if not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(f"{where}: `{leaf_name}` must be a floating-point array, got dtype {dt}")
    shape = tuple(np.shape(leaf))
    if shape != tuple(spec.shape):
        raise ValueError(
            f"{where}: `{leaf_name}` must have shape {shape_str(spec.shape)} ({why}), "
            f"got {shape_str(shape)}{hint}"
        )


def _check_tree(cell, params, layout, where: str, name: str, input_size: int | None):
    """The structure of ``params`` against ``layout``, and with ``input_size`` every leaf's
    shape and floating dtype: for params that are not a dict of arrays."""
    want, got = jax.tree.structure(layout), jax.tree.structure(params)
    if want != got:
        raise ValueError(
            f"{where}: `{name}` must have the structure {cell.name}.init makes, {want}, got {got}"
        )
    if input_size is not None:
        leaves = jax.tree.leaves(params)
        names = _leaf_names(layout, name)
        why = _made_by(cell, input_size)
        for leaf, spec, leaf_name in zip(leaves, jax.tree.leaves(layout), names, strict=True):
            _check_param_leaf(leaf, spec, where, leaf_name, why)
    return input_size


# ---- carries ------------------------------------------------------------------------


def _leaf_names(tree: Any, name: str) -> list[str]:
    """``carry.h``, ``carry.c`` for NamedTuples; ``carry[0]``... otherwise."""
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    out = []
    for path, _ in paths:
        s = name
        for p in path:
            if isinstance(p, jax.tree_util.GetAttrKey):
                s += f".{p.name}"
            elif isinstance(p, jax.tree_util.SequenceKey):
                s += f"[{p.idx}]"
            elif isinstance(p, jax.tree_util.DictKey):
                s += f"[{p.key!r}]"
            else:
                s += str(p)
        out.append(s)
    return out


def type_name(tree: Any) -> str:
    """``LSTMState(h, c)`` for a NamedTuple (its fields), else the type's name.

    Examples:
      >>> import jax.numpy as jnp, jrnn
      >>> type_name(jrnn.RNNState(jnp.zeros(2))), type_name((1, 2))
      ('RNNState(h)', 'tuple')
    """
    t = type(tree)
    if hasattr(t, "_fields"):
        return f"{t.__name__}({', '.join(t._fields)})"
    return t.__name__


def check_carry(
    carry: Carry,
    template: Carry,
    where: str,
    name: str = "carry",
    owner: str | None = None,
    batch_shape: tuple[int, ...] | None = None,
) -> Carry:
    """Checks ``carry`` against the structure and shapes of ``template`` and returns it
    with array leaves.

    ``template`` is a carry of the right shapes (e.g. ``cell.initial_carry(params,
    batch_shape)``, or its ``jax.eval_shape``).  Shapes must match exactly: a carry with a
    different batch shape is an error, never broadcast.  Dtypes are not cast here.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.lstm(4)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> template = cell.initial_carry(p, (2,))
      >>> check_carry(jrnn.RNNState(jnp.zeros((2, 4))), template, "demo", owner=cell.name)
      Traceback (most recent call last):
      ...
      TypeError: demo: `carry` must be an LSTMState(h, c) (the carry of lstm(hidden_size=4, peephole=False, forget_bias=1.0, proj_size=None, layer_norm=False, gate_fn=sigmoid, activation=tanh, dtype=None, param_dtype=float32)), got RNNState(h)
    """  # noqa: E501
    t_leaves, t_def = jax.tree.flatten(template)
    of = f" (the carry of {owner})" if owner else ""
    if type(carry) is not type(template) and hasattr(type(template), "_fields"):
        raise TypeError(
            f"{where}: `{name}` must be an {type_name(template)}{of}, got {type_name(carry)}"
        )
    try:
        leaves = t_def.flatten_up_to(carry)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"{where}: `{name}` must have the structure {t_def}{of}, "
            f"got {jax.tree.structure(carry)}"
        ) from e
    out = []
    for i, (leaf, t) in enumerate(zip(leaves, t_leaves, strict=True)):
        dt = _dtype_of(leaf)
        floating = jnp.issubdtype(t.dtype, jnp.floating)
        if not (jnp.issubdtype(dt, jnp.floating) == floating and np.shape(leaf) == t.shape):
            leaf_name = _leaf_names(template, name)[i]  # only on the way to an error
            if floating:
                leaf = check_float_input(leaf_name, leaf, where)
            elif jnp.issubdtype(dt, jnp.floating):
                raise TypeError(f"{where}: `{leaf_name}` must have dtype {t.dtype}, got {dt}")
            bs = f"batch_shape={tuple(batch_shape)}, " if batch_shape is not None else ""
            raise ValueError(
                f"{where}: `{leaf_name}` must have shape {shape_str(t.shape)} "
                f"([*batch, features]: {bs}features={t.shape[-1] if t.shape else None}), "
                f"got {shape_str(np.shape(leaf))}"
            )
        out.append(leaf if isinstance(leaf, jax.Array) else jnp.asarray(leaf))
    return jax.tree.unflatten(t_def, out)


def concrete(*dims: Any) -> bool:
    """Whether every dimension is a number, not a symbolic dimension of ``jax.export``.

    Examples:
      >>> from jax import export
      >>> concrete(4, 7), concrete(*export.symbolic_shape("b, 7"))
      (True, False)
    """
    return not any(jax.export.is_symbolic_dim(d) for d in dims)


def check_batch_shape(batch_shape: Any, where: str, name: str = "batch_shape") -> tuple[int, ...]:
    """Returns ``batch_shape`` as a tuple of ints ``>= 0`` (symbolic dimensions of
    ``jax.export`` pass as they are); ``TypeError``/``ValueError`` naming it otherwise.

    Examples:
      >>> check_batch_shape([2, 3], "lstm.initial_carry")
      (2, 3)
      >>> check_batch_shape((1.5, 4), "lstm.initial_carry")
      Traceback (most recent call last):
      ...
      TypeError: lstm.initial_carry: `batch_shape` must be a tuple of non-negative ints, got (1.5, 4)
    """  # noqa: E501
    message = f"{where}: `{name}` must be a tuple of non-negative ints, got {batch_shape!r}"
    if isinstance(batch_shape, str | bytes) or not hasattr(batch_shape, "__iter__"):
        raise TypeError(message)
    dims = tuple(batch_shape)
    for d in dims:
        if jax.export.is_symbolic_dim(d):  # a symbolic dimension of jax.export: kept
            continue
        if isinstance(d, bool) or not isinstance(d, int | np.integer):
            raise TypeError(message)
        if d < 0:
            raise ValueError(message)
    return tuple(d if jax.export.is_symbolic_dim(d) else int(d) for d in dims)


@functools.lru_cache(maxsize=1024)
def _carry_layout(initial_carry: Callable, init: Callable, input_size: int, batch_shape) -> Any:
    params = _init_layout.__wrapped__(init, input_size)
    return jax.eval_shape(lambda p: initial_carry(p, batch_shape), params)


def carry_layout(cell: Cell, input_size: int, batch_shape: tuple[int, ...]) -> Carry:
    """The ``jax.ShapeDtypeStruct`` tree of ``cell``'s carry for ``batch_shape`` (cached).

    Examples:
      >>> import jrnn
      >>> carry_layout(jrnn.lstm(4, proj_size=2), 3, (5,)).c.shape
      (5, 4)
    """
    batch_shape = tuple(d if jax.export.is_symbolic_dim(d) else int(d) for d in batch_shape)
    try:
        if not concrete(*batch_shape):  # jax.export's dimensions belong to one trace
            raise TypeError
        return _carry_layout(cell.initial_carry, cell.init, input_size, batch_shape)
    except TypeError:
        return _carry_layout.__wrapped__(cell.initial_carry, cell.init, input_size, batch_shape)


# ---- lengths ------------------------------------------------------------------------


def check_lengths(
    lengths: Any,
    batch_shape: tuple[int, ...],
    num_steps: int,
    where: str,
    name: str = "lengths",
    *,
    debug: bool = False,
) -> Array:
    """Checks sequence lengths and returns them as int32 ``[*batch]`` in ``[0, T]``.

    The one lengths validator of jrnn.  Shape and dtype are always checked.  Values are
    checked where they are concrete: lengths outside ``[0, T]`` raise ``ValueError``.  Under
    ``jax.jit`` (traced lengths) values cannot be checked, so they are **clamped** to
    ``[0, T]``: a length above ``T`` means the whole padded sequence, a negative one an empty
    sequence.  With ``debug=True`` traced lengths are instead checked by
    ``jax.experimental.checkify``: wrap the jitted function,
    ``err, out = checkify.checkify(jax.jit(f))(...)``, and ``err.throw()`` raises the same
    message (without ``checkify.checkify`` JAX refuses to trace the check).

    Args:
      lengths: int ``[*batch]``.
      batch_shape: the batch shape the lengths must have.
      num_steps: ``T``, the padded length.
      where: the calling function, for the message.
      name: the argument's name, for the message.
      debug: check traced values with ``checkify`` instead of clamping them.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> check_lengths(jnp.array([3, 0]), (2,), 5, "demo").tolist()
      [3, 0]
      >>> jax.jit(lambda n: check_lengths(n, (2,), 5, "demo"))(jnp.array([9, -1])).tolist()
      [5, 0]
      >>> check_lengths(jnp.array([9, -1]), (2,), 5, "demo")
      Traceback (most recent call last):
      ...
      ValueError: demo: `lengths` must lie in [0, T=5], got values in [-1, 9]
    """
    traced = isinstance(lengths, jax.core.Tracer)
    concrete = None if traced else np.asarray(lengths)
    if concrete is not None and concrete.dtype == object:
        raise TypeError(f"{where}: `{name}` must be an integer array, got {lengths!r}")
    lengths = jnp.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"{where}: `{name}` must be an integer array, got dtype {lengths.dtype}")
    if lengths.shape != tuple(batch_shape):
        raise ValueError(
            f"{where}: `{name}` must have the batch shape {shape_str(batch_shape)} of xs, "
            f"got shape {shape_str(lengths.shape)}"
        )
    message = f"{where}: `{name}` must lie in [0, T={num_steps}], got values in "
    if concrete is not None:
        if concrete.size:
            lo, hi = int(concrete.min()), int(concrete.max())
            if lo < 0 or hi > num_steps:
                raise ValueError(message + f"[{lo}, {hi}]")
        return lengths.astype(jnp.int32)
    lengths = lengths.astype(jnp.int32)
    if debug and lengths.size:
        from jax.experimental import checkify

        lo, hi = jnp.min(lengths), jnp.max(lengths)
        checkify.check((lo >= 0) & (hi <= num_steps), message + "[{lo}, {hi}]", lo=lo, hi=hi)
    return jnp.clip(lengths, 0, num_steps)


# ---- resets -------------------------------------------------------------------------


def check_resets(
    resets: Any,
    shape: tuple[int, ...],
    where: str,
    layout: str,
    name: str = "resets",
    *,
    debug: bool = False,
) -> Array:
    """Checks episode-reset flags and returns them as a bool array of ``shape``.

    The one resets validator of jrnn.  ``resets`` is bool, or an integer array of 0/1
    (e.g. an environment's ``done`` flags as ints); floats are refused (cast them with
    ``.astype(bool)``).  The shape must be exactly ``shape`` (never broadcast).  Integer
    values are checked where they are concrete: anything but 0/1 raises ``ValueError``.
    Under ``jax.jit`` (traced integers) values cannot be checked, so a nonzero value counts
    as set; with ``debug=True`` traced integers are instead checked by
    ``jax.experimental.checkify`` (as for [`check_lengths`][jrnn.checks.check_lengths]).

    Args:
      resets: bool or 0/1 int array of shape ``shape``.
      shape: the expected shape, e.g. ``(*batch, T)``.
      where: the calling function, for the message.
      layout: the expected layout in words, e.g. ``"[*batch, T]"``, for the message.
      name: the argument's name, for the message.
      debug: check traced integer values with ``checkify`` instead of reading nonzero as set.

    Examples:
      >>> import jax.numpy as jnp
      >>> check_resets(jnp.array([[0, 1, 0]]), (1, 3), "demo", "[*batch, T]").tolist()
      [[False, True, False]]
      >>> check_resets(jnp.zeros((2, 3), bool), (2, 4), "demo", "[*batch, T]")
      Traceback (most recent call last):
      ...
      ValueError: demo: `resets` must have shape [*batch, T] = [2, 4] (the batch shape and time steps of xs), got shape [2, 3]
      >>> check_resets(jnp.zeros((2, 4)), (2, 4), "demo", "[*batch, T]")
      Traceback (most recent call last):
      ...
      TypeError: demo: `resets` must be a bool array (or integers 0/1), got dtype float32; use resets.astype(bool)
    """  # noqa: E501
    traced = isinstance(resets, jax.core.Tracer)
    concrete = None if traced else np.asarray(resets)
    if concrete is not None and concrete.dtype == object:
        raise TypeError(f"{where}: `{name}` must be a bool array, got {resets!r}")
    resets = jnp.asarray(resets)
    dt = resets.dtype
    if dt != jnp.bool_ and not jnp.issubdtype(dt, jnp.integer):
        raise TypeError(
            f"{where}: `{name}` must be a bool array (or integers 0/1), got dtype {dt}; "
            f"use {name}.astype(bool)"
        )
    if resets.shape != tuple(shape):
        raise ValueError(
            f"{where}: `{name}` must have shape {layout} = {shape_str(shape)} (the batch "
            f"shape and time steps of xs), got shape {shape_str(resets.shape)}"
        )
    if dt == jnp.bool_:
        return resets
    message = f"{where}: `{name}` must hold only 0 and 1 (or be bool), got values in "
    if concrete is not None:
        if concrete.size:
            lo, hi = int(concrete.min()), int(concrete.max())
            if lo < 0 or hi > 1:
                raise ValueError(message + f"[{lo}, {hi}]")
    elif debug and resets.size:
        from jax.experimental import checkify

        lo, hi = jnp.min(resets), jnp.max(resets)
        checkify.check((lo >= 0) & (hi <= 1), message + "[{lo}, {hi}]", lo=lo, hi=hi)
    return resets != 0
