"""NumPy float64 reference implementations: forward passes and hand-derived BPTT.

This module is the independent ground truth that the JAX library is tested against.
It imports NumPy only, computes in float64 throughout, and is written to read like
the equations: one Python loop over time, and, for every cell, a backward step that
spells out ``dL/d(pre-activation)`` of each gate.

Conventions (shared with the JAX side)
--------------------------------------
* Row vectors: a pre-activation is ``x_t @ w_ih + h_tm1 @ w_hh + b``.
* Batch first: ``xs`` is ``[B, T, I]`` (exactly one batch axis), ``ys`` is ``[B, T, H]``.
* Parameters are dicts of arrays with fused gates (gate block ``k`` is columns
  ``k*H:(k+1)*H``):

  ========  ==========================================================================
  kind      params
  ========  ==========================================================================
  ``rnn``   ``w_ih [I,H]``, ``w_hh [H,H]``, ``b [H]``
  ``lstm``  ``w_ih [I,4H]``, ``w_hh [H,4H]``, ``b [4H]`` (gates i, f, g, o);
            optional ``w_peep [3,H]`` (rows i, f, o) makes it the Graves peephole LSTM;
            optional ``w_proj [H,P]`` projects the output (PyTorch's ``proj_size``):
            ``h_t = (o_t * tanh(c_t)) @ w_proj`` is ``[B,P]`` and ``w_hh`` is ``[P,4H]``
  ``gru``   ``w_ih [I,3H]``, ``w_hh [H,3H]``, ``b [3H]`` (gates r, z, n);
            optional ``b_hn [H]`` makes it the reset-after (cuDNN / PyTorch) GRU
  LN        any kind, with ``ln_ih_scale [G*H]`` and ``ln_hh_scale [G*H]`` (and, for
            ``lstm``, ``ln_c_scale [H]``, ``ln_c_bias [H]``): Ba et al.'s layer-normalised
            cell (see "Layer normalisation" below)
  ========  ==========================================================================

* Carries: ``h [B,H]`` for ``rnn`` and ``gru``; the tuple ``(h [B,H], c [B,H])`` for
  ``lstm`` (``(h [B,P], c [B,H])`` with ``w_proj``).  Every cell outputs ``y_t = h_t``.
* ``lengths`` (int ``[B]``): sequence ``b`` is ``xs[b, :L_b]``.  Steps ``t >= L_b`` are
  padding: they give ``y = 0`` and leave the carry untouched.  ``reverse=True`` reads
  each sequence from ``L_b - 1`` back to ``0`` and writes ``ys[b, t]`` at the input
  position ``t`` it just read.

Layer normalisation (Ba et al. 2016, "Layer Normalization")
-----------------------------------------------------------
``LN(u) = (u - mean(u)) / sqrt(var(u) + 1e-5)`` over the ``H`` units of one gate block
(population variance).  Each gate block ``k`` of the input product ``x_t @ w_ih`` and of
the recurrent product is normalised on its own and multiplied by its gain block; ``b`` is
the shift::

    a_k = LN(x_t @ w_ih[:, k]) * ln_ih_scale[k] + b[k] + LN(h_tm1 @ w_hh[:, k]) * ln_hh_scale[k]

The lstm's output is ``h_t = o_t * tanh(LN(c_t) * ln_c_scale + ln_c_bias)`` (peepholes
and the projection as without normalisation).  The gru's candidate normalises
``(r_t * h_tm1) @ w_hn`` (reset-before) or ``h_tm1 @ w_hn`` before ``b_hn`` is added and
``r_t`` multiplies it (reset-after).

The Elman network with a softmax output (``elman_forward``, ``elman_loss``,
``elman_bptt``) uses the lecture's column-vector notation literally, for one sequence.

Beyond the cells
----------------
* minGRU, minLSTM and the LRU twice: ``min_forward`` runs the recurrence step by step;
  ``mingru_parallel``, ``minlstm_parallel`` and ``lru_parallel`` are the papers' parallel
  forms in the papers' own parameter layouts (every state summed in closed form, Heinsen's
  log-space scan, powers of ``λ``), and ``min_parallel`` gives them ``min_forward``'s
  contract (lengths, reverse).
* Attention (``attention_scores``, ``masked_softmax``, ``attend``; Bahdanau's additive and
  Luong's dot and general scores with a source mask) with a hand-derived backward
  (``attend_backward``).
* The encoder-decoders of ``jrnn.seq2seq`` (bridges, context input, Luong's attentional
  decoder with input feeding) and ``jrnn.vec2seq``: ``seq2seq_forward``,
  ``vec2seq_forward``, teacher forced, built from ``stack_forward``, ``cell_step`` and
  ``attend``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

Array = np.ndarray
Params = dict[str, Array]
Carry = Array | tuple[Array, Array]

KINDS = ("rnn", "lstm", "gru")
ACTIVATIONS = ("tanh", "relu")

_REQUIRED_KEYS = ("w_ih", "w_hh", "b")
_LN_KEYS = {
    "rnn": ("ln_ih_scale", "ln_hh_scale"),
    "lstm": ("ln_ih_scale", "ln_hh_scale", "ln_c_scale", "ln_c_bias"),
    "gru": ("ln_ih_scale", "ln_hh_scale"),
}
_OPTIONAL_KEYS = {
    "rnn": _LN_KEYS["rnn"],
    "lstm": ("w_peep", "w_proj") + _LN_KEYS["lstm"],
    "gru": ("b_hn",) + _LN_KEYS["gru"],
}
LN_EPSILON = 1e-5
_NUM_GATES = {"rnn": 1, "lstm": 4, "gru": 3}


# --------------------------------------------------------------------------------------
# Elementwise functions
# --------------------------------------------------------------------------------------


def sigmoid(x: ArrayLike) -> Array:
    """Logistic function ``σ(x) = 1 / (1 + exp(-x))``, elementwise, any shape.

    Stable for large ``|x|``: with ``e = exp(-|x|) <= 1``,
    ``σ(x) = 1 / (1 + e)`` for ``x >= 0`` and ``σ(x) = e / (1 + e)`` for ``x < 0``,
    so ``exp`` never overflows.

    Examples:
      >>> sigmoid([-1000.0, 0.0, 1000.0]).tolist()
      [0.0, 0.5, 1.0]
    """
    x = np.asarray(x, np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _activate(a: Array, activation: str) -> Array:
    """``act(a)`` for ``activation`` in ``{"tanh", "relu"}``; same shape as ``a``."""
    if activation == "tanh":
        return np.tanh(a)
    if activation == "relu":
        return np.maximum(a, 0.0)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def _activation_derivative(a: Array, h: Array, activation: str) -> Array:
    """``act'(a)`` given the pre-activation ``a`` and ``h = act(a)``; same shape.

    ``tanh'(a) = 1 - h**2``;  ``relu'(a) = 1[a > 0]`` (0 at the kink ``a = 0``).
    """
    if activation == "tanh":
        return 1.0 - h**2
    if activation == "relu":
        return (a > 0.0).astype(np.float64)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


# --------------------------------------------------------------------------------------
# Argument checking and conversion
# --------------------------------------------------------------------------------------


def _check_kind(kind: str, activation: str) -> None:
    """Raise ``ValueError`` for an unknown cell ``kind`` or ``activation``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def _as_params(kind: str, params: Mapping[str, ArrayLike]) -> Params:
    """Copy ``params`` to a dict of float64 arrays and check keys and shapes.

    Shapes (``G`` = number of gates: 1 rnn, 4 lstm, 3 gru):
    ``w_ih [I, G*H]``, ``w_hh [H, G*H]``, ``b [G*H]``, ``w_peep [3, H]``, ``b_hn [H]``;
    with a projection ``w_proj [H, P]`` (lstm) ``w_hh`` is ``[P, G*H]``.
    """
    allowed = _REQUIRED_KEYS + _OPTIONAL_KEYS[kind]
    missing = [k for k in _REQUIRED_KEYS if k not in params]
    unknown = [k for k in params if k not in allowed]
    if missing or unknown:
        raise ValueError(
            f"params for kind={kind!r}: missing {missing}, unknown {unknown} "
            f"(allowed keys: {allowed})"
        )
    ln_present = [k for k in _LN_KEYS[kind] if k in params]
    if ln_present and len(ln_present) != len(_LN_KEYS[kind]):
        raise ValueError(
            f"params for kind={kind!r}: a layer-normalised cell needs all of "
            f"{_LN_KEYS[kind]}, got only {ln_present}"
        )
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    hidden = p["w_hh"].shape[0]  # size of h: H, or P with a projection
    cell = hidden  # size of the gates (and of the lstm's c): H
    if "w_proj" in p:
        if p["w_proj"].ndim != 2:
            raise ValueError(f"params['w_proj']: expected shape (H, P), got {p['w_proj'].shape}")
        cell, hidden = p["w_proj"].shape
    width = _NUM_GATES[kind] * cell
    expected = {
        "w_hh": (hidden, width),
        "b": (width,),
        "w_peep": (3, cell),
        "b_hn": (cell,),
        "w_proj": (cell, hidden),
        "ln_ih_scale": (width,),
        "ln_hh_scale": (width,),
        "ln_c_scale": (cell,),
        "ln_c_bias": (cell,),
    }
    for key, shape in expected.items():
        if key in p and p[key].shape != shape:
            raise ValueError(f"params[{key!r}]: expected shape {shape}, got {p[key].shape}")
    if p["w_ih"].ndim != 2 or p["w_ih"].shape[1] != width:
        raise ValueError(f"params['w_ih']: expected shape (I, {width}), got {p['w_ih'].shape}")
    return p


def _hidden_size(params: Mapping[str, ArrayLike]) -> int:
    """Size of ``h`` (and of ``y``), read from ``w_hh [H, G*H]``: ``H``, or ``P`` for an
    lstm with ``w_proj [H, P]`` (then ``w_hh`` is ``[P, 4H]``)."""
    return int(np.shape(params["w_hh"])[0])


def _cell_size(params: Mapping[str, ArrayLike]) -> int:
    """``H``, the size of the gates and of the lstm's ``c``: ``w_proj [H, P]`` gives it
    when present, else ``w_hh [H, G*H]``."""
    if "w_proj" in params:
        return int(np.shape(params["w_proj"])[0])
    return _hidden_size(params)


def _zero_carry(kind: str, batch: int, hidden: int, cell: int | None = None) -> Carry:
    """Zero carry: ``h [B,H]`` for rnn/gru, ``(h [B,H], c [B,C])`` for lstm
    (``C = cell``, default ``H``; with a projection ``H`` is ``P``)."""
    if kind == "lstm":
        cell = hidden if cell is None else cell
        return (np.zeros((batch, hidden)), np.zeros((batch, cell)))
    return np.zeros((batch, hidden))


def _as_carry(
    kind: str, carry: Any, batch: int, hidden: int, name: str = "carry", cell: int | None = None
) -> Carry:
    """Convert ``carry`` to float64 (``None`` means zeros) and check it is ``[B, H]``.

    For lstm the carry is any pair ``(h [B,H], c [B,C])`` (e.g. a NamedTuple; ``C = cell``,
    default ``H``); it is returned as a plain tuple.
    """
    if carry is None:
        return _zero_carry(kind, batch, hidden, cell)
    if kind == "lstm":
        if len(carry) != 2:
            raise ValueError(f"{name}: an lstm carry is a pair (h, c), got {len(carry)} items")
        parts = tuple(np.asarray(part, np.float64) for part in carry)
        sizes = (hidden, hidden if cell is None else cell)
    else:
        parts = (np.asarray(carry, np.float64),)
        sizes = (hidden,)
    for part, size in zip(parts, sizes, strict=True):
        if part.shape != (batch, size):
            raise ValueError(f"{name}: expected shape {(batch, size)}, got {part.shape}")
    return parts if kind == "lstm" else parts[0]


def _as_sequence_batch(xs: ArrayLike, name: str = "xs") -> Array:
    """``xs`` as a float64 ``[B, T, F]`` array (exactly one batch axis)."""
    xs = np.asarray(xs, np.float64)
    if xs.ndim != 3:
        raise ValueError(f"{name}: expected rank 3 [batch, time, features], got shape {xs.shape}")
    return xs


def _check_lengths(lengths: ArrayLike | None, batch: int, time: int) -> Array:
    """Lengths as an int ``[B]`` array with ``0 <= L_b <= T``; ``None`` means all ``T``."""
    if lengths is None:
        return np.full((batch,), time, dtype=np.int64)
    lengths = np.asarray(lengths)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths: expected shape {(batch,)}, got {lengths.shape}")
    if not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"lengths: expected an integer array, got dtype {lengths.dtype}")
    if np.any(lengths < 0) or np.any(lengths > time):
        raise ValueError(f"lengths: every entry must lie in [0, {time}], got {lengths}")
    return lengths.astype(np.int64)


# --------------------------------------------------------------------------------------
# Lengths and reverse: the per-sequence reading order, shared by forward and backward
# --------------------------------------------------------------------------------------


def _valid_mask(lengths: Array, time: int) -> Array:
    """Bool ``[B, T]``: ``mask[b, t] = t < L_b`` (position ``t`` is a real step)."""
    return np.arange(time)[None, :] < lengths[:, None]


def _step_order(lengths: Array, time: int, reverse: bool) -> tuple[Array, Array]:
    """Which input position every sequence reads at each loop step.

    Returns ``(pos, valid)``, both ``[T, B]``: at loop step ``s`` sequence ``b`` reads
    ``xs[b, pos[s, b]]`` and writes ``ys[b, pos[s, b]]``; ``valid[s, b] = s < L_b``.

    * forward:  ``pos[s, b] = s``.
    * reverse:  ``pos[s, b] = L_b - 1 - s`` for valid steps, and ``s`` for padded steps,
      so every row of ``pos`` (over ``s``) is a permutation of ``0..T-1`` and the padded
      steps land on the padded positions ``t >= L_b``.
    """
    steps = np.arange(time)[:, None]  # [T, 1]
    valid = steps < lengths[None, :]  # [T, B]
    if reverse:
        pos = np.where(valid, lengths[None, :] - 1 - steps, steps)
    else:
        pos = np.broadcast_to(steps, valid.shape).copy()
    return pos, valid


