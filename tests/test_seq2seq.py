"""Tests of the seed's architectures in jrnn.models (seq2vec, vec2seq, taggers, teacher
forcing networks, seq2seq) and of the task generators in jrnn.seqtasks.

``seq2seq`` (every bridge, with and without attention, each score, with source lengths)
and ``vec2seq`` (each conditioning) are compared with the NumPy float64 oracles
``jrnn.reference.seq2seq_forward`` / ``vec2seq_forward``, written from the equations: the
outputs, attention weights and final carries, and the gradients of every parameter (and of
the conditioning vector) against central finite differences of the oracle.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jrnn
from jrnn import reference as ref
from jrnn import seqtasks
from jrnn.decode import greedy_decode
from jrnn.losses import sequence_softmax_cross_entropy
from jrnn.models import output_recurrent, seq2seq, seq2vec, tagger, vec2seq
from jrnn.train import init_train_state, make_train_step

F64 = {"param_dtype": jnp.float64}


# --------------------------------------------------------------------------------------
# generators


def test_generators_build_what_they_promise():
    key = jax.random.key(0)
    b = jax.tree.map(np.asarray, seqtasks.reverse_task(key, 64, 3, 9, num_symbols=6))
    src, sl = np.asarray(b.src), np.asarray(b.src_lengths)
    assert src.shape == (64, 9) and b.tgt_out.shape == (64, 10)
    assert sl.min() >= 3 and sl.max() <= 9 and len(set(sl.tolist())) > 3
    for i in range(64):
        n = sl[i]
        x = src[i, :n]
        assert np.all(src[i, n:] == seqtasks.PAD) and np.all(x >= seqtasks.FIRST_SYMBOL)
        np.testing.assert_array_equal(b.tgt_out[i, :n], x[::-1])
        assert b.tgt_out[i, n] == seqtasks.EOS and np.all(np.asarray(b.tgt_out[i, n + 1 :]) == 0)
        np.testing.assert_array_equal(b.tgt_in[i, : n + 1], [seqtasks.BOS, *x[::-1]])
        assert b.tgt_lengths[i] == n + 1
    s = jax.tree.map(np.asarray, seqtasks.sort_task(key, 16, 1, 7, num_symbols=5))
    for i in range(16):
        n = int(s.src_lengths[i])
        np.testing.assert_array_equal(s.tgt_out[i, :n], np.sort(np.asarray(s.src[i, :n])))
    c = seqtasks.copy_task(key, 8, 2, 4)
    np.testing.assert_array_equal(np.asarray(c.tgt_in)[:, 1:], np.asarray(c.src))
    t = jax.tree.map(np.asarray, seqtasks.next_symbol_task(key, 8, 2, 6, num_symbols=4))
    for i in range(8):
        n = int(t.lengths[i])
        np.testing.assert_array_equal(t.tags[i, : n - 1], t.inputs[i, 1:n])
        assert t.tags[i, n - 1] == seqtasks.EOS
    r = jax.tree.map(np.asarray, seqtasks.running_sum_task(key, 8, 2, 6, num_symbols=5))
    for i in range(8):
        n = int(r.lengths[i])
        vals = np.asarray(r.inputs[i, :n]) - seqtasks.FIRST_SYMBOL
        np.testing.assert_array_equal(r.tags[i, :n] - 3, np.cumsum(vals) % 5)
    m = jax.tree.map(np.asarray, seqtasks.majority_task(key, 32, 1, 9, num_symbols=3))
    for i in range(32):
        n = int(m.lengths[i])
        counts = np.bincount(m.inputs[i, :n] - 3, minlength=3)
        assert int(m.labels[i]) == int(np.argmax(counts))
    v = seqtasks.count_task(key, 4, 2, 5, num_symbols=6)
    assert v.vec.shape == (4, 11)
    assert seqtasks.format_tokens(jnp.array([3, 4, 25, 2, 0])) == "a b w </s>"
    with pytest.raises(ValueError, match="beyond T"):
        seqtasks.reverse_task(key, 4, 6, 5)


# --------------------------------------------------------------------------------------
# sequence to vector, taggers


def test_seq2vec_pools_within_lengths():
    cell = jrnn.lstm(5, **F64)
    xs = jax.random.randint(jax.random.key(1), (3, 6), 3, 8, dtype=jnp.int32)
    lengths = jnp.array([6, 2, 4], jnp.int32)
    every = tagger(cell, 4, vocab_size=8, embed_size=3, param_dtype=jnp.float64)
    params = every.init(jax.random.key(0))
    params["rnn"] = params["rnn"][0][0]  # the same weights as a bare cell
    for pool in ("last", "mean", "max"):
        model = seq2vec(cell, 4, vocab_size=8, embed_size=3, pool=pool, param_dtype=jnp.float64)
        o, _ = model.apply(params, xs, lengths=lengths)
        assert o.shape == (3, 4)
        for b in range(3):
            n = int(lengths[b])
            _, hs = jax.lax.scan(
                lambda c, x: cell.step(params["rnn"], c, x),
                cell.initial_carry(params["rnn"]),
                params["embed"][xs[b, :n]],
            )
            h = {"last": hs[-1], "mean": hs.mean(0), "max": hs.max(0)}[pool]
            np.testing.assert_allclose(o[b], h @ params["w_ho"] + params["b_o"], rtol=1e-10)


def test_bidirectional_tagger_sees_the_future_and_unidirectional_does_not():
    xs = jax.random.randint(jax.random.key(0), (2, 7), 3, 9, dtype=jnp.int32)
    for bidirectional in (False, True):
        model = tagger(jrnn.gru(4), 5, vocab_size=9, bidirectional=bidirectional)
        params = model.init(jax.random.key(1))
        base, _ = model.apply(params, xs)
        changed, _ = model.apply(params, xs.at[:, 5].set(3 if xs[0, 5] != 3 else 4))
        same_past = np.allclose(base[:, :5], changed[:, :5])
        assert same_past != bidirectional


def _train(loss_fn, params, batches, steps, lr=1e-2):
    opt = optax.adam(lr)
    state = init_train_state(params, opt, jax.random.key(7))
    step = make_train_step(loss_fn, opt)
    for s in range(steps):
        state, _ = step(state, batches(s))
    return state.params


def test_bidirectional_tagger_beats_the_unidirectional_one_on_future_context():
    """Tag each symbol with the next one: chance for a forward-only tagger."""
    make = lambda s: seqtasks.next_symbol_task(jax.random.key(s), 32, 3, 8, num_symbols=4)
    held_out = make(10_000)
    acc = {}
    for bidirectional in (False, True):
        model = tagger(jrnn.gru(24), 7, vocab_size=7, embed_size=8, bidirectional=bidirectional)

        def loss_fn(params, batch, key, model=model):
            logits, _ = model.apply(params, batch.inputs, lengths=batch.lengths)
            return sequence_softmax_cross_entropy(logits, batch.tags, batch.lengths), {}

        params = _train(loss_fn, model.init(jax.random.key(0)), make, 150)
        logits, _ = model.apply(params, held_out.inputs, lengths=held_out.lengths)
        valid = np.arange(8)[None] < np.asarray(held_out.lengths)[:, None]
        hits = np.asarray(jnp.argmax(logits, -1)) == np.asarray(held_out.tags)
        acc[bidirectional] = hits[valid].mean()
    assert acc[True] > 0.9 and acc[False] < 0.6, acc


# --------------------------------------------------------------------------------------
# teacher forcing networks


@pytest.mark.parametrize("hidden_recurrence", [False, True])
def test_output_recurrence_network_follows_its_equations(hidden_recurrence):
    cell = jrnn.gru(6, **F64) if hidden_recurrence else None
    model = output_recurrent(5, 6, vocab_size=7, cell=cell, start=1, **F64)
    params = model.init(jax.random.key(0))
    xs = jax.random.randint(jax.random.key(1), (2, 6), 0, 7, dtype=jnp.int32)
    ys = jax.random.randint(jax.random.key(2), (2, 6), 0, 5, dtype=jnp.int32)
    x1h = np.eye(7)[np.asarray(xs)]

    def manual(feed):
        out, h = [], np.zeros((2, 6))
        prev = np.full((2,), 1)
        for t in range(6):
            if hidden_recurrence:
                inp = np.concatenate([x1h[:, t], np.eye(5)[prev]], -1)
                _, h = cell.step(params["cell"], jrnn.RNNState(jnp.asarray(h)), jnp.asarray(inp))
                h = np.asarray(h)
            else:  # the seed: h(t) = tanh(b + W y(t-1) + U x(t)); no h(t-1)
                h = np.tanh(
                    params["b"] + np.eye(5)[prev] @ params["w_yh"] + x1h[:, t] @ params["w_xh"]
                )
            o = h @ params["w_ho"] + params["b_o"]
            out.append(o)
            prev = np.asarray(ys[:, t]) if feed == "teacher" else np.argmax(o, -1)
        return np.stack(out, 1)

    np.testing.assert_allclose(model.apply(params, xs, ys)[0], manual("teacher"), rtol=1e-10)
    free, _ = model.apply(params, xs, feedback="free")
    np.testing.assert_allclose(free, manual("free"), rtol=1e-10)
    # scheduled sampling interpolates: p = 0 is teacher forcing, p = 1 free running
    k = jax.random.key(3)
    np.testing.assert_allclose(
        model.apply(params, xs, ys, sample_prob=1.0, key=k)[0], manual("free"), rtol=1e-10
    )
    with pytest.raises(ValueError, match="needs a `key`"):
        model.apply(params, xs, ys, sample_prob=0.5)


# --------------------------------------------------------------------------------------
# sequence to sequence


def test_teacher_forcing_is_the_decoder_step_fed_the_targets():
    enc = jrnn.stack(jrnn.lstm(4, **F64), bidirectional=True)
    for attention in (None, "additive"):
        model = seq2seq(enc, jrnn.lstm(6, **F64), 8, 9, attention=attention, **F64)
        params = model.init(jax.random.key(0))
        src = jnp.array([[3, 4, 5, 0], [6, 7, 3, 4]], jnp.int32)
        lengths = jnp.array([3, 4], jnp.int32)
        tgt_in = jnp.array([[1, 5, 4, 3], [1, 3, 0, 0]], jnp.int32)
        logits, _ = model.apply(params, src, tgt_in, src_lengths=lengths)
        memory = model.encode(params, src, lengths)
        state = model.start(params, memory)
        for t in range(4):
            state, lt, _ = model.step(params, memory, state, tgt_in[:, t])
            np.testing.assert_allclose(logits[:, t], lt, rtol=1e-12, atol=1e-12)
        # causal: changing a later target input leaves earlier outputs alone
        later, _ = model.apply(params, src, tgt_in.at[:, 2].set(7), src_lengths=lengths)
        np.testing.assert_allclose(later[:, :2], logits[:, :2], rtol=1e-12)
        assert not np.allclose(later[:, 2:], logits[:, 2:])
        # the source mask: padding content is invisible (also without attention)
        other, _ = model.apply(params, src.at[0, 3].set(7), tgt_in, src_lengths=lengths)
        np.testing.assert_allclose(other, logits, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------
# seq2seq and vec2seq against the NumPy oracles: outputs and gradients

_CELLS = {"rnn": jrnn.simple_rnn, "lstm": jrnn.lstm, "gru": jrnn.gru}
_SRC = np.array([[3, 4, 5, 4], [5, 3, 0, 0], [4, 0, 0, 0]])  # [B=3, S=4]; ids < 6
_TGT_IN = np.array([[1, 3, 4], [1, 4, 4], [1, 2, 3]])  # [B, T'=3]; ids < 5
_FD_EPS = 1e-6


def _fd_grad(loss, tree):
    """Central differences of the scalar ``loss()`` w.r.t. every entry of every leaf of
    ``tree`` (NumPy arrays, changed in place and restored)."""
    grads = []
    for leaf in jax.tree.leaves(tree):
        g = np.zeros_like(leaf)
        for idx in np.ndindex(leaf.shape):
            orig = leaf[idx]
            leaf[idx] = orig + _FD_EPS
            up = loss()
            leaf[idx] = orig - _FD_EPS
            down = loss()
            leaf[idx] = orig
            g[idx] = (up - down) / (2 * _FD_EPS)
        grads.append(g)
    return grads


def _probe(rng, logits_shape, weights_shape, carry):
    """Random cotangents: the test's loss is ``Σ logits·r + Σ weights·r + Σ carry·r``."""
    return (
        rng.standard_normal(logits_shape),
        None if weights_shape is None else rng.standard_normal(weights_shape),
        [rng.standard_normal(np.shape(c)) for c in jax.tree.leaves(carry)],
    )


