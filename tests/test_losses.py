"""Tests for jrnn.losses against plain NumPy (float64, log-sum-exp) computations."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jrnn import losses

# ------------------------------------------------------------------ NumPy references


def np_log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    m = logits.max(axis=-1, keepdims=True)
    return logits - (m + np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)))


def np_mask(lengths: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if lengths is None:
        return np.ones(shape, bool)
    return np.arange(shape[-1]) < np.asarray(lengths)[..., None]


def np_reduce(per_step: np.ndarray, mask: np.ndarray, reduction: str) -> np.ndarray:
    per_step = np.where(mask, per_step, 0.0)
    if reduction == "none":
        return per_step
    if reduction == "sum":
        return per_step.sum(axis=-1)
    return per_step.sum() / max(mask.sum(), 1)


def np_xent(logits, labels, mask, reduction):
    logp = np_log_softmax(logits)
    safe = np.where(mask, labels, 0)
    per_step = -np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    return np_reduce(per_step, mask, reduction)


def np_mse(preds, targets, mask, reduction):
    per_step = ((np.asarray(preds, np.float64) - targets) ** 2).mean(axis=-1)
    return np_reduce(per_step, mask, reduction)


def make_xent_inputs(seed: int, batch: tuple[int, ...], t: int, k: int, scale: float = 3.0):
    rng = np.random.default_rng(seed)
    logits = (scale * rng.standard_normal((*batch, t, k))).astype(np.float32)
    labels = rng.integers(0, k, size=(*batch, t)).astype(np.int32)
    return logits, labels


REDUCTIONS = ("none", "sum", "mean")

# Most tests call jitted losses (one compile per shape instead of one per eager op); the
# jit-versus-eager tests and the error tests also run them eagerly.
xent = jax.jit(losses.sequence_softmax_cross_entropy, static_argnames="reduction")
mse = jax.jit(losses.sequence_mse, static_argnames="reduction")

# ------------------------------------------------------------------ length_mask


def test_length_mask_values():
    mask = losses.length_mask(jnp.array([0, 2, 5, 7]), 5)
    expected = np.array(
        [[0, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=bool
    )
    assert mask.dtype == jnp.bool_
    np.testing.assert_array_equal(mask, expected)


def test_length_mask_batch_shape_and_scalar():
    lengths = np.array([[1, 3], [0, 2]], np.int32)
    assert losses.length_mask(lengths, 4).shape == (2, 2, 4)
    np.testing.assert_array_equal(losses.length_mask(jnp.int32(2), 3), [True, True, False])


def test_length_mask_rejects_float_lengths():
    with pytest.raises(TypeError, match="lengths"):
        losses.length_mask(jnp.array([1.0, 2.0]), 3)


# ------------------------------------------------------------------ cross-entropy values


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
def test_xent_matches_numpy_with_lengths(reduction, batch):
    t, k = 6, 5
    logits, labels = make_xent_inputs(0, batch, t, k)
    rng = np.random.default_rng(1)
    lengths = rng.integers(0, t + 1, size=batch).astype(np.int32)
    if batch:
        lengths.flat[0] = 0  # always include an empty sequence
    got = xent(logits, labels, lengths, reduction=reduction)
    want = np_xent(logits, labels, np_mask(lengths, labels.shape), reduction)
    assert got.shape == np.shape(want)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_xent_no_mask_matches_numpy(reduction):
    logits, labels = make_xent_inputs(2, (3,), 7, 4)
    got = xent(logits, labels, reduction=reduction)
    want = np_xent(logits, labels, np.ones(labels.shape, bool), reduction)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_xent_sum_is_negative_log_likelihood_of_sequence():
    """reduction="sum" is the seed's L = -sum_t log p(y(t) | x(1..t))."""
    logits, labels = make_xent_inputs(3, (2,), 5, 3)
    probs = np.exp(np_log_softmax(logits))
    p_labels = np.take_along_axis(probs, labels[..., None], axis=-1)[..., 0]
    want = -np.log(p_labels.prod(axis=-1))
    got = xent(logits, labels, reduction="sum")
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_xent_reductions_are_consistent():
    logits, labels = make_xent_inputs(4, (5,), 8, 6)
    lengths = jnp.array([8, 0, 3, 5, 1], jnp.int32)
    f = functools.partial(losses.sequence_softmax_cross_entropy, logits, labels, lengths)
    none, total, mean = f(reduction="none"), f(reduction="sum"), f(reduction="mean")
    np.testing.assert_allclose(none.sum(-1), total, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(total).sum() / np.asarray(lengths).sum(), mean, rtol=1e-6)
    assert np.all(np.asarray(none)[~np.asarray(losses.length_mask(lengths, 8))] == 0.0)


