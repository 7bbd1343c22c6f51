"""Every cell's forward pass and BPTT gradients against the NumPy reference."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jrnn
from jrnn import reference as ref
from tests.helpers import (
    VARIANT_IDS,
    VARIANTS,
    np_params,
    random_carry,
    random_params,
    ref_to_tuple,
    to_ref_carry,
)

B, T, I, H = 3, 6, 4, 5


def _setup(factory, dtype, seed=0, batch=B, steps=T):
    cell = factory(H, param_dtype=dtype)
    key = jax.random.key(seed)
    k1, k2, k3 = jax.random.split(key, 3)
    params = random_params(cell, k1, I)
    xs = jax.random.normal(k2, (batch, steps, I), dtype)
    carry = random_carry(cell, params, k3, (batch,))
    return cell, params, xs, carry


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("dtype,atol", [(jnp.float32, 1e-5), (jnp.float64, 1e-10)])
@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("hoist", [False, True])
def test_forward_matches_reference(variant, dtype, atol, jit, hoist):
    _, factory, kind, act = variant
    cell, params, xs, carry = _setup(factory, dtype)
    run = lambda p, x, c: jrnn.unroll(cell, p, x, carry=c, hoist=hoist)
    if jit:
        run = jax.jit(run)
    ys, carry_t = run(params, xs, carry)
    assert ys.dtype == dtype
    ys_ref, carry_ref = ref.forward(
        kind, np_params(params), np.asarray(xs), to_ref_carry(kind, carry), activation=act
    )
    chex.assert_trees_all_close(ys, ys_ref.astype(dtype), atol=atol, rtol=0)
    chex.assert_trees_all_close(
        tuple(carry_t),
        tuple(x.astype(dtype) for x in ref_to_tuple(kind, carry_ref)),
        atol=atol,
        rtol=0,
    )


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_step_matches_reference_cell_step(variant):
    _, factory, kind, act = variant
    cell, params, xs, carry = _setup(factory, jnp.float64)
    new_carry, y = cell.step(params, carry, xs[:, 0])
    ref_carry, ref_y = ref.cell_step(
        kind, np_params(params), to_ref_carry(kind, carry), np.asarray(xs[:, 0]), activation=act
    )
    chex.assert_trees_all_close(y, ref_y, atol=1e-12)
    chex.assert_trees_all_close(tuple(new_carry), ref_to_tuple(kind, ref_carry), atol=1e-12)


def _loss_and_cotangents(cell, params, xs, carry, seed=7, **kw):
    """L = sum(ys * G) + sum_k sum(carry_T[k] * G_k) with fixed random G."""
    ys, carry_t = jrnn.unroll(cell, params, xs, carry=carry, **kw)
    key = jax.random.key(seed)
    g_ys = jax.random.normal(key, ys.shape, ys.dtype)
    g_carry = tuple(
        jax.random.normal(jax.random.fold_in(key, i), c.shape, c.dtype)
        for i, c in enumerate(carry_t)
    )

    def loss(p, x, c):
        ys, c_t = jrnn.unroll(cell, p, x, carry=c, **kw)
        return jnp.sum(ys * g_ys) + sum(jnp.sum(a * g) for a, g in zip(c_t, g_carry, strict=True))

    return loss, g_ys, g_carry


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize(
    "lengths,reverse",
    [(None, False), (None, True), ((6, 0, 3), False), ((6, 0, 3), True)],
    ids=["full", "reverse", "lengths", "lengths_reverse"],
)
@pytest.mark.parametrize("vjp", ["hoisted", "autodiff"])
def test_bptt_matches_hand_derived_reference(variant, lengths, reverse, vjp):
    _, factory, kind, act = variant
    cell, params, xs, carry = _setup(factory, jnp.float64, seed=1)
    lengths = None if lengths is None else jnp.asarray(lengths)
    kw = dict(lengths=lengths, reverse=reverse, vjp=vjp, hoist=vjp == "hoisted")
    loss, g_ys, g_carry = _loss_and_cotangents(cell, params, xs, carry, **kw)
    d_params, d_xs, d_carry = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(params, xs, carry)
    dcarry_t = g_carry if kind == "lstm" else g_carry[0]
    r_params, r_xs, r_carry = ref.backward(
        kind,
        np_params(params),
        np.asarray(xs),
        to_ref_carry(kind, carry),
        np.asarray(g_ys),
        dcarry_T=jax.tree.map(np.asarray, dcarry_t),
        lengths=None if lengths is None else np.asarray(lengths),
        reverse=reverse,
        activation=act,
    )
    chex.assert_trees_all_close(d_params, r_params, atol=1e-8, rtol=1e-8)
    chex.assert_trees_all_close(d_xs, r_xs, atol=1e-8, rtol=1e-8)
    chex.assert_trees_all_close(tuple(d_carry), ref_to_tuple(kind, r_carry), atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("vjp", ["hoisted", "autodiff"])
def test_check_grads_float64(variant, vjp):
    _, factory, kind, _ = variant
    cell, params, xs, carry = _setup(factory, jnp.float64, seed=2, batch=2, steps=4)
    loss, _, _ = _loss_and_cotangents(cell, params, xs, carry, lengths=jnp.asarray([4, 2]), vjp=vjp)
    check_grads(loss, (params, xs, carry), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


def test_bf16_compute_keeps_bf16_outputs_with_float32_params():
    cell16 = jrnn.lstm(H, dtype=jnp.bfloat16)
    cell32 = jrnn.lstm(H)
    params = cell16.init(jax.random.key(0), I)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    xs = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float32)
    ys, carry = jrnn.unroll(cell16, params, xs)
    assert ys.dtype == jnp.bfloat16
    assert all(c.dtype == jnp.bfloat16 for c in carry)
    ys32, _ = jrnn.unroll(cell32, params, xs)
    np.testing.assert_allclose(np.asarray(ys, np.float32), ys32, atol=5e-2)
    grads = jax.grad(lambda p: jnp.sum(jrnn.unroll(cell16, p, xs)[0].astype(jnp.float32)))(params)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))


def test_param_dtype_and_documented_initialisers():
    cell = jrnn.lstm(8, forget_bias=2.0, param_dtype=jnp.float64)
    p = cell.init(jax.random.key(0), 3)
    assert {k: v.shape for k, v in p.items()} == {"w_ih": (3, 32), "w_hh": (8, 32), "b": (32,)}
    assert all(v.dtype == jnp.float64 for v in p.values())
    np.testing.assert_array_equal(p["b"][8:16], 2.0)  # forget bias stored in the params
    np.testing.assert_array_equal(np.delete(np.asarray(p["b"]), np.s_[8:16]), 0.0)
    for k in range(4):  # each recurrent gate block is orthogonal
        blk = np.asarray(p["w_hh"][:, 8 * k : 8 * (k + 1)])
        np.testing.assert_allclose(blk.T @ blk, np.eye(8), atol=1e-10)
    peep = jrnn.lstm(8, peephole=True).init(jax.random.key(0), 3)
    assert peep["w_peep"].shape == (3, 8)
    g = jrnn.gru(8, reset_after=True).init(jax.random.key(0), 3)
    assert {k: v.shape for k, v in g.items()} == {
        "w_ih": (3, 24),
        "w_hh": (8, 24),
        "b": (24,),
        "b_hn": (8,),
    }
    r = jrnn.simple_rnn(8).init(jax.random.key(0), 3)
    assert {k: v.shape for k, v in r.items()} == {"w_ih": (3, 8), "w_hh": (8, 8), "b": (8,)}


def test_string_and_callable_activations_agree():
    a = jrnn.simple_rnn(H, activation="relu")
    b = jrnn.simple_rnn(H, activation=jax.nn.relu)
    p = random_params(a, jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (T, I), jnp.float32)
    chex.assert_trees_all_equal(jrnn.unroll(a, p, xs), jrnn.unroll(b, p, xs))
    assert b.name == (
        "simple_rnn(hidden_size=5, activation=relu, layer_norm=False, dtype=None, "
        "param_dtype=float32)"
    )


def test_repr_names_the_cell_and_its_hyper_parameters():
    cell = jrnn.lstm(256)
    assert repr(cell) == (
        "lstm(hidden_size=256, peephole=False, forget_bias=1.0, proj_size=None, "
        "layer_norm=False, gate_fn=sigmoid, activation=tanh, dtype=None, param_dtype=float32)"
    )
    assert repr(jrnn.lstm(8, peephole=True, proj_size=3, dtype=jnp.bfloat16)) == (
        "lstm(hidden_size=8, peephole=True, forget_bias=1.0, proj_size=3, layer_norm=False, "
        "gate_fn=sigmoid, activation=tanh, dtype=bfloat16, param_dtype=float32)"
    )
    assert repr(jrnn.gru(4, reset_after=True, param_dtype=jnp.float64)) == (
        "gru(hidden_size=4, reset_after=True, layer_norm=False, gate_fn=sigmoid, "
        "activation=tanh, dtype=None, param_dtype=float64)"
    )
    assert str(jrnn.simple_rnn(3, activation=jnp.tanh)) == (
        "simple_rnn(hidden_size=3, activation=tanh, layer_norm=False, dtype=None, "
        "param_dtype=float32)"
    )
    assert dict(cell.config) == {
        "hidden_size": 256,
        "peephole": False,
        "forget_bias": 1.0,
        "proj_size": None,
        "layer_norm": False,
        "gate_fn": "sigmoid",
        "activation": "tanh",
        "dtype": None,
        "param_dtype": jnp.float32,
    }
    net = jrnn.stack(jrnn.gru(8), num_layers=2, bidirectional=True, dropout=0.1)
    assert repr(net) == (
        "stack(gru(hidden_size=8, reset_after=False, layer_norm=False, gate_fn=sigmoid, "
        "activation=tanh, dtype=None, param_dtype=float32), num_layers=2, bidirectional=True, "
        "dropout=0.1)"
    )
    assert "0x" not in repr(net) and "function" not in repr(cell)


@pytest.mark.parametrize(
    "variant", VARIANTS + [("lstm_proj", None, None, None)], ids=VARIANT_IDS + ["lstm_proj"]
)
@pytest.mark.parametrize("half", [jnp.float16, jnp.bfloat16])
def test_half_precision_param_dtype_initialises(variant, half):
    _, factory, _, _ = variant
    cell = (factory or (lambda h, **kw: jrnn.lstm(h, proj_size=2, **kw)))(8, param_dtype=half)
    p = cell.init(jax.random.key(0), 3)
    assert all(v.dtype == half for v in p.values())
    assert all(np.all(np.isfinite(np.asarray(v, np.float32))) for v in p.values())
    # still orthogonal gate blocks (to half precision) where the recurrent kernel is square
    blk = np.asarray(p["w_hh"][:, :8], np.float64)
    if blk.shape == (8, 8):
        np.testing.assert_allclose(blk.T @ blk, np.eye(8), atol=3e-2)
    f32 = cell._replace(param_dtype=jnp.float32)
    ref32 = jax.tree.map(lambda a: a.astype(half), f32.init(jax.random.key(0), 3))
    chex.assert_trees_all_equal(p, ref32)  # = the float32 initialisation, rounded
    ys, _ = jrnn.unroll(cell, p, jnp.ones((2, 4, 3), half))
    assert ys.dtype == half and np.all(np.isfinite(np.asarray(ys, np.float32)))


def test_lstm_projection_shapes_and_vjp_modes_agree():
    cell = jrnn.lstm(6, peephole=True, proj_size=3, param_dtype=jnp.float64)
    p = random_params(cell, jax.random.key(0), I)
    assert p["w_hh"].shape == (3, 24) and p["w_proj"].shape == (6, 3)
    xs = jax.random.normal(jax.random.key(1), (2, 5, I), jnp.float64)
    ys, carry = jrnn.unroll(cell, p, xs)
    assert ys.shape == (2, 5, 3) and carry.h.shape == (2, 3) and carry.c.shape == (2, 6)
    # h_t is the projection of o_t * tanh(c_t): check one step by hand
    c0 = cell.initial_carry(p, (2,))
    a = xs[:, 0] @ p["w_ih"] + p["b"]
    a_i, a_f, a_g, a_o = jnp.split(a, 4, -1)
    c1 = jax.nn.sigmoid(a_f) * c0.c + jax.nn.sigmoid(a_i) * jnp.tanh(a_g)
    h1 = jax.nn.sigmoid(a_o + p["w_peep"][2] * c1) * jnp.tanh(c1) @ p["w_proj"]
    chex.assert_trees_all_close(ys[:, 0], h1, atol=1e-12)

    def loss(p, vjp):
        ys, c = jrnn.unroll(cell, p, xs, lengths=jnp.array([5, 2]), vjp=vjp)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(c.c**2)

    chex.assert_trees_all_close(
        jax.grad(loss)(p, "hoisted"), jax.grad(loss)(p, "autodiff"), atol=1e-12
    )
