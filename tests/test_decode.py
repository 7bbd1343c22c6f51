"""Tests of jrnn.decode: greedy, beam search (width 1 is greedy; a wide beam is exhaustive
search, checked by brute force), sampling, jit-compatibility and bad arguments.  Greedy
decoding of ``vec2seq`` and of an attentional ``seq2seq`` is also checked against greedy
decoding written in NumPy over the float64 oracles of ``jrnn.reference``."""

from __future__ import annotations

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn import reference as ref
from jrnn.decode import (
    beam_search,
    greedy_decode,
    length_normalize,
    sample_decode,
    sequence_scores,
)
from jrnn.models import seq2seq, vec2seq

PAD, BOS, EOS = 0, 1, 2


def _model(attention="general", tgt_vocab=9, hidden=8):
    enc = jrnn.stack(jrnn.lstm(hidden // 2), bidirectional=True)
    return seq2seq(enc, jrnn.gru(hidden), 7, tgt_vocab, embed_size=4, attention=attention)


def _src():
    src = jnp.array([[3, 4, 5, 6, 3], [4, 5, 6, 0, 0], [6, 0, 0, 0, 0]], jnp.int32)
    return src, jnp.array([5, 3, 1], jnp.int32)


def _sharpen(params, scale=4.0):
    """Larger output weights: peaked distributions, so decoding paths differ."""
    return dict(params, w_o=params["w_o"] * scale)


@pytest.mark.parametrize("attention", [None, "additive"])
def test_beam_width_one_is_greedy(attention):
    model = _model(attention)
    params = _sharpen(model.init(jax.random.key(0)))
    src, lengths = _src()
    greedy = greedy_decode(model, params, src, lengths, max_len=7)
    beams = beam_search(model, params, src, lengths, beam_size=1, max_len=7)
    np.testing.assert_array_equal(beams.tokens[:, 0], greedy.tokens)
    np.testing.assert_array_equal(beams.lengths[:, 0], greedy.lengths)
    np.testing.assert_array_equal(beams.scores[:, 0], greedy.scores)
    # the decoded sequences are well formed and scored as sequence_scores scores them
    toks = np.asarray(greedy.tokens)
    for row, n in zip(toks, np.asarray(greedy.lengths), strict=True):
        assert np.all(row[n:] == PAD) and not np.any(row[: n - 1] == EOS)
        assert not np.any(np.isin(row[:n], [PAD, BOS]))
    want = sequence_scores(model, params, src, greedy.tokens, greedy.lengths, lengths)
    np.testing.assert_allclose(greedy.scores, want, rtol=1e-5, atol=1e-5)
    if attention is not None:
        assert greedy.attention.shape == (3, 7, 5)
        assert np.all(np.asarray(greedy.attention)[1, :, 3:] == 0.0)


def _all_hypotheses(symbols, max_len):
    """Every complete output: symbols then EOS (at most max_len tokens), or max_len
    symbols with no EOS (cut at the maximum length)."""
    out = []
    for n in range(max_len):
        out += [(*seq, EOS) for seq in itertools.product(symbols, repeat=n)]
    out += list(itertools.product(symbols, repeat=max_len))
    return out


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_a_wide_beam_finds_the_best_sequence_by_brute_force(length_penalty):
    tgt_vocab, max_len = 5, 4  # PAD, BOS, EOS and two symbols
    model = _model("general", tgt_vocab=tgt_vocab, hidden=6)
    params = _sharpen(model.init(jax.random.key(3)), 2.0)
    params["b_o"] = params["b_o"].at[EOS].set(-1.0)  # EOS neither certain nor negligible
    src, lengths = _src()
    hyps = _all_hypotheses([3, 4], max_len)
    assert len(hyps) == 1 + 2 + 4 + 8 + 16
    tgt = np.full((len(hyps), max_len + 1), PAD, np.int32)
    n_tok = np.array([len(h) for h in hyps], np.int32)
    for i, h in enumerate(hyps):
        tgt[i, : len(h)] = h
    best = []
    for b in range(src.shape[0]):
        rep = lambda a, b=b: jnp.repeat(a[b : b + 1], len(hyps), axis=0)
        scores = sequence_scores(model, params, rep(src), tgt, n_tok, rep(lengths))
        norm = np.asarray(length_normalize(scores, jnp.asarray(n_tok), length_penalty))
        best.append((hyps[int(np.argmax(norm))], float(norm.max()), float(np.sort(norm)[-2])))
    beams = beam_search(
        model, params, src, lengths, beam_size=32, max_len=max_len, length_penalty=length_penalty
    )
    for b, (hyp, score, runner_up) in enumerate(best):
        assert score - runner_up > 1e-4  # a unique optimum
        n = int(beams.lengths[b, 0])
        assert tuple(np.asarray(beams.tokens[b, 0, :n]).tolist()) == hyp
        np.testing.assert_allclose(beams.normalized[b, 0], score, rtol=1e-5, atol=1e-5)
    # beams are sorted best first, and their scores are the sequences' log-probabilities
    assert np.all(np.diff(np.asarray(beams.normalized), axis=1) <= 1e-6)
    got = sequence_scores(model, params, src, beams.tokens[:, 0], beams.lengths[:, 0], lengths)
    np.testing.assert_allclose(beams.scores[:, 0], got, rtol=1e-5, atol=1e-5)


def test_decoding_is_traced_loops_and_jits_once():
    model = _model()
    params = model.init(jax.random.key(0))
    src, lengths = _src()
    jaxpr = str(
        jax.make_jaxpr(lambda p, s, l: beam_search(model, p, s, l, beam_size=3, max_len=6).tokens)(
            params, src, lengths
        )
    )
    assert "while" in jaxpr
    jaxpr = str(
        jax.make_jaxpr(lambda p, s, l: greedy_decode(model, p, s, l, max_len=6).tokens)(
            params, src, lengths
        )
    )
    assert "scan" in jaxpr

    @jax.jit
    @chex.assert_max_traces(n=1)
    def both(p, s, l):
        g = greedy_decode(model, p, s, l, max_len=6)
        b = beam_search(model, p, s, l, beam_size=2, max_len=6)
        return g.tokens, b.tokens

    for seed in range(2):
        params = model.init(jax.random.key(seed))
        g_tokens, b_tokens = both(params, src, lengths)
        assert g_tokens.shape == (3, 6) and b_tokens.shape == (3, 2, 6)


def test_sampling_is_keyed_and_greedy_at_zero_temperature():
    model = _model(None)
    params = model.init(jax.random.key(0))
    src, lengths = _src()
    greedy = greedy_decode(model, params, src, lengths, max_len=6)
    cold = sample_decode(
        model, params, src, lengths, key=jax.random.key(1), max_len=6, temperature=0.0
    )
    np.testing.assert_array_equal(cold.tokens, greedy.tokens)
    a = sample_decode(model, params, src, lengths, key=jax.random.key(1), max_len=6)
    b = sample_decode(model, params, src, lengths, key=jax.random.key(1), max_len=6)
    c = sample_decode(model, params, src, lengths, key=jax.random.key(2), max_len=6)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, c.tokens)
    assert not np.any(np.isin(np.asarray(a.tokens), [BOS]))
    want = sequence_scores(model, params, src, a.tokens, a.lengths, lengths)
    np.testing.assert_allclose(a.scores, want, rtol=1e-5, atol=1e-5)


def _numpy_greedy(logits_of, batch, max_len):
    """Greedy decoding over a NumPy oracle: at each step ``logits_of(prefix)`` (the
    teacher-forced oracle on ``[bos, tokens so far]``) gives the next token's logits; pad
    and bos are banned, the score sums log-probabilities, a row ends at eos.

    Returns ``(tokens, lengths, scores, weights or None, margin)``, ``margin`` the smallest
    gap between the best and second-best log-probability of an open row (ties would make
    the comparison ambiguous)."""
    tokens = np.full((batch, max_len), PAD)
    lengths, scores, done = np.zeros(batch, int), np.zeros(batch), np.zeros(batch, bool)
    margin, weights = np.inf, None
    for t in range(max_len):
        logits, weights = logits_of(np.concatenate([np.full((batch, 1), BOS), tokens[:, :t]], 1))
        logits = logits[:, -1].copy()
        logits[:, [PAD, BOS]] = -np.inf
        top = logits.max(-1, keepdims=True)
        logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
        best = np.sort(logp, -1)
        margin = min(margin, float(np.min((best[:, -1] - best[:, -2])[~done], initial=np.inf)))
        nxt = np.where(done, PAD, logp.argmax(-1))
        scores += np.where(done, 0.0, logp[np.arange(batch), nxt])
        lengths += ~done
        done |= nxt == EOS
        tokens[:, t] = nxt
    return tokens, lengths, scores, weights, margin


def test_vec2seq_decodes_with_the_same_functions():
    model = vec2seq(jrnn.lstm(8), 5, 9, condition="both")
    params = model.init(jax.random.key(0))
    vec = jax.random.normal(jax.random.key(1), (2, 5), jnp.float32)
    g = greedy_decode(model, params, vec, max_len=5)
    b = beam_search(model, params, vec, beam_size=1, max_len=5)
    np.testing.assert_array_equal(g.tokens, b.tokens[:, 0])
    assert g.attention is None


@pytest.mark.parametrize(("kind", "seed"), [("vec2seq", 2), ("seq2seq-additive", 1)])
def test_greedy_decoding_matches_numpy_greedy_over_the_oracle(kind, seed):
    f64 = {"param_dtype": jnp.float64}
    max_len, batch = 6, 4
    if kind == "vec2seq":
        model = vec2seq(jrnn.lstm(4, **f64), 3, 5, embed_size=3, condition="both", **f64)
        src = np.random.default_rng(0).standard_normal((batch, 3))
        lengths = None

        def logits_of(prefix):
            return ref.vec2seq_forward(params, src, prefix, decoder_kind="lstm")[0], None

    else:
        enc = jrnn.stack(jrnn.gru(2, **f64), bidirectional=True)
        model = seq2seq(enc, jrnn.gru(3, **f64), 6, 5, embed_size=3, attention="additive", **f64)
        src = np.array([[3, 4, 5, 4], [5, 3, 0, 0], [4, 0, 0, 0], [5, 5, 4, 0]])
        lengths = np.array([4, 2, 1, 3])

        def logits_of(prefix):
            logits, weights, _ = ref.seq2seq_forward(
                params,
                src,
                prefix,
                encoder_kind="gru",
                decoder_kind="gru",
                bidirectional=True,
                src_lengths=lengths,
                attention="additive",
            )
            return logits, weights

    # every weight x3: varied tokens, rows that end at eos at different steps
    params = jax.tree.map(lambda w: 3 * w, model.init(jax.random.key(seed)))
    out = greedy_decode(
        model,
        params,
        jnp.asarray(src),
        None if lengths is None else jnp.asarray(lengths),
        max_len=max_len,
    )
    tokens, lengths_np, scores, weights, margin = _numpy_greedy(logits_of, batch, max_len)
    assert margin > 1e-4  # no near-tie: float32 log-probabilities pick the same token
    np.testing.assert_array_equal(np.asarray(out.tokens), tokens)
    np.testing.assert_array_equal(np.asarray(out.lengths), lengths_np)
    np.testing.assert_allclose(np.asarray(out.scores), scores, rtol=1e-6, atol=1e-6)  # float32
    assert len(set(lengths_np.tolist())) > 1 and (tokens == EOS).any(), lengths_np
    if weights is not None:  # every step's weights, also after eos (fed pad)
        np.testing.assert_allclose(np.asarray(out.attention), weights, rtol=1e-12, atol=1e-13)


def test_bad_arguments():
    model = _model()
    params = model.init(jax.random.key(0))
    src, lengths = _src()
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, params, src, lengths, beam_size=0, max_len=4)
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(model, params, src, lengths, max_len=0)
    with pytest.raises(ValueError, match="length_penalty"):
        beam_search(model, params, src, lengths, beam_size=2, max_len=4, length_penalty=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        sample_decode(
            model, params, src, lengths, key=jax.random.key(0), max_len=4, temperature=-1.0
        )
    with pytest.raises(ValueError, match="vocabulary-size mismatch"):
        greedy_decode(model, params, src.at[0, 0].set(7), lengths, max_len=4)
    with pytest.raises(ValueError, match=r"src_lengths.*T=5"):
        greedy_decode(model, params, src, lengths.at[0].set(6), max_len=4)
    with pytest.raises(TypeError, match="EncoderDecoder"):
        greedy_decode(jrnn.lstm(4), params, src, lengths, max_len=4)


def test_all_decoders_jit_over_closed_over_arrays():
    """Concrete-value checks use NumPy on concrete arrays: no ConcretizationTypeError when the
    sources are constants closed over by a caller's jit."""
    model = _model()
    params = model.init(jax.random.key(0))
    src, lengths = _src()
    eager = greedy_decode(model, params, src, lengths, max_len=5)
    g = jax.jit(lambda p: greedy_decode(model, p, src, lengths, max_len=5))(params)
    np.testing.assert_array_equal(g.tokens, eager.tokens)
    b = jax.jit(lambda p: beam_search(model, p, src, lengths, beam_size=2, max_len=5))(params)
    np.testing.assert_array_equal(
        b.tokens, beam_search(model, params, src, lengths, beam_size=2, max_len=5).tokens
    )
    key = jax.random.key(4)
    s = jax.jit(lambda p: sample_decode(model, p, src, lengths, key=key, max_len=5))(params)
    np.testing.assert_array_equal(
        s.tokens, sample_decode(model, params, src, lengths, key=key, max_len=5).tokens
    )
    sc = jax.jit(lambda p: sequence_scores(model, p, src, g.tokens, g.lengths, lengths))(params)
    np.testing.assert_allclose(sc, eager.scores, rtol=1e-5, atol=1e-5)
    # a concrete bad value is still caught inside jit
    bad = src.at[0, 0].set(99)
    with pytest.raises(ValueError, match="src"):
        jax.jit(lambda p: greedy_decode(model, p, bad, lengths, max_len=3))(params)


def test_traced_out_of_range_values_are_clipped_not_nan():
    """Under jit values cannot be checked: ids are clipped into the vocabulary, lengths into
    [0, S], a negative temperature decodes greedily -- always finite."""
    model = _model()
    params = model.init(jax.random.key(0))
    src, lengths = _src()
    bad_src = src.at[0, 0].set(50).at[1, 1].set(-3)
    clipped = jnp.clip(bad_src, 0, 6)
    run = jax.jit(lambda s, l: greedy_decode(model, params, s, l, max_len=5))
    got = run(bad_src, lengths.at[2].set(99))
    want = greedy_decode(model, params, clipped, lengths.at[2].set(5), max_len=5)
    assert np.all(np.isfinite(np.asarray(got.scores)))
    np.testing.assert_array_equal(got.tokens, want.tokens)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)
    cold = jax.jit(
        lambda t: sample_decode(
            model, params, src, lengths, key=jax.random.key(0), max_len=5, temperature=t
        )
    )(jnp.float32(-1.0))
    greedy = greedy_decode(model, params, src, lengths, max_len=5)
    np.testing.assert_array_equal(cold.tokens, greedy.tokens)


