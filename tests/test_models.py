"""Tests of jrnn.models.sequence_model: the seed's Elman network end to end."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn.models import sequence_model


def _np_elman(params, ids, vocab):
    """NumPy float64: a = b + W h + U x, h = tanh(a), o = c + V h (row-vector form)."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    cell = p["rnn"]
    h = np.zeros(cell["w_hh"].shape[0])
    outs = []
    for t in ids:
        x = np.eye(vocab)[t]
        h = np.tanh(cell["b"] + h @ cell["w_hh"] + x @ cell["w_ih"])
        outs.append(p["b_o"] + h @ p["w_ho"])
    return np.stack(outs)


def test_elman_language_model_matches_the_seed_equations():
    vocab = 7
    model = sequence_model(
        jrnn.simple_rnn(5, param_dtype=jnp.float64),
        vocab,
        vocab_size=vocab,
        param_dtype=jnp.float64,
    )
    params = model.init(jax.random.key(0))
    params["b_o"] = jnp.linspace(-1.0, 1.0, vocab, dtype=jnp.float64)
    ids = jnp.array([[1, 4, 2, 6, 0, 3]], jnp.int32)
    o, (carry, _) = model.apply(params, ids)
    assert o.shape == (1, 6, vocab)
    np.testing.assert_allclose(
        np.asarray(o[0]), _np_elman(params, np.asarray(ids[0]), vocab), rtol=1e-12, atol=1e-12
    )
    # softmax(o) is a distribution over the next character
    probs = jax.nn.softmax(o, axis=-1)
    np.testing.assert_allclose(np.asarray(probs.sum(-1)), 1.0, rtol=1e-12)
    assert isinstance(carry, jrnn.RNNState)


@pytest.mark.parametrize("rnn", ["cell", "stack"])
def test_carry_continues_a_sequence(rnn):
    cell = jrnn.lstm(6)
    net = cell if rnn == "cell" else jrnn.stack(cell, num_layers=2)
    model = sequence_model(net, 11, vocab_size=11, embed_size=4)
    params = model.init(jax.random.key(1))
    ids = jax.random.randint(jax.random.key(2), (3, 10), 0, 11, dtype=jnp.int32)
    full, (c_full, _) = model.apply(params, ids)
    first, (c1, _) = model.apply(params, ids[:, :4])
    second, (c2, _) = model.apply(params, ids[:, 4:], carry=c1)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), full, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(c2), jax.tree.leaves(c_full), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    zeros = model.initial_carry(params, (3,))
    again, _ = model.apply(params, ids, carry=zeros)
    np.testing.assert_array_equal(again, full)


def test_one_hot_equals_an_identity_embedding():
    cell = jrnn.gru(4)
    one_hot = sequence_model(cell, 3, vocab_size=5)
    embedded = sequence_model(cell, 3, vocab_size=5, embed_size=5)
    p = one_hot.init(jax.random.key(0))
    q = dict(p, embed=jnp.eye(5, dtype=jnp.float32))
    ids = jnp.array([[0, 4, 1, 3]], jnp.int32)
    np.testing.assert_allclose(one_hot.apply(p, ids)[0], embedded.apply(q, ids)[0], rtol=1e-6)


def test_last_readout_respects_lengths():
    cell = jrnn.lstm(5)
    model = sequence_model(cell, 2, input_size=3, readout="last")
    every = sequence_model(cell, 2, input_size=3, readout="all")
    params = model.init(jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (4, 7, 3), jnp.float32)
    lengths = jnp.array([7, 3, 1, 0], jnp.int32)
    o, _ = model.apply(params, xs, lengths=lengths)
    assert o.shape == (4, 2)
    o_all, _ = every.apply(params, xs)
    # the last valid step of each row, computed on the row cut to its length
    for b, n in enumerate([7, 3, 1]):
        np.testing.assert_allclose(
            o[b],
            o_all[b, n - 1] if n == 7 else every.apply(params, xs[b : b + 1, :n])[0][0, -1],
            rtol=1e-5,
            atol=1e-6,
        )
    np.testing.assert_allclose(o[3], params["b_o"], atol=1e-7)  # empty sequence: o = c
    o_default, _ = model.apply(params, xs)
    np.testing.assert_allclose(o_default, o_all[:, -1], rtol=1e-6)


