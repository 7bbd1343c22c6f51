"""Converters from Flax's recurrent cells (linen and NNX) to jrnn cells.

``from_flax(module, params)`` returns ``(cell, jrnn_params)`` such that ``cell.step`` computes
what the Flax cell computes.  Supported: linen ``LSTMCell``, ``OptimizedLSTMCell`` (same
parameters as ``LSTMCell``), ``GRUCell``; NNX ``LSTMCell``, ``OptimizedLSTMCell``,
``GRUCell`` (parameters read from the module itself).  ``to_flax(cell, params)`` is the
inverse for linen: a ``jrnn.lstm`` (no peepholes, projection or layer norm) or a reset-after
``jrnn.gru`` (no layer norm) becomes a linen ``LSTMCell`` / ``GRUCell`` and its variables.

Gate functions: Flax's ``gate_fn`` is jrnn's ``gate_fn`` and Flax's ``activation_fn`` is
jrnn's ``activation`` (the LSTM's candidate and output function, the GRU's candidate).  A
function jrnn knows by name ([`jrnn.cells.ACTIVATIONS`][]: ``jax.nn.sigmoid``,
``jax.nn.hard_sigmoid``, ``jnp.tanh``, ``jax.nn.relu``, ``jax.nn.gelu``) maps to that name;
``from_flax`` passes any other callable on to the jrnn cell as it is.  The GRU's ``z`` is
negated on the way (below), which is exact only for a gate function with
``gate_fn(-a) = 1 - gate_fn(a)``: ``sigmoid`` and ``hard_sigmoid``; a Flax GRU with another
``gate_fn`` raises.  ``to_flax`` exports only named functions (a jrnn cell keeps a custom
callable's name, not the callable).

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
from jrnn.cells import ACTIVATIONS, gru, lstm
from jrnn.checks import check_params
from jrnn.interop._common import cell_info, float_dtype

__all__ = ["carry_from_flax", "carry_to_flax", "from_flax", "to_flax"]

_LSTM_TYPES = (nn.LSTMCell, nn.OptimizedLSTMCell, nnx.LSTMCell, nnx.OptimizedLSTMCell)
_GRU_TYPES = (nn.GRUCell, nnx.GRUCell)


_SYMMETRIC_GATES = ("hard_sigmoid", "sigmoid")
"""Gate functions with ``g(-a) = 1 - g(a)``: the GRU's negated ``z`` is exact only for them."""


def _kind(module: Any, where: str) -> str:
    if isinstance(module, _LSTM_TYPES):
        return "lstm"
    if isinstance(module, _GRU_TYPES):
        return "gru"
    raise TypeError(
        f"{where}: unsupported module {type(module).__module__}.{type(module).__name__}; "
        f"expected flax.linen or flax.nnx LSTMCell, OptimizedLSTMCell or GRUCell"
    )


def _jrnn_fn(fn: Any) -> Any:
    """A Flax function as a jrnn ``gate_fn``/``activation``: its name if jrnn knows it."""
    for name, known in ACTIVATIONS.items():
        if fn is known:
            return name
    return fn


