"""Variable-length synthetic sequence tasks, generated in pure JAX.

Every generator is a jittable pure function of a PRNG key with static sizes; sequences
have lengths drawn uniformly from ``[min_len, max_len]`` and are right-padded to
``max_len``.  All tasks share one token layout::

    0 = PAD    1 = BOS    2 = EOS    3 .. 3+V-1 = the V symbols (shown as a, b, c, ...)

so a model's vocabulary is ``V + 3`` (:func:`vocab_size`).

Sequence to sequence (:class:`SeqBatch`; encoder-decoders):
  * :func:`reverse_task` -- the source reversed (Sutskever et al. 2014);
  * :func:`sort_task` -- the source sorted;
  * :func:`copy_task` -- the source itself.

Vector to sequence (:class:`VecBatch`): :func:`count_task`, count up from a start symbol.
Sequence to vector (:class:`ClassBatch`): :func:`majority_task`, the most frequent symbol.
Same-length tagging (:class:`TagBatch`):
  * :func:`next_symbol_task` -- tag each step with the *next* input symbol (the last with
    EOS): needs future context, so a unidirectional tagger is at chance and a
    bidirectional one solves it;
  * :func:`running_sum_task` -- tag each step with the running sum of the symbols mod
    ``V``: ``y_t = (y_{t-1} + x_t) mod V``, exactly what an output-recurrence (teacher
    forcing) network can compute from its own previous output.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "BOS",
    "EOS",
    "FIRST_SYMBOL",
    "PAD",
    "ClassBatch",
    "SeqBatch",
    "TagBatch",
    "VecBatch",
    "copy_task",
    "count_task",
    "format_tokens",
    "majority_task",
    "next_symbol_task",
    "random_lengths",
    "reverse_task",
    "running_sum_task",
    "sort_task",
    "target_pair",
    "vocab_size",
]

PAD, BOS, EOS = 0, 1, 2
FIRST_SYMBOL = 3


class SeqBatch(NamedTuple):
    """A batch of (source, target) pairs.

    Attributes:
      src: int32 ``[B, T]`` source symbols, ``PAD`` after ``src_lengths``.
      src_lengths: int32 ``[B]``.
      tgt_in: int32 ``[B, T+1]``: ``[BOS, y_1, ..., y_n, PAD...]`` (the decoder's inputs under
        teacher forcing).
      tgt_out: int32 ``[B, T+1]``: ``[y_1, ..., y_n, EOS, PAD...]`` (what it must predict).
      tgt_lengths: int32 ``[B]``: ``n + 1`` (the ``EOS`` included).
    """

    src: jax.Array
    src_lengths: jax.Array
    tgt_in: jax.Array
    tgt_out: jax.Array
    tgt_lengths: jax.Array


class VecBatch(NamedTuple):
    """A batch of (vector, target sequence) pairs; targets as in :class:`SeqBatch`.

    Attributes:
      vec: float32 ``[B, F]``.
      tgt_in, tgt_out: int32 ``[B, T+1]``.
      tgt_lengths: int32 ``[B]``.
    """

    vec: jax.Array
    tgt_in: jax.Array
    tgt_out: jax.Array
    tgt_lengths: jax.Array


class TagBatch(NamedTuple):
    """Same-length tagging: ``inputs`` int32 ``[B, T]``, ``lengths`` ``[B]``, ``tags`` ``[B, T]``
    (``PAD`` after the length)."""

    inputs: jax.Array
    lengths: jax.Array
    tags: jax.Array


class ClassBatch(NamedTuple):
    """Sequence classification: ``inputs`` int32 ``[B, T]``, ``lengths`` ``[B]``, ``labels``
    int32 ``[B]`` in ``[0, V)``."""

    inputs: jax.Array
    lengths: jax.Array
    labels: jax.Array


def vocab_size(num_symbols: int) -> int:
    """``num_symbols + 3``: the symbols plus ``PAD``, ``BOS``, ``EOS``."""
    return num_symbols + FIRST_SYMBOL


def _check(batch_size: int, min_len: int, max_len: int, num_symbols: int) -> None:
    for name, v in (("batch_size", batch_size), ("min_len", min_len), ("num_symbols", num_symbols)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"`{name}` must be a positive int, got {v!r}")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < min_len:
        raise ValueError(
            f"`max_len` (T) must be an int >= min_len={min_len}: lengths beyond T are "
            f"impossible; got max_len={max_len!r}"
        )


def random_lengths(key: jax.Array, batch_size: int, min_len: int, max_len: int) -> jax.Array:
    """int32 ``[B]`` uniform in ``[min_len, max_len]``."""
    return jax.random.randint(key, (batch_size,), min_len, max_len + 1, dtype=jnp.int32)


def _symbols(key, batch_size, min_len, max_len, num_symbols):
    """Random symbols ``[B, T]`` (``PAD`` after each length) and the lengths."""
    _check(batch_size, min_len, max_len, num_symbols)
    k_len, k_sym = jax.random.split(key)
    lengths = random_lengths(k_len, batch_size, min_len, max_len)
    sym = jax.random.randint(k_sym, (batch_size, max_len), 0, num_symbols, dtype=jnp.int32)
    valid = jnp.arange(max_len, dtype=jnp.int32)[None, :] < lengths[:, None]
    return jnp.where(valid, sym + FIRST_SYMBOL, PAD), lengths


def target_pair(ys: jax.Array, lengths: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(tgt_in, tgt_out, tgt_lengths)`` from target symbols ``ys [B, T]`` of ``lengths``.

    ``tgt_in = [BOS, y_1..y_n, PAD..]``, ``tgt_out = [y_1..y_n, EOS, PAD..]`` (``[B, T+1]``),
    ``tgt_lengths = n + 1``.
    """
    batch, steps = ys.shape
    pos = jnp.arange(steps + 1, dtype=jnp.int32)[None, :]
    n = lengths[:, None]
    padded = jnp.concatenate([ys, jnp.zeros((batch, 1), jnp.int32)], axis=1)
    tgt_out = jnp.where(pos < n, padded, jnp.where(pos == n, EOS, PAD))
    shifted = jnp.concatenate([jnp.full((batch, 1), BOS, jnp.int32), ys], axis=1)
    tgt_in = jnp.where(pos <= n, shifted, PAD)
    return tgt_in.astype(jnp.int32), tgt_out.astype(jnp.int32), (lengths + 1).astype(jnp.int32)


