"""Decoding an `jrnn.models.EncoderDecoder`: greedy, beam search, sampling.

All three run the decoder's pure ``step`` inside one traced loop (``lax.scan`` for greedy
and sampling, ``lax.while_loop`` for beam search, which stops as soon as every beam has
ended), batched over the source batch, with no per-token Python loop; each public function
checks its arguments and then calls a jitted core (one compilation per model, shape and
static setting).

Inside a caller's ``jax.jit``: every check of shapes, dtypes and static settings still runs
at trace time; checks of *values* (token ids within the vocabulary, ``src_lengths`` within
``[0, S]``, a non-negative ``temperature`` or ``length_penalty``) run only on concrete
arrays (closed-over constants included) and are skipped for traced ones (``jax.core.Tracer``).
Then out-of-range source ids are clipped into the vocabulary by the embedding's gather (JAX's
indexing rule), ``src_lengths`` are clipped to ``[0, S]`` by the length mask, and a negative
traced temperature behaves as ``0`` (greedy) -- the outputs stay finite.

Conventions shared by all three:

* the decoder starts from ``model.bos``; a sequence ends with ``model.eos`` (included in its
  length and score) or after ``max_len`` tokens; positions after the end hold ``model.pad``;
* ``pad`` and ``bos`` are never emitted: their logits are masked out before the softmax,
  so the scores are log-probabilities under the distribution renormalised over the other
  tokens ([`sequence_scores`][jrnn.decode.sequence_scores] scores any given target the same way);
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
import numpy as np

from jrnn.base import Array, Params, exportable
from jrnn.checks import check_int, check_lengths
from jrnn.models import EncoderDecoder

__all__ = [
    "Beams",
    "Decoded",
    "beam_search",
    "greedy_decode",
    "length_normalize",
    "num_hypotheses",
    "sample_decode",
    "sequence_scores",
]


@exportable
class Decoded(NamedTuple):
    """One decoded sequence per source.

    Attributes:
      tokens: int32 ``[B, max_len]``; ``pad`` after the end.
      lengths: int32 ``[B]``: tokens up to and including ``eos`` (``max_len`` without one).
      scores: float32 ``[B]``: the sum of the tokens' log-probabilities.
      attention: ``[B, max_len, S]`` attention weights of every step (``None`` for models
        without attention).

    Examples:
      >>> import jax.numpy as jnp
      >>> d = Decoded(jnp.array([[3, 2, 0]]), jnp.array([2]), jnp.array([-0.5]), None)
      >>> d.tokens[0, : int(d.lengths[0])].tolist()  # the tokens up to eos (2)
      [3, 2]
    """

    tokens: Array
    lengths: Array
    scores: Array
    attention: Array | None


@exportable
class Beams(NamedTuple):
    """The ``k`` final hypotheses per source, best first (by ``normalized``).

    Attributes:
      tokens: int32 ``[B, k, max_len]``; ``tokens[:, 0]`` is the best.
      lengths: int32 ``[B, k]``.
      scores: float32 ``[B, k]``: total log-probabilities.
      normalized: float32 ``[B, k]``: ``scores / lengths ** length_penalty``.

    Examples:
      >>> import jax.numpy as jnp
      >>> b = Beams(jnp.zeros((2, 3, 4), jnp.int32), jnp.ones((2, 3), jnp.int32),
      ...           jnp.zeros((2, 3)), jnp.zeros((2, 3)))
      >>> b.tokens[:, 0].shape  # the best hypothesis of each source
      (2, 4)
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


