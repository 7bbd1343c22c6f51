r"""Cells with an element-wise linear recurrence, evaluable by a parallel (associative) scan.

* [`mingru`][jrnn.mincells.mingru], [`minlstm`][jrnn.mincells.minlstm]: Feng et al. 2024, "Were RNNs
  All We Needed?".  The gates read only the input, never ``h_{t-1}``, so ``h_t = a_t * h_{t-1} +
  b_t`` with ``a_t, b_t`` functions of ``x_t`` alone; ``log_space=True`` is the paper's log-space
  variant (a positive candidate ``g(·)`` and the scan composed in log space).
* [`lru`][jrnn.mincells.lru]: Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long
  Sequences": a complex diagonal linear recurrence with the exponential parametrisation
  ``λ = exp(-exp(ν) + i exp(θ))``, the ``γ`` normalisation and projections ``B, C, D``.

Each is an ordinary [`jrnn.Cell`][jrnn.base.Cell] (``step`` is the sequential form, usable in
[`jrnn.unroll`][jrnn.unrolling.unroll], [`jrnn.stack`][jrnn.stacks.stack] and the models) whose
``affine`` field gives the coefficients for all steps at once, so ``jrnn.unroll(..., method="newton"
| "quasi-newton" | "auto")`` evaluates the sequence with ``jax.lax.associative_scan``
([`jrnn.linear_scan`][]).  Their carry is [`jrnn.RNNState`][jrnn.base.RNNState] ``(h,)``.  None has
a recurrent matmul: ``recurrent_kernel`` is an empty ``[S, 0]`` matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jrnn.base import Array, Cell, DType, LinearRecurrence, Params, RNNState
from jrnn.cells import Initializer, check_flag, make_cell
from jrnn.checks import check_int

__all__ = ["lru", "mingru", "minlstm"]


def _no_recurrent_kernel(width: int) -> Callable[[Params], Array]:
    """``[width, 0]`` zeros: the min cells and the LRU multiply ``h`` by no matrix."""
    return lambda params: jnp.zeros((width, 0), params["w_ih"].dtype)


def _g(x: Array) -> Array:
    """Feng et al.'s positive candidate ``g(x) = x + 0.5`` for ``x >= 0``, ``σ(x)`` else."""
    return jnp.where(x >= 0, jax.nn.relu(x) + 0.5, jax.nn.sigmoid(x))


def _log_g(x: Array) -> Array:
    """``log g(x)`` without forming ``g`` (stable for very negative ``x``)."""
    return jnp.where(x >= 0, jnp.log(jax.nn.relu(x) + 0.5), -jax.nn.softplus(-x))


def _dense_cell(
    kind: str,
    hidden_size: int,
    blocks: int,
    log_space: bool,
    gates,
    affine,
    dtype: DType | None,
    param_dtype: DType,
    kernel_init: Initializer,
    bias_init: Initializer,
) -> Cell:
    h = hidden_size

    def make_params(key, input_size, dt):
        k1, k2 = jax.random.split(key)
        return {
            "w_ih": kernel_init(k1, (input_size, blocks * h), dt),
            "b": bias_init(k2, (blocks * h,), dt),
        }

    cell = make_cell(
        kind=kind,
        config={"hidden_size": h, "log_space": log_space},
        hidden_size=h,
        output_size=h,
        make_params=make_params,
        gates=gates,
        recurrent_kernel=_no_recurrent_kernel(h),
        zero_carry=lambda bs, dt: RNNState(jnp.zeros(bs + (h,), dt)),
        dtype=dtype,
        param_dtype=param_dtype,
    )
    return cell._replace(affine=affine)


# --------------------------------------------------------------------------------------
# minGRU


def _mix_affine(d: Array, u: Array, log_space: bool) -> LinearRecurrence:
    """``h_t = σ(-d) * h_{t-1} + σ(d) * u``, the affine map of both min cells (``d = k`` for
    minGRU, ``log(i / f)`` for minLSTM); in log space its log coefficients, with ``u``
    through ``log g``."""
    if log_space:
        return LinearRecurrence(-jax.nn.softplus(d), -jax.nn.softplus(-d) + _log_g(u), True)
    return LinearRecurrence(jax.nn.sigmoid(-d), jax.nn.sigmoid(d) * u)


