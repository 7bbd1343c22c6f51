"""Converters from Flax's recurrent cells (linen and NNX) to jrnn cells.

``from_flax(module, params)`` returns ``(cell, jrnn_params)`` such that ``cell.step`` computes
what the Flax cell computes.  Supported: linen ``LSTMCell``, ``OptimizedLSTMCell`` (same
parameters as ``LSTMCell``), ``GRUCell``; NNX ``LSTMCell``, ``OptimizedLSTMCell``,
``GRUCell`` (parameters read from the module itself).  Flax's defaults only: ``gate_fn =
sigmoid`` and ``activation_fn = tanh`` (anything else raises).

Layouts (Flax kernels are already ``x @ kernel``, so nothing is transposed):

- LSTM: jrnn ``w_ih = [ii | if | ig | io]`` kernels, ``w_hh = [hi | hf | hg | ho]``,
  ``b = [hi | hf | hg | ho]`` biases (Flax's input kernels have no bias, so there is
  nothing to fold); NNX's ``OptimizedLSTMCell`` stores these already fused (``dense_i``,
  ``dense_h``).  Carry: Flax ``(c, h)`` <-> jrnn ``LSTMState(h, c)``.
- GRU: Flax's GRU is the reset-after form with ``h' = (1 - z) * n + z * h``, so it is
  ``jrnn.gru(H, reset_after=True)`` with the ``z`` blocks negated: ``w_ih = [ir | -iz | in]``,
  ``w_hh = [hr | -hz | hn]``, ``b = [b_ir | -b_iz | b_in]``, ``b_hn = hn``'s bias (linen;
  NNX's ``GRUCell`` has no recurrent bias, so ``b_hn = 0``).  Carry: ``h`` in both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from jrnn.base import Cell, LSTMState, Params, RNNState
from jrnn.cells import gru, lstm

__all__ = ["carry_from_flax", "carry_to_flax", "from_flax"]

_LSTM_TYPES = (nn.LSTMCell, nn.OptimizedLSTMCell, nnx.LSTMCell, nnx.OptimizedLSTMCell)
_GRU_TYPES = (nn.GRUCell, nnx.GRUCell)


def _kind(module: Any, where: str) -> str:
    if isinstance(module, _LSTM_TYPES):
        kind = "lstm"
    elif isinstance(module, _GRU_TYPES):
        kind = "gru"
    else:
        raise TypeError(
            f"{where}: unsupported module {type(module).__module__}.{type(module).__name__}; "
            f"expected flax.linen or flax.nnx LSTMCell, OptimizedLSTMCell or GRUCell"
        )
    if module.gate_fn is not jax.nn.sigmoid or module.activation_fn is not jnp.tanh:
        raise ValueError(
            f"{where}: only Flax's default gate_fn=sigmoid and activation_fn=tanh map to a "
            f"jrnn cell; got gate_fn={module.gate_fn!r}, activation_fn={module.activation_fn!r}"
        )
    return kind


def _get(tree: Mapping[str, Any], name: str, leaf: str, where: str) -> jax.Array:
    try:
        return jnp.asarray(tree[name][leaf])
    except (KeyError, TypeError) as e:
        raise ValueError(
            f"{where}: `params` has no {name}/{leaf}; expected the params of a Flax "
            f"LSTMCell or GRUCell (variables['params']), got keys {sorted(tree)}"
        ) from e


def _value(var: Any) -> jax.Array:
    return jnp.asarray(var[...])


def _lstm_params(module: Any, params: Any, where: str) -> Params:
    if isinstance(module, nnx.OptimizedLSTMCell):
        return {
            "w_ih": _value(module.dense_i.kernel),
            "w_hh": _value(module.dense_h.kernel),
            "b": _value(module.dense_h.bias),
        }
    if isinstance(module, nnx.LSTMCell):
        inputs = [module.ii, module.if_, module.ig, module.io]
        hidden = [module.hi, module.hf, module.hg, module.ho]
        return {
            "w_ih": jnp.concatenate([_value(m.kernel) for m in inputs], axis=1),
            "w_hh": jnp.concatenate([_value(m.kernel) for m in hidden], axis=1),
            "b": jnp.concatenate([_value(m.bias) for m in hidden]),
        }
    return {
        "w_ih": jnp.concatenate([_get(params, f"i{g}", "kernel", where) for g in "ifgo"], 1),
        "w_hh": jnp.concatenate([_get(params, f"h{g}", "kernel", where) for g in "ifgo"], 1),
        "b": jnp.concatenate([_get(params, f"h{g}", "bias", where) for g in "ifgo"]),
    }


def _gru_params(module: Any, params: Any, where: str) -> Params:
    if isinstance(module, nnx.GRUCell):
        w_ih, w_hh = _value(module.dense_i.kernel), _value(module.dense_h.kernel)
        b = _value(module.dense_i.bias)
        (ir, iz, in_), (hr, hz, hn) = jnp.split(w_ih, 3, 1), jnp.split(w_hh, 3, 1)
        br, bz, bn = jnp.split(b, 3)
        b_hn = jnp.zeros_like(bn)
    else:
        ir, iz, in_ = (_get(params, f"i{g}", "kernel", where) for g in "rzn")
        hr, hz, hn = (_get(params, f"h{g}", "kernel", where) for g in "rzn")
        br, bz, bn = (_get(params, f"i{g}", "bias", where) for g in "rzn")
        b_hn = _get(params, "hn", "bias", where)
    # Flax's z is jrnn's 1 - z: negate its blocks (σ(-a) = 1 - σ(a)).
    return {
        "w_ih": jnp.concatenate([ir, -iz, in_], axis=1),
        "w_hh": jnp.concatenate([hr, -hz, hn], axis=1),
        "b": jnp.concatenate([br, -bz, bn]),
        "b_hn": b_hn,
    }


def from_flax(module: Any, params: Any = None) -> tuple[Cell, Params]:
    """Converts a Flax recurrent cell and its parameters to a jrnn cell and params.

    Args:
      module: a ``flax.linen`` ``LSTMCell`` / ``OptimizedLSTMCell`` / ``GRUCell`` (then
        ``params`` is required: ``variables["params"]`` or ``variables``), or a
        ``flax.nnx`` ``LSTMCell`` / ``OptimizedLSTMCell`` / ``GRUCell`` (parameters are read
        from the module; ``params`` must be ``None``).
      params: the linen cell's parameters.

    Returns:
      ``(cell, jrnn_params)``: ``jrnn.lstm(H)`` or ``jrnn.gru(H, reset_after=True)`` (with
      the module's ``dtype`` as compute dtype and the parameters' dtype as ``param_dtype``)
      and ``{"w_ih": [I, kH], "w_hh": [H, kH], "b": [kH]}`` (plus ``b_hn`` for the GRU).

    Raises:
      TypeError: an unsupported module.
      ValueError: non-default gate/activation functions, or parameters that are not the
        module's (the message names the parameter).

    Examples:
      >>> import jax, jax.numpy as jnp, flax.linen as nn, numpy as np
      >>> module = nn.LSTMCell(features=4)
      >>> x = jnp.ones((2, 3))                                     # [batch, features]
      >>> carry = module.initialize_carry(jax.random.key(0), x.shape)
      >>> variables = module.init(jax.random.key(1), carry, x)
      >>> cell, params = from_flax(module, variables)
      >>> params["w_ih"].shape, params["w_hh"].shape                # [I, 4H], [H, 4H]
      ((3, 16), (4, 16))
      >>> (c, h), y = module.apply(variables, carry, x)
      >>> _, y2 = cell.step(params, carry_from_flax(module, carry), x)
      >>> bool(np.allclose(y, y2, atol=1e-6))
      True
    """
    where = "from_flax"
    kind = _kind(module, where)
    is_nnx = isinstance(module, nnx.Module)
    if is_nnx and params is not None:
        raise ValueError(f"{where}: an NNX module holds its parameters; do not pass `params`")
    if not is_nnx:
        if not isinstance(params, Mapping):
            raise ValueError(
                f"{where}: a linen {type(module).__name__} needs its `params` "
                f"(variables['params']), got {type(params).__name__}"
            )
        if "params" in params:
            params = params["params"]
    p = (
        _lstm_params(module, params, where)
        if kind == "lstm"
        else _gru_params(module, params, where)
    )
    hidden = p["w_hh"].shape[0]
    num_gates = 4 if kind == "lstm" else 3
    for key, value in p.items():
        want = hidden if key == "b_hn" else num_gates * hidden
        if value.shape[-1] != want:
            raise ValueError(
                f"{where}: `params` have inconsistent shapes: the fused jrnn parameter "
                f"`{key}` must have last axis {want} (hidden size {hidden} from the recurrent "
                f"kernels), got shape {list(value.shape)}"
            )
    dtype = getattr(module, "dtype", None)
    param_dtype = p["w_ih"].dtype
    if kind == "lstm":
        cell = lstm(hidden, forget_bias=0.0, dtype=dtype, param_dtype=param_dtype)
    else:
        cell = gru(hidden, reset_after=True, dtype=dtype, param_dtype=param_dtype)
    return cell, p


def carry_from_flax(module: Any, carry: Any) -> LSTMState | RNNState:
    """Flax carry -> jrnn carry: LSTM ``(c, h)`` -> ``LSTMState(h, c)``; GRU ``h`` ->
    ``RNNState(h)`` (each ``[batch, H]``).

    Examples:
      >>> import jax.numpy as jnp, flax.linen as nn
      >>> state = carry_from_flax(nn.LSTMCell(features=4), (jnp.zeros((2, 4)), jnp.ones((2, 4))))
      >>> type(state).__name__, float(state.h[0, 0])
      ('LSTMState', 1.0)
    """
    if _kind(module, "carry_from_flax") == "lstm":
        c, h = carry
        return LSTMState(h, c)
    return RNNState(carry)


def carry_to_flax(module: Any, carry: LSTMState | RNNState) -> Any:
    """jrnn carry -> Flax carry (the inverse of :func:`carry_from_flax`).

    Examples:
      >>> import jax.numpy as jnp, flax.linen as nn
      >>> from jrnn import LSTMState
      >>> c, h = carry_to_flax(nn.LSTMCell(features=4), LSTMState(jnp.ones(4), jnp.zeros(4)))
      >>> float(c[0]), float(h[0])
      (0.0, 1.0)
    """
    if _kind(module, "carry_to_flax") == "lstm":
        return (carry.c, carry.h)
    return carry.h
