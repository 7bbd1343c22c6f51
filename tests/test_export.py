"""``jax.export`` with symbolic batch and time dimensions: every cell kind, a bidirectional
stack and every model factory trace with ``symbolic_shape("b, t")``, forward and gradient,
with default options; the artifact serializes, deserializes and, run at two concrete
shapes, gives what the function gives when called directly.

The gradient is ``jax.grad`` through a forward exported with ``serialize(vjp_order=1)``
(the VJP is then traced with the symbolic shapes too), and, for a training stack with
dropout, the gradient function itself exported.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

import jrnn

I, H, V = 3, 4, 7
SHAPES = [(2, 5), (3, 1)]  # two concrete (batch, time): sizes the export never saw
CELLS = {
    "rnn": jrnn.simple_rnn(H),
    "rnn_ln": jrnn.simple_rnn(H, layer_norm=True),
    "lstm": jrnn.lstm(H),
    "lstm_peep_proj": jrnn.lstm(H, peephole=True, proj_size=2),
    "lstm_ln": jrnn.lstm(H, layer_norm=True),
    "gru": jrnn.gru(H),
    "gru_reset_after": jrnn.gru(H, reset_after=True),
    "mingru": jrnn.mingru(H),
    "minlstm_log": jrnn.minlstm(H, log_space=True),
    "lru": jrnn.lru(H, state_size=3),
    "zoneout": jrnn.zoneout(jrnn.lstm(H), 0.3),
    "recurrent_dropout": jrnn.recurrent_dropout(jrnn.gru(H), 0.3),
    "custom": jrnn.custom_cell(
        jrnn.lstm(H).init, jrnn.lstm(H).step, initial_carry=jrnn.lstm(H).initial_carry
    ),
}
OPTIONS = {"lstm": {}, "lstm_hoisted_vjp": {"hoist": True, "vjp": "hoisted"}}  # and defaults


def _spec(shape_str: str, dtype=jnp.float32, **dims):
    """A ``ShapeDtypeStruct`` whose shape is given as ``"b, t, 3"``, symbols shared by
    ``scope`` (one per exported function)."""
    return jax.ShapeDtypeStruct(export.symbolic_shape(shape_str, **dims), dtype)


def _roundtrip(fn, *specs, vjp_order: int = 0) -> export.Exported:
    """``fn`` exported with symbolic shapes, serialized and read back."""
    exported = export.export(jax.jit(fn))(*specs)
    return export.deserialize(exported.serialize(vjp_order=vjp_order))


def _close(got, want, rtol=1e-5, atol=1e-6):
    got_leaves, want_leaves = jax.tree.leaves(got), jax.tree.leaves(want)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(got_leaves, want_leaves, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=atol)


def _inputs(batch: int, steps: int, seed: int = 0):
    kx, kl = jax.random.split(jax.random.key(seed))
    xs = jax.random.normal(kx, (batch, steps, I), jnp.float32)
    lengths = jax.random.randint(kl, (batch,), 0, steps + 1).astype(jnp.int32)
    return xs, lengths


@pytest.mark.parametrize("kind", [*CELLS, "lstm_hoisted_vjp"])
def test_every_cell_exports_forward_and_gradient_with_symbolic_batch_and_time(kind):
    cell, options = CELLS.get(kind, CELLS["lstm"]), OPTIONS.get(kind, {})
    params = cell.init(jax.random.key(1), I)
    scope = export.SymbolicScope()
    xs_spec = _spec("b, t, 3", scope=scope)
    len_spec = _spec("b", jnp.int32, scope=scope)

    def forward(p, xs, lengths):
        return jrnn.unroll(cell, p, xs, lengths=lengths, reverse=True, **options)

    fwd = _roundtrip(forward, params, xs_spec, len_spec, vjp_order=1)
    through = jax.grad(lambda p, xs, n: _sum_of_squares(fwd.call(p, xs, n)), argnums=(0, 1))
    direct = jax.grad(lambda p, xs, n: _sum_of_squares(forward(p, xs, n)), argnums=(0, 1))
    for batch, steps in SHAPES:
        xs, lengths = _inputs(batch, steps)
        _close(fwd.call(params, xs, lengths), jax.jit(forward)(params, xs, lengths))
        _close(through(params, xs, lengths), direct(params, xs, lengths))


def _sum_of_squares(tree) -> jax.Array:
    return sum(jnp.sum(a**2) for a in jax.tree.leaves(tree))


def test_a_bidirectional_stack_exports_with_symbolic_batch_and_time():
    stack = jrnn.stack(jrnn.lstm(H), num_layers=2, bidirectional=True, dropout=0.2)
    params = stack.init(jax.random.key(2), I)
    scope = export.SymbolicScope()
    specs = (_spec("b, t, 3", scope=scope), _spec("b", jnp.int32, scope=scope))

    def forward(p, xs, lengths):
        return stack.apply(p, xs, lengths=lengths)

    def grad(p, xs, lengths):  # training: a dropout key inside the exported function
        train = lambda p: _sum_of_squares(
            stack.apply(p, xs, lengths=lengths, key=jax.random.key(3))
        )
        return jax.grad(train)(p)

    fwd = _roundtrip(forward, params, *specs)
    bwd = _roundtrip(grad, params, *specs)
    for batch, steps in SHAPES:
        xs, lengths = _inputs(batch, steps, seed=1)
        _close(fwd.call(params, xs, lengths), jax.jit(forward)(params, xs, lengths))
        _close(bwd.call(params, xs, lengths), jax.jit(grad)(params, xs, lengths))


def _tokens(batch: int, steps: int, seed: int):
    return jax.random.randint(jax.random.key(seed), (batch, steps), 3, V).astype(jnp.int32)


# name -> (model, apply(params, batch-and-time inputs...) , the inputs' specs, inputs(b, t))
MODELS = {
    "sequence_model": (
        jrnn.sequence_model(jrnn.gru(H), V, vocab_size=V, embed_size=5),
        lambda m, p, x, n: m.apply(p, x, lengths=n),
        "tokens",
    ),
    "sequence_model_stack": (
        jrnn.sequence_model(
            jrnn.stack(jrnn.lstm(H), num_layers=2, bidirectional=True), 2, input_size=I
        ),
        lambda m, p, x, n: m.apply(p, x, lengths=n),
        "floats",
    ),
    "seq2vec": (
        jrnn.seq2vec(jrnn.lstm(H), 3, vocab_size=V, pool="mean"),
        lambda m, p, x, n: m.apply(p, x, lengths=n),
        "tokens",
    ),
    "tagger": (
        jrnn.tagger(jrnn.gru(H), 3, vocab_size=V, bidirectional=True),
        lambda m, p, x, n: m.apply(p, x, lengths=n),
        "tokens",
    ),
    "seq2seq_attention": (
        jrnn.seq2seq(jrnn.lstm(H), jrnn.lstm(H), V, V, embed_size=5, attention="bahdanau"),
        lambda m, p, x, n: m.apply(p, x, x, src_lengths=n),
        "tokens",
    ),
    "seq2seq": (
        jrnn.seq2seq(jrnn.gru(H), jrnn.gru(H), V, V, embed_size=5),
        lambda m, p, x, n: m.apply(p, x, x, src_lengths=n),
        "tokens",
    ),
    "vec2seq": (
        jrnn.vec2seq(jrnn.lstm(H), I, V),
        lambda m, p, x, n: m.apply(p, jnp.ones((x.shape[0], I)) * n[:, None].astype(float), x),
        "tokens",
    ),
    "output_recurrent": (
        jrnn.output_recurrent(3, H, vocab_size=V),
        lambda m, p, x, n: m.apply(p, x, jnp.minimum(x, 2)),
        "tokens",
    ),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_factory_exports_with_symbolic_batch_and_time(name):
    model, apply, kind = MODELS[name]
    params = model.init(jax.random.key(4))
    scope = export.SymbolicScope()
    if kind == "tokens":
        x_spec = _spec("b, t", jnp.int32, scope=scope)
    else:
        x_spec = _spec("b, t, 3", scope=scope)
    specs = (x_spec, _spec("b", jnp.int32, scope=scope))
    forward = lambda p, x, n: apply(model, p, x, n)
    fwd = _roundtrip(forward, params, *specs, vjp_order=1)
    through = jax.grad(lambda p, x, n: _sum_of_squares(fwd.call(p, x, n)[0]))
    direct = jax.grad(lambda p, x, n: _sum_of_squares(forward(p, x, n)[0]))
    for batch, steps in SHAPES:
        floats, lengths = _inputs(batch, steps, seed=2)
        x = _tokens(batch, steps, seed=3) if kind == "tokens" else floats
        _close(fwd.call(params, x, lengths), jax.jit(forward)(params, x, lengths))
        _close(through(params, x, lengths), direct(params, x, lengths))


def test_jrnn_containers_serialize_and_a_users_carry_can_be_registered():
    """``LSTMState``/``RNNState``/``ModelAux`` in the exported function's outputs (above);
    here a carry type of the user's own, registered with :func:`jrnn.base.exportable`."""
    from typing import NamedTuple

    from jrnn.base import exportable

    @exportable
    class Pair(NamedTuple):
        h: jax.Array
        n: jax.Array

    def init(key, input_size):
        return {"w": jax.random.normal(key, (input_size, H)) * 0.3}

    def step(p, carry, x):
        h = jnp.tanh(x @ p["w"] + carry.h)
        return Pair(h, carry.n + 1.0), h

    def initial_carry(p, batch_shape=()):
        return Pair(jnp.zeros((*batch_shape, H)), jnp.zeros((*batch_shape, H)))

    cell = jrnn.custom_cell(init, step, initial_carry=initial_carry, hidden_size=H)
    params = cell.init(jax.random.key(5), I)
    forward = lambda p, xs: jrnn.unroll(cell, p, xs)
    back = _roundtrip(forward, params, _spec("b, t, 3"))
    xs, _ = _inputs(2, 5)
    got = back.call(params, xs)
    assert isinstance(got[1], Pair)
    _close(got, forward(params, xs))


@pytest.mark.parametrize("decoder", ["greedy", "beam", "sample"])
def test_the_decoders_export_with_symbolic_batch_and_source_time(decoder):
    """The output length ``max_len`` is the caller's number; the batch and the source
    length are symbolic."""
    model = jrnn.seq2seq(jrnn.gru(H), jrnn.gru(H), V, V, embed_size=5, attention="luong")
    params = model.init(jax.random.key(6))
    scope = export.SymbolicScope()
    specs = (_spec("b, t", jnp.int32, scope=scope), _spec("b", jnp.int32, scope=scope))
    run = {
        "greedy": lambda p, x, n: jrnn.greedy_decode(model, p, x, n, max_len=6),
        "beam": lambda p, x, n: jrnn.beam_search(model, p, x, n, beam_size=3, max_len=6),
        "sample": lambda p, x, n: jrnn.sample_decode(
            model, p, x, n, key=jax.random.key(7), max_len=6, temperature=0.7
        ),
    }[decoder]
    back = _roundtrip(run, params, *specs)
    for batch, steps in SHAPES:
        x = _tokens(batch, steps, seed=8)
        lengths = jnp.full((batch,), steps, jnp.int32)
        _close(back.call(params, x, lengths), jax.jit(run)(params, x, lengths))
