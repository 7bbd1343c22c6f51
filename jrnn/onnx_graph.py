"""ONNX graphs of jrnn models, built from ONNX's native ``RNN``, ``LSTM`` and ``GRU``
operators (opset [`OPSET`][jrnn.onnx_graph.OPSET]), for runtimes that read ONNX (onnxruntime,
TensorRT, OpenVINO, ...) rather than StableHLO.

[`model_proto`][jrnn.onnx_graph.model_proto] builds the ``onnx.ModelProto`` of a
[`jrnn.models.Model`][] (``sequence_model`` or ``tagger`` with ``readout="all"``) with the
parameters inside as initializers. Its inputs and outputs are named and shaped like
[`jrnn.export.inference`][]'s (``tokens int32 [batch, time]`` or ``inputs float32
[batch, time, F]``, ``lengths int32 [batch]`` -> ``outputs [batch, time, O]`` and the final
carry's leaves ``carry.h``, ``carry.c`` or ``carry.<layer>.<direction>.h``, ...), ``batch``
and ``time`` symbolic (``dim_param``). [`jrnn.export.onnx`][] wraps it in an
[`jrnn.export.Artifact`][].

The graph, time-major inside::

    tokens [B, T] -> Transpose -> ids outside [0, V) to V -> Gather(embed + a zero row)
                                                            (or OneHot, embed_size=None)
    inputs [B, T, F] -> Transpose                                         -> x [T, B, I]
    lengths -> clamped to [0, T] -> sequence_lens
    per layer: RNN / LSTM / GRU (direction "forward" or "bidirectional"); Y [T, D, B, H]
               -> Transpose, Reshape -> [T, B, D*H] ([forward, backward], as jrnn.stack)
    readout:   MatMul(w_ho) + b_o -> Transpose -> outputs [B, T, O]
    carries:   Gather(Y_h, d) (and Y_c) per layer and direction -> [B, H]

The weights of each layer and direction are PyTorch's layout
(`jrnn.interop.torch.layer_to_torch`: transposed, the GRU's ``z`` blocks negated since
ONNX's ``z``, like PyTorch's, is jrnn's ``1 - z``) with the gate blocks reordered:

| cell | jrnn's gate blocks | ONNX's gate blocks | attributes |
|---|---|---|---|
| ``simple_rnn`` | ``h`` | ``h`` | ``activations``: ``Tanh`` or ``Relu`` |
| ``lstm`` | ``i, f, g, o``; ``w_peep`` ``i, f, o`` | ``i, o, f, c``; ``P`` ``i, o, f`` | defaults |
| ``gru`` | ``r, z, n`` | ``z, r, h``, ``z`` negated | ``linear_before_reset`` = ``reset_after`` |

``B`` is ``[Wb, Rb]``: the folded bias in ``Wb``, zeros in ``Rb`` except the reset-after
GRU's ``b_hn`` (``Rbh``). ONNX's operators agree with jrnn at padded steps (checked in
``tests/test_onnx.py`` against onnxruntime): the output is zero at ``t >= lengths`` (so the
readout there is ``b_o``), the final state is the one after each sequence's last valid
step, and the backward direction reads each sequence within its own length.

``onnx`` is imported when a graph is built (``pip install "jrnn[export]"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn.base import Cell, Params
from jrnn.export import inference
from jrnn.models import Model
from jrnn.stacks import Stack

__all__ = [
    "OPSET",
    "Native",
    "check_native",
    "layer_weights",
    "model_proto",
    "signature",
    "streaming_proto",
]

OPSET = 17
"""The ONNX opset of the graphs (its ``RNN``/``LSTM``/``GRU`` are opset 14's)."""

IR_VERSION = 8
"""The ONNX IR version of the files (opset 17's), readable by onnxruntime >= 1.13."""

WHERE = "jrnn.export.onnx"

_OPS = {"simple_rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
_GATE_ORDER = {"simple_rnn": (0,), "lstm": (0, 3, 1, 2), "gru": (1, 0, 2)}
"""ONNX's gate blocks as indices of jrnn's (and PyTorch's) blocks."""
_PEEPHOLE_ORDER = (0, 2, 1)  # ONNX's P rows i, o, f from jrnn's w_peep rows i, f, o
_ONNX_TYPES = {"float32": 1, "int32": 6}  # onnx.TensorProto.FLOAT, INT32


class Native(NamedTuple):
    """How a model's recurrence maps to ONNX's operators.

    Attributes:
      kind: the jrnn cell, ``"simple_rnn"``, ``"lstm"`` or ``"gru"``.
      op: the ONNX operator, ``"RNN"``, ``"LSTM"`` or ``"GRU"``.
      hidden_size: ``H``.
      num_layers: layers (1 for a single cell).
      num_directions: 2 for a bidirectional stack, else 1.
      attributes: the operator's other attributes (``activations``,
        ``linear_before_reset``).
    """

    kind: str
    op: str
    hidden_size: int
    num_layers: int
    num_directions: int
    attributes: dict[str, Any]


def _require_onnx() -> Any:
    """The ``onnx`` module, or an ``ImportError`` that says how to install it."""
    try:
        import onnx
    except ImportError as e:
        raise ImportError(
            f"{WHERE} needs the onnx package (pip install 'jrnn[export]'): {e}"
        ) from None
    return onnx


def _refusal(what: str, error: type[Exception] = ValueError) -> Exception:
    return error(
        f"{WHERE}: {what}, which ONNX's native RNN/LSTM/GRU operators do not compute; "
        'export it with format="stablehlo" (jrnn.export.stablehlo) instead'
    )


def _cell_kind(cell: Cell) -> str:
    """``simple_rnn``, ``lstm`` or ``gru`` for a built-in cell (not wrapped); else refuses."""
    gates = getattr(cell.fast, "gates", None)
    module, qualname = getattr(gates, "__module__", ""), getattr(gates, "__qualname__", "")
    kind = qualname.split(".")[0]
    if cell.noise is not None:
        wrapper = cell.name.split("(")[0]
        raise _refusal(f"the cell is a {wrapper} wrapper ({cell.name})")
    if module != "jrnn.cells" or kind not in _OPS:
        raise _refusal(f"the cell {cell.name} is not a built-in simple_rnn, lstm or gru", TypeError)
    return kind


def _check_options(kind: str, cell: Cell) -> dict[str, Any]:
    """The operator's attributes for the cell's options; refuses the options ONNX lacks."""
    config = dict(cell.config)
    unsupported = [
        f"{key}={config[key]!r}"
        for key, ok in (("layer_norm", False), ("proj_size", None))
        if key in config and config[key] != ok
    ]
    if kind != "simple_rnn":
        unsupported += [
            f"{key}={config[key]!r}"
            for key, ok in (("gate_fn", "sigmoid"), ("activation", "tanh"))
            if config[key] != ok
        ]
    elif config["activation"] not in ("tanh", "relu"):
        unsupported.append(f"activation={config['activation']!r} (only tanh or relu)")
    for key in ("dtype", "param_dtype"):
        if config[key] is not None and jnp.dtype(config[key]) != jnp.float32:
            unsupported.append(f"{key}={jnp.dtype(config[key]).name} (only float32)")
    if unsupported:
        raise _refusal(f"the cell {cell.name} has {', '.join(unsupported)}")
    if kind == "simple_rnn":
        return {"activations": [config["activation"].capitalize()]}
    if kind == "gru":
        return {"linear_before_reset": int(config["reset_after"])}
    return {}


def check_native(model: Any) -> Native:
    """What ONNX operator computes ``model``'s recurrence; refuses anything else.

    Covered: a [`jrnn.models.Model`][] with ``readout="all"`` whose ``rnn`` is a
    ``simple_rnn`` (tanh or relu), an ``lstm`` (peepholes or not) or a ``gru`` (either
    ``reset_after``), float32, or a [`jrnn.stack`][jrnn.stacks.stack] of one (any ``num_layers``,
    ``bidirectional``; its dropout acts only in training).

    Raises:
      TypeError: ``model`` is not a Model (an encoder-decoder, a feedback model) or its
        cell is not a built-in one (a custom cell, minGRU, minLSTM, LRU).
      ValueError: another readout, layer normalisation, a projection, other gate or
        activation functions, another dtype, a zoneout or recurrent-dropout wrapper.
        Each message names what is unsupported and says to use ``format="stablehlo"``.

    Examples:
      >>> import jrnn
      >>> check_native(jrnn.tagger(jrnn.gru(4, reset_after=True), 3, input_size=2,
      ...                          bidirectional=True))[1:]
      ('GRU', 4, 1, 2, {'linear_before_reset': 1})
      >>> check_native(jrnn.sequence_model(jrnn.mingru(4), 3, input_size=2))
      Traceback (most recent call last):
      ...
      TypeError: jrnn.export.onnx: the cell mingru(hidden_size=4, log_space=False, dtype=None, param_dtype=float32) is not a built-in simple_rnn, lstm or gru, which ONNX's native RNN/LSTM/GRU operators do not compute; export it with format="stablehlo" (jrnn.export.stablehlo) instead
    """  # noqa: E501
    if not isinstance(model, Model):
        raise _refusal(
            f"`model` must be a jrnn.models.Model (sequence_model, tagger), got "
            f"{type(model).__name__}",
            TypeError,
        )
    if model.readout != "all":
        raise _refusal(f"{model.name} reads out with readout={model.readout!r} (only 'all')")
    rnn = model.rnn
    if isinstance(rnn, Stack):
        cell, layers, dirs = rnn.cell, rnn.num_layers, 2 if rnn.bidirectional else 1
    else:
        cell, layers, dirs = rnn, 1, 1
    kind = _cell_kind(cell)
    attributes = _check_options(kind, cell)
    if "activations" in attributes:  # one per direction
        attributes["activations"] = attributes["activations"] * dirs
    return Native(kind, _OPS[kind], cell.hidden_size, layers, dirs, attributes)


def _reorder(a: np.ndarray, order: Sequence[int]) -> np.ndarray:
    """The gate blocks of ``a`` (along axis 0) in ``order``."""
    blocks = np.split(a, len(order), axis=0)
    return np.concatenate([blocks[i] for i in order], axis=0)


def layer_weights(kind: str, directions: Sequence[Params]) -> dict[str, np.ndarray]:
    """ONNX's inputs for one layer from jrnn's params of each direction.

    Returns ``W [D, kH, I]``, ``R [D, kH, H]``, ``B [D, 2kH]`` (``[Wb, Rb]``) and, for a
    peephole LSTM, ``P [D, 3H]``; float32.

    Examples:
      >>> import jax, jrnn
      >>> p = jrnn.lstm(2, peephole=True).init(jax.random.key(0), 3)
      >>> {k: v.shape for k, v in layer_weights("lstm", [p]).items()}
      {'W': (1, 8, 3), 'R': (1, 8, 2), 'B': (1, 16), 'P': (1, 6)}
    """
    from jrnn.interop.torch import layer_to_torch

    order = _GATE_ORDER[kind]
    out: dict[str, list[np.ndarray]] = {"W": [], "R": [], "B": []}
    for params in directions:
        arrays = {k: np.asarray(v, np.float32) for k, v in params.items()}
        torch = layer_to_torch(kind, arrays)
        out["W"].append(_reorder(torch["weight_ih"], order))
        out["R"].append(_reorder(torch["weight_hh"], order))
        biases = (_reorder(torch["bias_ih"], order), _reorder(torch["bias_hh"], order))
        out["B"].append(np.concatenate(biases))
        if "w_peep" in arrays:
            out.setdefault("P", []).append(arrays["w_peep"][list(_PEEPHOLE_ORDER)].reshape(-1))
    return {k: np.ascontiguousarray(np.stack(v)) for k, v in out.items()}


class _Graph:
    """Nodes and initializers of an ONNX graph under construction, with fresh names."""

    def __init__(self) -> None:
        onnx = _require_onnx()
        self.helper = onnx.helper
        self.numpy_helper = onnx.numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.count = 0

    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, array: Any, hint: str) -> str:
        name = self.fresh(hint)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], outputs: int | Sequence[str] = 1, **attrs):
        """Adds a node; returns its output's name (or the list, for several outputs)."""
        names = (
            [self.fresh(op_type.lower()) for _ in range(outputs)]
            if isinstance(outputs, int)
            else list(outputs)
        )
        self.nodes.append(self.helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if len(names) == 1 else names


def _time_major_inputs(g: _Graph, model: Model, params: Params, name: str) -> str:
    """The rnn's input ``[T, B, I]`` from the model's batch-major input ``name``."""
    perm = [1, 0] if model.vocab_size is not None else [1, 0, 2]
    return _embedded(g, model, params, g.op("Transpose", [name], perm=perm))


def _embedded(g: _Graph, model: Model, params: Params, x: str) -> str:
    """Time-major float inputs as they are, or token ids ``[T, B]`` embedded (ids outside
    ``[0, V)`` give the zero vector, as in jrnn)."""
    if model.vocab_size is None:
        return x
    vocab = model.vocab_size
    zero, top = g.const(np.int32(0), "zero"), g.const(np.int32(vocab), "vocab")
    valid = g.op("And", [g.op("GreaterOrEqual", [x, zero]), g.op("Less", [x, top])])
    ids = g.op("Where", [valid, x, top])  # out of range -> V: a zero row, an all-off one-hot
    if "embed" not in params:
        values = g.const(np.array([0.0, 1.0], np.float32), "one_hot_values")
        return g.op("OneHot", [ids, top, values], axis=-1)
    table = np.asarray(params["embed"], np.float32)
    table = np.concatenate([table, np.zeros((1, table.shape[1]), np.float32)])
    return g.op("Gather", [g.const(table, "embed"), ids], axis=0)


def _sequence_lens(g: _Graph, x_name: str, lengths: str) -> str:
    """``lengths`` clamped to ``[0, T]`` (jrnn clamps traced lengths so)."""
    steps = g.op("Cast", [g.op("Shape", [x_name], start=1, end=2)], to=_ONNX_TYPES["int32"])
    zero = g.const(np.int32(0), "zero")
    return g.op("Max", [g.op("Min", [lengths, steps]), zero])


def _layer(
    g: _Graph,
    native: Native,
    x: str,
    lens: str,
    weights: dict[str, np.ndarray],
    layer: int,
    initial: Sequence[str] = (),
) -> tuple[str, list[str]]:
    """One layer: ``(y [T, B, D*H], [h_0, (c_0,) h_1, ...])``, the final carry's leaves of
    each direction in jrnn's order.  ``initial``: the initial carry's leaves ``[B, H]`` of
    a one-direction layer (``h``, and ``c`` for an LSTM), or none (zeros); ``lens``: the
    ``sequence_lens`` input, or ``""`` (every sequence runs all ``T`` steps)."""
    names = {k: g.const(v, f"l{layer}_{k}") for k, v in weights.items()}
    states = [g.op("Unsqueeze", [leaf, _axis0(g)]) for leaf in initial]  # [1, B, H]
    states += [""] * (2 - len(states))  # initial_h, initial_c
    inputs = [x, names["W"], names["R"], names["B"], lens, *states]
    if native.kind != "lstm":
        inputs = inputs[:6]
    if "P" in names:
        inputs = [*inputs[:7], names["P"]]
    while inputs[-1] == "":  # trailing optional inputs left out
        inputs.pop()
    num_states = 2 if native.kind == "lstm" else 1
    outs = g.op(
        native.op,
        inputs,
        outputs=1 + num_states,
        hidden_size=native.hidden_size,
        direction="bidirectional" if native.num_directions == 2 else "forward",
        **native.attributes,
    )
    y = g.op("Transpose", [outs[0]], perm=[0, 2, 1, 3])  # [T, B, D, H]
    y = g.op("Reshape", [y, g.const(np.array([0, 0, -1], np.int64), "shape")])
    leaves = []
    for d in range(native.num_directions):
        index = g.const(np.int64(d), "direction")
        leaves += [g.op("Gather", [state, index], axis=0) for state in outs[1:]]
    return y, leaves


def _rnn_params(model: Model, params: Params) -> list[Sequence[Params]]:
    """``[layer][direction]`` param dicts, for a stack or a single cell."""
    rnn = params["rnn"]
    return [tuple(layer) for layer in rnn] if isinstance(model.rnn, Stack) else [(rnn,)]


def _check_params(model: Model, params: Params) -> None:
    """Runs the model's own checks on ``params`` (shapes only) and refuses non-float32."""
    if model.vocab_size is not None:
        spec = jax.ShapeDtypeStruct((1, 1), jnp.int32)
    else:
        spec = jax.ShapeDtypeStruct((1, 1, model.input_size), jnp.float32)
    out = jax.eval_shape(lambda p, xs: model.apply(p, xs)[0], params, spec)
    dtypes = {jnp.dtype(a.dtype).name for a in jax.tree.leaves(params)} | {out.dtype.name}
    if dtypes != {"float32"}:
        raise _refusal(f"{model.name} has parameters or outputs of dtype {sorted(dtypes)}")


def _value_info(g: _Graph, name: str, dtype: str, shape: Sequence[Any]) -> Any:
    return g.helper.make_tensor_value_info(name, _ONNX_TYPES[dtype], list(shape))


def model_proto(model: Model, params: Params) -> Any:
    """The ``onnx.ModelProto`` of ``model`` with ``params`` (see the module).

    Args:
      model: a [`jrnn.models.Model`][] that [`check_native`][jrnn.onnx_graph.check_native] accepts.
      params: its parameters (float32).

    Returns:
      the checked ``onnx.ModelProto`` (opset [`OPSET`][jrnn.onnx_graph.OPSET]);
      ``.SerializeToString()`` is the file.

    Examples:
      >>> import jax, jrnn, numpy as np, onnxruntime
      >>> model = jrnn.sequence_model(jrnn.lstm(4), 3, vocab_size=5, embed_size=2)
      >>> params = model.init(jax.random.key(0))
      >>> proto = model_proto(model, params)
      >>> [i.name for i in proto.graph.input], [o.name for o in proto.graph.output]
      (['tokens', 'lengths'], ['outputs', 'carry.h', 'carry.c'])
      >>> session = onnxruntime.InferenceSession(proto.SerializeToString(),
      ...                                        providers=["CPUExecutionProvider"])
      >>> tokens, lengths = np.array([[1, 2, 3]], np.int32), np.array([2], np.int32)
      >>> outputs, h, c = session.run(None, {"tokens": tokens, "lengths": lengths})
      >>> want, aux = model.apply(params, tokens, lengths=lengths)
      >>> bool(np.allclose(outputs, want, atol=1e-6) and np.allclose(c, aux.carry.c, atol=1e-6))
      True
    """
    native = check_native(model)
    _check_params(model, params)
    served = inference(model, params)
    g = _Graph()
    x_port, lengths_port = served.inputs
    x = _time_major_inputs(g, model, params, x_port.name)
    lens = _sequence_lens(g, x_port.name, lengths_port.name)
    leaves: list[str] = []
    for layer, directions in enumerate(_rnn_params(model, params)):
        x, finals = _layer(g, native, x, lens, layer_weights(native.kind, directions), layer)
        leaves += finals
    g.op("Transpose", [_readout(g, params, x)], outputs=[served.outputs[0]], perm=[1, 0, 2])
    output = (served.outputs[0], ("batch", "time", model.output_size))
    return _finish(g, model, params, served, output, leaves, served.outputs[1:])


def streaming_proto(model: Model, params: Params) -> Any:
    """The ``onnx.ModelProto`` of one step of ``model``, [`jrnn.export.streaming`][]'s
    function: ``(*carry, token_t) -> (*next carry, output_t)``, each layer's native
    operator run for one step from the carry given.

    Inputs are named as [`jrnn.export.streaming`][]'s (``carry.h``, ``carry.c``, ...,
    ``token int32 [batch]`` or ``input float32 [batch, F]``); ONNX needs every name once,
    so each carry output is its input's name prefixed ``next.`` (``next.carry.h``), in the
    same order, then ``output [batch, O]``.  Covers the models
    [`model_proto`][jrnn.onnx_graph.model_proto] covers, read in one direction.

    Examples:
      >>> import jax, jrnn, numpy as np, onnxruntime
      >>> model = jrnn.sequence_model(jrnn.gru(4), 3, vocab_size=5)
      >>> params = model.init(jax.random.key(0))
      >>> proto = streaming_proto(model, params)
      >>> [i.name for i in proto.graph.input], [o.name for o in proto.graph.output]
      (['carry.h', 'token'], ['next.carry.h', 'output'])
      >>> session = onnxruntime.InferenceSession(proto.SerializeToString(),
      ...                                        providers=["CPUExecutionProvider"])
      >>> h = np.zeros((1, 4), np.float32)
      >>> outs = []
      >>> for token in (1, 4, 2):
      ...     h, out = session.run(None, {"carry.h": h, "token": np.array([token], np.int32)})
      ...     outs.append(out)
      >>> want, _ = model.apply(params, np.array([[1, 4, 2]]))
      >>> bool(np.allclose(np.stack(outs, 1), want, atol=1e-6))
      True
    """
    from jrnn.export import streaming

    native = check_native(model)
    _check_params(model, params)
    served = streaming(model, params)  # refuses a bidirectional model
    g = _Graph()
    *carry_ports, x_port = served.inputs
    x = _embedded(g, model, params, g.op("Unsqueeze", [x_port.name, _axis0(g)]))  # [1, B, I]
    per_layer = 2 if native.kind == "lstm" else 1
    leaves: list[str] = []
    for layer, directions in enumerate(_rnn_params(model, params)):
        initial = [p.name for p in carry_ports[layer * per_layer : (layer + 1) * per_layer]]
        weights = layer_weights(native.kind, directions)
        x, finals = _layer(g, native, x, "", weights, layer, initial)
        leaves += finals
    x = g.op("Squeeze", [x, _axis0(g)])  # [B, D*H]
    g.op("Identity", [_readout(g, params, x)], outputs=[served.outputs[-1]])
    output = (served.outputs[-1], ("batch", model.output_size))
    carry_names = [f"next.{name}" for name in served.outputs[:-1]]
    return _finish(g, model, params, served, output, leaves, carry_names, output_last=True)


def _axis0(g: _Graph) -> str:
    """The constant ``[0]``, the axes input of ``Unsqueeze``/``Squeeze``."""
    return g.const(np.array([0], np.int64), "axis0")


def _readout(g: _Graph, params: Params, x: str) -> str:
    """``x @ w_ho + b_o`` over the last axis of ``x``."""
    w_ho = g.const(np.asarray(params["w_ho"], np.float32), "w_ho")
    b_o = g.const(np.asarray(params["b_o"], np.float32), "b_o")
    return g.op("Add", [g.op("MatMul", [x, w_ho]), b_o])


def _finish(
    g: _Graph,
    model: Model,
    params: Params,
    served: Any,
    output: tuple[str, tuple[Any, ...]],
    leaves: Sequence[str],
    carry_names: Sequence[str],
    *,
    output_last: bool = False,
) -> Any:
    """The checked model of graph ``g``: ``served``'s inputs; the outputs ``output`` (its
    name and shape) and the carry ``leaves`` under ``carry_names``, the output first (or,
    ``output_last``, after the carry)."""
    onnx = _require_onnx()
    if len(carry_names) != len(leaves):  # pragma: no cover - a layout jrnn does not make
        raise AssertionError(f"{WHERE}: carry leaves {carry_names} vs {len(leaves)} states")
    for leaf, out_name in zip(leaves, carry_names, strict=True):
        g.op("Identity", [leaf], outputs=[out_name])
    sizes = _carry_sizes(model, params)
    carries = [
        _value_info(g, n, "float32", ("batch", size))
        for n, size in zip(carry_names, sizes, strict=True)
    ]
    out = [_value_info(g, output[0], "float32", output[1])]
    graph = g.helper.make_graph(
        g.nodes,
        "jrnn",
        [_value_info(g, p.name, p.dtype, p.shape) for p in served.inputs],
        carries + out if output_last else out + carries,
        initializer=g.initializers,
    )
    proto = g.helper.make_model(
        graph,
        opset_imports=[g.helper.make_opsetid("", OPSET)],
        producer_name="jrnn",
        doc_string=served.name,
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _carry_sizes(model: Model, params: Params) -> list[int]:
    """The feature size of each leaf of the final carry, in ``jax.tree`` order."""
    carry = jax.eval_shape(lambda p: model.initial_carry(p, (1,)), params)
    return [leaf.shape[-1] for leaf in jax.tree.leaves(carry)]


def signature(proto: Any) -> dict[str, list[dict[str, Any]]]:
    """The inputs and outputs of ``proto`` as [`jrnn.export.stablehlo`][]'s signature
    writes them: ``{"inputs": [{"name", "dtype", "shape"}], "outputs": [...]}``, symbolic
    dimensions as their names.

    Examples:
      >>> import jax, jrnn
      >>> model = jrnn.tagger(jrnn.simple_rnn(4), 3, input_size=2)
      >>> signature(model_proto(model, model.init(jax.random.key(0))))["outputs"][0]
      {'name': 'outputs', 'dtype': 'float32', 'shape': ['batch', 'time', 3]}
    """
    onnx = _require_onnx()

    def port(value: Any) -> dict[str, Any]:
        tensor = value.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        shape = [d.dim_param or d.dim_value for d in tensor.shape.dim]
        return {"name": value.name, "dtype": dtype, "shape": shape}

    return {
        "inputs": [port(v) for v in proto.graph.input],
        "outputs": [port(v) for v in proto.graph.output],
    }