def _probe_loss(xp, probe, logits, weights, carry):
    r_logits, r_weights, r_carry = probe
    total = xp.sum(logits * r_logits)
    if r_weights is not None:
        total = total + xp.sum(weights * r_weights)
    for c, r in zip(jax.tree.leaves(carry), r_carry, strict=True):
        total = total + xp.sum(c * r)
    return total


def _compare_grads(got, want, rtol=1e-7, atol=1e-8):
    """Leafwise: ``got`` (a pytree) against the list ``want``.  The default tolerances are
    for central differences (step 1e-6, float64; measured errors 1e-10 to 2e-9)."""
    got = jax.tree.leaves(got)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), w, rtol=rtol, atol=atol)


# id -> encoder (cell kind, bidirectional, layers), decoder (cell kind, H_dec), seq2seq
# options, source lengths.  Together: every bridge, context input on and off, each score,
# input feeding on and off, one-hot and embedded tokens, 1 and 2 directions and layers,
# and a source of length 0 (an attention row with no valid step).
_SEQ2SEQ_CASES = {
    "linear-bridge-context": (("lstm", True, 1), ("lstm", 3), {}, [4, 2, 1]),
    "copy-bridge": (
        ("gru", True, 1),
        ("gru", 4),
        {"bridge": "copy", "context_input": False},
        [4, 2, 1],
    ),
    "additive": (
        ("gru", True, 1),
        ("lstm", 3),
        {"attention": "additive", "attention_size": 2},
        [4, 2, 1],
    ),
    "dot-zeros-bridge-onehot": (
        ("lstm", True, 1),
        ("gru", 4),
        {"attention": "dot", "input_feeding": False, "bridge": "zeros", "embed_size": None},
        [3, 2, 1],
    ),
    "general-2-layers": (("rnn", False, 2), ("rnn", 3), {"attention": "general"}, [4, 0, 2]),
}


