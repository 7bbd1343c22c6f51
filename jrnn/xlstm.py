r"""xLSTM's mLSTM and sLSTM (Beck et al., 2024), on the open cell contract.

[`mlstm`][jrnn.xlstm.mlstm] is a [`jrnn.custom_cell`][jrnn.custom.custom_cell] of three
functions: a matrix memory per head with exponential gating and the authors' log-space
stabiliser.  [`slstm`][jrnn.xlstm.slstm] is the scalar-memory cell with exponential
gating, the same stabiliser per unit and block-diagonal (per head) recurrent weights; it
also gives the fast path (the input projection hoisted out of the scan).  Their parameters
convert from the authors' PyTorch ``xlstm`` package (``xlstm.blocks.mlstm.cell.mLSTMCell``,
``xlstm.blocks.slstm.cell.sLSTMCell``) with [`from_xlstm`][jrnn.xlstm.from_xlstm]; their
states convert with [`carry_from_xlstm`][jrnn.xlstm.carry_from_xlstm].
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn.base import Array, Cell, DType, FastPath, Params, describe, exportable
from jrnn.checks import check_int
from jrnn.custom import custom_cell
from jrnn.linear_scan import scan_stabilised

__all__ = ["MLSTMState", "SLSTMState", "carry_from_xlstm", "from_xlstm", "mlstm", "slstm"]


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

    def inputs(params: Params, x: Array) -> tuple[Array, ...]:
        """``q, k, v [..., NH, DH]`` (``k`` scaled), ``ĩ``, ``log σ(f̃) [..., NH]`` of inputs
        ``x [..., I]`` of any leading shape (one step, or all steps at once)."""
        q, k, v = x @ params["w_q"], x @ params["w_k"], x @ params["w_v"]
        qkv = jnp.concatenate([q, k, v], axis=-1)
        i_pre = qkv @ params["w_i"] + params["b_i"]
        log_f = jax.nn.log_sigmoid(qkv @ params["w_f"] + params["b_f"])
        heads_of = lambda a: a.reshape(*a.shape[:-1], heads, dh)
        return heads_of(q), heads_of(k) / math.sqrt(dh), heads_of(v), i_pre, log_f

    def output(params: Params, q: Array, c: Array, n: Array, m: Array) -> Array:
        """``y`` from ``q`` and the new state (any leading shape): the step's and the
        parallel form's, the same code."""
        num = jnp.einsum("...d,...de->...e", q, c)
        den = jnp.maximum(jnp.abs(jnp.sum(q * n, axis=-1)), jnp.exp(-m)) + eps
        h_tilde = num / den[..., None]
        mean = jnp.mean(h_tilde, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(h_tilde - mean), axis=-1, keepdims=True)
        normed = (h_tilde - mean) * jax.lax.rsqrt(var + norm_eps)
        return normed.reshape(*normed.shape[:-2], h) * (1 + params["w_norm"])

    def step(params: Params, carry: MLSTMState, x_t: Array) -> tuple[MLSTMState, Array]:
        q, k, v, i_pre, log_f = inputs(params, x_t)
        m = jnp.maximum(log_f + carry.m, i_pre)
        f_t = jnp.exp(log_f + carry.m - m)
        i_t = jnp.exp(i_pre - m)
        c = f_t[..., None, None] * carry.C + i_t[..., None, None] * (
            k[..., :, None] * v[..., None, :]
        )
        n = f_t[..., None] * carry.n + i_t[..., None] * k
        return MLSTMState(c, n, m), output(params, q, c, n, m)

    def parallel(
        params: Params, xs: Array, carry: MLSTMState, mask: Array | None, resets: Array | None
    ) -> tuple[MLSTMState, Array]:
        """The whole sequence ``xs [T, *batch, I]`` at once (``Cell.parallel``): one
        associative scan of the gated recurrence of ``C`` and ``n`` at the scale of the
        stabiliser ``m`` (a max-plus recurrence, exact up to the rounding of its
        additions), then the step's own output code."""
        q, k, v, i_pre, log_f = inputs(params, xs)
        kv = k[..., :, None] * v[..., None, :]
        m, (c, n) = scan_stabilised(
            log_f, i_pre, (kv, k), carry.m, (carry.C, carry.n), mask, resets
        )
        return MLSTMState(c, n, m), output(params, q, c, n, m)

    return custom_cell(
        init,
        step,
        initial_carry=initial_carry,
        hidden_size=h,
        name=describe(where, config),
        parallel=parallel,
        dtype=dtype,
        config=tuple(config.items()),
    )


