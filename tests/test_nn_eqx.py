"""jrnn.nn.eqx.RNN against the pure functions it wraps: jrnn.unroll and Stack.apply (outputs,
carries, randomness with a key, gradients through Equinox's filtered transforms)."""

from __future__ import annotations

import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jrnn
from jrnn.nn.eqx import RNN

F64 = jnp.float64
I, H, T, B = 3, 4, 5, 2


def _inputs(seed=1):
    return jax.random.normal(jax.random.key(seed), (B, T, I), F64), jnp.array([T, 2])


def test_cell_matches_unroll_with_carry_lengths_and_reverse():
    cell = jrnn.lstm(H, param_dtype=F64)
    xs, lengths = _inputs()
    layer = RNN(cell, I, key=jax.random.key(0), reverse=True)
    want_params = cell.init(jax.random.key(0), I)
    for a, b in zip(jax.tree.leaves(layer.params), jax.tree.leaves(want_params), strict=True):
        np.testing.assert_array_equal(a, b)
    carry0 = jax.tree.map(lambda a: a + 0.3, cell.initial_carry(layer.params, (B,)))
    ys, carry = layer(xs, carry0, lengths=lengths)
    want_ys, want_carry = jrnn.unroll(
        cell, want_params, xs, carry=carry0, lengths=lengths, reverse=True
    )
    np.testing.assert_array_equal(ys, want_ys)
    for a, b in zip(jax.tree.leaves(carry), jax.tree.leaves(want_carry), strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(jnp.abs(ys[1, 2:]).max()) == 0.0  # padding outputs zeros


def test_random_stack_needs_a_key_and_matches_stack_apply():
    net = jrnn.stack(jrnn.zoneout(jrnn.gru(H, param_dtype=F64), 0.3), 2, bidirectional=True)
    xs, lengths = _inputs()
    layer = RNN(net, I, key=jax.random.key(0))
    key = jax.random.key(5)
    ys, carries = layer(xs, lengths=lengths, key=key)
    want, want_carries = net.apply(layer.params, xs, lengths=lengths, key=key)
    assert ys.shape == (B, T, 2 * H)
    np.testing.assert_array_equal(ys, want)
    for a, b in zip(jax.tree.leaves(carries), jax.tree.leaves(want_carries), strict=True):
        np.testing.assert_array_equal(a, b)
    clean, _ = net.apply(layer.params, xs, lengths=lengths)
    assert not np.allclose(ys, clean)  # the key switched zoneout on
    with pytest.raises(ValueError, match=r"random when training \(the noise of zoneout\)"):
        layer(xs)
    evaluated = eqx.nn.inference_mode(layer)
    np.testing.assert_array_equal(evaluated(xs, lengths=lengths, key=key)[0], clean)
    np.testing.assert_array_equal(layer(xs, lengths=lengths, inference=True)[0], clean)


class _Regressor(eqx.Module):
    rnn: RNN
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.rnn = RNN(jrnn.simple_rnn(H, param_dtype=F64), I, key=k1)
        self.head = eqx.nn.Linear(H, 1, key=k2, dtype=F64)

    def __call__(self, xs, lengths):
        ys, _ = self.rnn(xs, lengths=lengths)
        return jax.vmap(jax.vmap(self.head))(ys)[..., 0]


def test_gradients_inside_an_equinox_model_equal_the_pure_functions():
    model = _Regressor(jax.random.key(0))
    xs, lengths = _inputs()
    target = jnp.sin(jnp.arange(T, dtype=F64))

    @eqx.filter_jit
    @eqx.filter_value_and_grad
    def loss(m):
        return jnp.sum((m(xs, lengths) - target) ** 2)

    value, grads = loss(model)
    cell, w, b = model.rnn.cell, model.head.weight, model.head.bias

    def pure(p):
        ys, _ = jrnn.unroll(cell, p, xs, lengths=lengths)
        return jnp.sum(((ys @ w.T + b)[..., 0] - target) ** 2)

    np.testing.assert_allclose(value, pure(model.rnn.params), rtol=1e-12)
    want = jax.grad(pure)(model.rnn.params)
    for name in want:
        np.testing.assert_allclose(grads.rnn.params[name], want[name], rtol=1e-10)
    # the parameters are Equinox leaves: optax trains them through eqx.filter
    opt = optax.sgd(1e-2)
    params = eqx.filter(model, eqx.is_array)
    updates, _ = opt.update(grads, opt.init(params))
    new = eqx.apply_updates(model, updates)
    assert float(loss(new)[0]) < float(value)


def test_bad_arguments_and_missing_equinox():
    with pytest.raises(TypeError, match="`cell` must be a jrnn.Cell or a jrnn.Stack"):
        RNN("lstm", I, key=jax.random.key(0))
    with pytest.raises(ValueError, match="input_size"):
        RNN(jrnn.lstm(H), 0, key=jax.random.key(0))
    code = "import sys; sys.modules['equinox'] = None; import jrnn.nn.eqx"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "pip install 'jrnn[equinox]'" in out.stderr