def test_xent_mask_equals_lengths():
    logits, labels = make_xent_inputs(5, (3,), 6, 4)
    lengths = jnp.array([6, 2, 0], jnp.int32)
    mask = losses.length_mask(lengths, 6)
    for reduction in REDUCTIONS:
        a = xent(logits, labels, lengths, reduction=reduction)
        b = xent(logits, labels, mask=mask, reduction=reduction)
        chex.assert_trees_all_equal(a, b)


def test_xent_arbitrary_mask_matches_numpy():
    logits, labels = make_xent_inputs(6, (3,), 6, 4)
    mask = np.random.default_rng(7).random(labels.shape) < 0.5
    for reduction in REDUCTIONS:
        got = xent(logits, labels, mask=mask, reduction=reduction)
        np.testing.assert_allclose(got, np_xent(logits, labels, mask, reduction), rtol=1e-5)


def test_xent_large_logits_stay_finite():
    logits, labels = make_xent_inputs(8, (3,), 5, 4, scale=1.0)
    logits = logits * np.float32(1e4)
    logits[0, 0] = [1e4, -1e4, 1e4, -1e4]
    for reduction in REDUCTIONS:
        got = xent(logits, labels, reduction=reduction)
        assert np.all(np.isfinite(got))
        want = np_xent(logits, labels, np.ones(labels.shape, bool), reduction)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-2)
    grads = jax.jit(jax.grad(lambda x: losses.sequence_softmax_cross_entropy(x, labels)))(logits)
    assert np.all(np.isfinite(grads))


def test_xent_ignores_padded_labels_out_of_range():
    logits, labels = make_xent_inputs(9, (2,), 4, 3)
    lengths = np.array([2, 4], np.int32)
    padded = labels.copy()
    padded[0, 2:] = -100  # "ignore index" markers at padding
    for reduction in REDUCTIONS:
        a = xent(logits, padded, lengths, reduction=reduction)
        b = xent(logits, labels, lengths, reduction=reduction)
        chex.assert_trees_all_close(a, b)
    g = jax.grad(lambda x: xent(x, padded, lengths))(logits)
    assert np.all(np.isfinite(g))


def test_xent_no_valid_tokens_gives_zero():
    logits, labels = make_xent_inputs(10, (3,), 4, 5)
    lengths = jnp.zeros((3,), jnp.int32)
    mean = xent(logits, labels, lengths)
    assert float(mean) == 0.0
    g = jax.grad(lambda x: xent(x, labels, lengths))(logits)
    np.testing.assert_array_equal(g, np.zeros_like(logits))
    empty = xent(jnp.zeros((0, 3, 4), jnp.float32), jnp.zeros((0, 3), jnp.int32))
    assert float(empty) == 0.0


def test_xent_half_precision_accumulates_in_float32():
    logits, labels = make_xent_inputs(11, (2,), 5, 4)
    got = xent(logits.astype(jnp.bfloat16), labels)
    assert got.dtype == jnp.float32
    want = np_xent(logits, labels, np.ones(labels.shape, bool), "mean")
    np.testing.assert_allclose(got, want, rtol=2e-2)


# ------------------------------------------------------------------ jit and gradients


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_xent_jit_matches_eager(reduction):
    logits, labels = make_xent_inputs(12, (3,), 6, 4)
    lengths = jnp.array([6, 0, 4], jnp.int32)
    f = functools.partial(losses.sequence_softmax_cross_entropy, reduction=reduction)
    chex.assert_trees_all_close(
        jax.jit(f)(logits, labels, lengths), f(logits, labels, lengths), rtol=1e-6
    )


def test_xent_gradient_matches_numpy():
    """d mean / d logits = (softmax - onehot) * mask / num_valid."""
    logits, labels = make_xent_inputs(13, (3,), 5, 4)
    lengths = np.array([5, 0, 2], np.int32)
    mask = np_mask(lengths, labels.shape)
    g = jax.jit(jax.grad(losses.sequence_softmax_cross_entropy))(logits, labels, lengths)
    probs = np.exp(np_log_softmax(logits))
    onehot = np.eye(4)[labels]
    want = (probs - onehot) * mask[..., None] / mask.sum()
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-7)