@pytest.mark.parametrize("case", list(_SEQ2SEQ_CASES))
def test_seq2seq_matches_the_numpy_oracle_outputs_and_gradients(case):
    (enc_kind, bidirectional, layers), (dec_kind, hidden), options, lengths = _SEQ2SEQ_CASES[case]
    encoder = jrnn.stack(_CELLS[enc_kind](2, **F64), num_layers=layers, bidirectional=bidirectional)
    options = {"embed_size": 3} | options
    model = seq2seq(encoder, _CELLS[dec_kind](hidden, **F64), 6, 5, **options, **F64)
    params = model.init(jax.random.key(0))
    src, tgt_in, src_lengths = (
        jnp.asarray(_SRC, jnp.int32),
        jnp.asarray(_TGT_IN, jnp.int32),
        jnp.array(lengths, jnp.int32),
    )
    oracle_options = {k: v for k, v in options.items() if k not in ("attention_size", "embed_size")}

    def oracle(p):
        return ref.seq2seq_forward(
            p,
            _SRC,
            _TGT_IN,
            encoder_kind=enc_kind,
            decoder_kind=dec_kind,
            bidirectional=bidirectional,
            src_lengths=lengths,
            **oracle_options,
        )

    want_logits, want_weights, want_carry = oracle(params)
    attention = options.get("attention")
    probe = _probe(
        np.random.default_rng(0),
        want_logits.shape,
        None if attention is None else want_weights.shape,
        want_carry,
    )

    @jax.jit
    def run(p):
        def loss(p):
            logits, aux = model.apply(p, src, tgt_in, src_lengths=src_lengths)
            return _probe_loss(jnp, probe, logits, aux.attention, aux.carry), (logits, aux)

        return jax.grad(loss, has_aux=True)(p)

    grads, (logits, aux) = run(params)
    np.testing.assert_allclose(np.asarray(logits), want_logits, rtol=1e-12, atol=1e-13)
    if attention is None:
        assert aux.attention is None and want_weights is None
    else:
        np.testing.assert_allclose(np.asarray(aux.attention), want_weights, rtol=1e-12, atol=1e-13)
        padded = np.arange(4)[None, None, :] >= np.array(lengths)[:, None, None]
        assert np.all(np.asarray(aux.attention)[np.broadcast_to(padded, want_weights.shape)] == 0)
    _compare_grads(aux.carry, jax.tree.leaves(want_carry), rtol=1e-12, atol=1e-13)

    numpy_params = jax.tree.map(np.array, params)
    fd = _fd_grad(lambda: float(_probe_loss(np, probe, *oracle(numpy_params))), numpy_params)
    _compare_grads(grads, fd)


