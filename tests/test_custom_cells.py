"""A cell of three functions gets everything jrnn does, with the built-in cells' semantics.

Every built-in cell is rebuilt with ``jrnn.custom_cell`` from its ``init``,
``initial_carry`` and ``step`` alone (no ``FastPath``, no ``affine``: the generic paths) and
run through every feature — ``unroll`` (lengths, reverse within lengths, resets,
``time_major``, ``return_carries``, both ``remat`` modes, Newton and quasi-Newton, ``jit``,
``vmap``, several batch axes), stacks (layers, bidirectional, dropout), the model factories,
zoneout and recurrent dropout, the diagnostics, the Flax linen and NNX modules,
data-parallel training — with outputs, final carries and gradients equal to the built-in
cell's (float64; equal to 1e-9 where the built-in takes another path to the same numbers:
its hoisted backward, its associative scan).  Hypothesis draws the data (lengths, episode
starts, inputs), derandomized; the programs are compiled once per cell.
"""

from __future__ import annotations

from functools import cache

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jrnn
from jrnn.diagnostics import jacobian_product_norms, state_grad_norms
from jrnn.nn import linen as jl
from jrnn.nn import nnx as jx
from tests.helpers import random_carry, random_params

B, T, I = 3, 6, 2
F64 = {"param_dtype": jnp.float64}
BUILTIN = {
    "rnn": jrnn.simple_rnn(3, **F64),
    "rnn_ln": jrnn.simple_rnn(3, layer_norm=True, **F64),
    "lstm": jrnn.lstm(3, **F64),
    "lstm_peep_proj": jrnn.lstm(3, peephole=True, proj_size=2, **F64),
    "lstm_ln": jrnn.lstm(3, layer_norm=True, **F64),
    "gru": jrnn.gru(3, **F64),
    "gru_reset_after": jrnn.gru(3, reset_after=True, **F64),
    "mingru": jrnn.mingru(3, **F64),
    "minlstm_log": jrnn.minlstm(3, log_space=True, **F64),
    "lru": jrnn.lru(3, state_size=2, **F64),
}
# where recurrent dropout means the same for a step that reads the masked h everywhere:
# cells that read h only through the recurrent matmul (the LRU has none at all)
H_ONLY_IN_MATMUL = {"lstm_peep_proj"}
SETTINGS = settings(
    max_examples=3, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def rebuilt(cell: jrnn.Cell) -> jrnn.Cell:
    """The same cell from its three functions only."""
    return jrnn.custom_cell(
        cell.init, cell.step, initial_carry=cell.initial_carry, name=f"custom_{cell.name}"
    )


def _params(kind):
    return random_params(BUILTIN[kind], jax.random.key(0), I, scale=0.4)


def _sum_sq(tree) -> jax.Array:
    return sum(jnp.sum(jnp.square(a)) for a in jax.tree.leaves(tree))


def stack_of(cell: jrnn.Cell) -> jrnn.Stack:
    return jrnn.stack(cell, num_layers=2, bidirectional=True, dropout=0.3)


def everything(cell: jrnn.Cell, kind: str):
    """Every feature at once: ``(params, stack params, xs, lengths, resets, carry, key) ->
    (gradients, results)``."""
    rate = 0.4 if kind in H_ONLY_IN_MATMUL else 0.0

    def forward(p, sp, xs, lengths, resets, carry, key):
        out = {}
        u = lambda **kw: jrnn.unroll(cell, p, xs, carry=carry, **kw)
        out["lengths"] = u(lengths=lengths)
        out["reverse"] = u(lengths=lengths, reverse=True)
        out["resets"] = u(lengths=lengths, resets=resets, reverse=True)
        tm = jnp.moveaxis(xs, 1, 0)
        out["time_major"] = jrnn.unroll(
            cell, p, tm, carry=carry, time_major=True, return_carries=True, lengths=lengths
        )
        out["newton"] = u(lengths=lengths, method="newton")
        out["quasi"] = u(lengths=lengths, resets=resets, method="quasi-newton", reverse=True)
        one = lambda x, c, n: jrnn.unroll(cell, p, x, carry=c, lengths=n)
        out["vmap"] = jax.vmap(one)(xs, carry, lengths)
        out["batch_axes"] = jrnn.unroll(cell, p, xs.reshape(1, B, T, I), lengths=lengths[None])
        out["stack"] = stack_of(cell).apply(sp, xs, lengths=lengths, resets=resets, key=key)
        z = jrnn.zoneout(cell, 0.3)
        out["zoneout"] = (  # evaluation (the expectation) and training (a key)
            jrnn.unroll(z, p, xs, lengths=lengths),
            jrnn.unroll(z, p, xs, lengths=lengths, key=key),
        )
        rd = jrnn.recurrent_dropout(cell, rate, input_rate=0.2)
        out["recurrent_dropout"] = jrnn.unroll(rd, p, xs, lengths=lengths, key=key)
        out["diagnostics"] = (
            state_grad_norms(cell, p, xs, lambda ys: ys[:, -1].sum(), lengths=lengths),
            jacobian_product_norms(cell, p, xs, lengths=lengths),
        )
        return out

    def backward(p, xs, lengths, resets, carry, key):
        """Gradients where the backward pass takes a path of its own: remat, Newton's
        implicit function theorem, the regularisers' masks."""

        def loss(p, xs, carry):
            u = lambda **kw: jrnn.unroll(cell, p, xs, carry=carry, **kw)
            return _sum_sq(
                (
                    u(lengths=lengths, remat="step"),
                    u(resets=resets, remat="sqrt", reverse=True),
                    u(lengths=lengths, method="newton"),
                    u(lengths=lengths, resets=resets, method="quasi-newton", reverse=True),
                    jrnn.unroll(jrnn.zoneout(cell, 0.3), p, xs, lengths=lengths, key=key),
                )
            )

        return jax.grad(loss, argnums=(0, 1, 2))(p, xs, carry)

    def both(p, sp, xs, lengths, resets, carry, key):
        return backward(p, xs, lengths, resets, carry, key), forward(
            p, sp, xs, lengths, resets, carry, key
        )

    return jax.jit(both)


def core(cell: jrnn.Cell, kind: str):
    """The core features alone (lengths, reverse within lengths, resets) and their
    gradients: one small program, for every built-in cell."""
    del kind

    def loss(p, xs, lengths, resets, carry):
        out = jrnn.unroll(cell, p, xs, carry=carry, lengths=lengths, resets=resets, reverse=True)
        return _sum_sq(out), {"core": out}

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 4), has_aux=True))
    return lambda p, sp, xs, lengths, resets, carry, key: grad(p, xs, lengths, resets, carry)


