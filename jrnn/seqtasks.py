"""Synthetic sequence tasks, generated in pure JAX: every generator jrnn uses.

Fixed-length memory tasks:
  * [`adding_problem`][jrnn.seqtasks.adding_problem] (Hochreiter & Schmidhuber 1997), baseline MSE
    1/6 ([`ADDING_PROBLEM_BASELINE_MSE`][jrnn.seqtasks.ADDING_PROBLEM_BASELINE_MSE]);
  * [`copy_memory`][jrnn.seqtasks.copy_memory] (Arjovsky et al. 2016), baseline
    [`copy_memory_baseline`][jrnn.seqtasks.copy_memory_baseline];
  * [`mqar`][jrnn.seqtasks.mqar], multi-query associative recall (Arora et al. 2023, Zoology):
    key-value pairs, then queries of the keys, each answered with its value
    ([`RecallBatch`][jrnn.seqtasks.RecallBatch]).

Every generator is a jittable pure function of a PRNG key with static sizes.

Variable-length tasks: sequences have lengths drawn uniformly from ``[min_len, max_len]``
and are right-padded to ``max_len``.  All tasks share one token layout::

    0 = PAD    1 = BOS    2 = EOS    3 .. 3+V-1 = the V symbols (shown as a, b, c, ...)

so a model's vocabulary is ``V + 3`` ([`vocab_size`][jrnn.seqtasks.vocab_size]).

Sequence to sequence ([`SeqBatch`][jrnn.seqtasks.SeqBatch]; encoder-decoders):
  * [`reverse_task`][jrnn.seqtasks.reverse_task] -- the source reversed (Sutskever et al. 2014);
  * [`sort_task`][jrnn.seqtasks.sort_task] -- the source sorted;
  * [`copy_task`][jrnn.seqtasks.copy_task] -- the source itself.

Vector to sequence ([`VecBatch`][jrnn.seqtasks.VecBatch]): [`count_task`][jrnn.seqtasks.count_task],
count up from a start symbol. Sequence to vector ([`ClassBatch`][jrnn.seqtasks.ClassBatch]):
[`majority_task`][jrnn.seqtasks.majority_task], the most frequent symbol. Same-length tagging
([`TagBatch`][jrnn.seqtasks.TagBatch]):
  * [`next_symbol_task`][jrnn.seqtasks.next_symbol_task] -- tag each step with the *next* input
    symbol (the last with EOS): needs future context, so a unidirectional tagger is at chance and a
    bidirectional one solves it;
  * [`running_sum_task`][jrnn.seqtasks.running_sum_task] -- tag each step with the running sum of
    the symbols mod ``V``: ``y_t = (y_{t-1} + x_t) mod V``, exactly what an output-recurrence
    (teacher forcing) network can compute from its own previous output.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn.checks import check_int

__all__ = [
    "ADDING_PROBLEM_BASELINE_MSE",
    "BOS",
    "EOS",
    "FIRST_SYMBOL",
    "PAD",
    "ClassBatch",
    "RecallBatch",
    "SeqBatch",
    "TagBatch",
    "VecBatch",
    "adding_problem",
    "copy_memory",
    "copy_memory_baseline",
    "copy_task",
    "count_task",
    "format_tokens",
    "majority_task",
    "mqar",
    "mqar_vocab_size",
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

ADDING_PROBLEM_BASELINE_MSE = 1.0 / 6.0
"""MSE of always predicting 1.0 on [`adding_problem`][jrnn.seqtasks.adding_problem] (variance of a
sum of two U[0,1))."""


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
    """A batch of (vector, target sequence) pairs; targets as in
    [`SeqBatch`][jrnn.seqtasks.SeqBatch].

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


# --------------------------------------------------------------------------------------
# Fixed-length memory tasks


