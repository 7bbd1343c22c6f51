"""Trained models out of jrnn: serialized StableHLO artifacts with symbolic batch and time,
their JSON signature, and the one-step function a server streams with.

A model's inference is first made a [`Served`][jrnn.export.Served] function: a pure function of
named arrays, the parameters inside it as constants, returning a flat tuple of named arrays (so
the artifact's inputs and outputs are plain arrays, and whoever runs it needs neither jrnn
nor its types):

* [`inference`][jrnn.export.inference]: the whole sequence. A [`jrnn.models.Model`][]
  (``sequence_model``, ``seq2vec``, ``tagger``): ``tokens [batch, time]`` (or
  ``inputs [batch, time, F]``) and ``lengths [batch]`` -> ``outputs`` and the final carry's
  leaves; an `jrnn.models.EncoderDecoder`: ``source [batch, source_time]`` and
  ``source_lengths`` (or ``vector [batch, F]``) -> the greedy decoding's ``tokens
  [batch, max_len]``, ``lengths``, ``scores``; a `jrnn.models.FeedbackModel`: the
  free-running ``outputs``.
* [`streaming`][jrnn.export.streaming]: one step of a [`jrnn.models.Model`][], ``(carry, token_t) ->
  (carry, output_t)``, with the initial carry of one sequence, so a server feeds one token
  (or one frame) at a time; its outputs equal the whole-sequence call's.

[`stablehlo`][jrnn.export.stablehlo] exports a [`Served`][jrnn.export.Served] with ``jax.export``
(``batch`` and ``time`` symbolic) into an [`Artifact`][jrnn.export.Artifact]: the serialized bytes
and the signature ``{"inputs": [{"name", "dtype", "shape"}], "outputs": [...]}``, symbolic
dimensions as strings. [`save`][jrnn.export.save] writes ``PATH`` and ``PATH.json``; JAX alone runs
it::

    exported = jax.export.deserialize(open(PATH, "rb").read())
    outputs = exported.call(*inputs)          # in the signature's order

[`onnx`][jrnn.export.onnx] builds an ONNX file of a [`jrnn.models.Model`][] instead, from ONNX's
native ``RNN``/``LSTM``/``GRU`` operators ([`jrnn.onnx_graph`][]): the same inputs and
outputs as [`inference`][jrnn.export.inference]'s, for onnxruntime and the other ONNX runtimes::

    session = onnxruntime.InferenceSession(open(PATH, "rb").read())
    outputs = session.run(None, {"tokens": tokens, "lengths": lengths})

Each signature says its ``"format"`` (``"stablehlo"`` or ``"onnx"``).  Serialization needs
``flatbuffers`` and [`onnx`][jrnn.export.onnx] needs ``onnx``; ``pip install "jrnn[export]"``
installs both, and ``onnxruntime`` to run the ONNX files.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn.base import Array, Params
from jrnn.decode import greedy_decode
from jrnn.encdec import EncoderDecoder
from jrnn.feedback import FeedbackModel
from jrnn.models import Model
from jrnn.stacks import Stack

__all__ = [
    "Artifact",
    "Port",
    "Served",
    "inference",
    "load",
    "onnx",
    "save",
    "stablehlo",
    "streaming",
]

Dim = int | str  # a concrete size, or the name of a symbolic dimension


class Port(NamedTuple):
    """One named input or output: ``dtype`` a NumPy name, ``shape`` sizes and names of
    symbolic dimensions (``"batch"``, ``"time"``, ``"source_time"``)."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]


class Served(NamedTuple):
    """A model's inference as a pure function of named arrays (parameters inside).

    Attributes:
      fn: ``fn(*inputs) -> tuple of outputs``, in the orders below.
      inputs: the [`Port`][jrnn.export.Port] of each argument.
      outputs: the name of each returned array.
      initial_carry: for a streaming step, ``{name: array}`` of one sequence's initial
        carry (a server broadcasts it over its batch); else ``None``.
      name: what it serves (for messages and the signature).
    """

    fn: Callable[..., tuple[Array, ...]]
    inputs: tuple[Port, ...]
    outputs: tuple[str, ...]
    initial_carry: dict[str, np.ndarray] | None
    name: str


class Artifact(NamedTuple):
    """A serialized ``jax.export.Exported`` (or an ONNX file) and its JSON-ready signature."""

    data: bytes
    signature: dict[str, Any]


def _leaf_names(prefix: str, tree: Any) -> list[str]:
    """``carry.h``, ``carry.0.1.c``, ... for the leaves of ``tree`` in ``jax.tree`` order."""
    names = []
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
        parts = [prefix]
        for key in path:
            for attr in ("name", "key", "idx"):
                if hasattr(key, attr):
                    parts.append(str(getattr(key, attr)))
                    break
        names.append(".".join(parts))
    return names


