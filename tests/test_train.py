"""Tests of jrnn.train: the train step, clipping, determinism, truncated BPTT, the adding
problem, checkpoints and sampling."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jrnn
from jrnn import data as jdata
from jrnn import seqtasks
from jrnn.checkpoint import Checkpointer
from jrnn.losses import sequence_softmax_cross_entropy
from jrnn.models import sequence_model
from jrnn.sample import sample
from jrnn.train import (
    TrainState,
    evaluate,
    init_train_state,
    make_eval_step,
    make_train_step,
    tbptt_value_and_grad,
)

TEXT = "the quick brown fox jumps over the lazy dog. " * 40
VOCAB = jdata.CharVocab.from_text(TEXT)
IDS = jnp.asarray(VOCAB.encode(TEXT), jnp.int32)


def _charlm(hidden=16):
    return sequence_model(jrnn.lstm(hidden), VOCAB.size, vocab_size=VOCAB.size, embed_size=8)


def _lm_loss(model):
    def loss_fn(params, windows, key):
        logits, _ = model.apply(params, windows[:, :-1], key=key)
        loss = sequence_softmax_cross_entropy(logits, windows[:, 1:])
        return loss, {"bpc": loss / math.log(2.0)}

    return loss_fn


def _run(model, steps, seed=0, clip_norm=1.0, lr=1e-2, check_traces=False):
    loss_fn = _lm_loss(model)
    if check_traces:
        loss_fn = chex.assert_max_traces(loss_fn, n=1)
    opt = optax.adam(lr)
    k_init, k_data, k_train = jax.random.split(jax.random.key(seed), 3)
    state = init_train_state(model.init(k_init), opt, k_train)
    step = make_train_step(loss_fn, opt, clip_norm=clip_norm)
    losses = []
    for s in range(steps):
        batch = jdata.random_windows(IDS, jax.random.fold_in(k_data, s), 8, 16)
        state, m = step(state, batch)
        losses.append(float(m["loss"]))
    return state, losses


def test_training_lowers_the_loss_and_traces_once():
    state, losses = _run(_charlm(), 30, check_traces=True)
    assert isinstance(state, TrainState)
    assert int(state.step) == 30
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def _assert_reproduced(a, b):
    """Bitwise on CPU; to 1 ulp-level on GPUs, whose reductions are not bitwise repeatable
    (an H100 run differed by 7e-9 in float32 parameters)."""
    if jax.default_backend() == "cpu":
        chex.assert_trees_all_equal(a, b)
    else:
        chex.assert_trees_all_close(a, b, rtol=1e-6, atol=1e-12)


def test_runs_are_deterministic_from_the_seed():
    a, la = _run(_charlm(8), 5, seed=3)
    b, lb = _run(_charlm(8), 5, seed=3)
    _assert_reproduced(np.asarray(la), np.asarray(lb))
    _assert_reproduced(a.params, b.params)
    chex.assert_trees_all_equal(jax.random.key_data(a.key), jax.random.key_data(b.key))
    c, lc = _run(_charlm(8), 5, seed=4)
    assert lc != la


def test_the_step_donates_the_state():
    model = _charlm(8)
    opt = optax.sgd(0.1)
    state = init_train_state(model.init(jax.random.key(0)), opt, jax.random.key(1))
    step = make_train_step(_lm_loss(model), opt)
    old = state.params["w_ho"]
    new, _ = step(state, IDS[: 2 * 9].reshape(2, 9))
    assert old.is_deleted()
    assert not new.params["w_ho"].is_deleted()


def test_global_norm_clipping_and_metrics():
    """A clipped SGD step moves the parameters by lr * g * min(1, clip / |g|)."""
    model = _charlm(8)
    params = model.init(jax.random.key(0))
    batch = IDS[: 4 * 9].reshape(4, 9)
    loss_fn = _lm_loss(model)
    grads = jax.grad(lambda p: loss_fn(p, batch, None)[0])(params)
    norm = float(optax.tree.norm(grads))
    clip = norm / 4
    opt = optax.sgd(1.0)
    for clip_norm, scale in [(clip, clip / norm), (None, 1.0), (10 * norm, 1.0)]:
        state = init_train_state(params, opt, jax.random.key(1))
        step = make_train_step(loss_fn, opt, clip_norm=clip_norm, donate=False)
        new, m = step(state, batch)
        assert bool(m["finite"])
        np.testing.assert_allclose(float(m["grad_norm"]), norm, rtol=1e-5)
        np.testing.assert_allclose(float(m["grad_norm_clipped"]), scale * norm, rtol=1e-5)
        want = jax.tree.map(lambda p, g, s=scale: p - s * g, params, grads)
        chex.assert_trees_all_close(new.params, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="clip_norm"):
        make_train_step(loss_fn, opt, clip_norm=-1.0)


def test_nonfinite_steps_are_flagged_or_skipped():
    model = _charlm(8)
    opt = optax.adam(1e-2)

    def loss_fn(params, batch, key):
        loss, m = _lm_loss(model)(params, batch, key)
        return loss * batch[0, 0].astype(loss.dtype) / 0.0, m  # inf or nan

    params = model.init(jax.random.key(0))
    batch = IDS[: 2 * 9].reshape(2, 9)
    state = init_train_state(params, opt, jax.random.key(1))
    new, m = make_train_step(loss_fn, opt, donate=False)(state, batch)
    assert not bool(m["finite"])
    new, m = make_train_step(loss_fn, opt, skip_nonfinite=True, donate=False)(state, batch)
    assert not bool(m["finite"])
    assert int(new.step) == 1
    chex.assert_trees_all_equal(new.params, params)
    chex.assert_trees_all_equal(new.opt_state, state.opt_state)


# ------------------------------------------------------------------------------------------
# truncated BPTT


def _window_loss(model):
    def window_loss(params, carry, window):
        logits, (carry, _) = model.apply(params, window[:, :-1], carry=carry)
        return sequence_softmax_cross_entropy(logits, window[:, 1:], reduction="sum").sum(), carry

    return window_loss


def test_one_window_over_the_whole_sequence_is_full_bptt():
    model = sequence_model(
        jrnn.lstm(6, param_dtype=jnp.float64),
        VOCAB.size,
        vocab_size=VOCAB.size,
        embed_size=4,
        param_dtype=jnp.float64,
    )
    params = model.init(jax.random.key(0))
    seq = IDS[: 2 * 25].reshape(2, 25)
    carry = model.initial_carry(params, (2,))
    full_loss, full_grads = jax.value_and_grad(lambda p: _window_loss(model)(p, carry, seq)[0])(
        params
    )
    loss, grads, _ = tbptt_value_and_grad(_window_loss(model), params, carry, seq[None])
    _assert_reproduced((loss, grads), (full_loss, full_grads))


def test_windows_cut_the_gradient_but_carry_the_state():
    model = sequence_model(
        jrnn.gru(5, param_dtype=jnp.float64),
        VOCAB.size,
        vocab_size=VOCAB.size,
        param_dtype=jnp.float64,
    )
    params = model.init(jax.random.key(0))
    k, n = 8, 3  # three windows of 8 steps over one stream of 24 (+1) ids, batch 2
    stream = jnp.stack([IDS[: k * n + 1], IDS[100 : 100 + k * n + 1]])
    windows = jnp.stack([stream[:, i * k : (i + 1) * k + 1] for i in range(n)])
    carry0 = model.initial_carry(params, (2,))
    wl = _window_loss(model)
    loss, grads, carry = tbptt_value_and_grad(wl, params, carry0, windows)
    # by hand: each window's gradient with its incoming carry held constant
    c, want_loss, want = carry0, 0.0, jax.tree.map(jnp.zeros_like, params)
    for i in range(n):
        (l_i, c_next), g = jax.value_and_grad(wl, has_aux=True)(params, c, windows[i])
        want = jax.tree.map(jnp.add, want, g)
        want_loss += float(l_i)
        c = c_next
    np.testing.assert_allclose(float(loss), want_loss, rtol=1e-12)
    chex.assert_trees_all_close(grads, want, rtol=1e-10, atol=1e-12)
    # the carry really flowed: the final state equals reading the whole stream at once
    _, (c_full, _) = model.apply(params, stream[:, :-1])
    chex.assert_trees_all_close(carry, c_full, rtol=1e-10, atol=1e-12)
    # ...and the truncated gradient differs from full BPTT's
    full = jax.grad(lambda p: wl(p, carry0, stream)[0])(params)
    assert not np.allclose(full["rnn"]["w_hh"], grads["rnn"]["w_hh"])


def test_stream_train_step_carries_the_state_across_steps():
    model = _charlm(8)
    opt = optax.adam(1e-2)

    def loss_fn(params, carry, windows, key):
        logits, (carry, _) = model.apply(params, windows[:, :-1], carry=carry, key=key)
        loss = sequence_softmax_cross_entropy(logits, windows[:, 1:])
        return loss, (carry, {})

    step = make_train_step(chex.assert_max_traces(loss_fn, n=1), opt, has_carry=True)
    state = init_train_state(model.init(jax.random.key(0)), opt, jax.random.key(1))
    carry = model.initial_carry(state.params, (4,))
    for s in range(3):
        params_before = state.params
        window = jdata.stream_windows(IDS, 4, 10, s)
        _, (want_carry, _) = model.apply(params_before, window[:, :-1], carry=carry)
        want_carry = jax.tree.map(np.asarray, want_carry)
        state, carry, m = step(state, carry, window)
        chex.assert_trees_all_close(carry, want_carry, rtol=1e-5, atol=1e-6)
        assert bool(m["finite"])


# ------------------------------------------------------------------------------------------
# the adding problem (T = 50)


def test_lstm_learns_the_adding_problem():
    seq_len, batch = 50, 64
    model = sequence_model(jrnn.lstm(32), 1, input_size=2, readout="last")
    opt = optax.adam(optax.warmup_cosine_decay_schedule(0.0, 1e-2, 40, 400, 1e-3))

    def loss_fn(params, batch, key):
        xs, ys = batch
        o, _ = model.apply(params, xs)
        return jnp.mean((o[:, 0] - ys) ** 2), {}

    k_init, k_data, k_train = jax.random.split(jax.random.key(0), 3)
    state = init_train_state(model.init(k_init), opt, k_train)
    step = make_train_step(loss_fn, opt, clip_norm=1.0)
    make = jax.jit(lambda k: seqtasks.adding_problem(k, batch, seq_len))
    for s in range(400):
        state, _ = step(state, make(jax.random.fold_in(k_data, s)))

    def sums(params, batch):
        xs, ys = batch
        o, _ = model.apply(params, xs)
        err = o[:, 0] - ys
        const = jnp.ones_like(ys) - ys
        n = jnp.asarray(ys.shape[0], jnp.float32)
        return {"mse": (jnp.sum(err**2), n), "baseline": (jnp.sum(const**2), n)}

    val = [
        seqtasks.adding_problem(jax.random.fold_in(jax.random.key(99), i), 500, seq_len)
        for i in range(4)
    ]
    means = evaluate(make_eval_step(sums), state.params, val)
    assert abs(means["baseline"] - seqtasks.ADDING_PROBLEM_BASELINE_MSE) < 0.02
    assert means["mse"] < 0.05, means


# ------------------------------------------------------------------------------------------
# checkpoints and sampling


def test_checkpoint_round_trip_keeps_three(tmp_path):
    model = _charlm(8)
    opt = optax.adam(1e-2)
    state = init_train_state(model.init(jax.random.key(0)), opt, jax.random.key(5))
    carry = model.initial_carry(state.params, (3,))
    carry = jax.tree.map(lambda x: x + 1.5, carry)
    with Checkpointer(tmp_path / "ck") as ck:
        for s in range(1, 6):
            ck.save(
                s,
                {"train": state._replace(step=jnp.asarray(s, jnp.int32)), "carry": carry},
                {"step": s, "acc": {"loss": 0.1 * s}},
            )
        ck.wait()
        assert ck.all_steps() == [3, 4, 5]
    template = {
        "train": init_train_state(model.init(jax.random.key(9)), opt, jax.random.key(0)),
        "carry": model.initial_carry(state.params, (3,)),
    }
    with Checkpointer(tmp_path / "ck", create=False) as ck:
        tree, meta = ck.restore(template)
    assert meta == {"step": 5, "acc": {"loss": 0.5}}
    assert int(tree["train"].step) == 5
    chex.assert_trees_all_equal(tree["train"].params, state.params)
    chex.assert_trees_all_equal(tree["train"].opt_state, state.opt_state)
    chex.assert_trees_all_equal(tree["carry"], carry)
    assert jax.dtypes.issubdtype(tree["train"].key.dtype, jax.dtypes.prng_key)
    chex.assert_trees_all_equal(
        jax.random.key_data(tree["train"].key), jax.random.key_data(state.key)
    )
    with pytest.raises(FileNotFoundError):
        Checkpointer(tmp_path / "empty").restore(template)


def test_sampling_is_keyed_and_greedy_at_zero_temperature():
    model = _charlm(8)
    params = model.init(jax.random.key(0))
    prompt = jnp.asarray(VOCAB.encode("the "), jnp.int32)
    a = sample(model, params, jax.random.key(1), prompt, 20, 1.0)
    b = sample(model, params, jax.random.key(1), prompt, 20, 1.0)
    assert a.shape == (20,) and a.dtype == jnp.int32
    np.testing.assert_array_equal(a, b)
    g = sample(model, params, jax.random.key(2), prompt, 6, 0.0)
    # greedy decoding, step by step
    logits, (carry, _) = model.apply(params, prompt)
    tok = int(jnp.argmax(logits[-1]))
    want = [tok]
    for _ in range(5):
        logits, (carry, _) = model.apply(params, jnp.asarray([tok], jnp.int32), carry=carry)
        tok = int(jnp.argmax(logits[-1]))
        want.append(tok)
    assert g.tolist() == want
    batched = sample(model, params, jax.random.key(1), jnp.stack([prompt, prompt]), 5)
    assert batched.shape == (2, 5)
    with pytest.raises(ValueError, match="prompt"):
        sample(model, params, jax.random.key(1), jnp.zeros((0,), jnp.int32), 5)


def test_checkpoint_snapshots_what_it_saves(tmp_path):
    """Saves are asynchronous: mutating the metadata or donating the arrays right after
    ``save`` must not change what lands on disk."""
    model = _charlm(8)
    opt = optax.sgd(0.1)
    state = init_train_state(model.init(jax.random.key(0)), opt, jax.random.key(1))
    want = jax.tree.map(np.asarray, state.params)
    step = make_train_step(_lm_loss(model), opt)
    meta = {"acc": {"loss": 1.0, "n": 1}}
    with Checkpointer(tmp_path / "ck") as ck:
        ck.save(1, {"train": state}, meta)
        meta["acc"]["loss"] += 5.0  # the training loop keeps accumulating
        state, _ = step(state, IDS[:18].reshape(2, 9))  # donates the saved buffers
    with Checkpointer(tmp_path / "ck", create=False) as ck:
        tree, got = ck.restore({"train": state})
    assert got == {"acc": {"loss": 1.0, "n": 1}}
    chex.assert_trees_all_equal(tree["train"].params, want)


# ------------------------------------------------------------------ bad arguments


def _quadratic_loss(params, batch, key):
    return jnp.sum((params["w"] - batch) ** 2), {}


def test_train_step_checks_its_arguments():
    opt = optax.adam(1e-2)
    params = {"w": jnp.zeros((3,), jnp.float32)}
    with pytest.raises(TypeError, match="`optimizer`.*GradientTransformation"):
        make_train_step(_quadratic_loss, optax.adam)  # the factory, not an optimizer
    with pytest.raises(TypeError, match="`loss_fn`"):
        make_train_step("loss", opt)
    with pytest.raises(TypeError, match="`clip_norm`"):
        make_train_step(_quadratic_loss, opt, clip_norm="1")
    with pytest.raises(ValueError, match="`clip_norm`"):
        make_train_step(_quadratic_loss, opt, clip_norm=float("nan"))
    with pytest.raises(TypeError, match="`key`"):
        init_train_state(params, opt, 0)
    with pytest.raises(TypeError, match="`optimizer`"):
        init_train_state(params, None, jax.random.key(0))
    step = make_train_step(_quadratic_loss, opt, donate=False)
    batch = jnp.ones((3,), jnp.float32)
    with pytest.raises(TypeError, match="`state` must be a jrnn.train.TrainState"):
        step((params, opt.init(params)), batch)
    sgd_state = init_train_state(params, optax.sgd(0.1), jax.random.key(0))
    with pytest.raises(ValueError, match=r"`state.opt_state` does not match optimizer.init"):
        step(sgd_state, batch)
    other = init_train_state({"w": jnp.zeros((3,)), "b": jnp.zeros(())}, opt, jax.random.key(0))
    with pytest.raises(ValueError, match=r"`state.opt_state`"):
        step(other._replace(params=params), batch)
    # a right state trains, and a raw uint32 key is accepted
    state = init_train_state(params, opt, jax.random.PRNGKey(0))
    state, metrics = step(state, batch)
    assert int(state.step) == 1 and bool(metrics["finite"])


def test_tbptt_and_evaluate_check_their_inputs():
    loss = lambda w, h, xs: (jnp.sum(w * xs) + h, h)
    with pytest.raises(ValueError, match="`windows`.*common leading window axis"):
        tbptt_value_and_grad(loss, 1.0, 0.0, {"a": jnp.ones((2, 3)), "b": jnp.ones((3, 3))})
    with pytest.raises(ValueError, match="`windows`"):
        tbptt_value_and_grad(loss, 1.0, 0.0, jnp.ones((0, 3)))
    eval_step = make_eval_step(lambda p, b: {"loss": jnp.sum(b)})
    with pytest.raises(ValueError, match=r"'loss' must be a \(total, count\) pair"):
        evaluate(eval_step, {}, [jnp.ones(2)])
    with pytest.raises(TypeError, match="`metric_fn`"):
        make_eval_step(None)