@pytest.mark.parametrize(
    ("dec_kind", "embed", "condition"),
    [("lstm", 3, "init"), ("lstm", 3, "input"), ("gru", None, "both")],
    ids=["lstm-init", "lstm-input", "gru-onehot-both"],
)
def test_vec2seq_matches_the_numpy_oracle_outputs_and_gradients(dec_kind, embed, condition):
    model = vec2seq(_CELLS[dec_kind](3, **F64), 2, 5, embed_size=embed, condition=condition, **F64)
    params = model.init(jax.random.key(0))
    vec = np.random.default_rng(1).standard_normal((3, 2))
    tgt_in = jnp.asarray(_TGT_IN, jnp.int32)

    def oracle(p, v):
        return ref.vec2seq_forward(p, v, _TGT_IN, decoder_kind=dec_kind, condition=condition)

    want_logits, want_carry = oracle(params, vec)
    probe = _probe(np.random.default_rng(2), want_logits.shape, None, want_carry)

    @jax.jit
    def run(p, v):
        def loss(p, v):
            logits, aux = model.apply(p, v, tgt_in)
            return _probe_loss(jnp, probe, logits, None, aux.carry), (logits, aux)

        return jax.grad(loss, argnums=(0, 1), has_aux=True)(p, v)

    grads, (logits, aux) = run(params, jnp.asarray(vec))
    np.testing.assert_allclose(np.asarray(logits), want_logits, rtol=1e-12, atol=1e-13)
    _compare_grads(aux.carry, jax.tree.leaves(want_carry), rtol=1e-12, atol=1e-13)
    state = [jax.tree.map(np.array, params), vec.copy()]

    def numpy_loss():
        logits, carry = oracle(*state)
        return float(_probe_loss(np, probe, logits, None, carry))

    _compare_grads(grads, _fd_grad(numpy_loss, state))


