"""Flax cell converters (``jrnn.interop.from_flax``, ``to_flax``) against Flax's own forward
passes.

Every supported Flax cell (linen and NNX ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``)
gets random parameters (biases included), runs a few steps with its own ``__call__``, and
the converted jrnn cell runs the same sequence through ``jrnn.unroll`` from the converted
initial carry: outputs, final carries and the gradients with respect to the inputs and the
initial carry agree to 1e-12 in float64 (1e-5 in float32).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jrnn
from jrnn.interop import carry_from_flax, carry_to_flax, from_flax, to_flax

B, T, I, H = 2, 4, 3, 5


def randomize(tree, key, scale=0.5):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef,
        [scale * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)],
    )


def inputs(dtype):
    k1, k2, k3 = jax.random.split(jax.random.key(42), 3)
    xs = jax.random.normal(k1, (B, T, I), dtype)
    h0 = 0.5 * jax.random.normal(k2, (B, H), dtype)
    c0 = 0.5 * jax.random.normal(k3, (B, H), dtype)
    return xs, h0, c0


def flax_sequence(step, carry, xs):
    """Runs Flax's own cell call ``step(carry, x_t) -> (carry, y_t)`` over ``xs [B, T, I]``."""
    ys = []
    for t in range(xs.shape[1]):
        carry, y = step(carry, xs[:, t])
        ys.append(y)
    return jnp.stack(ys, axis=1), carry


def loss_and_outputs(run):
    """``run(carry, xs) -> (ys, carry)`` -> a scalar loss with ``(ys, carry)`` as aux."""

    def loss(carry, xs):
        ys, final = run(carry, xs)
        value = jnp.sum(jnp.sin(ys)) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(final))
        return value, (ys, final)

    return jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))


def compare(module, params, step, flax_carry0, xs, tol):
    """Flax's own steps vs the converted cell: outputs, final carries and the gradients
    with respect to the inputs and the initial carry."""
    cell, p = from_flax(module, params)
    flax_run = loss_and_outputs(lambda c, x: flax_sequence(step, c, x))
    jrnn_run = loss_and_outputs(lambda c, x: jrnn.unroll(cell, p, x, carry=c))
    (dc_ref, dx_ref), (ys_ref, carry_ref) = flax_run(flax_carry0, xs)
    (dc, dx), (ys, carry) = jrnn_run(carry_from_flax(module, flax_carry0), xs)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    close(ys, ys_ref)
    close(dx, dx_ref)
    for mine, theirs in ((carry, carry_ref), (dc, dc_ref)):
        for a, b in zip(
            jax.tree.leaves(carry_to_flax(module, mine)), jax.tree.leaves(theirs), strict=True
        ):
            close(a, b)
    return cell, p


LINEN = {
    "LSTMCell": lambda dt: nn.LSTMCell(H, param_dtype=dt),
    "OptimizedLSTMCell": lambda dt: nn.OptimizedLSTMCell(H, param_dtype=dt),
    "GRUCell": lambda dt: nn.GRUCell(H, param_dtype=dt),
}


@pytest.mark.parametrize(
    "name, dtype",
    [(n, jnp.float64) for n in LINEN] + [("GRUCell", jnp.float32)],
    ids=[f"{n}-f64" for n in LINEN] + ["GRUCell-f32"],
)
def test_linen_cells(name, dtype):
    module = LINEN[name](dtype)
    xs, h0, c0 = inputs(dtype)
    is_lstm = "LSTM" in name
    carry0 = (c0, h0) if is_lstm else h0  # Flax's order: (c, h)
    variables = module.init(jax.random.key(0), carry0, xs[:, 0])
    variables = randomize(variables, jax.random.key(1))
    step = lambda c, x: module.apply(variables, c, x)
    tol = 1e-12 if dtype == jnp.float64 else 1e-5
    cell, p = compare(module, variables["params"], step, carry0, xs, tol)
    assert cell.hidden_size == H and p["w_ih"].dtype == dtype
    if is_lstm:
        assert set(p) == {"w_ih", "w_hh", "b"}
    else:
        assert set(p) == {"w_ih", "w_hh", "b", "b_hn"} and "reset_after=True" in cell.name
    # the whole variables dict is accepted too
    jax.tree.map(np.testing.assert_array_equal, from_flax(module, variables)[1], p)


