"""Bad input raises a clear ValueError/TypeError at trace time, never a raw XLA error."""

import jax
import jax.numpy as jnp
import pytest

import jrnn

I, H = 3, 4


@pytest.fixture
def lstm():
    cell = jrnn.lstm(H)
    return cell, cell.init(jax.random.key(0), I)


def test_wrong_feature_size(lstm):
    cell, p = lstm
    with pytest.raises(ValueError, match=r"`xs`.*input_size=3.*\[2, 5, 7\]"):
        jrnn.unroll(cell, p, jnp.zeros((2, 5, 7)))
    with pytest.raises(ValueError, match=r"`x_t`.*input_size=3.*\[2, 7\]"):
        cell.step(p, cell.initial_carry(p, (2,)), jnp.zeros((2, 7)))


def test_wrong_rank(lstm):
    cell, p = lstm
    with pytest.raises(ValueError, match=r"`xs`.*rank >= 2.*\[3\]"):
        jrnn.unroll(cell, p, jnp.zeros((3,)))


def test_integer_inputs(lstm):
    cell, p = lstm
    with pytest.raises(TypeError, match=r"`xs` must be a floating-point array, got dtype int"):
        jrnn.unroll(cell, p, jnp.zeros((2, 5, I), jnp.int32))
    with pytest.raises(TypeError, match="`x_t`"):
        cell.step(p, cell.initial_carry(p, (2,)), jnp.zeros((2, I), jnp.int32))


def test_lengths_wrong_shape_dtype_and_range(lstm):
    cell, p = lstm
    xs = jnp.zeros((2, 5, I))
    with pytest.raises(ValueError, match=r"`lengths`.*batch shape \[2\].*got shape \[3\]"):
        jrnn.unroll(cell, p, xs, lengths=jnp.array([1, 2, 3]))
    with pytest.raises(TypeError, match="`lengths` must be an integer array"):
        jrnn.unroll(cell, p, xs, lengths=jnp.array([1.0, 2.0]))
    with pytest.raises(
        ValueError, match=r"`lengths` must lie in \[0, T=5\], got values in \[1, 6\]"
    ):
        jrnn.unroll(cell, p, xs, lengths=jnp.array([1, 6]))
    with pytest.raises(ValueError, match=r"got values in \[-1, 2\]"):
        jrnn.unroll(cell, p, xs, lengths=jnp.array([-1, 2]))
    # traced lengths cannot be range-checked, but shapes still are
    with pytest.raises(ValueError, match="`lengths`"):
        jax.jit(lambda n: jrnn.unroll(cell, p, xs, lengths=n))(jnp.array([1, 2, 3]))


def test_carry_of_wrong_shape_or_structure(lstm):
    cell, p = lstm
    xs = jnp.zeros((2, 5, I))
    good = cell.initial_carry(p, (2,))
    with pytest.raises(ValueError, match=r"`carry.h` must have shape \[2, 4\].*got \[3, 4\]"):
        jrnn.unroll(cell, p, xs, carry=jrnn.LSTMState(jnp.zeros((3, H)), good.c))
    with pytest.raises(TypeError, match=r"`carry` must be an LSTMState\(h, c\).*got Array"):
        jrnn.unroll(cell, p, xs, carry=good.h)
    with pytest.raises(TypeError, match="carry"):
        jrnn.unroll(cell, p, xs, carry=jrnn.LSTMState(good.h.astype(jnp.int32), good.c))


def test_unknown_activation_and_bad_sizes():
    with pytest.raises(ValueError, match=r"unknown `activation` 'swishy'.*'relu'"):
        jrnn.simple_rnn(H, activation="swishy")
    with pytest.raises(ValueError, match="`hidden_size` must be a positive int, got 0"):
        jrnn.lstm(0)
    with pytest.raises(ValueError, match="`input_size` must be a positive int"):
        jrnn.gru(H).init(jax.random.key(0), -1)
    with pytest.raises(ValueError, match="`num_layers`"):
        jrnn.stack(jrnn.gru(H), num_layers=0)
    with pytest.raises(ValueError, match="`dropout`"):
        jrnn.stack(jrnn.gru(H), dropout=1.0)


def test_stack_params_and_carries_structure():
    net = jrnn.stack(jrnn.gru(H), num_layers=2, bidirectional=True)
    params = net.init(jax.random.key(0), I)
    xs = jnp.zeros((2, 5, I))
    with pytest.raises(ValueError, match=r"`params` must be nested tuples \[num_layers=2\]"):
        net.apply(params[:1], xs)
    with pytest.raises(ValueError, match="`carries` must be nested tuples"):
        net.apply(params, xs, carries=net.initial_carry(params, (2,))[0])
    with pytest.raises(ValueError, match=r"`xs`.*input_size=3"):
        net.apply(params, jnp.zeros((2, 5, 4)))


def test_unknown_vjp_mode(lstm):
    cell, p = lstm
    with pytest.raises(ValueError, match="`vjp` must be 'hoisted' or 'autodiff', got 'magic'"):
        jrnn.unroll(cell, p, jnp.zeros((2, 5, I)), vjp="magic")
