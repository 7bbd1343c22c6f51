"""Converters from Equinox's recurrent cells to jrnn cells (Equinox imported lazily).

``from_equinox(module)`` returns ``(cell, jrnn_params)`` such that ``cell.step`` computes what
the Equinox cell computes.  Equinox stores PyTorch-style ``W [kH, in]`` and computes
``W @ x``, so every kernel is transposed.

- ``eqx.nn.LSTMCell``: gates ``i, f, g, o`` (as jrnn): ``w_ih = weight_ih.T``,
  ``w_hh = weight_hh.T``, ``b = bias`` (zeros when ``use_bias=False``).  Carry ``(h, c)``, the
  same order as ``LSTMState(h, c)``.
- ``eqx.nn.GRUCell``: reset-after, ``h' = n + z * (h - n) = (1 - z) * n + z * h``, so
  ``jrnn.gru(H, reset_after=True)`` with the ``z`` blocks negated:
  ``w_ih = [W_ir | -W_iz | W_in].T``, ``w_hh = [W_hr | -W_hz | W_hn].T``,
  ``b = [b_r | -b_z | b_n]``, ``b_hn = bias_n``.  Carry ``h``.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from jrnn.base import Cell, LSTMState, Params, RNNState
from jrnn.cells import gru, lstm

__all__ = ["carry_from_equinox", "carry_to_equinox", "from_equinox"]


def _require_equinox(where: str):
    try:
        import equinox
    except ImportError as e:
        raise ImportError(
            f"{where} needs Equinox, which is not installed; `pip install equinox`"
        ) from e
    return equinox


def _kind(module: Any, where: str) -> str:
    eqx = _require_equinox(where)
    if isinstance(module, eqx.nn.LSTMCell):
        return "lstm"
    if isinstance(module, eqx.nn.GRUCell):
        return "gru"
    raise TypeError(
        f"{where}: unsupported module {type(module).__module__}.{type(module).__name__}; "
        f"expected equinox.nn.LSTMCell or equinox.nn.GRUCell"
    )


def from_equinox(module: Any) -> tuple[Cell, Params]:
    """Converts ``equinox.nn.LSTMCell`` / ``GRUCell`` to a jrnn cell and its params.

    Args:
      module: the Equinox cell.

    Returns:
      ``(jrnn.lstm(H), params)`` or ``(jrnn.gru(H, reset_after=True), params)``, params in
      the module's dtype.  Equinox cells take one unbatched ``[input_size]`` vector; the jrnn
      cell takes any leading batch axes.

    Raises:
      TypeError: an unsupported module.  ImportError: Equinox is not installed.

    Examples:
      >>> import jax, jax.numpy as jnp, equinox as eqx, numpy as np
      >>> module = eqx.nn.GRUCell(3, 4, key=jax.random.key(0))
      >>> cell, params = from_equinox(module)
      >>> params["w_ih"].shape, params["b_hn"].shape                # [I, 3H], [H]
      ((3, 12), (4,))
      >>> x, h = jnp.ones(3), jnp.zeros(4)
      >>> _, y = cell.step(params, carry_from_equinox(module, h), x)
      >>> bool(np.allclose(y, module(x, h), atol=1e-6))
      True
    """
    where = "from_equinox"
    kind = _kind(module, where)
    w_ih = jnp.asarray(module.weight_ih).T
    w_hh = jnp.asarray(module.weight_hh).T
    hidden = w_hh.shape[0]
    width = w_ih.shape[1]
    bias = module.bias if module.use_bias else None
    b = jnp.zeros((width,), w_ih.dtype) if bias is None else jnp.asarray(bias)
    if kind == "lstm":
        params = {"w_ih": w_ih, "w_hh": w_hh, "b": b}
        cell = lstm(hidden, forget_bias=0.0, param_dtype=w_ih.dtype)
        return cell, params
    bias_n = module.bias_n if module.use_bias else None
    b_hn = jnp.zeros((hidden,), w_ih.dtype) if bias_n is None else jnp.asarray(bias_n)
    (ir, iz, in_), (hr, hz, hn) = jnp.split(w_ih, 3, 1), jnp.split(w_hh, 3, 1)
    br, bz, bn = jnp.split(b, 3)
    params = {
        "w_ih": jnp.concatenate([ir, -iz, in_], axis=1),
        "w_hh": jnp.concatenate([hr, -hz, hn], axis=1),
        "b": jnp.concatenate([br, -bz, bn]),
        "b_hn": b_hn,
    }
    return gru(hidden, reset_after=True, param_dtype=w_ih.dtype), params


def carry_from_equinox(module: Any, carry: Any) -> LSTMState | RNNState:
    """Equinox carry -> jrnn carry: LSTM ``(h, c)`` -> ``LSTMState(h, c)``; GRU ``h``.

    Examples:
      >>> import jax, jax.numpy as jnp, equinox as eqx
      >>> module = eqx.nn.LSTMCell(3, 4, key=jax.random.key(0))
      >>> state = carry_from_equinox(module, (jnp.ones(4), jnp.zeros(4)))   # ([H], [H])
      >>> type(state).__name__, float(state.h[0])
      ('LSTMState', 1.0)
    """
    if _kind(module, "carry_from_equinox") == "lstm":
        h, c = carry
        return LSTMState(h, c)
    return RNNState(carry)


def carry_to_equinox(module: Any, carry: LSTMState | RNNState) -> Any:
    """jrnn carry -> Equinox carry (the inverse of `carry_from_equinox`).

    Examples:
      >>> import jax, jax.numpy as jnp, equinox as eqx
      >>> from jrnn import RNNState
      >>> module = eqx.nn.GRUCell(3, 4, key=jax.random.key(0))
      >>> carry_to_equinox(module, RNNState(jnp.ones(4))).shape
      (4,)
    """
    if _kind(module, "carry_to_equinox") == "lstm":
        return (carry.h, carry.c)
    return carry.h
