"""Property tests over random shapes and lengths."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import jrnn

CELLS = {
    "rnn": jrnn.simple_rnn(3, param_dtype=jnp.float64),
    "lstm": jrnn.lstm(3, peephole=True, param_dtype=jnp.float64),
    "gru": jrnn.gru(3, reset_after=True, param_dtype=jnp.float64),
}
PARAMS = {k: c.init(jax.random.key(0), 2) for k, c in CELLS.items()}


@st.composite
def batches(draw):
    kind = draw(st.sampled_from(sorted(CELLS)))
    batch = draw(st.integers(1, 4))
    steps = draw(st.integers(1, 7))
    lengths = np.array(draw(st.lists(st.integers(0, steps), min_size=batch, max_size=batch)))
    seed = draw(st.integers(0, 2**16))
    xs = np.random.default_rng(seed).normal(size=(batch, steps, 2))
    return kind, xs, lengths


SETTINGS = settings(max_examples=15, deadline=None)


@SETTINGS
@given(batches())
def test_lengths_equal_slicing(case):
    kind, xs, lengths = case
    cell, p = CELLS[kind], PARAMS[kind]
    for reverse in (False, True):
        ys, carry = jrnn.unroll(cell, p, xs, lengths=lengths, reverse=reverse)
        for b, n in enumerate(lengths):
            ys_b, carry_b = jrnn.unroll(cell, p, xs[b, :n], reverse=reverse)
            np.testing.assert_allclose(ys[b, :n], ys_b, atol=1e-12)
            np.testing.assert_array_equal(ys[b, n:], 0.0)
            for a, c in zip(carry, carry_b, strict=True):
                np.testing.assert_allclose(a[b], c, atol=1e-12)


@SETTINGS
@given(batches())
def test_reverse_of_reverse_is_identity_and_vmap_equals_batch(case):
    kind, xs, lengths = case
    cell, p = CELLS[kind], PARAMS[kind]
    lengths = jnp.asarray(lengths)
    x_t = jnp.moveaxis(jnp.asarray(xs), 1, 0)
    flipped = jrnn.flip_within_lengths(x_t, lengths)
    np.testing.assert_array_equal(jrnn.flip_within_lengths(flipped, lengths), x_t)
    # reading the flipped sequences backwards is reading the originals forwards
    ys_f, c_f = jrnn.unroll(cell, p, xs, lengths=lengths)
    ys_r, c_r = jrnn.unroll(cell, p, flipped, lengths=lengths, reverse=True, time_major=True)
    np.testing.assert_allclose(
        jrnn.flip_within_lengths(ys_r, lengths), jnp.moveaxis(ys_f, 1, 0), atol=1e-12
    )
    for a, b in zip(c_f, c_r, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12)
    ys_v, c_v = jax.vmap(lambda x, n: jrnn.unroll(cell, p, x, lengths=n))(jnp.asarray(xs), lengths)
    np.testing.assert_allclose(ys_v, ys_f, atol=1e-12)