@exportable
class SLSTMState(NamedTuple):
    """Carry of [`slstm`][jrnn.xlstm.slstm], four ``[*batch, H]`` arrays: the hidden state
    ``h`` (the output, which the recurrent weights read), the cell ``c``, the normaliser
    ``n`` and the stabiliser ``m`` (the log of the scale ``c`` and ``n`` are stored at).
    The authors' state ``[4, B, H]`` stacks the same four in this order."""

    h: Array
    c: Array
    n: Array
    m: Array


def _slstm_forget_bias(head_dim: int) -> Array:
    """The authors' ``"powerlaw_blockdependent"`` forget-gate bias of one head (block 0 of
    1): ``5 − 12 (j / (DH − 1))^0.3`` for units ``j = 0 .. DH−1``, from 5 down to −7 (the
    authors' formula divides by zero for ``DH = 1``; here that head gets ``5``).

    Examples:
      >>> [round(float(v), 4) for v in _slstm_forget_bias(4)]
      [5.0, -3.6307, -5.6256, -7.0]
    """
    j = jnp.arange(head_dim, dtype=jnp.float32)
    ratio = j / max(head_dim - 1, 1)
    return -(-5.0 + 12.0 * ratio**0.3)


def _block_diagonal(w_h: Array) -> Array:
    """The recurrent weights ``[NH, DH, 4·DH]`` (per head, columns gate-major) as one
    block-diagonal ``[H, 4H]`` matrix whose columns are the fused gates ``[i | f | z | o]``
    (each ``[head 0 | head 1 | ...]``): ``h @ _block_diagonal(w_h)`` is the per-head
    product, exactly (the other blocks are zeros)."""
    heads, dh, _ = w_h.shape
    w4 = w_h.reshape(heads, dh, 4, dh)  # [head, in, gate, out]
    if heads == 1:
        return w4.reshape(dh, 4 * dh)
    eye = jnp.eye(heads, dtype=w_h.dtype)
    return jnp.einsum("kigj,kl->kiglj", w4, eye).reshape(heads * dh, 4 * heads * dh)


def _slstm_pointwise(raw: Array, carry: SLSTMState) -> SLSTMState:
    """The authors' ``slstm_forward_pointwise`` (vanilla backend) on the pre-activations
    ``raw [*batch, 4H]`` (gates ``i, f, z, o``), per sequence."""
    i_raw, f_raw, z_raw, o_raw = jnp.split(raw, 4, axis=-1)
    log_f_plus_m = carry.m + jax.nn.log_sigmoid(f_raw)
    fresh = jnp.all(carry.n == 0, axis=-1, keepdims=True)  # the authors' torch.all(n == 0)
    m = jnp.where(fresh, i_raw, jnp.maximum(i_raw, log_f_plus_m))
    # min(exp(a), 1) as exp(min(a, 0)): the same values and derivatives (half at a = 0 in
    # both), but no exp overflow where the fresh state's forget gate is clipped
    i = jnp.exp(jnp.minimum(i_raw - m, 0))
    f = jnp.exp(jnp.minimum(log_f_plus_m - m, 0))
    c = f * carry.c + i * jnp.tanh(z_raw)
    n = f * carry.n + i
    h = jax.nn.sigmoid(o_raw) * c / n
    return SLSTMState(h, c, n, m)


