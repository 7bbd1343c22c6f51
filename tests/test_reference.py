"""Self-consistency tests of the NumPy reference (``jrnn.reference``).

Every hand-derived backward pass is checked against central finite differences of
its own forward pass in float64, for every cell variant, with and without ``lengths``
(including a length-0 and a full-length sequence) and with and without ``reverse``.
The semantics of ``lengths`` / ``reverse`` are also checked directly against running
each sequence on its own.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from jrnn import reference as ref

B, T, I, H, K = 3, 5, 4, 3, 6
EPS = 1e-6
RTOL, ATOL = 1e-6, 1e-8

# (kind, activation, optional extra parameter key)
VARIANTS = [
    ("rnn", "tanh", None),
    ("rnn", "relu", None),
    ("lstm", "tanh", None),
    ("lstm", "tanh", "w_peep"),
    ("gru", "tanh", None),
    ("gru", "tanh", "b_hn"),
]
VARIANT_IDS = ["rnn-tanh", "rnn-relu", "lstm", "lstm-peephole", "gru", "gru-reset-after"]
LENGTHS = {"full": None, "ragged": np.array([T, 0, 2])}


def make_params(rng: np.random.Generator, kind: str, extra: str | None, in_size: int = I):
    """Random float64 params with the library's fused layout."""
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    scale = 0.6
    params = {
        "w_ih": scale * rng.standard_normal((in_size, gates * H)),
        "w_hh": scale * rng.standard_normal((H, gates * H)),
        "b": 0.3 * rng.standard_normal(gates * H),
    }
    if extra == "w_peep":
        params["w_peep"] = scale * rng.standard_normal((3, H))
    if extra == "b_hn":
        params["b_hn"] = 0.3 * rng.standard_normal(H)
    return params


def make_carry(rng: np.random.Generator, kind: str, batch: int = B):
    if kind == "lstm":
        return (0.5 * rng.standard_normal((batch, H)), 0.5 * rng.standard_normal((batch, H)))
    return 0.5 * rng.standard_normal((batch, H))


def carry_leaves(carry) -> list[np.ndarray]:
    return list(carry) if isinstance(carry, tuple) else [carry]