def _input_dtype(params: Params) -> str:
    """float64 for a float64 model, else float32: the dtype of its float inputs."""
    floats = [a.dtype for a in jax.tree.leaves(params) if jnp.issubdtype(a.dtype, jnp.floating)]
    return "float64" if jnp.dtype("float64") in floats else "float32"


def _sequence_port(vocab: int | None, size: int | None, params: Params, time: str) -> Port:
    if vocab is not None:
        return Port("tokens", "int32", ("batch", time))
    return Port("inputs", _input_dtype(params), ("batch", time, size))


def inference(model: Any, params: Params, *, max_len: int | None = None) -> Served:
    """The whole-sequence inference of ``model`` with ``params`` (see the module).

    Args:
      model: a [`jrnn.models.Model`][], `jrnn.models.EncoderDecoder` or
        `jrnn.models.FeedbackModel`.
      params: its parameters.
      max_len: the number of tokens an encoder-decoder generates (required for one).

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> model = jrnn.sequence_model(jrnn.gru(8), 5, vocab_size=5)
      >>> served = inference(model, model.init(jax.random.key(0)))
      >>> [p.name for p in served.inputs], served.outputs
      (['tokens', 'lengths'], ('outputs', 'carry.h'))
      >>> [a.shape for a in served.fn(jnp.zeros((2, 3), jnp.int32), jnp.array([3, 1]))]
      [(2, 3, 5), (2, 8)]
    """
    if isinstance(model, Model):
        port = _sequence_port(model.vocab_size, model.input_size, params, "time")
        carry = model.initial_carry(params, (1,))

        def run(xs, lengths):
            outputs, aux = model.apply(params, xs, lengths=lengths)
            return (outputs, *jax.tree.leaves(aux.carry))

        inputs = (port, Port("lengths", "int32", ("batch",)))
        return Served(run, inputs, ("outputs", *_leaf_names("carry", carry)), None, model.name)
    if isinstance(model, EncoderDecoder):
        if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1:
            raise ValueError(
                f"jrnn.export.inference: an encoder-decoder needs `max_len`, the number of "
                f"tokens to generate (a positive int), got {max_len!r}"
            )

        def decode(src, src_lengths=None):
            out = greedy_decode(model, params, src, src_lengths, max_len=max_len)
            return out.tokens, out.lengths, out.scores

        if model.src_vocab is None:  # vec2seq: one vector per sequence
            inputs = (Port("vector", _input_dtype(params), ("batch", model.src_size)),)
        else:
            source = _sequence_port(model.src_vocab, None, params, "source_time")
            inputs = (source._replace(name="source"), Port("source_lengths", "int32", ("batch",)))
        return Served(decode, inputs, ("tokens", "lengths", "scores"), None, model.name)
    if isinstance(model, FeedbackModel):

        def free(xs):
            return (model.apply(params, xs, feedback="free")[0],)

        port = _sequence_port(model.vocab_size, model.input_size, params, "time")
        return Served(free, (port,), ("outputs",), None, model.name)
    raise TypeError(
        "jrnn.export.inference: `model` must be a jrnn.models.Model, EncoderDecoder or "
        f"FeedbackModel, got {type(model).__name__}"
    )


def streaming(model: Model, params: Params) -> Served:
    """One step of ``model``: ``(*carry, token_t) -> (*carry, output_t)``, and the initial
    carry of one sequence.

    Fed a sequence one step at a time from the initial carry, the outputs are the
    whole-sequence call's outputs at each step (``readout="all"``; with ``"last"`` each
    step's output is the readout of the sequence ending there).  Only a
    [`jrnn.models.Model`][] whose recurrence runs forward (not a bidirectional stack)
    and whose readout is ``"all"`` or ``"last"`` streams.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> model = jrnn.sequence_model(jrnn.lstm(8), 5, vocab_size=5)
      >>> params = model.init(jax.random.key(0))
      >>> step = streaming(model, params)
      >>> [p.name for p in step.inputs], step.outputs
      (['carry.h', 'carry.c', 'token'], ('carry.h', 'carry.c', 'output'))
      >>> tokens = jnp.array([[1, 4, 2]])
      >>> carry = [jnp.asarray(a)[None] for a in step.initial_carry.values()]  # batch 1
      >>> outs = []
      >>> for t in range(3):
      ...     *carry, out = step.fn(*carry, tokens[:, t])
      ...     outs.append(out)
      >>> full, _ = model.apply(params, tokens)
      >>> bool(jnp.allclose(jnp.stack(outs, 1), full, atol=1e-6))
      True
    """
    where = "jrnn.export.streaming"
    if not isinstance(model, Model):
        raise TypeError(
            f"{where}: `model` must be a jrnn.models.Model (sequence_model, seq2vec, tagger), "
            f"got {type(model).__name__}"
        )
    if isinstance(model.rnn, Stack) and model.rnn.bidirectional:
        raise ValueError(
            f"{where}: {model.name} reads its sequences in both directions (a bidirectional "
            "stack): its outputs need the whole sequence and cannot be streamed"
        )
    if model.readout not in ("all", "last"):
        raise ValueError(
            f"{where}: {model.name} pools its outputs over the sequence "
            f"(readout={model.readout!r}); only readout 'all' or 'last' streams"
        )
    carry0 = model.initial_carry(params, ())
    names = _leaf_names("carry", carry0)
    treedef = jax.tree.structure(carry0)
    x_port = _sequence_port(model.vocab_size, model.input_size, params, "time")
    x_port = Port(
        "token" if model.vocab_size is not None else "input",
        x_port.dtype,
        tuple(d for d in x_port.shape if d != "time"),
    )
    carry_ports = tuple(
        Port(n, str(a.dtype), ("batch", *a.shape))
        for n, a in zip(names, jax.tree.leaves(carry0), strict=True)
    )

    def step(*args):
        *leaves, x_t = args
        carry = jax.tree.unflatten(treedef, leaves)
        out, aux = model.apply(params, x_t[:, None], carry=carry)
        out = out[:, 0] if model.readout == "all" else out
        return (*jax.tree.leaves(aux.carry), out)

    initial = {n: np.asarray(a) for n, a in zip(names, jax.tree.leaves(carry0), strict=True)}
    return Served(step, (*carry_ports, x_port), (*names, "output"), initial, model.name)