# every feature for one cell of each kind of carry and path: an LSTMState with a projected h
# and peepholes, and the LRU (a complex state, an associative scan for the built-in); the
# rest get the core features
EVERY_FEATURE = ("lstm_peep_proj", "lru")


@cache
def compiled(kind: str, custom: bool):
    cell = rebuilt(BUILTIN[kind]) if custom else BUILTIN[kind]
    return (everything if kind in EVERY_FEATURE else core)(cell, kind)


@st.composite
def data(draw):
    lengths = np.array(draw(st.lists(st.integers(0, T), min_size=B, max_size=B)), np.int32)
    starts = draw(st.lists(st.booleans(), min_size=B * T, max_size=B * T))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.normal(size=(B, T, I)))
    return xs, jnp.asarray(lengths), jnp.asarray(np.reshape(starts, (B, T))), seed


def _close(a, b, where):
    assert jax.tree.structure(a) == jax.tree.structure(b), where
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(
            np.asarray(x), np.asarray(y), rtol=1e-9, atol=1e-11, err_msg=where
        )


@pytest.mark.parametrize("kind", list(BUILTIN))
@SETTINGS
@given(data())
def test_a_rebuilt_cell_equals_the_built_in(kind, sample):
    """Outputs, final carries and gradients: every feature for :data:`EVERY_FEATURE`, the
    core ones for every other built-in cell."""
    xs, lengths, resets, seed = sample
    params = _params(kind)
    carry = random_carry(BUILTIN[kind], params, jax.random.key(seed % 1000), (B,))
    key = jax.random.key(seed % 997)
    sp = stack_of(BUILTIN[kind]).init(jax.random.key(2), I)
    grads, out = compiled(kind, False)(params, sp, xs, lengths, resets, carry, key)
    grads_c, out_c = compiled(kind, True)(params, sp, xs, lengths, resets, carry, key)
    for name in out:
        _close(out_c[name], out[name], f"{kind}: {name}")
    for what, g, gc in zip(("params", "xs", "carry"), grads, grads_c, strict=True):
        _close(gc, g, f"{kind}: gradient with respect to {what}")


