"""Tests for the fixed-length memory tasks of jrnn.seqtasks: the adding problem and copy
memory (structure, jittability, baselines, errors)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
