"""One key per example (``jrnn.keys``): what each example draws depends on its own key
alone, so any piece of a batch draws what the whole batch draws, through every random
layer jrnn has (dropout between layers and before the readout, zoneout, recurrent
dropout, scheduled sampling)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jrnn
from jrnn import keys

B, T, I, H = 6, 5, 3, 4


def _regularised():
    cell = jrnn.zoneout(jrnn.recurrent_dropout(jrnn.lstm(H), 0.3, input_rate=0.2), 0.2)
    return jrnn.stack(cell, num_layers=2, bidirectional=True, dropout=0.4)


def _pieces_equal_whole(apply, n=B):
    """``apply(keys, rows)`` on the whole batch equals it on every piece of the batch."""
    ks = keys.example_keys(jax.random.key(7), n)
    whole = apply(ks, slice(0, n))
    for cut in (slice(0, 1), slice(1, 4), slice(4, n)):
        part = apply(ks[cut], cut)
        np.testing.assert_allclose(np.asarray(whole)[cut], np.asarray(part), rtol=1e-5, atol=1e-6)
    return whole


def test_a_model_with_every_regulariser_draws_each_example_from_its_own_key():
    model = jrnn.sequence_model(_regularised(), input_size=I, output_size=2, dropout=0.5)
    params = model.init(jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (B, T, I))
    whole = _pieces_equal_whole(lambda ks, r: model.apply(params, xs[r], key=ks)[0])
    # the masks are drawn (training differs from evaluation), and differ between examples
    plain = model.apply(params, xs)[0]
    assert not np.allclose(whole, plain)
    same = model.apply(params, jnp.broadcast_to(xs[:1], xs.shape), key=keys.example_keys(
        jax.random.key(7), B))[0]  # fmt: skip
    assert not np.allclose(same[0], same[1])


def test_time_major_stacks_and_raw_keys_take_per_example_keys():
    net = _regularised()
    params = net.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (T, B, I))  # time-major
    raw = jax.random.key_data(keys.example_keys(jax.random.key(3), B))  # [B, 2] uint32
    whole = net.apply(params, xs, key=raw, time_major=True)[0]
    part = net.apply(params, xs[:, 2:5], key=raw[2:5], time_major=True)[0]
    np.testing.assert_allclose(whole[:, 2:5], part, rtol=1e-5, atol=1e-6)


def test_scheduled_sampling_draws_per_example():
    model = jrnn.seq2seq(jrnn.gru(H), jrnn.gru(H), src_vocab=5, tgt_vocab=6, embed_size=3)
    params = model.init(jax.random.key(0))
    src = jax.random.randint(jax.random.key(1), (B, T), 0, 5)
    tgt = jax.random.randint(jax.random.key(2), (B, T), 0, 6)
    _pieces_equal_whole(
        lambda ks, r: model.apply(params, src[r], tgt[r], key=ks, sample_prob=0.5)[0]
    )
    fb = jrnn.output_recurrent(num_classes=4, hidden_size=H, input_size=I)
    fp = fb.init(jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (B, T, I))
    ys = jax.random.randint(jax.random.key(2), (B, T), 0, 4)
    _pieces_equal_whole(lambda ks, r: fb.apply(fp, xs[r], ys[r], key=ks, sample_prob=0.5)[0])


@settings(deadline=None, max_examples=15)  # compilation, not the draws, takes the time
@given(st.integers(1, 4), st.integers(1, 3), st.floats(0.05, 0.95))
def test_bernoulli_and_split_per_example_equal_one_key_each(n, axis_len, p):
    ks = keys.example_keys(jax.random.key(0), n)
    drawn = keys.bernoulli(ks, p, (axis_len, n, 2), batch_axis=1)
    for b in range(n):
        own = jax.random.bernoulli(ks[b], p, (axis_len, 2))
        np.testing.assert_array_equal(drawn[:, b], own)
    halves = keys.split(ks, 3)
    assert halves.shape == (3, n)
    for b in range(n):
        np.testing.assert_array_equal(
            jax.random.key_data(halves[:, b]), jax.random.key_data(jax.random.split(ks[b], 3))
        )


def test_one_key_is_unchanged():
    k = jax.random.key(4)
    np.testing.assert_array_equal(
        keys.bernoulli(k, 0.3, (3, 2)), jax.random.bernoulli(k, 0.3, (3, 2))
    )
    np.testing.assert_array_equal(
        jax.random.key_data(keys.split(k)), jax.random.key_data(jax.random.split(k))
    )


def test_keys_of_the_wrong_shape_are_named_errors():
    cell = jrnn.zoneout(jrnn.gru(H), 0.1)
    params = cell.init(jax.random.key(0), I)
    xs = jnp.ones((B, T, I))
    with pytest.raises(TypeError, match=r"unroll: `key` must be .* or one key per example of "
                       r"shape \[6\], got an array of dtype key<fry> and shape \[4\]"):  # fmt: skip
        jrnn.unroll(cell, params, xs, key=keys.example_keys(jax.random.key(0), 4))
    model = jrnn.sequence_model(jrnn.gru(H), input_size=I, output_size=1, dropout=0.2)
    mp = model.init(jax.random.key(0))
    with pytest.raises(TypeError, match=r"sequence_model\(.*\)\.apply: `key` must be"):
        model.apply(mp, xs, key=keys.example_keys(jax.random.key(0), 5))
    with pytest.raises(ValueError, match=r"bernoulli: one key per example needs the batch "
                       r"shape \[2\] at axis 0 of `shape`, got shape \[3, 2\]"):  # fmt: skip
        keys.bernoulli(keys.example_keys(jax.random.key(0), 2), 0.5, (3, 2))
