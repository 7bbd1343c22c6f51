"""Cell factories: the Elman RNN, the LSTM (with Graves' peepholes) and the GRU (both forms).

Every factory returns a [`jrnn.Cell`][jrnn.base.Cell] of pure functions.  Parameters use the
row-vector convention ``x @ w`` with fused gates (``w_ih [I, kH]``, ``w_hh [H, kH]``, ``b [kH]``);
the equations below are the lecture's ("Deep Learning: Theory and Practice", Recurrent Neural
Networks) written in that convention, so the lecture's ``U`` is ``w_ih.T`` and ``W`` is
``w_hh.T``.

Initialisation (documented, overridable): input kernels ``lecun_normal`` (variance
``1/input_size``), recurrent kernels orthogonal per ``[H, H]`` gate block, biases zero except
the LSTM forget-gate block, which holds ``forget_bias`` *in the parameters* (nothing is added
invisibly at run time).

``layer_norm=True`` (every factory) makes Ba et al.'s layer-normalised cell: the input and
the recurrent pre-activation of every gate block are normalised separately (per gate, over
its ``H`` units), with learned gains ``ln_ih_scale``/``ln_hh_scale`` (initialised to 1) and
the cell's bias ``b`` as the shift; the LSTM also normalises its cell state before the
output activation (``ln_c_scale``, ``ln_c_bias``).  See
[`block_layer_norm`][jrnn.cells.block_layer_norm].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from jrnn import diagonals
from jrnn.base import (
    Array,
    Cell,
    DType,
    FastPath,
    LSTMState,
    Params,
    PRNGKey,
    RNNState,
    cast_tree,
    compute_dtype,
    describe,
    recur,
)
from jrnn.checks import (
    carry_layout,
    check_batch_shape,
    check_carry,
    check_features,
    check_float_input,
    check_int,
    check_params,
)

Initializer = Callable[..., Array]

ActivationName = Literal["tanh", "relu", "sigmoid", "gelu", "identity", "hard_sigmoid"]
Activation = ActivationName | Callable[[Array], Array]

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "gelu": jax.nn.gelu,
    "identity": lambda x: x,
    "hard_sigmoid": jax.nn.hard_sigmoid,  # relu6(x + 3) / 6
}
"""The element-wise functions ``activation=``/``gate_fn=`` accept by name."""

LN_EPSILON = 1e-5
"""The ``ε`` of layer normalisation's ``sqrt(var + ε)`` (safe in float32)."""


def _activation(
    activation: Activation, where: str = "simple_rnn", arg: str = "activation"
) -> tuple[Callable, str]:
    """``(fn, name)`` for a name in [`ACTIVATIONS`][jrnn.cells.ACTIVATIONS] or an element-wise
    callable."""
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"{where}: unknown `{arg}` {activation!r}; expected one of "
                f"{sorted(ACTIVATIONS)} or a callable"
            )
        return ACTIVATIONS[activation], activation
    if not callable(activation):
        raise ValueError(f"{where}: `{arg}` must be a name or a callable, got {activation!r}")
    for name, fn in ACTIVATIONS.items():
        if fn is activation:
            return fn, name
    name = getattr(activation, "__name__", "custom")
    # a callable is named after a known function only if it is that function
    return activation, f"custom_{name}" if name in ACTIVATIONS else name