def reverse_task(
    key: jax.Array, batch_size: int, min_len: int, max_len: int, num_symbols: int = 20
) -> SeqBatch:
    """Sequence reversal: ``y = x_n, ..., x_1``."""
    src, lengths = _symbols(key, batch_size, min_len, max_len, num_symbols)
    pos = jnp.arange(max_len, dtype=jnp.int32)[None, :]
    idx = jnp.where(pos < lengths[:, None], lengths[:, None] - 1 - pos, 0)
    ys = jnp.take_along_axis(src, idx, axis=1)
    return SeqBatch(src, lengths, *target_pair(ys, lengths))


def sort_task(
    key: jax.Array, batch_size: int, min_len: int, max_len: int, num_symbols: int = 20
) -> SeqBatch:
    """Sorting: ``y`` is ``x`` in ascending order."""
    src, lengths = _symbols(key, batch_size, min_len, max_len, num_symbols)
    big = jnp.int32(FIRST_SYMBOL + num_symbols)
    ys = jnp.sort(jnp.where(src == PAD, big, src), axis=1)
    return SeqBatch(src, lengths, *target_pair(ys, lengths))


def copy_task(
    key: jax.Array, batch_size: int, min_len: int, max_len: int, num_symbols: int = 20
) -> SeqBatch:
    """Copying: ``y = x``."""
    src, lengths = _symbols(key, batch_size, min_len, max_len, num_symbols)
    return SeqBatch(src, lengths, *target_pair(src, lengths))