def _concrete(x: Any) -> np.ndarray | None:
    """``x`` as a NumPy array when its value is known at trace time, else ``None``."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def check_tokens(name: str, x: Any, vocab: int, where: str, what: str) -> None:
    """Integer dtype always; ids in ``[0, vocab)`` when ``x`` is concrete."""
    dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"{where}: `{name}` must be integer token ids, got dtype {dtype}")
    value = _concrete(x)
    if value is not None and value.size:
        lo, hi = int(value.min()), int(value.max())
        if lo < 0 or hi >= vocab:
            raise ValueError(
                f"{where}: `{name}` holds token ids in [{lo}, {hi}] but the model's {what} "
                f"vocabulary has {vocab} ids (expected ids in [0, {vocab - 1}]): a "
                "vocabulary-size mismatch"
            )


def _check_nonnegative(name: str, value: Any, where: str) -> None:
    """``value >= 0`` when it is concrete (a traced value is not checked)."""
    v = _concrete(value)
    if v is None:
        return
    if v.shape != ():
        raise ValueError(f"{where}: `{name}` must be a scalar, got shape {list(v.shape)}")
    if not np.issubdtype(v.dtype, np.number) or np.issubdtype(v.dtype, np.complexfloating):
        raise TypeError(f"{where}: `{name}` must be a real number, got dtype {v.dtype}")
    if not v >= 0:  # NaN fails too
        raise ValueError(f"{where}: `{name}` must be >= 0, got {v.item()}")


def _check_source(
    model: EncoderDecoder, src: Any, src_lengths: Any, where: str
) -> tuple[Array, Array | None]:
    """Checks the sources' shapes and dtypes, and their values when concrete."""
    if not hasattr(src, "dtype"):
        src = np.asarray(src)
    if src.ndim != 2:
        layout = "[batch, time] token ids" if model.src_vocab is not None else "[batch, features]"
        raise ValueError(f"{where}: `src` must have shape {layout}, got {list(src.shape)}")
    if model.src_vocab is not None:
        check_tokens("src", src, model.src_vocab, where, "source")
    src = jnp.asarray(src)
    if model.src_vocab is not None:
        # A traced out-of-range id would read NaN through the embedding's gather: clip it.
        src = jnp.clip(src, 0, model.src_vocab - 1)
    if src_lengths is not None:
        # clamped to [0, S] when traced
        src_lengths = check_lengths(src_lengths, src.shape[:1], src.shape[1], where, "src_lengths")
    return src, src_lengths


def _check_key(key: Any, where: str) -> None:
    if not isinstance(key, jax.Array) or not (
        jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        or (key.dtype == jnp.uint32 and key.shape == (2,))
    ):
        got = f"{type(key).__name__} {getattr(key, 'dtype', '')} {list(np.shape(key))}"
        raise TypeError(
            f"{where}: `key` must be a PRNG key (jax.random.key(0) or a raw uint32[2] key), "
            f"got {got}"
        )


def num_hypotheses(model: EncoderDecoder, max_len: int) -> int:
    """How many distinct outputs of at most ``max_len`` tokens ``model`` can emit.

    With ``E`` emittable tokens (all but ``pad`` and ``bos``), ``eos`` among them: every
    ``n < max_len`` other tokens followed by ``eos``, plus the ``(E - 1) ** max_len``
    outputs cut at ``max_len``.  [`beam_search`][jrnn.decode.beam_search] never keeps more beams
    than this.

    Args:
      model: an `jrnn.models.EncoderDecoder`.
      max_len: the most tokens per output.

    Returns:
      The count (a Python int; may be huge).

    Examples:
      >>> import jrnn
      >>> from jrnn.models import seq2seq
      >>> model = seq2seq(jrnn.lstm(4), jrnn.gru(4), 6, 5, embed_size=3)
      >>> num_hypotheses(model, 1), num_hypotheses(model, 2)  # tokens 2 (eos), 3, 4
      (3, 7)
    """
    max_len = check_int("max_len", max_len, "num_hypotheses")
    emittable = set(range(model.tgt_vocab)) - {model.pad, model.bos}
    if model.eos not in emittable:
        return len(emittable) ** max_len
    other = len(emittable) - 1
    return sum(other**n for n in range(max_len)) + other**max_len


def _log_probs(model: EncoderDecoder, logits: Array) -> Array:
    """float32 log-softmax with ``pad`` and ``bos`` masked out (never emitted)."""
    logits = logits.astype(jnp.float32)
    banned = jnp.zeros((model.tgt_vocab,), bool).at[model.pad].set(True).at[model.bos].set(True)
    logits = jnp.where(banned, -jnp.inf, logits)
    return jax.nn.log_softmax(logits, axis=-1)