def test_beam_is_clamped_to_the_emittable_hypotheses():
    from jrnn.decode import num_hypotheses

    model = _model(tgt_vocab=5)  # PAD, BOS, EOS + 2 symbols: 3 emittable tokens
    params = _sharpen(model.init(jax.random.key(1)))
    src, lengths = _src()
    assert [num_hypotheses(model, n) for n in (1, 2, 3)] == [3, 7, 15]
    for max_len, want_k in ((1, 3), (2, 7), (3, 10)):
        beams = beam_search(model, params, src, lengths, beam_size=10, max_len=max_len)
        assert beams.tokens.shape == (3, want_k, max_len)
        assert np.all(np.isfinite(np.asarray(beams.scores)))
        assert np.all(np.isfinite(np.asarray(beams.normalized)))
    # with max_len=1 the 3 beams are exactly the 3 single tokens
    beams = beam_search(model, params, src, lengths, beam_size=10, max_len=1)
    assert sorted(np.asarray(beams.tokens[0, :, 0]).tolist()) == [2, 3, 4]
    # with max_len=2 all 7 hypotheses are distinct
    beams = beam_search(model, params, src, lengths, beam_size=7, max_len=2)
    rows = {tuple(r) for r in np.asarray(beams.tokens[0]).tolist()}
    assert len(rows) == 7


def test_sequence_scores_checks_its_targets():
    model = _model()
    params = model.init(jax.random.key(0))
    src, lengths = _src()
    tgt = jnp.array([[3, 2], [4, 2], [2, 0]], jnp.int32)
    n = jnp.array([2, 2, 1], jnp.int32)
    with pytest.raises(ValueError, match=r"tgt_out.*\[0, 8\]"):
        sequence_scores(model, params, src, tgt.at[0, 0].set(9), n, lengths)
    with pytest.raises(ValueError, match=r"tgt_lengths.*\[0, T=2\]"):
        sequence_scores(model, params, src, tgt, n.at[0].set(3), lengths)
    with pytest.raises(ValueError, match=r"tgt_out.*batch=3"):
        sequence_scores(model, params, src, tgt[:2], n, lengths)
    with pytest.raises(TypeError, match="tgt_lengths"):
        sequence_scores(model, params, src, tgt, n.astype(jnp.float32), lengths)
    with pytest.raises(TypeError, match="key"):
        sample_decode(model, params, src, lengths, key=0, max_len=3)