def _where_carry(valid: Array, new: Carry, old: Carry) -> Carry:
    """Row-wise select on a carry: ``valid [B]`` picks ``new`` rows, else ``old`` rows."""
    v = valid[:, None]
    if isinstance(new, tuple):
        return tuple(np.where(v, n, o) for n, o in zip(new, old, strict=True))
    return np.where(v, new, old)


def _carry_h(carry: Carry) -> Array:
    """The hidden state ``h [B,H]`` of a carry (the first item of an lstm ``(h, c)``)."""
    return carry[0] if isinstance(carry, tuple) else carry


def _add_to_h(dcarry: Carry, dh: Array) -> Carry:
    """``dcarry`` with ``dh [B,H]`` added to its hidden-state part."""
    if isinstance(dcarry, tuple):
        return (dcarry[0] + dh, dcarry[1])
    return dcarry + dh


# --------------------------------------------------------------------------------------
# Cells: one step forward (with a cache) and its hand-derived backward
# --------------------------------------------------------------------------------------


def _rnn_step(p: Params, h_tm1: Array, x_t: Array, activation: str) -> tuple[Array, dict]:
    """Simple (Elman) RNN step, shapes ``x_t [B,I]``, ``h_tm1 [B,H]`` -> ``h_t [B,H]``.

    ``a_t = x_t @ w_ih + h_tm1 @ w_hh + b``,  ``h_t = act(a_t)``
    (the lecture's Elman recurrence ``a = b + W h + U x``, ``h = tanh(a)`` with ``U = w_ih.T``,
    ``W = w_hh.T``).
    """
    a_t = x_t @ p["w_ih"] + h_tm1 @ p["w_hh"] + p["b"]
    h_t = _activate(a_t, activation)
    return h_t, dict(x_t=x_t, h_tm1=h_tm1, a_t=a_t, h_t=h_t)


def _rnn_step_backward(
    p: Params, cache: dict, dh_t: Array, activation: str
) -> tuple[Params, Array, Array]:
    """Backward of ``_rnn_step`` given ``dh_t = dL/dh_t [B,H]``.

    ``da_t = dh_t * act'(a_t)``;
    ``dw_ih = x_tᵀ da_t``, ``dw_hh = h_tm1ᵀ da_t``, ``db = Σ_b da_t``;
    ``dx_t = da_t w_ihᵀ``, ``dh_tm1 = da_t w_hhᵀ``.
    Returns ``(dparams, dx_t [B,I], dh_tm1 [B,H])``.
    """
    da_t = dh_t * _activation_derivative(cache["a_t"], cache["h_t"], activation)
    dparams = {
        "w_ih": cache["x_t"].T @ da_t,
        "w_hh": cache["h_tm1"].T @ da_t,
        "b": da_t.sum(axis=0),
    }
    return dparams, da_t @ p["w_ih"].T, da_t @ p["w_hh"].T


def _lstm_step(
    p: Params, carry: tuple[Array, Array], x_t: Array
) -> tuple[tuple[Array, Array], dict]:
    """LSTM step (Graves peephole form when ``w_peep`` is present, projected output when
    ``w_proj`` is present).

    Shapes ``x_t [B,I]``, ``h_tm1, c_tm1 [B,H]`` (with ``w_proj [H,P]``: ``h_tm1 [B,P]``).
    With ``z = x_t @ w_ih + h_tm1 @ w_hh + b`` split into column blocks
    ``z_i, z_f, z_g, z_o`` and peepholes ``p_i, p_f, p_o`` (rows of ``w_peep``; zero when
    absent)::

        i_t = σ(z_i + p_i * c_tm1)
        f_t = σ(z_f + p_f * c_tm1)
        g_t = tanh(z_g)
        c_t = f_t * c_tm1 + i_t * g_t
        o_t = σ(z_o + p_o * c_t)          # the output gate sees the new cell state
        h_t = o_t * tanh(c_t)
        h_t = (o_t * tanh(c_t)) @ w_proj  # instead, with a projection (PyTorch proj_size)
    """
    h_tm1, c_tm1 = carry
    H = c_tm1.shape[-1]
    peep = p.get("w_peep", np.zeros((3, H)))
    z = x_t @ p["w_ih"] + h_tm1 @ p["w_hh"] + p["b"]
    z_i, z_f, z_g, z_o = (z[:, k * H : (k + 1) * H] for k in range(4))
    i_t = sigmoid(z_i + peep[0] * c_tm1)
    f_t = sigmoid(z_f + peep[1] * c_tm1)
    g_t = np.tanh(z_g)
    c_t = f_t * c_tm1 + i_t * g_t
    o_t = sigmoid(z_o + peep[2] * c_t)
    tanh_c_t = np.tanh(c_t)
    h_t = o_t * tanh_c_t
    m_t = h_t  # the unprojected output
    if "w_proj" in p:
        h_t = m_t @ p["w_proj"]
    cache = dict(
        m_t=m_t,
        x_t=x_t,
        h_tm1=h_tm1,
        c_tm1=c_tm1,
        i_t=i_t,
        f_t=f_t,
        g_t=g_t,
        c_t=c_t,
        o_t=o_t,
        tanh_c_t=tanh_c_t,
        peep=peep,
    )
    return (h_t, c_t), cache


def _lstm_step_backward(
    p: Params, cache: dict, dcarry: tuple[Array, Array]
) -> tuple[Params, Array, tuple[Array, Array]]:
    """Backward of ``_lstm_step`` given ``dcarry = (dL/dh_t, dL/dc_t)``, each ``[B,H]``
    (``dL/dh_t`` is ``[B,P]`` with a projection).

    With a projection ``h_t = m_t @ w_proj`` (``m_t = o_t * tanh(c_t)``) first::

        dw_proj = m_tᵀ dh_t,   dh_t <- dh_t w_projᵀ                       # now dL/dm_t [B,H]

    then, with ``a_k`` the full gate pre-activations (``z_k`` plus peephole term)::

        da_o   = dh_t * tanh(c_t) * o_t (1 - o_t)
        dc     = dc_t + dh_t * o_t * (1 - tanh(c_t)²) + da_o * p_o     # total dL/dc_t
        da_i   = dc * g_t * i_t (1 - i_t)
        da_f   = dc * c_tm1 * f_t (1 - f_t)
        da_g   = dc * i_t * (1 - g_t²)
        dc_tm1 = dc * f_t + da_i * p_i + da_f * p_f
        dp_i = Σ_b da_i c_tm1,  dp_f = Σ_b da_f c_tm1,  dp_o = Σ_b da_o c_t
        dz = [da_i, da_f, da_g, da_o]                                    # [B, 4H]
        dw_ih = x_tᵀ dz,  dw_hh = h_tm1ᵀ dz,  db = Σ_b dz
        dx_t = dz w_ihᵀ,  dh_tm1 = dz w_hhᵀ

    Returns ``(dparams, dx_t [B,I], (dh_tm1, dc_tm1))``.
    """
    dh_t, dc_t = dcarry
    dw_proj = None
    if "w_proj" in p:
        dw_proj = cache["m_t"].T @ dh_t
        dh_t = dh_t @ p["w_proj"].T
    i_t, f_t, g_t, o_t = cache["i_t"], cache["f_t"], cache["g_t"], cache["o_t"]
    c_tm1, c_t, tanh_c_t, peep = cache["c_tm1"], cache["c_t"], cache["tanh_c_t"], cache["peep"]

    da_o = dh_t * tanh_c_t * o_t * (1.0 - o_t)
    dc = dc_t + dh_t * o_t * (1.0 - tanh_c_t**2) + da_o * peep[2]
    da_i = dc * g_t * i_t * (1.0 - i_t)
    da_f = dc * c_tm1 * f_t * (1.0 - f_t)
    da_g = dc * i_t * (1.0 - g_t**2)
    dc_tm1 = dc * f_t + da_i * peep[0] + da_f * peep[1]

    dz = np.concatenate([da_i, da_f, da_g, da_o], axis=-1)
    dparams = {
        "w_ih": cache["x_t"].T @ dz,
        "w_hh": cache["h_tm1"].T @ dz,
        "b": dz.sum(axis=0),
    }
    if "w_peep" in p:
        dparams["w_peep"] = np.stack(
            [(da_i * c_tm1).sum(axis=0), (da_f * c_tm1).sum(axis=0), (da_o * c_t).sum(axis=0)]
        )
    if dw_proj is not None:
        dparams["w_proj"] = dw_proj
    dx_t = dz @ p["w_ih"].T
    dh_tm1 = dz @ p["w_hh"].T
    return dparams, dx_t, (dh_tm1, dc_tm1)


def _gru_step(p: Params, h_tm1: Array, x_t: Array) -> tuple[Array, dict]:
    """Cho's GRU step (the lecture's convention for ``z``); reset-after form with ``b_hn``.

    Shapes ``x_t [B,I]``, ``h_tm1 [B,H]``; ``w_*r, w_*z, w_*n`` are the column blocks::

        r_t = σ(x_t @ w_ir + h_tm1 @ w_hr + b_r)
        z_t = σ(x_t @ w_iz + h_tm1 @ w_hz + b_z)
        n_t = tanh(x_t @ w_in + (r_t * h_tm1) @ w_hn + b_n)              # reset-before (Cho)
        n_t = tanh(x_t @ w_in + b_n + r_t * (h_tm1 @ w_hn + b_hn))       # reset-after
        h_t = (1 - z_t) * h_tm1 + z_t * n_t
    """
    H = h_tm1.shape[-1]
    w_ih, w_hh, b = p["w_ih"], p["w_hh"], p["b"]
    gx = x_t @ w_ih + b  # [B, 3H]: input part (plus bias) of every gate
    gh_rz = h_tm1 @ w_hh[:, : 2 * H]  # [B, 2H]: recurrent part of r and z
    r_t = sigmoid(gx[:, :H] + gh_rz[:, :H])
    z_t = sigmoid(gx[:, H : 2 * H] + gh_rz[:, H:])
    w_hn = w_hh[:, 2 * H :]
    cache = dict(x_t=x_t, h_tm1=h_tm1, r_t=r_t, z_t=z_t)
    if "b_hn" in p:
        hn_t = h_tm1 @ w_hn + p["b_hn"]
        n_t = np.tanh(gx[:, 2 * H :] + r_t * hn_t)
        cache["hn_t"] = hn_t
    else:
        rh_t = r_t * h_tm1
        n_t = np.tanh(gx[:, 2 * H :] + rh_t @ w_hn)
        cache["rh_t"] = rh_t
    h_t = (1.0 - z_t) * h_tm1 + z_t * n_t
    cache["n_t"] = n_t
    return h_t, cache


def _gru_step_backward(p: Params, cache: dict, dh_t: Array) -> tuple[Params, Array, Array]:
    """Backward of ``_gru_step`` given ``dh_t = dL/dh_t [B,H]``.

    With ``a_r, a_z, a_n`` the gate pre-activations::

        da_n = dh_t * z_t * (1 - n_t²)
        da_z = dh_t * (n_t - h_tm1) * z_t (1 - z_t)
        dh_tm1 = dh_t * (1 - z_t)  + (paths through r, z, n below)
      reset-before (s = r_t * h_tm1):
        ds = da_n w_hnᵀ,  dw_hn = sᵀ da_n,  dr = ds * h_tm1,  dh_tm1 += ds * r_t
      reset-after (q = h_tm1 @ w_hn + b_hn):
        dq = da_n * r_t,  dr = da_n * q,  dw_hn = h_tm1ᵀ dq,  db_hn = Σ_b dq,
        dh_tm1 += dq w_hnᵀ
      both:
        da_r = dr * r_t (1 - r_t)
        dw_ih = x_tᵀ [da_r, da_z, da_n],  db = Σ_b [da_r, da_z, da_n],
        dx_t = [da_r, da_z, da_n] w_ihᵀ
        dw_h{r,z} = h_tm1ᵀ [da_r, da_z],  dh_tm1 += [da_r, da_z] w_h{r,z}ᵀ

    Returns ``(dparams, dx_t [B,I], dh_tm1 [B,H])``.
    """
    x_t, h_tm1 = cache["x_t"], cache["h_tm1"]
    r_t, z_t, n_t = cache["r_t"], cache["z_t"], cache["n_t"]
    H = h_tm1.shape[-1]
    w_hh = p["w_hh"]
    w_hrz, w_hn = w_hh[:, : 2 * H], w_hh[:, 2 * H :]

    da_n = dh_t * z_t * (1.0 - n_t**2)
    da_z = dh_t * (n_t - h_tm1) * z_t * (1.0 - z_t)
    dh_tm1 = dh_t * (1.0 - z_t)
    dparams: Params = {}
    if "b_hn" in p:
        dq = da_n * r_t
        dr = da_n * cache["hn_t"]
        dw_hn = h_tm1.T @ dq
        dparams["b_hn"] = dq.sum(axis=0)
        dh_tm1 = dh_tm1 + dq @ w_hn.T
    else:
        ds = da_n @ w_hn.T
        dr = ds * h_tm1
        dw_hn = cache["rh_t"].T @ da_n
        dh_tm1 = dh_tm1 + ds * r_t
    da_r = dr * r_t * (1.0 - r_t)

    da = np.concatenate([da_r, da_z, da_n], axis=-1)  # [B, 3H]
    da_rz = da[:, : 2 * H]
    dparams["w_ih"] = x_t.T @ da
    dparams["b"] = da.sum(axis=0)
    dparams["w_hh"] = np.concatenate([h_tm1.T @ da_rz, dw_hn], axis=-1)
    dx_t = da @ p["w_ih"].T
    dh_tm1 = dh_tm1 + da_rz @ w_hrz.T
    return dparams, dx_t, dh_tm1


# --------------------------------------------------------------------------------------
# Layer-normalised cells (Ba et al. 2016): forward and hand-derived backward
# --------------------------------------------------------------------------------------