def length_normalize(scores: Array, lengths: Array, length_penalty: float | Array) -> Array:
    """``scores / max(lengths, 1) ** length_penalty`` (float32), the beams' ranking key.

    Args:
      scores: ``[...]`` total log-probabilities.
      lengths: int ``[...]`` (broadcastable) output lengths.
      length_penalty: ``α``; ``0`` leaves the scores, ``1`` gives the mean per token.

    Returns:
      float32 ``[...]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> length_normalize(jnp.array([-4.0, -4.0]), jnp.array([2, 4]), 1.0)
      Array([-2., -1.], dtype=float32)
    """
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
      model: an `jrnn.models.EncoderDecoder`.
      params: its parameters.
      src: source tokens ``[B, S]`` (or the vector ``[B, F]`` of a ``vec2seq`` model).
      src_lengths: int ``[B]`` source lengths (``None``: all ``S``).
      max_len: the most tokens to generate (static).

    Returns:
      A [`Decoded`][jrnn.decode.Decoded]: ``tokens [B, max_len]``, ``lengths [B]``, ``scores [B]``
      and, for attention models, ``attention [B, max_len, S]``.

    Raises:
      TypeError: ``model`` is not an ``EncoderDecoder``; non-integer ``src`` ids or lengths.
      ValueError: ``max_len < 1``; a bad shape of ``src`` / ``src_lengths``; concrete ``src``
        ids outside the source vocabulary or ``src_lengths`` outside ``[0, S]``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> from jrnn.models import seq2seq
      >>> model = seq2seq(jrnn.lstm(4), jrnn.gru(4), 6, 5, embed_size=3, attention="dot")
      >>> params = model.init(jax.random.key(0))
      >>> src = jnp.array([[3, 4, 5], [4, 5, 0]])  # [batch=2, S=3]
      >>> out = greedy_decode(model, params, src, jnp.array([3, 2]), max_len=4)
      >>> out.tokens.shape, out.lengths.shape, out.attention.shape
      ((2, 4), (2,), (2, 4, 3))
      >>> bool(jnp.all(out.scores <= 0))  # sums of log-probabilities
      True
      >>> run = jax.jit(lambda p: greedy_decode(model, p, src, max_len=4).tokens)
      >>> run(params).shape  # also inside jit, over closed-over arrays
      (2, 4)
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
      model, params, src, src_lengths, max_len: as in [`greedy_decode`][jrnn.decode.greedy_decode].
      key: the PRNG key: the result is a pure function of it.
      temperature: ``>= 0``.

    Returns:
      A [`Decoded`][jrnn.decode.Decoded] (shapes as in
      [`greedy_decode`][jrnn.decode.greedy_decode]).

    Raises:
      TypeError: ``key`` is not a PRNG key; as [`greedy_decode`][jrnn.decode.greedy_decode].
      ValueError: a concrete negative ``temperature``; as
          [`greedy_decode`][jrnn.decode.greedy_decode].  A traced
        negative temperature decodes greedily.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> from jrnn.models import seq2seq
      >>> model = seq2seq(jrnn.lstm(4), jrnn.gru(4), 6, 5, embed_size=3, attention="dot")
      >>> params = model.init(jax.random.key(0))
      >>> src = jnp.array([[3, 4, 5], [4, 5, 0]])  # [batch=2, S=3]
      >>> out = sample_decode(model, params, src, key=jax.random.key(1), max_len=4)
      >>> out.tokens.shape
      (2, 4)
      >>> cold = sample_decode(model, params, src, key=jax.random.key(1), max_len=4,
      ...                      temperature=0.0)
      >>> bool(jnp.all(cold.tokens == greedy_decode(model, params, src, max_len=4).tokens))
      True
    """
    where = "sample_decode"
    _check_model(model, where)
    max_len = check_int("max_len", max_len, where)
    _check_nonnegative("temperature", temperature, where)
    _check_key(key, where)
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
      model, params, src, src_lengths, max_len: as in [`greedy_decode`][jrnn.decode.greedy_decode].
      beam_size: ``k >= 1`` (static).
      length_penalty: ``α >= 0`` of the length normalisation.

    Returns:
      [`Beams`][jrnn.decode.Beams], best first: ``tokens [B, k, max_len]``, ``lengths``, ``scores``
      and ``normalized`` ``[B, k]`` with ``k = min(beam_size, num_hypotheses(model, max_len))``:
      the beam is clamped to the number of distinct outputs the model can emit (e.g. ``3``
      for a 5-token vocabulary and ``max_len=1``), so every returned beam is a real
      hypothesis with a finite score (never a ``-inf`` filler).

    Raises:
      ValueError: ``beam_size < 1``, ``max_len < 1``, a concrete negative
        ``length_penalty``; as [`greedy_decode`][jrnn.decode.greedy_decode].

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> from jrnn.models import seq2seq
      >>> model = seq2seq(jrnn.lstm(4), jrnn.gru(4), 6, 5, embed_size=3, attention="dot")
      >>> params = model.init(jax.random.key(0))
      >>> src = jnp.array([[3, 4, 5], [4, 5, 0]])  # [batch=2, S=3]
      >>> beams = beam_search(model, params, src, beam_size=3, max_len=4)
      >>> beams.tokens.shape, beams.scores.shape
      ((2, 3, 4), (2, 3))
      >>> bool(jnp.all(beams.normalized[:, :-1] >= beams.normalized[:, 1:]))  # best first
      True
      >>> beam_search(model, params, src, beam_size=8, max_len=1).tokens.shape  # clamped
      (2, 3, 1)
    """
    where = "beam_search"
    _check_model(model, where)
    beam_size = check_int("beam_size", beam_size, where)
    max_len = check_int("max_len", max_len, where)
    _check_nonnegative("length_penalty", length_penalty, where)
    src, src_lengths = _check_source(model, src, src_lengths, where)
    k = min(beam_size, num_hypotheses(model, max_len))
    return _beam(model, params, src, src_lengths, k, max_len, length_penalty)


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
      model, params, src, src_lengths: as in [`greedy_decode`][jrnn.decode.greedy_decode].
      tgt_out: int ``[B, T']``, the targets ``[y_1, ..., y_n, eos, pad...]``.
      tgt_lengths: int ``[B]``: ``n + 1`` (the ``eos`` included), or ``n`` for a target cut
        at the maximum length.

    Returns:
      float32 ``[B]``: ``Σ_{t < tgt_lengths} log p(tgt_out[t] | tgt_out[:t], src)`` with
      ``pad`` and ``bos`` masked as in decoding.

    Raises:
      TypeError: non-integer ``tgt_out`` / ``tgt_lengths``; as
          [`greedy_decode`][jrnn.decode.greedy_decode].
      ValueError: ``tgt_out`` not ``[B, T']``, ``tgt_lengths`` not ``[B]``; concrete target
        ids outside the target vocabulary or lengths outside ``[0, T']``.  Traced values are
        not checked: ids are clipped into the vocabulary and lengths into ``[0, T']``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> from jrnn.models import seq2seq
      >>> model = seq2seq(jrnn.lstm(4), jrnn.gru(4), 6, 5, embed_size=3, attention="dot")
      >>> params = model.init(jax.random.key(0))
      >>> src = jnp.array([[3, 4, 5], [4, 5, 0]])  # [batch=2, S=3]
      >>> out = greedy_decode(model, params, src, max_len=4)
      >>> again = sequence_scores(model, params, src, out.tokens, out.lengths)
      >>> bool(jnp.allclose(again, out.scores, atol=1e-5))
      True
    """
    where = "sequence_scores"
    _check_model(model, where)
    src, src_lengths = _check_source(model, src, src_lengths, where)
    if not hasattr(tgt_out, "dtype"):
        tgt_out = np.asarray(tgt_out)
    if tgt_out.ndim != 2 or tgt_out.shape[0] != src.shape[0]:
        raise ValueError(
            f"{where}: `tgt_out` must have shape [batch, T'] with batch={src.shape[0]} (from "
            f"`src`), got {list(tgt_out.shape)}"
        )
    check_tokens("tgt_out", tgt_out, model.tgt_vocab, where, "target")
    batch, steps = tgt_out.shape
    tgt_lengths = check_lengths(tgt_lengths, (batch,), steps, where, "tgt_lengths")
    tgt_out = jnp.clip(jnp.asarray(tgt_out, jnp.int32), 0, model.tgt_vocab - 1)
    tgt_in = jnp.concatenate([jnp.full((batch, 1), model.bos, jnp.int32), tgt_out[:, :-1]], 1)
    tgt_in = jnp.where(tgt_in == model.eos, model.pad, tgt_in)  # after eos: never read
    logits, _ = model.apply(params, src, tgt_in, src_lengths=src_lengths)
    logp = _log_probs(model, logits)
    picked = jnp.take_along_axis(logp, tgt_out[..., None], axis=-1)[..., 0]
    tgt_lengths = tgt_lengths.astype(jnp.int32)
    valid = jnp.arange(steps, dtype=jnp.int32)[None, :] < tgt_lengths[:, None]
    return jnp.sum(jnp.where(valid, picked, jnp.float32(0)), axis=-1)