def test_xent_check_grads_float64():
    logits, labels = make_xent_inputs(14, (2,), 3, 4)
    lengths = jnp.array([3, 1], jnp.int32)
    with jax.enable_x64(True):
        x = jnp.asarray(logits, jnp.float64)
        f = lambda z: xent(z, labels, lengths, reduction="sum")
        jax.test_util.check_grads(f, (x,), order=1, modes=("rev",))


@settings(max_examples=6, deadline=None)
@given(
    batch=st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple),
    t=st.integers(1, 5),
    k=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_xent_property_random_shapes(batch, t, k, seed):
    logits, labels = make_xent_inputs(seed, batch, t, k)
    lengths = np.random.default_rng(seed).integers(0, t + 2, size=batch).astype(np.int32)
    mask = np_mask(lengths, labels.shape)
    for reduction in REDUCTIONS:
        got = xent(logits, labels, lengths, reduction=reduction)
        want = np_xent(logits, labels, mask, reduction)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ mean squared error


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("batch", [(), (3,), (2, 2)])
def test_mse_matches_numpy(reduction, batch):
    rng = np.random.default_rng(20)
    t, d = 5, 3
    preds = rng.standard_normal((*batch, t, d)).astype(np.float32)
    targets = rng.standard_normal((*batch, t, d)).astype(np.float32)
    lengths = rng.integers(0, t + 1, size=batch).astype(np.int32)
    if batch:
        lengths.flat[-1] = 0
    got = mse(preds, targets, lengths, reduction=reduction)
    want = np_mse(preds, targets, np_mask(lengths, (*batch, t)), reduction)
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_mse_mean_is_per_valid_element():
    preds = jnp.zeros((2, 3, 4), jnp.float32)
    targets = jnp.full((2, 3, 4), 2.0, jnp.float32).at[1, 2:].set(100.0)
    lengths = jnp.array([3, 2], jnp.int32)
    assert float(mse(preds, targets, lengths)) == pytest.approx(4.0)
    mask = losses.length_mask(lengths, 3)
    assert float(mse(preds, targets, mask=mask)) == pytest.approx(4.0)
    assert float(mse(preds, targets, jnp.zeros(2, jnp.int32))) == 0.0


def test_mse_jit_and_gradients():
    rng = np.random.default_rng(21)
    preds = rng.standard_normal((3, 4, 2)).astype(np.float32)
    targets = rng.standard_normal((3, 4, 2)).astype(np.float32)
    lengths = jnp.array([4, 0, 1], jnp.int32)
    f = jax.jit(losses.sequence_mse)
    chex.assert_trees_all_close(
        f(preds, targets, lengths), losses.sequence_mse(preds, targets, lengths)
    )
    g = jax.jit(jax.grad(losses.sequence_mse))(preds, targets, lengths)
    mask = np_mask(np.asarray(lengths), (3, 4))
    want = 2 * (preds - targets) * mask[..., None] / (mask.sum() * 2)
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ bad inputs


def test_float_labels_raise_type_error():
    logits, labels = make_xent_inputs(30, (2,), 3, 4)
    with pytest.raises(TypeError, match="labels"):
        losses.sequence_softmax_cross_entropy(logits, labels.astype(np.float32))


def test_int_logits_raise_type_error():
    _, labels = make_xent_inputs(30, (2,), 3, 4)
    with pytest.raises(TypeError, match="logits"):
        losses.sequence_softmax_cross_entropy(np.zeros((2, 3, 4), np.int32), labels)


def test_label_shape_mismatch_names_shapes():
    logits, labels = make_xent_inputs(31, (2,), 3, 4)
    with pytest.raises(ValueError, match=r"labels` shape.*\(2, 3\).*\(2, 4\)"):
        losses.sequence_softmax_cross_entropy(logits, np.zeros((2, 4), np.int32))
    with pytest.raises(ValueError, match="logits"):
        losses.sequence_softmax_cross_entropy(logits[0, 0], labels[0, 0])


