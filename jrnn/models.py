"""Models: recurrent networks with inputs and outputs, as pure functions over a param dict.

[`sequence_model`][jrnn.models.sequence_model] is the Elman network with a softmax readout, end to
end, with any cell or stack as the recurrence::

    a(t) = b + W h(t-1) + U x(t)        (the rnn: a Cell or a Stack)
    h(t) = tanh(a(t))
    o(t) = c + V h(t)                   (the readout, here ``o_t = h_t @ w_ho + b_o``)
    ŷ(t) = softmax(o(t))                (applied by the loss / the sampler)

It reads either float features ``[batch, time, input_size]`` or integer tokens
``[batch, time]`` (through an embedding table, or one-hot vectors as in the lecture), and
reads out either at every step (a language model or a tagger: ``[batch, time, output]``) or
once, at the last valid step of each sequence (many-to-one, e.g. the adding problem:
``[batch, output]``).  Carries go in and out, so truncated BPTT and sampling can continue a
sequence across calls.

The lecture's "Recurrent Networks" slides, each a factory returning a ``NamedTuple`` of pure
functions over an explicit parameter pytree (like a [`jrnn.Cell`][jrnn.base.Cell]):

==================================  ==========================================================
slide                               factory
==================================  ==========================================================
multiple input, single output       [`seq2vec`][jrnn.models.seq2vec] (final state within lengths, or
pooled) single input, multiple output       `vec2seq` (the vector as initial state and/or input)
same-length tagging, bi-directional [`tagger`][jrnn.models.tagger] (``bidirectional=True``)
teacher forcing networks            `output_recurrent` (a: output recurrence only;
                                    b: hidden recurrence + output feedback); scheduled
                                    sampling in every decoder
sequence to sequence mapping        `seq2seq` (encoder -> context -> decoder)
encoder-decoder with attention      `seq2seq` with ``attention=`` ([`jrnn.attention`][])
==================================  ==========================================================

Encoder-decoders share one decoding interface (`EncoderDecoder`: ``encode``,
``start``, ``step``) used by greedy, beam and sampled decoding in [`jrnn.decode`][].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from jrnn import keys
from jrnn.base import Array, Carry, Cell, DType, Params
from jrnn.checks import check_int, check_key
from jrnn.encdec import EncoderDecoder, seq2seq, vec2seq
from jrnn.feedback import FeedbackModel, output_recurrent
from jrnn.model_base import ModelAux, check_tokens, compute_dtype, embed_tokens
from jrnn.stacks import Stack
from jrnn.unrolling import unroll

__all__ = [
    "READOUTS",
    "EncoderDecoder",
    "FeedbackModel",
    "Model",
    "ModelAux",
    "output_recurrent",
    "seq2seq",
    "seq2vec",
    "sequence_model",
    "tagger",
    "vec2seq",
]


READOUTS = ("all", "last", "mean", "max")


class Model(NamedTuple):
    """A model as pure functions over an explicit parameter dict.

    Attributes:
      init: ``init(key) -> params``.
      apply: ``apply(params, inputs, *, carry=None, lengths=None, resets=None, key=None) ->
        (outputs, ModelAux(carry=carry_T))``; ``resets`` (bool ``[..., T]``) starts a new
        episode from ``carry`` at every set step (as in [`jrnn.unroll`][jrnn.unrolling.unroll]);
        ``key`` switches on dropout (training only).
      initial_carry: ``initial_carry(params, batch_shape=()) -> carry`` (zeros).
      rnn: the [`jrnn.Cell`][jrnn.base.Cell] or [`jrnn.Stack`][jrnn.stacks.Stack] inside.
      input_size: feature size of float inputs (``None`` for token inputs).
      vocab_size: number of token ids of integer inputs (``None`` for float inputs).
      output_size: size of the readout ``o``.
      readout: ``"all"`` (every step), ``"last"`` (the last valid step), ``"mean"`` or
        ``"max"`` (pooled over the valid steps).
      name: a short description.
      embed: ``embed(params, inputs) -> xs [..., T, rnn_input]``: what ``apply`` feeds the
        rnn (the embedded or one-hot tokens; float inputs checked and returned).
      head: ``head(params, hs, lengths=None) -> outputs``: what ``apply`` makes of the rnn's
        outputs ``hs [..., T, H_out]`` (the readout, without dropout).  With ``embed``, the
        pieces the diagnostics (``jrnn.diagnostics``) put around the rnn.
    """

    init: Callable[[jax.Array], Params]
    apply: Callable[..., tuple[Array, ModelAux]]
    initial_carry: Callable[..., Carry]
    rnn: Cell | Stack
    input_size: int | None
    vocab_size: int | None
    output_size: int
    readout: str
    name: str
    embed: Callable[..., Array] | None = None
    head: Callable[..., Array] | None = None


def sequence_model(
    rnn: Cell | Stack,
    output_size: int,
    *,
    input_size: int | None = None,
    vocab_size: int | None = None,
    embed_size: int | None = None,
    readout: Literal["all", "last", "mean", "max"] = "all",
    dropout: float = 0.0,
    dtype: DType | None = None,
    param_dtype: DType = jnp.float32,
) -> Model:
    """The Elman network's readout ``o = c + V h`` on top of any cell or stack.

    Exactly one of ``input_size`` (float inputs ``[..., T, input_size]``) and ``vocab_size``
    (integer tokens ``[..., T]``) is given.  Tokens are embedded by a table
    ``embed [vocab_size, embed_size]``, or, with ``embed_size=None``, fed as one-hot vectors
    (the Elman recurrence's ``U x(t)`` with a one-hot ``x(t)``; the same function as a
    table, at the cost of a ``[..., T, vocab_size]`` input).

    Parameters (``{"embed"?, "rnn", "w_ho", "b_o"}``): ``w_ho [H_out, output_size]`` is the
    Elman readout's ``V`` (transposed, row-vector convention) and ``b_o [output_size]``
    its ``c``;
    ``H_out`` is the rnn's output size (``2 H`` for a bidirectional stack).  ``w_ho`` starts
    ``lecun_normal``, ``b_o`` and ``embed`` as documented in `init`.

    Args:
      rnn: a [`jrnn.Cell`][jrnn.base.Cell] (one layer) or a [`jrnn.Stack`][jrnn.stacks.Stack].
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
      dtype: compute dtype of the embedding and the readout (``None``: ``param_dtype``);
        the rnn computes in its own cell's ``dtype``.
      param_dtype: storage dtype of ``embed``, ``w_ho`` and ``b_o``.

    Returns:
      A [`Model`][jrnn.models.Model].  ``apply(params, inputs, *, carry=None, lengths=None,
      resets=None, key=None)`` returns ``(o, ModelAux(carry=carry_T))``; ``carry_T`` is the rnn's
      final carry (a Cell's carry, or a Stack's nested tuple), ready to be passed back as
      ``carry`` to continue the sequences.  ``resets`` (bool ``[..., T]``, the leading
      shape of ``inputs`` without features) marks episode starts: every layer and direction
      of the rnn restarts there from ``carry`` ([`jrnn.unroll`][jrnn.unrolling.unroll]), so each
      episode's outputs equal those of the episode run alone; the readout itself is per step (a
      ``"last"`` or pooled readout still summarises the whole sequence).  Token ids are
      checked against ``vocab_size`` when concrete; under ``jit`` an out-of-range id embeds
      to the zero vector (``checkify.index_checks`` reports it; see the Models guide).

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> model = jrnn.sequence_model(jrnn.lstm(16), 10, vocab_size=10, embed_size=8)
      >>> params = model.init(jax.random.key(0))
      >>> tokens = jnp.zeros((4, 12), jnp.int32)              # [batch, time]
      >>> logits, aux = model.apply(params, tokens)
      >>> logits.shape                                          # [batch, time, output]
      (4, 12, 10)
      >>> more, _ = model.apply(params, tokens, carry=aux.carry)  # continue the sequences
    """
    output_size = check_int("output_size", output_size, "sequence_model")
    if (input_size is None) == (vocab_size is None):
        raise ValueError("sequence_model: give exactly one of `input_size` and `vocab_size`")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"sequence_model: `dropout` must lie in [0, 1), got {dropout!r}")
    if readout not in READOUTS:
        raise ValueError(f"sequence_model: `readout` must be one of {READOUTS}, got {readout!r}")
    if vocab_size is not None:
        vocab_size = check_int("vocab_size", vocab_size, "sequence_model")
        if embed_size is not None:
            embed_size = check_int("embed_size", embed_size, "sequence_model")
        rnn_input = vocab_size if embed_size is None else embed_size
    else:
        input_size = check_int("input_size", input_size, "sequence_model")
        if embed_size is not None:
            raise ValueError("sequence_model: `embed_size` needs token inputs (`vocab_size`)")
        rnn_input = input_size

    compute = compute_dtype(dtype, param_dtype)
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
                    f"{name}.apply: `inputs` must have shape [..., T, {input_size}], got "
                    f"{list(xs.shape)}"
                )
            return xs
        xs = check_tokens("inputs", xs, vocab_size, f"{name}.apply", rank=None)
        return embed_tokens(params.get("embed"), xs, vocab_size, compute)

    def _summary(hs: Array, lengths: Array | None) -> Array:
        if readout == "last":
            return last_step(hs, lengths, cell.output_size if bidirectional else None)
        if readout in ("mean", "max"):
            return pool_steps(hs, lengths, readout)
        return hs

    def _readout(params: Params, hs: Array) -> Array:
        dt = compute if dtype is not None else hs.dtype
        return hs.astype(dt) @ params["w_ho"].astype(dt) + params["b_o"].astype(dt)

    def head(params: Params, hs: Array, lengths: Array | None = None) -> Array:
        """The rnn's outputs ``hs [..., T, H_out]`` -> the model's outputs (no dropout)."""
        return _readout(params, _summary(hs, lengths))

    def apply(
        params: Params,
        inputs: Array,
        *,
        carry: Carry | None = None,
        lengths: Array | None = None,
        resets: Array | None = None,
        key: jax.Array | None = None,
    ) -> tuple[Array, ModelAux]:
        """``inputs [..., T, input_size]`` or tokens ``[..., T]`` -> ``(o, ModelAux(carry_T))``
        with ``o [..., T, output_size]`` (readout ``"all"``) or ``[..., output_size]``."""
        inputs = _inputs(params, inputs)
        rnn_key = out_key = None
        if key is not None:
            key = check_key(key, f"{name}.apply", batch_shape=inputs.shape[:-2])
            rnn_key, out_key = keys.split(key)
        if is_stack:
            hs, carry = rnn.apply(
                params["rnn"], inputs, carries=carry, lengths=lengths, resets=resets, key=rnn_key
            )
        else:
            hs, carry = unroll(
                rnn, params["rnn"], inputs, carry=carry, lengths=lengths, resets=resets, key=rnn_key
            )
        hs = _summary(hs, lengths)
        if dropout > 0.0 and out_key is not None:
            keep = keys.bernoulli(out_key, 1.0 - dropout, hs.shape)
            hs = jnp.where(keep, hs / (1.0 - dropout), jnp.zeros_like(hs))
        return _readout(params, hs), ModelAux(carry=carry)

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
        embed=_inputs,
        head=head,
    )


def last_step(hs: Array, lengths: Array | None, half: int | None = None) -> Array:
    """The outputs ``hs [..., T, F]`` at each sequence's last valid step, ``[..., F]``.

    With ``half`` (a bidirectional rnn's ``[forward, backward]`` outputs of ``half``
    features each) the backward half is read at ``t = 0``, where that direction ends.
    Lengths beyond ``T`` (possible when traced) read the last step, as ``unroll`` clamps.

    Examples:
      >>> import jax.numpy as jnp
      >>> hs = jnp.arange(6.0).reshape(1, 3, 2)  # [batch, T, 2 features]
      >>> last_step(hs, jnp.array([2])).tolist(), last_step(hs, jnp.array([2]), 1).tolist()
      ([[2.0, 3.0]], [[2.0, 1.0]])
    """
    num_steps = hs.shape[-2]
    if lengths is None:
        last = jnp.full(hs.shape[:-2], num_steps - 1, jnp.int32)
    else:
        last = jnp.clip(jnp.asarray(lengths).astype(jnp.int32) - 1, 0, num_steps - 1)
    h_fwd = jnp.take_along_axis(hs, last[..., None, None], axis=-2)[..., 0, :]
    if half is None:
        return h_fwd
    return jnp.concatenate([h_fwd[..., :half], hs[..., 0, half:]], axis=-1)


def pool_steps(hs: Array, lengths: Array | None, how: Literal["mean", "max"]) -> Array:
    """The mean or the max of ``hs [..., T, F]`` over each sequence's valid steps (0 for an
    empty sequence), ``[..., F]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> hs = jnp.arange(6.0).reshape(1, 3, 2)
      >>> pool_steps(hs, jnp.array([2]), "mean").tolist(), pool_steps(hs, None, "max").tolist()
      ([[1.0, 2.0]], [[4.0, 5.0]])
    """
    num_steps = hs.shape[-2]
    if lengths is None:
        lengths = jnp.full(hs.shape[:-2], num_steps, jnp.int32)
    lengths = jnp.clip(jnp.asarray(lengths).astype(jnp.int32), 0, num_steps)
    valid = (jnp.arange(num_steps, dtype=jnp.int32) < lengths[..., None])[..., None]
    if how == "mean":
        total = jnp.sum(jnp.where(valid, hs, jnp.zeros((), hs.dtype)), axis=-2)
        return total / jnp.maximum(lengths, 1).astype(hs.dtype)[..., None]
    low = jnp.asarray(jnp.finfo(hs.dtype).min, hs.dtype)
    top = jnp.max(jnp.where(valid, hs, low), axis=-2)
    return jnp.where(lengths[..., None] > 0, top, jnp.zeros((), hs.dtype))


# ======================================================================================
# The lecture's "Recurrent Networks" slides as models
# ======================================================================================


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
    dtype: DType | None = None,
    param_dtype: DType = jnp.float32,
) -> Model:
    """Multiple input, single output (the lecture's sequence -> vector slide).

    The rnn reads the whole (padded) sequence and one readout ``o = c + V h`` maps a summary
    ``h`` of it to the output: the final state at each sequence's own last valid step
    (``pool="last"``; for a bidirectional stack the forward state at the last valid step and
    the backward state at step 0) or the mean or maximum of the outputs over the valid steps.

    Args:
      rnn: a [`jrnn.Cell`][jrnn.base.Cell] or [`jrnn.Stack`][jrnn.stacks.Stack].
      num_outputs: classes (logits) or regression targets.
      vocab_size, input_size, embed_size: token or float inputs, as in
          [`sequence_model`][jrnn.models.sequence_model].
      pool: ``"last"``, ``"mean"`` or ``"max"``.
      dropout, dtype, param_dtype: as in [`sequence_model`][jrnn.models.sequence_model].

    Returns:
      A [`Model`][jrnn.models.Model] whose ``apply(params, inputs [B, T] or [B, T, I], lengths=...,
      resets=...)`` returns ``(o [B, num_outputs], ModelAux(carry=carry_T))``.
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
        dtype=dtype,
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
    dtype: DType | None = None,
    param_dtype: DType = jnp.float32,
) -> Model:
    """A same-length sequence tagger: one output per input step.

    Unidirectional, ``o_t`` sees ``x_1..x_t``; bidirectional (the lecture's "Bi-directional
    Networks" slide), ``o_t = c + V [h_t^fwd, h_t^bwd]`` sees the whole sequence: the forward
    state has read ``x_1..x_t`` and the backward state ``x_T..x_t`` (within each sequence's
    own length).

    Args:
      cell: the cell of every layer and direction.
      num_tags: size of the per-step output.
      vocab_size, input_size, embed_size: token or float inputs, as in
          [`sequence_model`][jrnn.models.sequence_model].
      bidirectional: add a backward direction to every layer.
      num_layers: stacked layers.
      dropout: between layers and before the readout (training only).
      dtype, param_dtype: as in [`sequence_model`][jrnn.models.sequence_model].

    Returns:
      A [`Model`][jrnn.models.Model]: ``apply(params, inputs, lengths=..., resets=...) -> (o [B, T,
      num_tags], aux)`` with ``aux.carry`` the stack's final carries.
    """
    from jrnn.stacks import stack

    net = stack(cell, num_layers=num_layers, bidirectional=bidirectional, dropout=dropout)
    return sequence_model(
        net,
        num_tags,
        input_size=input_size,
        vocab_size=vocab_size,
        embed_size=embed_size,
        readout="all",
        dropout=dropout,
        dtype=dtype,
        param_dtype=param_dtype,
    )