def test_bridges_and_vector_conditioning():
    enc = jrnn.stack(jrnn.gru(4), bidirectional=True)
    copy = seq2seq(enc, jrnn.gru(8), 6, 7, bridge="copy")
    params = copy.init(jax.random.key(0))
    assert "bridge" not in params
    src = jnp.array([[3, 4, 5]], jnp.int32)
    memory = copy.encode(params, src)
    carry, _ = copy.start(params, memory)
    np.testing.assert_allclose(carry.h, memory["context"], rtol=1e-6)
    zeros = seq2seq(enc, jrnn.gru(5), 6, 7, bridge="zeros")
    p0 = zeros.init(jax.random.key(0))
    assert np.all(np.asarray(zeros.start(p0, zeros.encode(p0, src))[0].h) == 0)
    vec = jnp.ones((2, 3), jnp.float32)
    for condition, has_bridge, width in (("init", True, 4), ("input", False, 7), ("both", True, 7)):
        model = vec2seq(jrnn.lstm(5), 3, 8, embed_size=4, condition=condition)
        p = model.init(jax.random.key(0))
        assert ("bridge" in p) == has_bridge and p["decoder"]["w_ih"].shape[0] == width
        logits, _ = model.apply(p, vec, jnp.array([[1, 3], [1, 4]], jnp.int32))
        assert logits.shape == (2, 2, 8)