def adding_problem(key: jax.Array, batch_size: int, seq_len: int) -> tuple[jax.Array, jax.Array]:
    """The adding problem (Hochreiter & Schmidhuber 1997; the Le et al. 2015 variant).

    Channel 0 holds values ``U[0, 1)``; channel 1 is 1.0 at exactly two positions,
    one uniformly in the first half ``[0, T//2)`` and one in the second half
    ``[T//2, T)``, else 0. The target is the sum of the two marked values.

    Baseline: predicting the constant 1.0 (the target's mean) gives MSE
    ``Var(u1 + u2) = 2/12 = 1/6 ≈ 0.167``
    ([`ADDING_PROBLEM_BASELINE_MSE`][jrnn.seqtasks.ADDING_PROBLEM_BASELINE_MSE]); a model solves the
    task when it gets far below that.

    Args:
      key: PRNG key.
      batch_size: ``B`` (static).
      seq_len: ``T >= 2`` (static).

    Returns:
      ``xs`` float32 ``[B, T, 2]`` and ``ys`` float32 ``[B]``.
    """
    check_int("batch_size", batch_size, "adding_problem")
    check_int("seq_len", seq_len, "adding_problem", minimum=2)  # one marker per half
    k_val, k_first, k_second = jax.random.split(key, 3)
    half = seq_len // 2
    values = jax.random.uniform(k_val, (batch_size, seq_len), dtype=jnp.float32)
    first = jax.random.randint(k_first, (batch_size,), 0, half, dtype=jnp.int32)
    second = jax.random.randint(k_second, (batch_size,), half, seq_len, dtype=jnp.int32)
    steps = jnp.arange(seq_len, dtype=jnp.int32)[None, :]
    marked = (steps == first[:, None]) | (steps == second[:, None])
    markers = marked.astype(jnp.float32)
    xs = jnp.stack([values, markers], axis=-1)
    ys = jnp.sum(jnp.where(marked, values, jnp.zeros((), jnp.float32)), axis=-1)
    return xs, ys


def copy_memory(
    key: jax.Array,
    batch_size: int,
    seq_len: int,
    num_symbols: int = 8,
    copy_len: int = 10,
) -> tuple[jax.Array, jax.Array]:
    """The copy-memory task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016).

    Inputs: ``copy_len`` symbols drawn uniformly from ``{1..num_symbols}``, then
    ``seq_len - 1`` blanks (0), a delimiter (``num_symbols + 1``), then ``copy_len``
    blanks. Targets: blanks everywhere except the last ``copy_len`` positions, which
    hold the original symbols. Total length ``seq_len + 2*copy_len``; vocabulary size
    ``num_symbols + 2``.

    Baseline: a memoryless model that outputs blanks until the delimiter and then
    guesses uniformly among the symbols scores a mean cross-entropy per step of
    ``copy_len * ln(num_symbols) / (seq_len + 2*copy_len)``
    ([`copy_memory_baseline`][jrnn.seqtasks.copy_memory_baseline]; ``10 ln 8 / (T + 20)`` for the
    defaults).

    Args:
      key: PRNG key.
      batch_size: ``B`` (static).
      seq_len: ``T >= 1``, the delay between the symbols and the delimiter (static).
      num_symbols: number of distinct symbols (static).
      copy_len: number of symbols to remember (static).

    Returns:
      ``inputs`` and ``targets``, both int32 ``[B, T + 2*copy_len]``.
    """
    for name, value in (
        ("batch_size", batch_size),
        ("seq_len", seq_len),
        ("num_symbols", num_symbols),
        ("copy_len", copy_len),
    ):
        check_int(name, value, "copy_memory")
    symbols = jax.random.randint(key, (batch_size, copy_len), 1, num_symbols + 1, dtype=jnp.int32)
    blanks_mid = jnp.zeros((batch_size, seq_len - 1), jnp.int32)
    delim = jnp.full((batch_size, 1), num_symbols + 1, jnp.int32)
    blanks_end = jnp.zeros((batch_size, copy_len), jnp.int32)
    inputs = jnp.concatenate([symbols, blanks_mid, delim, blanks_end], axis=1)
    targets = jnp.concatenate(
        [jnp.zeros((batch_size, seq_len + copy_len), jnp.int32), symbols], axis=1
    )
    return inputs, targets


