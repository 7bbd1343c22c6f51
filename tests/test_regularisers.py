"""Zoneout and recurrent (variational) dropout: hand computations, statistics, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn.checks import check_params

F64 = jnp.float64

CELLS = {
    "simple_rnn": lambda: jrnn.simple_rnn(5, param_dtype=F64),
    "lstm": lambda: jrnn.lstm(5, param_dtype=F64),
    "lstm_peep_proj": lambda: jrnn.lstm(5, peephole=True, proj_size=3, param_dtype=F64),
    "gru": lambda: jrnn.gru(5, param_dtype=F64),
    "gru_after_ln": lambda: jrnn.gru(5, reset_after=True, layer_norm=True, param_dtype=F64),
    "lstm_ln": lambda: jrnn.lstm(5, layer_norm=True, param_dtype=F64),
}


def _data(cell, batch=3, steps=6, input_size=4, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    params = cell.init(k1, input_size)
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(k2, a.shape, a.dtype), params)
    xs = jax.random.normal(jax.random.key(seed + 1), (batch, steps, input_size), F64)
    return params, xs


def _linear_rnn(hidden, input_size, w_ih_eye=False, w_hh_eye=True):
    """A linear Elman cell ``h_t = x_t @ w_ih + h_{t-1} @ w_hh`` with chosen weights."""
    cell = jrnn.simple_rnn(hidden, "identity", param_dtype=F64)
    params = cell.init(jax.random.key(0), input_size)
    params = {
        "w_ih": jnp.eye(input_size, hidden, dtype=F64) if w_ih_eye else 0 * params["w_ih"],
        "w_hh": jnp.eye(hidden, dtype=F64) if w_hh_eye else 0 * params["w_hh"],
        "b": jnp.zeros(hidden, F64),
    }
    return cell, params


# ---- zoneout ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CELLS))
def test_zoneout_evaluation_is_the_expectation(name):
    base = CELLS[name]()
    params, xs = _data(base)
    rates = jrnn.LSTMState(h=0.2, c=0.7) if "lstm" in name else 0.3
    cell = jrnn.zoneout(base, rates)
    ys, carry_T = jrnn.unroll(cell, params, xs)
    # by hand: a NumPy loop over the plain cell's steps
    r = list(rates) if isinstance(rates, tuple) else [rates] * len(base.initial_carry(params))
    carry = base.initial_carry(params, (xs.shape[0],))
    want = []
    for t in range(xs.shape[1]):
        new, _ = base.step(params, carry, xs[:, t])
        leaves = [
            ri * np.asarray(o) + (1 - ri) * np.asarray(n)
            for ri, o, n in zip(r, jax.tree.leaves(carry), jax.tree.leaves(new), strict=True)
        ]
        carry = jax.tree.unflatten(jax.tree.structure(carry), [jnp.asarray(a) for a in leaves])
        want.append(np.asarray(carry.h))
    np.testing.assert_allclose(ys, np.stack(want, 1), rtol=1e-12, atol=1e-12)
    for got, exp in zip(jax.tree.leaves(carry_T), jax.tree.leaves(carry), strict=True):
        np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-12)
    # the regularised cell's own step is the same evaluation step
    c0 = base.initial_carry(params, (xs.shape[0],))
    np.testing.assert_allclose(cell.step(params, c0, xs[:, 0])[1], want[0], rtol=1e-12)


def test_zoneout_training_keeps_units_at_the_rate_per_component():
    base = jrnn.lstm(16, param_dtype=F64)
    params, _ = _data(base)
    batch, steps = 64, 20
    xs = jax.random.normal(jax.random.key(5), (batch, steps, 4), F64)
    cell = jrnn.zoneout(base, jrnn.LSTMState(h=0.1, c=0.6))
    ys, _, carries = jrnn.unroll(cell, params, xs, key=jax.random.key(7), return_carries=True)
    c0 = base.initial_carry(params, (batch,))
    prev = jax.tree.map(lambda a0, a: jnp.concatenate([a0[:, None], a[:, :-1]], 1), c0, carries)
    # the plain step from each previous carry, vectorised over time
    stepped, _ = jax.vmap(base.step, in_axes=(None, 1, 1), out_axes=1)(params, prev, xs)
    np.testing.assert_array_equal(ys, carries.h)  # the output is the zoned-out h
    for comp, rate in (("h", 0.1), ("c", 0.6)):
        old, new, plain = (getattr(c, comp) for c in (prev, carries, stepped))
        kept = np.asarray(new == old) & np.asarray(new != plain)
        updated = np.isclose(new, plain, rtol=1e-12, atol=1e-14)
        assert np.all(kept | updated)  # every unit either kept its value or took the update
        n = kept[:, 1:].size  # t = 0 starts from zeros; compare from t = 1
        frac = kept[:, 1:].mean()
        assert abs(frac - rate) < 4 * np.sqrt(rate * (1 - rate) / n), (comp, frac)
        assert not np.array_equal(kept[0], kept[1])  # independent per sequence
        assert not np.array_equal(kept[:, 3], kept[:, 4])  # and per step


def test_zoneout_rate_zero_is_the_plain_cell():
    base = jrnn.gru(5, param_dtype=F64)
    params, xs = _data(base)
    plain = jrnn.unroll(base, params, xs)[0]
    cell = jrnn.zoneout(base, 0.0)
    assert cell.noise is None
    np.testing.assert_array_equal(jrnn.unroll(cell, params, xs)[0], plain)
    np.testing.assert_array_equal(jrnn.unroll(cell, params, xs, key=jax.random.key(1))[0], plain)


def test_zoneout_per_component_rates_only_touch_their_component():
    base = jrnn.lstm(8, param_dtype=F64)
    params, xs = _data(base, batch=16, steps=10)
    cell = jrnn.zoneout(base, jrnn.LSTMState(h=0.0, c=0.5))
    _, _, carries = jrnn.unroll(cell, params, xs, key=jax.random.key(2), return_carries=True)
    prev = jax.tree.map(lambda a: a[:, :-1], carries)
    now = jax.tree.map(lambda a: a[:, 1:], carries)
    assert float(jnp.mean(now.c == prev.c)) > 0.3  # c is zoned out
    # h is not: it is exactly the plain step's h from the previous (zoned-out) carry
    stepped, _ = jax.vmap(base.step, in_axes=(None, 1, 1), out_axes=1)(params, prev, xs[:, 1:])
    np.testing.assert_allclose(now.h, stepped.h, rtol=1e-12, atol=1e-14)
    assert float(jnp.mean(now.c == stepped.c)) < 0.7  # while c took the update elsewhere


# ---- recurrent dropout ------------------------------------------------------------------


def test_recurrent_dropout_mask_is_constant_over_time_and_differs_across_sequences():
    rate, hidden, steps = 0.3, 32, 5
    cell, params = _linear_rnn(hidden, 2)  # h_t = h_{t-1} * m_h (w_hh = I, no input)
    reg = jrnn.recurrent_dropout(cell, rate)
    batch = 8
    h0 = jrnn.RNNState(jnp.ones((batch, hidden), F64))
    ys, _ = jrnn.unroll(
        reg, params, jnp.ones((batch, steps, 2), F64), carry=h0, key=jax.random.key(3)
    )
    keep = np.asarray(ys[:, 0] != 0)
    scale = 1 / (1 - rate)
    for t in range(steps):  # the same units are dropped at every step: h_t = m^(t+1)
        np.testing.assert_allclose(ys[:, t], np.where(keep, scale ** (t + 1), 0.0), rtol=1e-12)
    assert len({k.tobytes() for k in keep}) == batch  # a different mask per sequence
    n = keep.size
    assert abs(keep.mean() - (1 - rate)) < 4 * np.sqrt(rate * (1 - rate) / n)


def test_recurrent_dropout_on_inputs_is_one_mask_per_sequence():
    rate, size = 0.4, 32
    cell, params = _linear_rnn(size, size, w_ih_eye=True, w_hh_eye=False)  # h_t = x_t * m_x
    reg = jrnn.recurrent_dropout(cell, 0.0, input_rate=rate)
    xs = jnp.ones((4, 6, size), F64)
    ys, _ = jrnn.unroll(reg, params, xs, key=jax.random.key(4))
    keep = np.asarray(ys[:, :1] != 0)
    np.testing.assert_allclose(ys, np.broadcast_to(np.where(keep, 1 / (1 - rate), 0), ys.shape))
    assert len({k.tobytes() for k in keep}) == 4


def test_recurrent_dropout_inverted_scaling_preserves_the_mean():
    rate, hidden, n = 0.25, 6, 4000
    cell, params = _linear_rnn(hidden, 2)
    reg = jrnn.recurrent_dropout(cell, rate)
    h0 = jrnn.RNNState(jnp.linspace(-1.0, 2.0, hidden, dtype=F64))
    xs = jnp.zeros((1, 2), F64)

    def one(key):
        return jrnn.unroll(reg, params, xs, carry=h0, key=key)[0][0]

    ys = jax.vmap(one)(jax.random.split(jax.random.key(0), n))  # [n, H] = h0 * m
    sigma = np.abs(np.asarray(h0.h)) * np.sqrt(rate / (1 - rate)) / np.sqrt(n)
    assert np.all(np.abs(ys.mean(0) - h0.h) <= 4 * sigma + 1e-12)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_recurrent_dropout_evaluation_is_bit_identical_to_the_plain_cell(name):
    base = CELLS[name]()
    params, xs = _data(base)
    reg = jrnn.recurrent_dropout(base, 0.5, input_rate=0.2)
    assert check_params(reg, params, "test") == xs.shape[-1]  # the base params, unchanged
    for hoist in (False, True):
        want = jrnn.unroll(base, params, xs, hoist=hoist)[0]
        np.testing.assert_array_equal(jrnn.unroll(reg, params, xs, hoist=hoist)[0], want)
    ys, _ = jrnn.unroll(reg, params, xs, key=jax.random.key(0))
    assert ys.shape == want.shape and not np.allclose(ys, want)


def test_plain_cell_ignores_the_key_and_its_program_is_unchanged():
    cell = jrnn.lstm(4)
    params = cell.init(jax.random.key(0), 3)
    xs = jnp.ones((2, 5, 3))
    key = jax.random.key(1)
    jrnn.unroll(cell, params, xs)  # fills the param-layout cache (traced once otherwise)
    with_key = jax.make_jaxpr(lambda p: jrnn.unroll(cell, p, xs, key=key))(params)
    without = jax.make_jaxpr(lambda p: jrnn.unroll(cell, p, xs))(params)
    assert str(with_key) == str(without)


def test_stack_gives_every_layer_and_direction_its_own_mask():
    hidden, rate = 32, 0.5
    cell, p = _linear_rnn(hidden, hidden)
    net = jrnn.stack(jrnn.recurrent_dropout(cell, rate), num_layers=2, bidirectional=True)
    p1 = {**p, "w_ih": jnp.zeros((2 * hidden, hidden), F64)}  # layer 1 reads 2H features
    params = ((p, p), (p1, p1))
    ones = jrnn.RNNState(jnp.ones((hidden,), F64))
    carries = ((ones, ones), (ones, ones))
    xs = jnp.zeros((4, hidden), F64)
    _, finals = net.apply(params, xs, carries=carries, key=jax.random.key(9))
    masks = [np.asarray(c.h != 0).tobytes() for layer in finals for c in layer]
    assert len(set(masks)) == 4
    # no key: the plain stack, bit for bit
    plain = jrnn.stack(cell, num_layers=2, bidirectional=True)
    want = plain.apply(params, xs + 1, carries=carries)[0]
    np.testing.assert_array_equal(net.apply(params, xs + 1, carries=carries)[0], want)


# ---- both, gradients, transformations, models -------------------------------------------


def test_composition_evaluation_and_training():
    base = jrnn.lstm(5, proj_size=3, param_dtype=F64)
    params, xs = _data(base)
    both = jrnn.zoneout(jrnn.recurrent_dropout(base, 0.25, input_rate=0.1), (0.1, 0.4))
    only_z = jrnn.zoneout(base, (0.1, 0.4))
    np.testing.assert_array_equal(
        jrnn.unroll(both, params, xs)[0], jrnn.unroll(only_z, params, xs)[0]
    )
    k = jax.random.key(3)
    a = jrnn.unroll(both, params, xs, key=k)[0]
    np.testing.assert_array_equal(a, jrnn.unroll(both, params, xs, key=k)[0])
    assert not np.allclose(a, jrnn.unroll(both, params, xs, key=jax.random.key(4))[0])
    with pytest.raises(ValueError, match="recurrent_dropout first"):
        jrnn.recurrent_dropout(jrnn.zoneout(base, 0.1), 0.2)


@pytest.mark.parametrize(
    "opts",
    [
        {"key": 11, "remat": "none"},
        {"key": 11, "remat": "sqrt"},
        {"key": None, "hoist": True, "vjp": "hoisted"},  # evaluation on the fast path
    ],
    ids=["train", "train-sqrt-remat", "eval-hoisted-vjp"],
)
def test_gradients_match_finite_differences(opts):
    base = jrnn.gru(4, param_dtype=F64)
    params, xs = _data(base, batch=2, steps=5, input_size=3)
    cell = jrnn.zoneout(jrnn.recurrent_dropout(base, 0.3, input_rate=0.2), 0.3)
    opts = dict(opts)
    seed = opts.pop("key")
    key = None if seed is None else jax.random.key(seed)
    lengths = jnp.array([5, 3])

    def loss(p, x):
        ys, c = jrnn.unroll(cell, p, x, key=key, lengths=lengths, reverse=True, **opts)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(c.h**2)

    gp, gx = jax.grad(loss, argnums=(0, 1))(params, xs)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves((gp, gx)))
    rng = np.random.default_rng(0)
    dp = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), params)
    dx = jnp.asarray(rng.normal(size=xs.shape))
    eps = 1e-6
    plus = loss(jax.tree.map(lambda a, d: a + eps * d, params, dp), xs + eps * dx)
    minus = loss(jax.tree.map(lambda a, d: a - eps * d, params, dp), xs - eps * dx)
    fd = (plus - minus) / (2 * eps)
    ad = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(gp), jax.tree.leaves(dp), strict=True))
    ad = ad + jnp.vdot(gx, dx)
    np.testing.assert_allclose(ad, fd, rtol=1e-6)


def test_jit_and_vmap():
    base = jrnn.lstm(4)
    cell = jrnn.zoneout(jrnn.recurrent_dropout(base, 0.2), 0.1)
    params = base.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    key = jax.random.key(2)
    f = lambda p, x, k: jrnn.unroll(cell, p, x, key=k)[0]
    np.testing.assert_allclose(jax.jit(f)(params, xs, key), f(params, xs, key), rtol=1e-6)
    keys = jax.random.split(key, 3)
    out = jax.vmap(f, in_axes=(None, None, 0))(params, xs, keys)
    assert out.shape == (3, 2, 5, 4) and not np.allclose(out[0], out[1])
    np.testing.assert_allclose(out[1], f(params, xs, keys[1]), rtol=1e-6, atol=1e-7)


def test_sequence_model_passes_the_key_to_the_rnn():
    cell = jrnn.zoneout(jrnn.gru(6), 0.5)
    xs = jnp.ones((2, 4, 3))
    for rnn in (cell, jrnn.stack(cell, num_layers=2)):
        model = jrnn.sequence_model(rnn, 2, input_size=3)
        params = model.init(jax.random.key(0))

        def loss(p, model=model):
            return jnp.sum(model.apply(p, xs, key=jax.random.key(1))[0])

        a = model.apply(params, xs, key=jax.random.key(1))[0]
        b = model.apply(params, xs, key=jax.random.key(2))[0]
        assert not np.allclose(a, b)
        np.testing.assert_array_equal(model.apply(params, xs)[0], model.apply(params, xs)[0])
        g = jax.grad(loss)(params)
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(g))


# ---- bad inputs -------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_rate_outside_range_raises(rate):
    with pytest.raises(ValueError, match=r"zoneout: `rate` must lie in \[0, 1\)"):
        jrnn.zoneout(jrnn.lstm(4), rate)
    with pytest.raises(ValueError, match=r"recurrent_dropout: `rate` must lie in \[0, 1\)"):
        jrnn.recurrent_dropout(jrnn.lstm(4), rate)
    with pytest.raises(ValueError, match=r"`input_rate` must lie in \[0, 1\)"):
        jrnn.recurrent_dropout(jrnn.lstm(4), 0.1, input_rate=rate)


@pytest.mark.parametrize("rate", ["0.1", True, None])
def test_rate_not_a_number_raises(rate):
    with pytest.raises(TypeError, match="`rate` must be a float"):
        jrnn.zoneout(jrnn.gru(4), rate)
    with pytest.raises(TypeError, match="`rate` must be a float"):
        jrnn.recurrent_dropout(jrnn.gru(4), rate)


def test_per_component_rates_must_match_the_carry():
    with pytest.raises(ValueError, match=r"2 rates matching the carry LSTMState\(h, c\)"):
        jrnn.zoneout(jrnn.lstm(4), (0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match=r"1 rates matching the carry RNNState\(h\)"):
        jrnn.zoneout(jrnn.gru(4), jrnn.LSTMState(h=0.1, c=0.2))
    with pytest.raises(ValueError, match=r"rate\[1\]"):
        jrnn.zoneout(jrnn.lstm(4), (0.1, 2.0))


def test_key_must_be_a_prng_key():
    cell = jrnn.zoneout(jrnn.lstm(4), 0.1)
    params = cell.init(jax.random.key(0), 3)
    xs = jnp.ones((2, 5, 3))
    # [2] keys are one key per example of this batch of 2 (jrnn.keys); [3] keys are not
    for bad in (0, jnp.zeros(3), jax.random.split(jax.random.key(0), 3)):
        with pytest.raises(TypeError, match="unroll: `key` must be a PRNG key"):
            jrnn.unroll(cell, params, xs, key=bad)
    net = jrnn.stack(cell, num_layers=2)
    with pytest.raises(TypeError, match=r"stack.apply: `key` must be a PRNG key"):
        net.apply(net.init(jax.random.key(0), 3), xs, key=1)
    ys, _ = jrnn.unroll(cell, params, xs, key=jax.random.PRNGKey(0))  # a raw key works too
    assert ys.shape == (2, 5, 4)


def test_training_ignores_hoist_and_vjp_and_respects_lengths():
    base = jrnn.lstm(5, param_dtype=F64)
    params, xs = _data(base, batch=3, steps=6)
    cell = jrnn.zoneout(jrnn.recurrent_dropout(base, 0.3, input_rate=0.2), 0.2)
    key, lengths = jax.random.key(8), jnp.array([6, 2, 0])
    ys, c = jrnn.unroll(cell, params, xs, key=key, lengths=lengths, hoist=False, vjp="autodiff")
    ys_h, c_h = jrnn.unroll(cell, params, xs, key=key, lengths=lengths, hoist=True, vjp="hoisted")
    np.testing.assert_array_equal(ys, ys_h)
    assert np.all(np.asarray(ys[1, 2:]) == 0) and np.all(np.asarray(ys[2]) == 0)  # padding
    np.testing.assert_array_equal(c.h[2], np.zeros(5))  # an empty sequence keeps its carry
    np.testing.assert_array_equal(c.h[1], ys[1, 1])
