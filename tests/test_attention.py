"""Tests of jrnn.attention: the three scores against NumPy, masking, and the attentional
decoder's use of the source mask; the context, weights and gradients of each score against
the NumPy float64 oracle ``jrnn.reference.attend`` and its hand-derived backward
``attend_backward`` (itself checked against finite differences in tests/test_reference.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn import reference as ref
from jrnn.attention import attention, masked_softmax
from jrnn.models import seq2seq


def _np_softmax(e, mask):
    e = np.where(mask, e, -np.inf)
    e = np.exp(e - e.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("kind", ["additive", "dot", "general"])
def test_scores_weights_and_context_match_numpy(kind):
    q_size = e_size = 6
    att = attention(kind, param_dtype=jnp.float64)
    params = att.init(jax.random.key(0), q_size, e_size)
    k1, k2 = jax.random.split(jax.random.key(1))
    values = jax.random.normal(k1, (3, 5, e_size), jnp.float64)
    query = jax.random.normal(k2, (3, q_size), jnp.float64)
    mask = jnp.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], bool)
    memory = att.prepare(params, values, mask)
    context, weights = att.apply(params, query, memory)

    v, q, m = np.asarray(values), np.asarray(query), np.asarray(mask)
    p = jax.tree.map(np.asarray, params)
    if kind == "additive":  # Bahdanau: e = v . tanh(q W_q + k W_k + b)
        e = np.tanh((q @ p["w_q"])[:, None, :] + v @ p["w_k"] + p["b"]) @ p["v"]
    elif kind == "dot":  # Luong dot: e = q . k
        e = np.einsum("bq,bsq->bs", q, v)
    else:  # Luong general: e = q W_a k
        e = np.einsum("bq,qe,bse->bs", q, p["w_a"], v)
    w = _np_softmax(e, m)
    # scores at valid steps (padded states are zeroed by prepare, their scores never read)
    got_e = np.asarray(att.scores(params, query, memory))
    np.testing.assert_allclose(got_e[m], e[m], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(weights, w, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(context, np.einsum("bs,bse->be", w, v), rtol=1e-12, atol=1e-12)
    assert np.all(np.asarray(weights)[~m] == 0.0)


@pytest.mark.parametrize("kind", ["additive", "dot", "general"])
def test_context_weights_and_gradients_match_the_numpy_oracle(kind):
    """Forward and every gradient (params, query, values) against the hand-derived NumPy
    backward, with a full row, a row with two valid steps and a row with none, and
    padded values that hold garbage (never read: zero gradient there)."""
    rng = np.random.default_rng(0)
    batch, steps, q_size = 3, 4, 3
    e_size = q_size if kind == "dot" else 2
    att = attention(kind, 2 if kind == "additive" else None, param_dtype=jnp.float64)
    params = att.init(jax.random.key(0), q_size, e_size)
    params = {k: jnp.asarray(rng.standard_normal(v.shape)) for k, v in params.items()}
    query = rng.standard_normal((batch, q_size))
    mask = np.arange(steps) < np.array([[steps], [2], [0]])
    values = np.where(mask[..., None], rng.standard_normal((batch, steps, e_size)), 50.0)
    r_c, r_w = rng.standard_normal((batch, e_size)), rng.standard_normal((batch, steps))

    def loss(params, query, values):
        context, weights = att.apply(params, query, att.prepare(params, values, jnp.asarray(mask)))
        return jnp.sum(context * r_c) + jnp.sum(weights * r_w), (context, weights)

    grads, (context, weights) = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))(
        params, jnp.asarray(query), jnp.asarray(values)
    )
    numpy_params = jax.tree.map(np.asarray, params)
    want_c, want_w = ref.attend(kind, numpy_params, query, values, mask)
    np.testing.assert_allclose(np.asarray(context), want_c, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(np.asarray(weights), want_w, rtol=1e-13, atol=1e-14)
    dparams, dquery, dvalues = ref.attend_backward(
        kind, numpy_params, query, values, mask, r_c, r_w
    )
    assert set(grads[0]) == set(dparams)
    for name in dparams:
        np.testing.assert_allclose(
            np.asarray(grads[0][name]), dparams[name], rtol=1e-12, atol=1e-13
        )
    np.testing.assert_allclose(np.asarray(grads[1]), dquery, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(np.asarray(grads[2]), dvalues, rtol=1e-12, atol=1e-13)
    assert np.all(np.asarray(grads[2])[~mask] == 0.0) and np.all(np.asarray(weights)[2] == 0.0)


def test_masked_softmax_ignores_padding_even_nan_and_handles_empty_rows():
    scores = jnp.array([[1.0, 2.0, jnp.nan], [0.5, jnp.inf, 3.0], [1.0, 1.0, 1.0]], jnp.float32)
    mask = jnp.array([[1, 1, 0], [1, 0, 1], [0, 0, 0]], bool)
    w = masked_softmax(scores, mask)
    np.testing.assert_allclose(w.sum(-1), [1.0, 1.0, 0.0], rtol=1e-6)
    assert np.all(np.asarray(w)[~np.asarray(mask)] == 0.0)
    assert np.all(np.isfinite(w))
    grad = jax.grad(lambda s: jnp.sum(masked_softmax(s, mask) * jnp.arange(3, dtype=jnp.float32)))(
        scores
    )
    assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[~np.asarray(mask)] == 0.0)


def _attention_model(kind, hidden=8):
    enc = jrnn.stack(jrnn.gru(hidden // 2, param_dtype=jnp.float64), bidirectional=True)
    dec = jrnn.gru(hidden, param_dtype=jnp.float64)
    return seq2seq(enc, dec, 9, 10, embed_size=4, attention=kind, param_dtype=jnp.float64)


@pytest.mark.parametrize("kind", ["additive", "dot", "general"])
def test_decoder_attends_only_to_valid_source_steps(kind):
    model = _attention_model(kind)
    params = model.init(jax.random.key(0))
    src = jnp.array([[3, 4, 5, 6, 7], [8, 7, 6, 0, 0]], jnp.int32)
    lengths = jnp.array([5, 3], jnp.int32)
    tgt_in = jnp.array([[1, 3, 4, 5], [1, 6, 0, 0]], jnp.int32)
    logits, aux = model.apply(params, src, tgt_in, src_lengths=lengths)
    weights = aux.attention
    assert weights.shape == (2, 4, 5)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-12)
    assert np.all(np.asarray(weights[1, :, 3:]) == 0.0)
    # padded source steps are invisible: other padding tokens, or a longer padded source,
    # give exactly the same outputs
    src2 = src.at[1, 3:].set(5)
    logits2, _ = model.apply(params, src2, tgt_in, src_lengths=lengths)
    np.testing.assert_allclose(logits2, logits, rtol=1e-12, atol=1e-12)
    wider = jnp.concatenate([src, jnp.full((2, 3), 4, jnp.int32)], axis=1)
    logits3, aux3 = model.apply(params, wider, tgt_in, src_lengths=lengths)
    w3 = aux3.attention
    np.testing.assert_allclose(logits3, logits, rtol=1e-10, atol=1e-12)
    assert np.all(np.asarray(w3[:, :, 5:]) == 0.0)


def test_bad_scores_and_size_mismatches():
    with pytest.raises(ValueError, match="unknown score"):
        attention("multiplicative")
    with pytest.raises(ValueError, match="query_size == value_size"):
        attention("dot").init(jax.random.key(0), 4, 6)
    with pytest.raises(ValueError, match="additive score only"):
        attention("general", size=8)
    att = attention("general")
    params = att.init(jax.random.key(0), 4, 6)
    with pytest.raises(ValueError, match=r"\[..., S, 6\]"):
        att.prepare(params, jnp.zeros((2, 3, 5), jnp.float32))
    with pytest.raises(ValueError, match="mask"):
        att.prepare(params, jnp.zeros((2, 3, 6), jnp.float32), jnp.ones((2, 4), bool))
    # the aliases name the papers
    assert attention("bahdanau").kind == "additive" and attention("luong").kind == "general"


@pytest.mark.parametrize("kind", ["additive", "dot", "general"])
@pytest.mark.parametrize("poison", [np.nan, np.inf, -np.inf])
def test_padded_memory_holding_nan_or_inf_is_invisible(kind, poison):
    """Padded encoder states may hold anything: weights there are exactly 0, and the context
    and every gradient equal those of a memory with zeros there (double where)."""
    att = attention(kind)
    params = att.init(jax.random.key(0), 4, 4)
    k1, k2 = jax.random.split(jax.random.key(1))
    clean = jax.random.normal(k1, (2, 5, 4), jnp.float32)
    query = jax.random.normal(k2, (2, 4), jnp.float32)
    mask = jnp.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], bool)
    dirty = jnp.where(mask[..., None], clean, jnp.float32(poison))

    def run(params, values, query):
        context, weights = att.apply(params, query, att.prepare(params, values, mask))
        return jnp.sum(context * jnp.arange(4, dtype=jnp.float32)), (context, weights)

    grad = jax.grad(run, argnums=(0, 1, 2), has_aux=True)
    (g_clean, (c_clean, w_clean)) = grad(params, clean, query)
    (g_dirty, (c_dirty, w_dirty)) = grad(params, dirty, query)
    assert np.all(np.asarray(w_dirty)[~np.asarray(mask)] == 0.0)
    np.testing.assert_array_equal(w_dirty, w_clean)
    np.testing.assert_array_equal(c_dirty, c_clean)
    for a, b in zip(jax.tree.leaves(g_dirty), jax.tree.leaves(g_clean), strict=True):
        assert np.all(np.isfinite(np.asarray(a)))
        np.testing.assert_array_equal(a, b)
    assert np.all(np.asarray(g_dirty[1])[~np.asarray(mask)] == 0.0)


def test_shape_and_type_errors_name_the_argument():
    att = attention("additive")
    params = att.init(jax.random.key(0), 3, 4)
    memory = att.prepare(params, jnp.zeros((2, 5, 4), jnp.float32))
    with pytest.raises(ValueError, match=r"`query` must have shape \[..., 3\]"):
        att.apply(params, jnp.zeros((2, 7), jnp.float32), memory)
    with pytest.raises(ValueError, match=r"`query`.*batch shape \[2\]"):
        att.apply(params, jnp.zeros((3, 3), jnp.float32), memory)
    with pytest.raises(TypeError, match="`memory`"):
        att.apply(params, jnp.zeros((2, 3), jnp.float32), jnp.zeros((2, 5, 4)))
    with pytest.raises(TypeError, match="`query`"):
        att.apply(params, jnp.zeros((2, 3), jnp.int32), memory)
    with pytest.raises(TypeError, match="`values`"):
        att.prepare(params, jnp.zeros((2, 5, 4), jnp.int32))
    with pytest.raises(ValueError, match=r"`params`.*'w_q'"):
        att.prepare({"w_a": jnp.zeros((3, 4))}, jnp.zeros((2, 5, 4), jnp.float32))
    with pytest.raises(ValueError, match="`mask`"):
        att.prepare(params, jnp.zeros((2, 5, 4), jnp.float32), jnp.ones((2, 5), jnp.int32))
    with pytest.raises(ValueError, match=r"`mask` must broadcast.*\[2, 5\]"):
        masked_softmax(jnp.zeros((2, 5)), jnp.ones((3,), bool))
    with pytest.raises(TypeError, match="`mask`"):
        masked_softmax(jnp.zeros((2, 5)), jnp.ones((2, 5), jnp.float32))
    with pytest.raises(TypeError, match="`scores`"):
        masked_softmax(jnp.zeros((2, 5), jnp.int32), None)
    # the checks are static: they also fire under jit
    with pytest.raises(ValueError, match="`query`"):
        jax.jit(lambda q: att.apply(params, q, memory))(jnp.zeros((2, 7), jnp.float32))