def _specs(served: Served) -> list[jax.ShapeDtypeStruct]:
    symbols = sorted({d for p in served.inputs for d in p.shape if isinstance(d, str)})
    scope = jax.export.SymbolicScope()
    dims = dict(
        zip(symbols, jax.export.symbolic_shape(", ".join(symbols), scope=scope), strict=True)
    )
    return [
        jax.ShapeDtypeStruct(tuple(dims.get(d, d) for d in p.shape), jnp.dtype(p.dtype))
        for p in served.inputs
    ]


def _shape(aval: Any) -> list[Dim]:
    return [d if isinstance(d, int) else str(d) for d in aval.shape]


def stablehlo(served: Served, *, vjp_order: int = 0) -> Artifact:
    """``served`` exported by ``jax.export`` with its symbolic dimensions, serialized.

    Args:
      served: from [`inference`][jrnn.export.inference] or [`streaming`][jrnn.export.streaming].
      vjp_order: how many orders of derivatives the artifact carries (``jax.grad`` through
        ``Exported.call`` needs 1).

    Returns:
      the [`Artifact`][jrnn.export.Artifact]: its ``data`` is what ``jax.export.deserialize`` reads;
      the ``signature`` names, dtypes and shapes of its inputs and outputs (symbolic dimensions
      as strings), and for a streaming step the initial carry of one sequence.

    Examples:
      >>> import jax, jrnn
      >>> model = jrnn.seq2vec(jrnn.gru(8), 3, vocab_size=5)
      >>> art = stablehlo(inference(model, model.init(jax.random.key(0))))
      >>> art.signature["inputs"][0], art.signature["outputs"][0]["shape"]
      ({'name': 'tokens', 'dtype': 'int32', 'shape': ['batch', 'time']}, ['batch', 3])
    """
    exported = jax.export.export(jax.jit(served.fn))(*_specs(served))
    outputs = [
        {"name": n, "dtype": str(a.dtype), "shape": _shape(a)}
        for n, a in zip(served.outputs, exported.out_avals, strict=True)
    ]
    signature: dict[str, Any] = {
        "model": served.name,
        "format": "stablehlo",
        "inputs": [
            {"name": p.name, "dtype": p.dtype, "shape": list(p.shape)} for p in served.inputs
        ],
        "outputs": outputs,
    }
    if served.initial_carry is not None:
        signature["initial_carry"] = {n: a.tolist() for n, a in served.initial_carry.items()}
    return Artifact(bytes(exported.serialize(vjp_order=vjp_order)), signature)


