"""Cell factories: the Elman RNN, the LSTM (with Graves' peepholes) and the GRU (both forms).

Every factory returns a :class:`jrnn.Cell` of pure functions.  Parameters use the row-vector
convention ``x @ w`` with fused gates (``w_ih [I, kH]``, ``w_hh [H, kH]``, ``b [kH]``); the
equations below are the lecture's ("Deep Learning: Theory and Practice", Recurrent Neural
Networks) written in that convention, so the lecture's ``U`` is ``w_ih.T`` and ``W`` is
``w_hh.T``.

Initialisation (documented, overridable): input kernels ``lecun_normal`` (variance
``1/input_size``), recurrent kernels orthogonal per ``[H, H]`` gate block, biases zero except
the LSTM forget-gate block, which holds ``forget_bias`` *in the parameters* (nothing is added
invisibly at run time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jrnn.base import (
    Array,
    Cell,
    DType,
    LSTMState,
    Params,
    PRNGKey,
    RNNState,
    carry_layout,
    cast_tree,
    check_carry,
    check_features,
    check_float_input,
    check_int,
    check_params,
    compute_dtype,
    describe,
    recur,
)

Initializer = Callable[..., Array]

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "gelu": jax.nn.gelu,
    "identity": lambda x: x,
}


def _activation(activation: str | Callable[[Array], Array]) -> tuple[Callable, str]:
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"simple_rnn: unknown `activation` {activation!r}; expected one of "
                f"{sorted(ACTIVATIONS)} or a callable"
            )
        return ACTIVATIONS[activation], activation
    if not callable(activation):
        raise ValueError(
            f"simple_rnn: `activation` must be a name or a callable, got {activation!r}"
        )
    for name, fn in ACTIVATIONS.items():
        if fn is activation:
            return fn, name
    return activation, getattr(activation, "__name__", "custom")


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


def _make_cell(
    *,
    kind: str,
    config: dict[str, Any],
    hidden_size: int,
    output_size: int,
    make_params: Callable[[PRNGKey, int, DType], Params],
    gates: Callable[[Params, Any, Array, Array], tuple[Any, Array]],
    recurrent_kernel: Callable[[Params], Array] = lambda params: params["w_hh"],
    gate_params: tuple[str, ...] = (),
    zero_carry: Callable[[tuple[int, ...], DType], Any],
    dtype: DType | None,
    param_dtype: DType,
) -> Cell:
    """Builds a :class:`Cell` from a cell's element-wise ``gates`` and adds the checks.

    ``make_params(key, input_size, dtype)`` makes the parameters in ``dtype``; ``init``
    casts them to ``param_dtype``.
    """
    config = {**config, "dtype": dtype, "param_dtype": param_dtype}
    name = describe(kind, config)

    def init(key: PRNGKey, input_size: int) -> Params:
        check_int("input_size", input_size, f"{kind}.init")
        return cast_tree(make_params(key, input_size, _init_dtype(param_dtype)), param_dtype)

    def initial_carry(params: Params, batch_shape: tuple[int, ...] = ()) -> Any:
        return zero_carry(tuple(batch_shape), compute_dtype(cell, params))

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
        return recur(cell, params, carry, _project(params, x_t.astype(dt)))

    cell = Cell(
        init=init,
        initial_carry=initial_carry,
        step=step,
        project=_project,
        recurrent_kernel=recurrent_kernel,
        gates=gates,
        gate_params=gate_params,
        hidden_size=hidden_size,
        output_size=output_size,
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
        config=tuple(config.items()),
    )
    return cell


def _project(params: Params, xs: Array) -> Array:
    """Input part of every gate's pre-activation, ``xs @ w_ih + b``: ``[..., kH]``."""
    return xs @ params["w_ih"] + params["b"]


# --------------------------------------------------------------------------------------
# Elman RNN