def _ln(u: Array, gain: Array, blocks: int) -> tuple[Array, dict]:
    """Per-block layer normalisation times a gain: ``u [B, k*H]`` -> ``[B, k*H]``.

    For every block ``v`` of ``H`` columns: ``v̂ = (v - mean(v)) / σ`` with
    ``σ = sqrt(mean((v - mean(v))²) + ε)``; the output is ``gain * û``.  The cache holds
    ``û`` and ``σ`` (``[B, k, 1]``) for `_ln_backward`.
    """
    B, width = u.shape
    v = u.reshape(B, blocks, width // blocks)
    d = v - v.mean(axis=-1, keepdims=True)
    sigma = np.sqrt((d**2).mean(axis=-1, keepdims=True) + LN_EPSILON)
    u_hat = (d / sigma).reshape(B, width)
    return gain * u_hat, dict(u_hat=u_hat, sigma=sigma, blocks=blocks)


def _ln_backward(dy: Array, gain: Array, cache: dict) -> tuple[Array, Array]:
    """Backward of `_ln` given ``dy = dL/d(gain * û)`` ``[B, k*H]``.

    With ``dû = dy * gain`` per block (``H`` units, means over the block)::

        du = (dû - mean(dû) - û * mean(dû * û)) / σ
        dgain = Σ_b dy * û

    (``∂û_i/∂u_j = (δ_ij - 1/H) / σ - û_i û_j / (H σ)``, exact with ``ε``.)
    Returns ``(du [B, k*H], dgain [k*H])``.
    """
    B, width = dy.shape
    k = cache["blocks"]
    u_hat = cache["u_hat"]
    dgain = (dy * u_hat).sum(axis=0)
    dh = (dy * gain).reshape(B, k, width // k)
    uh = u_hat.reshape(B, k, width // k)
    du = dh - dh.mean(axis=-1, keepdims=True) - uh * (dh * uh).mean(axis=-1, keepdims=True)
    return (du / cache["sigma"]).reshape(B, width), dgain


def _ln_rnn_step(p: Params, h_tm1: Array, x_t: Array, activation: str) -> tuple[Array, dict]:
    """Ba et al.'s layer-normalised Elman step::

    a_t = LN(x_t @ w_ih) * ln_ih_scale + b + LN(h_tm1 @ w_hh) * ln_hh_scale
    h_t = act(a_t)
    """
    nx, lx = _ln(x_t @ p["w_ih"], p["ln_ih_scale"], 1)
    nh, lh = _ln(h_tm1 @ p["w_hh"], p["ln_hh_scale"], 1)
    a_t = nx + p["b"] + nh
    h_t = _activate(a_t, activation)
    return h_t, dict(x_t=x_t, h_tm1=h_tm1, a_t=a_t, h_t=h_t, lx=lx, lh=lh)


def _ln_rnn_step_backward(
    p: Params, cache: dict, dh_t: Array, activation: str
) -> tuple[Params, Array, Array]:
    """Backward of ``_ln_rnn_step``: ``da = dh_t * act'(a_t)``, ``db = Σ_b da``; through
    each normalisation (``_ln_backward``) to ``dax``, ``dah``; then
    ``dw_ih = x_tᵀ dax``, ``dw_hh = h_tm1ᵀ dah``, ``dx_t = dax w_ihᵀ``, ``dh_tm1 = dah w_hhᵀ``.
    """
    da = dh_t * _activation_derivative(cache["a_t"], cache["h_t"], activation)
    dax, dg_ih = _ln_backward(da, p["ln_ih_scale"], cache["lx"])
    dah, dg_hh = _ln_backward(da, p["ln_hh_scale"], cache["lh"])
    dparams = {
        "w_ih": cache["x_t"].T @ dax,
        "w_hh": cache["h_tm1"].T @ dah,
        "b": da.sum(axis=0),
        "ln_ih_scale": dg_ih,
        "ln_hh_scale": dg_hh,
    }
    return dparams, dax @ p["w_ih"].T, dah @ p["w_hh"].T


def _ln_lstm_step(
    p: Params, carry: tuple[Array, Array], x_t: Array, activation: str = "tanh"
) -> tuple[tuple[Array, Array], dict]:
    """Ba et al.'s layer-normalised LSTM step (peepholes and projection as in
    ``_lstm_step``), every gate block normalised on its own::

        z = LN4(x_t @ w_ih) * ln_ih_scale + b + LN4(h_tm1 @ w_hh) * ln_hh_scale
        i_t = σ(z_i + p_i * c_tm1),  f_t = σ(z_f + p_f * c_tm1),  g_t = tanh(z_g)
        c_t = f_t * c_tm1 + i_t * g_t
        o_t = σ(z_o + p_o * c_t)
        h_t = o_t * tanh(LN(c_t) * ln_c_scale + ln_c_bias)      (then @ w_proj, if present)
    """
    h_tm1, c_tm1 = carry
    H = c_tm1.shape[-1]
    peep = p.get("w_peep", np.zeros((3, H)))
    nx, lx = _ln(x_t @ p["w_ih"], p["ln_ih_scale"], 4)
    nh, lh = _ln(h_tm1 @ p["w_hh"], p["ln_hh_scale"], 4)
    z = nx + p["b"] + nh
    z_i, z_f, z_g, z_o = (z[:, k * H : (k + 1) * H] for k in range(4))
    i_t = sigmoid(z_i + peep[0] * c_tm1)
    f_t = sigmoid(z_f + peep[1] * c_tm1)
    g_t = np.tanh(z_g)
    c_t = f_t * c_tm1 + i_t * g_t
    o_t = sigmoid(z_o + peep[2] * c_t)
    nc, lc = _ln(c_t, p["ln_c_scale"], 1)
    tanh_c = np.tanh(nc + p["ln_c_bias"])
    m_t = o_t * tanh_c
    h_t = m_t @ p["w_proj"] if "w_proj" in p else m_t
    cache = dict(
        x_t=x_t, h_tm1=h_tm1, c_tm1=c_tm1, i_t=i_t, f_t=f_t, g_t=g_t, c_t=c_t, o_t=o_t,
        tanh_c=tanh_c, m_t=m_t, peep=peep, lx=lx, lh=lh, lc=lc,
    )  # fmt: skip
    return (h_t, c_t), cache


def _ln_lstm_step_backward(
    p: Params, cache: dict, dcarry: tuple[Array, Array], activation: str = "tanh"
) -> tuple[Params, Array, tuple[Array, Array]]:
    """Backward of ``_ln_lstm_step`` given ``(dL/dh_t, dL/dc_t)``::

    (projection: dw_proj = m_tᵀ dh_t, dh_t <- dh_t w_projᵀ)
    da_o  = dh_t * tanh_c * o_t (1 - o_t)
    dn    = dh_t * o_t * (1 - tanh_c²)                 # dL/d(LN(c_t) * gain + bias)
    dc_ln, dln_c_scale = LN backward of dn;  dln_c_bias = Σ_b dn
    dc    = dc_t + dc_ln + da_o * p_o
    da_i  = dc * g_t * i_t (1 - i_t),  da_f = dc * c_tm1 * f_t (1 - f_t)
    da_g  = dc * i_t * (1 - g_t²),     dc_tm1 = dc * f_t + da_i * p_i + da_f * p_f
    dz = [da_i, da_f, da_g, da_o];  db = Σ_b dz
    dax, dln_ih_scale = LN4 backward of dz;  dah, dln_hh_scale = LN4 backward of dz
    dw_ih = x_tᵀ dax,  dw_hh = h_tm1ᵀ dah,  dx_t = dax w_ihᵀ,  dh_tm1 = dah w_hhᵀ
    """
    dh_t, dc_t = dcarry
    dparams: Params = {}
    if "w_proj" in p:
        dparams["w_proj"] = cache["m_t"].T @ dh_t
        dh_t = dh_t @ p["w_proj"].T
    i_t, f_t, g_t, o_t = cache["i_t"], cache["f_t"], cache["g_t"], cache["o_t"]
    c_tm1, c_t, tanh_c, peep = cache["c_tm1"], cache["c_t"], cache["tanh_c"], cache["peep"]

    da_o = dh_t * tanh_c * o_t * (1.0 - o_t)
    dn = dh_t * o_t * (1.0 - tanh_c**2)
    dc_ln, dparams["ln_c_scale"] = _ln_backward(dn, p["ln_c_scale"], cache["lc"])
    dparams["ln_c_bias"] = dn.sum(axis=0)
    dc = dc_t + dc_ln + da_o * peep[2]
    da_i = dc * g_t * i_t * (1.0 - i_t)
    da_f = dc * c_tm1 * f_t * (1.0 - f_t)
    da_g = dc * i_t * (1.0 - g_t**2)
    dc_tm1 = dc * f_t + da_i * peep[0] + da_f * peep[1]

    dz = np.concatenate([da_i, da_f, da_g, da_o], axis=-1)
    dax, dparams["ln_ih_scale"] = _ln_backward(dz, p["ln_ih_scale"], cache["lx"])
    dah, dparams["ln_hh_scale"] = _ln_backward(dz, p["ln_hh_scale"], cache["lh"])
    dparams["w_ih"] = cache["x_t"].T @ dax
    dparams["w_hh"] = cache["h_tm1"].T @ dah
    dparams["b"] = dz.sum(axis=0)
    if "w_peep" in p:
        dparams["w_peep"] = np.stack(
            [(da_i * c_tm1).sum(axis=0), (da_f * c_tm1).sum(axis=0), (da_o * c_t).sum(axis=0)]
        )
    return dparams, dax @ p["w_ih"].T, (dah @ p["w_hh"].T, dc_tm1)


def _ln_gru_step(
    p: Params, h_tm1: Array, x_t: Array, activation: str = "tanh"
) -> tuple[Array, dict]:
    """Layer-normalised GRU step (Ba et al.'s normalisation, per gate block ``r, z, n``)::

    gx = LN3(x_t @ w_ih) * ln_ih_scale + b
    reset-after:  nh = LN3(h_tm1 @ w_hh) * ln_hh_scale
        r_t = σ(gx_r + nh_r),  z_t = σ(gx_z + nh_z)
        n_t = tanh(gx_n + r_t * (nh_n + b_hn))
    reset-before: nh = LN2(h_tm1 @ w_hh[:, :2H]) * ln_hh_scale[:2H]
        r_t = σ(gx_r + nh_r),  z_t = σ(gx_z + nh_z)
        n_t = tanh(gx_n + LN((r_t * h_tm1) @ w_hn) * ln_hh_scale[2H:])
    h_t = (1 - z_t) * h_tm1 + z_t * n_t
    """
    H = h_tm1.shape[-1]
    w_hh, g_hh = p["w_hh"], p["ln_hh_scale"]
    nx, lx = _ln(x_t @ p["w_ih"], p["ln_ih_scale"], 3)
    gx = nx + p["b"]
    cache = dict(x_t=x_t, h_tm1=h_tm1, lx=lx)
    if "b_hn" in p:
        nh, cache["lh"] = _ln(h_tm1 @ w_hh, g_hh, 3)
        r_t = sigmoid(gx[:, :H] + nh[:, :H])
        z_t = sigmoid(gx[:, H : 2 * H] + nh[:, H : 2 * H])
        q_t = nh[:, 2 * H :] + p["b_hn"]
        n_t = np.tanh(gx[:, 2 * H :] + r_t * q_t)
        cache["q_t"] = q_t
    else:
        nh, cache["lh"] = _ln(h_tm1 @ w_hh[:, : 2 * H], g_hh[: 2 * H], 2)
        r_t = sigmoid(gx[:, :H] + nh[:, :H])
        z_t = sigmoid(gx[:, H : 2 * H] + nh[:, H:])
        s_t = r_t * h_tm1
        nn, cache["ln_n"] = _ln(s_t @ w_hh[:, 2 * H :], g_hh[2 * H :], 1)
        n_t = np.tanh(gx[:, 2 * H :] + nn)
        cache["s_t"] = s_t
    h_t = (1.0 - z_t) * h_tm1 + z_t * n_t
    cache.update(r_t=r_t, z_t=z_t, n_t=n_t)
    return h_t, cache


def _ln_gru_step_backward(
    p: Params, cache: dict, dh_t: Array, activation: str = "tanh"
) -> tuple[Params, Array, Array]:
    """Backward of ``_ln_gru_step`` given ``dh_t [B,H]``::

      da_n = dh_t * z_t (1 - n_t²),  da_z = dh_t * (n_t - h_tm1) * z_t (1 - z_t)
      dh_tm1 = dh_t * (1 - z_t)
    reset-after (q = nh_n + b_hn):
      dq = da_n * r_t,  dr = da_n * q,  db_hn = Σ_b dq
      da_r = dr * r_t (1 - r_t)
      dah, dln_hh_scale = LN3 backward of [da_r, da_z, dq]
      dw_hh = h_tm1ᵀ dah,  dh_tm1 += dah w_hhᵀ
    reset-before (s = r_t * h_tm1):
      dan, dln_hh_scale[2H:] = LN backward of da_n;  dw_hn = sᵀ dan
      ds = dan w_hnᵀ,  dr = ds * h_tm1,  dh_tm1 += ds * r_t
      da_r = dr * r_t (1 - r_t)
      dah, dln_hh_scale[:2H] = LN2 backward of [da_r, da_z]
      dw_h{r,z} = h_tm1ᵀ dah,  dh_tm1 += dah w_h{r,z}ᵀ
    both: dgx = [da_r, da_z, da_n], db = Σ_b dgx,
      dax, dln_ih_scale = LN3 backward of dgx,  dw_ih = x_tᵀ dax,  dx_t = dax w_ihᵀ
    """
    x_t, h_tm1 = cache["x_t"], cache["h_tm1"]
    r_t, z_t, n_t = cache["r_t"], cache["z_t"], cache["n_t"]
    H = h_tm1.shape[-1]
    w_hh, g_hh = p["w_hh"], p["ln_hh_scale"]
    da_n = dh_t * z_t * (1.0 - n_t**2)
    da_z = dh_t * (n_t - h_tm1) * z_t * (1.0 - z_t)
    dh_tm1 = dh_t * (1.0 - z_t)
    dparams: Params = {}
    if "b_hn" in p:
        dq = da_n * r_t
        da_r = da_n * cache["q_t"] * r_t * (1.0 - r_t)
        dparams["b_hn"] = dq.sum(axis=0)
        dah, dparams["ln_hh_scale"] = _ln_backward(
            np.concatenate([da_r, da_z, dq], axis=-1), g_hh, cache["lh"]
        )
        dparams["w_hh"] = h_tm1.T @ dah
        dh_tm1 = dh_tm1 + dah @ w_hh.T
    else:
        w_hn = w_hh[:, 2 * H :]
        dan, dg_n = _ln_backward(da_n, g_hh[2 * H :], cache["ln_n"])
        ds = dan @ w_hn.T
        da_r = ds * h_tm1 * r_t * (1.0 - r_t)
        dh_tm1 = dh_tm1 + ds * r_t
        dah, dg_rz = _ln_backward(np.concatenate([da_r, da_z], axis=-1), g_hh[: 2 * H], cache["lh"])
        dparams["ln_hh_scale"] = np.concatenate([dg_rz, dg_n])
        dparams["w_hh"] = np.concatenate([h_tm1.T @ dah, cache["s_t"].T @ dan], axis=-1)
        dh_tm1 = dh_tm1 + dah @ w_hh[:, : 2 * H].T
    dgx = np.concatenate([da_r, da_z, da_n], axis=-1)
    dax, dparams["ln_ih_scale"] = _ln_backward(dgx, p["ln_ih_scale"], cache["lx"])
    dparams["w_ih"] = x_t.T @ dax
    dparams["b"] = dgx.sum(axis=0)
    return dparams, dax @ p["w_ih"].T, dh_tm1


def _cell_forward(
    kind: str, p: Params, carry: Carry, x_t: Array, activation: str
) -> tuple[Carry, Array, dict]:
    """Dispatch one step: returns ``(carry_t, y_t [B,H], cache)`` with ``y_t = h_t``."""
    if "ln_ih_scale" in p:
        step = {"rnn": _ln_rnn_step, "lstm": _ln_lstm_step, "gru": _ln_gru_step}[kind]
        carry_t, cache = step(p, carry, x_t, activation)
    elif kind == "rnn":
        carry_t, cache = _rnn_step(p, carry, x_t, activation)
    elif kind == "lstm":
        carry_t, cache = _lstm_step(p, carry, x_t)
    else:
        carry_t, cache = _gru_step(p, carry, x_t)
    return carry_t, _carry_h(carry_t), cache


def _cell_backward(
    kind: str, p: Params, cache: dict, dcarry_t: Carry, activation: str
) -> tuple[Params, Array, Carry]:
    """Dispatch one backward step: ``dcarry_t`` is the total ``dL/dcarry_t`` (``dy_t``
    already added to its ``h`` part).  Returns ``(dparams, dx_t [B,I], dcarry_tm1)``."""
    if "ln_ih_scale" in p:
        back = {
            "rnn": _ln_rnn_step_backward,
            "lstm": _ln_lstm_step_backward,
            "gru": _ln_gru_step_backward,
        }[kind]
        return back(p, cache, dcarry_t, activation)
    if kind == "rnn":
        return _rnn_step_backward(p, cache, dcarry_t, activation)
    if kind == "lstm":
        return _lstm_step_backward(p, cache, dcarry_t)
    return _gru_step_backward(p, cache, dcarry_t)


def cell_step(
    kind: str,
    params: Mapping[str, ArrayLike],
    carry: Any,
    x_t: ArrayLike,
    activation: str = "tanh",
) -> tuple[Carry, Array]:
    """One step of a cell: ``(carry_t, y_t) = step(carry_tm1, x_t)``.

    Args:
      kind: ``"rnn"``, ``"lstm"`` or ``"gru"``.
      params: the cell's parameter dict (see the module docstring).
      carry: ``h [B,H]`` (rnn, gru) or ``(h [B,H], c [B,H])`` (lstm; ``h [B,P]`` with
        ``w_proj [H,P]``).
      x_t: ``[B, I]``.
      activation: ``"tanh"`` or ``"relu"``; used by ``rnn`` only.

    Equations:
      rnn:  ``h_t = act(x_t @ w_ih + h_tm1 @ w_hh + b)``
      lstm: ``c_t = f*c_tm1 + i*g``, ``h_t = o*tanh(c_t)`` (peepholes: i, f see ``c_tm1``,
            o sees ``c_t``; with ``w_proj``: ``h_t = (o*tanh(c_t)) @ w_proj``)
      gru:  ``h_t = (1 - z)*h_tm1 + z*n`` (reset-before, or reset-after with ``b_hn``)

    Returns:
      ``(carry_t, y_t)`` with ``y_t = h_t [B,H]``; ``carry_t`` has ``carry``'s structure.

    Examples:
      >>> import numpy as np
      >>> p = {"w_ih": np.ones((2, 3)), "w_hh": np.zeros((3, 3)), "b": np.zeros(3)}
      >>> h, y = cell_step("rnn", p, np.zeros((1, 3)), np.array([[0.5, 0.5]]))
      >>> np.allclose(y, np.tanh(1.0)), y.shape
      (True, (1, 3))
    """
    _check_kind(kind, activation)
    p = _as_params(kind, params)
    x_t = np.asarray(x_t, np.float64)
    if x_t.ndim != 2 or x_t.shape[1] != p["w_ih"].shape[0]:
        raise ValueError(f"x_t: expected shape (B, {p['w_ih'].shape[0]}), got {x_t.shape}")
    carry = _as_carry(kind, carry, x_t.shape[0], _hidden_size(p), cell=_cell_size(p))
    carry_t, y_t, _ = _cell_forward(kind, p, carry, x_t, activation)
    return carry_t, y_t


# --------------------------------------------------------------------------------------
# Sequences: forward and BPTT
# --------------------------------------------------------------------------------------


def _unroll(
    kind: str,
    p: Params,
    xs: Array,
    carry0: Carry,
    lengths: Array,
    reverse: bool,
    activation: str,
) -> tuple[Array, Carry, list[dict], Array, Array]:
    """The forward loop shared by ``forward`` and ``backward``.

    At loop step ``s``, sequence ``b`` reads ``x = xs[b, pos[s, b]]`` (see
    ``_step_order``).  Valid rows take the new carry and write ``y``; padded rows keep
    their carry and write ``y = 0``.  Padded inputs are replaced by zeros before the
    cell sees them, so padding that holds NaN or inf cannot leak into anything.

    Returns ``(ys [B,T,H], carry_T, caches, pos [T,B], valid [T,B])`` where
    ``caches[s]`` is the cell cache of loop step ``s``.
    """
    B, T, _ = xs.shape
    H = _hidden_size(p)
    rows = np.arange(B)
    pos, valid = _step_order(lengths, T, reverse)
    ys = np.zeros((B, T, H))
    carry = carry0
    caches = []
    for s in range(T):
        v = valid[s][:, None]
        x_t = np.where(v, xs[rows, pos[s]], 0.0)
        carry_t, y_t, cache = _cell_forward(kind, p, carry, x_t, activation)
        caches.append(cache)
        carry = _where_carry(valid[s], carry_t, carry)
        ys[rows, pos[s]] = np.where(v, y_t, 0.0)
    return ys, carry, caches, pos, valid


def _prepare(
    kind: str,
    params: Mapping[str, ArrayLike],
    xs: ArrayLike,
    carry0: Any,
    lengths: ArrayLike | None,
    activation: str,
) -> tuple[Params, Array, Carry, Array]:
    """Check and convert the arguments common to ``forward`` and ``backward``."""
    _check_kind(kind, activation)
    p = _as_params(kind, params)
    xs = _as_sequence_batch(xs)
    B, T, I = xs.shape
    if I != p["w_ih"].shape[0]:
        raise ValueError(f"xs: expected {p['w_ih'].shape[0]} features, got shape {xs.shape}")
    carry0 = _as_carry(kind, carry0, B, _hidden_size(p), name="carry0", cell=_cell_size(p))
    return p, xs, carry0, _check_lengths(lengths, B, T)


def forward(
    kind: str,
    params: Mapping[str, ArrayLike],
    xs: ArrayLike,
    carry0: Any,
    lengths: ArrayLike | None = None,
    reverse: bool = False,
    activation: str = "tanh",
) -> tuple[Array, Carry]:
    """Run a cell over a batch of (possibly padded) sequences.

    Args:
      kind: ``"rnn"``, ``"lstm"`` or ``"gru"``.
      params: the cell's parameter dict.
      xs: ``[B, T, I]``.
      carry0: initial carry, ``h [B,H]`` or ``(h, c)`` for lstm; ``None`` means zeros.
      lengths: int ``[B]`` with ``0 <= L_b <= T``; ``None`` means all ``T``.
      reverse: read each sequence from ``L_b - 1`` back to ``0``.
      activation: ``"tanh"`` or ``"relu"`` (rnn only).

    Semantics: for sequence ``b`` the valid positions are ``t < L_b``;
    ``carry ← step(carry, xs[b, t])`` over ``t = 0 .. L_b-1`` (or ``L_b-1 .. 0`` when
    ``reverse``), and ``ys[b, t] = h`` right after reading ``xs[b, t]``.  Padded positions
    give ``ys[b, t] = 0`` and do not touch the carry, so ``L_b = 0`` returns ``carry0[b]``.

    Returns:
      ``(ys [B, T, H], carry_T)``, ``carry_T`` with the structure of the carry.

    Examples:
      >>> import numpy as np
      >>> p = {"w_ih": np.ones((1, 2)), "w_hh": np.eye(2), "b": np.zeros(2)}
      >>> xs = np.ones((2, 3, 1))                       # [B=2, T=3, I=1]
      >>> ys, h = forward("rnn", p, xs, None, lengths=[3, 1], activation="relu")
      >>> ys[:, :, 0].tolist()                          # h_t = relu(x_t + h_{t-1})
      [[1.0, 2.0, 3.0], [1.0, 0.0, 0.0]]
      >>> h[:, 0].tolist()
      [3.0, 1.0]
    """
    p, xs, carry0, lengths = _prepare(kind, params, xs, carry0, lengths, activation)
    ys, carry_T, *_ = _unroll(kind, p, xs, carry0, lengths, reverse, activation)
    return ys, carry_T


def backward(
    kind: str,
    params: Mapping[str, ArrayLike],
    xs: ArrayLike,
    carry0: Any,
    dys: ArrayLike,
    dcarry_T: Any = None,
    lengths: ArrayLike | None = None,
    reverse: bool = False,
    activation: str = "tanh",
) -> tuple[Params, Array, Carry]:
    """Backpropagation through time for ``forward`` (hand-derived, no autodiff).

    Args:
      kind, params, xs, carry0, lengths, reverse, activation: as in ``forward``.
      dys: ``dL/dys [B, T, H]`` (entries at padded positions are ignored: ``ys`` is the
        constant 0 there).
      dcarry_T: ``dL/dcarry_T``, the carry's structure; ``None`` means zeros.

    Algorithm: rerun the forward loop keeping each step's cache, then walk the loop
    steps backwards, ``s = T-1 .. 0``, carrying ``δ = dL/dcarry`` (initially
    ``dcarry_T``).  For valid rows the cell's backward step gets
    ``δ + (dy at the position read)`` on its ``h`` part and returns ``dx`` for that
    position and ``δ ← dL/dcarry_{prev}``; parameter gradients are summed over steps.
    Padded rows give the cell a zero gradient (so no parameter or ``x`` gradient) and
    pass ``δ`` through unchanged, since there ``carry_new = carry_old``.

    Returns:
      ``(dparams, dxs [B, T, I], dcarry0)``: ``dparams`` has the keys and shapes of
      ``params``, ``dcarry0`` the structure of the carry.

    Examples:
      >>> import numpy as np
      >>> p = {"w_ih": np.ones((1, 1)), "w_hh": np.ones((1, 1)), "b": np.zeros(1)}
      >>> xs = np.ones((1, 2, 1))                       # relu: h1 = 1, h2 = 2
      >>> dys = np.array([[[0.0], [1.0]]])              # L = h2 = x1 + x2 + b + b
      >>> dp, dxs, dh0 = backward("rnn", p, xs, None, dys, activation="relu")
      >>> dxs[0, :, 0].tolist(), dp["b"].tolist(), dp["w_hh"].tolist()  # dL/dw_hh = h1
      ([1.0, 1.0], [2.0], [[1.0]])
    """
    p, xs, carry0, lengths = _prepare(kind, params, xs, carry0, lengths, activation)
    B, T, _ = xs.shape
    H = _hidden_size(p)
    dys = _as_sequence_batch(dys, name="dys")
    if dys.shape != (B, T, H):
        raise ValueError(f"dys: expected shape {(B, T, H)}, got {dys.shape}")
    dcarry = _as_carry(kind, dcarry_T, B, H, name="dcarry_T", cell=_cell_size(p))

    _, _, caches, pos, valid = _unroll(kind, p, xs, carry0, lengths, reverse, activation)
    rows = np.arange(B)
    zero = _zero_carry(kind, B, H, _cell_size(p))
    dparams = {k: np.zeros_like(v) for k, v in p.items()}
    dxs = np.zeros_like(xs)
    for s in reversed(range(T)):
        v = valid[s][:, None]
        dy_t = np.where(v, dys[rows, pos[s]], 0.0)
        # Total gradient flowing into this step's output carry; zero on padded rows.
        dcarry_t = _where_carry(valid[s], _add_to_h(dcarry, dy_t), zero)
        dp, dx_t, dcarry_tm1 = _cell_backward(kind, p, caches[s], dcarry_t, activation)
        for k in dparams:
            dparams[k] += dp[k]
        dxs[rows, pos[s]] = np.where(v, dx_t, 0.0)
        dcarry = _where_carry(valid[s], dcarry_tm1, dcarry)
    return dparams, dxs, dcarry


# --------------------------------------------------------------------------------------
# Stacks (like torch.nn.LSTM, no dropout)
# --------------------------------------------------------------------------------------


def stack_forward(
    kind: str,
    layer_params: Sequence[Sequence[Mapping[str, ArrayLike]]],
    xs: ArrayLike,
    carries0: Sequence[Sequence[Any]] | None = None,
    lengths: ArrayLike | None = None,
    bidirectional: bool = False,
    activation: str = "tanh",
) -> tuple[Array, tuple[tuple[Carry, ...], ...]]:
    """Multi-layer, optionally bidirectional, stack of one cell kind.

    Args:
      kind: ``"rnn"``, ``"lstm"`` or ``"gru"``.
      layer_params: ``layer_params[l][d]`` is the param dict of layer ``l``, direction
        ``d`` (``d = 0`` forward, ``d = 1`` reverse); 1 direction, or 2 when
        ``bidirectional``.  Layer 0 has ``w_ih [I, G*H]``; later layers
        ``w_ih [D*H, G*H]`` with ``D`` the number of directions.
      xs: ``[B, T, I]``.
      carries0: same nesting, ``carries0[l][d]`` a carry; ``None`` means all zeros
        (an individual ``carries0[l][d]`` may also be ``None``).
      lengths: int ``[B]`` or ``None``, used by every layer and direction.
      bidirectional: two directions per layer.
      activation: ``"tanh"`` or ``"relu"`` (rnn only).

    Equations: ``in_0 = xs``; for layer ``l``:
    ``out_l^d, carry_l^d = forward(kind, layer_params[l][d], in_l, carries0[l][d],
    lengths, reverse=(d == 1))`` and ``in_{l+1} = concat_d(out_l^d)`` along features
    (``[fwd, bwd]``).

    Returns:
      ``(ys [B, T, D*H], carries_T)`` where ``ys`` is the last layer's output and
      ``carries_T[l][d]`` the final carry of layer ``l``, direction ``d``.

    Examples:
      >>> import numpy as np
      >>> p0 = {"w_ih": np.ones((1, 1)), "w_hh": np.eye(1), "b": np.zeros(1)}
      >>> p1 = {"w_ih": np.ones((2, 1)), "w_hh": np.eye(1), "b": np.zeros(1)}
      >>> ys, carries = stack_forward("rnn", [[p0, p0], [p1, p1]], np.ones((1, 3, 1)),
      ...                             bidirectional=True, activation="relu")
      >>> ys.shape, len(carries), len(carries[0])
      ((1, 3, 2), 2, 2)
    """
    num_dirs = 2 if bidirectional else 1
    if carries0 is not None and len(carries0) != len(layer_params):
        raise ValueError(f"carries0: expected {len(layer_params)} layers, got {len(carries0)}")
    inputs = np.asarray(xs, np.float64)
    carries_T = []
    for layer, dir_params in enumerate(layer_params):
        if len(dir_params) != num_dirs:
            raise ValueError(
                f"layer_params[{layer}]: expected {num_dirs} direction(s), got {len(dir_params)}"
            )
        outputs, layer_carries = [], []
        for direction, params in enumerate(dir_params):
            carry0 = None if carries0 is None else carries0[layer][direction]
            ys_d, carry_d = forward(
                kind,
                params,
                inputs,
                carry0,
                lengths=lengths,
                reverse=direction == 1,
                activation=activation,
            )
            outputs.append(ys_d)
            layer_carries.append(carry_d)
        inputs = np.concatenate(outputs, axis=-1)
        carries_T.append(tuple(layer_carries))
    return inputs, tuple(carries_T)


# --------------------------------------------------------------------------------------
# Cells with an element-wise linear recurrence: minGRU, minLSTM (Feng et al. 2024, "Were
# RNNs All We Needed?") and the LRU (Orvieto et al. 2023, "Resurrecting Recurrent Neural
# Networks for Long Sequences"), sequential textbook form
# --------------------------------------------------------------------------------------

MIN_KINDS = ("mingru", "minlstm", "lru")


def _g(x: Array) -> Array:
    """Feng et al.'s positive candidate: ``x + 0.5`` for ``x >= 0``, ``sigmoid(x)`` else."""
    return np.where(x >= 0, np.maximum(x, 0.0) + 0.5, sigmoid(x))


def _min_step(kind: str, p: Params, h_tm1: Array, x_t: Array, log_space: bool):
    """One step ``(h_t, y_t)``; for the lru ``h`` is complex ``[B, N]``."""
    if kind == "lru":
        n = p["nu_log"].shape[0]
        lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
        gamma = np.exp(p["gamma_log"])
        b_mat = p["w_ih"][:, :n] + 1j * p["w_ih"][:, n : 2 * n]
        d_mat = p["w_ih"][:, 2 * n :]
        c_mat = p["w_out"][:n] + 1j * p["w_out"][n:]
        h_t = lam * h_tm1 + gamma * (x_t @ b_mat)
        return h_t, np.real(h_t @ c_mat) + x_t @ d_mat
    H = p["b"].shape[0] // (2 if kind == "mingru" else 3)
    a = x_t @ p["w_ih"] + p["b"]
    cand = a[:, -H:]
    h_tilde = _g(cand) if log_space else cand
    if kind == "mingru":
        z = sigmoid(a[:, :H])
        h_t = (1.0 - z) * h_tm1 + z * h_tilde
    else:
        f, i = sigmoid(a[:, :H]), sigmoid(a[:, H : 2 * H])
        h_t = f / (f + i) * h_tm1 + i / (f + i) * h_tilde
    return h_t, h_t


def min_forward(
    kind: str,
    params: Mapping[str, ArrayLike],
    xs: ArrayLike,
    h0: ArrayLike | None = None,
    lengths: ArrayLike | None = None,
    reverse: bool = False,
    log_space: bool = False,
) -> tuple[Array, Array]:
    """minGRU, minLSTM or LRU over a batch of (possibly padded) sequences, step by step.

    Equations (row vectors; ``σ`` the logistic function, ``g`` the positive candidate of
    the log-space variant, used only with ``log_space=True``)::

        mingru:   z = σ(x @ w_ih[:, :H] + b[:H]),  h̃ = x @ w_ih[:, H:] + b[H:]  (or g(·))
                  h_t = (1 - z) * h_{t-1} + z * h̃,  y_t = h_t
        minlstm:  f, i = σ(·_f), σ(·_i) (blocks f, i, h̃ of w_ih [I, 3H], b [3H])
                  h_t = f / (f + i) * h_{t-1} + i / (f + i) * h̃,  y_t = h_t
        lru:      λ = exp(-exp(nu_log) + i exp(theta_log)),  γ = exp(gamma_log)
                  B = w_ih[:, :N] + i w_ih[:, N:2N],  D = w_ih[:, 2N:],  C = w_out[:N] + i w_out[N:]
                  h_t = λ * h_{t-1} + γ * (x_t @ B)  (complex),  y_t = Re(h_t @ C) + x_t @ D

    Args:
      kind: ``"mingru"``, ``"minlstm"`` or ``"lru"``.
      params: the jrnn cell's parameter dict.
      xs: ``[B, T, I]``.
      h0: initial state ``[B, H]`` (lru: the real view ``[B, 2N] = [Re h | Im h]``);
        ``None`` means zeros.
      lengths, reverse: as in [`forward`][jrnn.reference.forward].
      log_space: the log-space variant's positive candidate ``g`` (min cells).

    Returns:
      ``(ys [B, T, H], h_T)`` (lru: ``h_T`` as the real view ``[B, 2N]``).

    Examples:
      >>> import numpy as np
      >>> p = {"w_ih": np.array([[0.0, 1.0]]), "b": np.zeros(2)}  # z = 0.5, h̃ = x
      >>> ys, h = min_forward("mingru", p, np.ones((1, 3, 1)))
      >>> ys[0, :, 0].tolist()                          # h_t = h_{t-1} / 2 + 1 / 2
      [0.5, 0.75, 0.875]
    """  # noqa: E501
    if kind not in MIN_KINDS:
        raise ValueError(f"kind: expected one of {MIN_KINDS}, got {kind!r}")
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    xs = _as_sequence_batch(xs)
    B, T, _ = xs.shape
    lengths = _check_lengths(lengths, B, T)
    if kind == "lru":
        width, out = 2 * p["nu_log"].shape[0], p["w_out"].shape[1]
    else:
        width = out = p["b"].shape[0] // (2 if kind == "mingru" else 3)
    h = np.zeros((B, width)) if h0 is None else np.asarray(h0, np.float64).reshape(B, width)
    if kind == "lru":
        h = h[:, : width // 2] + 1j * h[:, width // 2 :]
    rows = np.arange(B)
    pos, valid = _step_order(lengths, T, reverse)
    ys = np.zeros((B, T, out))
    for s in range(T):
        v = valid[s][:, None]
        x_t = np.where(v, xs[rows, pos[s]], 0.0)
        h_t, y_t = _min_step(kind, p, h, x_t, log_space)
        h = np.where(v, h_t, h)
        ys[rows, pos[s]] = np.where(v, y_t, 0.0)
    if kind == "lru":
        h = np.concatenate([h.real, h.imag], axis=-1)
    return ys, h


# --------------------------------------------------------------------------------------
# The lecture's Elman network with softmax output (column vectors, one sequence)
# --------------------------------------------------------------------------------------


def log_softmax(logits: ArrayLike) -> Array:
    """``log softmax`` over the last axis, any shape ``[..., K]``.

    ``log ŷ_k = o_k - m - log Σ_j exp(o_j - m)`` with ``m = max_j o_j`` (log-sum-exp), so
    no ``exp`` overflows.

    Examples:
      >>> import numpy as np
      >>> np.exp(log_softmax([1e4, 1e4])).tolist()
      [0.5, 0.5]
    """
    logits = np.asarray(logits, np.float64)
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _elman_args(U, V, W, b, c, xs, h0) -> tuple[Array, ...]:
    """Convert the Elman arguments to float64 and check their shapes."""
    U, V, W, b, c, xs, h0 = (np.asarray(a, np.float64) for a in (U, V, W, b, c, xs, h0))
    H, I = U.shape
    K = V.shape[0]
    expected = {
        "V": (V, (K, H)),
        "W": (W, (H, H)),
        "b": (b, (H,)),
        "c": (c, (K,)),
        "h0": (h0, (H,)),
    }
    for name, (arr, shape) in expected.items():
        if arr.shape != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    if xs.ndim != 2 or xs.shape[1] != I:
        raise ValueError(f"xs: expected shape (T, {I}), got {xs.shape}")
    return U, V, W, b, c, xs, h0


def elman_forward(
    U: ArrayLike,
    V: ArrayLike,
    W: ArrayLike,
    b: ArrayLike,
    c: ArrayLike,
    xs: ArrayLike,
    h0: ArrayLike,
) -> dict[str, Array]:
    """The Elman RNN with softmax outputs of the lecture, one sequence, column vectors.

    Shapes: ``U [H,I]``, ``W [H,H]``, ``V [K,H]``, ``b [H]``, ``c [K]``, ``xs [T,I]``,
    ``h0 [H]``.  For ``t = 1 .. τ`` (rows ``0 .. T-1`` of ``xs``)::

        a(t) = b + W h(t-1) + U x(t)
        h(t) = tanh(a(t))
        o(t) = c + V h(t)
        ŷ(t) = softmax(o(t))

    Returns:
      ``dict(h=[T,H], o=[T,K], yhat=[T,K])``.

    Examples:
      >>> import numpy as np
      >>> H, I, K, T = 3, 2, 4, 5
      >>> U, V, W = np.ones((H, I)), np.zeros((K, H)), np.zeros((H, H))
      >>> out = elman_forward(U, V, W, np.zeros(H), np.zeros(K), np.zeros((T, I)), np.zeros(H))
      >>> out["h"].shape, out["yhat"][0].tolist()        # V = 0, c = 0: uniform outputs
      ((5, 3), [0.25, 0.25, 0.25, 0.25])
    """
    U, V, W, b, c, xs, h0 = _elman_args(U, V, W, b, c, xs, h0)
    T = xs.shape[0]
    h = np.zeros((T, U.shape[0]))
    o = np.zeros((T, V.shape[0]))
    h_prev = h0
    for t in range(T):
        a_t = b + W @ h_prev + U @ xs[t]
        h[t] = np.tanh(a_t)
        o[t] = c + V @ h[t]
        h_prev = h[t]
    return dict(h=h, o=o, yhat=np.exp(log_softmax(o)))


def elman_loss(
    U: ArrayLike,
    V: ArrayLike,
    W: ArrayLike,
    b: ArrayLike,
    c: ArrayLike,
    xs: ArrayLike,
    h0: ArrayLike,
    targets: ArrayLike,
) -> float:
    """The lecture's sequence loss ``L = Σ_t L(t) = -Σ_t log ŷ(t)[y(t)]``.

    Shapes as in ``elman_forward``; ``targets`` int ``[T]`` with entries in ``[0, K)``.
    ``log ŷ(t)`` is computed as ``log_softmax(o(t))``.  Returns a Python float.

    Examples:
      >>> import numpy as np
      >>> H, I, K, T = 3, 2, 4, 5
      >>> args = (np.ones((H, I)), np.zeros((K, H)), np.zeros((H, H)), np.zeros(H),
      ...         np.zeros(K), np.zeros((T, I)), np.zeros(H))
      >>> bool(np.isclose(elman_loss(*args, targets=[0, 1, 2, 3, 0]) / T, np.log(K)))
      True
    """
    out = elman_forward(U, V, W, b, c, xs, h0)
    targets = np.asarray(targets)
    log_yhat = log_softmax(out["o"])
    return float(-np.sum(log_yhat[np.arange(len(targets)), targets]))


def elman_bptt(
    U: ArrayLike,
    V: ArrayLike,
    W: ArrayLike,
    b: ArrayLike,
    c: ArrayLike,
    xs: ArrayLike,
    h0: ArrayLike,
    targets: ArrayLike,
) -> dict[str, Array]:
    """Gradients of ``elman_loss`` by the lecture's hand-derived BPTT equations, literally.

    Shapes as in ``elman_forward``; ``targets`` int ``[T]``.  With ``τ`` the last step::

        ∇o(t) = ŷ(t) − 1_{y(t)}                               (∂L/∂L(t) = 1)
        ∇h(τ) = Vᵀ ∇o(τ)
        ∇h(t) = Wᵀ diag(1 − h(t+1)²) ∇h(t+1) + Vᵀ ∇o(t)
        ∇c = Σ_t ∇o(t)
        ∇b = Σ_t diag(1 − h(t)²) ∇h(t)
        ∇V = Σ_t ∇o(t) h(t)ᵀ
        ∇W = Σ_t diag(1 − h(t)²) ∇h(t) h(t−1)ᵀ
        ∇U = Σ_t diag(1 − h(t)²) ∇h(t) x(t)ᵀ
        ∇h(0) = Wᵀ diag(1 − h(1)²) ∇h(1)                      (the initial state)

    The lecture slide writes the recursion as ``Wᵀ (∇h(t+1)) diag(1 − (h(t+1))²)``; read
    as a matrix-vector product the diagonal Jacobian of ``tanh`` acts on ``∇h(t+1)``
    before ``Wᵀ`` does, which is the order written above.

    Returns:
      ``dict(U=[H,I], V=[K,H], W=[H,H], b=[H], c=[K], h0=[H])``.

    Examples:
      >>> import numpy as np
      >>> rng = np.random.default_rng(0)
      >>> H, I, K, T = 3, 2, 4, 5
      >>> U, V, W = rng.normal(size=(H, I)), rng.normal(size=(K, H)), rng.normal(size=(H, H))
      >>> b, c, xs, h0 = np.zeros(H), np.zeros(K), rng.normal(size=(T, I)), np.zeros(H)
      >>> y = [0, 1, 2, 3, 0]
      >>> g = elman_bptt(U, V, W, b, c, xs, h0, y)
      >>> e = np.zeros(K); e[1] = 1e-6                   # finite difference along c[1]
      >>> fd = (elman_loss(U, V, W, b, c + e, xs, h0, y)
      ...       - elman_loss(U, V, W, b, c - e, xs, h0, y)) / 2e-6
      >>> bool(np.isclose(g["c"][1], fd, rtol=1e-6))
      True
    """
    U, V, W, b, c, xs, h0 = _elman_args(U, V, W, b, c, xs, h0)
    targets = np.asarray(targets)
    out = elman_forward(U, V, W, b, c, xs, h0)
    h, yhat = out["h"], out["yhat"]
    T, H = h.shape

    grad_o = yhat.copy()  # ∇o(t) = ŷ(t) − 1_{y(t)}
    grad_o[np.arange(T), targets] -= 1.0

    grad_h = np.zeros((T, H))
    for t in reversed(range(T)):
        grad_h[t] = V.T @ grad_o[t]
        if t + 1 < T:
            grad_h[t] += W.T @ ((1.0 - h[t + 1] ** 2) * grad_h[t + 1])

    grads = {name: np.zeros_like(arr) for name, arr in dict(U=U, V=V, W=W, b=b, c=c).items()}
    for t in range(T):
        h_prev = h0 if t == 0 else h[t - 1]
        grad_a = (1.0 - h[t] ** 2) * grad_h[t]  # diag(1 − h(t)²) ∇h(t)
        grads["c"] += grad_o[t]
        grads["b"] += grad_a
        grads["V"] += np.outer(grad_o[t], h[t])
        grads["W"] += np.outer(grad_a, h_prev)
        grads["U"] += np.outer(grad_a, xs[t])
    grads["h0"] = W.T @ ((1.0 - h[0] ** 2) * grad_h[0]) if T > 0 else np.zeros(H)
    return grads


# --------------------------------------------------------------------------------------
# Sequence losses with lengths
# --------------------------------------------------------------------------------------


def sequence_cross_entropy(
    logits: ArrayLike, labels: ArrayLike, lengths: ArrayLike | None = None
) -> tuple[Array, Array]:
    """Softmax cross-entropy summed over the valid steps of each sequence.

    Shapes: ``logits [B, T, K]``, ``labels`` int ``[B, T]``, ``lengths`` int ``[B]`` or
    ``None`` (all ``T``).  With ``m[b, t] = t < L_b``::

        nll[b, t]   = -log_softmax(logits[b, t])[labels[b, t]]
        per_seq[b]  = Σ_t m[b, t] nll[b, t]
        mean        = Σ_b per_seq[b] / Σ_{b,t} m[b, t]      (0 when there is no valid step)

    Labels at padded positions are ignored (they may be out of range, e.g. ``-100``).

    Returns:
      ``(per_seq [B], mean [])``.

    Examples:
      >>> import numpy as np
      >>> per_seq, mean = sequence_cross_entropy(np.zeros((2, 3, 4)),
      ...                                        [[0, 1, 2], [3, -100, -100]], [3, 1])
      >>> bool(np.allclose(per_seq, [3 * np.log(4), np.log(4)])), bool(np.isclose(mean,
      ...                                                                  np.log(4)))
      (True, True)
    """
    logits = _as_sequence_batch(logits, name="logits")
    B, T, K = logits.shape
    labels = np.asarray(labels)
    if labels.shape != (B, T):
        raise ValueError(f"labels: expected shape {(B, T)}, got {labels.shape}")
    mask = _valid_mask(_check_lengths(lengths, B, T), T)
    safe_labels = np.where(mask, labels, 0)
    if np.any((safe_labels < 0) | (safe_labels >= K)):
        raise ValueError(f"labels: valid entries must lie in [0, {K})")
    log_p = log_softmax(logits)
    nll = -np.take_along_axis(log_p, safe_labels[..., None], axis=-1)[..., 0]
    per_seq = np.where(mask, nll, 0.0).sum(axis=1)
    mean = per_seq.sum() / max(int(mask.sum()), 1)
    return per_seq, np.asarray(mean)


def sequence_mse(
    preds: ArrayLike, targets: ArrayLike, lengths: ArrayLike | None = None
) -> tuple[Array, Array]:
    """Squared error summed over the valid steps and features of each sequence.

    Shapes: ``preds, targets [B, T, D]``, ``lengths`` int ``[B]`` or ``None``.
    With ``m[b, t] = t < L_b``::

        per_seq[b] = Σ_t m[b, t] Σ_d (preds[b, t, d] - targets[b, t, d])²
        mean       = Σ_b per_seq[b] / (D Σ_{b,t} m[b, t])    (0 when there is no valid step)

    Returns:
      ``(per_seq [B], mean [])``.

    Examples:
      >>> import numpy as np
      >>> per_seq, mean = sequence_mse(np.ones((2, 3, 2)), np.zeros((2, 3, 2)), [3, 1])
      >>> per_seq.tolist(), float(mean)
      ([6.0, 2.0], 1.0)
    """
    preds = _as_sequence_batch(preds, name="preds")
    targets = _as_sequence_batch(targets, name="targets")
    if targets.shape != preds.shape:
        raise ValueError(f"targets: expected shape {preds.shape}, got {targets.shape}")
    B, T, D = preds.shape
    mask = _valid_mask(_check_lengths(lengths, B, T), T)
    sq = np.where(mask[..., None], (preds - targets) ** 2, 0.0)
    per_seq = sq.sum(axis=(1, 2))
    mean = per_seq.sum() / max(int(mask.sum()) * D, 1)
    return per_seq, np.asarray(mean)


# --------------------------------------------------------------------------------------
# The papers' parallel forms of minGRU, minLSTM (Feng et al. 2024) and the LRU (Orvieto
# et al. 2023): every step's state in closed form, in the papers' own parameter layout
# --------------------------------------------------------------------------------------


def _softplus(x: Array) -> Array:
    """``log(1 + exp(x))``, elementwise, without overflow."""
    return np.logaddexp(0.0, x)


def _log_g(x: Array) -> Array:
    """``log g(x)``: ``log(x + 0.5)`` for ``x >= 0``, ``log σ(x) = -softplus(-x)`` else."""
    return np.where(x >= 0, np.log(np.maximum(x, 0.0) + 0.5), -_softplus(-x))


def _closed_form(a: Array, b: Array, h0: Array) -> Array:
    """Every state of ``h_t = a_t * h_{t-1} + b_t`` written out as sums of products.

    ``a, b [B, T, H]`` (real or complex), ``h0 [B, H]``.  Returns ``hs [B, T, H]`` with
    ``h_t = (Π_{k<=t} a_k) h_0 + Σ_{k<=t} (Π_{k<j<=t} a_j) b_k`` (an empty product is 1):
    no recurrence is run, each state is summed from scratch.
    """
    _, T, _ = a.shape
    hs = np.zeros(a.shape, np.result_type(a, b, h0))
    for t in range(T):
        h = np.prod(a[:, : t + 1], axis=1) * h0
        for k in range(t + 1):
            h = h + np.prod(a[:, k + 1 : t + 1], axis=1) * b[:, k]
        hs[:, t] = h
    return hs


def _parallel_scan_log(log_a: Array, log_values: Array) -> Array:
    """Heinsen's log-space scan, as in Feng et al.'s ``parallel_scan_log``.

    ``log_a [B, T, H]`` and ``log_values [B, T + 1, H]`` (``log h_0`` first, then
    ``log b_t``).  With ``a*_t = Σ_{k<=t} log a_k`` (``a*_0 = 0``),
    ``log h_t = a*_t + logcumsumexp_{k<=t}(log_values_k - a*_k)``; returns ``h [B, T, H]``.
    """
    a_star = np.concatenate([np.zeros_like(log_a[:, :1]), np.cumsum(log_a, axis=1)], axis=1)
    log_h = a_star + np.logaddexp.accumulate(log_values - a_star, axis=1)
    return np.exp(log_h)[:, 1:]


def _min_parallel_args(xs: ArrayLike, h0: ArrayLike | None, hidden: int) -> tuple[Array, Array]:
    xs = _as_sequence_batch(xs)
    h0 = np.zeros((xs.shape[0], hidden)) if h0 is None else np.asarray(h0, np.float64)
    if h0.shape != (xs.shape[0], hidden):
        raise ValueError(f"h0: expected shape {(xs.shape[0], hidden)}, got {h0.shape}")
    return xs, h0


def mingru_parallel(
    params: Mapping[str, ArrayLike],
    xs: ArrayLike,
    h0: ArrayLike | None = None,
    log_space: bool = False,
) -> Array:
    """minGRU in the parallel form of Feng et al. 2024 ("Were RNNs All We Needed?", §3.1).

    The paper's two linear maps (row vectors here: ``Linear(x) = x @ w + b``)::

        z_t = σ(x_t @ w_z + b_z),   h̃_t = x_t @ w_h + b_h
        h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t

    evaluated without a recurrence: ``log_space=False`` sums every state from the closed
    form ``h_t = (Π a) h_0 + Σ_k (Π a) b_k`` with ``a = 1 - z``, ``b = z ⊙ h̃``;
    ``log_space=True`` is the paper's log-space parallel mode: ``log z = -softplus(-k)``,
    ``log(1 - z) = -softplus(k)``, ``log h̃ = log g(x_t @ w_h + b_h)`` (``g(u) = u + 0.5``
    for ``u >= 0``, ``σ(u)`` else) and Heinsen's scan over ``[log h_0, log z + log h̃]``
    (``h_0 > 0``, or 0).

    Args:
      params: ``w_z [I, H]``, ``b_z [H]``, ``w_h [I, H]``, ``b_h [H]``.
      xs: ``[B, T, I]`` (every sequence of length ``T``).
      h0: ``[B, H]`` (``None``: zeros); positive or zero with ``log_space``.
      log_space: the log-space variant.

    Returns:
      ``hs [B, T, H]`` (``y_t = h_t``).

    Examples:
      >>> import numpy as np
      >>> p = {"w_z": np.zeros((1, 1)), "b_z": np.zeros(1), "w_h": np.ones((1, 1)),
      ...      "b_h": np.zeros(1)}                      # z = 1/2, h̃ = x
      >>> mingru_parallel(p, np.ones((1, 3, 1)))[0, :, 0].tolist()
      [0.5, 0.75, 0.875]
    """
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    xs, h0 = _min_parallel_args(xs, h0, p["b_z"].shape[0])
    k = xs @ p["w_z"] + p["b_z"]
    u = xs @ p["w_h"] + p["b_h"]
    if log_space:
        with np.errstate(divide="ignore"):
            log_h0 = np.log(h0)[:, None]
        return _parallel_scan_log(
            -_softplus(k), np.concatenate([log_h0, -_softplus(-k) + _log_g(u)], axis=1)
        )
    z = sigmoid(k)
    return _closed_form(1.0 - z, z * u, h0)


def minlstm_parallel(
    params: Mapping[str, ArrayLike],
    xs: ArrayLike,
    h0: ArrayLike | None = None,
    log_space: bool = False,
) -> Array:
    """minLSTM in the parallel form of Feng et al. 2024 ("Were RNNs All We Needed?", §3.2).

    The recurrence::

        f_t = σ(x_t @ w_f + b_f),   i_t = σ(x_t @ w_i + b_i),   h̃_t = x_t @ w_h + b_h
        f'_t = f_t / (f_t + i_t),   i'_t = i_t / (f_t + i_t)
        h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t

    ``log_space=False``: the closed form with ``a = f'``, ``b = i' ⊙ h̃``;
    ``log_space=True``: the paper's log-space mode, ``d = softplus(-k_f) - softplus(-k_i)``,
    ``log f' = -softplus(d)``, ``log i' = -softplus(-d)``, ``log h̃ = log g(·)`` and
    Heinsen's scan over ``[log h_0, log i' + log h̃]``.

    Args:
      params: ``w_f, w_i, w_h [I, H]``, ``b_f, b_i, b_h [H]``.
      xs: ``[B, T, I]``.
      h0: ``[B, H]`` (``None``: zeros); positive or zero with ``log_space``.
      log_space: the log-space variant.

    Returns:
      ``hs [B, T, H]``.

    Examples:
      >>> import numpy as np
      >>> z = np.zeros((1, 1))
      >>> p = {"w_f": z, "b_f": z[0], "w_i": z, "b_i": z[0], "w_h": np.ones((1, 1)),
      ...      "b_h": z[0]}                             # f' = i' = 1/2, h̃ = x
      >>> minlstm_parallel(p, np.ones((1, 2, 1)))[0, :, 0].tolist()
      [0.5, 0.75]
    """
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    xs, h0 = _min_parallel_args(xs, h0, p["b_f"].shape[0])
    k_f = xs @ p["w_f"] + p["b_f"]
    k_i = xs @ p["w_i"] + p["b_i"]
    u = xs @ p["w_h"] + p["b_h"]
    if log_space:
        d = _softplus(-k_f) - _softplus(-k_i)
        with np.errstate(divide="ignore"):
            log_h0 = np.log(h0)[:, None]
        return _parallel_scan_log(
            -_softplus(d), np.concatenate([log_h0, -_softplus(-d) + _log_g(u)], axis=1)
        )
    f, i = sigmoid(k_f), sigmoid(k_i)
    return _closed_form(f / (f + i), i / (f + i) * u, h0)


def lru_parallel(
    params: Mapping[str, ArrayLike], us: ArrayLike, x0: ArrayLike | None = None
) -> tuple[Array, Array]:
    """The LRU of Orvieto et al. 2023 ("Resurrecting Recurrent Neural Networks for Long
    Sequences", §3 and Appendix A), in the paper's column-vector layout, in closed form.

    The recurrence and its closed form::

        Λ = diag(λ),  λ = exp(-exp(ν_log) + i exp(θ_log)),   γ = exp(γ_log)
        B_norm = diag(γ) (B_re + i B_im),   C = C_re + i C_im
        x_t = Λ x_{t-1} + B_norm u_t  =  λ^{t+1} ⊙ x_{-1} + Σ_{k<=t} λ^{t-k} ⊙ (B_norm u_k)
        y_t = Re(C x_t) + D u_t

    (positions ``t = 0..T-1``, ``x_{-1} = x0``).  Each state is summed from the powers of
    ``λ``, no recurrence.  The paper's ``D`` is a diagonal ``[H]`` skip of an ``I = H``
    layer; here it is a matrix ``[H, I]`` (``np.diag(d)`` gives the paper's).

    Args:
      params: ``nu_log, theta_log, gamma_log [N]``, ``B_re, B_im [N, I]``,
        ``C_re, C_im [H, N]``, ``D [H, I]``.
      us: ``[B, T, I]``.
      x0: complex ``[B, N]`` (``None``: zeros).

    Returns:
      ``(ys [B, T, H], x_T)``: real outputs and the last complex state ``[B, N]``.

    Examples:
      >>> import numpy as np
      >>> p = {"nu_log": [np.log(np.log(2.0))], "theta_log": [np.log(np.pi / 2)],
      ...      "gamma_log": [0.0], "B_re": [[1.0]], "B_im": [[0.0]], "C_re": [[1.0]],
      ...      "C_im": [[0.0]], "D": [[0.0]]}            # λ = i / 2
      >>> ys, x = lru_parallel(p, np.ones((1, 3, 1)))     # x: 1, 1 + i/2, 3/4 + i/2
      >>> np.round(ys[0, :, 0], 12).tolist(), np.round(x, 12).tolist()
      ([1.0, 1.0, 0.75], [[(0.75+0.5j)]])
    """
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    us = _as_sequence_batch(us, name="us")
    B, T, _ = us.shape
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))  # [N]
    b_norm = (p["B_re"] + 1j * p["B_im"]) * np.exp(p["gamma_log"])[:, None]  # [N, I]
    c = p["C_re"] + 1j * p["C_im"]  # [H, N]
    x0 = np.zeros((B, lam.shape[0]), complex) if x0 is None else np.asarray(x0, complex)
    bu = np.einsum("ni,bti->btn", b_norm, us)  # B_norm u_k for every k
    xs = np.zeros((B, T, lam.shape[0]), complex)
    for t in range(T):
        xs[:, t] = lam ** (t + 1) * x0
        for k in range(t + 1):
            xs[:, t] += lam ** (t - k) * bu[:, k]
    ys = np.einsum("hn,btn->bth", c, xs).real + np.einsum("hi,bti->bth", p["D"], us)
    return ys, (xs[:, -1] if T else x0)


def min_paper_params(kind: str, params: Mapping[str, ArrayLike]) -> Params:
    """A jrnn min cell's or LRU's params in the paper's layout (for the ``*_parallel`` forms).

    ``mingru``: ``w_ih [I, 2H]``, ``b [2H]`` (blocks ``z, h̃``) -> ``w_z, w_h [I, H]``,
    ``b_z, b_h [H]``.  ``minlstm``: blocks ``f, i, h̃`` -> ``w_f, w_i, w_h``, ``b_f, b_i,
    b_h``.  ``lru`` (row vectors ``x @ w`` to the paper's column vectors): ``w_ih [I, 2N + H]
    = [Re B | Im B | D]`` -> ``B_re, B_im [N, I]``, ``D [H, I]``; ``w_out [2N, H] = [Re C ;
    Im C]`` -> ``C_re, C_im [H, N]``; ``nu_log``, ``theta_log``, ``gamma_log`` unchanged.

    Examples:
      >>> import numpy as np
      >>> p = min_paper_params("mingru", {"w_ih": np.arange(4.0)[None], "b": np.zeros(4)})
      >>> p["w_z"].tolist(), p["w_h"].tolist()
      ([[0.0, 1.0]], [[2.0, 3.0]])
    """
    if kind not in MIN_KINDS:
        raise ValueError(f"kind: expected one of {MIN_KINDS}, got {kind!r}")
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    if kind == "lru":
        n = p["nu_log"].shape[0]
        w, c = p["w_ih"], p["w_out"]
        return {
            "nu_log": p["nu_log"],
            "theta_log": p["theta_log"],
            "gamma_log": p["gamma_log"],
            "B_re": w[:, :n].T,
            "B_im": w[:, n : 2 * n].T,
            "D": w[:, 2 * n :].T,
            "C_re": c[:n].T,
            "C_im": c[n:].T,
        }
    names = ("z", "h") if kind == "mingru" else ("f", "i", "h")
    ws = np.split(p["w_ih"], len(names), axis=1)
    bs = np.split(p["b"], len(names))
    out = {f"w_{n}": w for n, w in zip(names, ws, strict=True)}
    return out | {f"b_{n}": b for n, b in zip(names, bs, strict=True)}


def min_parallel(
    kind: str,
    params: Mapping[str, ArrayLike],
    xs: ArrayLike,
    h0: ArrayLike | None = None,
    lengths: ArrayLike | None = None,
    reverse: bool = False,
    log_space: bool = False,
) -> tuple[Array, Array]:
    """[`min_forward`][jrnn.reference.min_forward]'s contract computed from the papers' parallel
    forms instead.

    Each sequence ``b`` is cut to its ``L_b`` valid steps (reversed with ``reverse``) and
    run alone through [`mingru_parallel`][jrnn.reference.mingru_parallel],
    [`minlstm_parallel`][jrnn.reference.minlstm_parallel] or
    [`lru_parallel`][jrnn.reference.lru_parallel] (params through
    [`min_paper_params`][jrnn.reference.min_paper_params]); its outputs are written back at the
    positions read (0 at padded ones), and ``h_T`` is its last state (``h0[b]`` when ``L_b = 0``).

    Args:
      kind, params, xs, h0, lengths, reverse, log_space: as in
          [`min_forward`][jrnn.reference.min_forward].

    Returns:
      ``(ys [B, T, H], h_T)`` (lru: ``h_T`` as the real view ``[B, 2N]``).

    Examples:
      >>> import numpy as np
      >>> p = {"w_ih": np.array([[0.0, 1.0]]), "b": np.zeros(2)}  # z = 0.5, h̃ = x
      >>> ys, h = min_parallel("mingru", p, np.ones((2, 3, 1)), lengths=[3, 1])
      >>> ys[:, :, 0].tolist(), h[:, 0].tolist()
      ([[0.5, 0.75, 0.875], [0.5, 0.0, 0.0]], [0.875, 0.5])
    """
    pp = min_paper_params(kind, params)
    xs = _as_sequence_batch(xs)
    B, T, _ = xs.shape
    lengths = _check_lengths(lengths, B, T)
    if kind == "lru":
        n = pp["nu_log"].shape[0]
        width, out = 2 * n, pp["D"].shape[0]
    else:
        width = out = pp["b_h"].shape[0]
    h0 = np.zeros((B, width)) if h0 is None else np.asarray(h0, np.float64).reshape(B, width)
    ys, h_T = np.zeros((B, T, out)), h0.copy()
    for b in range(B):
        pos = np.arange(lengths[b])[::-1] if reverse else np.arange(lengths[b])
        if not pos.size:
            continue
        seq, start = xs[b : b + 1, pos], h0[b : b + 1]
        if kind == "lru":
            y, x_t = lru_parallel(pp, seq, start[:, : width // 2] + 1j * start[:, width // 2 :])
            h_T[b] = np.concatenate([x_t.real, x_t.imag], axis=-1)[0]
        else:
            form = mingru_parallel if kind == "mingru" else minlstm_parallel
            y = form(pp, seq, start, log_space=log_space)
            h_T[b] = y[0, -1]
        ys[b, pos] = y[0]
    return ys, h_T


# --------------------------------------------------------------------------------------
# Attention: Bahdanau (additive) and Luong (dot, general) scores with a source mask
# --------------------------------------------------------------------------------------

ATTENTION_KINDS = ("additive", "dot", "general")


def _check_attention(kind: str) -> None:
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"kind: expected one of {ATTENTION_KINDS}, got {kind!r}")


def _attention_args(
    params: Mapping[str, ArrayLike], query: ArrayLike, values: ArrayLike, mask: ArrayLike | None
) -> tuple[Params, Array, Array, Array]:
    """float64 params, ``query [B, Q]``, ``values [B, S, E]`` zeroed where ``mask [B, S]``
    is False (``None``: all True)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    query = np.asarray(query, np.float64)
    values = np.asarray(values, np.float64)
    if query.ndim != 2 or values.ndim != 3 or values.shape[0] != query.shape[0]:
        raise ValueError(
            f"query, values: expected [B, Q] and [B, S, E], got {query.shape}, {values.shape}"
        )
    mask = np.ones(values.shape[:2], bool) if mask is None else np.asarray(mask, bool)
    if mask.shape != values.shape[:2]:
        raise ValueError(f"mask: expected shape {values.shape[:2]}, got {mask.shape}")
    return p, query, np.where(mask[..., None], values, 0.0), mask


def attention_scores(
    kind: str, params: Mapping[str, ArrayLike], query: ArrayLike, values: ArrayLike
) -> Array:
    """The scores ``e_s = score(q, k_s)`` of every source step (no mask).

    The three scores::

        additive (Bahdanau et al. 2015, "Neural Machine Translation by Jointly Learning to
                  Align and Translate"):   e_s = v · tanh(q @ w_q + k_s @ w_k + b)
        dot      (Luong et al. 2015, "Effective Approaches to Attention-based Neural Machine
                  Translation"):           e_s = q · k_s
        general  (Luong et al. 2015):      e_s = q @ w_a @ k_s

    Args:
      kind: ``"additive"``, ``"dot"`` or ``"general"``.
      params: additive ``w_q [Q, A]``, ``w_k [E, A]``, ``b [A]``, ``v [A]``; general
        ``w_a [Q, E]``; dot none.
      query: ``[B, Q]`` (the decoder state).
      values: ``[B, S, E]`` (the encoder states ``k_s``).

    Returns:
      ``e [B, S]``.

    Examples:
      >>> import numpy as np
      >>> attention_scores("dot", {}, [[1.0, 2.0]], [[[1.0, 0.0], [0.0, 1.0]]]).tolist()
      [[1.0, 2.0]]
    """
    _check_attention(kind)
    p, q, v, _ = _attention_args(params, query, values, None)
    if kind == "dot":
        return np.einsum("bq,bsq->bs", q, v)
    if kind == "general":
        return np.einsum("bq,qe,bse->bs", q, p["w_a"], v)
    return np.tanh((q @ p["w_q"])[:, None, :] + v @ p["w_k"] + p["b"]) @ p["v"]


def masked_softmax(scores: ArrayLike, mask: ArrayLike | None = None) -> Array:
    """``α_s = exp(e_s) / Σ_{s' valid} exp(e_{s'})`` at valid steps, 0 at masked ones.

    Args:
      scores: ``[B, S]``.
      mask: bool ``[B, S]`` (``None``: all valid).

    Returns:
      ``[B, S]`` weights; a row with no valid step is all 0.  Masked scores are never read
      (they may hold NaN or inf).

    Examples:
      >>> masked_softmax([[0.0, 0.0, np.nan], [1.0, 2.0, 3.0]],
      ...                [[True, True, False], [False, False, False]]).tolist()
      [[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]
    """
    e = np.asarray(scores, np.float64)
    mask = np.ones(e.shape, bool) if mask is None else np.asarray(mask, bool)
    safe = np.where(mask, e, -np.inf)
    top = np.max(np.where(mask.any(-1, keepdims=True), safe, 0.0), axis=-1, keepdims=True)
    w = np.where(mask, np.exp(np.where(mask, e, 0.0) - top), 0.0)
    total = w.sum(-1, keepdims=True)
    return w / np.where(total > 0, total, 1.0)


def attend(
    kind: str,
    params: Mapping[str, ArrayLike],
    query: ArrayLike,
    values: ArrayLike,
    mask: ArrayLike | None = None,
) -> tuple[Array, Array]:
    """One attention read: the context and the weights over the valid source steps.

    The read::

        e_s = score(q, k_s)  (see [`attention_scores`][jrnn.reference.attention_scores]; k_s = 0 at
        padded steps) α_s = masked_softmax(e)_s          (0 at padded steps s: mask[b, s] False)
        c   = Σ_s α_s k_s

    Args:
      kind: ``"additive"``, ``"dot"`` or ``"general"``.
      params: the score's params (see [`attention_scores`][jrnn.reference.attention_scores]).
      query: ``[B, Q]``.
      values: ``[B, S, E]``; padded steps may hold anything (they are read as 0).
      mask: bool ``[B, S]``, ``True`` at valid steps (``None``: all).

    Returns:
      ``(context [B, E], weights [B, S])``.

    Examples:
      >>> import numpy as np
      >>> c, w = attend("dot", {}, [[1.0, 0.0]], [[[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]],
      ...               [[True, True, False]])
      >>> e = np.e / (np.e + 1.0)                     # scores 1, 0; the third is padding
      >>> np.allclose(w, [[e, 1 - e, 0.0]]), np.allclose(c, [[e, 1 - e]])
      (True, True)
    """
    _check_attention(kind)
    p, q, v, mask = _attention_args(params, query, values, mask)
    w = masked_softmax(attention_scores(kind, p, q, v), mask)
    return np.einsum("bs,bse->be", w, v), w


def attend_backward(
    kind: str,
    params: Mapping[str, ArrayLike],
    query: ArrayLike,
    values: ArrayLike,
    mask: ArrayLike | None,
    dcontext: ArrayLike,
    dweights: ArrayLike | None = None,
) -> tuple[Params, Array, Array]:
    """Hand-derived gradients of [`attend`][jrnn.reference.attend] (no autodiff).

    Given ``g = dL/dc [B, E]`` and ``dL/dα [B, S]`` (``dweights``; ``None``: 0)::

        dα_s  = dL/dα_s + g · k_s                       dk_s  = α_s g  (+ the score's part)
        de_s  = α_s (dα_s - Σ_{s'} α_{s'} dα_{s'})      (0 at padded steps)
        dot:      dq = Σ_s de_s k_s,            dk_s += de_s q
        general:  dq = (Σ_s de_s k_s) @ w_aᵀ,   dw_a = qᵀ (Σ_s de_s k_s),   dk_s += de_s q @ w_a
        additive: u_s = tanh(q @ w_q + k_s @ w_k + b),  dv = Σ_s de_s u_s,
                  da_s = de_s v ⊙ (1 - u_s²),   dq = (Σ_s da_s) @ w_qᵀ,  dw_q = qᵀ Σ_s da_s,
                  dw_k = Σ_s k_sᵀ da_s,   db = Σ_s da_s,   dk_s += da_s @ w_kᵀ

    and ``dk_s = 0`` at padded steps (their values are replaced by 0 before any read).

    Args:
      kind, params, query, values, mask: as in [`attend`][jrnn.reference.attend].
      dcontext: ``dL/dcontext [B, E]``.
      dweights: ``dL/dweights [B, S]`` or ``None``.

    Returns:
      ``(dparams, dquery [B, Q], dvalues [B, S, E])``, ``dparams`` with the keys of
      ``params``.

    Examples:
      >>> import numpy as np
      >>> dp, dq, dv = attend_backward("dot", {}, [[0.0]], [[[1.0], [-1.0]]], None, [[1.0]])
      >>> dq.tolist(), dv[0, :, 0].tolist()       # α = (1/2, 1/2): dc/dq = Var(k) = 1
      ([[1.0]], [0.5, 0.5])
    """
    _check_attention(kind)
    p, q, v, mask = _attention_args(params, query, values, mask)
    g = np.asarray(dcontext, np.float64)
    e = attention_scores(kind, p, q, v)
    w = masked_softmax(e, mask)
    dw = np.einsum("be,bse->bs", g, v)
    if dweights is not None:
        dw = dw + np.asarray(dweights, np.float64)
    dv = w[..., None] * g[:, None, :]
    de = np.where(mask, w * (dw - np.sum(w * dw, -1, keepdims=True)), 0.0)
    dparams: Params = {}
    if kind == "dot":
        dq = np.einsum("bs,bse->be", de, v)
        dv = dv + de[..., None] * q[:, None, :]
    elif kind == "general":
        weighted = np.einsum("bs,bse->be", de, v)  # Σ_s de_s k_s
        dq = weighted @ p["w_a"].T
        dparams["w_a"] = q.T @ weighted
        dv = dv + de[..., None] * (q @ p["w_a"])[:, None, :]
    else:
        u = np.tanh((q @ p["w_q"])[:, None, :] + v @ p["w_k"] + p["b"])
        da = de[..., None] * p["v"] * (1.0 - u**2)  # [B, S, A]
        dparams["v"] = np.einsum("bs,bsa->a", de, u)
        dparams["w_q"] = q.T @ da.sum(1)
        dparams["w_k"] = np.einsum("bse,bsa->ea", v, da)
        dparams["b"] = da.sum((0, 1))
        dq = da.sum(1) @ p["w_q"].T
        dv = dv + da @ p["w_k"].T
    return dparams, dq, np.where(mask[..., None], dv, 0.0)


# --------------------------------------------------------------------------------------
# Encoder-decoders: jrnn.seq2seq (with and without attention) and jrnn.vec2seq
# --------------------------------------------------------------------------------------


def _embed(table: Array | None, ids: Array, width: int) -> Array:
    """Rows of ``table [V, E]`` for the token ids, or one-hot ``[..., width]`` without it."""
    if table is None:
        return np.eye(width)[ids]
    return table[ids]


def _leaves(kind: str, carry: Carry) -> list[Array]:
    """A reference carry's arrays in jrnn's field order: ``[h]``, or ``[h, c]`` (lstm)."""
    return list(carry) if kind == "lstm" else [carry]


def _from_leaves(kind: str, leaves: Sequence[Array]) -> Carry:
    return tuple(leaves) if kind == "lstm" else leaves[0]


def _np_tree(tree: Any) -> Any:
    """A params pytree of dicts, lists and tuples with float64 NumPy leaves."""
    if isinstance(tree, Mapping):
        return {k: _np_tree(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [_np_tree(v) for v in tree]
    return np.asarray(tree, np.float64)


def seq2seq_forward(
    params: Mapping[str, Any],
    src: ArrayLike,
    tgt_in: ArrayLike,
    *,
    encoder_kind: str,
    decoder_kind: str,
    bidirectional: bool = False,
    src_lengths: ArrayLike | None = None,
    attention: str | None = None,
    input_feeding: bool = True,
    context_input: bool = True,
    bridge: str = "linear",
    activation: str = "tanh",
) -> tuple[Array, Array | None, Carry]:
    """The encoder-decoder of ``jrnn.seq2seq`` with teacher forcing, step by step.

    The lecture's "Sequence to Sequence Mapping Networks" (Sutskever et al. 2014; Cho et
    al. 2014): the encoder ([`stack_forward`][jrnn.reference.stack_forward]; bidirectional:
    directions concatenated ``[fwd, bwd]``) reads ``E_src x`` within ``src_lengths``; its last
    layer's final carries give the summary ``C_all`` (every carry array, ``[h_fwd, c_fwd, h_bwd,
    c_bwd]`` for lstm) and the context ``C = [h_fwd, h_bwd]``.  Without attention::

        s_0 = bridge(C_all)      linear: tanh(C_all @ w_k + b_k) for each decoder carry
                                 array k (h; and c for lstm); copy: the encoder's final
                                 carry, directions concatenated; zeros
        s_t = cell(s_{t-1}, [E y_{t-1}, C])      ([E y_{t-1}] without context_input)
        o_t = s_t @ w_o + b_o

    With attention (Luong et al. 2015, "Effective Approaches to Attention-based Neural
    Machine Translation", §3 with input feeding §3.3; the scores of Bahdanau et al. 2015
    and Luong et al., [`attend`][jrnn.reference.attend]), over the encoder outputs ``k_s`` (last
    layer, ``[B, S, D*H_enc]``) with the mask ``s < L``::

        s̃_0 = 0
        s_t = cell(s_{t-1}, [E y_{t-1}, s̃_{t-1}])   ([E y_{t-1}] without input_feeding)
        c_t, α_t = attend(query = h(s_t), k, mask)
        s̃_t = tanh([c_t, h(s_t)] @ w_c + b_c),      o_t = s̃_t @ w_o + b_o

    ``E y`` is the row ``tgt_embed[y]`` (one-hot without ``tgt_embed``), likewise for the
    source.

    Args:
      params: the ``jrnn.seq2seq`` params (arrays of any kind): ``src_embed [V_s, Ē]`` and
        ``tgt_embed [V, Ē]`` (optional), ``encoder`` (``[layer][direction]`` cell
        params), ``decoder`` (cell params), ``bridge`` (a list, one ``{"w", "b"}`` per
        decoder carry array) with ``bridge="linear"``, ``attention``, ``w_c``, ``b_c``
        with attention, ``w_o [H_dec, V]``, ``b_o [V]``.
      src: int ``[B, S]``.
      tgt_in: int ``[B, T']`` (``[bos, y_1, ...]``).
      encoder_kind, decoder_kind: ``"rnn"``, ``"lstm"`` or ``"gru"``.
      bidirectional: the encoder has two directions.
      src_lengths: int ``[B]`` (``None``: all ``S``).
      attention: ``None``, ``"additive"``, ``"dot"`` or ``"general"``.
      input_feeding, context_input, bridge: as in ``jrnn.seq2seq``.
      activation: the rnn cells' activation.

    Returns:
      ``(logits [B, T', V], weights [B, T', S] or None, the decoder's final carry)``.

    Examples:
      >>> import numpy as np
      >>> rnn = lambda i, h: {"w_ih": np.ones((i, h)), "w_hh": np.zeros((h, h)),
      ...                     "b": np.zeros(h)}
      >>> params = {"encoder": [[rnn(3, 1)]], "decoder": rnn(4, 1),
      ...           "w_o": np.ones((1, 4)), "b_o": np.zeros(4)}   # one-hot tokens
      >>> logits, _, s = seq2seq_forward(params, [[2]], [[1]], encoder_kind="rnn",
      ...                                decoder_kind="rnn", bridge="zeros",
      ...                                context_input=False)
      >>> bool(np.isclose(s[0, 0], np.tanh(1.0))), logits.shape
      (True, (1, 1, 4))
    """
    if bridge not in ("linear", "copy", "zeros"):
        raise ValueError(f"bridge: expected 'linear', 'copy' or 'zeros', got {bridge!r}")
    if attention is not None:
        _check_attention(attention)
    p = _np_tree(params)
    src, tgt_in = np.asarray(src), np.asarray(tgt_in)
    B, S = src.shape
    vocab = p["w_o"].shape[1]
    xs = _embed(p.get("src_embed"), src, p["encoder"][0][0]["w_ih"].shape[0])
    enc_out, finals = stack_forward(
        encoder_kind,
        p["encoder"],
        xs,
        lengths=src_lengths,
        bidirectional=bidirectional,
        activation=activation,
    )
    last = [_leaves(encoder_kind, c) for c in finals[-1]]  # per direction: [h] or [h, c]
    summary = np.concatenate([leaf for d in last for leaf in d], -1)
    context = np.concatenate([d[0] for d in last], -1)
    hidden = p["w_o"].shape[0]  # H_dec
    if bridge == "linear":
        carry = _from_leaves(
            decoder_kind, [np.tanh(summary @ leaf["w"] + leaf["b"]) for leaf in p["bridge"]]
        )
    elif bridge == "copy":
        carry = _from_leaves(decoder_kind, [np.concatenate(a, -1) for a in zip(*last, strict=True)])
    else:
        carry = _zero_carry(decoder_kind, B, hidden, _cell_size(p["decoder"]))
    mask = _valid_mask(_check_lengths(src_lengths, B, S), S)
    feed = np.zeros((B, hidden))
    logits, weights = [], []
    for t in range(tgt_in.shape[1]):
        x = _embed(p.get("tgt_embed"), tgt_in[:, t], vocab)
        if attention is not None and input_feeding:
            x = np.concatenate([x, feed], -1)
        elif attention is None and context_input:
            x = np.concatenate([x, context], -1)
        carry, h = cell_step(decoder_kind, p["decoder"], carry, x, activation)
        out = h
        if attention is not None:
            c_t, alpha = attend(attention, p["attention"], h, enc_out, mask)
            feed = out = np.tanh(np.concatenate([c_t, h], -1) @ p["w_c"] + p["b_c"])
            weights.append(alpha)
        logits.append(out @ p["w_o"] + p["b_o"])
    logits = np.stack(logits, 1) if logits else np.zeros((B, 0, vocab))
    if attention is None:
        return logits, None, carry
    return logits, (np.stack(weights, 1) if weights else np.zeros((B, 0, S))), carry


def vec2seq_forward(
    params: Mapping[str, Any],
    vec: ArrayLike,
    tgt_in: ArrayLike,
    *,
    decoder_kind: str,
    condition: str = "both",
    activation: str = "tanh",
) -> tuple[Array, Carry]:
    """The vector-to-sequence generator of ``jrnn.vec2seq`` with teacher forcing.

    The lecture's "single input, multiple output" network: the vector ``v`` conditions an
    autoregressive generator as its initial state (``"init"``), as an extra input at
    every step (``"input"``), or both::

        s_0 = tanh(v @ w_k + b_k) for each carry array k     ("init", "both"; else 0)
        s_t = cell(s_{t-1}, [E y_{t-1}, v])                  ("input", "both")
        s_t = cell(s_{t-1}, E y_{t-1})                       ("init")
        o_t = h(s_t) @ w_o + b_o

    Args:
      params: the ``jrnn.vec2seq`` params: ``tgt_embed [V, Ē]`` (optional: one-hot),
        ``decoder`` (cell params), ``bridge`` (one ``{"w", "b"}`` per carry array) with
        ``"init"``/``"both"``, ``w_o [H, V]``, ``b_o [V]``.
      vec: ``[B, D]``.
      tgt_in: int ``[B, T']``.
      decoder_kind: ``"rnn"``, ``"lstm"`` or ``"gru"``.
      condition: ``"init"``, ``"input"`` or ``"both"``.
      activation: the rnn cell's activation.

    Returns:
      ``(logits [B, T', V], the final carry)``.

    Examples:
      >>> import numpy as np
      >>> params = {"decoder": {"w_ih": np.zeros((5, 1)), "w_hh": np.eye(1), "b": np.zeros(1)},
      ...           "bridge": [{"w": np.ones((1, 1)), "b": np.zeros(1)}],
      ...           "w_o": np.ones((1, 4)), "b_o": np.zeros(4)}
      >>> logits, s = vec2seq_forward(params, [[0.5]], [[1, 3]], decoder_kind="rnn")
      >>> bool(np.isclose(s[0, 0], np.tanh(np.tanh(np.tanh(0.5)))))  # s_t = tanh(s_{t-1})
      True
    """
    if condition not in ("init", "input", "both"):
        raise ValueError(f"condition: expected 'init', 'input' or 'both', got {condition!r}")
    p = _np_tree(params)
    vec, tgt_in = np.asarray(vec, np.float64), np.asarray(tgt_in)
    vocab = p["w_o"].shape[1]
    if condition in ("init", "both"):
        leaves = [np.tanh(vec @ leaf["w"] + leaf["b"]) for leaf in p["bridge"]]
        carry = _from_leaves(decoder_kind, leaves)
    else:
        carry = _zero_carry(
            decoder_kind, vec.shape[0], _hidden_size(p["decoder"]), _cell_size(p["decoder"])
        )
    logits = []
    for t in range(tgt_in.shape[1]):
        x = _embed(p.get("tgt_embed"), tgt_in[:, t], vocab)
        if condition in ("input", "both"):
            x = np.concatenate([x, vec], -1)
        carry, h = cell_step(decoder_kind, p["decoder"], carry, x, activation)
        logits.append(h @ p["w_o"] + p["b_o"])
    return (np.stack(logits, 1) if logits else np.zeros((vec.shape[0], 0, vocab))), carry