def copy_memory_baseline(seq_len: int, num_symbols: int = 8, copy_len: int = 10) -> float:
    """Memoryless cross-entropy per step on [`copy_memory`][jrnn.seqtasks.copy_memory], in nats.

    ``copy_len * ln(num_symbols) / (seq_len + 2*copy_len)``.
    """
    for name, value in (("seq_len", seq_len), ("num_symbols", num_symbols), ("copy_len", copy_len)):
        check_int(name, value, "copy_memory_baseline")
    return copy_len * math.log(num_symbols) / (seq_len + 2 * copy_len)


class RecallBatch(NamedTuple):
    """A batch of [`mqar`][jrnn.seqtasks.mqar] (multi-query associative recall).

    Attributes:
      inputs: int32 ``[B, T]`` tokens: ``0`` blank, ``1..K`` keys, ``K+1..2K`` values.
      targets: int32 ``[B, T]``: at a query, the value bound to its key; ``0`` elsewhere.
      mask: bool ``[B, T]``: True at the queries, the only steps scored (pass it as
        [`sequence_softmax_cross_entropy`][jrnn.losses.sequence_softmax_cross_entropy]'s
        ``mask``).
    """

    inputs: jax.Array
    targets: jax.Array
    mask: jax.Array


def mqar_vocab_size(num_symbols: int) -> int:
    """``2 * num_symbols + 1``: the blank, ``num_symbols`` keys and ``num_symbols`` values of
    [`mqar`][jrnn.seqtasks.mqar]."""
    check_int("num_symbols", num_symbols, "mqar_vocab_size")
    return 2 * num_symbols + 1


def _random_subsets(key: jax.Array, batch_size: int, n: int, k: int) -> jax.Array:
    """int32 ``[B, k]``: per row, ``k`` distinct indices of ``range(n)`` in random order (the
    first ``k`` of a random permutation)."""
    order = jnp.argsort(jax.random.uniform(key, (batch_size, n)), axis=1)
    return order[:, :k].astype(jnp.int32)