def slstm(
    hidden_size: int,
    *,
    num_heads: int = 1,
    dtype: DType | None = None,
    param_dtype: DType = jnp.float32,
) -> Cell:
    r"""sLSTM: the scalar-memory LSTM of xLSTM (Beck et al., 2024), exponential gating.

    For inputs ``x_t [*batch, I]`` (``[batch, time, I]`` through
    [`jrnn.unroll`][jrnn.unrolling.unroll]), ``NH = num_heads`` heads of ``DH = H / NH``
    units and the state ``h, c, n, m [*batch, H]``::

        [ĩ_t | f̃_t | z̃_t | õ_t] = x_t W_x + h_{t-1} R + b                [*batch, 4H]
        m_t = max(log σ(f̃_t) + m_{t-1}, ĩ_t)        stabiliser (ĩ_t on a fresh state)
        i_t = min(exp(ĩ_t − m_t), 1),  f_t = min(exp(log σ(f̃_t) + m_{t-1} − m_t), 1)
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ tanh(z̃_t)
        n_t = f_t ⊙ n_{t-1} + i_t                    normaliser
        h_t = σ(õ_t) ⊙ c_t / n_t,   y_t = h_t

    ``R`` is block-diagonal: head ``k`` of ``h_{t-1}`` (``DH`` units) feeds only head ``k``
    of each gate, through ``W_h[k] [DH, 4·DH]``.  The input gate is exponential, the
    forget gate sigmoid (in log space), as in the authors' code.  The stabiliser ``m`` makes
    every ``exp`` argument ``<= 0``; ``c``, ``n`` are stored scaled by ``exp(−m)``, so
    ``h_t`` is that of the unstabilised recurrence, and ``n_t >= 1`` after the first step.

    These are the authors' ``sLSTMCell`` equations (``slstm_forward_pointwise`` of its
    vanilla backend), their quirks included: the ``min(·, 1)`` on both gates, and a fresh
    state (``n_{t-1} = 0``, e.g. the zero initial carry or a reset) sets ``m_t = ĩ_t``
    (so ``i_t = 1``, ``n_t = 1``).  The authors test ``n == 0`` over the whole batch at
    once; here it is per sequence (equal for a batch that starts together, and ``vmap``,
    ``lengths`` and ``resets`` keep sequences independent).  The authors' cell takes the
    gate pre-activations ``x_t W_x`` as its input (their ``sLSTMLayer`` computes them with
    four block-diagonal projections, after a causal convolution for ``i`` and ``f``);
    ``W_x`` is part of the jrnn cell so that it takes inputs of any width (see
    [`from_xlstm`][jrnn.xlstm.from_xlstm]).

    Initialisation (the authors' defaults): ``W_h = 0``; the forget-gate bias of every head
    ``5 − 12 (j / (DH − 1))^0.3`` for its units ``j`` (the ``"powerlaw_blockdependent"``
    init of the first block), the other biases zero; ``W_x`` the authors' "small init"
    ``N(0, 2 / (5 I))``.

    Args:
      hidden_size: ``H`` (divisible by ``num_heads``).
      num_heads: ``NH``, the number of diagonal blocks of ``R``.
      dtype, param_dtype: compute and storage dtypes.

    Returns:
      A [`jrnn.Cell`][jrnn.base.Cell] with params ``{"w_x": [I, 4H], "w_h": [NH, DH, 4·DH],
      "b": [4H]}`` (gate order ``i, f, z, o``; in each gate's ``H`` the heads in order; the
      columns of ``w_h[k]`` gate-major), carry [`SLSTMState`][jrnn.xlstm.SLSTMState] ``(h,
      c, n, m)`` and ``fast`` (``x_t W_x + b`` hoisted out of the scan; ``R`` as one
      block-diagonal ``[H, 4H]`` matrix).

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.slstm(8, num_heads=2)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> ys, carry = jrnn.unroll(cell, params, jnp.ones((2, 5, 3)))  # [batch, time, features]
      >>> ys.shape, carry.c.shape, params["w_h"].shape
      ((2, 5, 8), (2, 8), (2, 4, 16))
    """
    where = "slstm"
    h = check_int("hidden_size", hidden_size, where)
    heads = check_int("num_heads", num_heads, where)
    if h % heads:
        raise ValueError(f"{where}: `hidden_size` ({h}) must be divisible by `num_heads` ({heads})")
    dh = h // heads
    pdt = jnp.dtype(param_dtype)
    config = {"hidden_size": h, "num_heads": heads, "dtype": dtype, "param_dtype": param_dtype}

    def init(key: jax.Array, input_size: int) -> Params:
        check_int("input_size", input_size, f"{where}.init")
        std = math.sqrt(2 / (5 * input_size))
        zeros = jnp.zeros((h,), jnp.float32)
        forget = jnp.tile(_slstm_forget_bias(dh), heads)
        return {
            "w_x": (std * jax.random.normal(key, (input_size, 4 * h))).astype(pdt),
            "w_h": jnp.zeros((heads, dh, 4 * dh), pdt),
            "b": jnp.concatenate([zeros, forget, zeros, zeros]).astype(pdt),
        }

    def initial_carry(params: Params, batch_shape: tuple[int, ...] = ()) -> SLSTMState:
        dt = jnp.dtype(dtype) if dtype is not None else params["b"].dtype
        return SLSTMState(*(jnp.zeros((*batch_shape, h), dt) for _ in range(4)))

    def project(params: Params, xs: Array) -> Array:
        """``x W_x + b``, ``[..., 4H]``, for inputs of any leading shape."""
        return xs @ params["w_x"] + params["b"]

    def recurrent_kernel(params: Params) -> Array:
        return _block_diagonal(params["w_h"])

    def gates(params: Params, carry: SLSTMState, xa: Array, ha: Array) -> tuple[SLSTMState, Array]:
        new = _slstm_pointwise(xa + ha, carry)
        return new, new.h

    fast = FastPath(project=project, recurrent_kernel=recurrent_kernel, gates=gates)

    def step(params: Params, carry: SLSTMState, x_t: Array) -> tuple[SLSTMState, Array]:
        return gates(params, carry, project(params, x_t), carry.h @ recurrent_kernel(params))

    return custom_cell(
        init,
        step,
        initial_carry=initial_carry,
        name=describe(where, config),
        fast=fast,
        dtype=dtype,
        config=tuple(config.items()),
    )


