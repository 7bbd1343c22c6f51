"""Exact import and export of PyTorch's recurrent layers and cells.

``from_torch(module)`` turns ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` (any ``num_layers``,
``bidirectional``, ``batch_first``, ``bias``, and the LSTM's ``proj_size``) into a
``jrnn.stack`` and its params, and ``torch.nn.RNNCell`` / ``LSTMCell`` / ``GRUCell`` into a
cell and its params; ``to_torch`` is the inverse.  The mapping is exact (no fitting): per
layer and direction, with PyTorch's ``W [kH, in]`` and jrnn's ``x @ w`` convention,

============  ===========================================================================
jrnn          PyTorch
============  ===========================================================================
``w_ih``      ``weight_ih_l{k}{_reverse}.T`` (gate blocks in the same order)
``w_hh``      ``weight_hh_l{k}{_reverse}.T``
``b``         ``bias_ih + bias_hh`` (folded), except the GRU's ``n`` block: ``bias_in``
``b_hn``      the GRU's ``bias_hn`` (the ``n`` block of ``bias_hh``)
``w_proj``    ``weight_hr_l{k}{_reverse}.T`` (LSTM with ``proj_size``)
GRU ``z``     negated: PyTorch's ``z`` is jrnn's ``1 - z`` and ``σ(-a) = 1 - σ(a)``, so the
              ``z`` blocks of ``w_ih``, ``w_hh`` and ``b`` are minus PyTorch's
============  ===========================================================================

Gate orders agree (LSTM ``i, f, g, o``; GRU ``r, z, n``); a PyTorch GRU is always the
reset-after form, ``jrnn.gru(H, reset_after=True)``; ``nonlinearity="relu"`` is
``jrnn.simple_rnn(H, "relu")``.  Export writes the folded bias to ``bias_ih`` and zeros to
``bias_hh`` (the GRU's ``bias_hn`` goes to the ``n`` block of ``bias_hh``), so
``from_torch(to_torch(net, params))`` returns ``params`` bit for bit, and
``to_torch(*from_torch(m))`` computes what ``m`` computes (its ``bias_ih``/``bias_hh`` split
may differ; only their sum matters).

``bias=False`` modules import with all-zero ``b`` (and ``b_hn``); ``to_torch(...,
bias=False)`` exports to a bias-free module and raises unless those are all zero.

PyTorch is imported inside the functions, so ``import jrnn.interop`` works without it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from jrnn.base import Cell, LSTMState, Params, RNNState
from jrnn.cells import gru, lstm, simple_rnn
from jrnn.checks import check_params
from jrnn.interop._common import (
    CellInfo,
    cell_info,
    check_stack_params,
    float_dtype,
)
from jrnn.stacks import Stack, stack

__all__ = ["carry_from_torch", "carry_to_torch", "from_torch", "grads_from_torch", "to_torch"]

_TORCH_NAMES = {"simple_rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def _require_torch(where: str):
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"{where} needs PyTorch, which is not installed; install it with "
            f"`pip install 'jrnn[torch]'` (torch==2.13.0)"
        ) from e
    return torch


# --------------------------------------------------------------------------------------
# tensors <-> arrays


def _to_numpy(tensor: Any) -> np.ndarray:
    """A detached CPU copy of ``tensor`` as a NumPy array of the same dtype."""
    torch = _require_torch("jrnn.interop.from_torch")
    t = tensor.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.to(torch.float32).numpy().astype(jnp.bfloat16)
    return np.array(t.numpy(), copy=True)


def _to_tensor(array: Any, dtype: Any) -> Any:
    """``array`` as a CPU tensor of torch dtype ``dtype`` (bfloat16 via float32, exactly)."""
    torch = _require_torch("jrnn.interop.to_torch")
    a = np.asarray(array)
    if a.dtype == jnp.bfloat16:
        return torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(np.array(a, copy=True)).to(dtype)


def _torch_dtype(dtype: np.dtype, where: str) -> Any:
    torch = _require_torch(where)
    table = {
        np.dtype(np.float16): torch.float16,
        np.dtype(jnp.bfloat16): torch.bfloat16,
        np.dtype(np.float32): torch.float32,
        np.dtype(np.float64): torch.float64,
    }
    if np.dtype(dtype) not in table:
        raise ValueError(f"{where}: parameters of dtype {dtype} have no torch counterpart")
    return table[np.dtype(dtype)]


# --------------------------------------------------------------------------------------
# one layer and direction: the layout mapping (NumPy, exact)


def _blocks(a: np.ndarray, k: int, axis: int) -> list[np.ndarray]:
    return np.split(a, k, axis=axis)


def _layer_from_torch(
    kind: str,
    weight_ih: np.ndarray,
    weight_hh: np.ndarray,
    bias_ih: np.ndarray | None,
    bias_hh: np.ndarray | None,
    weight_hr: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """PyTorch tensors of one layer/direction (as arrays) -> jrnn params.

    Shapes: ``weight_ih [kH, I]``, ``weight_hh [kH, H or P]``, ``bias_* [kH]`` (``None``
    for ``bias=False``), ``weight_hr [P, H]``.  Returns ``w_ih [I, kH]``, ``w_hh [., kH]``,
    ``b [kH]`` (plus ``b_hn [H]`` for the GRU, ``w_proj [H, P]`` with ``weight_hr``).
    """
    width = weight_ih.shape[0]
    if bias_ih is None:
        bias_ih = np.zeros((width,), weight_ih.dtype)
    if bias_hh is None:
        bias_hh = np.zeros((width,), weight_ih.dtype)
    w_ih, w_hh = weight_ih.T, weight_hh.T
    if kind == "gru":
        # PyTorch's z is jrnn's 1 - z: negate the z blocks (exact).
        (ir, iz, in_), (hr, hz, hn) = _blocks(w_ih, 3, 1), _blocks(w_hh, 3, 1)
        (bir, biz, bin_), (bhr, bhz, bhn) = _blocks(bias_ih, 3, 0), _blocks(bias_hh, 3, 0)
        return {
            "w_ih": np.concatenate([ir, -iz, in_], axis=1),
            "w_hh": np.concatenate([hr, -hz, hn], axis=1),
            "b": np.concatenate([bir + bhr, -(biz + bhz), bin_]),
            "b_hn": np.array(bhn, copy=True),
        }
    params = {
        "w_ih": np.array(w_ih, copy=True),
        "w_hh": np.array(w_hh, copy=True),
        "b": bias_ih + bias_hh,
    }
    if weight_hr is not None:
        params["w_proj"] = np.array(weight_hr.T, copy=True)
    return params


def layer_to_torch(kind: str, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """jrnn params of one layer/direction -> PyTorch tensors (as arrays), the inverse of
    `_layer_from_torch`: the folded bias goes to ``bias_ih``, ``bias_hh`` is zero
    except the GRU's ``n`` block, which holds ``b_hn`` (zeros for a reset-before GRU, which
    has none).  [`jrnn.onnx_graph`][] reuses it: ONNX's ``W``, ``R``, ``B`` are PyTorch's
    with the gate blocks reordered.

    Examples:
      >>> import numpy as np
      >>> p = {"w_ih": np.ones((2, 3)), "w_hh": np.ones((1, 3)), "b": np.arange(3.0)}
      >>> t = layer_to_torch("gru", p)
      >>> t["weight_ih"].shape, t["bias_ih"].tolist(), t["bias_hh"].tolist()
      ((3, 2), [0.0, -1.0, 2.0], [0.0, 0.0, 0.0])
    """
    w_ih, w_hh, b = (np.asarray(params[k]) for k in ("w_ih", "w_hh", "b"))
    if kind == "gru":
        (ir, iz, in_), (hr, hz, hn) = _blocks(w_ih, 3, 1), _blocks(w_hh, 3, 1)
        br, bz, bn = _blocks(b, 3, 0)
        zeros = np.zeros_like(br)
        return {
            "weight_ih": np.concatenate([ir, -iz, in_], axis=1).T,
            "weight_hh": np.concatenate([hr, -hz, hn], axis=1).T,
            "bias_ih": np.concatenate([br, -bz, bn]),
            "bias_hh": np.concatenate([zeros, zeros, np.asarray(params.get("b_hn", zeros))]),
        }
    out = {"weight_ih": w_ih.T, "weight_hh": w_hh.T, "bias_ih": b, "bias_hh": np.zeros_like(b)}
    if "w_proj" in params:
        out["weight_hr"] = np.asarray(params["w_proj"]).T
    return out


def _to_jax(params: dict[str, np.ndarray]) -> Params:
    return {k: jnp.asarray(v) for k, v in params.items()}


# --------------------------------------------------------------------------------------
# import


def _make_cell(kind: str, hidden: int, param_dtype: Any, activation: str = "tanh", proj=None):
    if kind == "simple_rnn":
        return simple_rnn(hidden, activation, param_dtype=param_dtype)
    if kind == "lstm":
        # PyTorch stores no forget bias; forget_bias only affects a fresh cell.init.
        return lstm(hidden, forget_bias=0.0, proj_size=proj, param_dtype=param_dtype)
    return gru(hidden, reset_after=True, param_dtype=param_dtype)


def from_torch(module: Any) -> tuple[Stack, Any] | tuple[Cell, Params]:
    """Imports a PyTorch recurrent layer or cell, exactly.

    Args:
      module: ``torch.nn.RNN`` (``nonlinearity`` tanh or relu), ``torch.nn.LSTM``
        (``proj_size`` included), ``torch.nn.GRU`` (any ``num_layers``, ``bidirectional``,
        ``batch_first``, ``bias``, ``dropout``), or ``torch.nn.RNNCell`` / ``LSTMCell`` /
        ``GRUCell``.

    Returns:
      ``(net, params)`` with ``net = jrnn.stack(cell, num_layers, bidirectional, dropout)``
      and ``params[layer][direction]`` for the layers, or ``(cell, params)`` for the cells.
      Parameters keep the module's dtype.  ``batch_first`` is not part of the net:
      ``net.apply`` takes ``[batch, time, features]`` (``time_major=True`` for PyTorch's
      default ``[time, batch, features]``).

    Raises:
      TypeError: for any other module (e.g. a ``torch.nn.Transformer``), a subclass with its
        own ``forward``, or a module with forward hooks (either may compute something else).
      ValueError: parameters on the meta device, or of shapes the module's sizes do not
        give (the message names the parameter).
      ImportError: when PyTorch is not installed.

    Examples:
      >>> import jax.numpy as jnp, numpy as np, torch
      >>> module = torch.nn.LSTM(3, 4, num_layers=2, batch_first=True)
      >>> net, params = from_torch(module)
      >>> net.num_layers, params[1][0]["w_ih"].shape       # [layer][direction], x @ w
      (2, (4, 16))
      >>> x = torch.randn(2, 5, 3)                          # [batch, time, features]
      >>> ys, _ = net.apply(params, jnp.asarray(x.numpy()))
      >>> bool(np.allclose(ys, module(x)[0].detach().numpy(), atol=1e-5))
      True
    """
    where = "from_torch"
    torch = _require_torch(where)
    nn = torch.nn
    _check_importable(module, torch, where)
    if isinstance(module, nn.RNNBase):
        return _stack_from_torch(module, where)
    if isinstance(module, nn.RNNCell | nn.LSTMCell | nn.GRUCell):
        return _cell_from_torch(module, where)
    raise TypeError(
        f"{where}: unsupported module {type(module).__module__}.{type(module).__name__}; "
        f"expected torch.nn.RNN, LSTM, GRU, RNNCell, LSTMCell or GRUCell"
    )


_SUPPORTED = ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell")


def _check_importable(module: Any, torch: Any, where: str) -> None:
    """Refuses what would import silently wrong: a subclass with its own ``forward`` (or
    forward hooks), parameters on the meta device (no values)."""
    nn = torch.nn
    bases = [getattr(nn, name) for name in _SUPPORTED]
    base = next((b for b in bases if isinstance(module, b)), None)
    if base is None:
        return  # the caller raises its TypeError for unsupported modules
    name = f"{type(module).__module__}.{type(module).__qualname__}"
    if type(module).forward is not base.forward:
        raise TypeError(
            f"{where}: `module` is {name}, a subclass of torch.nn.{base.__name__} with its own "
            f"forward(); jrnn can import only what torch.nn.{base.__name__}.forward computes. "
            f"Import a plain torch.nn.{base.__name__} holding the same weights instead"
        )
    if module._forward_hooks or module._forward_pre_hooks:
        raise TypeError(
            f"{where}: `module` ({name}) has forward hooks, which change what it computes; "
            f"remove them (handle.remove()) before importing"
        )
    for pname, param in module.named_parameters():
        if param.is_meta:
            raise ValueError(
                f"{where}: `module.{pname}` is on the meta device (shape only, no values); "
                f"materialise the module first, e.g. module.to_empty(device='cpu') and load "
                f"its state_dict"
            )


def _check_torch_shape(name: str, array: np.ndarray, shape: tuple[int, ...], where: str) -> None:
    if tuple(array.shape) != tuple(shape):
        raise ValueError(
            f"{where}: `module.{name}` must have shape {list(shape)} (from the module's sizes), "
            f"got {list(array.shape)}"
        )


def _kind_of_mode(mode: str, where: str) -> tuple[str, str]:
    table = {
        "RNN_TANH": ("simple_rnn", "tanh"),
        "RNN_RELU": ("simple_rnn", "relu"),
        "LSTM": ("lstm", "tanh"),
        "GRU": ("gru", "tanh"),
    }
    if mode not in table:
        raise TypeError(f"{where}: unsupported recurrent mode {mode!r}; expected {sorted(table)}")
    return table[mode]


def _stack_from_torch(module: Any, where: str) -> tuple[Stack, Any]:
    kind, activation = _kind_of_mode(module.mode, where)
    proj = int(getattr(module, "proj_size", 0) or 0) or None
    num_dirs = 2 if module.bidirectional else 1
    layers = []
    gates = {"simple_rnn": 1, "lstm": 4, "gru": 3}[kind] * module.hidden_size
    out = proj or module.hidden_size
    for layer in range(module.num_layers):
        dirs = []
        in_size = module.input_size if layer == 0 else num_dirs * out
        shapes = {
            "weight_ih": (gates, in_size),
            "weight_hh": (gates, out),
            "bias_ih": (gates,),
            "bias_hh": (gates,),
            "weight_hr": (proj, module.hidden_size),
        }
        for d in range(num_dirs):
            sfx = f"_l{layer}" + ("_reverse" if d == 1 else "")

            def get(name, sfx=sfx, shapes=shapes):
                array = _to_numpy(getattr(module, name + sfx))
                _check_torch_shape(name + sfx, array, shapes[name], where)
                return array

            dirs.append(
                _layer_from_torch(
                    kind,
                    get("weight_ih"),
                    get("weight_hh"),
                    get("bias_ih") if module.bias else None,
                    get("bias_hh") if module.bias else None,
                    get("weight_hr") if proj else None,
                )
            )
        layers.append(tuple(_to_jax(p) for p in dirs))
    param_dtype = layers[0][0]["w_ih"].dtype
    cell = _make_cell(kind, module.hidden_size, param_dtype, activation, proj)
    net = stack(cell, module.num_layers, bool(module.bidirectional), float(module.dropout))
    return net, tuple(layers)


def _cell_from_torch(module: Any, where: str) -> tuple[Cell, Params]:
    torch = _require_torch(where)
    nn = torch.nn
    if isinstance(module, nn.LSTMCell):
        kind, activation = "lstm", "tanh"
    elif isinstance(module, nn.GRUCell):
        kind, activation = "gru", "tanh"
    else:
        kind, activation = "simple_rnn", module.nonlinearity
        if activation not in ("tanh", "relu"):
            raise ValueError(f"{where}: unsupported RNNCell nonlinearity {activation!r}")
    bias = module.bias
    gates = {"simple_rnn": 1, "lstm": 4, "gru": 3}[kind] * module.hidden_size
    shapes = {
        "weight_ih": (gates, module.input_size),
        "weight_hh": (gates, module.hidden_size),
        "bias_ih": (gates,),
        "bias_hh": (gates,),
    }

    def get(name):
        array = _to_numpy(getattr(module, name))
        _check_torch_shape(name, array, shapes[name], where)
        return array

    params = _layer_from_torch(
        kind,
        get("weight_ih"),
        get("weight_hh"),
        get("bias_ih") if bias else None,
        get("bias_hh") if bias else None,
    )
    params = _to_jax(params)
    cell = _make_cell(kind, module.hidden_size, params["w_ih"].dtype, activation)
    return cell, params


# --------------------------------------------------------------------------------------
# export


def _check_exportable(info: CellInfo, cell: Cell, where: str) -> None:
    if info.kind == "simple_rnn" and info.activation not in ("tanh", "relu"):
        raise ValueError(
            f"{where}: torch.nn.RNN supports only the tanh and relu nonlinearities; "
            f"{cell.name} uses {info.activation!r}"
        )
    config = dict(cell.config)
    if config.get("layer_norm"):
        raise ValueError(
            f"{where}: PyTorch's recurrent modules have no layer normalisation; {cell.name} "
            f"has layer_norm=True"
        )
    if info.kind != "simple_rnn" and (
        config.get("gate_fn", "sigmoid") != "sigmoid" or config.get("activation", "tanh") != "tanh"
    ):
        raise ValueError(
            f"{where}: PyTorch's LSTM and GRU use sigmoid gates and tanh; {cell.name} uses "
            f"gate_fn={config.get('gate_fn')!r}, activation={config.get('activation')!r}"
        )
    if info.peephole:
        raise ValueError(f"{where}: PyTorch has no peephole LSTM; {cell.name} has peepholes")
    if info.kind == "gru" and not info.reset_after:
        raise ValueError(
            f"{where}: PyTorch's GRU is the reset-after form; {cell.name} is reset-before "
            f"(Cho's GRU as in the lecture), which no PyTorch GRU computes. "
            f"Use jrnn.gru(H, reset_after=True)"
        )


def _export_dtype(cell: Cell, params: Any, where: str) -> Any:
    """The torch dtype for ``params``; a cell that computes in another dtype than it stores
    (``dtype=``) has no exact PyTorch counterpart."""
    dtype = float_dtype(params, where)
    if cell.dtype is not None and np.dtype(cell.dtype) != dtype:
        raise ValueError(
            f"{where}: {cell.name} computes in {np.dtype(cell.dtype)} but its params are "
            f"{dtype}; a PyTorch module computes in its parameters' dtype. Build the cell "
            f"with dtype=None (or cast the params) to export it exactly"
        )
    return _torch_dtype(dtype, where)


def _check_no_bias(params: Mapping[str, Any], where: str, name: str) -> None:
    for key in ("b", "b_hn"):
        if key in params and np.any(np.asarray(params[key]) != 0):
            raise ValueError(
                f"{where}: bias=False, but `{name}['{key}']` is not all zero; export with "
                f"bias=True (the default) to keep it"
            )


def to_torch(net: Stack | Cell, params: Any, *, bias: bool = True, batch_first: bool = True):
    """Exports a jrnn stack or cell and its params to the PyTorch module that computes the same.

    Args:
      net: a [`jrnn.stack`][jrnn.stacks.stack] of a ``simple_rnn`` (tanh or relu), an ``lstm`` (no
        peepholes; ``proj_size`` allowed) or a ``gru(reset_after=True)`` -> ``torch.nn.RNN``
        / ``LSTM`` / ``GRU`` with the same ``num_layers``, ``bidirectional`` and ``dropout``;
        or one such cell -> ``torch.nn.RNNCell`` / ``LSTMCell`` / ``GRUCell`` (a cell with
        ``proj_size`` has no PyTorch cell counterpart: export a stack of it instead).
      params: its params (``params[layer][direction]`` for a stack).
      bias: ``False`` exports a module with ``bias=False`` and requires every ``b`` (and
        ``b_hn``) to be exactly zero; ``True`` (default) always works.
      batch_first: the exported layer's ``batch_first`` (default ``True``, jrnn's
        batch-major layout); ignored for cells.

    Returns:
      A CPU ``torch.nn.Module`` in the params' dtype, in training mode as PyTorch builds it.

    Raises:
      ValueError: the cell has no PyTorch counterpart (peepholes, reset-before GRU, another
        activation, a projected cell, a compute ``dtype`` other than the params'),
        ``params`` do not match ``net``, or ``bias=False`` with a non-zero bias.
      TypeError: ``net`` is neither a Stack nor a Cell.

    Examples:
      >>> import jax, jrnn
      >>> net = jrnn.stack(jrnn.gru(4, reset_after=True), num_layers=1)
      >>> module = to_torch(net, net.init(jax.random.key(0), 3))
      >>> type(module).__name__, module.hidden_size, module.batch_first
      ('GRU', 4, True)
    """
    where = "to_torch"
    torch = _require_torch(where)
    nn = torch.nn
    if isinstance(net, Stack):
        info = cell_info(net.cell, where)
        _check_exportable(info, net.cell, where)
        input_size = check_stack_params(net, params, where)
        tdtype = _export_dtype(net.cell, params, where)
        if not bias:
            for layer, layer_params in enumerate(params):
                for d, p in enumerate(layer_params):
                    _check_no_bias(p, where, f"params[{layer}][{d}]")
        kwargs = dict(
            num_layers=net.num_layers,
            bias=bias,
            batch_first=batch_first,
            dropout=float(net.dropout),
            bidirectional=net.bidirectional,
            dtype=tdtype,
        )
        if info.kind == "simple_rnn":
            module = nn.RNN(input_size, info.hidden_size, nonlinearity=info.activation, **kwargs)
        elif info.kind == "lstm":
            module = nn.LSTM(input_size, info.hidden_size, proj_size=info.proj_size or 0, **kwargs)
        else:
            module = nn.GRU(input_size, info.hidden_size, **kwargs)
        with torch.no_grad():
            for layer, layer_params in enumerate(params):
                for d, p in enumerate(layer_params):
                    sfx = f"_l{layer}" + ("_reverse" if d == 1 else "")
                    _copy_into(module, layer_to_torch(info.kind, p), sfx, bias, tdtype)
        return module
    if isinstance(net, Cell):
        cell = net
        info = cell_info(cell, where)
        _check_exportable(info, cell, where)
        if info.proj_size is not None:
            raise ValueError(
                f"{where}: {cell.name} has a projection (proj_size={info.proj_size}) but "
                f"torch.nn.LSTMCell has none; export jrnn.stack(cell) to torch.nn.LSTM(proj_size=)"
            )
        input_size = check_params(cell, params, where)
        tdtype = _export_dtype(cell, params, where)
        if not bias:
            _check_no_bias(params, where, "params")
        if info.kind == "simple_rnn":
            module = nn.RNNCell(
                input_size, info.hidden_size, bias=bias, nonlinearity=info.activation, dtype=tdtype
            )
        elif info.kind == "lstm":
            module = nn.LSTMCell(input_size, info.hidden_size, bias=bias, dtype=tdtype)
        else:
            module = nn.GRUCell(input_size, info.hidden_size, bias=bias, dtype=tdtype)
        with torch.no_grad():
            _copy_into(module, layer_to_torch(info.kind, params), "", bias, tdtype)
        return module
    raise TypeError(f"{where}: expected a jrnn.Stack or jrnn.Cell, got {type(net).__name__}")


def _copy_into(module: Any, tensors: dict[str, np.ndarray], sfx: str, bias: bool, dtype) -> None:
    for name, array in tensors.items():
        if name.startswith("bias") and not bias:
            continue
        target = getattr(module, name + sfx)
        target.copy_(_to_tensor(array, dtype))


# --------------------------------------------------------------------------------------
# carries


def carry_from_torch(net: Stack | Cell, hx: Any) -> Any:
    """PyTorch's recurrent state -> jrnn carries for ``net``.

    Args:
      net: the stack or cell from `from_torch`.
      hx: for a layer ``h [L*D, *batch, H_out]`` or, for the LSTM, ``(h, c)`` with
        ``c [L*D, *batch, H]`` (index ``layer * D + direction``, as PyTorch's ``h_n``);
        for a cell ``h [*batch, H]`` or ``(h, c)``.

    Returns:
      Carries ``[layer][direction]`` of [`jrnn.LSTMState`][jrnn.base.LSTMState] /
      [`jrnn.RNNState`][jrnn.base.RNNState] (or one carry for a cell), in the tensors' dtype.

    Raises:
      ValueError: an LSTM state that is not a pair, or ``h`` / ``c`` / the layer axis of a
        shape the net does not give (the message names ``hx``).

    Examples:
      >>> import torch
      >>> module = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True)
      >>> net, _ = from_torch(module)
      >>> h0, c0 = torch.zeros(4, 2, 4), torch.ones(4, 2, 4)  # [layers * directions, B, H]
      >>> carries = carry_from_torch(net, (h0, c0))
      >>> len(carries), len(carries[0]), carries[1][1].c.shape
      (2, 2, (2, 4))
    """
    where = "carry_from_torch"
    _require_torch(where)
    cell = net.cell if isinstance(net, Stack) else net
    is_lstm = cell_info(cell, where).kind == "lstm"
    if is_lstm:
        if not isinstance(hx, tuple | list) or len(hx) != 2:
            raise ValueError(f"{where}: an LSTM state is a pair (h, c), got {type(hx).__name__}")
        h, c = (jnp.asarray(_to_numpy(t)) for t in hx)
    else:
        h, c = jnp.asarray(_to_numpy(hx)), None
    info = cell_info(cell, where)
    if h.ndim < 1 or h.shape[-1] != info.output_size:
        raise ValueError(
            f"{where}: `hx` (h) must have last axis {info.output_size} (the output size of "
            f"{cell.name}), got shape {list(h.shape)}"
        )
    if c is not None and (c.shape[-1] != info.hidden_size or c.shape[:-1] != h.shape[:-1]):
        raise ValueError(
            f"{where}: `hx` (c) must have shape {list(h.shape[:-1]) + [info.hidden_size]} "
            f"(h's leading axes, hidden size {info.hidden_size}), got {list(c.shape)}"
        )
    make = (lambda i: LSTMState(h[i], c[i])) if is_lstm else (lambda i: RNNState(h[i]))
    if not isinstance(net, Stack):
        return LSTMState(h, c) if is_lstm else RNNState(h)
    num_dirs = 2 if net.bidirectional else 1
    if h.shape[0] != net.num_layers * num_dirs:
        raise ValueError(
            f"{where}: `hx` must have num_layers * directions = {net.num_layers * num_dirs} "
            f"entries on its first axis, got shape {list(h.shape)}"
        )
    return tuple(
        tuple(make(layer * num_dirs + d) for d in range(num_dirs))
        for layer in range(net.num_layers)
    )


def carry_to_torch(net: Stack | Cell, carries: Any) -> Any:
    """jrnn carries -> PyTorch's state (the inverse of `carry_from_torch`).

    Returns ``h`` or ``(h, c)`` as CPU tensors, stacked ``[L*D, *batch, .]`` for a stack.

    Examples:
      >>> import torch
      >>> net, _ = from_torch(torch.nn.GRU(3, 4, num_layers=2))
      >>> h = torch.randn(2, 5, 4)                               # [layers, B, H]
      >>> bool(torch.equal(carry_to_torch(net, carry_from_torch(net, h)), h))
      True
    """
    where = "carry_to_torch"
    _require_torch(where)
    if isinstance(net, Stack):
        flat = [c for layer in carries for c in layer]
        leaves = [jnp.stack(parts) for parts in zip(*flat, strict=True)]
    else:
        leaves = list(carries)
    out = [_to_tensor(a, _torch_dtype(np.asarray(a).dtype, where)) for a in leaves]
    return tuple(out) if len(out) == 2 else out[0]


def grads_from_torch(module: Any) -> Any:
    """The gradients in ``module``'s ``.grad`` fields, mapped to jrnn's layout.

    The parameter map is linear, so the gradient of a jrnn parameter is the same map of
    PyTorch's gradients, with one difference: a folded bias ``b = bias_ih + bias_hh`` has
    the gradient of either (they are equal), not their sum.  Returns a pytree shaped like
    ``from_torch(module)[1]``; missing gradients count as zero (so do those of the
    all-zero ``b``/``b_hn`` of a ``bias=False`` module, which PyTorch does not have).

    Examples:
      >>> import torch
      >>> module = torch.nn.RNN(3, 4, batch_first=True)
      >>> module(torch.randn(2, 5, 3))[0].sum().backward()
      >>> grads = grads_from_torch(module)[0][0]                 # [layer][direction]
      >>> sorted(grads), grads["w_ih"].shape
      (['b', 'w_hh', 'w_ih'], (3, 4))
    """
    where = "grads_from_torch"
    torch = _require_torch(where)
    with torch.no_grad():
        clone = _zero_bias_hh_folded_clone(module, torch)
    return from_torch(clone)[1]


def _zero_bias_hh_folded_clone(module: Any, torch: Any) -> Any:
    """A deep copy of ``module`` whose parameters are ``module``'s gradients, with the
    folded part of every ``bias_hh`` zeroed (so folding yields ``grad(bias_ih)``)."""
    clone = copy.deepcopy(module)
    gru_like = isinstance(module, torch.nn.GRU | torch.nn.GRUCell)
    originals = dict(module.named_parameters())
    for name, p in clone.named_parameters():
        g = originals[name].grad
        p.copy_(torch.zeros_like(p) if g is None else g)
        if name.startswith("bias_hh"):
            if gru_like:
                h = p.shape[0] // 3
                p[: 2 * h] = 0
            else:
                p.zero_()
    return clone