def simple_rnn(
    hidden_size: int,
    activation: str | Callable[[Array], Array] = "tanh",
    *,
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

    Args:
      hidden_size: ``H``.
      activation: ``"tanh"`` (the Elman recurrence's), ``"relu"``, ``"sigmoid"``, ``"gelu"``,
        ``"identity"`` or any element-wise callable (``jnp.tanh`` and ``jax.nn.relu`` work).
      dtype: compute dtype (``None``: the parameters' dtype).
      param_dtype: storage dtype of the parameters.
      kernel_init, recurrent_init, bias_init: initialisers for ``w_ih [I, H]``,
        ``w_hh [H, H]`` and ``b [H]``.

    Returns:
      A :class:`Cell` with params ``{"w_ih": [I, H], "w_hh": [H, H], "b": [H]}`` and carry
      :class:`RNNState` ``(h,)``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.simple_rnn(4, activation="relu")
      >>> params = cell.init(jax.random.key(0), 3)
      >>> carry, y = cell.step(params, cell.initial_carry(params, (2,)), jnp.ones((2, 3)))
      >>> y.shape, bool(jnp.all(y >= 0))
      ((2, 4), True)
    """
    where = "simple_rnn"
    hidden_size = check_int("hidden_size", hidden_size, where)
    act, act_name = _activation(activation)
    h = hidden_size

    def make_params(key, input_size, dt):
        k1, k2, k3 = jax.random.split(key, 3)
        return {
            "w_ih": kernel_init(k1, (input_size, h), dt),
            "w_hh": recurrent_init(k2, (h, h), dt),
            "b": bias_init(k3, (h,), dt),
        }

    def gates(params, carry, xa, ha):
        h_t = act(xa + ha)
        return RNNState(h_t), h_t

    return _make_cell(
        kind="simple_rnn",
        config={"hidden_size": h, "activation": act_name},
        hidden_size=h,
        output_size=h,
        make_params=make_params,
        gates=gates,
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

    The peephole weights ``p = w_peep [3, H]`` (rows ``i, f, o``; diagonal, as in Graves)
    exist only with ``peephole=True`` (Graves' peephole LSTM); in Graves' sums ``b_h`` is
    ``h_{t-1}``.

    With ``proj_size=P`` (PyTorch's LSTM with projections, Sak et al. 2014) the output is
    projected, ``h_t = (o_t * tanh(c_t)) @ w_proj`` with ``w_proj [H, P]``; ``h`` (and the
    recurrent input) is ``[..., P]`` so ``w_hh`` is ``[P, 4H]``, while ``c`` stays ``[..., H]``.

    Args:
      hidden_size: ``H``.
      peephole: add Graves' peepholes (input and forget gates see ``c_{t-1}``, the output
        gate sees ``c_t``).
      forget_bias: initial value of the forget-gate block of ``b`` (stored in the params).
      dtype, param_dtype: compute and storage dtypes.
      proj_size: ``P`` for a projected output (``None``: no projection).
      kernel_init, recurrent_init, peephole_init, proj_init: initialisers for
        ``w_ih [I, 4H]``, each ``[h, H]`` block of ``w_hh``, ``w_peep [3, H]`` and
        ``w_proj [H, P]``.

    Returns:
      A :class:`Cell` with params ``{"w_ih": [I, 4H], "w_hh": [H, 4H], "b": [4H]}`` (plus
      ``"w_peep": [3, H]``; with a projection ``w_hh`` is ``[P, 4H]`` plus
      ``"w_proj": [H, P]``) and carry :class:`LSTMState` ``(h, c)``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.lstm(4, peephole=True, proj_size=2)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> sorted((k, v.shape) for k, v in params.items())
      [('b', (16,)), ('w_hh', (2, 16)), ('w_ih', (3, 16)), ('w_peep', (3, 4)), ('w_proj', (4, 2))]
      >>> carry, y = cell.step(params, cell.initial_carry(params), jnp.ones(3))  # unbatched
      >>> y.shape, carry.h.shape, carry.c.shape
      ((2,), (2,), (4,))
    """
    where = "lstm"
    hidden_size = check_int("hidden_size", hidden_size, where)
    if proj_size is not None:
        check_int("proj_size", proj_size, where)
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
        return params

    def gates(params, carry, xa, ha):
        c_tm1 = carry.c
        a_i, a_f, a_g, a_o = jnp.split(xa + ha, 4, axis=-1)
        if peephole:
            p_i, p_f, p_o = params["w_peep"]
            a_i = a_i + p_i * c_tm1
            a_f = a_f + p_f * c_tm1
        i_t = jax.nn.sigmoid(a_i)
        f_t = jax.nn.sigmoid(a_f)
        g_t = jnp.tanh(a_g)
        c_t = f_t * c_tm1 + i_t * g_t
        if peephole:
            a_o = a_o + p_o * c_t
        o_t = jax.nn.sigmoid(a_o)
        h_t = o_t * jnp.tanh(c_t)
        if proj_size is not None:
            h_t = h_t @ params["w_proj"]
        return LSTMState(h_t, c_t), h_t

    return _make_cell(
        kind="lstm",
        config={
            "hidden_size": h,
            "peephole": peephole,
            "forget_bias": forget_bias,
            "proj_size": proj_size,
        },
        hidden_size=h,
        output_size=p_out,
        make_params=make_params,
        gates=gates,
        gate_params=(("w_peep",) if peephole else ()) + (("w_proj",) if proj_size else ()),
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

    ``z`` follows Cho's convention in both forms: ``z -> 1`` takes the new candidate.
    PyTorch's update gate is ``1 - z``; :mod:`jrnn.interop` negates that gate's weights and
    biases.

    Args:
      hidden_size: ``H``.
      reset_after: ``False`` for Cho's GRU form, ``True`` for the cuDNN reset-after form with
        the separate recurrent bias ``b_hn [H]``.
      dtype, param_dtype: compute and storage dtypes.
      kernel_init, recurrent_init, bias_init: initialisers for ``w_ih [I, 3H]``, each
        ``[H, H]`` block of ``w_hh``, and ``b [3H]`` (and ``b_hn``).

    Returns:
      A :class:`Cell` with params ``{"w_ih": [I, 3H], "w_hh": [H, 3H], "b": [3H]}`` (plus
      ``"b_hn": [H]`` when ``reset_after``) and carry :class:`RNNState` ``(h,)``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.gru(4, reset_after=True, param_dtype=jnp.bfloat16)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> params["b_hn"].shape, params["w_hh"].dtype
      ((4,), dtype(bfloat16))
      >>> carry, y = cell.step(params, cell.initial_carry(params, (2,)), jnp.ones((2, 3)))
      >>> y.shape, y.dtype
      ((2, 4), dtype(bfloat16))
    """
    where = "gru"
    hidden_size = check_int("hidden_size", hidden_size, where)
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
        return params

    # reset-after: every recurrent product is h_{t-1} @ w_hh; reset-before: the candidate's
    # product (r * h_{t-1}) @ w_hn depends on r, so it stays inside the element-wise part.
    def recurrent_kernel(params):
        return params["w_hh"] if reset_after else params["w_hh"][:, : 2 * h]

    def gates(params, carry, xa, ha):
        h_tm1 = carry.h
        xr, xz, xn = jnp.split(xa, 3, axis=-1)
        if reset_after:
            hr, hz, hn = jnp.split(ha, 3, axis=-1)
        else:
            hr, hz = jnp.split(ha, 2, axis=-1)
        r_t = jax.nn.sigmoid(xr + hr)
        z_t = jax.nn.sigmoid(xz + hz)
        if reset_after:
            n_t = jnp.tanh(xn + r_t * (hn + params["b_hn"]))
        else:
            n_t = jnp.tanh(xn + (r_t * h_tm1) @ params["w_hh"][:, 2 * h :])
        h_t = (1 - z_t) * h_tm1 + z_t * n_t
        return RNNState(h_t), h_t

    return _make_cell(
        kind="gru",
        config={"hidden_size": h, "reset_after": reset_after},
        hidden_size=h,
        output_size=h,
        make_params=make_params,
        gates=gates,
        recurrent_kernel=recurrent_kernel,
        gate_params=("b_hn",) if reset_after else ("w_hh",),
        zero_carry=lambda bs, dt: RNNState(jnp.zeros(bs + (h,), dt)),
        dtype=dtype,
        param_dtype=param_dtype,
    )