def test_attention_model_learns_to_reverse_short_sequences():
    model = seq2seq(
        jrnn.stack(jrnn.gru(32), bidirectional=True),
        jrnn.gru(32),
        8,
        8,
        embed_size=16,
        attention="general",
    )
    make = lambda s: seqtasks.reverse_task(jax.random.key(s), 64, 2, 7, num_symbols=5)

    def loss_fn(params, b, key):
        logits, _ = model.apply(params, b.src, b.tgt_in, src_lengths=b.src_lengths)
        return sequence_softmax_cross_entropy(logits, b.tgt_out, b.tgt_lengths), {}

    params = _train(loss_fn, model.init(jax.random.key(0)), make, 300, lr=1e-2)
    test = make(99_999)
    out = greedy_decode(model, params, test.src, test.src_lengths, max_len=8)
    valid = np.arange(8)[None] < np.asarray(test.tgt_lengths)[:, None]
    hits = (np.asarray(out.tokens) == np.asarray(test.tgt_out)) | ~valid
    assert hits.all(1).mean() > 0.9, hits.all(1).mean()


def test_bad_sizes_and_inputs():
    enc = jrnn.stack(jrnn.lstm(4), bidirectional=True)
    with pytest.raises(ValueError, match="encoder/decoder size mismatch"):
        seq2seq(enc, jrnn.lstm(5), 6, 7, bridge="copy")
    with pytest.raises(ValueError, match="encoder/decoder size mismatch"):
        seq2seq(enc, jrnn.gru(8), 6, 7, bridge="copy")  # LSTM state into a GRU
    with pytest.raises(ValueError, match="encoder/decoder size mismatch"):
        seq2seq(enc, jrnn.gru(6), 6, 7, attention="dot")
    with pytest.raises(ValueError, match="unknown score"):
        seq2seq(enc, jrnn.gru(6), 6, 7, attention="cosine")
    with pytest.raises(ValueError, match="`eos`"):
        seq2seq(enc, jrnn.gru(6), 6, 7, eos=7)
    with pytest.raises(ValueError, match="must differ"):
        seq2seq(enc, jrnn.gru(6), 6, 7, bos=0)
    with pytest.raises(ValueError, match="condition"):
        vec2seq(jrnn.gru(6), 3, 7, condition="never")
    with pytest.raises(ValueError, match="pool"):
        seq2vec(jrnn.gru(6), 3, vocab_size=5, pool="first")
    with pytest.raises(ValueError, match="hidden_size"):
        output_recurrent(4, 5, vocab_size=3, cell=jrnn.gru(6))
    model = seq2seq(enc, jrnn.gru(6), 6, 7)
    params = model.init(jax.random.key(0))
    src = jnp.array([[3, 4, 5]], jnp.int32)
    tgt = jnp.array([[1, 3]], jnp.int32)
    with pytest.raises(ValueError, match="vocabulary-size mismatch"):
        model.apply(params, src.at[0, 0].set(6), tgt)
    with pytest.raises(ValueError, match="vocabulary-size mismatch"):
        model.apply(params, src, tgt.at[0, 1].set(9))
    with pytest.raises(ValueError, match=r"\[0, T=3\]"):
        model.apply(params, src, tgt, src_lengths=jnp.array([4], jnp.int32))
    with pytest.raises(ValueError, match="same batch size"):
        model.apply(params, src, jnp.ones((2, 2), jnp.int32))
    with pytest.raises(TypeError, match="integer"):
        model.apply(params, src.astype(jnp.float32), tgt)
    v = vec2seq(jrnn.gru(6), 3, 7)
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        v.apply(v.init(jax.random.key(0)), jnp.ones((1, 4), jnp.float32), tgt)