@pytest.mark.parametrize("kind", EVERY_FEATURE)
def test_models_wrappers_and_data_parallel_training_equal_the_built_in(kind):
    """Every model factory, the Flax linen and NNX modules (training: the key reaches the
    zoneout cell) and one data-parallel training step over 2 devices."""
    builtin, custom = BUILTIN[kind], rebuilt(BUILTIN[kind])
    V = 5
    tokens = jax.random.randint(jax.random.key(1), (4, T), 3, V)
    lengths = jnp.array([T, 3, 0, 5])
    xs = jax.random.normal(jax.random.key(2), (4, T, I))
    key = jax.random.key(3)

    def models(cell):
        kw = {"param_dtype": jnp.float64}
        out = {}
        for name, model in {
            "sequence_model": jrnn.sequence_model(cell, V, vocab_size=V, embed_size=3, **kw),
            "seq2vec": jrnn.seq2vec(cell, 2, input_size=I, pool="mean", **kw),
            "tagger": jrnn.tagger(cell, V, vocab_size=V, bidirectional=True, dropout=0.2, **kw),
        }.items():
            inputs = xs if name == "seq2vec" else tokens
            out[name] = model.apply(model.init(jax.random.key(4)), inputs, lengths=lengths, key=key)
        s2s = jrnn.seq2seq(cell, cell, V, V, embed_size=4, attention="bahdanau", **kw)
        out["seq2seq"] = s2s.apply(s2s.init(jax.random.key(5)), tokens, tokens, src_lengths=lengths)
        gen = jrnn.vec2seq(cell, I, V, embed_size=4, **kw)
        out["vec2seq"] = gen.apply(gen.init(jax.random.key(6)), xs[:, 0], tokens)
        z = jrnn.zoneout(cell, 0.3)
        layer = jl.RNN(z, deterministic=False)
        variables = layer.init(jax.random.key(7), xs)
        out["linen"] = layer.apply(variables, xs, lengths=lengths, rngs={"dropout": key})
        module = jx.RNN(z, I, rngs=nnx.Rngs(params=0, dropout=1))
        out["nnx"] = module(xs, lengths=lengths)
        return out

    a, b = models(builtin), models(custom)
    for name in a:
        _close(b[name], a[name], f"{kind}: {name}")

    def train_step(cell):
        model = jrnn.sequence_model(cell, V, vocab_size=V, embed_size=3, param_dtype=jnp.float64)
        opt = optax.sgd(0.1)
        mesh = jrnn.sharding.data_mesh(2)

        def loss(p, batch, k):
            inputs, n = batch
            o, _ = model.apply(p, inputs, lengths=n, key=k)
            return jnp.mean(o**2), {}

        state = jrnn.init_train_state(model.init(jax.random.key(8)), opt, jax.random.key(9))
        step = jrnn.make_train_step(loss, opt, mesh=mesh)
        state, metrics = step(state, (tokens, lengths))
        return state.params, metrics["loss"]

    _close(train_step(custom), train_step(builtin), f"{kind}: data-parallel step")


def test_a_rebuilt_cells_checks_name_the_argument():
    """The checks come from ``jax.eval_shape`` of the user's functions: a wrong carry, wrong
    params, a float batch shape are named errors, never a raw JAX trace."""
    cell = rebuilt(BUILTIN["lstm"])
    params = _params("lstm")
    with pytest.raises(TypeError, match=r"`carry` must be an LSTMState\(h, c\)"):
        cell.step(params, jrnn.RNNState(jnp.zeros((2, 3))), jnp.ones((2, I)))
    with pytest.raises(ValueError, match=r"`carry.c` must have shape \[2, 3\]"):
        cell.step(params, jrnn.LSTMState(jnp.zeros((2, 3)), jnp.zeros((2, 4))), jnp.ones((2, I)))
    with pytest.raises(ValueError, match=r"`xs` must have shape .* with input_size=2"):
        jrnn.unroll(cell, params, jnp.ones((2, T, I + 1)))
    with pytest.raises(TypeError, match="`batch_shape` must be a tuple of non-negative ints"):
        cell.initial_carry(params, batch_shape=(1.5, 4))
    with pytest.raises(ValueError, match="needs the cell's FastPath"):
        jrnn.unroll(cell, params, jnp.ones((2, T, I)), hoist=True)


def _user_lstm(hidden_size: int) -> jrnn.Cell:
    """An LSTM written by a user with its FastPath (the guide's), float64."""
    H = hidden_size

    def project(p, x):
        return x @ p["w_ih"] + p["b"]

    def gates(p, carry, xa, ha):
        i, f, g, o = jnp.split(xa + ha, 4, axis=-1)
        c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return jrnn.LSTMState(h, c), h

    def step(p, carry, x):
        return gates(p, carry, project(p, x), carry.h @ p["w_hh"])

    def initial_carry(p, batch_shape=()):
        zeros = jnp.zeros((*batch_shape, H), p["w_hh"].dtype)
        return jrnn.LSTMState(zeros, zeros)

    fast = jrnn.FastPath(project, lambda p: p["w_hh"], gates)
    init = jrnn.lstm(H, param_dtype=jnp.float64).init
    return jrnn.custom_cell(init, step, initial_carry=initial_carry, fast=fast, name="user_lstm")


@pytest.mark.parametrize("how", [dict(hoist=True, vjp="hoisted"), dict(hoist=False, vjp="hoisted"),
                                 dict(hoist=True, vjp="autodiff")])  # fmt: skip
def test_a_custom_fast_path_runs_the_built_in_machinery_to_the_same_numbers(how):
    """A user's LSTM with its ``FastPath`` through the hoisted projection and the
    hand-structured backward (lengths, resets, reverse) equals ``jrnn.lstm`` in float64."""
    builtin, user = BUILTIN["lstm"], _user_lstm(3)
    params = _params("lstm")
    xs = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float64)
    lengths = jnp.array([T, 4, 0])
    resets = jnp.zeros((B, T), bool).at[0, 2].set(True)

    def loss(cell, p, x):
        ys, c = jrnn.unroll(cell, p, x, lengths=lengths, resets=resets, reverse=True, **how)
        return _sum_sq((ys, c)), (ys, c)

    for_user = jax.grad(lambda p, x: loss(user, p, x), argnums=(0, 1), has_aux=True)(params, xs)
    for_builtin = jax.grad(lambda p, x: loss(builtin, p, x), argnums=(0, 1), has_aux=True)(
        params, xs
    )
    _close(for_user, for_builtin, f"user LSTM {how}")