def onnx(model: Model, params: Params, *, streaming: bool = False) -> Artifact:
    """``model``'s whole-sequence inference (or, ``streaming``, its one-step function) as
    an ONNX file built from ONNX's native recurrent operators (opset 17;
    [`jrnn.onnx_graph`][]).

    Its inputs and outputs are [`inference`][jrnn.export.inference]'s: ``tokens int32
    [batch, time]`` (or ``inputs float32 [batch, time, F]``) and ``lengths int32 [batch]`` ->
    ``outputs [batch, time, O]`` and the final carry's leaves (``carry.h``, ``carry.c``,
    ``carry.<layer>.<direction>.h``, ...), ``batch`` and ``time`` symbolic.  With
    ``streaming``, [`streaming`][jrnn.export.streaming]'s: the carry's leaves and ``token int32
    [batch]`` (or ``input float32 [batch, F]``) -> the next carry's leaves, named ``next.carry.h``,
    ... (ONNX names each value once), and ``output [batch, O]``; the signature carries the
    initial carry of one sequence, as [`stablehlo`][jrnn.export.stablehlo]'s does.

    Covered (everything else raises, naming it, and points to [`stablehlo`][jrnn.export.stablehlo]):

    * models: [`jrnn.sequence_model`][jrnn.models.sequence_model] with ``readout="all"`` and
      [`jrnn.tagger`][jrnn.models.tagger], token inputs (an embedding table or one-hot) or float
      inputs, float32;
    * the recurrence: [`jrnn.simple_rnn`][jrnn.cells.simple_rnn] (``activation`` tanh or relu) ->
      ``RNN``; [`jrnn.lstm`][jrnn.cells.lstm] (peepholes or not; sigmoid and tanh) -> ``LSTM``;
      [`jrnn.gru`][jrnn.cells.gru] (``reset_after`` False or True; sigmoid and tanh) -> ``GRU``; a
      single cell or a [`jrnn.stack`][jrnn.stacks.stack] of one (any ``num_layers``,
      ``bidirectional``);
    * refused: ``layer_norm``, ``proj_size``, other gate or activation functions, other
      dtypes, zoneout and recurrent-dropout wrappers, custom cells, minGRU / minLSTM /
      LRU, readouts ``"last"``/``"mean"``/``"max"``, encoder-decoders, feedback models.

    Args:
      model: a [`jrnn.models.Model`][].
      params: its parameters.
      streaming: the one-step function instead of the whole sequence (a model read in one
        direction).

    Returns:
      the [`Artifact`][jrnn.export.Artifact]: ``data`` the ONNX file's bytes (``onnxruntime`` runs
      it; no JAX needed), ``signature`` as [`stablehlo`][jrnn.export.stablehlo]'s with ``"format":
      "onnx"``. [`save`][jrnn.export.save] writes it; [`load`][jrnn.export.load] is for StableHLO
      only.

    Examples:
      >>> import jax, jrnn, numpy as np, onnxruntime
      >>> model = jrnn.tagger(jrnn.gru(4), 3, input_size=2, bidirectional=True)
      >>> art = onnx(model, model.init(jax.random.key(0)))
      >>> art.signature["format"], [p["name"] for p in art.signature["outputs"]]
      ('onnx', ['outputs', 'carry.0.0.h', 'carry.0.1.h'])
      >>> session = onnxruntime.InferenceSession(art.data, providers=["CPUExecutionProvider"])
      >>> inputs = {"inputs": np.ones((2, 5, 2), np.float32), "lengths": np.array([5, 3])}
      >>> inputs["lengths"] = inputs["lengths"].astype(np.int32)
      >>> session.run(None, inputs)[0].shape
      (2, 5, 3)
    """
    from jrnn.onnx_graph import model_proto, signature, streaming_proto

    proto = (streaming_proto if streaming else model_proto)(model, params)
    sig: dict[str, Any] = {"model": model.name, "format": "onnx", **signature(proto)}
    if streaming:
        initial = jax.tree.leaves(model.initial_carry(params, ()))
        names = [p["name"] for p in sig["inputs"][:-1]]
        sig["initial_carry"] = {
            n: np.asarray(a).tolist() for n, a in zip(names, initial, strict=True)
        }
    return Artifact(proto.SerializeToString(), sig)


def save(artifact: Artifact, path: str | os.PathLike) -> Path:
    """Writes ``artifact.data`` to ``path`` and its signature to ``path.json``, each
    atomically (a temporary file renamed over the target).  Returns ``path``."""
    path = Path(path)
    for target, data in ((path, artifact.data), (Path(f"{path}.json"), None)):
        if data is None:
            data = (json.dumps(artifact.signature, indent=2) + "\n").encode()
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def load(path: str | os.PathLike) -> tuple[jax.export.Exported, dict[str, Any]]:
    """The ``jax.export.Exported`` saved at ``path`` and its signature (``path.json``).

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn, tempfile, os
      >>> model = jrnn.sequence_model(jrnn.gru(8), 2, input_size=3)
      >>> folder = tempfile.mkdtemp()
      >>> art = stablehlo(inference(model, model.init(jax.random.key(0))))
      >>> exported, sig = load(save(art, os.path.join(folder, "model.jax")))
      >>> exported.call(jnp.ones((4, 6, 3)), jnp.full((4,), 6, jnp.int32))[0].shape
      (4, 6, 2)
    """
    path = Path(path)
    exported = jax.export.deserialize(bytearray(path.read_bytes()))
    return exported, json.loads(Path(f"{path}.json").read_text())
