"""Models: recurrent networks with inputs and outputs, as pure functions over a param dict.

:func:`sequence_model` is the seed's Elman network end to end, with any cell or stack as the
recurrence::

    a(t) = b + W h(t-1) + U x(t)        (the rnn: a Cell or a Stack)
    h(t) = tanh(a(t))
    o(t) = c + V h(t)                   (the readout, here ``o_t = h_t @ w_ho + b_o``)
    ŷ(t) = softmax(o(t))                (applied by the loss / the sampler)

It reads either float features ``[batch, time, input_size]`` or integer tokens
``[batch, time]`` (through an embedding table, or one-hot vectors as in the seed), and
reads out either at every step (a language model or a tagger: ``[batch, time, output]``) or
once, at the last valid step of each sequence (many-to-one, e.g. the adding problem:
``[batch, output]``).  Carries go in and out, so truncated BPTT and sampling can continue a
sequence across calls.

The seed's "Recurrent Networks" slides, each a factory returning a ``NamedTuple`` of pure
functions over an explicit parameter pytree (like a :class:`jrnn.Cell`):

==================================  ==========================================================
slide                               factory
==================================  ==========================================================
multiple input, single output       :func:`seq2vec` (final state within lengths, or pooled)
single input, multiple output       :func:`vec2seq` (the vector as initial state and/or input)
same-length tagging, bi-directional :func:`tagger` (``bidirectional=True``)
teacher forcing networks            :func:`output_recurrent` (a: output recurrence only;
                                    b: hidden recurrence + output feedback); scheduled
                                    sampling in every decoder
sequence to sequence mapping        :func:`seq2seq` (encoder -> context -> decoder)
encoder-decoder with attention      :func:`seq2seq` with ``attention=`` (:mod:`jrnn.attention`)
==================================  ==========================================================

Encoder-decoders share one decoding interface (:class:`EncoderDecoder`: ``encode``,
``start``, ``step``) used by greedy, beam and sampled decoding in :mod:`jrnn.decode`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from jrnn.base import Cell
from jrnn.unroll import Stack, unroll

__all__ = [
    "READOUTS",
    "EncoderDecoder",
    "FeedbackModel",
    "Model",
    "output_recurrent",
    "seq2seq",
    "seq2vec",
    "sequence_model",
    "tagger",
    "vec2seq",
]


READOUTS = ("all", "last", "mean", "max")

Array = jax.Array
Params = Any
Carry = Any


class Model(NamedTuple):
    """A model as pure functions over an explicit parameter dict.

    Attributes:
      init: ``init(key) -> params``.
      apply: ``apply(params, xs, carry=None, lengths=None, key=None) -> (outputs, carry)``;
        ``key`` switches on dropout (training only).
      initial_carry: ``initial_carry(params, batch_shape=()) -> carry`` (zeros).
      rnn: the :class:`jrnn.Cell` or :class:`jrnn.Stack` inside.
      input_size: feature size of float inputs (``None`` for token inputs).
      vocab_size: number of token ids of integer inputs (``None`` for float inputs).
      output_size: size of the readout ``o``.
      readout: ``"all"`` (every step), ``"last"`` (the last valid step), ``"mean"`` or
        ``"max"`` (pooled over the valid steps).
      name: a short description.
    """

    init: Callable[[jax.Array], Params]
    apply: Callable[..., tuple[Array, Carry]]
    initial_carry: Callable[..., Carry]
    rnn: Cell | Stack
    input_size: int | None
    vocab_size: int | None
    output_size: int
    readout: str
    name: str


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"sequence_model: `{name}` must be a positive int, got {value!r}")
    return value


def sequence_model(
    rnn: Cell | Stack,
    output_size: int,
    *,
    input_size: int | None = None,
    vocab_size: int | None = None,
    embed_size: int | None = None,
    readout: Literal["all", "last", "mean", "max"] = "all",
    dropout: float = 0.0,
    param_dtype: Any = jnp.float32,
) -> Model:
    """The seed's RNN with a linear readout ``o = c + V h`` on top of any cell or stack.

    Exactly one of ``input_size`` (float inputs ``[..., T, input_size]``) and ``vocab_size``
    (integer tokens ``[..., T]``) is given.  Tokens are embedded by a table
    ``embed [vocab_size, embed_size]``, or, with ``embed_size=None``, fed as one-hot vectors
    (the seed's ``U x(t)`` with a one-hot ``x(t)``; the same function as a table, at the cost
    of a ``[..., T, vocab_size]`` input).

    Parameters (``{"embed"?, "rnn", "w_ho", "b_o"}``): ``w_ho [H_out, output_size]`` is the
    seed's ``V`` (transposed, row-vector convention) and ``b_o [output_size]`` its ``c``;
    ``H_out`` is the rnn's output size (``2 H`` for a bidirectional stack).  ``w_ho`` starts
    ``lecun_normal``, ``b_o`` and ``embed`` as documented in :func:`init`.

    Args:
      rnn: a :class:`jrnn.Cell` (one layer) or a :class:`jrnn.Stack`.
      output_size: size of ``o`` (the vocabulary for a language model, 1 for regression).
      input_size: feature size of float inputs.
      vocab_size: number of token ids of integer inputs.
      embed_size: embedding width for token inputs (``None``: one-hot).
      readout: ``"all"``: ``o`` at every step, ``[..., T, output_size]``, zero-state
        padding steps give ``o = c``; ``"last"``: ``o`` at each sequence's last valid step
        (``lengths - 1``, or ``T - 1``), ``[..., output_size]``.  For a bidirectional stack,
        ``"last"`` reads the forward direction at the last valid step and the backward
        direction at step 0 (where it has read the whole sequence).  ``"mean"`` and
        ``"max"`` pool the rnn's outputs over the valid steps (``[..., output_size]``; an
        empty sequence pools to zeros).
      dropout: drop rate applied to the rnn's output before the readout, only when
        ``apply`` gets a ``key`` (training).  A stack's own ``dropout`` acts between its
        layers.
      param_dtype: storage dtype of ``embed``, ``w_ho`` and ``b_o``.

    Returns:
      A :class:`Model`.  ``apply(params, xs, carry=None, lengths=None, key=None)`` returns
      ``(o, carry_T)``; ``carry_T`` is the rnn's final carry (a Cell's carry, or a Stack's
      nested tuple), ready to be passed back as ``carry`` to continue the sequences.
    """
    output_size = _positive("output_size", output_size)
    if (input_size is None) == (vocab_size is None):
        raise ValueError("sequence_model: give exactly one of `input_size` and `vocab_size`")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"sequence_model: `dropout` must lie in [0, 1), got {dropout!r}")
    if readout not in READOUTS:
        raise ValueError(f"sequence_model: `readout` must be one of {READOUTS}, got {readout!r}")
    if vocab_size is not None:
        vocab_size = _positive("vocab_size", vocab_size)
        if embed_size is not None:
            embed_size = _positive("embed_size", embed_size)
        rnn_input = vocab_size if embed_size is None else embed_size
    else:
        input_size = _positive("input_size", input_size)
        if embed_size is not None:
            raise ValueError("sequence_model: `embed_size` needs token inputs (`vocab_size`)")
        rnn_input = input_size

    is_stack = isinstance(rnn, Stack)
    cell = rnn.cell if is_stack else rnn
    bidirectional = is_stack and rnn.bidirectional
    rnn_output = cell.output_size * (2 if bidirectional else 1)

    def init(key: jax.Array) -> Params:
        """``embed ~ N(0, 1)`` (unit-scale inputs), ``w_ho`` lecun_normal, ``b_o = 0``."""
        k_embed, k_rnn, k_out = jax.random.split(key, 3)
        params: dict[str, Any] = {"rnn": rnn.init(k_rnn, rnn_input)}
        if vocab_size is not None and embed_size is not None:
            params["embed"] = jax.random.normal(k_embed, (vocab_size, embed_size), param_dtype)
        params["w_ho"] = jax.nn.initializers.lecun_normal()(
            k_out, (rnn_output, output_size), param_dtype
        )
        params["b_o"] = jnp.zeros((output_size,), param_dtype)
        return params

    def initial_carry(params: Params, batch_shape: tuple[int, ...] = ()) -> Carry:
        """Zero carry of the rnn for ``batch_shape``."""
        return rnn.initial_carry(params["rnn"], tuple(batch_shape))

    def _inputs(params: Params, xs: Array) -> Array:
        xs = jnp.asarray(xs)
        if vocab_size is None:
            if xs.ndim < 2 or xs.shape[-1] != input_size:
                raise ValueError(
                    f"{name}.apply: `xs` must have shape [..., T, {input_size}], got "
                    f"{list(xs.shape)}"
                )
            return xs
        if not jnp.issubdtype(xs.dtype, jnp.integer):
            raise TypeError(f"{name}.apply: token `xs` must be integers, got dtype {xs.dtype}")
        if xs.ndim < 1:
            raise ValueError(f"{name}.apply: token `xs` must have shape [..., T], got []")
        if embed_size is None:
            return jax.nn.one_hot(xs, vocab_size, dtype=param_dtype)
        return jnp.take(params["embed"], xs, axis=0)

    def apply(
        params: Params,
        xs: Array,
        carry: Carry | None = None,
        lengths: Array | None = None,
        key: jax.Array | None = None,
    ) -> tuple[Array, Carry]:
        """``xs [..., T, input_size]`` or tokens ``[..., T]`` -> ``(o, carry_T)`` with
        ``o [..., T, output_size]`` (readout ``"all"``) or ``[..., output_size]``
        (``"last"``)."""
        inputs = _inputs(params, xs)
        rnn_key = out_key = None
        if key is not None:
            rnn_key, out_key = jax.random.split(key)
        if is_stack:
            hs, carry = rnn.apply(params["rnn"], inputs, carry, lengths=lengths, key=rnn_key)
        else:
            hs, carry = unroll(rnn, params["rnn"], inputs, carry=carry, lengths=lengths)
        if readout == "last":
            hs = _last(hs, lengths)
        elif readout in ("mean", "max"):
            hs = _pool(hs, lengths)
        if dropout > 0.0 and out_key is not None:
            keep = jax.random.bernoulli(out_key, 1.0 - dropout, hs.shape)
            hs = jnp.where(keep, hs / (1.0 - dropout), jnp.zeros_like(hs))
        dt = hs.dtype
        o = hs @ params["w_ho"].astype(dt) + params["b_o"].astype(dt)
        return o, carry

    def _last(hs: Array, lengths: Array | None) -> Array:
        num_steps = hs.shape[-2]
        if lengths is None:
            last = jnp.full(hs.shape[:-2], num_steps - 1, jnp.int32)
        else:
            last = jnp.maximum(jnp.asarray(lengths).astype(jnp.int32) - 1, 0)
        idx = last[..., None, None]
        h_fwd = jnp.take_along_axis(hs, idx, axis=-2)[..., 0, :]
        if not bidirectional:
            return h_fwd
        h_bwd = hs[..., 0, :]
        half = cell.output_size
        return jnp.concatenate([h_fwd[..., :half], h_bwd[..., half:]], axis=-1)

    def _pool(hs: Array, lengths: Array | None) -> Array:
        num_steps = hs.shape[-2]
        if lengths is None:
            lengths = jnp.full(hs.shape[:-2], num_steps, jnp.int32)
        lengths = jnp.asarray(lengths).astype(jnp.int32)
        valid = (jnp.arange(num_steps, dtype=jnp.int32) < lengths[..., None])[..., None]
        if readout == "mean":
            total = jnp.sum(jnp.where(valid, hs, jnp.zeros((), hs.dtype)), axis=-2)
            count = jnp.maximum(lengths, 1).astype(hs.dtype)[..., None]
            return total / count
        low = jnp.asarray(jnp.finfo(hs.dtype).min, hs.dtype)
        top = jnp.max(jnp.where(valid, hs, low), axis=-2)
        return jnp.where(lengths[..., None] > 0, top, jnp.zeros((), hs.dtype))

    kind = f"vocab={vocab_size}" if vocab_size is not None else f"input={input_size}"
    if vocab_size is not None:
        kind += ", one-hot" if embed_size is None else f", embed={embed_size}"
    rnn_name = (
        f"stack({cell.name}, layers={rnn.num_layers}, bidirectional={rnn.bidirectional})"
        if is_stack
        else cell.name
    )
    name = f"sequence_model({rnn_name}, {kind}, output={output_size}, readout={readout})"
    return Model(
        init=init,
        apply=apply,
        initial_carry=initial_carry,
        rnn=rnn,
        input_size=input_size,
        vocab_size=vocab_size,
        output_size=output_size,
        readout=readout,
        name=name,
    )


# ======================================================================================
# The seed's "Recurrent Networks" slides as models
# ======================================================================================


def _check_int(name: str, value: Any, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where}: `{name}` must be an int >= {minimum}, got {value!r}")
    return value


def _check_tokens(name: str, tokens: Any, vocab_size: int, where: str, rank: int) -> Array:
    """Integer tokens of rank ``rank``; values in ``[0, vocab_size)`` when concrete."""
    tokens = jnp.asarray(tokens)
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise TypeError(f"{where}: `{name}` must be integer token ids, got dtype {tokens.dtype}")
    if tokens.ndim != rank:
        layout = "[batch, time]" if rank == 2 else "[batch]"
        raise ValueError(f"{where}: `{name}` must have shape {layout}, got {list(tokens.shape)}")
    if not isinstance(tokens, jax.core.Tracer) and tokens.size:
        lo, hi = int(jnp.min(tokens)), int(jnp.max(tokens))
        if lo < 0 or hi >= vocab_size:
            raise ValueError(
                f"{where}: `{name}` holds token ids in [{lo}, {hi}] but the vocabulary has "
                f"{vocab_size} ids ([0, {vocab_size - 1}]): a vocabulary-size mismatch"
            )
    return tokens.astype(jnp.int32)


def _check_seq_lengths(lengths: Any, batch: int, num_steps: int, where: str, name: str) -> Array:
    """int ``[batch]`` lengths in ``[0, T]`` (checked when concrete)."""
    if lengths is None:
        return jnp.full((batch,), num_steps, jnp.int32)
    concrete = not isinstance(lengths, jax.core.Tracer)
    lengths = jnp.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"{where}: `{name}` must be integers, got dtype {lengths.dtype}")
    if lengths.shape != (batch,):
        raise ValueError(f"{where}: `{name}` must have shape [{batch}], got {list(lengths.shape)}")
    if concrete and lengths.size:
        lo, hi = int(jnp.min(lengths)), int(jnp.max(lengths))
        if lo < 0 or hi > num_steps:
            raise ValueError(
                f"{where}: `{name}` must lie in [0, T={num_steps}] (T the padded length), got "
                f"values in [{lo}, {hi}]"
            )
    return lengths.astype(jnp.int32)


def _dense_init(key: jax.Array, rows: int, cols: int, dtype: Any) -> Array:
    return jax.nn.initializers.lecun_normal()(key, (rows, cols), dtype)


def _as_stack(rnn: Cell | Stack) -> Stack:
    from jrnn.unroll import stack

    return rnn if isinstance(rnn, Stack) else stack(rnn)


# --------------------------------------------------------------------------------------
# multiple input, single output; same-length taggers


def seq2vec(
    rnn: Cell | Stack,
    num_outputs: int,
    *,
    vocab_size: int | None = None,
    input_size: int | None = None,
    embed_size: int | None = None,
    pool: Literal["last", "mean", "max"] = "last",
    dropout: float = 0.0,
    param_dtype: Any = jnp.float32,
) -> Model:
    """Multiple input, single output (the seed's sequence -> vector slide).

    The rnn reads the whole (padded) sequence and one readout ``o = c + V h`` maps a summary
    ``h`` of it to the output: the final state at each sequence's own last valid step
    (``pool="last"``; for a bidirectional stack the forward state at the last valid step and
    the backward state at step 0) or the mean or maximum of the outputs over the valid steps.

    Args:
      rnn: a :class:`jrnn.Cell` or :class:`jrnn.Stack`.
      num_outputs: classes (logits) or regression targets.
      vocab_size, input_size, embed_size: token or float inputs, as in :func:`sequence_model`.
      pool: ``"last"``, ``"mean"`` or ``"max"``.
      dropout, param_dtype: as in :func:`sequence_model`.

    Returns:
      A :class:`Model` whose ``apply(params, xs [B, T] or [B, T, I], lengths=...)`` returns
      ``(o [B, num_outputs], carry_T)``.
    """
    if pool not in ("last", "mean", "max"):
        raise ValueError(f"seq2vec: `pool` must be 'last', 'mean' or 'max', got {pool!r}")
    return sequence_model(
        rnn,
        num_outputs,
        input_size=input_size,
        vocab_size=vocab_size,
        embed_size=embed_size,
        readout=pool,
        dropout=dropout,
        param_dtype=param_dtype,
    )


def tagger(
    cell: Cell,
    num_tags: int,
    *,
    vocab_size: int | None = None,
    input_size: int | None = None,
    embed_size: int | None = None,
    bidirectional: bool = False,
    num_layers: int = 1,
    dropout: float = 0.0,
    param_dtype: Any = jnp.float32,
) -> Model:
    """A same-length sequence tagger: one output per input step.

    Unidirectional, ``o_t`` sees ``x_1..x_t``; bidirectional (the seed's "Bi-directional
    Networks" slide), ``o_t = c + V [h_t^fwd, h_t^bwd]`` sees the whole sequence: the forward
    state has read ``x_1..x_t`` and the backward state ``x_T..x_t`` (within each sequence's
    own length).

    Args:
      cell: the cell of every layer and direction.
      num_tags: size of the per-step output.
      vocab_size, input_size, embed_size: token or float inputs, as in :func:`sequence_model`.
      bidirectional: add a backward direction to every layer.
      num_layers: stacked layers.
      dropout: between layers and before the readout (training only).
      param_dtype: storage dtype of the embedding and the readout.

    Returns:
      A :class:`Model`: ``apply(params, xs, lengths=...) -> (o [B, T, num_tags], carries)``.
    """
    from jrnn.unroll import stack

    net = stack(cell, num_layers=num_layers, bidirectional=bidirectional, dropout=dropout)
    return sequence_model(
        net,
        num_tags,
        input_size=input_size,
        vocab_size=vocab_size,
        embed_size=embed_size,
        readout="all",
        dropout=dropout,
        param_dtype=param_dtype,
    )


# --------------------------------------------------------------------------------------
# teacher forcing networks


class FeedbackModel(NamedTuple):
    """A tagger whose recurrence runs through its own previous output (teacher forcing nets).

    Attributes:
      init: ``init(key) -> params``.
      apply: ``apply(params, xs, targets=None, *, feedback="teacher", sample_prob=0.0,
        key=None) -> logits [B, T, num_classes]``.  ``feedback="teacher"`` feeds the true
        previous output ``y(t-1) = targets[:, t-1]`` (teacher forcing, training);
        ``"free"`` feeds the model's own previous prediction ``argmax o(t-1)`` (free
        running, test time; ``targets`` not needed).  With ``feedback="teacher"`` and
        ``sample_prob = p > 0`` (and a ``key``), each step feeds the model's own
        prediction with probability ``p`` instead (scheduled sampling).
      step: ``step(params, carry, x_t, y_prev) -> (carry, o_t)`` with ``y_prev`` int ``[B]``.
      initial_carry: ``initial_carry(params, batch_shape) -> carry``.
      num_classes: ``C``.
      start: the class fed as ``y(0)`` before the first step.
      vocab_size, input_size: the inputs (one of them is ``None``).
      hidden_recurrence: whether ``h(t)`` also sees ``h(t-1)``.
      name: a short description.
    """

    init: Callable[[jax.Array], Params]
    apply: Callable[..., Array]
    step: Callable[..., tuple[Carry, Array]]
    initial_carry: Callable[..., Carry]
    num_classes: int
    start: int
    vocab_size: int | None
    input_size: int | None
    hidden_recurrence: bool
    name: str


def output_recurrent(
    num_classes: int,
    hidden_size: int,
    *,
    vocab_size: int | None = None,
    input_size: int | None = None,
    embed_size: int | None = None,
    cell: Cell | None = None,
    start: int = 0,
    param_dtype: Any = jnp.float32,
) -> FeedbackModel:
    """Teacher forcing networks: the recurrence goes through the previous *output*.

    (a) ``cell=None``: the seed's output-to-hidden recurrence network, with no
    hidden-to-hidden connection: the hidden state at ``t`` sees only the input and the
    previous output::

        h(t) = tanh(b + W y(t-1) + U x(t))      (row form: x_t @ w_xh + w_yh[y_{t-1}] + b)
        o(t) = c + V h(t)

    with ``y(t-1)`` one-hot (so ``W y(t-1)`` is a row of ``w_yh [C, H]``).  Trained with
    teacher forcing, the steps decouple: each ``o(t)`` depends on the data only, and
    training parallelises over time.  At test time the true ``y(t-1)`` is unknown and the
    network runs free, feeding back its own prediction.

    (b) ``cell`` given: hidden recurrence plus output feedback, ``h(t) = cell(h(t-1),
    [x(t), onehot(y(t-1))])`` (``hidden_size`` must equal the cell's).

    Args:
      num_classes: ``C``, the output classes (also the feedback alphabet).
      hidden_size: ``H``.
      vocab_size, input_size: token inputs ``[B, T]`` or float inputs ``[B, T, I]``.
      embed_size: embedding width of token inputs (``None``: one-hot).
      cell: ``None`` for (a); a :class:`jrnn.Cell` for (b).
      start: the class fed as ``y(0)`` (e.g. a BOS id), in ``[0, C)``.
      param_dtype: storage dtype.

    Returns:
      A :class:`FeedbackModel`.  Params: ``{"embed"?, "w_xh" [I, H], "w_yh" [C, H],
      "b" [H], "w_ho" [H, C], "b_o" [C]}`` for (a); ``{"embed"?, "cell", "w_ho", "b_o"}``
      for (b).  Causal: padding after a sequence's end does not change its valid outputs.
    """
    where = "output_recurrent"
    num_classes = _check_int("num_classes", num_classes, where)
    hidden_size = _check_int("hidden_size", hidden_size, where)
    if (input_size is None) == (vocab_size is None):
        raise ValueError(f"{where}: give exactly one of `input_size` and `vocab_size`")
    if not 0 <= start < num_classes:
        raise ValueError(
            f"{where}: `start` must lie in [0, num_classes={num_classes}), got {start}"
        )
    if vocab_size is not None:
        vocab_size = _check_int("vocab_size", vocab_size, where)
        if embed_size is not None:
            embed_size = _check_int("embed_size", embed_size, where)
        x_size = embed_size or vocab_size
    else:
        input_size = _check_int("input_size", input_size, where)
        if embed_size is not None:
            raise ValueError(f"{where}: `embed_size` needs token inputs (`vocab_size`)")
        x_size = input_size
    if cell is not None and cell.output_size != hidden_size:
        raise ValueError(
            f"{where}: `hidden_size` ({hidden_size}) must equal the cell's output size "
            f"({cell.output_size})"
        )

    def init(key: jax.Array) -> Params:
        """Kernels lecun_normal, biases zero, ``embed ~ N(0, 1)``."""
        k_e, k_x, k_y, k_o = jax.random.split(key, 4)
        params: dict[str, Any] = {}
        if vocab_size is not None and embed_size is not None:
            params["embed"] = jax.random.normal(k_e, (vocab_size, embed_size), param_dtype)
        if cell is None:
            params["w_xh"] = _dense_init(k_x, x_size, hidden_size, param_dtype)
            params["w_yh"] = _dense_init(k_y, num_classes, hidden_size, param_dtype)
            params["b"] = jnp.zeros((hidden_size,), param_dtype)
        else:
            params["cell"] = cell.init(k_x, x_size + num_classes)
        params["w_ho"] = _dense_init(k_o, hidden_size, num_classes, param_dtype)
        params["b_o"] = jnp.zeros((num_classes,), param_dtype)
        return params

    def initial_carry(params: Params, batch_shape: tuple[int, ...] = ()) -> Carry:
        if cell is None:
            return None
        return cell.initial_carry(params["cell"], tuple(batch_shape))

    def _inputs(params: Params, xs: Array) -> Array:
        xs = jnp.asarray(xs)
        if vocab_size is None:
            if xs.ndim != 3 or xs.shape[-1] != input_size:
                raise ValueError(
                    f"{where}.apply: `xs` must have shape [B, T, {input_size}], got "
                    f"{list(xs.shape)}"
                )
            return xs.astype(param_dtype)
        xs = _check_tokens("xs", xs, vocab_size, f"{where}.apply", rank=2)
        if embed_size is None:
            return jax.nn.one_hot(xs, vocab_size, dtype=param_dtype)
        return jnp.take(params["embed"], xs, axis=0)

    def step(params: Params, carry: Carry, x_t: Array, y_prev: Array) -> tuple[Carry, Array]:
        """``x_t [B, x_size]`` (embedded), ``y_prev`` int ``[B]`` -> ``(carry, o_t [B, C])``."""
        if cell is None:
            h_t = jnp.tanh(
                x_t @ params["w_xh"] + jnp.take(params["w_yh"], y_prev, axis=0) + params["b"]
            )
        else:
            y_in = jax.nn.one_hot(y_prev, num_classes, dtype=x_t.dtype)
            carry, h_t = cell.step(params["cell"], carry, jnp.concatenate([x_t, y_in], -1))
            h_t = h_t.astype(x_t.dtype)
        return carry, h_t @ params["w_ho"] + params["b_o"]

    def apply(
        params: Params,
        xs: Array,
        targets: Array | None = None,
        *,
        feedback: Literal["teacher", "free"] = "teacher",
        sample_prob: float | Array = 0.0,
        key: jax.Array | None = None,
    ) -> Array:
        """``xs [B, T]`` tokens or ``[B, T, I]`` -> logits ``[B, T, C]``."""
        if feedback not in ("teacher", "free"):
            raise ValueError(
                f"{where}.apply: `feedback` must be 'teacher' or 'free', got {feedback!r}"
            )
        inputs = _inputs(params, xs)
        batch, num_steps = inputs.shape[0], inputs.shape[1]
        scheduled = not (isinstance(sample_prob, (int, float)) and sample_prob == 0)
        if feedback == "teacher":
            if targets is None:
                raise ValueError(f"{where}.apply: teacher forcing needs `targets`")
            targets = _check_tokens("targets", targets, num_classes, f"{where}.apply", rank=2)
            if targets.shape != (batch, num_steps):
                raise ValueError(
                    f"{where}.apply: `targets` must have shape [{batch}, {num_steps}], got "
                    f"{list(targets.shape)}"
                )
            if scheduled and key is None:
                raise ValueError(f"{where}.apply: scheduled sampling needs a `key`")
        first = jnp.full((batch, 1), start, jnp.int32)
        true_prev = (
            jnp.concatenate([first, targets[:, :-1]], axis=1)
            if feedback == "teacher"
            else jnp.zeros((batch, num_steps), jnp.int32)
        )
        if feedback == "free":
            own = jnp.ones((batch, num_steps), bool)
        elif scheduled:
            own = jax.random.bernoulli(key, sample_prob, (batch, num_steps))
        else:
            own = None
        p = jax.tree.map(lambda a: a.astype(inputs.dtype), params)

        if own is None and cell is None:
            # pure teacher forcing of network (a): every step is independent (parallel)
            h = jnp.tanh(inputs @ p["w_xh"] + jnp.take(p["w_yh"], true_prev, axis=0) + p["b"])
            return h @ p["w_ho"] + p["b_o"]

        def body(state, inp):
            carry, pred = state
            x_t, y_true, own_t = inp
            y_prev = y_true if own_t is None else jnp.where(own_t, pred, y_true)
            carry, o_t = step(p, carry, x_t, y_prev)
            return (carry, jnp.argmax(o_t, axis=-1).astype(jnp.int32)), o_t

        tm = lambda a: None if a is None else jnp.moveaxis(a, 1, 0)
        init = (initial_carry(p, (batch,)), jnp.full((batch,), start, jnp.int32))
        _, logits = jax.lax.scan(body, init, (tm(inputs), tm(true_prev), tm(own)))
        return jnp.moveaxis(logits, 0, 1)

    kind = "a: output recurrence" if cell is None else f"b: {cell.name} + output feedback"
    name = f"output_recurrent({kind}, hidden={hidden_size}, classes={num_classes})"
    return FeedbackModel(
        init,
        apply,
        step,
        initial_carry,
        num_classes,
        start,
        vocab_size,
        input_size,
        cell is not None,
        name,
    )


# --------------------------------------------------------------------------------------
# encoder-decoders: sequence to sequence, vector to sequence, attention


class EncoderDecoder(NamedTuple):
    """A conditional generator: an encoder, then a decoder fed its previous token.

    ``seq2seq`` (with or without attention) and ``vec2seq`` both return one, so greedy,
    beam and sampled decoding (:mod:`jrnn.decode`) work with either.

    Attributes:
      init: ``init(key) -> params``.
      apply: ``apply(params, src, tgt_in, src_lengths=None, *, key=None, sample_prob=0.0)
        -> (logits [B, T', V], weights [B, T', S] or None)``: the decoder run with teacher
        forcing (``tgt_in = [BOS, y_1, ..., y_{n}]``, padded); ``key`` enables dropout and,
        with ``sample_prob > 0``, scheduled sampling; ``weights`` are the attention weights.
      encode: ``encode(params, src, src_lengths=None, key=None) -> memory`` (a pytree with
        leading batch axis ``B``).
      start: ``start(params, memory) -> state``: the decoder's state before the first token.
      step: ``step(params, memory, state, token [N]) -> (state, logits [N, V], weights
        [N, S] or None)``: one decoder step (``memory`` with the same leading ``N``).
      src_vocab: source vocabulary (``None`` for vector inputs).
      src_size: feature size of vector inputs (``None`` for token inputs).
      tgt_vocab: target vocabulary ``V``.
      pad, bos, eos: the target's special ids (decoding never emits ``pad`` or ``bos``).
      attention: the :class:`jrnn.attention.Attention`, or ``None``.
      name: a short description.
    """

    init: Callable[[jax.Array], Params]
    apply: Callable[..., tuple[Array, Array | None]]
    encode: Callable[..., Any]
    start: Callable[..., Any]
    step: Callable[..., tuple[Any, Array, Array | None]]
    src_vocab: int | None
    src_size: int | None
    tgt_vocab: int
    pad: int
    bos: int
    eos: int
    attention: Any
    name: str


def _check_specials(tgt_vocab: int, pad: int, bos: int, eos: int, where: str) -> None:
    for name, value in (("pad", pad), ("bos", bos), ("eos", eos)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < tgt_vocab:
            raise ValueError(
                f"{where}: `{name}` must be a token id in [0, tgt_vocab={tgt_vocab}), got {value!r}"
            )
    if len({pad, bos, eos}) != 3:
        raise ValueError(f"{where}: `pad`, `bos` and `eos` must differ, got {pad}, {bos}, {eos}")


def _zero_carry(cell: Cell) -> Carry:
    """A cell's zero carry for one sequence (shapes only; no params needed)."""
    return cell.initial_carry({}, ())


def _teacher_forced(
    step: Callable,
    params: Params,
    memory: Any,
    state: Any,
    tgt_in: Array,
    sample_prob: Any,
    key: jax.Array | None,
) -> tuple[Array, Array | None]:
    """Runs ``step`` over ``tgt_in [B, T']`` with ``lax.scan``; scheduled sampling optional."""
    scheduled = not (isinstance(sample_prob, (int, float)) and sample_prob == 0)
    tokens = jnp.moveaxis(tgt_in, 1, 0)  # [T', B]
    if not scheduled:

        def body(s, tok):
            s, logits, w = step(params, memory, s, tok)
            return s, (logits, w)

        _, (logits, weights) = jax.lax.scan(body, state, tokens)
    else:
        if key is None:
            raise ValueError("scheduled sampling (`sample_prob` > 0) needs a `key`")
        own = jax.random.bernoulli(key, sample_prob, tokens.shape).at[0].set(False)

        def body(carry, inp):
            s, pred = carry
            tok, own_t = inp
            tok = jnp.where(own_t, pred, tok)
            s, logits, w = step(params, memory, s, tok)
            pred = jax.lax.stop_gradient(jnp.argmax(logits, axis=-1).astype(jnp.int32))
            return (s, pred), (logits, w)

        _, (logits, weights) = jax.lax.scan(body, (state, tokens[0]), (tokens, own))
    logits = jnp.moveaxis(logits, 0, 1)
    weights = None if weights is None else jnp.moveaxis(weights, 0, 1)
    return logits, weights


def _bridge_init(key: jax.Array, in_size: int, template: Carry, dtype: Any) -> list[dict]:
    leaves = jax.tree.leaves(template)
    keys = jax.random.split(key, max(len(leaves), 1))
    return [
        {
            "w": _dense_init(k, in_size, leaf.shape[-1], dtype),
            "b": jnp.zeros(leaf.shape[-1:], dtype),
        }
        for k, leaf in zip(keys, leaves, strict=False)
    ]


def _bridge_apply(bridge: list[dict], summary: Array, template: Carry) -> Carry:
    """``tanh(summary @ w + b)`` for every leaf of the decoder's carry."""
    treedef = jax.tree.structure(template)
    leaves = [
        jnp.tanh(summary @ p["w"].astype(summary.dtype) + p["b"].astype(summary.dtype))
        for p in bridge
    ]
    return jax.tree.unflatten(treedef, leaves)


def seq2seq(
    encoder: Cell | Stack,
    decoder: Cell,
    src_vocab: int,
    tgt_vocab: int,
    *,
    embed_size: int | None = 32,
    attention: str | None = None,
    attention_size: int | None = None,
    input_feeding: bool = True,
    context_input: bool = True,
    bridge: Literal["linear", "copy", "zeros"] = "linear",
    pad: int = 0,
    bos: int = 1,
    eos: int = 2,
    param_dtype: Any = jnp.float32,
) -> EncoderDecoder:
    """Sequence-to-sequence mapping: encoder -> context -> decoder (different lengths).

    The encoder (a cell or a stack, e.g. bidirectional) reads the source within its lengths.
    Without attention (the seed's "Sequence to Sequence Mapping Networks"), its final state
    is the fixed-size context ``C``: the decoder's first state is ``tanh(C @ w + b)`` per
    carry leaf (``bridge="linear"``), the final state itself (``"copy"``: sizes must match)
    or zeros, and with ``context_input`` the decoder also reads ``C`` at every step::

        s_0 = bridge(C)
        s_t = cell(s_{t-1}, [E y_{t-1}, C])        o_t = c + V s_t

    With attention (Bahdanau/Luong), the decoder reads the encoder's outputs through
    attention weights at every step; the attentional decoder follows Luong et al. (2015),
    with input feeding (the previous attentional state ``s̃_{t-1}`` is part of the input)::

        s_t   = cell(s_{t-1}, [E y_{t-1}, s̃_{t-1}])
        c_t, α_t = attend(query=s_t, encoder outputs, source mask)
        s̃_t   = tanh([c_t, s_t] @ w_c + b_c)      o_t = c + V s̃_t

    Targets use ``pad``/``bos``/``eos`` ids: training feeds ``tgt_in = [bos, y_1..y_n]`` and
    scores ``tgt_out = [y_1..y_n, eos]`` under the target mask (teacher forcing); the source
    mask comes from ``src_lengths`` (encoder lengths and attention mask).

    Args:
      encoder: a :class:`jrnn.Cell` or :class:`jrnn.Stack` (outputs ``E = D * H_enc``).
      decoder: the decoder :class:`jrnn.Cell` (``H_dec``).
      src_vocab, tgt_vocab: vocabulary sizes.
      embed_size: width of both token embeddings (``None``: one-hot).
      attention: ``None``, ``"additive"`` (Bahdanau), ``"dot"`` or ``"general"`` (Luong).
      attention_size: hidden width of the additive score (default ``H_dec``).
      input_feeding: with attention, feed ``s̃_{t-1}`` back as input.
      context_input: without attention, feed the context ``C`` at every step.
      bridge: how the encoder's final state initialises the decoder (see above).
      pad, bos, eos: special target ids (distinct, in ``[0, tgt_vocab)``).
      param_dtype: storage dtype of embeddings, bridge, attention and readout.

    Returns:
      An :class:`EncoderDecoder`.

    Raises:
      ValueError: bad sizes; encoder/decoder size mismatches (``bridge="copy"`` with
        different state shapes or cell types; the dot score with ``H_dec != E``); bad special
        ids.  At call time: token ids outside the vocabularies, lengths beyond ``T``.
    """
    where = "seq2seq"
    src_vocab = _check_int("src_vocab", src_vocab, where)
    tgt_vocab = _check_int("tgt_vocab", tgt_vocab, where, minimum=4)
    if embed_size is not None:
        embed_size = _check_int("embed_size", embed_size, where)
    _check_specials(tgt_vocab, pad, bos, eos, where)
    if bridge not in ("linear", "copy", "zeros"):
        raise ValueError(f"{where}: `bridge` must be 'linear', 'copy' or 'zeros', got {bridge!r}")
    if not isinstance(decoder, Cell):
        raise ValueError(f"{where}: `decoder` must be a jrnn Cell, got {type(decoder).__name__}")
    enc = _as_stack(encoder)
    num_dirs = 2 if enc.bidirectional else 1
    enc_out = num_dirs * enc.cell.output_size
    dec_template = _zero_carry(decoder)
    enc_template = _zero_carry(enc.cell)
    enc_state = num_dirs * sum(leaf.shape[-1] for leaf in jax.tree.leaves(enc_template))
    if bridge == "copy":
        joined = jax.tree.map(lambda a: a.shape[-1] * num_dirs, enc_template)
        want = jax.tree.map(lambda a: a.shape[-1], dec_template)
        if jax.tree.structure(enc_template) != jax.tree.structure(dec_template) or jax.tree.leaves(
            joined
        ) != jax.tree.leaves(want):
            raise ValueError(
                f"{where}: encoder/decoder size mismatch: bridge='copy' hands the encoder's "
                f"final state {jax.tree.structure(enc_template)} with sizes "
                f"{jax.tree.leaves(joined)} (directions concatenated) to a decoder whose "
                f"state {jax.tree.structure(dec_template)} has sizes "
                f"{jax.tree.leaves(want)}; use bridge='linear' or matching sizes"
            )
    attn = None
    if attention is not None:
        from jrnn.attention import attention as make_attention

        attn = make_attention(attention, attention_size, param_dtype=param_dtype)
        if attn.kind == "dot" and decoder.output_size != enc_out:
            raise ValueError(
                f"{where}: encoder/decoder size mismatch: the dot score needs the decoder state "
                f"size ({decoder.output_size}) to equal the encoder output size "
                f"({enc_out} = {num_dirs} x {enc.cell.output_size}); use 'general' or "
                "'additive'"
            )
    src_in = embed_size or src_vocab
    tgt_in_size = embed_size or tgt_vocab
    h_dec = decoder.output_size
    if attn is not None:
        dec_input = tgt_in_size + (h_dec if input_feeding else 0)
    else:
        dec_input = tgt_in_size + (enc_out if context_input else 0)

    def init(key: jax.Array) -> Params:
        """Embeddings ``N(0, 1)``; bridge, ``w_c`` and readout lecun_normal, zero biases."""
        ks = jax.random.split(key, 8)
        params: dict[str, Any] = {}
        if embed_size is not None:
            params["src_embed"] = jax.random.normal(ks[0], (src_vocab, embed_size), param_dtype)
            params["tgt_embed"] = jax.random.normal(ks[1], (tgt_vocab, embed_size), param_dtype)
        params["encoder"] = enc.init(ks[2], src_in)
        params["decoder"] = decoder.init(ks[3], dec_input)
        if bridge == "linear":
            params["bridge"] = _bridge_init(ks[4], enc_state, dec_template, param_dtype)
        if attn is not None:
            params["attention"] = attn.init(ks[5], h_dec, enc_out)
            params["w_c"] = _dense_init(ks[6], enc_out + h_dec, h_dec, param_dtype)
            params["b_c"] = jnp.zeros((h_dec,), param_dtype)
        params["w_o"] = _dense_init(ks[7], h_dec, tgt_vocab, param_dtype)
        params["b_o"] = jnp.zeros((tgt_vocab,), param_dtype)
        return params

    def _embed(table_name: str, vocab: int, tokens: Array, params: Params) -> Array:
        if embed_size is None:
            return jax.nn.one_hot(tokens, vocab, dtype=param_dtype)
        return jnp.take(params[table_name], tokens, axis=0)

    def encode(
        params: Params, src: Array, src_lengths: Array | None = None, key: jax.Array | None = None
    ) -> dict[str, Any]:
        """``src [B, S]`` -> memory ``{"summary", "context", "attn"?}``."""
        src = _check_tokens("src", src, src_vocab, f"{where}.encode", rank=2)
        batch, num_src = src.shape
        lengths = _check_seq_lengths(src_lengths, batch, num_src, f"{where}.encode", "src_lengths")
        xs = _embed("src_embed", src_vocab, src, params)
        ys, finals = enc.apply(params["encoder"], xs, lengths=lengths, key=key)
        last = finals[-1]  # the last layer's carries, one per direction
        summary = jnp.concatenate([leaf for c in last for leaf in jax.tree.leaves(c)], -1)
        context = jnp.concatenate([c.h for c in last], -1)
        memory: dict[str, Any] = {"summary": summary, "context": context}
        if bridge == "copy":
            memory["copy"] = jax.tree.map(lambda *a: jnp.concatenate(a, -1), *last)
        if attn is not None:
            mask = jnp.arange(num_src, dtype=jnp.int32) < lengths[:, None]
            memory["attn"] = attn.prepare(params["attention"], ys, mask)
        return memory

    def start(params: Params, memory: dict[str, Any]) -> tuple[Carry, Array | None]:
        """The decoder state before the first token: ``(carry, s̃_0 = 0 or None)``."""
        summary = memory["summary"]
        batch = summary.shape[:-1]
        if bridge == "linear":
            carry = _bridge_apply(params["bridge"], summary, dec_template)
        elif bridge == "copy":
            carry = memory["copy"]
        else:
            carry = decoder.initial_carry(params["decoder"], batch)
        carry = jax.tree.map(lambda a: a.astype(summary.dtype), carry)
        feed = jnp.zeros(batch + (h_dec,), summary.dtype) if attn is not None else None
        return carry, feed

    def step(params: Params, memory: dict[str, Any], state: Any, token: Array):
        """One decoder step: ``token [N]`` -> ``(state, logits [N, V], weights [N, S] | None)``."""
        carry, feed = state
        x = _embed("tgt_embed", tgt_vocab, token, params).astype(memory["summary"].dtype)
        if attn is not None and input_feeding:
            x = jnp.concatenate([x, feed], -1)
        elif attn is None and context_input:
            x = jnp.concatenate([x, memory["context"]], -1)
        carry, h = decoder.step(params["decoder"], carry, x)
        h = h.astype(x.dtype)
        weights = None
        if attn is not None:
            context, weights = attn.apply(params["attention"], h, memory["attn"])
            out = jnp.tanh(
                jnp.concatenate([context, h], -1) @ params["w_c"].astype(h.dtype)
                + params["b_c"].astype(h.dtype)
            )
            feed = out
        else:
            out = h
        logits = out @ params["w_o"].astype(out.dtype) + params["b_o"].astype(out.dtype)
        return (carry, feed), logits, weights

    def apply(
        params: Params,
        src: Array,
        tgt_in: Array,
        src_lengths: Array | None = None,
        *,
        key: jax.Array | None = None,
        sample_prob: Any = 0.0,
    ):
        """``src [B, S]``, ``tgt_in [B, T']`` -> ``(logits [B, T', V], weights | None)``."""
        tgt_in = _check_tokens("tgt_in", tgt_in, tgt_vocab, f"{where}.apply", rank=2)
        if tgt_in.shape[0] != jnp.shape(src)[0]:
            raise ValueError(
                f"{where}.apply: `src` and `tgt_in` must have the same batch size, got "
                f"{jnp.shape(src)[0]} and {tgt_in.shape[0]}"
            )
        k_enc = k_dec = None
        if key is not None:
            k_enc, k_dec = jax.random.split(key)
        memory = encode(params, src, src_lengths, key=k_enc)
        state = start(params, memory)
        return _teacher_forced(step, params, memory, state, tgt_in, sample_prob, k_dec)

    enc_name = f"{enc.cell.name} x{enc.num_layers}{' bidirectional' if enc.bidirectional else ''}"
    att = f", attention={attn.kind}" if attn is not None else ""
    name = (
        f"seq2seq(encoder={enc_name}, decoder={decoder.name}{att}, vocab={src_vocab}->{tgt_vocab})"
    )
    return EncoderDecoder(
        init, apply, encode, start, step, src_vocab, None, tgt_vocab, pad, bos, eos, attn, name
    )


def vec2seq(
    decoder: Cell,
    input_size: int,
    tgt_vocab: int,
    *,
    embed_size: int | None = 32,
    condition: Literal["init", "input", "both"] = "both",
    pad: int = 0,
    bos: int = 1,
    eos: int = 2,
    param_dtype: Any = jnp.float32,
) -> EncoderDecoder:
    """Single input, multiple output (the seed's vector -> sequence slide).

    A vector ``v [B, input_size]`` conditions an autoregressive generator: as its initial
    state (``condition="init"``: ``s_0 = tanh(v @ w + b)`` per carry leaf), as an extra
    input at every step (``"input"``: ``s_t = cell(s_{t-1}, [E y_{t-1}, v])``), or both::

        s_0 = tanh(v @ w + b) or 0,    s_t = cell(s_{t-1}, [E y_{t-1}, v]),   o_t = c + V s_t

    Args:
      decoder: the generator's :class:`jrnn.Cell`.
      input_size: size of the conditioning vector.
      tgt_vocab: output vocabulary ``V``.
      embed_size: token embedding width (``None``: one-hot).
      condition: ``"init"``, ``"input"`` or ``"both"``.
      pad, bos, eos: special ids.
      param_dtype: storage dtype.

    Returns:
      An :class:`EncoderDecoder` whose "source" is the vector: ``apply(params, v, tgt_in)``,
      ``encode(params, v)``; decode it with :mod:`jrnn.decode`.
    """
    where = "vec2seq"
    input_size = _check_int("input_size", input_size, where)
    tgt_vocab = _check_int("tgt_vocab", tgt_vocab, where, minimum=4)
    if embed_size is not None:
        embed_size = _check_int("embed_size", embed_size, where)
    _check_specials(tgt_vocab, pad, bos, eos, where)
    if condition not in ("init", "input", "both"):
        raise ValueError(
            f"{where}: `condition` must be 'init', 'input' or 'both', got {condition!r}"
        )
    if not isinstance(decoder, Cell):
        raise ValueError(f"{where}: `decoder` must be a jrnn Cell, got {type(decoder).__name__}")
    as_init = condition in ("init", "both")
    as_input = condition in ("input", "both")
    template = _zero_carry(decoder)
    tok_size = embed_size or tgt_vocab
    dec_input = tok_size + (input_size if as_input else 0)

    def init(key: jax.Array) -> Params:
        k_e, k_d, k_b, k_o = jax.random.split(key, 4)
        params: dict[str, Any] = {}
        if embed_size is not None:
            params["tgt_embed"] = jax.random.normal(k_e, (tgt_vocab, embed_size), param_dtype)
        params["decoder"] = decoder.init(k_d, dec_input)
        if as_init:
            params["bridge"] = _bridge_init(k_b, input_size, template, param_dtype)
        params["w_o"] = _dense_init(k_o, decoder.output_size, tgt_vocab, param_dtype)
        params["b_o"] = jnp.zeros((tgt_vocab,), param_dtype)
        return params

    def encode(
        params: Params, vec: Array, src_lengths: Array | None = None, key: jax.Array | None = None
    ) -> dict[str, Any]:
        """``vec [B, input_size]`` -> memory ``{"vec"}`` (``src_lengths`` must be None)."""
        vec = jnp.asarray(vec)
        if not jnp.issubdtype(vec.dtype, jnp.floating):
            raise TypeError(f"{where}.encode: `vec` must be a float array, got {vec.dtype}")
        if vec.ndim != 2 or vec.shape[-1] != input_size:
            raise ValueError(
                f"{where}.encode: `vec` must have shape [B, {input_size}], got {list(vec.shape)}"
            )
        if src_lengths is not None:
            raise ValueError(f"{where}.encode: a vector input has no `src_lengths`")
        return {"vec": vec.astype(param_dtype)}

    def start(params: Params, memory: dict[str, Any]) -> Carry:
        vec = memory["vec"]
        if as_init:
            return _bridge_apply(params["bridge"], vec, template)
        return decoder.initial_carry(params["decoder"], vec.shape[:-1])

    def step(params: Params, memory: dict[str, Any], carry: Carry, token: Array):
        vec = memory["vec"]
        if embed_size is None:
            x = jax.nn.one_hot(token, tgt_vocab, dtype=vec.dtype)
        else:
            x = jnp.take(params["tgt_embed"], token, axis=0).astype(vec.dtype)
        if as_input:
            x = jnp.concatenate([x, vec], -1)
        carry, h = decoder.step(params["decoder"], carry, x)
        h = h.astype(vec.dtype)
        return carry, h @ params["w_o"].astype(h.dtype) + params["b_o"].astype(h.dtype), None

    def apply(
        params: Params,
        vec: Array,
        tgt_in: Array,
        src_lengths: Array | None = None,
        *,
        key: jax.Array | None = None,
        sample_prob: Any = 0.0,
    ):
        tgt_in = _check_tokens("tgt_in", tgt_in, tgt_vocab, f"{where}.apply", rank=2)
        memory = encode(params, vec, src_lengths)
        if tgt_in.shape[0] != memory["vec"].shape[0]:
            raise ValueError(
                f"{where}.apply: `vec` and `tgt_in` must have the same batch size, got "
                f"{memory['vec'].shape[0]} and {tgt_in.shape[0]}"
            )
        return _teacher_forced(
            step, params, memory, start(params, memory), tgt_in, sample_prob, key
        )

    name = f"vec2seq({decoder.name}, input={input_size}, vocab={tgt_vocab}, condition={condition})"
    return EncoderDecoder(
        init, apply, encode, start, step, None, input_size, tgt_vocab, pad, bos, eos, None, name
    )