def numerical_grad(f: Callable[[], float], x: np.ndarray) -> np.ndarray:
    """Central differences of the scalar ``f()`` w.r.t. every entry of ``x`` (in place)."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        orig = x[idx]
        x[idx] = orig + EPS
        f_plus = f()
        x[idx] = orig - EPS
        f_minus = f()
        x[idx] = orig
        grad[idx] = (f_plus - f_minus) / (2 * EPS)
    return grad


def assert_close(actual, desired, name: str):
    np.testing.assert_allclose(actual, desired, rtol=RTOL, atol=ATOL, err_msg=name)


def assert_same(actual, desired):
    """Equal up to rounding (BLAS may round differently for another batch size)."""
    np.testing.assert_allclose(actual, desired, rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------------------
# Elementwise helpers
# --------------------------------------------------------------------------------------


def test_sigmoid_stable_and_correct():
    x = np.array([-1000.0, -30.0, -1.0, 0.0, 1.0, 30.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = ref.sigmoid(x)
    assert np.all(np.isfinite(s))
    np.testing.assert_allclose(s[1:-1], 1.0 / (1.0 + np.exp(-x[1:-1])), rtol=1e-15)
    assert s[0] == 0.0 and s[-1] == 1.0 and s[3] == 0.5


def test_log_softmax_stable():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((4, 7))
    expected = z - np.log(np.exp(z).sum(-1, keepdims=True))
    np.testing.assert_allclose(ref.log_softmax(z), expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ref.log_softmax(z + 1e4), expected, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------------------
# Forward semantics: cell_step, lengths, reverse, stacks
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "activation", "extra"), VARIANTS, ids=VARIANT_IDS)
def test_forward_is_loop_of_cell_steps(kind, activation, extra):
    rng = np.random.default_rng(1)
    params = make_params(rng, kind, extra)
    xs = rng.standard_normal((B, T, I))
    carry0 = make_carry(rng, kind)
    ys, carry_T = ref.forward(kind, params, xs, carry0, activation=activation)
    carry = carry0
    for t in range(T):
        carry, y_t = ref.cell_step(kind, params, carry, xs[:, t], activation=activation)
        np.testing.assert_array_equal(ys[:, t], y_t)
    for a, b in zip(carry_leaves(carry_T), carry_leaves(carry), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize(("kind", "activation", "extra"), VARIANTS, ids=VARIANT_IDS)
def test_lengths_and_reverse_match_per_sequence_runs(kind, activation, extra, reverse):
    """Sequence b with length L_b behaves exactly like xs[b:b+1, :L_b] run on its own
    (reversed in time when ``reverse``), padding gives y = 0, and L_b = 0 keeps carry0."""
    rng = np.random.default_rng(2)
    params = make_params(rng, kind, extra)
    xs = rng.standard_normal((B, T, I))
    xs[2, 2:] = np.nan  # padding content must never matter
    lengths = LENGTHS["ragged"]
    carry0 = make_carry(rng, kind)
    ys, carry_T = ref.forward(
        kind, params, xs, carry0, lengths=lengths, reverse=reverse, activation=activation
    )
    assert np.all(np.isfinite(ys))
    for b, L in enumerate(lengths):
        x_b = xs[b : b + 1, :L]
        if reverse:
            x_b = x_b[:, ::-1]
        c0_b = tuple(c[b : b + 1] for c in carry0) if kind == "lstm" else carry0[b : b + 1]
        ys_b, cT_b = ref.forward(kind, params, x_b, c0_b, activation=activation)
        if reverse:
            ys_b = ys_b[:, ::-1]
        assert_same(ys[b, :L], ys_b[0])
        np.testing.assert_array_equal(ys[b, L:], 0.0)
        for got, want in zip(carry_leaves(carry_T), carry_leaves(cT_b), strict=True):
            assert_same(got[b], want[0])
    # the length-0 sequence returns its initial carry
    for got, want in zip(carry_leaves(carry_T), carry_leaves(carry0), strict=True):
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_stack_forward_composes_forward(kind):
    rng = np.random.default_rng(3)
    lengths = LENGTHS["ragged"]
    xs = rng.standard_normal((B, T, I))
    layers = (
        (make_params(rng, kind, None), make_params(rng, kind, None)),
        (make_params(rng, kind, None, 2 * H), make_params(rng, kind, None, 2 * H)),
    )
    carries0 = tuple((make_carry(rng, kind), make_carry(rng, kind)) for _ in layers)
    ys, carries_T = ref.stack_forward(
        kind, layers, xs, carries0, lengths=lengths, bidirectional=True
    )
    assert ys.shape == (B, T, 2 * H)
    inputs = xs
    for layer, (p_fwd, p_bwd) in enumerate(layers):
        y_f, c_f = ref.forward(kind, p_fwd, inputs, carries0[layer][0], lengths=lengths)
        y_b, c_b = ref.forward(
            kind, p_bwd, inputs, carries0[layer][1], lengths=lengths, reverse=True
        )
        inputs = np.concatenate([y_f, y_b], axis=-1)
        for got, want in zip(
            carry_leaves(carries_T[layer][0]) + carry_leaves(carries_T[layer][1]),
            carry_leaves(c_f) + carry_leaves(c_b),
            strict=True,
        ):
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ys, inputs)

    # one layer, one direction, zero carries == forward from zeros
    ys1, carries1 = ref.stack_forward(kind, (layers[0][:1],), xs)
    ys_ref, c_ref = ref.forward(kind, layers[0][0], xs, None)
    np.testing.assert_array_equal(ys1, ys_ref)
    assert len(carries1) == 1 and len(carries1[0]) == 1
    for got, want in zip(carry_leaves(carries1[0][0]), carry_leaves(c_ref), strict=True):
        np.testing.assert_array_equal(got, want)


def test_bad_arguments_raise():
    rng = np.random.default_rng(4)
    params = make_params(rng, "lstm", None)
    xs = rng.standard_normal((B, T, I))
    with pytest.raises(ValueError, match="kind"):
        ref.forward("elman", params, xs, None)
    with pytest.raises(ValueError, match="lengths"):
        ref.forward("lstm", params, xs, None, lengths=np.array([1, 2, T + 1]))
    with pytest.raises(ValueError, match="xs"):
        ref.forward("lstm", params, xs[0], None)
    with pytest.raises(ValueError, match="unknown"):
        ref.forward("lstm", {**params, "b_hn": np.zeros(H)}, xs, None)


# --------------------------------------------------------------------------------------
# BPTT vs finite differences
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("lengths_id", list(LENGTHS))
@pytest.mark.parametrize(("kind", "activation", "extra"), VARIANTS, ids=VARIANT_IDS)
def test_backward_matches_finite_differences(kind, activation, extra, lengths_id, reverse):
    rng = np.random.default_rng(5)
    lengths = LENGTHS[lengths_id]
    params = make_params(rng, kind, extra)
    xs = rng.standard_normal((B, T, I))
    carry0 = make_carry(rng, kind)
    carry_leaves0 = carry_leaves(carry0)
    G_y = rng.standard_normal((B, T, H))
    G_c = [rng.standard_normal((B, H)) for _ in carry_leaves0]

    def as_carry(leaves):
        return tuple(leaves) if kind == "lstm" else leaves[0]

    def loss() -> float:
        ys, carry_T = ref.forward(
            kind, params, xs, as_carry(carry_leaves0), lengths, reverse, activation
        )
        return float(
            np.sum(ys * G_y)
            + sum(np.sum(c * g) for c, g in zip(carry_leaves(carry_T), G_c, strict=True))
        )

    dparams, dxs, dcarry0 = ref.backward(
        kind, params, xs, carry0, G_y, as_carry(G_c), lengths, reverse, activation
    )
    assert set(dparams) == set(params)
    for key in params:
        assert dparams[key].shape == params[key].shape
        assert_close(dparams[key], numerical_grad(loss, params[key]), f"d{key}")
    assert dxs.shape == xs.shape
    assert_close(dxs, numerical_grad(loss, xs), "dxs")
    assert isinstance(dcarry0, tuple) == (kind == "lstm")
    for i, (d, c) in enumerate(zip(carry_leaves(dcarry0), carry_leaves0, strict=True)):
        assert_close(d, numerical_grad(loss, c), f"dcarry0[{i}]")

    if lengths is not None:
        # padded inputs get no gradient; the length-0 sequence passes dcarry_T through
        for b, L in enumerate(lengths):
            np.testing.assert_array_equal(dxs[b, L:], 0.0)
        for d, g in zip(carry_leaves(dcarry0), G_c, strict=True):
            np.testing.assert_array_equal(d[1], g[1])


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_backward_default_dcarry_is_zero(kind):
    rng = np.random.default_rng(6)
    params = make_params(rng, kind, None)
    xs = rng.standard_normal((B, T, I))
    carry0 = make_carry(rng, kind)
    dys = rng.standard_normal((B, T, H))
    zeros = ref.forward(kind, params, xs, carry0)[1]
    zeros = tuple(np.zeros_like(z) for z in zeros) if kind == "lstm" else np.zeros_like(zeros)
    got = ref.backward(kind, params, xs, carry0, dys)
    want = ref.backward(kind, params, xs, carry0, dys, zeros)
    for key in params:
        np.testing.assert_array_equal(got[0][key], want[0][key])
    np.testing.assert_array_equal(got[1], want[1])


# --------------------------------------------------------------------------------------
# The seed's Elman network
# --------------------------------------------------------------------------------------


def make_elman(rng: np.random.Generator, T_: int = T):
    return dict(
        U=0.6 * rng.standard_normal((H, I)),
        V=0.6 * rng.standard_normal((K, H)),
        W=0.6 * rng.standard_normal((H, H)),
        b=0.3 * rng.standard_normal(H),
        c=0.3 * rng.standard_normal(K),
        xs=rng.standard_normal((T_, I)),
        h0=0.5 * rng.standard_normal(H),
    )


def test_elman_bptt_matches_finite_differences():
    rng = np.random.default_rng(7)
    args = make_elman(rng)
    targets = rng.integers(0, K, size=T)

    def loss() -> float:
        return ref.elman_loss(**args, targets=targets)

    grads = ref.elman_bptt(**args, targets=targets)
    assert set(grads) == {"U", "V", "W", "b", "c", "h0"}
    for name, g in grads.items():
        assert g.shape == args[name].shape
        assert_close(g, numerical_grad(loss, args[name]), f"d{name}")


def test_elman_matches_rnn_cell():
    """The column-vector Elman recurrence is the row-vector rnn with w_ih = Uᵀ, w_hh = Wᵀ,
    and its BPTT agrees with ``backward`` fed dL/dh(t) = Vᵀ ∇o(t)."""
    rng = np.random.default_rng(8)
    args = make_elman(rng)
    targets = rng.integers(0, K, size=T)
    out = ref.elman_forward(**args)
    np.testing.assert_allclose(out["yhat"].sum(-1), 1.0, rtol=1e-14)
    loss = ref.elman_loss(**args, targets=targets)
    np.testing.assert_allclose(loss, -np.log(out["yhat"][np.arange(T), targets]).sum())

    params = {"w_ih": args["U"].T, "w_hh": args["W"].T, "b": args["b"]}
    ys, h_T = ref.forward("rnn", params, args["xs"][None], args["h0"][None])
    np.testing.assert_allclose(ys[0], out["h"], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(out["o"], out["h"] @ args["V"].T + args["c"], rtol=1e-14)

    grad_o = out["yhat"].copy()
    grad_o[np.arange(T), targets] -= 1.0
    dparams, dxs, dh0 = ref.backward(
        "rnn", params, args["xs"][None], args["h0"][None], (grad_o @ args["V"])[None]
    )
    grads = ref.elman_bptt(**args, targets=targets)
    np.testing.assert_allclose(grads["U"], dparams["w_ih"].T, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads["W"], dparams["w_hh"].T, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads["b"], dparams["b"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads["h0"], dh0[0], rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------------------
# Sequence losses
# --------------------------------------------------------------------------------------


def test_sequence_cross_entropy_with_lengths():
    rng = np.random.default_rng(9)
    logits = rng.standard_normal((B, T, K))
    labels = rng.integers(0, K, size=(B, T))
    lengths = LENGTHS["ragged"]
    labels[2, 2:] = -100  # padding labels are ignored
    per_seq, mean = ref.sequence_cross_entropy(logits, labels, lengths)
    expected = np.zeros(B)
    for b, L in enumerate(lengths):
        for t in range(L):
            p = np.exp(logits[b, t]) / np.exp(logits[b, t]).sum()
            expected[b] -= np.log(p[labels[b, t]])
    np.testing.assert_allclose(per_seq, expected, rtol=1e-12)
    np.testing.assert_allclose(mean, expected.sum() / lengths.sum(), rtol=1e-12)
    assert per_seq.shape == (B,) and np.ndim(mean) == 0

    labels[2, 2:] = 0
    full, full_mean = ref.sequence_cross_entropy(logits, labels)
    np.testing.assert_allclose(full_mean, full.sum() / (B * T), rtol=1e-12)
    _, empty_mean = ref.sequence_cross_entropy(logits, labels, np.zeros(B, dtype=int))
    assert empty_mean == 0.0


def test_sequence_mse_with_lengths():
    rng = np.random.default_rng(10)
    D = 2
    preds = rng.standard_normal((B, T, D))
    targets = rng.standard_normal((B, T, D))
    lengths = LENGTHS["ragged"]
    per_seq, mean = ref.sequence_mse(preds, targets, lengths)
    expected = np.array(
        [((preds[b, :L] - targets[b, :L]) ** 2).sum() for b, L in enumerate(lengths)]
    )
    np.testing.assert_allclose(per_seq, expected, rtol=1e-12)
    np.testing.assert_allclose(mean, expected.sum() / (lengths.sum() * D), rtol=1e-12)
    full, full_mean = ref.sequence_mse(preds, targets)
    np.testing.assert_allclose(full_mean, ((preds - targets) ** 2).mean(), rtol=1e-12)
    np.testing.assert_allclose(full, ((preds - targets) ** 2).sum(axis=(1, 2)), rtol=1e-12)
