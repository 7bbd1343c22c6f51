r"""Exact diagonals of step Jacobians, for quasi-Newton (``unroll(method="quasi-newton")``).

A cell's [`jrnn.base.FastPath`][] may carry ``diagonal(params, carry, xa_t) -> [D]``,
the diagonal of ``∂s_t/∂s_{t-1}`` on the flat carry ``s`` (fields in order, e.g. the
LSTM's ``[h, c]``) of one sequence.  Without one, [`jrnn.newton.jacobian_diagonal`][]
takes ``D`` Jacobian-vector products.  The built-in cells use the two below.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jrnn.base import Array, Carry, FastPath, Params

Diagonal = Callable[[Params, Carry, Array], Array]


def _block_diagonals(w: Array, h: int) -> Array:
    """``[k*h]``: the diagonals of the ``k`` ``[h, h]`` blocks of ``w [h, k*h]``."""
    k = w.shape[1] // h
    return jnp.concatenate([jnp.diagonal(w[:, i * h : (i + 1) * h]) for i in range(k)])


def derivative(fn: Callable[[Array], Array], a: Array) -> Array:
    """``fn'(a)`` of an element-wise ``fn`` (one JVP with tangent 1).

    Examples:
      >>> import jax.numpy as jnp
      >>> float(derivative(jnp.tanh, jnp.zeros(())))
      1.0
    """
    return jax.jvp(fn, (a,), (jnp.ones_like(a),))[1]


def unit_wise(fast: FastPath) -> Diagonal:
    """The diagonal for gates that are element-wise per unit given ``ha``: unit ``j`` of
    every carry field depends only on unit ``j`` of the carry and units ``kH + j`` of
    ``ha = h @ w_rec`` (the Elman cell, the LSTM with or without peepholes, the reset-after
    GRU; no layer norm, no projection).  Per carry field ``f``: one JVP of ``gates`` with
    tangent 1 on ``f`` (and, for ``h``, the block diagonals of ``w_rec`` on ``ha``); e.g. for
    the Elman cell ``act'(a_t) * diag(w_hh)``, for the LSTM's ``c``
    ``f_t + c_{t-1} σ'(a_f) p_f + g_t σ'(a_i) p_i``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.simple_rnn(3)
      >>> p = cell.init(jax.random.key(0), 2)
      >>> d = unit_wise(cell.fast)(p, jrnn.RNNState(jnp.zeros(3)), jnp.zeros(3))
      >>> bool(jnp.allclose(d, jnp.diagonal(p["w_hh"])))  # tanh'(0) = 1
      True
    """

    def diagonal(params: Params, carry: Carry, xa: Array) -> Array:
        w = fast.recurrent_kernel(params)
        ha = carry.h @ w
        gates = lambda c, a: fast.gates(params, c, xa, a)[0]
        diags = []
        for field in carry._fields:
            c_dot = carry._replace(
                **{
                    f: (jnp.ones_like if f == field else jnp.zeros_like)(getattr(carry, f))
                    for f in carry._fields
                }
            )
            ha_dot = _block_diagonals(w, w.shape[0]) if field == "h" else jnp.zeros_like(ha)
            _, out_dot = jax.jvp(gates, (carry, ha), (c_dot, ha_dot))
            diags.append(getattr(out_dot, field))
        return jnp.concatenate(diags)

    diagonal.__name__ = "unit_wise"
    return diagonal


def gru_reset_before(sigma: Callable[[Array], Array], act: Callable[[Array], Array]) -> Diagonal:
    r"""The diagonal of Cho's GRU (reset before the product, no layer norm), by hand: the
    candidate's ``(r * h) @ w_hn`` couples all units through ``r``::

        ∂h_j/∂h_{t-1,j} = (1 - z_j) + (n_j - h_{t-1,j}) σ'(a_z)_j W_z[j,j]
                          + z_j act'(a_n)_j (r_j W_n[j,j] + Σ_i W_r[j,i] W_n[i,j] h_i σ'(a_r)_i)

    ``O(H²)`` per step.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.gru(3)
      >>> p = cell.init(jax.random.key(0), 2)
      >>> c, x = jrnn.RNNState(jnp.full(3, 0.2)), jnp.ones(2)
      >>> d = gru_reset_before(jax.nn.sigmoid, jnp.tanh)(p, c, cell.fast.project(p, x))
      >>> full = jax.jacfwd(lambda h: cell.step(p, jrnn.RNNState(h), x)[0].h)(c.h)
      >>> bool(jnp.allclose(d, jnp.diagonal(full), atol=1e-6))
      True
    """

    def diagonal(params: Params, carry: Carry, xa: Array) -> Array:
        h_tm1 = carry.h
        H = h_tm1.shape[-1]
        w = params["w_hh"]
        w_r, w_z, w_n = w[:, :H], w[:, H : 2 * H], w[:, 2 * H :]
        x_r, x_z, x_n = jnp.split(xa, 3, axis=-1)
        a_r, a_z = x_r + h_tm1 @ w_r, x_z + h_tm1 @ w_z
        r, z = sigma(a_r), sigma(a_z)
        a_n = x_n + (r * h_tm1) @ w_n
        n = act(a_n)
        dz = derivative(sigma, a_z) * jnp.diagonal(w_z)
        coupled = (w_r * w_n.T) @ (h_tm1 * derivative(sigma, a_r))
        dn = derivative(act, a_n) * (r * jnp.diagonal(w_n) + coupled)
        return (1 - z) + (n - h_tm1) * dz + z * dn

    diagonal.__name__ = "gru_reset_before"
    return diagonal