def _np(t: Any) -> Any:
    """A torch tensor (or array) as a NumPy array."""
    detach = getattr(t, "detach", None)
    return (detach().cpu().numpy() if detach is not None else t).copy()


_MLSTM_KEYS = ("igate.weight", "igate.bias", "fgate.weight", "fgate.bias", "outnorm.weight")
_SLSTM_KEYS = ("_recurrent_kernel_", "_bias_")


def from_xlstm(module: Any, *, dtype: DType | None = None, w_x: Any = None) -> Params:
    """Parameters of [`mlstm`][jrnn.xlstm.mlstm] or [`slstm`][jrnn.xlstm.slstm] from the
    authors' PyTorch cell: ``xlstm.blocks.mlstm.cell.mLSTMCell`` (``embedding_dim = H``,
    ``num_heads``) or ``xlstm.blocks.slstm.cell.sLSTMCell`` (``hidden_size = H``,
    ``num_heads``; either backend, told apart by the layout of its recurrent kernel).

    The authors' cells take their inputs already projected; the jrnn cells take one input
    and project it.  For an ``mLSTMCell`` (three inputs ``q, k, v``) the converted params
    are for the input ``x_t = [q_t | k_t | v_t]`` (``I = 3H``): ``W_q, W_k, W_v`` select the
    three blocks.  For an ``sLSTMCell`` (whose input is the gate pre-activations ``[i | f |
    z | o]``, ``4H``) ``W_x`` is the identity ``[4H, 4H]``, or ``w_x`` when given: the
    projection in front of the cell, so that the jrnn cell on ``x`` equals the authors'
    cell on ``x @ w_x``.

    Args:
      module: an ``mLSTMCell`` or ``sLSTMCell`` (or its ``state_dict()``).
      dtype: the params' dtype (default: the module's).
      w_x: sLSTM only: the input projection ``[I, 4H]`` (default: the identity).

    Returns:
      The params of ``jrnn.mlstm(H, num_heads=...)`` for input size ``3H``, or of
      ``jrnn.slstm(H, num_heads=...)`` for input size ``4H`` (or ``w_x``'s ``I``).

    Raises:
      ValueError: the weights are neither cell's (names what is missing), or ``w_x`` has
        the wrong shape or is given for an ``mLSTMCell``.

    Examples:
      >>> import numpy as np
      >>> r = np.zeros((2, 4 * 3, 3))  # an sLSTMCell's, vanilla backend: H = 6, 2 heads
      >>> p = from_xlstm({"_recurrent_kernel_": r, "_bias_": np.zeros(24)})
      >>> sorted((k, v.shape) for k, v in p.items())
      [('b', (24,)), ('w_h', (2, 3, 12)), ('w_x', (24, 24))]
    """
    where = "from_xlstm"
    state = module.state_dict() if hasattr(module, "state_dict") else module
    if any(k in state for k in _SLSTM_KEYS):
        return _slstm_from_xlstm(state, dtype, w_x, where)
    missing = [k for k in _MLSTM_KEYS if k not in state]
    if missing:
        raise ValueError(
            f"{where}: expected the weights of an xlstm mLSTMCell ({', '.join(_MLSTM_KEYS)}) "
            f"or sLSTMCell ({', '.join(_SLSTM_KEYS)}), missing {missing}"
        )
    if w_x is not None:
        raise ValueError(f"{where}: `w_x` applies to an sLSTMCell, these are an mLSTMCell's")
    p = {k: jnp.asarray(_np(state[k]), dtype) for k in _MLSTM_KEYS}
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


