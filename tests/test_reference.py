"""Self-consistency tests of the NumPy reference (``jrnn.reference``).

Every hand-derived backward pass is checked against central finite differences of
its own forward pass in float64, for every cell variant, with and without ``lengths``
(including a length-0 and a full-length sequence) and with and without ``reverse``.
The semantics of ``lengths`` / ``reverse`` are also checked directly against running
each sequence on its own.

The step-by-step min cells (``min_forward``) are checked against the papers' parallel
forms (closed-form sums, Heinsen's log-space scan, powers of the LRU's ``λ``), and those
forms, the attention scores, the encoder-decoders and ``vec2seq`` against 2-step, 2-unit
examples worked out by hand below; the hand-derived attention gradients against central
finite differences.
"""

from __future__ import annotations

import math
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


# --------------------------------------------------------------------------------------
# minGRU, minLSTM (Feng et al. 2024) and the LRU (Orvieto et al. 2023): the step-by-step
# min_forward against the papers' parallel forms, and those forms worked out by hand
# --------------------------------------------------------------------------------------

N_LRU = 2
# (id, kind, log_space)
MIN_VARIANTS = [
    ("mingru", "mingru", False),
    ("mingru-log", "mingru", True),
    ("minlstm", "minlstm", False),
    ("minlstm-log", "minlstm", True),
    ("lru", "lru", False),
]


def make_min_params(rng: np.random.Generator, kind: str) -> dict[str, np.ndarray]:
    """Random params in the jrnn cells' layout (see ``min_forward``)."""
    if kind == "lru":
        n = N_LRU
        return {
            "nu_log": np.log(-0.5 * np.log(rng.uniform(0.3, 0.9, n))),  # |λ|² in (0.3, 0.9)
            "theta_log": np.log(rng.uniform(0.1, 2 * np.pi, n)),
            "gamma_log": 0.3 * rng.standard_normal(n),
            "w_ih": 0.6 * rng.standard_normal((I, 2 * n + H)),
            "w_out": 0.6 * rng.standard_normal((2 * n, H)),
        }
    blocks = 2 if kind == "mingru" else 3
    return {
        "w_ih": rng.standard_normal((I, blocks * H)),
        "b": 0.5 * rng.standard_normal(blocks * H),
    }


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize(
    ("kind", "log_space"), [v[1:] for v in MIN_VARIANTS], ids=[v[0] for v in MIN_VARIANTS]
)
def test_min_forward_matches_the_papers_parallel_forms(kind, log_space, reverse):
    rng = np.random.default_rng(11)
    params = make_min_params(rng, kind)
    xs = rng.standard_normal((B, T, I))
    h0 = rng.standard_normal((B, 2 * N_LRU if kind == "lru" else H))
    if log_space:  # the log-space form needs h_0 > 0
        h0 = np.abs(h0)
    lengths = LENGTHS["ragged"]
    ys, h_T = ref.min_forward(kind, params, xs, h0, lengths, reverse=reverse, log_space=log_space)
    want_ys, want_h = ref.min_parallel(kind, params, xs, h0, lengths, reverse, log_space)
    np.testing.assert_allclose(ys, want_ys, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h_T, want_h, rtol=1e-12, atol=1e-14)
    assert np.all(ys[1] == 0.0) and np.all(h_T[1] == h0[1])  # L = 0: untouched
    # no h0: zeros (in log space log 0 = -inf, which the scan absorbs)
    ys0, _ = ref.min_forward(kind, params, xs, None, log_space=log_space)
    np.testing.assert_allclose(
        ys0,
        ref.min_parallel(kind, params, xs, None, log_space=log_space)[0],
        rtol=1e-12,
        atol=1e-14,
    )