def test_last_readout_of_a_bidirectional_stack_reads_both_ends():
    net = jrnn.stack(jrnn.gru(3), num_layers=1, bidirectional=True)
    model = sequence_model(net, 1, input_size=2, readout="last")
    params = model.init(jax.random.key(0))
    assert params["w_ho"].shape == (6, 1)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 2), jnp.float32)
    lengths = jnp.array([5, 3], jnp.int32)
    o, aux = model.apply(params, xs, lengths=lengths)
    carries = aux.carry
    h_fwd, h_bwd = carries[0][0].h, carries[0][1].h  # finals of both directions
    want = jnp.concatenate([h_fwd, h_bwd], -1) @ params["w_ho"] + params["b_o"]
    np.testing.assert_allclose(o, want, rtol=1e-5, atol=1e-6)


def test_dropout_only_with_a_key():
    model = sequence_model(
        jrnn.stack(jrnn.lstm(8), 2, dropout=0.5), 4, vocab_size=4, embed_size=3, dropout=0.5
    )
    params = model.init(jax.random.key(0))
    ids = jnp.zeros((2, 6), jnp.int32)
    a, _ = model.apply(params, ids)
    b, _ = model.apply(params, ids)
    np.testing.assert_array_equal(a, b)
    c, _ = model.apply(params, ids, key=jax.random.key(3))
    d, _ = model.apply(params, ids, key=jax.random.key(3))
    np.testing.assert_array_equal(c, d)
    assert not np.allclose(a, c)


def test_float32_model_under_x64_keeps_float32():
    model = sequence_model(jrnn.lstm(4), 3, vocab_size=6, embed_size=2)
    params = model.init(jax.random.key(0))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    o, aux = model.apply(params, jnp.zeros((2, 3), jnp.int32))
    assert o.dtype == jnp.float32 and aux.carry.c.dtype == jnp.float32


def test_bad_arguments():
    cell = jrnn.lstm(4)
    with pytest.raises(ValueError, match="exactly one"):
        sequence_model(cell, 3)
    with pytest.raises(ValueError, match="exactly one"):
        sequence_model(cell, 3, input_size=2, vocab_size=4)
    with pytest.raises(ValueError, match="readout"):
        sequence_model(cell, 3, input_size=2, readout="first")
    with pytest.raises(ValueError, match="output_size"):
        sequence_model(cell, 0, input_size=2)
    with pytest.raises(ValueError, match="embed_size"):
        sequence_model(cell, 3, input_size=2, embed_size=4)
    model = sequence_model(cell, 3, vocab_size=4)
    params = model.init(jax.random.key(0))
    with pytest.raises(TypeError, match="`inputs` must be integer token ids"):
        model.apply(params, jnp.zeros((2, 3), jnp.float32))
    model = sequence_model(cell, 3, input_size=2)
    with pytest.raises(ValueError, match=r"\[..., T, 2\]"):
        model.apply(model.init(jax.random.key(0)), jnp.zeros((2, 3, 5), jnp.float32))


# --------------------------------------------------------------------------------------
# the one model contract: apply(params, inputs, ..., *, key=None) -> (outputs, ModelAux)


def _contract_cases():
    ids = jnp.array([[1, 2, 3, 0], [4, 1, 0, 0]], jnp.int32)
    tgt = jnp.array([[1, 5, 6], [1, 4, 0]], jnp.int32)
    lengths = jnp.array([4, 2], jnp.int32)
    lm = sequence_model(jrnn.lstm(6), 7, vocab_size=7, embed_size=3)
    yield "sequence_model", lm, lambda p, **kw: lm.apply(p, ids, lengths=lengths, **kw)
    s2v = jrnn.seq2vec(jrnn.gru(5), 3, vocab_size=7, pool="mean")
    yield "seq2vec", s2v, lambda p, **kw: s2v.apply(p, ids, lengths=lengths, **kw)
    tag = jrnn.tagger(jrnn.gru(5), 3, vocab_size=7, bidirectional=True)
    yield "tagger", tag, lambda p, **kw: tag.apply(p, ids, lengths=lengths, **kw)
    fa = jrnn.output_recurrent(4, 6, vocab_size=7)
    yield "output_recurrent(a)", fa, lambda p, **kw: fa.apply(p, ids, ids % 4, **kw)
    fb = jrnn.output_recurrent(4, 6, vocab_size=7, cell=jrnn.gru(6))
    yield "output_recurrent(b)", fb, lambda p, **kw: fb.apply(p, ids, feedback="free", **kw)
    s2s = jrnn.seq2seq(jrnn.lstm(6), jrnn.lstm(6), 7, 8, attention="dot")
    yield "seq2seq", s2s, lambda p, **kw: s2s.apply(p, ids, tgt, src_lengths=lengths, **kw)
    v2s = jrnn.vec2seq(jrnn.lstm(6), 3, 8)
    yield "vec2seq", v2s, lambda p, **kw: v2s.apply(p, jnp.ones((2, 3)), tgt, **kw)


