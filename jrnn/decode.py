"""Decoding an :class:`jrnn.models.EncoderDecoder`: greedy, beam search, sampling.

All three run the decoder's pure ``step`` inside one traced loop (``lax.scan`` for greedy
and sampling, ``lax.while_loop`` for beam search, which stops as soon as every beam has
ended), batched over the source batch, with no per-token Python loop; each public function
checks its arguments and then calls a jitted core (one compilation per model, shape and
static setting).  They also work inside a caller's ``jax.jit`` (concrete-value checks are
then skipped).

Conventions shared by all three:

* the decoder starts from ``model.bos``; a sequence ends with ``model.eos`` (included in its
  length and score) or after ``max_len`` tokens; positions after the end hold ``model.pad``;
* ``pad`` and ``bos`` are never emitted: their logits are masked out before the softmax,
  so the scores are log-probabilities under the distribution renormalised over the other
  tokens (:func:`sequence_scores` scores any given target the same way);
* scores are sums of log-probabilities in float32.

Beam search keeps ``k`` hypotheses per source; an ended hypothesis stays in the beam with
its score frozen (it competes with the open ones on its total log-probability, which open
ones can only lower).  The beams are ranked at the end by the length-normalised score
``score / length ** length_penalty`` (``length_penalty = 0``: raw log-probability; ``1``:
mean per token).  Beam width 1 is exactly greedy decoding.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn.base import Array, Params, check_int
from jrnn.models import EncoderDecoder

__all__ = [
    "Beams",
    "Decoded",
    "beam_search",
    "greedy_decode",
    "length_normalize",
    "sample_decode",
    "sequence_scores",
]


class Decoded(NamedTuple):
    """One decoded sequence per source.

    Attributes:
      tokens: int32 ``[B, max_len]``; ``pad`` after the end.
      lengths: int32 ``[B]``: tokens up to and including ``eos`` (``max_len`` without one).
      scores: float32 ``[B]``: the sum of the tokens' log-probabilities.
      attention: ``[B, max_len, S]`` attention weights of every step (``None`` for models
        without attention).
    """

    tokens: Array
    lengths: Array
    scores: Array
    attention: Array | None


class Beams(NamedTuple):
    """The ``k`` final hypotheses per source, best first (by ``normalized``).

    Attributes:
      tokens: int32 ``[B, k, max_len]``; ``tokens[:, 0]`` is the best.
      lengths: int32 ``[B, k]``.
      scores: float32 ``[B, k]``: total log-probabilities.
      normalized: float32 ``[B, k]``: ``scores / lengths ** length_penalty``.
    """

    tokens: Array
    lengths: Array
    scores: Array
    normalized: Array


def _check_model(model: Any, where: str) -> None:
    if not isinstance(model, EncoderDecoder):
        raise TypeError(
            f"{where}: `model` must be a jrnn.models.EncoderDecoder (seq2seq or vec2seq), got "
            f"{type(model).__name__}"
        )


def _check_source(
    model: EncoderDecoder, src: Any, src_lengths: Any, where: str
) -> tuple[Array, Array | None]:
    """Checks concrete sources (token range, lengths in ``[0, S]``) before the jitted core."""
    src = jnp.asarray(src)
    if src_lengths is not None:
        src_lengths = jnp.asarray(src_lengths)
        if (
            model.src_vocab is not None
            and src.ndim == 2
            and not isinstance(src_lengths, jax.core.Tracer)
            and src_lengths.size
        ):
            lo, hi = int(jnp.min(src_lengths)), int(jnp.max(src_lengths))
            if lo < 0 or hi > src.shape[1]:
                raise ValueError(
                    f"{where}: `src_lengths` must lie in [0, T={src.shape[1]}] (T the padded "
                    f"source length), got values in [{lo}, {hi}]"
                )
    if model.src_vocab is not None and not isinstance(src, jax.core.Tracer) and src.size:
        if not jnp.issubdtype(src.dtype, jnp.integer):
            raise TypeError(f"{where}: `src` must be integer token ids, got dtype {src.dtype}")
        lo, hi = int(jnp.min(src)), int(jnp.max(src))
        if lo < 0 or hi >= model.src_vocab:
            raise ValueError(
                f"{where}: `src` holds token ids in [{lo}, {hi}] but the model's source "
                f"vocabulary has {model.src_vocab} ids: a vocabulary-size mismatch"
            )
    return src, src_lengths


def _log_probs(model: EncoderDecoder, logits: Array) -> Array:
    """float32 log-softmax with ``pad`` and ``bos`` masked out (never emitted)."""
    logits = logits.astype(jnp.float32)
    banned = jnp.zeros((model.tgt_vocab,), bool).at[model.pad].set(True).at[model.bos].set(True)
    logits = jnp.where(banned, -jnp.inf, logits)
    return jax.nn.log_softmax(logits, axis=-1)


def length_normalize(scores: Array, lengths: Array, length_penalty: float | Array) -> Array:
    """``scores / max(lengths, 1) ** length_penalty`` (float32)."""
    n = jnp.maximum(lengths, 1).astype(jnp.float32)
    return scores.astype(jnp.float32) / n ** jnp.asarray(length_penalty, jnp.float32)


# --------------------------------------------------------------------------------------
# greedy and sampling


def greedy_decode(
    model: EncoderDecoder,
    params: Params,
    src: Array,
    src_lengths: Array | None = None,
    *,
    max_len: int,
) -> Decoded:
    """The most likely token at every step, fed back (``lax.scan`` over ``max_len`` steps).

    Args:
      model: an :class:`jrnn.models.EncoderDecoder`.
      params: its parameters.
      src: source tokens ``[B, S]`` (or the vector ``[B, F]`` of a ``vec2seq`` model).
      src_lengths: int ``[B]`` source lengths (``None``: all ``S``).
      max_len: the most tokens to generate (static).

    Returns:
      A :class:`Decoded` (with the attention weights of attention models).
    """
    where = "greedy_decode"
    _check_model(model, where)
    max_len = check_int("max_len", max_len, where)
    src, src_lengths = _check_source(model, src, src_lengths, where)
    return _autoregress(model, params, src, src_lengths, max_len, None, 0.0)


def sample_decode(
    model: EncoderDecoder,
    params: Params,
    src: Array,
    src_lengths: Array | None = None,
    *,
    key: jax.Array,
    max_len: int,
    temperature: float | Array = 1.0,
) -> Decoded:
    """Draws each token from ``softmax(logits / temperature)`` and feeds it back.

    ``temperature = 0`` is greedy decoding.  ``scores`` are log-probabilities under the
    model (temperature 1), whatever the sampling temperature.

    Args:
      model, params, src, src_lengths, max_len: as in :func:`greedy_decode`.
      key: the PRNG key: the result is a pure function of it.
      temperature: ``>= 0``.

    Returns:
      A :class:`Decoded`.
    """
    where = "sample_decode"
    _check_model(model, where)
    max_len = check_int("max_len", max_len, where)
    if isinstance(temperature, (int, float)) and temperature < 0:
        raise ValueError(f"{where}: `temperature` must be >= 0, got {temperature}")
    src, src_lengths = _check_source(model, src, src_lengths, where)
    return _autoregress(model, params, src, src_lengths, max_len, key, temperature)


@partial(jax.jit, static_argnums=(0, 4))
def _autoregress(model, params, src, src_lengths, max_len, key, temperature) -> Decoded:
    memory = model.encode(params, src, src_lengths)
    state = model.start(params, memory)
    batch = jax.tree.leaves(memory)[0].shape[0]
    temperature = jnp.asarray(temperature, jnp.float32)
    keys = (
        jax.random.split(key, max_len)
        if key is not None
        else jnp.zeros((max_len,), jnp.uint32)  # unused
    )

    def body(carry, k):
        state, tok, done, score, length = carry
        state, logits, weights = model.step(params, memory, state, tok)
        logp = _log_probs(model, logits)
        nxt = jnp.argmax(logp, axis=-1).astype(jnp.int32)
        if key is not None:
            drawn = jax.random.categorical(k, logp / jnp.maximum(temperature, 1e-6), axis=-1)
            nxt = jnp.where(temperature > 0, drawn.astype(jnp.int32), nxt)
        nxt = jnp.where(done, jnp.int32(model.pad), nxt)
        gained = jnp.take_along_axis(logp, nxt[:, None], axis=-1)[:, 0]
        score = score + jnp.where(done, jnp.float32(0), gained)
        length = length + (~done).astype(jnp.int32)
        done = done | (nxt == model.eos)
        return (state, nxt, done, score, length), (nxt, weights)

    init = (
        state,
        jnp.full((batch,), model.bos, jnp.int32),
        jnp.zeros((batch,), bool),
        jnp.zeros((batch,), jnp.float32),
        jnp.zeros((batch,), jnp.int32),
    )
    (_, _, _, score, length), (tokens, weights) = jax.lax.scan(body, init, keys)
    weights = None if weights is None else jnp.moveaxis(weights, 0, 1)
    return Decoded(jnp.moveaxis(tokens, 0, 1), length, score, weights)


# --------------------------------------------------------------------------------------
# beam search


def beam_search(
    model: EncoderDecoder,
    params: Params,
    src: Array,
    src_lengths: Array | None = None,
    *,
    beam_size: int,
    max_len: int,
    length_penalty: float | Array = 0.6,
) -> Beams:
    """Beam search of width ``beam_size`` (``lax.while_loop``, batched over sources).

    At every step each open hypothesis is extended by every token; the ``beam_size`` best
    of all extensions (and of the ended hypotheses, kept with their frozen scores) by total
    log-probability survive.  The loop stops when every hypothesis has ended (``eos``) or
    after ``max_len`` tokens; the survivors are then ranked by
    ``score / length ** length_penalty``.  ``beam_size=1`` is greedy decoding; a beam wide
    enough to hold every hypothesis is exhaustive search.

    Args:
      model, params, src, src_lengths, max_len: as in :func:`greedy_decode`.
      beam_size: ``k >= 1`` (static).
      length_penalty: ``α >= 0`` of the length normalisation.

    Returns:
      :class:`Beams`, best first.

    Raises:
      ValueError: ``beam_size < 1``, ``max_len < 1``, a negative ``length_penalty``.
    """
    where = "beam_search"
    _check_model(model, where)
    beam_size = check_int("beam_size", beam_size, where)
    max_len = check_int("max_len", max_len, where)
    if isinstance(length_penalty, (int, float)) and length_penalty < 0:
        raise ValueError(f"{where}: `length_penalty` must be >= 0, got {length_penalty}")
    src, src_lengths = _check_source(model, src, src_lengths, where)
    return _beam(model, params, src, src_lengths, beam_size, max_len, length_penalty)


@partial(jax.jit, static_argnums=(0, 4, 5))
def _beam(model, params, src, src_lengths, k, max_len, length_penalty) -> Beams:
    memory = model.encode(params, src, src_lengths)
    batch = jax.tree.leaves(memory)[0].shape[0]
    vocab = model.tgt_vocab
    memory = jax.tree.map(lambda a: jnp.repeat(a, k, axis=0), memory)  # [B*k, ...]
    state = model.start(params, memory)
    neg_inf = jnp.float32(-jnp.inf)
    # only beam 0 is live at first, so the k beams do not start as k copies of one
    scores = jnp.where(jnp.arange(k) == 0, jnp.float32(0), neg_inf)
    scores = jnp.broadcast_to(scores, (batch, k))
    pad_only = jnp.full((vocab,), neg_inf).at[model.pad].set(0.0)
    rows = jnp.arange(batch, dtype=jnp.int32)[:, None] * k

    def cond(c):
        t, _, scores, finished, _, _, _ = c
        return (t < max_len) & ~jnp.all(finished | (scores == neg_inf))

    def body(c):
        t, tokens, scores, finished, lengths, last, state = c
        state, logits, _ = model.step(params, memory, state, last.reshape(-1))
        logp = _log_probs(model, logits).reshape(batch, k, vocab)
        logp = jnp.where(finished[..., None], pad_only, logp)  # ended: one frozen candidate
        cand = (scores[..., None] + logp).reshape(batch, k * vocab)
        top, idx = jax.lax.top_k(cand, k)
        parent = (idx // vocab).astype(jnp.int32)
        tok = (idx % vocab).astype(jnp.int32)
        tokens = jnp.take_along_axis(tokens, parent[..., None], axis=1)
        tokens = jax.lax.dynamic_update_slice_in_dim(tokens, tok[..., None], t, axis=2)
        was_finished = jnp.take_along_axis(finished, parent, axis=1)
        lengths = jnp.take_along_axis(lengths, parent, axis=1) + (~was_finished).astype(jnp.int32)
        finished = was_finished | (tok == model.eos)
        flat = (rows + parent).reshape(-1)
        state = jax.tree.map(lambda a: jnp.take(a, flat, axis=0), state)
        return t + 1, tokens, top, finished, lengths, tok, state

    init = (
        jnp.int32(0),
        jnp.full((batch, k, max_len), model.pad, jnp.int32),
        scores,
        jnp.zeros((batch, k), bool),
        jnp.zeros((batch, k), jnp.int32),
        jnp.full((batch, k), model.bos, jnp.int32),
        state,
    )
    _, tokens, scores, _, lengths, _, _ = jax.lax.while_loop(cond, body, init)
    normalized = length_normalize(scores, lengths, length_penalty)
    order = jnp.argsort(-normalized, axis=1, stable=True)
    pick = lambda a: jnp.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), 1)
    return Beams(pick(tokens), pick(lengths), pick(scores), pick(normalized))


# --------------------------------------------------------------------------------------
# scoring given targets


def sequence_scores(
    model: EncoderDecoder,
    params: Params,
    src: Array,
    tgt_out: Array,
    tgt_lengths: Array,
    src_lengths: Array | None = None,
) -> Array:
    """Log-probability of given target sequences, scored as the decoders score them.

    Args:
      model, params, src, src_lengths: as in :func:`greedy_decode`.
      tgt_out: int ``[B, T']``, the targets ``[y_1, ..., y_n, eos, pad...]``.
      tgt_lengths: int ``[B]``: ``n + 1`` (the ``eos`` included), or ``n`` for a target cut
        at the maximum length.

    Returns:
      float32 ``[B]``: ``Σ_{t < tgt_lengths} log p(tgt_out[t] | tgt_out[:t], src)`` with
      ``pad`` and ``bos`` masked as in decoding.
    """
    _check_model(model, "sequence_scores")
    tgt_out = jnp.asarray(tgt_out, jnp.int32)
    batch, steps = tgt_out.shape
    tgt_in = jnp.concatenate([jnp.full((batch, 1), model.bos, jnp.int32), tgt_out[:, :-1]], 1)
    tgt_in = jnp.where(tgt_in == model.eos, model.pad, tgt_in)  # after eos: never read
    logits, _ = model.apply(params, src, tgt_in, src_lengths=src_lengths)
    logp = _log_probs(model, logits)
    picked = jnp.take_along_axis(logp, tgt_out[..., None], axis=-1)[..., 0]
    tgt_lengths = jnp.asarray(tgt_lengths).astype(jnp.int32)
    valid = jnp.arange(steps, dtype=jnp.int32)[None, :] < tgt_lengths[:, None]
    return jnp.sum(jnp.where(valid, picked, jnp.float32(0)), axis=-1)
