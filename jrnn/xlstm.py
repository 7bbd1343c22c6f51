r"""xLSTM's mLSTM (Beck et al., 2024), on the open cell contract.

[`mlstm`][jrnn.xlstm.mlstm] is a [`jrnn.custom_cell`][jrnn.custom.custom_cell] of three
functions: a matrix memory per head with exponential gating and the authors' log-space
stabiliser.  Its parameters convert from the authors' PyTorch ``xlstm`` package
(``xlstm.blocks.mlstm.cell.mLSTMCell``) with [`from_xlstm`][jrnn.xlstm.from_xlstm]; its
state converts with [`carry_from_xlstm`][jrnn.xlstm.carry_from_xlstm].
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn.base import Array, Cell, DType, Params, describe, exportable
from jrnn.checks import check_int
from jrnn.custom import custom_cell

__all__ = ["MLSTMState", "carry_from_xlstm", "from_xlstm", "mlstm"]


@exportable
class MLSTMState(NamedTuple):
    """Carry of [`mlstm`][jrnn.xlstm.mlstm]: per head the matrix memory ``C [*batch, NH,
    DH, DH]`` (rows: key dimensions, columns: value dimensions), the normaliser ``n
    [*batch, NH, DH]`` and the stabiliser ``m [*batch, NH]`` (the log of the scale ``C``
    and ``n`` are stored at)."""

    C: Array
    n: Array
    m: Array


def mlstm(
    hidden_size: int,
    *,
    num_heads: int = 1,
    eps: float = 1e-6,
    norm_eps: float = 1e-5,
    dtype: DType | None = None,
    param_dtype: DType = jnp.float32,
) -> Cell:
    r"""mLSTM: the matrix-memory LSTM of xLSTM (Beck et al., 2024).

    For inputs ``x_t [*batch, I]`` (``[batch, time, I]`` through
    [`jrnn.unroll`][jrnn.unrolling.unroll]), ``NH = num_heads`` heads of ``DH = H / NH``::

        q_t = x_t W_q,  k_t = x_t W_k / √DH,  v_t = x_t W_v       [*batch, NH, DH] each
        ĩ_t = [q_t|k_t|v_t] W_i + b_i,  f̃_t = [q_t|k_t|v_t] W_f + b_f   [*batch, NH]
        m_t = max(log σ(f̃_t) + m_{t-1}, ĩ_t)                      stabiliser
        i_t = exp(ĩ_t − m_t),  f_t = exp(log σ(f̃_t) + m_{t-1} − m_t)
        C_t = f_t C_{t-1} + i_t k_t v_tᵀ                          [*batch, NH, DH, DH]
        n_t = f_t n_{t-1} + i_t k_t                               [*batch, NH, DH]
        h̃_t = q_tᵀ C_t / (max(|q_tᵀ n_t|, exp(−m_t)) + eps)
        y_t = GroupNorm_NH(h̃_t) ⊙ (1 + w_norm)                    [*batch, H]

    (the gates read the unscaled ``k_t``; ``[q|k|v]`` is the concatenation).  These are
    the authors' ``mLSTMCell`` equations (its recurrent step, the stabilised exponential
    gating of the paper's appendix) with the projections ``W_q, W_k, W_v`` that the
    authors' ``mLSTMLayer`` puts in front of the cell made part of it, so that the cell
    takes inputs of any width.  The stabiliser ``m`` makes every ``exp`` argument ``<= 0``;
    ``C``, ``n`` are stored scaled by ``exp(−m)``, so the output is that of the
    unstabilised recurrence.

    Initialisation (the authors'): the forget-gate bias linearly spaced in ``[3, 6]`` over
    the heads and zero gate weights, the input-gate bias ``N(0, 0.1²)``, ``w_norm = 0``;
    ``W_q, W_k, W_v`` the authors' "small init" ``N(0, 2 / (5 I))``.

    Args:
      hidden_size: ``H`` (divisible by ``num_heads``).
      num_heads: ``NH``.
      eps: added to the denominator of ``h̃_t`` (the authors' ``1e-6``).
      norm_eps: the group norm's epsilon (the authors' ``1e-5``).
      dtype, param_dtype: compute and storage dtypes.

    Returns:
      A [`jrnn.Cell`][jrnn.base.Cell] with params ``{"w_q", "w_k", "w_v": [I, H], "w_i",
      "w_f": [3H, NH], "b_i", "b_f": [NH], "w_norm": [H]}`` and carry
      [`MLSTMState`][jrnn.xlstm.MLSTMState] ``(C, n, m)``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.mlstm(8, num_heads=2)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> ys, carry = jrnn.unroll(cell, params, jnp.ones((2, 5, 3)))  # [batch, time, features]
      >>> ys.shape, carry.C.shape, carry.m.shape
      ((2, 5, 8), (2, 2, 4, 4), (2, 2))
    """
    where = "mlstm"
    h = check_int("hidden_size", hidden_size, where)
    heads = check_int("num_heads", num_heads, where)
    if h % heads:
        raise ValueError(f"{where}: `hidden_size` ({h}) must be divisible by `num_heads` ({heads})")
    for arg, value in (("eps", eps), ("norm_eps", norm_eps)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ValueError(f"{where}: `{arg}` must be a float >= 0, got {value!r}")
    dh = h // heads
    pdt = jnp.dtype(param_dtype)
    config = {
        "hidden_size": h,
        "num_heads": heads,
        "eps": eps,
        "norm_eps": norm_eps,
        "dtype": dtype,
        "param_dtype": param_dtype,
    }

    def init(key: jax.Array, input_size: int) -> Params:
        check_int("input_size", input_size, f"{where}.init")
        k_q, k_k, k_v, k_i = jax.random.split(key, 4)
        std = math.sqrt(2 / (5 * input_size))
        normal = lambda k: (std * jax.random.normal(k, (input_size, h))).astype(pdt)
        return {
            "w_q": normal(k_q),
            "w_k": normal(k_k),
            "w_v": normal(k_v),
            "w_i": jnp.zeros((3 * h, heads), pdt),
            "b_i": (0.1 * jax.random.normal(k_i, (heads,))).astype(pdt),
            "w_f": jnp.zeros((3 * h, heads), pdt),
            "b_f": jnp.linspace(3.0, 6.0, heads).astype(pdt),
            "w_norm": jnp.zeros((h,), pdt),
        }

    def initial_carry(params: Params, batch_shape: tuple[int, ...] = ()) -> MLSTMState:
        dt = jnp.dtype(dtype) if dtype is not None else params["w_norm"].dtype
        return MLSTMState(
            jnp.zeros((*batch_shape, heads, dh, dh), dt),
            jnp.zeros((*batch_shape, heads, dh), dt),
            jnp.zeros((*batch_shape, heads), dt),
        )

    def step(params: Params, carry: MLSTMState, x_t: Array) -> tuple[MLSTMState, Array]:
        q, k, v = x_t @ params["w_q"], x_t @ params["w_k"], x_t @ params["w_v"]
        qkv = jnp.concatenate([q, k, v], axis=-1)
        i_pre = qkv @ params["w_i"] + params["b_i"]
        log_f = jax.nn.log_sigmoid(qkv @ params["w_f"] + params["b_f"])
        heads_of = lambda a: a.reshape(*a.shape[:-1], heads, dh)
        q, k, v = heads_of(q), heads_of(k) / math.sqrt(dh), heads_of(v)
        m = jnp.maximum(log_f + carry.m, i_pre)
        f_t = jnp.exp(log_f + carry.m - m)
        i_t = jnp.exp(i_pre - m)
        c = f_t[..., None, None] * carry.C + i_t[..., None, None] * (
            k[..., :, None] * v[..., None, :]
        )
        n = f_t[..., None] * carry.n + i_t[..., None] * k
        num = jnp.einsum("...d,...de->...e", q, c)
        den = jnp.maximum(jnp.abs(jnp.sum(q * n, axis=-1)), jnp.exp(-m)) + eps
        h_tilde = num / den[..., None]
        mean = jnp.mean(h_tilde, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(h_tilde - mean), axis=-1, keepdims=True)
        normed = (h_tilde - mean) * jax.lax.rsqrt(var + norm_eps)
        y = normed.reshape(*normed.shape[:-2], h) * (1 + params["w_norm"])
        return MLSTMState(c, n, m), y

    return custom_cell(
        init,
        step,
        initial_carry=initial_carry,
        hidden_size=h,
        name=describe(where, config),
        dtype=dtype,
        config=tuple(config.items()),
    )


def _np(t: Any) -> Any:
    """A torch tensor (or array) as a NumPy array."""
    detach = getattr(t, "detach", None)
    return (detach().cpu().numpy() if detach is not None else t).copy()


def from_xlstm(module: Any, *, dtype: DType | None = None) -> Params:
    """Parameters of [`mlstm`][jrnn.xlstm.mlstm] from the authors' PyTorch cell
    ``xlstm.blocks.mlstm.cell.mLSTMCell`` (``embedding_dim = H``, ``num_heads``).

    The authors' cell takes ``q, k, v`` as three inputs; the jrnn cell takes one input and
    projects it.  The converted params are for the input ``x_t = [q_t | k_t | v_t]``
    (``I = 3H``): ``W_q, W_k, W_v`` select the three blocks.

    Args:
      module: an ``mLSTMCell`` (or its ``state_dict()``).
      dtype: the params' dtype (default: the module's).

    Returns:
      The params of ``jrnn.mlstm(H, num_heads=...)`` for input size ``3H``.

    Raises:
      ValueError: the weights are not an ``mLSTMCell``'s (names what is missing).
    """
    where = "from_xlstm"
    state = module.state_dict() if hasattr(module, "state_dict") else module
    need = ("igate.weight", "igate.bias", "fgate.weight", "fgate.bias", "outnorm.weight")
    missing = [k for k in need if k not in state]
    if missing:
        raise ValueError(
            f"{where}: expected the weights of an xlstm mLSTMCell ({', '.join(need)}), "
            f"missing {missing}"
        )
    p = {k: jnp.asarray(_np(state[k]), dtype) for k in need}
    h = p["outnorm.weight"].shape[0]
    dt = p["outnorm.weight"].dtype
    eye = jnp.eye(h, dtype=dt)
    zero = jnp.zeros((h, h), dt)
    return {
        "w_q": jnp.concatenate([eye, zero, zero]),
        "w_k": jnp.concatenate([zero, eye, zero]),
        "w_v": jnp.concatenate([zero, zero, eye]),
        "w_i": p["igate.weight"].T,
        "b_i": p["igate.bias"],
        "w_f": p["fgate.weight"].T,
        "b_f": p["fgate.bias"],
        "w_norm": p["outnorm.weight"],
    }


def carry_from_xlstm(state: tuple[Any, Any, Any], *, dtype: DType | None = None) -> MLSTMState:
    """The authors' recurrent state ``(c [B, NH, DH, DH], n [B, NH, DH, 1], m [B, NH, 1,
    1])`` (``mLSTMCell.step``'s) as an [`MLSTMState`][jrnn.xlstm.MLSTMState].

    Examples:
      >>> import numpy as np
      >>> s = carry_from_xlstm((np.zeros((2, 1, 4, 4)), np.zeros((2, 1, 4, 1)), np.zeros((2, 1, 1, 1))))
      >>> s.C.shape, s.n.shape, s.m.shape
      ((2, 1, 4, 4), (2, 1, 4), (2, 1))
    """  # noqa: E501
    c, n, m = (jnp.asarray(_np(a), dtype) for a in state)
    return MLSTMState(c, n[..., 0], m[..., 0, 0])