def block_layer_norm(a: Array, scale: Array, blocks: int = 1) -> Array:
    r"""Ba et al.'s layer normalisation of each of ``blocks`` gate blocks, times a gain.

    ``a [..., blocks*H]`` is split into ``blocks`` blocks of ``H`` units; each block ``u``
    becomes ``(u - mean(u)) / sqrt(var(u) + ε)`` (``ε =`` [`LN_EPSILON`][jrnn.cells.LN_EPSILON],
    population variance over the block's ``H`` units), then the whole is multiplied by
    ``scale [blocks*H]``.  There is no shift here: the cells add their bias ``b``.  The
    statistics are computed in float32 (or wider) when ``a`` is bfloat16/float16; the result
    has ``a``'s dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> out = block_layer_norm(jnp.array([1.0, 3.0, 10.0, 30.0]), jnp.ones(4), blocks=2)
      >>> [round(float(v), 4) for v in out]
      [-1.0, 1.0, -1.0, 1.0]
    """
    *lead, width = a.shape
    stats_dtype = jnp.float32 if a.dtype.itemsize < 4 else a.dtype
    u = a.reshape(*lead, blocks, width // blocks).astype(stats_dtype)
    u = u - jnp.mean(u, axis=-1, keepdims=True)
    u = u * jax.lax.rsqrt(jnp.mean(jnp.square(u), axis=-1, keepdims=True) + LN_EPSILON)
    return u.astype(a.dtype).reshape(a.shape) * scale


def _block_orthogonal(
    init: Initializer, key: PRNGKey, rows: int, h: int, blocks: int, dtype: DType
) -> Array:
    """``[rows, blocks*h]``: one independently initialised ``[rows, h]`` block per gate."""
    keys = jax.random.split(key, blocks)
    return jnp.concatenate([init(k, (rows, h), dtype) for k in keys], axis=1)


def _init_dtype(param_dtype: DType) -> jnp.dtype:
    """The dtype initialisers run in: ``param_dtype``, or float32 for half precision (the
    orthogonal initialiser's QR has no float16/bfloat16 kernel on CPU); cast afterwards."""
    dt = jnp.dtype(param_dtype)
    if jnp.issubdtype(dt, jnp.floating) and dt.itemsize < 4:
        return jnp.dtype(jnp.float32)
    return dt


def check_flag(name: str, value: Any, where: str) -> bool:
    """``value`` as a Python bool; ``ValueError`` naming ``name`` otherwise.

    Examples:
      >>> check_flag("peephole", 1, "lstm")
      Traceback (most recent call last):
      ...
      ValueError: lstm: `peephole` must be a Python bool (True or False), got 1
    """
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise ValueError(f"{where}: `{name}` must be a Python bool (True or False), got {value!r}")


def make_cell(
    *,
    kind: str,
    config: dict[str, Any],
    hidden_size: int,
    output_size: int,
    make_params: Callable[[PRNGKey, int, DType], Params],
    gates: Callable[[Params, Any, Array, Array], tuple[Any, Array]],
    zero_carry: Callable[[tuple[int, ...], DType], Any],
    dtype: DType | None,
    param_dtype: DType,
    project: Callable[[Params, Array], Array] | None = None,
    recurrent_kernel: Callable[[Params], Array] = lambda params: params["w_hh"],
    diagonal: Callable[[FastPath], Any] | None = None,
) -> Cell:
    """Builds a built-in [`Cell`][jrnn.base.Cell] from its [`FastPath`][jrnn.base.FastPath] pieces
    and adds the checks.

    ``make_params(key, input_size, dtype)`` makes the parameters in ``dtype``; ``init``
    casts them to ``param_dtype``.  ``project`` defaults to ``xs @ w_ih + b``;
    ``diagonal(fast)`` makes the step Jacobian's exact diagonal ([`jrnn.diagonals`][]).

    Examples:
      >>> import jax.numpy as jnp
      >>> cell = make_cell(
      ...     kind="linear", config={"hidden_size": 2}, hidden_size=2, output_size=2,
      ...     make_params=lambda key, i, dt: {"w_ih": jnp.ones((i, 2), dt),
      ...                                     "w_hh": jnp.eye(2, dtype=dt), "b": jnp.zeros(2, dt)},
      ...     gates=lambda p, c, xa, ha: (RNNState(xa + ha), xa + ha),
      ...     zero_carry=lambda bs, dt: RNNState(jnp.zeros(bs + (2,), dt)),
      ...     dtype=None, param_dtype=jnp.float32)
      >>> p = cell.init(None, 3)
      >>> cell.step(p, cell.initial_carry(p), jnp.ones(3))[1].tolist()
      [3.0, 3.0]
    """
    config = {**config, "dtype": dtype, "param_dtype": param_dtype}
    name = describe(kind, config)
    fast = FastPath(_project if project is None else project, recurrent_kernel, gates)
    if diagonal is not None:
        fast = fast._replace(diagonal=diagonal(fast))

    def init(key: PRNGKey, input_size: int) -> Params:
        check_int("input_size", input_size, f"{kind}.init")
        return cast_tree(make_params(key, input_size, _init_dtype(param_dtype)), param_dtype)

    def initial_carry(params: Params, batch_shape: tuple[int, ...] = ()) -> Any:
        batch_shape = check_batch_shape(batch_shape, f"{kind}.initial_carry")
        return zero_carry(batch_shape, compute_dtype(cell, params))

    def step(params: Params, carry: Any, x_t: Array) -> tuple[Any, Array]:
        where = f"{kind}.step"
        input_size = check_params(cell, params, where)
        x_t = check_float_input("x_t", x_t, where)
        layout = "[*batch, input_size] (or [input_size] for one unbatched input)"
        if x_t.ndim == 0:
            raise ValueError(f"{where}: `x_t` must have shape {layout}, got a scalar, shape []")
        check_features("x_t", x_t, input_size, where, layout)
        batch_shape = x_t.shape[:-1]
        carry = check_carry(
            carry, carry_layout(cell, input_size, batch_shape), where, "carry", name, batch_shape
        )
        dt = compute_dtype(cell, params)
        params = cast_tree(params, dt)
        carry = cast_tree(carry, dt)
        return recur(fast, params, carry, fast.project(params, x_t.astype(dt)))

    cell = Cell(
        init=init,
        initial_carry=initial_carry,
        step=step,
        hidden_size=hidden_size,
        output_size=output_size,
        name=name,
        config=tuple(config.items()),
        dtype=dtype,
        param_dtype=param_dtype,
        fast=fast,
    )
    return cell


def _project(params: Params, xs: Array) -> Array:
    """Input part of every gate's pre-activation, ``xs @ w_ih + b``: ``[..., kH]``."""
    return xs @ params["w_ih"] + params["b"]


def _ln_project(blocks: int) -> Callable[[Params, Array], Array]:
    """Input part of a layer-normalised cell: ``LN(xs @ w_ih) * ln_ih_scale + b``, each of
    the ``blocks`` gate blocks normalised on its own."""

    def project(params: Params, xs: Array) -> Array:
        return block_layer_norm(xs @ params["w_ih"], params["ln_ih_scale"], blocks) + params["b"]

    return project


def _ln_params(dt: DType, width: int) -> dict[str, Array]:
    """The gains of the two normalised pre-activations, ``[width]`` ones each."""
    return {"ln_ih_scale": jnp.ones((width,), dt), "ln_hh_scale": jnp.ones((width,), dt)}


# --------------------------------------------------------------------------------------
# Elman RNN


def simple_rnn(
    hidden_size: int,
    activation: Activation = "tanh",
    *,
    layer_norm: bool = False,
    dtype: DType | None = None,
    param_dtype: DType = jnp.float32,
    kernel_init: Initializer = jax.nn.initializers.lecun_normal(),
    recurrent_init: Initializer = jax.nn.initializers.orthogonal(),
    bias_init: Initializer = jax.nn.initializers.zeros,
) -> Cell:
    r"""The Elman recurrence (the lecture's "Recurrent Networks" slide).

    The Elman recurrence in the lecture's notation (column vectors)::

        a(t) = b + W h(t-1) + U x(t)
        h(t) = tanh(a(t))

    jrnn (row vectors, ``U = w_ih.T``, ``W = w_hh.T``)::

        h_t = act(x_t @ w_ih + h_{t-1} @ w_hh + b)
        layer_norm=True (Ba et al.'s layer-normalised RNN):
        h_t = act(LN(x_t @ w_ih) * ln_ih_scale + b + LN(h_{t-1} @ w_hh) * ln_hh_scale)

    ``LN(u) = (u - mean(u)) / sqrt(var(u) + 1e-5)`` over the ``H`` units (see
    [`jrnn.cells.block_layer_norm`][]).

    Args:
      hidden_size: ``H``.
      activation: ``"tanh"`` (the Elman recurrence's), ``"relu"``, ``"sigmoid"``, ``"gelu"``,
        ``"identity"``, ``"hard_sigmoid"`` or any element-wise callable (``jnp.tanh`` and
        ``jax.nn.relu`` work).
      layer_norm: Ba et al.'s layer normalisation of the input and the recurrent
        pre-activation, with gains ``ln_ih_scale [H]``, ``ln_hh_scale [H]`` (init 1).
      dtype: compute dtype (``None``: the parameters' dtype).
      param_dtype: storage dtype of the parameters.
      kernel_init, recurrent_init, bias_init: initialisers for ``w_ih [I, H]``,
        ``w_hh [H, H]`` and ``b [H]``.

    Returns:
      A [`Cell`][jrnn.base.Cell] with params ``{"w_ih": [I, H], "w_hh": [H, H], "b": [H]}`` (plus
      ``"ln_ih_scale": [H], "ln_hh_scale": [H]`` with ``layer_norm``) and carry
      [`RNNState`][jrnn.base.RNNState] ``(h,)``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.simple_rnn(4, activation="relu")
      >>> params = cell.init(jax.random.key(0), 3)
      >>> carry, y = cell.step(params, cell.initial_carry(params, (2,)), jnp.ones((2, 3)))
      >>> y.shape, bool(jnp.all(y >= 0))
      ((2, 4), True)
      >>> ln = jrnn.simple_rnn(4, layer_norm=True)
      >>> sorted(ln.init(jax.random.key(0), 3))
      ['b', 'ln_hh_scale', 'ln_ih_scale', 'w_hh', 'w_ih']
    """
    where = "simple_rnn"
    hidden_size = check_int("hidden_size", hidden_size, where)
    act, act_name = _activation(activation, where, "activation")
    ln = check_flag("layer_norm", layer_norm, where)
    h = hidden_size

    def make_params(key, input_size, dt):
        k1, k2, k3 = jax.random.split(key, 3)
        params = {
            "w_ih": kernel_init(k1, (input_size, h), dt),
            "w_hh": recurrent_init(k2, (h, h), dt),
            "b": bias_init(k3, (h,), dt),
        }
        if ln:
            params.update(_ln_params(dt, h))
        return params

    def gates(params, carry, xa, ha):
        if ln:
            ha = block_layer_norm(ha, params["ln_hh_scale"])
        h_t = act(xa + ha)
        return RNNState(h_t), h_t

    return make_cell(
        kind="simple_rnn",
        config={"hidden_size": h, "activation": act_name, "layer_norm": ln},
        hidden_size=h,
        output_size=h,
        make_params=make_params,
        gates=gates,
        project=_ln_project(1) if ln else None,
        diagonal=None if ln else diagonals.unit_wise,
        zero_carry=lambda bs, dt: RNNState(jnp.zeros(bs + (h,), dt)),
        dtype=dtype,
        param_dtype=param_dtype,
    )


# --------------------------------------------------------------------------------------
# LSTM


def lstm(
    hidden_size: int,
    peephole: bool = False,
    forget_bias: float = 1.0,
    *,
    proj_size: int | None = None,
    layer_norm: bool = False,
    gate_fn: Activation = "sigmoid",
    activation: Activation = "tanh",
    dtype: DType | None = None,
    param_dtype: DType = jnp.float32,
    kernel_init: Initializer = jax.nn.initializers.lecun_normal(),
    recurrent_init: Initializer = jax.nn.initializers.orthogonal(),
    peephole_init: Initializer = jax.nn.initializers.zeros,
    proj_init: Initializer = jax.nn.initializers.lecun_normal(),
) -> Cell:
    r"""Long short-term memory, optionally with Graves' peephole connections.

    Gate order in the fused parameters: ``i, f, g, o`` (``i`` input, ``f`` forget, ``g`` cell
    candidate, ``o`` output); ``·_k = x_t @ w_ih[:, k] + h_{t-1} @ w_hh[:, k] + b[k]``::

        i_t = σ(·_i + p_i * c_{t-1})     Graves: b_ι = f(Σ w_iι x_i + Σ w_hι b_h + Σ w_cι s_c^{t-1})
        f_t = σ(·_f + p_f * c_{t-1})     Graves: b_φ = f(Σ w_iφ x_i + Σ w_hφ b_h + Σ w_cφ s_c^{t-1})
        g_t = tanh(·_g)                  Graves: g(a_c^t)
        c_t = f_t * c_{t-1} + i_t * g_t  Graves: s_c^t = b_φ^t s_c^{t-1} + b_ι^t g(a_c^t)
        o_t = σ(·_o + p_o * c_t)         Graves: b_ω = f(Σ w_iω x_i + Σ w_hω b_h + Σ w_cω s_c^t)
        h_t = o_t * tanh(c_t)            Graves: b_c^t = b_ω^t h(s_c^t)

    ``σ`` is ``gate_fn`` and ``tanh`` (both of ``g_t`` and of ``h_t``) is ``activation``.

    The peephole weights ``p = w_peep [3, H]`` (rows ``i, f, o``; diagonal, as in Graves)
    exist only with ``peephole=True`` (Graves' peephole LSTM); in Graves' sums ``b_h`` is
    ``h_{t-1}``.

    With ``proj_size=P`` (PyTorch's LSTM with projections, Sak et al. 2014) the output is
    projected, ``h_t = (o_t * tanh(c_t)) @ w_proj`` with ``w_proj [H, P]``; ``h`` (and the
    recurrent input) is ``[..., P]`` so ``w_hh`` is ``[P, 4H]``, while ``c`` stays ``[..., H]``.

    With ``layer_norm=True`` (Ba et al.'s layer-normalised LSTM) every gate block ``k`` of
    the input and of the recurrent pre-activation is normalised on its own (per gate, over
    its ``H`` units, ``LN(u) = (u - mean(u)) / sqrt(var(u) + 1e-5)``), and so is the cell
    state before the output activation::

        ·_k = LN(x_t @ w_ih[:, k]) * ln_ih_scale[k] + b[k] + LN(h_{t-1} @ w_hh[:, k]) * ln_hh_scale[k]
        h_t = o_t * tanh(LN(c_t) * ln_c_scale + ln_c_bias)

    (peepholes are added after the normalisation; ``c_t`` itself, carried and seen by the
    output peephole, is not normalised).  The outputs are invariant to rescaling ``w_ih``
    or ``w_hh`` by a positive constant (up to ``ε``).

    Args:
      hidden_size: ``H``.
      peephole: add Graves' peepholes (input and forget gates see ``c_{t-1}``, the output
        gate sees ``c_t``).
      forget_bias: initial value of the forget-gate block of ``b`` (stored in the params).
      proj_size: ``P`` for a projected output (``None``: no projection).
      layer_norm: Ba et al.'s layer normalisation (above).
      gate_fn: the gates' squashing function ``σ`` (``"sigmoid"``, ``"hard_sigmoid"``, any
        name of [`ACTIVATIONS`][jrnn.cells.ACTIVATIONS], or an element-wise callable).
      activation: the candidate's and the output's function (``"tanh"``, ...).
      dtype, param_dtype: compute and storage dtypes.
      kernel_init, recurrent_init, peephole_init, proj_init: initialisers for
        ``w_ih [I, 4H]``, each ``[h, H]`` block of ``w_hh``, ``w_peep [3, H]`` and
        ``w_proj [H, P]``.

    Returns:
      A [`Cell`][jrnn.base.Cell] with params ``{"w_ih": [I, 4H], "w_hh": [H, 4H], "b": [4H]}`` (plus
      ``"w_peep": [3, H]``; with a projection ``w_hh`` is ``[P, 4H]`` plus
      ``"w_proj": [H, P]``; with ``layer_norm`` ``"ln_ih_scale": [4H]``,
      ``"ln_hh_scale": [4H]`` (gate blocks ``i, f, g, o``, init 1), ``"ln_c_scale": [H]``
      (init 1) and ``"ln_c_bias": [H]`` (init 0)) and carry [`LSTMState`][jrnn.base.LSTMState] ``(h,
      c)``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.lstm(4, peephole=True, proj_size=2)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> sorted((k, v.shape) for k, v in params.items())
      [('b', (16,)), ('w_hh', (2, 16)), ('w_ih', (3, 16)), ('w_peep', (3, 4)), ('w_proj', (4, 2))]
      >>> carry, y = cell.step(params, cell.initial_carry(params), jnp.ones(3))  # unbatched
      >>> y.shape, carry.h.shape, carry.c.shape
      ((2,), (2,), (4,))
      >>> ln = jrnn.lstm(4, layer_norm=True, gate_fn="hard_sigmoid")
      >>> p = ln.init(jax.random.key(0), 3)
      >>> sorted((k, v.shape) for k, v in p.items() if k.startswith("ln_"))
      [('ln_c_bias', (4,)), ('ln_c_scale', (4,)), ('ln_hh_scale', (16,)), ('ln_ih_scale', (16,))]
      >>> ln.step(p, ln.initial_carry(p, (2,)), jnp.ones((2, 3)))[1].shape
      (2, 4)
    """  # noqa: E501
    where = "lstm"
    hidden_size = check_int("hidden_size", hidden_size, where)
    peephole = check_flag("peephole", peephole, where)
    if proj_size is not None:
        check_int("proj_size", proj_size, where)
    ln = check_flag("layer_norm", layer_norm, where)
    sigma, gate_name = _activation(gate_fn, where, "gate_fn")
    act, act_name = _activation(activation, where, "activation")
    h = hidden_size
    p_out = h if proj_size is None else proj_size

    def make_params(key, input_size, dt):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        b = jnp.zeros((4 * h,), dt).at[h : 2 * h].set(forget_bias)
        params = {
            "w_ih": kernel_init(k1, (input_size, 4 * h), dt),
            "w_hh": _block_orthogonal(recurrent_init, k2, p_out, h, 4, dt),
            "b": b,
        }
        if peephole:
            params["w_peep"] = peephole_init(k3, (3, h), dt)
        if proj_size is not None:
            params["w_proj"] = proj_init(k4, (h, proj_size), dt)
        if ln:
            params.update(_ln_params(dt, 4 * h))
            params["ln_c_scale"] = jnp.ones((h,), dt)
            params["ln_c_bias"] = jnp.zeros((h,), dt)
        return params

    def gates(params, carry, xa, ha):
        c_tm1 = carry.c
        if ln:
            ha = block_layer_norm(ha, params["ln_hh_scale"], 4)
        a_i, a_f, a_g, a_o = jnp.split(xa + ha, 4, axis=-1)
        if peephole:
            p_i, p_f, p_o = params["w_peep"]
            a_i = a_i + p_i * c_tm1
            a_f = a_f + p_f * c_tm1
        i_t = sigma(a_i)
        f_t = sigma(a_f)
        g_t = act(a_g)
        c_t = f_t * c_tm1 + i_t * g_t
        if peephole:
            a_o = a_o + p_o * c_t
        o_t = sigma(a_o)
        c_out = c_t
        if ln:
            c_out = block_layer_norm(c_t, params["ln_c_scale"]) + params["ln_c_bias"]
        h_t = o_t * act(c_out)
        if proj_size is not None:
            h_t = h_t @ params["w_proj"]
        return LSTMState(h_t, c_t), h_t

    return make_cell(
        kind="lstm",
        config={
            "hidden_size": h,
            "peephole": peephole,
            "forget_bias": forget_bias,
            "proj_size": proj_size,
            "layer_norm": ln,
            "gate_fn": gate_name,
            "activation": act_name,
        },
        hidden_size=h,
        output_size=p_out,
        make_params=make_params,
        gates=gates,
        project=_ln_project(4) if ln else None,
        diagonal=None if ln or proj_size is not None else diagonals.unit_wise,
        zero_carry=lambda bs, dt: LSTMState(jnp.zeros(bs + (p_out,), dt), jnp.zeros(bs + (h,), dt)),
        dtype=dtype,
        param_dtype=param_dtype,
    )


# --------------------------------------------------------------------------------------
# GRU


def gru(
    hidden_size: int,
    reset_after: bool = False,
    *,
    layer_norm: bool = False,
    gate_fn: Activation = "sigmoid",
    activation: Activation = "tanh",
    dtype: DType | None = None,
    param_dtype: DType = jnp.float32,
    kernel_init: Initializer = jax.nn.initializers.lecun_normal(),
    recurrent_init: Initializer = jax.nn.initializers.orthogonal(),
    bias_init: Initializer = jax.nn.initializers.zeros,
) -> Cell:
    r"""Gated recurrent unit, in Cho's GRU form or the cuDNN reset-after form (PyTorch's).

    Gate order in the fused parameters: ``r, z, n``::

        r_t = σ(x_t @ w_ir + h_{t-1} @ w_hr + b_r)      Cho: r_t = σ(W_r·[h_{t-1}, x_t])
        z_t = σ(x_t @ w_iz + h_{t-1} @ w_hz + b_z)      Cho: z_t = σ(W_z·[h_{t-1}, x_t])
        reset_after=False (Cho's GRU form):
        n_t = tanh(x_t @ w_in + (r_t * h_{t-1}) @ w_hn + b_n)  Cho: h̃_t = tanh(W·[r_t*h_{t-1},x_t])
        reset_after=True (the cuDNN reset-after form, PyTorch's):
        n_t = tanh(x_t @ w_in + b_n + r_t * (h_{t-1} @ w_hn + b_hn))
        h_t = (1 - z_t) * h_{t-1} + z_t * n_t           Cho: h_t = (1 - z_t)*h_{t-1} + z_t*h̃_t

    ``σ`` is ``gate_fn`` and ``tanh`` is ``activation``.  ``z`` follows Cho's convention in
    both forms: ``z -> 1`` takes the new candidate.  PyTorch's update gate is ``1 - z``;
    [`jrnn.interop`][] negates that gate's weights and biases.

    With ``layer_norm=True`` (Ba et al.'s layer normalisation applied to the GRU) each gate
    block's input and recurrent products are normalised separately, per gate over its ``H``
    units (``LN`` as in [`jrnn.cells.block_layer_norm`][]; gains ``s = ln_ih_scale``,
    ``u = ln_hh_scale``, blocks ``r, z, n``)::

        r_t = σ(LN(x_t @ w_ir) * s_r + b_r + LN(h_{t-1} @ w_hr) * u_r)     (z_t likewise)
        reset_after=False: n_t = tanh(LN(x_t @ w_in) * s_n + b_n + LN((r_t * h_{t-1}) @ w_hn) * u_n)
        reset_after=True:  n_t = tanh(LN(x_t @ w_in) * s_n + b_n + r_t * (LN(h_{t-1} @ w_hn) * u_n + b_hn))

    Args:
      hidden_size: ``H``.
      reset_after: ``False`` for Cho's GRU form, ``True`` for the cuDNN reset-after form with
        the separate recurrent bias ``b_hn [H]``.
      layer_norm: Ba et al.'s layer normalisation (above).
      gate_fn: the gates' squashing function ``σ`` (``"sigmoid"``, ``"hard_sigmoid"``, any
        name of [`ACTIVATIONS`][jrnn.cells.ACTIVATIONS], or an element-wise callable).
      activation: the candidate's function (``"tanh"``, ...).
      dtype, param_dtype: compute and storage dtypes.
      kernel_init, recurrent_init, bias_init: initialisers for ``w_ih [I, 3H]``, each
        ``[H, H]`` block of ``w_hh``, and ``b [3H]`` (and ``b_hn``).

    Returns:
      A [`Cell`][jrnn.base.Cell] with params ``{"w_ih": [I, 3H], "w_hh": [H, 3H], "b": [3H]}`` (plus
      ``"b_hn": [H]`` when ``reset_after``; plus ``"ln_ih_scale": [3H]``,
      ``"ln_hh_scale": [3H]``, gate blocks ``r, z, n``, init 1, with ``layer_norm``) and
      carry [`RNNState`][jrnn.base.RNNState] ``(h,)``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.gru(4, reset_after=True, param_dtype=jnp.bfloat16)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> params["b_hn"].shape, params["w_hh"].dtype
      ((4,), dtype(bfloat16))
      >>> carry, y = cell.step(params, cell.initial_carry(params, (2,)), jnp.ones((2, 3)))
      >>> y.shape, y.dtype
      ((2, 4), dtype(bfloat16))
      >>> ln = jrnn.gru(4, layer_norm=True, activation="relu")
      >>> p = ln.init(jax.random.key(0), 3)
      >>> p["ln_ih_scale"].shape, ln.step(p, ln.initial_carry(p), jnp.ones(3))[1].shape
      ((12,), (4,))
    """  # noqa: E501
    where = "gru"
    hidden_size = check_int("hidden_size", hidden_size, where)
    reset_after = check_flag("reset_after", reset_after, where)
    ln = check_flag("layer_norm", layer_norm, where)
    sigma, gate_name = _activation(gate_fn, where, "gate_fn")
    act, act_name = _activation(activation, where, "activation")
    h = hidden_size

    def make_params(key, input_size, dt):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        params = {
            "w_ih": kernel_init(k1, (input_size, 3 * h), dt),
            "w_hh": _block_orthogonal(recurrent_init, k2, h, h, 3, dt),
            "b": bias_init(k3, (3 * h,), dt),
        }
        if reset_after:
            params["b_hn"] = bias_init(k4, (h,), dt)
        if ln:
            params.update(_ln_params(dt, 3 * h))
        return params

    # reset-after: every recurrent product is h_{t-1} @ w_hh; reset-before: the candidate's
    # product (r * h_{t-1}) @ w_hn depends on r, so it stays inside the element-wise part.
    def recurrent_kernel(params):
        return params["w_hh"] if reset_after else params["w_hh"][:, : 2 * h]

    def gates(params, carry, xa, ha):
        h_tm1 = carry.h
        if ln:
            blocks = 3 if reset_after else 2  # reset-before: r, z here, n below
            ha = block_layer_norm(ha, params["ln_hh_scale"][: blocks * h], blocks)
        xr, xz, xn = jnp.split(xa, 3, axis=-1)
        if reset_after:
            hr, hz, hn = jnp.split(ha, 3, axis=-1)
        else:
            hr, hz = jnp.split(ha, 2, axis=-1)
        r_t = sigma(xr + hr)
        z_t = sigma(xz + hz)
        if reset_after:
            n_t = act(xn + r_t * (hn + params["b_hn"]))
        else:
            rn = (r_t * h_tm1) @ params["w_hh"][:, 2 * h :]
            if ln:
                rn = block_layer_norm(rn, params["ln_hh_scale"][2 * h :])
            n_t = act(xn + rn)
        h_t = (1 - z_t) * h_tm1 + z_t * n_t
        return RNNState(h_t), h_t

    if ln:
        diagonal = None
    elif reset_after:
        diagonal = diagonals.unit_wise
    else:
        diagonal = lambda fast: diagonals.gru_reset_before(sigma, act)
    return make_cell(
        kind="gru",
        config={
            "hidden_size": h,
            "reset_after": reset_after,
            "layer_norm": ln,
            "gate_fn": gate_name,
            "activation": act_name,
        },
        hidden_size=h,
        output_size=h,
        make_params=make_params,
        gates=gates,
        project=_ln_project(3) if ln else None,
        recurrent_kernel=recurrent_kernel,
        diagonal=diagonal,
        zero_carry=lambda bs, dt: RNNState(jnp.zeros(bs + (h,), dt)),
        dtype=dtype,
        param_dtype=param_dtype,
    )