def test_linen_lstm_and_optimized_lstm_share_parameters():
    """Both linen LSTMs read the same parameter names; one conversion serves both."""
    xs, h0, c0 = inputs(jnp.float64)
    plain = nn.LSTMCell(H, param_dtype=jnp.float64)
    fast = nn.OptimizedLSTMCell(H, param_dtype=jnp.float64)
    variables = randomize(plain.init(jax.random.key(0), (c0, h0), xs[:, 0]), jax.random.key(2))
    step = lambda c, x: fast.apply(variables, c, x)
    compare(fast, variables, step, (c0, h0), xs, 1e-12)
    jax.tree.map(
        np.testing.assert_array_equal, from_flax(plain, variables)[1], from_flax(fast, variables)[1]
    )


NNX = {
    "LSTMCell": lambda rngs: nnx.LSTMCell(I, H, param_dtype=jnp.float64, rngs=rngs),
    "OptimizedLSTMCell": lambda rngs: nnx.OptimizedLSTMCell(
        I, H, param_dtype=jnp.float64, rngs=rngs
    ),
    "GRUCell": lambda rngs: nnx.GRUCell(I, H, param_dtype=jnp.float64, rngs=rngs),
}


@pytest.mark.parametrize("name", list(NNX))
def test_nnx_cells(name):
    module = NNX[name](nnx.Rngs(0))
    state = nnx.state(module, nnx.Param)
    nnx.update(module, randomize(state, jax.random.key(3)))
    xs, h0, c0 = inputs(jnp.float64)
    carry0 = (c0, h0) if "LSTM" in name else h0
    cell, p = compare(module, None, module, carry0, xs, 1e-12)
    if name == "GRUCell":  # NNX's GRU has no recurrent bias
        np.testing.assert_array_equal(p["b_hn"], np.zeros(H))


def test_bad_input_raises():
    with pytest.raises(TypeError, match="unsupported module .*SimpleCell"):
        from_flax(nn.SimpleCell(H), {})
    with pytest.raises(TypeError, match="unsupported module .*Dense"):
        from_flax(nn.Dense(H), {})
    with pytest.raises(ValueError, match=r"GRUCell's gate_fn must be one of .*hard_sigmoid"):
        from_flax(nn.GRUCell(H, gate_fn=jnp.tanh), {})
    with pytest.raises(ValueError, match=r"`params` has no if/kernel"):
        from_flax(nn.LSTMCell(H), {"ii": {"kernel": jnp.zeros((I, H))}})
    with pytest.raises(ValueError, match="needs its `params`"):
        from_flax(nn.GRUCell(H))
    with pytest.raises(ValueError, match="NNX module holds its parameters"):
        from_flax(nnx.GRUCell(I, H, rngs=nnx.Rngs(0)), {})
    xs, h0, c0 = inputs(jnp.float32)
    v = nn.LSTMCell(H).init(jax.random.key(0), (c0, h0), xs[:, 0])
    bad = jax.tree.map(lambda a: a, v["params"])
    bad["hi"] = {"kernel": bad["hi"]["kernel"], "bias": jnp.zeros((H + 1,), jnp.float32)}
    with pytest.raises(ValueError, match=r"fused jrnn parameter `b` must have last axis 20"):
        from_flax(nn.LSTMCell(H), bad)


# --------------------------------------------------------------------------------------
# gate functions, and jrnn -> Flax

FUNCTIONS = [
    ("hard_sigmoid-relu", jax.nn.hard_sigmoid, jax.nn.relu),
    ("sigmoid-gelu", jax.nn.sigmoid, jax.nn.gelu),
    ("hard_sigmoid-tanh", jax.nn.hard_sigmoid, jnp.tanh),
]