def test_min_parallel_forms_by_hand():
    """Two steps, two units; every number below is worked out from the papers' equations."""
    xs = np.array([[[1.0, -2.0], [3.0, 0.5]]])  # [B=1, T=2, I=2]
    h0 = np.array([[1.0, 1.0]])
    eye, zero = np.eye(2), np.zeros((2, 2))
    s = 1.0 / (1.0 + math.exp(2.0))  # g(-2) = σ(-2); g(1) = 1.5, g(3) = 3.5, g(0.5) = 1
    # minGRU: z = σ(b_z) = (1/2, 3/4), h̃ = x
    gru = {"w_z": zero, "b_z": np.array([0.0, math.log(3.0)]), "w_h": eye, "b_h": np.zeros(2)}
    # unit 0: h1 = 1/2 + 1/2, h2 = 1/2 + 3/2;  unit 1: h1 = 1/4 - 3/2, h2 = -5/16 + 3/8
    np.testing.assert_allclose(
        ref.mingru_parallel(gru, xs, h0)[0], [[1.0, -1.25], [2.0, 0.0625]], rtol=1e-14
    )
    # log space, h̃ = g(x): unit 0: h1 = 1/2 + 3/4, h2 = 5/8 + 7/4; unit 1: h1 = 1/4 + 3s/4
    h1 = 0.25 + 0.75 * s
    np.testing.assert_allclose(
        ref.mingru_parallel(gru, xs, h0, log_space=True)[0],
        [[1.25, h1], [2.375, 0.25 * h1 + 0.75]],
        rtol=1e-13,
    )
    # minLSTM: f = (1/2, 1/2), i = σ(b_i) = (1/2, 3/4): f' = (1/2, 2/5), i' = (1/2, 3/5)
    lstm = {"w_f": zero, "b_f": np.zeros(2), "w_i": zero, "b_i": np.array([0.0, math.log(3.0)])}
    lstm |= {"w_h": eye, "b_h": np.zeros(2)}
    # unit 1: h1 = 2/5 - 6/5, h2 = -8/25 + 3/10
    np.testing.assert_allclose(
        ref.minlstm_parallel(lstm, xs, h0)[0], [[1.0, -0.8], [2.0, -0.02]], rtol=1e-13
    )
    h1 = 0.4 + 0.6 * s
    np.testing.assert_allclose(
        ref.minlstm_parallel(lstm, xs, h0, log_space=True)[0],
        [[1.25, h1], [2.375, 0.4 * h1 + 0.6]],
        rtol=1e-13,
    )
    # LRU: λ = (1/2, i/2), γ = (1, 2), B = (1, 1 + i), C = (1, 1 + i), D = 1/2, x0 = (2, i)
    lru = {
        "nu_log": np.full(2, math.log(math.log(2.0))),
        "theta_log": np.array([math.log(2 * math.pi), math.log(math.pi / 2)]),
        "gamma_log": np.array([0.0, math.log(2.0)]),
        "B_re": np.array([[1.0], [1.0]]),
        "B_im": np.array([[0.0], [1.0]]),
        "C_re": np.array([[1.0, 1.0]]),
        "C_im": np.array([[0.0, 1.0]]),
        "D": np.array([[0.5]]),
    }
    ys, x_T = ref.lru_parallel(lru, np.array([[[1.0], [2.0]]]), np.array([[2.0, 1j]]))
    # unit 0: x = 1 + 1 = 2, then 1 + 2 = 3;  unit 1: x = -1/2 + (2 + 2i) = 3/2 + 2i,
    # then (i/2)(3/2 + 2i) + 2(2 + 2i) = 3 + 4.75i;  y = Re(x_0 + (1 + i) x_1) + u / 2
    np.testing.assert_allclose(x_T, [[3.0, 3.0 + 4.75j]], rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(ys[0, :, 0], [2.0, 2.25], rtol=1e-14, atol=1e-14)


# --------------------------------------------------------------------------------------
# Attention: hand-worked scores, and the hand-derived gradients against finite differences
# --------------------------------------------------------------------------------------


def test_attention_by_hand():
    e = math.e
    # dot: q = (1, 0) scores the keys (1, 0), (0, 1) as 1, 0; the third step is padding
    # (NaN: never read); a row with no valid step has zero weights and context
    values = np.array([[[1.0, 0.0], [0.0, 1.0], [np.nan, np.nan]], [[1.0, 2.0]] * 3])
    mask = np.array([[True, True, False], [False, False, False]])
    c, w = ref.attend("dot", {}, [[1.0, 0.0], [1.0, 1.0]], values, mask)
    a = e / (e + 1.0)
    np.testing.assert_allclose(w, [[a, 1 - a, 0.0], [0.0, 0.0, 0.0]], rtol=1e-14)
    np.testing.assert_allclose(c, [[a, 1 - a], [0.0, 0.0]], rtol=1e-14)
    # general: q @ w_a = (1, 1) @ [[0, 2], [1, 0]] = (1, 2), so the scores are 1, 2
    c, w = ref.attend("general", {"w_a": [[0.0, 2.0], [1.0, 0.0]]}, [[1.0, 1.0]], [np.eye(2)])
    np.testing.assert_allclose(w, [[1 / (1 + e), e / (1 + e)]], rtol=1e-14)
    np.testing.assert_allclose(c, w, rtol=1e-14)
    # additive: e_s = v · tanh(q + k_s + b) with v = (1, -1), b = (0, 1/2), q = (1/2, 0):
    # e_0 = tanh(3/2) - tanh(1/2) for k_0 = (1, 0); e_1 = tanh(1/2) - tanh(1/2) = 0
    add = {"w_q": np.eye(2), "w_k": np.eye(2), "b": [0.0, 0.5], "v": [1.0, -1.0]}
    e0 = math.tanh(1.5) - math.tanh(0.5)
    np.testing.assert_allclose(
        ref.attention_scores("additive", add, [[0.5, 0.0]], [[[1.0, 0.0], [0.0, 0.0]]]),
        [[e0, 0.0]],
        atol=1e-15,
    )
    c, w = ref.attend("additive", add, [[0.5, 0.0]], [[[1.0, 0.0], [0.0, 0.0]]])
    a = math.exp(e0) / (math.exp(e0) + 1.0)
    np.testing.assert_allclose(w, [[a, 1 - a]], rtol=1e-14)
    np.testing.assert_allclose(c, [[a, 0.0]], rtol=1e-14)


@pytest.mark.parametrize("kind", ref.ATTENTION_KINDS)
def test_attend_backward_matches_finite_differences(kind):
    rng = np.random.default_rng(12)
    Bq, S, Q, A = 3, 4, 3, 2
    E = Q if kind == "dot" else 2
    params = {
        "additive": {
            "w_q": rng.standard_normal((Q, A)),
            "w_k": rng.standard_normal((E, A)),
            "b": rng.standard_normal(A),
            "v": rng.standard_normal(A),
        },
        "general": {"w_a": rng.standard_normal((Q, E))},
        "dot": {},
    }[kind]
    query = rng.standard_normal((Bq, Q))
    values = rng.standard_normal((Bq, S, E))
    mask = np.arange(S) < np.array([[S], [2], [0]])  # full, two steps, none
    values[~mask] = 7.0  # padding: read as 0, so no gradient reaches it
    r_c, r_w = rng.standard_normal((Bq, E)), rng.standard_normal((Bq, S))

    def loss() -> float:
        c, w = ref.attend(kind, params, query, values, mask)
        return float(np.sum(c * r_c) + np.sum(w * r_w))

    dparams, dq, dv = ref.attend_backward(kind, params, query, values, mask, r_c, r_w)
    assert set(dparams) == set(params)
    for name, g in dparams.items():
        assert_close(g, numerical_grad(loss, params[name]), f"d{name}")
    assert_close(dq, numerical_grad(loss, query), "dquery")
    assert_close(dv, numerical_grad(loss, values), "dvalues")
    assert np.all(dv[~mask] == 0.0) and np.all(dq[2] == 0.0)


# --------------------------------------------------------------------------------------
# Encoder-decoders (jrnn.seq2seq, jrnn.vec2seq): 2-step, 2-unit examples worked out by hand
# --------------------------------------------------------------------------------------

# The encoder of both seq2seq examples: an rnn over one-hot tokens (vocabulary 3) with
# w_ih rows: token 1 -> unit 0, token 2 -> unit 1; unit 0 feeds unit 1 with weight 1/2.
# Source [1, 2] (length 2): h_1 = (tanh 1, 0), h_2 = (0, tanh(1 + tanh(1) / 2)).
# Source [2, ·] (length 1): h_1 = (0, tanh 1); the second token is padding.
ENCODER_BY_HAND = [
    [
        {
            "w_ih": np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),
            "w_hh": np.array([[0.0, 0.5], [0.0, 0.0]]),
            "b": np.zeros(2),
        }
    ]
]
SRC_BY_HAND, SRC_LENGTHS_BY_HAND = np.array([[1, 2], [2, 1]]), np.array([2, 1])


