"""Encoder-decoders: sequence to sequence (with or without attention) and vector to sequence.

Both share one decoding interface (`EncoderDecoder`: ``encode``, ``start``, ``step``)
used by greedy, beam and sampled decoding in [`jrnn.decode`][].  Re-exported by
[`jrnn.models`][].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from jrnn import keys
from jrnn.base import Array, Carry, Cell, DType, Params, vary_like
from jrnn.checks import check_int, check_lengths
from jrnn.model_base import (
    ModelAux,
    as_stack,
    check_tokens,
    compute_dtype,
    dense_init,
    embed_tokens,
)
from jrnn.stacks import Stack


class EncoderDecoder(NamedTuple):
    """A conditional generator: an encoder, then a decoder fed its previous token.

    ``seq2seq`` (with or without attention) and ``vec2seq`` both return one, so greedy,
    beam and sampled decoding ([`jrnn.decode`][]) work with either.

    Attributes:
      init: ``init(key) -> params``.
      apply: ``apply(params, src, tgt_in, *, src_lengths=None, key=None, sample_prob=0.0)
        -> (logits [B, T', V], ModelAux(carry, attention))``: the decoder run with teacher
        forcing (``tgt_in = [BOS, y_1, ..., y_{n}]``, padded); ``key`` enables dropout and,
        with ``sample_prob > 0``, scheduled sampling; ``aux.attention`` holds the attention
        weights ``[B, T', S]`` (``None`` without attention), ``aux.carry`` the decoder's
        final carry.
      encode: ``encode(params, src, src_lengths=None, key=None) -> memory`` (a pytree with
        leading batch axis ``B``).
      start: ``start(params, memory) -> state``: the decoder's state before the first token.
      step: ``step(params, memory, state, token [N]) -> (state, logits [N, V], weights
        [N, S] or None)``: one decoder step (``memory`` with the same leading ``N``).
      src_vocab: source vocabulary (``None`` for vector inputs).
      src_size: feature size of vector inputs (``None`` for token inputs).
      tgt_vocab: target vocabulary ``V``.
      pad, bos, eos: the target's special ids (decoding never emits ``pad`` or ``bos``).
      attention: the [`jrnn.attention.Attention`][], or ``None``.
      name: a short description.
    """

    init: Callable[[jax.Array], Params]
    apply: Callable[..., tuple[Array, ModelAux]]
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
) -> tuple[Array, Array | None, Any]:
    """Runs ``step`` over ``tgt_in [B, T']`` with ``lax.scan``; scheduled sampling optional.

    Returns ``(logits [B, T', V], weights [B, T', S] | None, final state)``.
    """
    scheduled = not (isinstance(sample_prob, (int, float)) and sample_prob == 0)
    tokens = jnp.moveaxis(tgt_in, 1, 0)  # [T', B]
    state = vary_like(state, tokens, memory, params)  # inside shard_map: typed like the body's
    if not scheduled:

        def body(s, tok):
            s, logits, w = step(params, memory, s, tok)
            return s, (logits, w)

        final, (logits, weights) = jax.lax.scan(body, state, tokens)
    else:
        if key is None:
            raise ValueError("scheduled sampling (`sample_prob` > 0) needs a `key`")
        own = keys.bernoulli(key, sample_prob, tokens.shape, batch_axis=1).at[0].set(False)

        def body(carry, inp):
            s, pred = carry
            tok, own_t = inp
            tok = jnp.where(own_t, pred, tok)
            s, logits, w = step(params, memory, s, tok)
            pred = jax.lax.stop_gradient(jnp.argmax(logits, axis=-1).astype(jnp.int32))
            return (s, pred), (logits, w)

        (final, _), (logits, weights) = jax.lax.scan(body, (state, tokens[0]), (tokens, own))
    logits = jnp.moveaxis(logits, 0, 1)
    weights = None if weights is None else jnp.moveaxis(weights, 0, 1)
    return logits, weights, final


def _bridge_init(key: jax.Array, in_size: int, template: Carry, dtype: Any) -> list[dict]:
    leaves = jax.tree.leaves(template)
    ks = jax.random.split(key, max(len(leaves), 1))
    return [
        {
            "w": dense_init(k, in_size, leaf.shape[-1], dtype),
            "b": jnp.zeros(leaf.shape[-1:], dtype),
        }
        for k, leaf in zip(ks, leaves, strict=False)
    ]


def _bridge_apply(bridge: list[dict], summary: Array, template: Carry) -> Carry:
    """``tanh(summary @ w + b)`` for every leaf of the decoder's carry."""
    treedef = jax.tree.structure(template)
    leaves = [
        jnp.tanh(summary @ p["w"].astype(summary.dtype) + p["b"].astype(summary.dtype))
        for p in bridge
    ]
    return jax.tree.unflatten(treedef, leaves)


def _check_copy_bridge(enc_template, dec_template, num_dirs: int, where: str) -> None:
    """``bridge="copy"`` hands the encoder's final state (directions concatenated) to the
    decoder: the two must have the same structure and sizes."""
    joined = jax.tree.map(lambda a: a.shape[-1] * num_dirs, enc_template)
    want = jax.tree.map(lambda a: a.shape[-1], dec_template)
    same_type = jax.tree.structure(enc_template) == jax.tree.structure(dec_template)
    if not same_type or jax.tree.leaves(joined) != jax.tree.leaves(want):
        raise ValueError(
            f"{where}: encoder/decoder size mismatch: bridge='copy' hands the encoder's "
            f"final state {jax.tree.structure(enc_template)} with sizes "
            f"{jax.tree.leaves(joined)} (directions concatenated) to a decoder whose "
            f"state {jax.tree.structure(dec_template)} has sizes "
            f"{jax.tree.leaves(want)}; use bridge='linear' or matching sizes"
        )


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
    dtype: DType | None = None,
    param_dtype: DType = jnp.float32,
) -> EncoderDecoder:
    """Sequence-to-sequence mapping: encoder -> context -> decoder (different lengths).

    The encoder (a cell or a stack, e.g. bidirectional) reads the source within its lengths.
    Without attention (the lecture's "Sequence to Sequence Mapping Networks"), its final state
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
      encoder: a [`jrnn.Cell`][jrnn.base.Cell] or [`jrnn.Stack`][jrnn.stacks.Stack] (outputs ``E = D
          * H_enc``).
      decoder: the decoder [`jrnn.Cell`][jrnn.base.Cell] (``H_dec``).
      src_vocab, tgt_vocab: vocabulary sizes.
      embed_size: width of both token embeddings (``None``: one-hot).
      attention: ``None``, ``"additive"`` (Bahdanau), ``"dot"`` or ``"general"`` (Luong).
      attention_size: hidden width of the additive score (default ``H_dec``).
      input_feeding: with attention, feed ``s̃_{t-1}`` back as input.
      context_input: without attention, feed the context ``C`` at every step.
      bridge: how the encoder's final state initialises the decoder (see above).
      pad, bos, eos: special target ids (distinct, in ``[0, tgt_vocab)``).
      dtype: compute dtype of the embeddings (``None``: ``param_dtype``); the encoder and
        decoder compute in their cells' ``dtype``.
      param_dtype: storage dtype of embeddings, bridge, attention and readout.

    Returns:
      An `EncoderDecoder`: ``apply(params, src, tgt_in, *, src_lengths=None,
      key=None, sample_prob=0.0) -> (logits, ModelAux(carry, attention))``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> model = jrnn.seq2seq(jrnn.gru(16), jrnn.gru(16), src_vocab=7, tgt_vocab=9,
      ...                      attention="general")
      >>> params = model.init(jax.random.key(0))
      >>> src = jnp.full((2, 5), 3, jnp.int32)                       # [batch, source time]
      >>> tgt_in = jnp.array([[1, 4, 5], [1, 6, 0]], jnp.int32)      # [batch, target time]
      >>> logits, aux = model.apply(params, src, tgt_in, src_lengths=jnp.array([5, 3]))
      >>> logits.shape, aux.attention.shape       # [B, T', V], [B, T', S]
      ((2, 3, 9), (2, 3, 5))

    Raises:
      ValueError: bad sizes; encoder/decoder size mismatches (``bridge="copy"`` with
        different state shapes or cell types; the dot score with ``H_dec != E``); bad special
        ids.  At call time: token ids outside the vocabularies, lengths beyond ``T``.
    """
    where = "seq2seq"
    compute = compute_dtype(dtype, param_dtype)
    src_vocab = check_int("src_vocab", src_vocab, where)
    tgt_vocab = check_int("tgt_vocab", tgt_vocab, where, minimum=4)
    if embed_size is not None:
        embed_size = check_int("embed_size", embed_size, where)
    _check_specials(tgt_vocab, pad, bos, eos, where)
    if bridge not in ("linear", "copy", "zeros"):
        raise ValueError(f"{where}: `bridge` must be 'linear', 'copy' or 'zeros', got {bridge!r}")
    if not isinstance(decoder, Cell):
        raise ValueError(f"{where}: `decoder` must be a jrnn Cell, got {type(decoder).__name__}")
    enc = as_stack(encoder)
    num_dirs = 2 if enc.bidirectional else 1
    enc_out = num_dirs * enc.cell.output_size
    dec_template = _zero_carry(decoder)
    enc_template = _zero_carry(enc.cell)
    enc_state = num_dirs * sum(leaf.shape[-1] for leaf in jax.tree.leaves(enc_template))
    if bridge == "copy":
        _check_copy_bridge(enc_template, dec_template, num_dirs, where)
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
            params["w_c"] = dense_init(ks[6], enc_out + h_dec, h_dec, param_dtype)
            params["b_c"] = jnp.zeros((h_dec,), param_dtype)
        params["w_o"] = dense_init(ks[7], h_dec, tgt_vocab, param_dtype)
        params["b_o"] = jnp.zeros((tgt_vocab,), param_dtype)
        return params

    def _embed(table_name: str, vocab: int, tokens: Array, params: Params) -> Array:
        return embed_tokens(params.get(table_name), tokens, vocab, compute)

    def encode(
        params: Params, src: Array, src_lengths: Array | None = None, key: jax.Array | None = None
    ) -> dict[str, Any]:
        """``src [B, S]`` -> memory ``{"summary", "context", "attn"?}``."""
        src = check_tokens("src", src, src_vocab, f"{where}.encode", rank=2)
        batch, num_src = src.shape
        lengths = (
            jnp.full((batch,), num_src, jnp.int32)
            if src_lengths is None
            else check_lengths(src_lengths, (batch,), num_src, f"{where}.encode", "src_lengths")
        )
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
        *,
        src_lengths: Array | None = None,
        key: jax.Array | None = None,
        sample_prob: Any = 0.0,
    ) -> tuple[Array, ModelAux]:
        """``src [B, S]``, ``tgt_in [B, T']`` -> ``(logits [B, T', V], ModelAux)``."""
        tgt_in = check_tokens("tgt_in", tgt_in, tgt_vocab, f"{where}.apply", rank=2)
        if tgt_in.shape[0] != jnp.shape(src)[0]:
            raise ValueError(
                f"{where}.apply: `src` and `tgt_in` must have the same batch size, got "
                f"{jnp.shape(src)[0]} and {tgt_in.shape[0]}"
            )
        k_enc = k_dec = None
        if key is not None:
            k_enc, k_dec = keys.split(key)
        memory = encode(params, src, src_lengths, key=k_enc)
        state = start(params, memory)
        logits, weights, (carry, _) = _teacher_forced(
            step, params, memory, state, tgt_in, sample_prob, k_dec
        )
        return logits, ModelAux(carry=carry, attention=weights)

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
    dtype: DType | None = None,
    param_dtype: DType = jnp.float32,
) -> EncoderDecoder:
    """Single input, multiple output (the lecture's vector -> sequence slide).

    A vector ``v [B, input_size]`` conditions an autoregressive generator: as its initial
    state (``condition="init"``: ``s_0 = tanh(v @ w + b)`` per carry leaf), as an extra
    input at every step (``"input"``: ``s_t = cell(s_{t-1}, [E y_{t-1}, v])``), or both::

        s_0 = tanh(v @ w + b) or 0,    s_t = cell(s_{t-1}, [E y_{t-1}, v]),   o_t = c + V s_t

    Args:
      decoder: the generator's [`jrnn.Cell`][jrnn.base.Cell].
      input_size: size of the conditioning vector.
      tgt_vocab: output vocabulary ``V``.
      embed_size: token embedding width (``None``: one-hot).
      condition: ``"init"``, ``"input"`` or ``"both"``.
      pad, bos, eos: special ids.
      dtype: compute dtype (``None``: ``param_dtype``).
      param_dtype: storage dtype.

    Returns:
      An `EncoderDecoder` whose "source" is the vector: ``apply(params, v, tgt_in)
      -> (logits, ModelAux(carry))``, ``encode(params, v)``; decode it with
      [`jrnn.decode`][].

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> gen = jrnn.vec2seq(jrnn.lstm(8), input_size=3, tgt_vocab=6)
      >>> params = gen.init(jax.random.key(0))
      >>> logits, aux = gen.apply(params, jnp.ones((2, 3)), jnp.ones((2, 4), jnp.int32))
      >>> logits.shape, aux.carry.h.shape
      ((2, 4, 6), (2, 8))
    """
    where = "vec2seq"
    compute = compute_dtype(dtype, param_dtype)
    input_size = check_int("input_size", input_size, where)
    tgt_vocab = check_int("tgt_vocab", tgt_vocab, where, minimum=4)
    if embed_size is not None:
        embed_size = check_int("embed_size", embed_size, where)
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
        params["w_o"] = dense_init(k_o, decoder.output_size, tgt_vocab, param_dtype)
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
        return {"vec": vec.astype(compute)}

    def start(params: Params, memory: dict[str, Any]) -> Carry:
        vec = memory["vec"]
        if as_init:
            return _bridge_apply(params["bridge"], vec, template)
        return decoder.initial_carry(params["decoder"], vec.shape[:-1])

    def step(params: Params, memory: dict[str, Any], carry: Carry, token: Array):
        vec = memory["vec"]
        x = embed_tokens(params.get("tgt_embed"), token, tgt_vocab, vec.dtype)
        if as_input:
            x = jnp.concatenate([x, vec], -1)
        carry, h = decoder.step(params["decoder"], carry, x)
        h = h.astype(vec.dtype)
        return carry, h @ params["w_o"].astype(h.dtype) + params["b_o"].astype(h.dtype), None

    def apply(
        params: Params,
        vec: Array,
        tgt_in: Array,
        *,
        src_lengths: Array | None = None,
        key: jax.Array | None = None,
        sample_prob: Any = 0.0,
    ) -> tuple[Array, ModelAux]:
        """``vec [B, input_size]``, ``tgt_in [B, T']`` -> ``(logits [B, T', V], ModelAux)``."""
        tgt_in = check_tokens("tgt_in", tgt_in, tgt_vocab, f"{where}.apply", rank=2)
        memory = encode(params, vec, src_lengths)
        if tgt_in.shape[0] != memory["vec"].shape[0]:
            raise ValueError(
                f"{where}.apply: `vec` and `tgt_in` must have the same batch size, got "
                f"{memory['vec'].shape[0]} and {tgt_in.shape[0]}"
            )
        logits, _, carry = _teacher_forced(
            step, params, memory, start(params, memory), tgt_in, sample_prob, key
        )
        return logits, ModelAux(carry=carry)

    name = f"vec2seq({decoder.name}, input={input_size}, vocab={tgt_vocab}, condition={condition})"
    return EncoderDecoder(
        init, apply, encode, start, step, None, input_size, tgt_vocab, pad, bos, eos, None, name
    )