@pytest.mark.parametrize("name", [c[0] for c in _contract_cases()])
def test_every_model_returns_outputs_and_a_model_aux(name):
    _, model, call = next(c for c in _contract_cases() if c[0] == name)
    params = model.init(jax.random.key(0))
    outputs, aux = call(params)
    assert isinstance(aux, jrnn.ModelAux)
    assert outputs.shape[0] == 2 and bool(jnp.all(jnp.isfinite(outputs)))
    if name == "output_recurrent(a)":
        assert aux.carry is None
    else:  # a carry with the batch axis first
        assert all(leaf.shape[0] == 2 for leaf in jax.tree.leaves(aux.carry))
    assert (aux.attention is not None) == (name == "seq2seq")
    if aux.attention is not None:  # weights over the valid source steps sum to one
        np.testing.assert_allclose(aux.attention.sum(-1), 1.0, rtol=1e-5)
        assert float(jnp.max(aux.attention[1, :, 2:])) == 0.0
    # the same call under jit over closed-over arrays (no concrete-value check on tracers)
    jitted_outputs, _ = jax.jit(lambda p: call(p))(params)
    np.testing.assert_allclose(jitted_outputs, outputs, rtol=1e-5, atol=1e-6)
    # key= is accepted by every model (dropout/scheduled sampling only where configured)
    keyed, _ = call(params, key=jax.random.key(1))
    assert keyed.shape == outputs.shape


@pytest.mark.parametrize("embed_size", [None, 3])
def test_out_of_range_tokens_raise_eagerly_and_embed_to_zero_under_jit(embed_size):
    model = sequence_model(jrnn.gru(4), 5, vocab_size=5, embed_size=embed_size)
    params = model.init(jax.random.key(0))
    bad = jnp.array([[1, 5, -1]], jnp.int32)
    with pytest.raises(ValueError, match=r"`inputs` holds token ids in \[-1, 5\]"):
        model.apply(params, bad)
    out, _ = jax.jit(lambda p, x: model.apply(p, x))(params, bad)
    assert bool(jnp.all(jnp.isfinite(out)))
    # an out-of-range id reads the zero vector: the same as a float model fed zeros there
    embed = params.get("embed", jnp.eye(5))
    xs = jnp.stack([embed[1], jnp.zeros_like(embed[1]), jnp.zeros_like(embed[1])])[None]
    floats = sequence_model(jrnn.gru(4), 5, input_size=xs.shape[-1])
    want, _ = floats.apply(params, xs)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-7)
    # checkify's index checks turn the out-of-range id into an error at the call site
    from jax.experimental import checkify

    checked = jax.jit(checkify.checkify(model.apply, errors=checkify.index_checks))
    err, _ = checked(params, bad)
    with pytest.raises(checkify.JaxRuntimeError, match="index 5 is out of bounds for axis 0"):
        err.throw()
    err, _ = checked(params, jnp.array([[1, 4, 0]], jnp.int32))
    assert err.get() is None
    # padding ids (-1 past `lengths`) contribute exact zeros, also to the gradients
    lengths = jnp.array([1])

    def loss(p, x):
        logits, _ = model.apply(p, x, lengths=lengths)
        return jnp.sum(logits[:, :1] ** 2)

    g_pad = jax.jit(jax.grad(loss))(params, bad)
    g_ok = jax.grad(loss)(params, jnp.array([[1, 0, 0]], jnp.int32))
    for a, b in zip(jax.tree.leaves(g_pad), jax.tree.leaves(g_ok), strict=True):
        assert bool(jnp.all(jnp.isfinite(a)))
        np.testing.assert_array_equal(a, b)


def test_model_dtype_computes_in_bfloat16_with_float32_params():
    model = sequence_model(
        jrnn.lstm(8, dtype=jnp.bfloat16), 6, vocab_size=6, embed_size=4, dtype=jnp.bfloat16
    )
    params = model.init(jax.random.key(0))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    out, _ = model.apply(params, jnp.zeros((2, 3), jnp.int32))
    assert out.dtype == jnp.bfloat16
    bf16 = jrnn.gru(4, dtype=jnp.bfloat16)
    s2s = jrnn.seq2seq(bf16, bf16, 6, 6, attention="general", dtype=jnp.bfloat16)
    p = s2s.init(jax.random.key(0))
    logits, aux = s2s.apply(p, jnp.ones((1, 3), jnp.int32), jnp.ones((1, 2), jnp.int32))
    assert logits.dtype == jnp.bfloat16 and aux.attention.dtype == jnp.bfloat16