def test_lengths_and_mask_errors():
    logits, labels = make_xent_inputs(32, (2,), 3, 4)
    lengths = jnp.array([1, 2], jnp.int32)
    with pytest.raises(ValueError, match=r"lengths` shape.*\(2,\).*\(3,\)"):
        losses.sequence_softmax_cross_entropy(logits, labels, jnp.array([1, 2, 3], jnp.int32))
    with pytest.raises(TypeError, match="lengths"):
        losses.sequence_softmax_cross_entropy(logits, labels, jnp.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="both"):
        losses.sequence_softmax_cross_entropy(
            logits, labels, lengths, mask=losses.length_mask(lengths, 3)
        )
    with pytest.raises(TypeError, match="mask"):
        losses.sequence_softmax_cross_entropy(logits, labels, mask=np.ones((2, 3), np.int32))
    with pytest.raises(ValueError, match=r"mask` shape.*\(2, 3\).*\(3, 2\)"):
        losses.sequence_softmax_cross_entropy(logits, labels, mask=np.ones((3, 2), bool))


def test_bad_reduction():
    logits, labels = make_xent_inputs(33, (2,), 3, 4)
    with pytest.raises(ValueError, match="reduction"):
        losses.sequence_softmax_cross_entropy(logits, labels, reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        losses.sequence_mse(logits, logits, reduction="max")


def test_mse_bad_inputs():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"targets` shape.*\(2, 3, 4\).*\(2, 3, 5\)"):
        losses.sequence_mse(x, np.zeros((2, 3, 5), np.float32))
    with pytest.raises(TypeError, match="targets"):
        losses.sequence_mse(x, x.astype(np.int32))
    with pytest.raises(ValueError, match="preds"):
        losses.sequence_mse(x[0, 0], x[0, 0])
    with pytest.raises(ValueError, match="lengths` shape"):
        losses.sequence_mse(x, x, jnp.array([1, 2, 3], jnp.int32))


def test_errors_raise_at_trace_time_under_jit():
    logits, labels = make_xent_inputs(34, (2,), 3, 4)
    with pytest.raises(ValueError, match="labels` shape"):
        jax.jit(losses.sequence_softmax_cross_entropy)(logits, labels[:, :2])


# ------------------------------------------------------------------ label values


def test_out_of_range_labels_raise_eagerly_naming_labels_and_k():
    logits, labels = make_xent_inputs(40, (2,), 3, 4)
    for bad in (4, -1, 100):
        wrong = labels.copy()
        wrong[1, 2] = bad
        with pytest.raises(ValueError, match=r"`labels` must lie in \[0, K=4\).*index \(1, 2\)"):
            losses.sequence_softmax_cross_entropy(logits, wrong)
        # the same label at a padded step is fine (lengths or mask)
        got = losses.sequence_softmax_cross_entropy(logits, wrong, np.array([3, 2], np.int32))
        want = np_xent(logits, labels, np_mask(np.array([3, 2]), (2, 3)), "mean")
        np.testing.assert_allclose(got, want, rtol=1e-5)
        mask = np.ones((2, 3), bool)
        mask[1, 2] = False
        got = losses.sequence_softmax_cross_entropy(logits, wrong, mask=mask)
        np.testing.assert_allclose(got, np_xent(logits, labels, mask, "mean"), rtol=1e-5)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_out_of_range_labels_under_jit_are_masked_never_nan(reduction):
    logits, labels = make_xent_inputs(41, (2,), 3, 4)
    wrong = labels.copy()
    wrong[0, 1], wrong[1, 0] = 4, -7
    valid = np.ones((2, 3), bool)
    valid[0, 1] = valid[1, 0] = False
    got = xent(logits, wrong, reduction=reduction)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, np_xent(logits, labels, valid, reduction), rtol=1e-5)
    g = jax.jit(jax.grad(losses.sequence_softmax_cross_entropy))(logits, wrong)  # traced
    assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[0, 1] == 0)
    # with lengths as well: both exclusions combine
    lengths = np.array([3, 2], np.int32)
    got = xent(logits, wrong, lengths, reduction=reduction)
    want = np_xent(logits, labels, valid & np_mask(lengths, (2, 3)), reduction)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_xent_is_log_sum_exp_stable_at_float32_extremes():
    big = np.float32(1e38)  # the true losses, 0 and 2e38, are finite in float32
    logits = np.array([[[big, 0.0, -big], [-big, -big, big]]], np.float32)
    labels = np.array([[0, 1]], np.int32)
    got = losses.sequence_softmax_cross_entropy(logits, labels, reduction="none")
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, [[0.0, 2 * float(big)]], rtol=1e-6)


def test_length_mask_num_steps_must_be_an_int():
    with pytest.raises(ValueError, match="num_steps"):
        losses.length_mask(jnp.array([1]), -1)
    with pytest.raises(ValueError, match="num_steps"):
        losses.length_mask(jnp.array([1]), 2.5)