def mqar(
    key: jax.Array,
    batch_size: int,
    num_pairs: int = 4,
    num_symbols: int = 16,
    *,
    num_queries: int | None = None,
    seq_len: int | None = None,
) -> RecallBatch:
    """Multi-query associative recall, MQAR (Arora et al. 2023, "Zoology"; the recall task of
    the xLSTM and Mamba papers).

    Each sequence first lists ``P = num_pairs`` key-value pairs ``k_1 v_1 k_2 v_2 ... k_P v_P``
    (keys distinct, drawn from ``K = num_symbols`` key tokens ``1..K``; values distinct, from
    ``K`` value tokens ``K+1..2K``; the two vocabularies are disjoint). The rest of the
    sequence, steps ``2P..T-1``, holds ``Q = num_queries`` queries at distinct random steps,
    blanks (``0``) elsewhere: each query is one of the keys (``Q`` distinct keys, in random
    order). The target at a query is the value its key was bound to; the model must output
    it at the query's step, having read the key. No other step is scored (``mask``). Unlike
    Zoology, the gaps hold blanks, not random tokens, and the query steps are uniform over
    the gap, not drawn from a power law.

    Chance: a model without memory of the pairs can at best guess among the ``K`` values:
    query accuracy ``1/K``, cross-entropy ``ln K``. A model that remembers which values
    occurred but not which key each was bound to scores exactly ``1/P`` (``ln P``): given
    the sequence's values, the value of a queried key is uniform among them. Above
    ``1/P`` is recall.

    Args:
      key: PRNG key.
      batch_size: ``B`` (static).
      num_pairs: ``P``, the key-value pairs of a sequence (static).
      num_symbols: ``K >= P``, the size of the key vocabulary and of the value vocabulary
        (static); the token vocabulary is ``2K + 1``
        ([`mqar_vocab_size`][jrnn.seqtasks.mqar_vocab_size]).
      num_queries: ``Q`` in ``[1, P]``, the keys queried (static; default ``P``).
      seq_len: ``T >= 2P + Q`` (static; default ``2P + Q``, the queries right after the
        pairs, no blank).

    Returns:
      A [`RecallBatch`][jrnn.seqtasks.RecallBatch]: ``inputs`` and ``targets`` int32
      ``[B, T]``, ``mask`` bool ``[B, T]`` with ``Q`` True steps per row.

    Examples:
      >>> import jax, numpy as np
      >>> from jrnn.seqtasks import mqar
      >>> batch = mqar(jax.random.key(0), 2, num_pairs=3, num_symbols=5, seq_len=10)
      >>> batch.inputs.shape, batch.targets.shape, batch.mask.shape
      ((2, 10), (2, 10), (2, 10))
      >>> x, y, m = (np.asarray(a[0]) for a in batch)
      >>> bound = dict(zip(x[0:6:2].tolist(), x[1:6:2].tolist()))   # key -> value
      >>> int(m.sum()), all(bound[k] == v for k, v in zip(x[m].tolist(), y[m].tolist()))
      (3, True)
    """
    where = "mqar"
    check_int("batch_size", batch_size, where)
    check_int("num_pairs", num_pairs, where)
    check_int("num_symbols", num_symbols, where)
    if num_symbols < num_pairs:
        raise ValueError(
            f"{where}: `num_symbols` must be at least `num_pairs` = {num_pairs} (the keys and "
            f"the values of a sequence are distinct), got {num_symbols}"
        )
    num_queries = num_pairs if num_queries is None else num_queries
    check_int("num_queries", num_queries, where)
    if num_queries > num_pairs:
        raise ValueError(
            f"{where}: `num_queries` must be at most `num_pairs` = {num_pairs} (each key is "
            f"queried at most once), got {num_queries}"
        )
    shortest = 2 * num_pairs + num_queries
    seq_len = shortest if seq_len is None else seq_len
    check_int("seq_len", seq_len, where)
    if seq_len < shortest:
        raise ValueError(
            f"{where}: `seq_len` must be at least 2 * num_pairs + num_queries = {shortest}, "
            f"got {seq_len}"
        )
    k_keys, k_values, k_asked, k_steps = jax.random.split(key, 4)
    b, p, q = batch_size, num_pairs, num_queries
    keys = _random_subsets(k_keys, b, num_symbols, p) + 1
    values = _random_subsets(k_values, b, num_symbols, p) + num_symbols + 1
    pairs = jnp.stack([keys, values], axis=-1).reshape(b, 2 * p)
    asked = _random_subsets(k_asked, b, p, q)  # which pairs are queried, in query order
    gap = seq_len - 2 * p
    steps = _random_subsets(k_steps, b, gap, q)  # where, within the steps after the pairs
    rows = jnp.arange(b, dtype=jnp.int32)[:, None]
    blank = jnp.zeros((b, gap), jnp.int32)
    queries = blank.at[rows, steps].set(jnp.take_along_axis(keys, asked, axis=1))
    answers = blank.at[rows, steps].set(jnp.take_along_axis(values, asked, axis=1))
    asking = jnp.zeros((b, gap), jnp.bool_).at[rows, steps].set(True)
    inputs = jnp.concatenate([pairs, queries], axis=1)
    targets = jnp.concatenate([jnp.zeros((b, 2 * p), jnp.int32), answers], axis=1)
    mask = jnp.concatenate([jnp.zeros((b, 2 * p), jnp.bool_), asking], axis=1)
    return RecallBatch(inputs, targets, mask)
