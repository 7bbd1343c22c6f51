"""Tests for the fixed-length memory tasks of jrnn.seqtasks: the adding problem and copy
memory (structure, jittability, baselines, errors), and multi-query associative recall
(its properties, by Hypothesis)."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jrnn import losses, seqtasks


def test_adding_problem_structure_and_baseline():
    b, t = 20_000, 20
    key = jax.random.key(0)
    xs, ys = jax.jit(seqtasks.adding_problem, static_argnums=(1, 2))(key, b, t)
    assert xs.shape == (b, t, 2) and xs.dtype == jnp.float32
    assert ys.shape == (b,) and ys.dtype == jnp.float32
    xs, ys = np.asarray(xs), np.asarray(ys)
    np.testing.assert_array_equal(xs, seqtasks.adding_problem(key, b, t)[0])
    values, markers = xs[..., 0], xs[..., 1]
    assert values.min() >= 0.0 and values.max() < 1.0
    assert set(np.unique(markers)) == {0.0, 1.0}
    np.testing.assert_array_equal(markers[:, : t // 2].sum(1), 1)
    np.testing.assert_array_equal(markers[:, t // 2 :].sum(1), 1)
    np.testing.assert_allclose(ys, (values * markers).sum(1), rtol=1e-6)
    mse_const = np.mean((ys - 1.0) ** 2)
    assert mse_const == pytest.approx(seqtasks.ADDING_PROBLEM_BASELINE_MSE, abs=0.01)
    assert seqtasks.ADDING_PROBLEM_BASELINE_MSE == pytest.approx(1 / 6)
    # marker positions are spread over each half
    assert np.all(markers.sum(0) > 0)


def test_adding_problem_shortest_and_errors():
    xs, _ = seqtasks.adding_problem(jax.random.key(1), 3, 2)
    np.testing.assert_array_equal(xs[..., 1], np.ones((3, 2)))
    with pytest.raises(ValueError, match="seq_len"):
        seqtasks.adding_problem(jax.random.key(1), 3, 1)
    with pytest.raises(ValueError, match="batch_size"):
        seqtasks.adding_problem(jax.random.key(1), 0, 5)


@pytest.mark.parametrize(("t", "num_symbols", "copy_len"), [(1, 8, 10), (15, 4, 3)])
def test_copy_memory_structure(t, num_symbols, copy_len):
    b = 64
    f = jax.jit(seqtasks.copy_memory, static_argnums=(1, 2, 3, 4))
    inputs, targets = f(jax.random.key(2), b, t, num_symbols, copy_len)
    total = t + 2 * copy_len
    assert inputs.shape == targets.shape == (b, total)
    assert inputs.dtype == targets.dtype == jnp.int32
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    symbols = inputs[:, :copy_len]
    assert symbols.min() >= 1 and symbols.max() <= num_symbols
    assert len(np.unique(symbols)) == num_symbols
    np.testing.assert_array_equal(inputs[:, copy_len : copy_len + t - 1], 0)
    np.testing.assert_array_equal(inputs[:, copy_len + t - 1], num_symbols + 1)
    np.testing.assert_array_equal(inputs[:, copy_len + t :], 0)
    np.testing.assert_array_equal(targets[:, : t + copy_len], 0)
    np.testing.assert_array_equal(targets[:, -copy_len:], symbols)
    assert inputs.max() < num_symbols + 2  # vocabulary size num_symbols + 2


def test_copy_memory_baseline_is_memoryless_cross_entropy():
    t, num_symbols, copy_len, b = 30, 8, 10, 16
    assert seqtasks.copy_memory_baseline(t) == pytest.approx(10 * math.log(8) / (t + 20))
    _, targets = seqtasks.copy_memory(jax.random.key(4), b, t, num_symbols, copy_len)
    # Certain blanks until the last copy_len steps, then uniform over the symbols.
    k = num_symbols + 2
    blank = jnp.full((t + copy_len, k), -1e9, jnp.float32).at[:, 0].set(0.0)
    guess = jnp.full((copy_len, k), -1e9, jnp.float32).at[:, 1 : num_symbols + 1].set(0.0)
    logits = jnp.broadcast_to(jnp.concatenate([blank, guess]), (b, t + 2 * copy_len, k))
    ce = jax.jit(losses.sequence_softmax_cross_entropy)(logits, targets)
    want = seqtasks.copy_memory_baseline(t, num_symbols, copy_len)
    assert float(ce) == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="copy_len"):
        seqtasks.copy_memory_baseline(t, num_symbols, 0)


# --------------------------------------------------------------------------------------
# multi-query associative recall (MQAR)

# (num_pairs, num_symbols, num_queries, blank steps beyond 2P + Q): the edge cases (one pair;
# as many symbols as pairs; one query; no blank) and general sizes, each compiled once
_MQAR_SIZES = [(1, 1, 1, 0), (3, 3, 3, 0), (3, 7, 1, 4), (5, 8, 5, 2), (5, 5, 2, 0), (2, 9, 2, 3)]
_mqar_jit = jax.jit(
    seqtasks.mqar, static_argnums=(1, 2, 3), static_argnames=("num_queries", "seq_len")
)


@given(st.sampled_from(_MQAR_SIZES), st.integers(0, 2**31 - 1))
@settings(max_examples=30, deadline=None)
def test_mqar_every_query_asks_a_key_bound_earlier_for_its_value(sizes, seed):
    """Per sequence: the pairs come first, keys and values distinct and from their own
    vocabularies; each query is a key of the pairs, asked once, scored (mask) with the value
    bound to it; every other step is blank (after the pairs) and unscored."""
    p, k, q, extra = sizes
    t, b = 2 * p + q + extra, 8
    batch = _mqar_jit(jax.random.key(seed), b, p, k, num_queries=q, seq_len=t)
    inputs, targets, mask = (np.asarray(a) for a in batch)
    assert inputs.shape == targets.shape == mask.shape == (b, t)
    assert inputs.dtype == targets.dtype == np.int32 and mask.dtype == np.bool_
    assert inputs.min() >= 0 and inputs.max() < seqtasks.mqar_vocab_size(k) == 2 * k + 1
    for x, y, m in zip(inputs, targets, mask, strict=True):
        keys, values = x[0 : 2 * p : 2], x[1 : 2 * p : 2]
        assert len(set(keys.tolist())) == p and len(set(values.tolist())) == p
        assert keys.min() >= 1 and keys.max() <= k
        assert values.min() >= k + 1 and values.max() <= 2 * k
        bound = dict(zip(keys.tolist(), values.tolist(), strict=True))
        assert not m[: 2 * p].any() and m.sum() == q
        asked = x[m].tolist()
        assert len(set(asked)) == q and set(asked) <= set(bound)
        assert y[m].tolist() == [bound[key] for key in asked]
        np.testing.assert_array_equal(x[2 * p :][~m[2 * p :]], 0)  # blanks between
        np.testing.assert_array_equal(y[~m], 0)


def test_mqar_defaults_jit_and_randomness():
    key = jax.random.key(7)
    batch = seqtasks.mqar(key, 512, 4, 16)  # Q = P queries right after the pairs: T = 12
    assert batch.inputs.shape == (512, 12) and bool(batch.mask[:, 8:].all())
    again = _mqar_jit(key, 512, 4, 16, seq_len=12)
    for a, b in zip(batch, again, strict=True):
        np.testing.assert_array_equal(a, b)
    x = np.asarray(batch.inputs)
    # every key and value token, every query order and every query step occurs
    assert set(np.unique(x[:, 0:8:2])) == set(range(1, 17))
    assert set(np.unique(x[:, 1:8:2])) == set(range(17, 33))
    firsts = np.asarray(batch.inputs[:, 8])
    assert {int(np.flatnonzero(x[i, 0:8:2] == firsts[i])[0]) for i in range(512)} == {0, 1, 2, 3}
    spread = _mqar_jit(key, 512, 2, 4, num_queries=1, seq_len=10)
    assert np.asarray(spread.mask).sum(0)[4:].min() > 0  # the query at any step after the pairs
    other = _mqar_jit(jax.random.key(8), 512, 4, 16, seq_len=12)
    assert not np.array_equal(x, np.asarray(other.inputs))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_pairs": 5, "num_symbols": 4}, "`num_symbols` must be at least `num_pairs` = 5"),
        ({"num_pairs": 3, "num_queries": 4}, "`num_queries` must be at most `num_pairs` = 3"),
        ({"num_pairs": 3, "num_queries": 2, "seq_len": 7}, "2 * num_pairs + num_queries = 8"),
        ({"num_pairs": 0}, "`num_pairs` must be a positive int"),
        ({"num_queries": 0}, "`num_queries` must be a positive int"),
    ],
)
def test_mqar_refuses_impossible_sizes(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        seqtasks.mqar(jax.random.key(0), 2, **kwargs)


def test_mqar_chance_levels():
    """The documented chance levels, by simulation: a guess among the sequence's values
    scores 1/P per query, a guess among all values 1/K."""
    p, k = 4, 16
    batch = _mqar_jit(jax.random.key(3), 4096, p, k)
    x, y, m = (np.asarray(a) for a in batch)
    rng = np.random.default_rng(0)
    values = x[:, 1 : 2 * p : 2]
    guess_among_seen = values[np.arange(len(x))[:, None], rng.integers(0, p, (len(x), p))]
    assert np.mean(guess_among_seen == y[m].reshape(-1, p)) == pytest.approx(1 / p, abs=0.01)
    guess_any = rng.integers(k + 1, 2 * k + 1, y[m].shape)
    assert np.mean(guess_any == y[m]) == pytest.approx(1 / k, abs=0.01)