@pytest.mark.parametrize("kind", ["LSTMCell", "OptimizedLSTMCell", "GRUCell"])
@pytest.mark.parametrize("fns", FUNCTIONS, ids=[f[0] for f in FUNCTIONS])
def test_linen_gate_functions_carry_over(kind, fns):
    _, gate_fn, act = fns
    module = getattr(nn, kind)(H, gate_fn=gate_fn, activation_fn=act, param_dtype=jnp.float64)
    xs, h0, c0 = inputs(jnp.float64)
    xs = 3.0 * xs  # reach the hard sigmoid's flat parts and relu's negative side
    carry0 = (c0, h0) if "LSTM" in kind else h0
    variables = randomize(module.init(jax.random.key(0), carry0, xs[:, 0]), jax.random.key(5))
    step = lambda c, x: module.apply(variables, c, x)
    cell, _ = compare(module, variables, step, carry0, xs, 1e-12)
    config = dict(cell.config)
    names = {v: k for k, v in jrnn.cells.ACTIVATIONS.items()}
    assert (config["gate_fn"], config["activation"]) == (names[gate_fn], names[act])


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell"])
def test_nnx_gate_functions_carry_over(kind):
    module = getattr(nnx, kind)(
        I,
        H,
        gate_fn=jax.nn.hard_sigmoid,
        activation_fn=jax.nn.relu,
        param_dtype=jnp.float64,
        rngs=nnx.Rngs(0),
    )
    nnx.update(module, randomize(nnx.state(module, nnx.Param), jax.random.key(6)))
    xs, h0, c0 = inputs(jnp.float64)
    carry0 = (c0, h0) if "LSTM" in kind else h0
    cell, _ = compare(module, None, module, carry0, 3.0 * xs, 1e-12)
    assert "gate_fn=hard_sigmoid, activation=relu" in cell.name


def test_custom_lstm_functions_pass_through():
    """A callable jrnn has no name for is handed to the jrnn LSTM as it is."""
    gate = lambda v: 0.5 * (jnp.tanh(v) + 1.0)
    module = nn.LSTMCell(H, gate_fn=gate, activation_fn=jnp.sin, param_dtype=jnp.float64)
    xs, h0, c0 = inputs(jnp.float64)
    variables = randomize(module.init(jax.random.key(0), (c0, h0), xs[:, 0]), jax.random.key(7))
    step = lambda c, x: module.apply(variables, c, x)
    cell, _ = compare(module, variables, step, (c0, h0), xs, 1e-12)
    assert "gate_fn=<lambda>, activation=sin" in cell.name


JRNN_CELLS = {
    "lstm": lambda **kw: jrnn.lstm(H, **kw),
    "gru_reset_after": lambda **kw: jrnn.gru(H, reset_after=True, **kw),
}


@pytest.mark.parametrize("name", list(JRNN_CELLS))
@pytest.mark.parametrize("fns", FUNCTIONS, ids=[f[0] for f in FUNCTIONS])
def test_to_flax_matches_jrnn_and_round_trips(name, fns):
    _, gate_fn, act = fns
    cell = JRNN_CELLS[name](gate_fn=gate_fn, activation=act, param_dtype=jnp.float64)
    params = randomize(cell.init(jax.random.key(0), I), jax.random.key(8))
    module, variables = to_flax(cell, params)
    assert module.gate_fn is gate_fn and module.activation_fn is act
    assert module.param_dtype == jnp.float64
    xs, h0, c0 = inputs(jnp.float64)
    carry0 = (c0, h0) if name == "lstm" else h0
    step = lambda c, x: module.apply(variables, c, x)
    back, p = compare(module, variables, step, carry0, 3.0 * xs, 1e-12)
    # and back: the same functions, the same parameters
    assert back.name.replace("forget_bias=0.0", "forget_bias=1.0") == cell.name
    jax.tree.map(np.testing.assert_array_equal, p, params)


def test_to_flax_refuses_what_flax_cannot_express():
    cases = [
        (jrnn.lstm(H, peephole=True), "peepholes"),
        (jrnn.lstm(H, proj_size=2), "a projection"),
        (jrnn.lstm(H, layer_norm=True), "layer norm"),
        (jrnn.gru(H), "reset-before"),
        (jrnn.simple_rnn(H), "simple_rnn"),
        (jrnn.gru(H, reset_after=True, gate_fn="tanh"), r"gate_fn must be one of"),
        (jrnn.lstm(H, activation=jnp.sin), "custom function 'sin'"),
    ]
    for cell, match in cases:
        with pytest.raises(ValueError, match=match):
            to_flax(cell, cell.init(jax.random.key(0), I))
    cell = jrnn.lstm(H)
    with pytest.raises(ValueError, match="w_hh"):
        to_flax(cell, {**cell.init(jax.random.key(0), I), "w_hh": jnp.zeros((H, H))})