def mingru(
    hidden_size: int,
    *,
    log_space: bool = False,
    dtype: DType | None = None,
    param_dtype: DType = jnp.float32,
    kernel_init: Initializer = jax.nn.initializers.lecun_normal(),
    bias_init: Initializer = jax.nn.initializers.zeros,
) -> Cell:
    r"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?").

    The GRU without reset gate and with gates that read only the input::

        z_t = σ(x_t @ w_iz + b_z)
        h̃_t = x_t @ w_ih̃ + b_h̃              log_space=True: h̃_t = g(x_t @ w_ih̃ + b_h̃)
        h_t = (1 - z_t) * h_{t-1} + z_t * h̃_t
        y_t = h_t

    so ``h_t = a_t * h_{t-1} + b_t`` with ``a_t = 1 - z_t = σ(-·_z)``, ``b_t = z_t * h̃_t``
    (``cell.affine``).  With ``log_space=True`` the candidate is the paper's positive
    ``g(u) = u + 0.5`` (``u >= 0``), ``σ(u)`` (``u < 0``), and the parallel evaluation
    composes ``log a_t = -softplus(·_z)``, ``log b_t = -softplus(-·_z) + log g(·_h̃)`` in
    log space (the step is the same recurrence in ordinary arithmetic).

    Args:
      hidden_size: ``H``.
      log_space: the paper's log-space variant (above).
      dtype, param_dtype: compute and storage dtypes.
      kernel_init, bias_init: initialisers for ``w_ih [I, 2H]`` and ``b [2H]``.

    Returns:
      A [`jrnn.Cell`][jrnn.base.Cell] with params ``{"w_ih": [I, 2H], "b": [2H]}`` (blocks ``z,
      h̃``), carry [`jrnn.RNNState`][jrnn.base.RNNState] ``(h [*batch, H],)`` and ``affine``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.mingru(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> xs = jnp.ones((2, 7, 3))  # [batch, time, features]
      >>> ys, carry = jrnn.unroll(cell, params, xs, method="newton")  # associative scan
      >>> ys_seq, _ = jrnn.unroll(cell, params, xs)  # lax.scan
      >>> ys.shape, bool(jnp.allclose(ys, ys_seq, atol=1e-6))
      ((2, 7, 4), True)
    """
    where = "mingru"
    h = check_int("hidden_size", hidden_size, where)
    log_space = check_flag("log_space", log_space, where)

    def gates(params, carry, xa, ha):
        k, u = jnp.split(xa, 2, axis=-1)
        z_t = jax.nn.sigmoid(k)
        cand = _g(u) if log_space else u
        h_t = jax.nn.sigmoid(-k) * carry.h + z_t * cand  # (1 - z) * h_{t-1} + z * h̃
        return RNNState(h_t), h_t

    def affine(params, xa):
        k, u = jnp.split(xa, 2, axis=-1)
        return _mix_affine(k, u, log_space)

    return _dense_cell(
        "mingru", h, 2, log_space, gates, affine, dtype, param_dtype, kernel_init, bias_init
    )


# --------------------------------------------------------------------------------------
# minLSTM


def minlstm(
    hidden_size: int,
    *,
    log_space: bool = False,
    dtype: DType | None = None,
    param_dtype: DType = jnp.float32,
    kernel_init: Initializer = jax.nn.initializers.lecun_normal(),
    bias_init: Initializer = jax.nn.initializers.zeros,
) -> Cell:
    r"""minLSTM (Feng et al. 2024, "Were RNNs All We Needed?").

    The LSTM without output gate or cell state, gates reading only the input, and the
    forget and input gates normalised to sum to one::

        f_t = σ(x_t @ w_if + b_f),   i_t = σ(x_t @ w_ii + b_i)
        f'_t = f_t / (f_t + i_t),    i'_t = i_t / (f_t + i_t)
        h̃_t = x_t @ w_ih̃ + b_h̃              log_space=True: h̃_t = g(x_t @ w_ih̃ + b_h̃)
        h_t = f'_t * h_{t-1} + i'_t * h̃_t
        y_t = h_t

    so ``a_t = f'_t``, ``b_t = i'_t * h̃_t`` (``cell.affine``).  In log space (the paper's
    form), with ``d = softplus(-·_f) - softplus(-·_i)``: ``log f'_t = -softplus(d)``,
    ``log i'_t = -softplus(-d)`` and ``log b_t = log i'_t + log g(·_h̃)``.

    Args:
      hidden_size: ``H``.
      log_space: the paper's log-space variant (positive candidate ``g``, see
        [`mingru`][jrnn.mincells.mingru]).
      dtype, param_dtype: compute and storage dtypes.
      kernel_init, bias_init: initialisers for ``w_ih [I, 3H]`` and ``b [3H]``.

    Returns:
      A [`jrnn.Cell`][jrnn.base.Cell] with params ``{"w_ih": [I, 3H], "b": [3H]}`` (blocks
      ``f, i, h̃``), carry [`jrnn.RNNState`][jrnn.base.RNNState] ``(h [*batch, H],)`` and
      ``affine``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.minlstm(4, log_space=True)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> carry, y = cell.step(params, cell.initial_carry(params, (2,)), jnp.ones((2, 3)))
      >>> y.shape, bool(jnp.all(y > 0))  # log space: a positive state
      ((2, 4), True)
    """
    where = "minlstm"
    h = check_int("hidden_size", hidden_size, where)
    log_space = check_flag("log_space", log_space, where)

    def gates(params, carry, xa, ha):
        kf, ki, u = jnp.split(xa, 3, axis=-1)
        f_t, i_t = jax.nn.sigmoid(kf), jax.nn.sigmoid(ki)
        cand = _g(u) if log_space else u
        h_t = (f_t * carry.h + i_t * cand) / (f_t + i_t)
        return RNNState(h_t), h_t

    def affine(params, xa):
        kf, ki, u = jnp.split(xa, 3, axis=-1)
        d = jax.nn.softplus(-kf) - jax.nn.softplus(-ki)  # log(i / f)
        return _mix_affine(d, u, log_space)

    return _dense_cell(
        "minlstm", h, 3, log_space, gates, affine, dtype, param_dtype, kernel_init, bias_init
    )


# --------------------------------------------------------------------------------------
# LRU


def lru(
    hidden_size: int,
    state_size: int | None = None,
    *,
    r_min: float = 0.0,
    r_max: float = 1.0,
    max_phase: float = 2 * math.pi,
    dtype: DType | None = None,
    param_dtype: DType = jnp.float32,
) -> Cell:
    r"""Linear recurrent unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks
    for Long Sequences").

    A complex diagonal linear recurrence of ``N`` states, read out to ``H`` real outputs::

        λ = exp(-exp(ν) + i·exp(θ))                       (|λ| < 1 by construction)
        γ = exp(γ_log)                                    (init sqrt(1 - |λ|²))
        h_t = λ ⊙ h_{t-1} + γ ⊙ (x_t @ B)                 h_t ∈ C^N
        y_t = Re(h_t @ C) + x_t @ D

    ``B [I, N]`` and ``C [N, H]`` are complex, ``D [I, H]`` is real (the paper's ``D`` is
    the diagonal skip of an ``I = H`` layer; here a dense ``[I, H]`` matrix so that ``I``
    and ``H`` may differ).  The carry is real: ``h = [Re h | Im h]``, ``[*batch, 2N]``
    (not the output, which is ``[*batch, H]``).  ``cell.affine`` gives the complex
    ``a_t = λ``, ``b_t = γ ⊙ (x_t @ B)``.  There is no nonlinearity and no bias: the paper
    follows the LRU with an MLP/GLU (a model's readout here).

    Parameter layout (real arrays):

    - ``w_ih [I, 2N + H]``: columns ``[Re B | Im B | D]``;
    - ``w_out [2N, H]``: rows ``[Re C ; Im C]``;
    - ``nu_log [N]``: ``ν``, ``|λ| = exp(-exp(ν))``;
    - ``theta_log [N]``: ``θ``, ``arg λ = exp(θ)``;
    - ``gamma_log [N]``: ``log γ``.

    Initialisation (the paper's): ``|λ|`` uniform on the ring ``[r_min, r_max]`` (in the
    complex plane), ``arg λ`` uniform in ``[0, max_phase]``, ``Re B, Im B ~ N(0, 1/(2I))``,
    ``Re C, Im C ~ N(0, 1/N)``, ``D ~ N(0, 1/I)`` (the paper's ``D ~ N(0, 1)`` is
    diagonal).

    Args:
      hidden_size: ``H``, the output size.
      state_size: ``N``, the number of complex states (default ``H``).
      r_min, r_max: the ring of initial eigenvalue moduli, ``0 <= r_min < r_max <= 1``.
      max_phase: the largest initial eigenvalue phase, ``> 0``.
      dtype, param_dtype: compute and storage dtypes (the associative scan runs in
        complex64, or complex128 for float64).

    Returns:
      A [`jrnn.Cell`][jrnn.base.Cell] with the params above, carry
      [`jrnn.RNNState`][jrnn.base.RNNState] ``(h [*batch, 2N],)`` and ``affine``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.lru(4, state_size=6)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> sorted((k, v.shape) for k, v in params.items())
      [('gamma_log', (6,)), ('nu_log', (6,)), ('theta_log', (6,)), ('w_ih', (3, 16)), ('w_out', (12, 4))]
      >>> ys, carry = jrnn.unroll(cell, params, jnp.ones((2, 5, 3)), method="newton")
      >>> ys.shape, carry.h.shape  # outputs [batch, T, H], state [batch, 2N]
      ((2, 5, 4), (2, 12))
    """  # noqa: E501
    where = "lru"
    h = check_int("hidden_size", hidden_size, where)
    n = h if state_size is None else check_int("state_size", state_size, where)
    for name, value in (("r_min", r_min), ("r_max", r_max), ("max_phase", max_phase)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{where}: `{name}` must be a float, got {value!r}")
    if not 0.0 <= r_min < r_max <= 1.0:
        raise ValueError(
            f"{where}: `r_min` and `r_max` must satisfy 0 <= r_min < r_max <= 1, "
            f"got r_min={r_min!r}, r_max={r_max!r}"
        )
    if not max_phase > 0:
        raise ValueError(f"{where}: `max_phase` must be > 0, got {max_phase!r}")

    def make_params(key, input_size, dt):
        k_nu, k_th, k_b, k_c, k_d = jax.random.split(key, 5)
        u1 = jax.random.uniform(k_nu, (n,), dt)
        u2 = jax.random.uniform(k_th, (n,), dt)
        nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        theta_log = jnp.log(max_phase * u2)
        modulus = jnp.exp(-jnp.exp(nu_log))
        b = jax.random.normal(k_b, (input_size, 2 * n), dt) / math.sqrt(2 * input_size)
        d = jax.random.normal(k_d, (input_size, h), dt) / math.sqrt(input_size)
        return {
            "nu_log": nu_log,
            "theta_log": theta_log,
            "gamma_log": jnp.log(jnp.sqrt(1 - modulus**2)),
            "w_ih": jnp.concatenate([b, d], axis=1),
            "w_out": jax.random.normal(k_c, (2 * n, h), dt) / math.sqrt(n),
        }

    def lam(params):
        """``(Re λ, Im λ)`` and ``γ``: ``[N]`` each."""
        modulus = jnp.exp(-jnp.exp(params["nu_log"]))
        phase = jnp.exp(params["theta_log"])
        return modulus * jnp.cos(phase), modulus * jnp.sin(phase), jnp.exp(params["gamma_log"])

    def gates(params, carry, xa, ha):
        lam_re, lam_im, gamma = lam(params)
        re, im = jnp.split(carry.h, 2, axis=-1)
        bu_re, bu_im, du = jnp.split(xa, [n, 2 * n], axis=-1)
        new_re = lam_re * re - lam_im * im + gamma * bu_re
        new_im = lam_re * im + lam_im * re + gamma * bu_im
        c_re, c_im = jnp.split(params["w_out"], 2, axis=0)
        y_t = new_re @ c_re - new_im @ c_im + du
        return RNNState(jnp.concatenate([new_re, new_im], axis=-1)), y_t

    def affine(params, xa):
        # complex64 needs float32 parts: half precision computes the scan in float32
        up = lambda v: v.astype(jnp.float32) if v.dtype.itemsize < 4 else v
        lam_re, lam_im, gamma = (up(v) for v in lam(params))
        bu_re, bu_im, _ = jnp.split(up(xa), [n, 2 * n], axis=-1)
        a = jax.lax.complex(lam_re, lam_im)
        b = jax.lax.complex(gamma * bu_re, gamma * bu_im)
        return LinearRecurrence(jnp.broadcast_to(a, b.shape), b)

    cell = make_cell(
        kind="lru",
        config={
            "hidden_size": h,
            "state_size": n,
            "r_min": r_min,
            "r_max": r_max,
            "max_phase": max_phase,
        },
        hidden_size=h,
        output_size=h,
        make_params=make_params,
        gates=gates,
        project=lambda params, xs: xs @ params["w_ih"],
        recurrent_kernel=_no_recurrent_kernel(2 * n),
        zero_carry=lambda bs, dt: RNNState(jnp.zeros(bs + (2 * n,), dt)),
        dtype=dtype,
        param_dtype=param_dtype,
    )
    return cell._replace(affine=affine)