def _slstm_from_xlstm(state: Any, dtype: DType | None, w_x: Any, where: str) -> Params:
    """[`from_xlstm`][jrnn.xlstm.from_xlstm] for an ``sLSTMCell``'s weights.

    The authors keep the recurrent kernel and the bias in a backend's internal layout; the
    vanilla backend's kernel is ``[NH, 4·DH (gate, out), DH (in)]`` with the bias gate-major
    ``(gate, head, unit)``, the CUDA backend's ``[NH, DH (in), 4·DH (gate, out)]`` with the
    bias head-major ``(head, gate, unit)``."""
    missing = [k for k in _SLSTM_KEYS if k not in state]
    if missing:
        raise ValueError(
            f"{where}: expected the weights of an xlstm sLSTMCell ({', '.join(_SLSTM_KEYS)}), "
            f"missing {missing}"
        )
    r = jnp.asarray(_np(state["_recurrent_kernel_"]), dtype)
    b = jnp.asarray(_np(state["_bias_"]), dtype)
    if r.ndim == 3 and r.shape[1] == 4 * r.shape[2]:  # vanilla: [NH, (gate, out), in]
        heads, dh = r.shape[0], r.shape[2]
        w_h = r.reshape(heads, 4, dh, dh).transpose(0, 3, 1, 2).reshape(heads, dh, 4 * dh)
        bias_ok = b.shape == (4 * heads * dh,)
    elif r.ndim == 3 and r.shape[2] == 4 * r.shape[1]:  # cuda: [NH, in, (gate, out)]
        heads, dh = r.shape[0], r.shape[1]
        w_h = r
        bias_ok = b.shape == (4 * heads * dh,)
        if bias_ok:
            b = b.reshape(heads, 4, dh).transpose(1, 0, 2).reshape(-1)
    else:
        raise ValueError(
            f"{where}: an sLSTMCell's `_recurrent_kernel_` is [NH, 4*DH, DH] (vanilla) or "
            f"[NH, DH, 4*DH] (cuda), got {list(r.shape)}"
        )
    if not bias_ok:
        raise ValueError(
            f"{where}: `_bias_` must have 4*H = {4 * heads * dh} entries, got {list(b.shape)}"
        )
    h = heads * dh
    if w_x is None:
        kernel = jnp.eye(4 * h, dtype=w_h.dtype)
    else:
        kernel = jnp.asarray(_np(w_x), dtype if dtype is not None else w_h.dtype)
        if kernel.ndim != 2 or kernel.shape[1] != 4 * h:
            raise ValueError(
                f"{where}: `w_x` must have shape [input_size, 4*H] = [I, {4 * h}], "
                f"got {list(kernel.shape)}"
            )
    return {"w_x": kernel, "w_h": w_h, "b": b}


def carry_from_xlstm(state: Any, *, dtype: DType | None = None) -> MLSTMState | SLSTMState:
    """The authors' recurrent state as a jrnn carry: an ``mLSTMCell``'s ``(c [B, NH, DH,
    DH], n [B, NH, DH, 1], m [B, NH, 1, 1])`` (``mLSTMCell.step``'s) as an
    [`MLSTMState`][jrnn.xlstm.MLSTMState], an ``sLSTMCell``'s ``[4, B, H]`` (its
    ``forward``'s ``state``: ``h, c, n, m`` stacked) as an
    [`SLSTMState`][jrnn.xlstm.SLSTMState].

    Raises:
      ValueError: ``state`` has neither form.

    Examples:
      >>> import numpy as np
      >>> s = carry_from_xlstm((np.zeros((2, 1, 4, 4)), np.zeros((2, 1, 4, 1)), np.zeros((2, 1, 1, 1))))
      >>> s.C.shape, s.n.shape, s.m.shape
      ((2, 1, 4, 4), (2, 1, 4), (2, 1))
      >>> carry_from_xlstm(np.zeros((4, 2, 8))).h.shape
      (2, 8)
    """  # noqa: E501
    parts = [jnp.asarray(_np(a), dtype) for a in state]
    if len(parts) == 4:
        return SLSTMState(*parts)
    if len(parts) != 3:
        raise ValueError(
            "carry_from_xlstm: expected an mLSTMCell's state (c, n, m) or an sLSTMCell's "
            f"[4, B, H], got {len(parts)} parts"
        )
    c, n, m = parts
    return MLSTMState(c, n[..., 0], m[..., 0, 0])