def count_task(
    key: jax.Array, batch_size: int, min_len: int, max_len: int, num_symbols: int = 20
) -> VecBatch:
    """Vector to sequence: from ``v = [onehot(a, V), onehot(n - 1, T)]`` generate the ``n``
    symbols ``a, a+1, ..., a+n-1`` (mod ``V``); ``F = V + T``."""
    _check(batch_size, min_len, max_len, num_symbols)
    k_len, k_start = jax.random.split(key)
    lengths = random_lengths(k_len, batch_size, min_len, max_len)
    first = jax.random.randint(k_start, (batch_size,), 0, num_symbols, dtype=jnp.int32)
    vec = jnp.concatenate(
        [
            jax.nn.one_hot(first, num_symbols, dtype=jnp.float32),
            jax.nn.one_hot(lengths - 1, max_len, dtype=jnp.float32),
        ],
        axis=1,
    )
    pos = jnp.arange(max_len, dtype=jnp.int32)[None, :]
    ys = (first[:, None] + pos) % num_symbols + FIRST_SYMBOL
    return VecBatch(vec, *target_pair(ys.astype(jnp.int32), lengths))


def next_symbol_task(
    key: jax.Array, batch_size: int, min_len: int, max_len: int, num_symbols: int = 20
) -> TagBatch:
    """Tag step ``t`` with the input at ``t + 1`` (the last step with ``EOS``)."""
    inputs, lengths = _symbols(key, batch_size, min_len, max_len, num_symbols)
    nxt = jnp.concatenate([inputs[:, 1:], jnp.zeros((batch_size, 1), jnp.int32)], axis=1)
    pos = jnp.arange(max_len, dtype=jnp.int32)[None, :]
    tags = jnp.where(
        pos < lengths[:, None] - 1, nxt, jnp.where(pos == lengths[:, None] - 1, EOS, PAD)
    )
    return TagBatch(inputs, lengths, tags.astype(jnp.int32))


def running_sum_task(
    key: jax.Array, batch_size: int, min_len: int, max_len: int, num_symbols: int = 5
) -> TagBatch:
    """Tag step ``t`` with ``(x_1 + ... + x_t) mod V`` (symbol values ``0..V-1``, shown as
    symbols): ``y_t = (y_{t-1} + x_t) mod V``."""
    inputs, lengths = _symbols(key, batch_size, min_len, max_len, num_symbols)
    values = jnp.where(inputs == PAD, 0, inputs - FIRST_SYMBOL)
    sums = jnp.cumsum(values, axis=1) % num_symbols + FIRST_SYMBOL
    tags = jnp.where(inputs == PAD, PAD, sums)
    return TagBatch(inputs, lengths, tags.astype(jnp.int32))


def majority_task(
    key: jax.Array, batch_size: int, min_len: int, max_len: int, num_symbols: int = 4
) -> ClassBatch:
    """Label a sequence with its most frequent symbol (``0..V-1``; ties: the smallest)."""
    inputs, lengths = _symbols(key, batch_size, min_len, max_len, num_symbols)
    counts = jnp.sum(
        jax.nn.one_hot(inputs - FIRST_SYMBOL, num_symbols, dtype=jnp.int32), axis=1
    )  # PAD -> index -3 -> an all-zero row
    return ClassBatch(inputs, lengths, jnp.argmax(counts, axis=1).astype(jnp.int32))


def format_tokens(tokens, length: int | None = None) -> str:
    """Symbols as letters (``a`` = the first symbol), ``<s>``/``</s>`` for BOS/EOS, up to
    ``length`` (default: up to the first EOS or PAD)."""
    out = []
    for i, t in enumerate(np.asarray(tokens).tolist()):
        if length is not None and i >= length:
            break
        if t == PAD:
            if length is None:
                break
            out.append("_")
        elif t == BOS:
            out.append("<s>")
        elif t == EOS:
            out.append("</s>")
            if length is None:
                break
        else:
            s = t - FIRST_SYMBOL
            out.append(chr(ord("a") + s) if s < 26 else f"<{s}>")
    return " ".join(out)
