r"""Griffin's real-gated linear recurrent unit (RG-LRU), on the open cell contract.

[`rglru`][jrnn.griffin.rglru] is a [`jrnn.custom_cell`][jrnn.custom.custom_cell] of three
functions plus two capabilities: ``fast`` (the input projection and both gates hoisted out
of the scan) and ``affine`` (the recurrence is element-wise linear in the carry, so
[`jrnn.unroll`][jrnn.unrolling.unroll] evaluates ``method="newton"``/``"auto"`` with an
associative scan, ``jrnn.linear_scan``).  Its parameters convert from
the authors' JAX layer ``recurrentgemma.jax.layers.RGLRU`` with
[`from_recurrentgemma`][jrnn.griffin.from_recurrentgemma].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jrnn.base import Array, Cell, DType, FastPath, LinearRecurrence, Params, RNNState, describe
from jrnn.checks import check_int
from jrnn.custom import custom_cell

__all__ = ["from_recurrentgemma", "rglru"]

MAX_SQRT_GRADIENT = 1000.0
"""The bound on the derivative of ``sqrt(1 - a_t²)`` (the authors' ``sqrt_bound_derivative``:
no NaN in low precision when ``a_t`` rounds to 1)."""


@jax.custom_jvp
def _sqrt_bounded(x: Array) -> Array:
    """``sqrt(x)`` whose derivative is that of ``sqrt(max(x, 1 / (4 g²)))``, ``g =``
    ``MAX_SQRT_GRADIENT`` (at most ``g``): the authors' ``sqrt_bound_derivative``, as a
    ``custom_jvp`` so that forward mode works too (the diagnostics' Jacobians).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> float(_sqrt_bounded(jnp.float32(4.0))), round(float(jax.grad(_sqrt_bounded)(0.0)), 3)
      (2.0, 1000.0)
    """
    return jnp.sqrt(x)


@_sqrt_bounded.defjvp
def _sqrt_bounded_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    floor = 1.0 / (4.0 * MAX_SQRT_GRADIENT**2)
    return jnp.sqrt(x), jax.jvp(jnp.sqrt, (jnp.maximum(x, floor),), (t,))[1]


def _block_linear(x: Array, w: Array, b: Array) -> Array:
    """``x [..., H]`` through the block-diagonal ``w [heads, H/heads, H/heads]`` plus ``b``."""
    heads, i, _ = w.shape
    y = jnp.einsum("...hi,hij->...hj", x.reshape(*x.shape[:-1], heads, i), w) + b
    return y.reshape(*x.shape)


def rglru(
    hidden_size: int,
    *,
    num_heads: int = 1,
    c: float = 8.0,
    min_rad: float = 0.9,
    max_rad: float = 0.999,
    w_init_variance_scale: float = 1.0,
    dtype: DType | None = None,
    param_dtype: DType = jnp.float32,
) -> Cell:
    r"""Real-gated linear recurrent unit, RG-LRU (Griffin (De et al., 2024), the recurrence
    of Hawk and RecurrentGemma).

    For inputs ``x_t [*batch, I]`` (``[batch, time, I]`` through
    [`jrnn.unroll`][jrnn.unrolling.unroll]) and the state ``h_t [*batch, H]``::

        x̃_t = x_t @ W_x                                     input projection [I, H]
        r_t = σ(x̃_t W_a + b_a)                              recurrence gate (block-diagonal)
        i_t = σ(x̃_t W_i + b_i)                              input gate (block-diagonal)
        a_t = σ(Λ)^{c r_t} = exp(-c · r_t · softplus(-Λ))   Λ = -a_param
        h_t = a_t ⊙ h_{t-1} + √(1 − a_t²) ⊙ (i_t ⊙ x̃_t)
        y_t = h_t

    ``W_a``, ``W_i`` are block-diagonal with ``num_heads`` blocks of ``H/num_heads``
    (the paper's and the authors' layer's); ``W_x`` stands for the linear branch in front
    of the RG-LRU in Griffin's recurrent block, so that the input may have any width (the
    authors' layer, whose input is ``x̃`` itself, is ``W_x = I``: see
    [`from_recurrentgemma`][jrnn.griffin.from_recurrentgemma]).  The derivative of the
    square root is bounded by ``1000`` as in the authors' code.  The step is linear in the
    carry, ``h_t = a_t h_{t-1} + b_t``: ``cell.affine`` gives ``a_t, b_t`` for all steps,
    and ``unroll(..., method="newton" | "auto")`` runs the associative scan.

    Initialisation (the authors'): ``a_t``'s base ``σ(Λ)`` uniform on the ring
    ``[min_rad, max_rad]`` (by area), the gate weights ``N(0, w_init_variance_scale / H)``
    (Flax's ``variance_scaling`` on ``[heads, H/heads, H/heads]``: fan-in ``H``) with zero
    biases, ``W_x`` LeCun normal.

    One difference in meaning: the authors' layer restarts a document at ``segment_pos ==
    0`` with ``h = i_t ⊙ x̃_t`` (no ``√(1 − a_t²)``); jrnn's ``resets`` restart from the
    initial carry and apply the step as always.

    Args:
      hidden_size: ``H`` (divisible by ``num_heads``).
      num_heads: the number of diagonal blocks of the gates.
      c: the constant ``c`` (8 in the paper).
      min_rad, max_rad: the initial ring of ``σ(Λ)``, ``0 <= min_rad < max_rad < 1``.
      w_init_variance_scale: the gates' initial weight variance times ``H``.
      dtype, param_dtype: compute and storage dtypes.

    Returns:
      A [`jrnn.Cell`][jrnn.base.Cell] with params ``{"w_x": [I, H], "w_a", "w_i": [heads,
      H/heads, H/heads], "b_a", "b_i": [heads, H/heads], "a_param": [H]}``, carry
      [`jrnn.RNNState`][jrnn.base.RNNState] ``(h [*batch, H],)``, ``fast`` and ``affine``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.rglru(4, num_heads=2)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> xs = jnp.ones((2, 7, 3))  # [batch, time, features]
      >>> ys, carry = jrnn.unroll(cell, params, xs, method="newton")  # associative scan
      >>> ys_seq, _ = jrnn.unroll(cell, params, xs)  # lax.scan
      >>> ys.shape, bool(jnp.allclose(ys, ys_seq, atol=1e-6))
      ((2, 7, 4), True)
    """
    where = "rglru"
    h = check_int("hidden_size", hidden_size, where)
    heads = check_int("num_heads", num_heads, where)
    if h % heads:
        raise ValueError(f"{where}: `hidden_size` ({h}) must be divisible by `num_heads` ({heads})")
    for arg, value in (("c", c), ("min_rad", min_rad), ("max_rad", max_rad)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{where}: `{arg}` must be a float, got {value!r}")
    if isinstance(w_init_variance_scale, bool) or not isinstance(
        w_init_variance_scale, int | float
    ):
        raise TypeError(
            f"{where}: `w_init_variance_scale` must be a float, got {w_init_variance_scale!r}"
        )
    if not c > 0:
        raise ValueError(f"{where}: `c` must be > 0, got {c!r}")
    if not 0.0 <= min_rad < max_rad < 1.0:
        raise ValueError(
            f"{where}: `min_rad` and `max_rad` must satisfy 0 <= min_rad < max_rad < 1, "
            f"got min_rad={min_rad!r}, max_rad={max_rad!r}"
        )
    if not w_init_variance_scale > 0:
        raise ValueError(
            f"{where}: `w_init_variance_scale` must be > 0, got {w_init_variance_scale!r}"
        )
    block = h // heads
    pdt = jnp.dtype(param_dtype)
    config = {
        "hidden_size": h,
        "num_heads": heads,
        "c": c,
        "min_rad": min_rad,
        "max_rad": max_rad,
        "w_init_variance_scale": w_init_variance_scale,
        "dtype": dtype,
        "param_dtype": param_dtype,
    }

    def init(key: jax.Array, input_size: int) -> Params:
        check_int("input_size", input_size, f"{where}.init")
        k_x, k_a, k_i, k_l = jax.random.split(key, 4)
        gate_init = jax.nn.initializers.variance_scaling(w_init_variance_scale, "fan_in", "normal")
        unif = jax.random.uniform(k_l, (h,), jnp.float32)
        # σ(Λ) uniform on the ring by area; a_param = softplus⁻¹(-log σ(Λ)) (the authors')
        log_rad = 0.5 * jnp.log(unif * (max_rad**2 - min_rad**2) + min_rad**2 + 1e-8)
        return {
            "w_x": jax.nn.initializers.lecun_normal()(k_x, (input_size, h), pdt),
            "w_a": gate_init(k_a, (heads, block, block), pdt),
            "b_a": jnp.zeros((heads, block), pdt),
            "w_i": gate_init(k_i, (heads, block, block), pdt),
            "b_i": jnp.zeros((heads, block), pdt),
            "a_param": jnp.log(jnp.exp(-log_rad) - 1.0).astype(pdt),
        }

    def initial_carry(params: Params, batch_shape: tuple[int, ...] = ()) -> RNNState:
        cell_dt = jnp.dtype(dtype) if dtype is not None else params["a_param"].dtype
        return RNNState(jnp.zeros((*batch_shape, h), cell_dt))

    def project(params: Params, xs: Array) -> Array:
        """``[x̃ | x̃ W_i + b_i | x̃ W_a + b_a]``, ``[..., 3H]``, for inputs of any shape."""
        xt = xs @ params["w_x"]
        gi = _block_linear(xt, params["w_i"], params["b_i"])
        ga = _block_linear(xt, params["w_a"], params["b_a"])
        return jnp.concatenate([xt, gi, ga], axis=-1)

    def coefficients(params: Params, xa: Array) -> tuple[Array, Array]:
        xt, gi, ga = jnp.split(xa, 3, axis=-1)
        log_a = -c * jax.nn.sigmoid(ga) * jax.nn.softplus(params["a_param"])
        a, a_squared = jnp.exp(log_a), jnp.exp(2 * log_a)
        return a, (xt * jax.nn.sigmoid(gi)) * _sqrt_bounded(1 - a_squared)

    def gates(params: Params, carry: RNNState, xa: Array, ha: Array) -> tuple[RNNState, Array]:
        a, b = coefficients(params, xa)
        h_t = a * carry.h + b
        return RNNState(h_t), h_t

    def affine(params: Params, xa: Array) -> LinearRecurrence:
        return LinearRecurrence(*coefficients(params, xa))

    fast = FastPath(
        project=project,
        recurrent_kernel=lambda params: jnp.zeros((h, 0), params["a_param"].dtype),
        gates=gates,
    )

    def step(params: Params, carry: RNNState, x_t: Array) -> tuple[RNNState, Array]:
        return gates(params, carry, project(params, x_t), None)

    cell = custom_cell(
        init,
        step,
        initial_carry=initial_carry,
        name=describe(where, config),
        fast=fast,
        affine=affine,
        dtype=dtype,
        config=tuple(config.items()),
    )
    return cell


def from_recurrentgemma(variables: Mapping[str, Any], *, dtype: DType | None = None) -> Params:
    """Parameters of [`rglru`][jrnn.griffin.rglru] from the authors' layer
    ``recurrentgemma.jax.layers.RGLRU(width, num_heads)`` (real form, ``only_real=True``).

    ``variables`` is the layer's ``{"params": ...}`` (or its ``params`` dict): ``a_param``,
    ``input_gate/{w, b}``, ``a_gate/{w, b}``.  The layer reads its input directly, so
    ``w_x`` is the identity ``[width, width]``; use the params with ``jrnn.rglru(width,
    num_heads=num_heads)`` and ``segment_pos >= 1`` on the layer's side (its
    ``segment_pos == 0`` is a document start, see [`rglru`][jrnn.griffin.rglru]).

    Args:
      variables: the layer's variables (NumPy or JAX arrays).
      dtype: the params' dtype (default: the layer's).

    Returns:
      The jrnn params dict.

    Raises:
      ValueError: the variables are not an RGLRU layer's (a complex one's ``a_imag_param``
        included), naming what is missing or mismatched.

    Examples:
      >>> import numpy as np
      >>> layer = {"a_param": np.zeros(4), "input_gate": {"w": np.zeros((2, 2, 2)),
      ...          "b": np.zeros((2, 2))}, "a_gate": {"w": np.zeros((2, 2, 2)), "b": np.zeros((2, 2))}}
      >>> sorted((k, v.shape) for k, v in from_recurrentgemma({"params": layer}).items())
      [('a_param', (4,)), ('b_a', (2, 2)), ('b_i', (2, 2)), ('w_a', (2, 2, 2)), ('w_i', (2, 2, 2)), ('w_x', (4, 4))]
    """  # noqa: E501
    where = "from_recurrentgemma"
    if not isinstance(variables, Mapping):
        raise TypeError(f"{where}: `variables` must be a mapping, got {type(variables).__name__}")
    p = variables.get("params", variables)
    if "a_imag_param" in p:
        raise ValueError(f"{where}: a complex RGLRU (only_real=False) has no jrnn counterpart")
    missing = [k for k in ("a_param", "input_gate", "a_gate") if k not in p]
    if missing:
        raise ValueError(
            f"{where}: `variables` lacks {missing} (an RGLRU layer has a_param, "
            f"input_gate, a_gate), got keys {sorted(p)}"
        )
    a_param = jnp.asarray(p["a_param"], dtype)
    width = a_param.shape[0]
    out = {
        "w_x": jnp.eye(width, dtype=a_param.dtype),
        "w_a": jnp.asarray(p["a_gate"]["w"], a_param.dtype),
        "b_a": jnp.asarray(p["a_gate"]["b"], a_param.dtype),
        "w_i": jnp.asarray(p["input_gate"]["w"], a_param.dtype),
        "b_i": jnp.asarray(p["input_gate"]["b"], a_param.dtype),
        "a_param": a_param,
    }
    for k in ("w_a", "w_i"):
        w = out[k]
        if w.ndim != 3 or w.shape[0] * w.shape[1] != width or w.shape[1] != w.shape[2]:
            raise ValueError(
                f"{where}: gate weight `{k}` must be [heads, width/heads, width/heads] for "
                f"width {width}, got {tuple(w.shape)}"
            )
    return out
