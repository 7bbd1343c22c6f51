"""Flax modules over jrnn (``jrnn.nn.linen`` and ``jrnn.nn.nnx``).

The modules' parameters are what the cell's own ``init`` makes, and their calls compute
exactly (bit for bit: every such comparison is ``np.testing.assert_array_equal``) what
``jrnn.unroll`` / ``Stack.apply`` compute on those parameters, with lengths, reverse,
initial carries, time-major inputs and final carries, also when Flax's own ``nn.RNN`` /
``nnx.RNN`` drives the cell, and so are their gradients; stacks and stochastic cells
(zoneout, recurrent dropout, a custom cell with noise) draw keys from Flax's RNGs only when
not deterministic.
"""

from __future__ import annotations

import subprocess
import sys
from functools import partial

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jrnn
from jrnn.nn import linen as jl
from jrnn.nn import nnx as jx
from jrnn.nn import stack_params_from_dict, stack_params_to_dict

B, T, I, H = 3, 5, 4, 6
LENGTHS = jnp.array([5, 0, 2])


def data(dtype=jnp.float32):
    return jax.random.normal(jax.random.key(7), (B, T, I), dtype)


def same(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


# --------------------------------------------------------------------------------------
# linen


def test_linen_cell_params_come_from_the_cells_init():
    cell = jrnn.lstm(H, forget_bias=2.0)
    xs = data()
    variables = jl.RNN(cell).lazy_init(jax.random.key(0), xs)
    params = variables["params"]["cell"]
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(
        jnp.shape, cell.init(jax.random.key(0), I)
    )
    np.testing.assert_array_equal(params["b"][H : 2 * H], 2.0)  # the cell's own init
    same(jl.RNN(cell).lazy_init(jax.random.key(0), xs), variables)  # deterministic in the key


def test_linen_rnn_is_exactly_unroll_with_gradients():
    """Outputs, final carry and gradients (lengths, reverse, initial carry, time-major)."""
    cell = jrnn.gru(H, reset_after=True)
    xs = data()
    module = jl.RNN(cell, reverse=True, return_carry=True)
    variables = module.lazy_init(jax.random.key(0), xs)
    carry0 = jrnn.RNNState(jax.random.normal(jax.random.key(1), (B, H)))

    def module_loss(v, xs, carry0):
        carry, ys = module.apply(v, xs, carry0, lengths=LENGTHS)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(carry.h), (ys, carry)

    def pure_loss(p, xs, carry0):
        ys, carry = jrnn.unroll(cell, p, xs, carry=carry0, lengths=LENGTHS, reverse=True)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(carry.h), (ys, carry)

    grad = lambda f: jax.jit(jax.grad(f, argnums=(0, 1, 2), has_aux=True))
    (g_v, g_x, g_c), out = grad(module_loss)(variables, xs, carry0)
    (g_p, g_x_ref, g_c_ref), out_ref = grad(pure_loss)(variables["params"]["cell"], xs, carry0)
    same(out, out_ref)
    same((g_v["params"]["cell"], g_x, g_c), (g_p, g_x_ref, g_c_ref))

    ys_tm = jax.jit(jl.RNN(cell, reverse=True, time_major=True).apply)(
        variables, xs.swapaxes(0, 1), carry0, lengths=LENGTHS
    )
    same(ys_tm.swapaxes(0, 1), out_ref[0])
    shape = jax.eval_shape(lambda: module.apply(variables, xs, return_carry=False)).shape
    assert shape == (B, T, H)


def test_linen_stack_is_exactly_stack_apply_and_dropout_uses_flax_rngs():
    bidir = jrnn.stack(jrnn.lstm(H, proj_size=2), num_layers=2, bidirectional=True)
    tree = jl.RNN(bidir).lazy_init(jax.random.key(0), data())["params"]["stack"]
    assert set(tree) == {"layer_0", "layer_1"} and set(tree["layer_1"]) == {"forward", "backward"}
    assert tree["layer_1"]["backward"]["w_ih"].shape == (4, 4 * H)
    params = stack_params_from_dict(tree)
    same(stack_params_to_dict(params), tree)

    net = jrnn.stack(jrnn.lstm(H, proj_size=2), num_layers=2, dropout=0.5)
    xs = data()
    module = jl.RNN(net, return_carry=True)
    variables = module.lazy_init(jax.random.key(0), xs, deterministic=True)
    params = stack_params_from_dict(variables["params"]["stack"])

    @partial(jax.jit, static_argnames="deterministic")
    def run(key, deterministic):
        return module.apply(
            variables, xs, lengths=LENGTHS, deterministic=deterministic, rngs={"dropout": key}
        )

    carries, ys = run(jax.random.key(1), deterministic=True)
    same((ys, carries), jax.jit(net.apply)(params, xs, lengths=LENGTHS))

    # dropout: needs a decision, draws from the "dropout" stream, reproducibly
    with pytest.raises(ValueError, match="pass `deterministic`"):
        jax.eval_shape(lambda: module.apply(variables, xs))
    drop = lambda k: run(k, deterministic=False)[1]
    a, b, c = drop(jax.random.key(1)), drop(jax.random.key(1)), drop(jax.random.key(2))
    same(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, ys)
    # a stack without dropout needs neither flag nor RNG
    plain = jl.RNN(jrnn.stack(jrnn.lstm(H), 2))
    jax.eval_shape(lambda: plain.apply(plain.init(jax.random.key(0), xs), xs))


def test_linen_drops_into_a_larger_model_and_trains():
    class Tagger(nn.Module):
        @nn.compact
        def __call__(self, xs, lengths):
            net = jrnn.stack(jrnn.gru(8, reset_after=True), 1, bidirectional=True)
            ys = jl.RNN(net)(xs, lengths=lengths)
            return nn.Dense(2)(ys)

    model, xs = Tagger(), data()
    variables = model.lazy_init(jax.random.key(0), xs, LENGTHS)
    assert variables["params"]["RNN_0"]["stack"]["layer_0"]["backward"]["w_ih"].shape == (I, 24)
    opt = optax.sgd(0.1)
    state = opt.init(variables)

    @jax.jit
    def step(v, s):
        loss, g = jax.value_and_grad(lambda v: jnp.mean(model.apply(v, xs, LENGTHS) ** 2))(v)
        updates, s = opt.update(g, s, v)
        return optax.apply_updates(v, updates), s, loss

    losses = []
    for _ in range(3):
        variables, state, loss = step(variables, state)
        losses.append(float(loss))
    assert losses[-1] < losses[0]


def test_linen_cell_in_flax_nn_rnn():
    """``jl.Cell`` is an ``nn.RNNCellBase``: ``flax.linen.RNN`` drives it like jrnn.unroll."""
    cell = jrnn.lstm(H)
    xs = data()
    rnn = nn.RNN(jl.Cell(cell))
    variables = rnn.lazy_init(jax.random.key(0), xs)
    params = variables["params"]["cell"]["cell"]
    assert set(params) == {"w_ih", "w_hh", "b"}
    ys = jax.jit(rnn.apply)(variables, xs)
    same(ys, jrnn.unroll(cell, params, xs)[0])
    carry = jl.Cell(cell).initialize_carry(jax.random.key(0), (B, I))
    assert isinstance(carry, jrnn.LSTMState) and carry.h.shape == (B, H)


def test_linen_bad_input_raises():
    xs = data()
    with pytest.raises(TypeError, match="must be a jrnn.Cell or a jrnn.Stack"):
        jl.RNN(nn.LSTMCell(H)).lazy_init(jax.random.key(0), xs)
    with pytest.raises(ValueError, match="`reverse` applies to a single cell"):
        jl.RNN(jrnn.stack(jrnn.lstm(H)), reverse=True).lazy_init(jax.random.key(0), xs)
    module = jl.RNN(jrnn.lstm(H))
    variables = module.lazy_init(jax.random.key(0), xs)
    # Flax itself names the parameter whose shape the new input contradicts
    with pytest.raises(flax.errors.ScopeParamShapeError, match='"cell".*shape'):
        module.apply(variables, jnp.ones((B, T, I + 1)))


# --------------------------------------------------------------------------------------
# NNX


def test_nnx_rnn_is_exactly_unroll():
    cell = jrnn.lstm(H, proj_size=3)
    xs = data()
    module = jx.RNN(cell, I, reverse=True, rngs=nnx.Rngs(0))
    params = module.jrnn_params()
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(
        jnp.shape, cell.init(jax.random.key(0), I)
    )
    carry0 = jrnn.LSTMState(jnp.ones((B, 3)), jnp.ones((B, H)))
    carry, ys = module(xs, carry0, lengths=LENGTHS, return_carry=True)
    same((ys, carry), jrnn.unroll(cell, params, xs, carry=carry0, lengths=LENGTHS, reverse=True))
    # parameters are nnx.Param leaves of the module
    state = nnx.to_pure_dict(nnx.state(module, nnx.Param))
    same(state["params"], params)


def test_nnx_stack_dropout_eval_and_grad():
    net = jrnn.stack(jrnn.gru(H, reset_after=True), 2, dropout=0.5)
    xs = data()
    module = jx.RNN(net, I, rngs=nnx.Rngs(params=0, dropout=1))
    params = module.jrnn_params()
    assert len(params) == 2 and len(params[0]) == 1

    call = nnx.jit(lambda m, x, rngs: m(x, rngs=rngs))
    a, b = call(module, xs, None), call(module, xs, None)  # fresh masks from the stream
    assert not np.array_equal(a, b)
    key = jax.random.key(3)
    apply = jax.jit(lambda p, k: net.apply(p, xs, key=k)[0])
    same(call(module, xs, key), apply(params, key))  # an explicit key is used as is

    module.eval()
    assert module.deterministic
    loss = lambda m: (lambda ys: (jnp.sum(ys**2), ys))(m(xs, lengths=LENGTHS))
    (_, ys), grads = nnx.jit(nnx.value_and_grad(loss, has_aux=True))(module)
    pure = lambda p: (lambda ys: (jnp.sum(ys**2), ys))(net.apply(p, xs, lengths=LENGTHS)[0])
    (_, ys_ref), g_ref = jax.jit(jax.value_and_grad(pure, has_aux=True))(params)
    same(ys, ys_ref)
    jax.tree.map(
        np.testing.assert_array_equal,
        stack_params_from_dict(nnx.to_pure_dict(grads)["params"]),
        g_ref,
    )


def test_nnx_without_rng_for_dropout_raises():
    net = jrnn.stack(jrnn.lstm(H), 2, dropout=0.5)
    module = jx.RNN(net, I, rngs=nnx.Rngs(params=0))  # no dropout stream
    with pytest.raises(ValueError, match="no RNG was given"):
        module(data())
    jax.eval_shape(lambda: module(data(), deterministic=True))
    jax.eval_shape(lambda: module(data(), rngs=jax.random.key(1)))


def test_nnx_cell_in_nnx_rnn():
    cell = jrnn.simple_rnn(H, "relu")
    xs = data()
    module = jx.Cell(cell, I, rngs=nnx.Rngs(0))
    ys = nnx.RNN(module)(xs)
    same(ys, jrnn.unroll(cell, module.jrnn_params(), xs)[0])
    with pytest.raises(TypeError, match="must be a jrnn.Cell"):
        jx.Cell(jrnn.stack(cell), I, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="must be a jrnn.Cell or a jrnn.Stack"):
        jx.RNN("lstm", I, rngs=nnx.Rngs(0))


def _noisy_custom_cell() -> jrnn.Cell:
    """A custom cell with randomness of its own: Gaussian noise on the state when training."""
    base = jrnn.simple_rnn(H)

    def noise(key, params, xs_shape):
        dtype = params["w_hh"].dtype
        return None, 0.3 * jax.random.normal(key, (*xs_shape[:-1], H), dtype)

    def train_step(params, carry, x_t, seq_noise, step_noise_t):
        carry, _ = base.step(params, carry, x_t)
        h = carry.h + step_noise_t
        return jrnn.RNNState(h), h

    return jrnn.custom_cell(
        base.init, base.step, initial_carry=base.initial_carry, name="noisy_rnn", noise=noise,
        train_step=train_step,
    )  # fmt: skip


STOCHASTIC = {
    "zoneout": lambda: jrnn.zoneout(jrnn.lstm(H), 0.5),
    "recurrent_dropout": lambda: jrnn.recurrent_dropout(jrnn.gru(H), 0.5, input_rate=0.2),
    "custom_noise": _noisy_custom_cell,
    "stack_of_zoneout": lambda: jrnn.stack(jrnn.zoneout(jrnn.gru(H), 0.3), 2, bidirectional=True),
}


@pytest.mark.parametrize("name", list(STOCHASTIC))
def test_the_modules_train_a_stochastic_cell_and_evaluate_it_deterministically(name):
    """Training (``deterministic=False`` with a ``"dropout"`` RNG; NNX after ``.train()``)
    gives a stochastic cell a key: its outputs are those of ``unroll`` / ``Stack.apply`` with
    the key the stream gives, and differ from evaluation (``deterministic=True``; NNX after
    ``.eval()``), which equals the call without a key.  Undecided is an error."""
    target = STOCHASTIC[name]()
    xs = data()

    def pure(params, key):
        if isinstance(target, jrnn.Stack):
            return target.apply(params, xs, lengths=LENGTHS, key=key)[0]
        return jrnn.unroll(target, params, xs, lengths=LENGTHS, key=key)[0]

    layer = jl.RNN(target)
    variables = layer.init(jax.random.key(0), xs, deterministic=True)
    params = variables["params"]
    params = stack_params_from_dict(params["stack"]) if "stack" in params else params["cell"]
    key = jax.random.key(5)
    train = layer.apply(variables, xs, lengths=LENGTHS, deterministic=False, rngs={"dropout": key})
    evaluate = layer.apply(variables, xs, lengths=LENGTHS, deterministic=True)
    same(evaluate, pure(params, None))
    assert not np.allclose(train, evaluate)
    again = layer.apply(variables, xs, lengths=LENGTHS, deterministic=False, rngs={"dropout": key})
    same(train, again)  # the key comes from Flax's stream: reproducible
    with pytest.raises(ValueError, match="pass `deterministic`"):
        layer.apply(variables, xs, lengths=LENGTHS)

    module = jx.RNN(target, I, rngs=nnx.Rngs(params=0, dropout=1))
    module.train()
    first, second = module(xs, lengths=LENGTHS), module(xs, lengths=LENGTHS)
    assert not np.allclose(first, second)  # a fresh key from the stream every call
    module.eval()
    same(module(xs, lengths=LENGTHS), pure(module.jrnn_params(), None))
    assert not np.allclose(first, module(xs, lengths=LENGTHS))


def test_imports_work_without_torch_and_equinox():
    """``jrnn.interop`` and ``jrnn.nn`` import without the optional packages."""
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['equinox'] = None\n"
        "import jrnn.interop, jrnn.nn\n"
        "try:\n"
        "    jrnn.interop.from_torch(None)\n"
        "except ImportError as e:\n"
        "    print('ok', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok") and "jrnn[torch]" in out.stdout