def _functions(module: Any, kind: str, where: str) -> tuple[Any, Any]:
    """``(gate_fn, activation)`` for the jrnn cell of ``module``."""
    gate_fn, activation = _jrnn_fn(module.gate_fn), _jrnn_fn(module.activation_fn)
    if kind == "gru" and gate_fn not in _SYMMETRIC_GATES:
        raise ValueError(
            f"{where}: a Flax GRUCell's gate_fn must be one of {list(_SYMMETRIC_GATES)} "
            f"(jrnn's z is Flax's 1 - z, exact only when gate_fn(-a) = 1 - gate_fn(a)); got "
            f"gate_fn={module.gate_fn!r}"
        )
    return gate_fn, activation


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
      the module's ``dtype`` as compute dtype, the parameters' dtype as ``param_dtype``, and
      the module's ``gate_fn``/``activation_fn`` as ``gate_fn``/``activation``, by name where
      jrnn has one) and ``{"w_ih": [I, kH], "w_hh": [H, kH], "b": [kH]}`` (plus ``b_hn``
      for the GRU).

    Raises:
      TypeError: an unsupported module.
      ValueError: a GRU whose ``gate_fn`` is not ``sigmoid``/``hard_sigmoid`` (see the module
        docstring), or parameters that are not the module's (the message names the
        parameter).

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
      >>> hard = nn.GRUCell(features=4, gate_fn=nn.hard_sigmoid, activation_fn=nn.relu)
      >>> from_flax(hard, hard.init(jax.random.key(1), jnp.zeros((2, 4)), x))[0]
      gru(hidden_size=4, reset_after=True, layer_norm=False, gate_fn=hard_sigmoid,
          activation=relu, dtype=None, param_dtype=float32)
    """
    where = "from_flax"
    kind = _kind(module, where)
    gate_fn, activation = _functions(module, kind, where)
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
    fns = {"gate_fn": gate_fn, "activation": activation}
    if kind == "lstm":
        cell = lstm(hidden, forget_bias=0.0, dtype=dtype, param_dtype=param_dtype, **fns)
    else:
        cell = gru(hidden, reset_after=True, dtype=dtype, param_dtype=param_dtype, **fns)
    return cell, p


def to_flax(cell: Cell, params: Params) -> tuple[nn.Module, dict[str, Any]]:
    """Converts a jrnn cell and its parameters to a linen cell and its variables.

    The inverse of `from_flax` for linen: ``module.apply(variables, carry, x)``
    computes what ``cell.step(params, carry, x)`` computes (carries converted by
    `carry_to_flax` / `carry_from_flax`).

    Args:
      cell: a ``jrnn.lstm`` without peepholes, projection or layer norm, or a
        ``jrnn.gru(H, reset_after=True)`` without layer norm (Flax's GRU is the reset-after
        form), with named ``gate_fn``/``activation`` (the GRU's ``gate_fn`` ``sigmoid`` or
        ``hard_sigmoid``).
      params: its parameters, ``{"w_ih": [I, kH], "w_hh": [H, kH], "b": [kH]}`` (plus
        ``b_hn [H]`` for the GRU).

    Returns:
      ``(module, variables)``: ``nn.LSTMCell(H)`` or ``nn.GRUCell(H)`` with the cell's
      functions, ``dtype`` and the parameters' dtype as ``param_dtype``, and
      ``{"params": {...}}`` in Flax's layout (per-gate ``i*``/``h*`` kernels and biases;
      the GRU's ``z`` blocks negated).

    Raises:
      ValueError: a cell Flax has no equivalent of, a custom function, or params that are
        not the cell's.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np, jrnn
      >>> cell = jrnn.lstm(4, gate_fn="hard_sigmoid", activation="relu")
      >>> params = cell.init(jax.random.key(0), 3)
      >>> module, variables = to_flax(cell, params)
      >>> module.gate_fn is jax.nn.hard_sigmoid, sorted(variables["params"])[:3]
      (True, ['hf', 'hg', 'hi'])
      >>> carry, x = cell.initial_carry(params, (2,)), jnp.ones((2, 3))
      >>> _, y = cell.step(params, carry, x)
      >>> _, y_flax = module.apply(variables, carry_to_flax(module, carry), x)
      >>> bool(np.allclose(y, y_flax, atol=1e-6))
      True
    """
    where = "to_flax"
    info = cell_info(cell, where)
    config = dict(cell.config)
    unsupported = []
    if info.kind == "simple_rnn":
        unsupported.append("the Elman recurrence (a simple_rnn)")
    if info.peephole:
        unsupported.append("peepholes")
    if info.proj_size is not None:
        unsupported.append("a projection")
    if config.get("layer_norm"):
        unsupported.append("layer norm")
    if info.kind == "gru" and not info.reset_after:
        unsupported.append("Cho's reset-before form (Flax's GRUCell is reset-after)")
    if unsupported:
        raise ValueError(
            f"{where}: Flax has no cell with {', '.join(unsupported)}; got {cell.name}"
        )
    check_params(cell, params, where)
    fns = {}
    for arg in ("gate_fn", "activation"):
        name = config[arg]
        if name not in ACTIVATIONS:
            raise ValueError(
                f"{where}: the cell's `{arg}` is a custom function {name!r}; only the named "
                f"functions {sorted(ACTIVATIONS)} can be exported"
            )
        fns[arg] = ACTIVATIONS[name]
    if info.kind == "gru" and config["gate_fn"] not in _SYMMETRIC_GATES:
        raise ValueError(
            f"{where}: a GRU's gate_fn must be one of {list(_SYMMETRIC_GATES)} for Flax "
            f"(Flax's z is jrnn's 1 - z); got {config['gate_fn']!r}"
        )
    param_dtype = float_dtype(params, where)
    h = info.hidden_size

    def blocks(key: str) -> list[jax.Array]:
        a = jnp.asarray(params[key])
        return [a[..., k * h : (k + 1) * h] for k in range(a.shape[-1] // h)]

    w_ih, w_hh, b = blocks("w_ih"), blocks("w_hh"), blocks("b")
    kw: dict[str, Any] = dict(
        gate_fn=fns["gate_fn"], activation_fn=fns["activation"], param_dtype=param_dtype
    )
    if cell.dtype is not None:
        kw["dtype"] = cell.dtype
    tree: dict[str, dict[str, jax.Array]]
    if info.kind == "lstm":
        module = nn.LSTMCell(h, **kw)
        tree = {f"i{g}": {"kernel": w_ih[k]} for k, g in enumerate("ifgo")}
        tree |= {f"h{g}": {"kernel": w_hh[k], "bias": b[k]} for k, g in enumerate("ifgo")}
    else:
        module = nn.GRUCell(h, **kw)
        # jrnn's z is Flax's 1 - z: negate its blocks (gate_fn(-a) = 1 - gate_fn(a)).
        tree = {
            "ir": {"kernel": w_ih[0], "bias": b[0]},
            "iz": {"kernel": -w_ih[1], "bias": -b[1]},
            "in": {"kernel": w_ih[2], "bias": b[2]},
            "hr": {"kernel": w_hh[0]},
            "hz": {"kernel": -w_hh[1]},
            "hn": {"kernel": w_hh[2], "bias": jnp.asarray(params["b_hn"])},
        }
    return module, {"params": tree}


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
    """jrnn carry -> Flax carry (the inverse of `carry_from_flax`).

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