def test_seq2seq_forward_by_hand_without_attention():
    tanh, t1 = math.tanh, math.tanh(1.0)
    params = {
        "encoder": ENCODER_BY_HAND,
        # s_0 = (tanh(C_0 + 0.1), tanh(-C_1))
        "bridge": [{"w": np.array([[1.0, 0.0], [0.0, -1.0]]), "b": np.array([0.1, 0.0])}],
        # decoder input [onehot(y) (4), C (2)]: bos -> (0.2, 0), token 3 -> (0, 0.3), C -> C;
        # unit 1 feeds unit 0: s_t = tanh(row_y + C + (s_{t-1}[1], 0))
        "decoder": {
            "w_ih": np.array([[0, 0], [0.2, 0], [0, 0], [0, 0.3], [1, 0], [0, 1]], float),
            "w_hh": np.array([[0.0, 0.0], [1.0, 0.0]]),
            "b": np.zeros(2),
        },
        "w_o": np.array([[1.0, 0, 0, -1], [0, 2, 0, 0]]),  # o = (s_0, 2 s_1, 1/2, -s_0)
        "b_o": np.array([0.0, 0, 0.5, 0]),
    }
    rows = {1: (0.2, 0.0), 3: (0.0, 0.3)}

    def decode(context, tokens):
        s = (tanh(context[0] + 0.1), tanh(-context[1]))
        logits = []
        for y in tokens:
            s = (tanh(rows[y][0] + context[0] + s[1]), tanh(rows[y][1] + context[1]))
            logits.append([s[0], 2 * s[1], 0.5, -s[0]])
        return logits, s

    want0, s0 = decode((0.0, tanh(1.0 + 0.5 * t1)), [1, 3])
    want1, s1 = decode((0.0, t1), [3, 1])
    logits, weights, carry = ref.seq2seq_forward(
        params,
        SRC_BY_HAND,
        [[1, 3], [3, 1]],
        encoder_kind="rnn",
        decoder_kind="rnn",
        src_lengths=SRC_LENGTHS_BY_HAND,
    )
    assert weights is None
    np.testing.assert_allclose(logits, [want0, want1], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(carry, [s0, s1], rtol=1e-14, atol=1e-15)


def test_seq2seq_forward_by_hand_with_dot_attention():
    tanh, t1 = math.tanh, math.tanh(1.0)
    params = {
        "encoder": ENCODER_BY_HAND,
        # bridge="zeros"; decoder input [onehot(y) (4), s̃ (2)]: bos -> (1, 0),
        # token 3 -> (0, 1), s̃ -> s̃ / 2; no recurrent weights: s_t = tanh(row_y + s̃ / 2)
        "decoder": {
            "w_ih": np.array([[0, 0], [1, 0], [0, 0], [0, 1], [0.5, 0], [0, 0.5]], float),
            "w_hh": np.zeros((2, 2)),
            "b": np.zeros(2),
        },
        "attention": {},
        # s̃ = tanh([c, s] @ w_c + b_c) = (tanh(c_0 + s_0), tanh(c_1 + 0.1))
        "w_c": np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]),
        "b_c": np.array([0.0, 0.1]),
        "w_o": np.array([[1.0, 0, 0, 0], [0, 0, 0, 1]]),  # o = (s̃_0, 0, 0, s̃_1)
        "b_o": np.zeros(4),
    }
    rows = {1: (1.0, 0.0), 3: (0.0, 1.0)}

    def decode(keys, tokens):
        feed, logits, weights = (0.0, 0.0), [], []
        for y in tokens:
            s = (tanh(rows[y][0] + feed[0] / 2), tanh(rows[y][1] + feed[1] / 2))
            scores = [s[0] * k[0] + s[1] * k[1] for k in keys]  # dot: e = s · k
            alpha = [math.exp(e) / sum(math.exp(f) for f in scores) for e in scores]
            c = [sum(a * k[i] for a, k in zip(alpha, keys, strict=True)) for i in range(2)]
            feed = (tanh(c[0] + s[0]), tanh(c[1] + 0.1))
            logits.append([feed[0], 0.0, 0.0, feed[1]])
            weights.append(alpha + [0.0] * (2 - len(alpha)))
        return logits, weights, s

    want0, w0, s0 = decode([(t1, 0.0), (0.0, tanh(1.0 + 0.5 * t1))], [1, 3])
    want1, w1, s1 = decode([(0.0, t1)], [1, 3])  # one valid source step: weights (1, 0)
    logits, weights, carry = ref.seq2seq_forward(
        params,
        SRC_BY_HAND,
        [[1, 3], [1, 3]],
        encoder_kind="rnn",
        decoder_kind="rnn",
        src_lengths=SRC_LENGTHS_BY_HAND,
        attention="dot",
        bridge="zeros",
    )
    np.testing.assert_allclose(logits, [want0, want1], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(weights, [w0, w1], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(carry, [s0, s1], rtol=1e-14, atol=1e-15)
    assert np.all(weights[1, :, 1] == 0.0)


@pytest.mark.parametrize("condition", ["init", "input", "both"])
def test_vec2seq_forward_by_hand(condition):
    tanh, t1, v = math.tanh, math.tanh(1.0), 0.5
    # bridge: s_0 = (tanh v, tanh(1/2 - v)); decoder input [onehot(y) (4), v]: bos -> (1, 0),
    # token 3 -> (0, -1), v -> (0, 2 v); unit 1 feeds unit 0 with 1/2;  o = (s_0, s_1, 1, 0)
    w_ih = np.array([[0, 0], [1, 0], [0, 0], [0, -1], [0, 2]], float)
    params = {
        "decoder": {
            "w_ih": w_ih if condition != "init" else w_ih[:4],
            "w_hh": np.array([[0.0, 0.0], [0.5, 0.0]]),
            "b": np.zeros(2),
        },
        "bridge": [{"w": np.array([[1.0, -1.0]]), "b": np.array([0.0, 0.5])}],
        "w_o": np.array([[1.0, 0, 0, 0], [0, 1, 0, 0]]),
        "b_o": np.array([0.0, 0, 1, 0]),
    }
    if condition == "input":
        del params["bridge"]
    s = (tanh(v), tanh(0.5 - v)) if condition != "input" else (0.0, 0.0)
    extra = 2 * v if condition != "init" else 0.0
    s1 = (tanh(1.0 + s[1] / 2), tanh(extra))  # y = bos
    s2 = (tanh(s1[1] / 2), tanh(-1.0 + extra))  # y = 3
    logits, carry = ref.vec2seq_forward(
        params, [[v]], [[1, 3]], decoder_kind="rnn", condition=condition
    )
    np.testing.assert_allclose(logits, [[[*s1, 1.0, 0.0], [*s2, 1.0, 0.0]]], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(carry, [s2], rtol=1e-14, atol=1e-15)
    want = {"init": (t1, 0.0), "input": (t1, t1), "both": (t1, t1)}[condition]
    np.testing.assert_allclose(s1, want, rtol=1e-15)  # the hand values themselves
