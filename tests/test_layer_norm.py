"""Ba et al.'s layer-normalised cells and the custom gate/candidate functions.

Ground truth: the NumPy float64 reference (``jrnn.reference``, written from the equations
with a hand-derived backward pass, itself checked here against finite differences), plain
NumPy one-step computations, and finite differences of the JAX cells.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn import reference as ref
from tests.helpers import np_params, random_carry, random_params, to_ref_carry

B, T, I, H, P = 3, 5, 4, 3, 2
LENGTHS = np.array([T, 0, 2])

# (id, factory, reference kind)
LN_VARIANTS = [
    ("rnn", lambda h, **kw: jrnn.simple_rnn(h, layer_norm=True, **kw), "rnn"),
    ("lstm", lambda h, **kw: jrnn.lstm(h, layer_norm=True, **kw), "lstm"),
    (
        "lstm_peephole_proj",
        lambda h, **kw: jrnn.lstm(h, peephole=True, proj_size=P, layer_norm=True, **kw),
        "lstm",
    ),
    ("gru", lambda h, **kw: jrnn.gru(h, layer_norm=True, **kw), "gru"),
    (
        "gru_reset_after",
        lambda h, **kw: jrnn.gru(h, reset_after=True, layer_norm=True, **kw),
        "gru",
    ),
]
LN_IDS = [v[0] for v in LN_VARIANTS]

STRATEGIES = {
    "scan": dict(hoist=False, vjp="autodiff"),
    "hoisted_vjp": dict(hoist=True, vjp="hoisted"),
    "remat_step": dict(remat="step"),
    "remat_sqrt": dict(remat="sqrt"),
}


def _setup(factory, seed=0, dtype=jnp.float64):
    cell = factory(H, param_dtype=dtype)
    key = jax.random.key(seed)
    params = random_params(cell, key, I)
    xs = jax.random.normal(jax.random.fold_in(key, 2), (B, T, I), dtype)
    carry = random_carry(cell, params, jax.random.fold_in(key, 3), (B,))
    return cell, params, xs, carry


# --------------------------------------------------------------------------------------
# the reference's own backward pass against finite differences


def _ref_loss(kind, params, xs, carry, weights, lengths, reverse):
    ys, carry_t = ref.forward(kind, params, xs, carry, lengths=lengths, reverse=reverse)
    leaves = carry_t if isinstance(carry_t, tuple) else (carry_t,)
    return float(
        np.sum(weights[0] * ys)
        + sum(np.sum(w * c) for w, c in zip(weights[1:], leaves, strict=True))
    )


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("variant", LN_VARIANTS, ids=LN_IDS)
def test_reference_layer_norm_backward_matches_finite_differences(variant, reverse):
    _, _, kind = variant
    cell, params, xs, carry = _setup(variant[1])
    p = {k: np.array(v) for k, v in params.items()}  # writable copies
    xs = np.array(xs)
    c0 = jax.tree.map(np.array, to_ref_carry(kind, carry))
    rng = np.random.default_rng(0)
    ys, carry_t = ref.forward(kind, p, xs, c0, lengths=LENGTHS, reverse=reverse)
    leaves = carry_t if isinstance(carry_t, tuple) else (carry_t,)
    weights = [rng.standard_normal(ys.shape)] + [rng.standard_normal(c.shape) for c in leaves]
    dcarry = tuple(weights[1:]) if kind == "lstm" else weights[1]
    dp, dxs, dc0 = ref.backward(kind, p, xs, c0, weights[0], dcarry, LENGTHS, reverse)

    def fd(array):
        grad = np.zeros_like(array)
        for idx in np.ndindex(array.shape):
            orig = array[idx]
            array[idx] = orig + 1e-6
            up = _ref_loss(kind, p, xs, c0, weights, LENGTHS, reverse)
            array[idx] = orig - 1e-6
            down = _ref_loss(kind, p, xs, c0, weights, LENGTHS, reverse)
            array[idx] = orig
            grad[idx] = (up - down) / 2e-6
        return grad

    assert set(dp) == set(p)
    for k in p:
        np.testing.assert_allclose(dp[k], fd(p[k]), rtol=1e-5, atol=1e-8, err_msg=k)
    np.testing.assert_allclose(dxs, fd(xs), rtol=1e-5, atol=1e-8, err_msg="xs")
    c0_leaves = c0 if isinstance(c0, tuple) else (c0,)
    dc_leaves = dc0 if isinstance(dc0, tuple) else (dc0,)
    for d, c in zip(dc_leaves, c0_leaves, strict=True):
        np.testing.assert_allclose(d, fd(c), rtol=1e-5, atol=1e-8, err_msg="carry0")
    assert np.all(dxs[1] == 0) and np.all(dxs[2, 2:] == 0)  # padding gets no gradient


def test_reference_layer_norm_normalises_each_gate_block():
    """One LN-LSTM step written out by hand: per-gate statistics, gain 1, bias as shift."""
    rng = np.random.default_rng(1)
    p = {
        "w_ih": rng.standard_normal((I, 4 * H)),
        "w_hh": rng.standard_normal((H, 4 * H)),
        "b": rng.standard_normal(4 * H),
        "ln_ih_scale": np.ones(4 * H),
        "ln_hh_scale": np.ones(4 * H),
        "ln_c_scale": np.ones(H),
        "ln_c_bias": np.zeros(H),
    }
    x, h0, c0 = (
        rng.standard_normal((1, I)),
        rng.standard_normal((1, H)),
        rng.standard_normal((1, H)),
    )

    def ln(v):
        return (v - v.mean()) / np.sqrt(v.var() + 1e-5)

    ax, ah = (x @ p["w_ih"])[0], (h0 @ p["w_hh"])[0]
    a = np.concatenate(
        [ln(ax[k * H : (k + 1) * H]) + ln(ah[k * H : (k + 1) * H]) for k in range(4)]
    )
    a = a + p["b"]
    sig = lambda v: 1 / (1 + np.exp(-v))
    i, f, g, o = sig(a[:H]), sig(a[H : 2 * H]), np.tanh(a[2 * H : 3 * H]), sig(a[3 * H :])
    c = f * c0[0] + i * g
    (h_ref, c_ref), y = ref.cell_step("lstm", p, (h0, c0), x)
    np.testing.assert_allclose(c_ref[0], c, rtol=1e-12)
    np.testing.assert_allclose(y[0], o * np.tanh(ln(c)), rtol=1e-12)


# --------------------------------------------------------------------------------------
# the JAX cells against the reference: forward and gradients, every unroll strategy


@pytest.mark.parametrize("strategy", list(STRATEGIES), ids=list(STRATEGIES))
@pytest.mark.parametrize("variant", LN_VARIANTS, ids=LN_IDS)
def test_forward_and_gradients_match_reference(variant, strategy):
    _, factory, kind = variant
    cell, params, xs, carry = _setup(factory)
    reverse = strategy in ("hoisted_vjp", "remat_sqrt")
    lengths = jnp.asarray(LENGTHS)

    def run(p, x, c):
        return jrnn.unroll(
            cell, p, x, carry=c, lengths=lengths, reverse=reverse, **STRATEGIES[strategy]
        )

    (ys, carry_t), pullback = jax.vjp(run, params, xs, carry)
    ys_ref, carry_ref = ref.forward(
        kind, np_params(params), np.asarray(xs), to_ref_carry(kind, carry), LENGTHS, reverse
    )
    np.testing.assert_allclose(ys, ys_ref, rtol=1e-10, atol=1e-12)
    for a, b in zip(jax.tree.leaves(carry_t), jax.tree.leaves(carry_ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)

    key = jax.random.key(7)
    dys = jax.random.normal(key, ys.shape, ys.dtype)
    dcarry = random_carry(cell, params, jax.random.fold_in(key, 1), (B,))
    dparams, dxs, dcarry0 = pullback((dys, dcarry))
    dp_ref, dxs_ref, dc0_ref = ref.backward(
        kind,
        np_params(params),
        np.asarray(xs),
        to_ref_carry(kind, carry),
        np.asarray(dys),
        to_ref_carry(kind, dcarry),
        LENGTHS,
        reverse,
    )
    assert set(dparams) == set(dp_ref)
    for k in dp_ref:
        np.testing.assert_allclose(dparams[k], dp_ref[k], rtol=1e-9, atol=1e-11, err_msg=k)
    np.testing.assert_allclose(dxs, dxs_ref, rtol=1e-9, atol=1e-11)
    for a, b in zip(jax.tree.leaves(dcarry0), jax.tree.leaves(dc0_ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("variant", LN_VARIANTS, ids=LN_IDS)
def test_gradients_match_finite_differences(variant):
    """Directional derivatives of a scalar loss, JAX gradient against central differences."""
    cell, params, xs, carry = _setup(variant[1], seed=3)
    lengths = jnp.asarray(LENGTHS)
    w = jax.random.normal(jax.random.key(11), (B, T, cell.output_size), jnp.float64)

    def loss(p, x):
        ys, c = jrnn.unroll(cell, p, x, carry=carry, lengths=lengths)
        return jnp.sum(w * ys) + jnp.sum(jnp.sin(c.h))

    gp, gx = jax.grad(loss, argnums=(0, 1))(params, xs)
    loss_np = lambda p, x: float(loss(p, x))
    for i in range(3):
        keys = jax.random.split(jax.random.key(100 + i), len(params) + 1)
        vp = {
            k: jax.random.normal(kk, v.shape, v.dtype)
            for (k, v), kk in zip(params.items(), keys[:-1], strict=True)
        }
        vx = jax.random.normal(keys[-1], xs.shape, xs.dtype)
        eps = 1e-6
        plus = loss_np({k: params[k] + eps * vp[k] for k in params}, xs + eps * vx)
        minus = loss_np({k: params[k] - eps * vp[k] for k in params}, xs - eps * vx)
        numeric = (plus - minus) / (2 * eps)
        analytic = sum(float(jnp.vdot(gp[k], vp[k])) for k in params) + float(jnp.vdot(gx, vx))
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    # the gains are trained: their gradient is not zero
    assert (
        float(jnp.abs(gp["ln_ih_scale"]).sum()) > 0 and float(jnp.abs(gp["ln_hh_scale"]).sum()) > 0
    )


def test_stack_of_layer_norm_cells_matches_reference():
    cell = jrnn.lstm(H, layer_norm=True, param_dtype=jnp.float64)
    net = jrnn.stack(cell, num_layers=2, bidirectional=True)
    params = net.init(jax.random.key(0), I)
    params = jax.tree.map(
        lambda a: a + 0.3 * jax.random.normal(jax.random.key(5), a.shape, a.dtype), params
    )
    xs = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float64)
    ys, _ = net.apply(params, xs, lengths=jnp.asarray(LENGTHS))
    layers = [[np_params(p) for p in layer] for layer in params]
    ys_ref, _ = ref.stack_forward(
        "lstm", layers, np.asarray(xs), lengths=LENGTHS, bidirectional=True
    )
    np.testing.assert_allclose(ys, ys_ref, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------
# invariance to rescaling the weights


@pytest.mark.parametrize("variant", LN_VARIANTS, ids=LN_IDS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_outputs_invariant_to_rescaling_the_weights(variant, dtype):
    """Ba et al.: normalised pre-activations do not change when ``w_ih`` or ``w_hh`` is
    rescaled.  Only ``ε`` breaks the invariance, by about ``ε / var``: the base weights are
    large, so every block's variance dwarfs ``ε`` (more so in float64, checked tighter)."""
    factory = variant[1]
    cell = factory(8, param_dtype=dtype)
    key = jax.random.key(4)
    params = random_params(cell, key, I)
    xs = jax.random.normal(jax.random.fold_in(key, 2), (B, 6, I), dtype)
    carry = random_carry(cell, params, jax.random.fold_in(key, 3), (B,))
    big = 10 if dtype == jnp.float32 else 100
    params = {**params, "w_ih": big * params["w_ih"], "w_hh": 5 * big * params["w_hh"]}
    scaled = {**params, "w_ih": 3 * params["w_ih"], "w_hh": 0.2 * params["w_hh"]}
    ys, c = jrnn.unroll(cell, params, xs, carry=carry)
    ys_s, c_s = jrnn.unroll(cell, scaled, xs, carry=carry)
    tol = 1e-5 if dtype == jnp.float32 else 1e-7
    np.testing.assert_allclose(ys_s, ys, atol=tol, rtol=0)
    # the LSTM's c is not normalised and accumulates float32 rounding over the steps
    for a, b in zip(jax.tree.leaves(c_s), jax.tree.leaves(c), strict=True):
        np.testing.assert_allclose(a, b, atol=5 * tol, rtol=0)
    assert float(jnp.max(jnp.abs(ys))) > 0.1  # not a trivially constant output


def test_without_layer_norm_the_same_rescaling_changes_the_outputs():
    cell = jrnn.lstm(H, param_dtype=jnp.float64)
    params = random_params(cell, jax.random.key(4), I)
    xs = jax.random.normal(jax.random.key(5), (B, T, I), jnp.float64)
    scaled = {**params, "w_ih": 3 * params["w_ih"], "w_hh": 0.2 * params["w_hh"]}
    diff = jrnn.unroll(cell, params, xs)[0] - jrnn.unroll(cell, scaled, xs)[0]
    assert float(jnp.max(jnp.abs(diff))) > 1e-2


# --------------------------------------------------------------------------------------
# gate_fn and activation


def _np_hard_sigmoid(v):
    return np.clip(v + 3.0, 0.0, 6.0) / 6.0


def test_lstm_gate_fn_and_activation_match_hand_computation():
    cell = jrnn.lstm(H, gate_fn="hard_sigmoid", activation="relu", param_dtype=jnp.float64)
    params = random_params(cell, jax.random.key(0), I, scale=1.5)
    x = np.asarray(jax.random.normal(jax.random.key(1), (B, I), jnp.float64))
    carry = random_carry(cell, params, jax.random.key(2), (B,))
    p = np_params(params)
    h0, c0 = np.asarray(carry.h), np.asarray(carry.c)
    a = x @ p["w_ih"] + h0 @ p["w_hh"] + p["b"]
    i, f, o = (_np_hard_sigmoid(a[:, k * H : (k + 1) * H]) for k in (0, 1, 3))
    g = np.maximum(a[:, 2 * H : 3 * H], 0)
    c = f * c0 + i * g
    h = o * np.maximum(c, 0)
    new, y = cell.step(params, carry, jnp.asarray(x))
    np.testing.assert_allclose(new.c, c, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(y, h, rtol=1e-12, atol=1e-14)
    assert np.any((i == 0) | (i == 1))  # the hard sigmoid's flat parts are exercised
    assert "gate_fn=hard_sigmoid, activation=relu" in cell.name
    assert dict(cell.config)["gate_fn"] == "hard_sigmoid"


@pytest.mark.parametrize("reset_after", [False, True])
def test_gru_callable_gate_fn_and_activation_with_layer_norm(reset_after):
    gate = lambda v: 0.5 * (jnp.tanh(v) + 1.0)
    cell = jrnn.gru(
        H,
        reset_after=reset_after,
        layer_norm=True,
        gate_fn=gate,
        activation="identity",
        param_dtype=jnp.float64,
    )
    params = random_params(cell, jax.random.key(0), I)
    x = np.asarray(jax.random.normal(jax.random.key(1), (B, I), jnp.float64))
    carry = random_carry(cell, params, jax.random.key(2), (B,))
    p, h0 = np_params(params), np.asarray(carry.h)

    def ln(v, g):  # per gate block of H units
        blocks = v.reshape(B, -1, H)
        out = (blocks - blocks.mean(-1, keepdims=True)) / np.sqrt(
            blocks.var(-1, keepdims=True) + 1e-5
        )
        return out.reshape(v.shape) * g

    sig = lambda v: 0.5 * (np.tanh(v) + 1.0)
    gx = ln(x @ p["w_ih"], p["ln_ih_scale"]) + p["b"]
    g_hh = p["ln_hh_scale"]
    if reset_after:
        gh = ln(h0 @ p["w_hh"], g_hh)
        r, z = sig(gx[:, :H] + gh[:, :H]), sig(gx[:, H : 2 * H] + gh[:, H : 2 * H])
        n = gx[:, 2 * H :] + r * (gh[:, 2 * H :] + p["b_hn"])
    else:
        gh = ln(h0 @ p["w_hh"][:, : 2 * H], g_hh[: 2 * H])
        r, z = sig(gx[:, :H] + gh[:, :H]), sig(gx[:, H : 2 * H] + gh[:, H:])
        n = gx[:, 2 * H :] + ln((r * h0) @ p["w_hh"][:, 2 * H :], g_hh[2 * H :])
    h = (1 - z) * h0 + z * n
    _, y = cell.step(params, carry, jnp.asarray(x))
    np.testing.assert_allclose(y, h, rtol=1e-12, atol=1e-14)
    assert "gate_fn=<lambda>, activation=identity" in cell.name


def test_named_and_callable_functions_agree():
    a = jrnn.gru(H, gate_fn="sigmoid", activation="tanh")
    b = jrnn.gru(H, gate_fn=jax.nn.sigmoid, activation=jnp.tanh)
    assert a.name == b.name == jrnn.gru(H).name


# --------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: jrnn.lstm(4, gate_fn="softmax"), r"lstm: unknown `gate_fn` 'softmax'"),
        (lambda: jrnn.lstm(4, activation=3), r"lstm: `activation` must be a name or a callable"),
        (lambda: jrnn.gru(4, gate_fn=None), r"gru: `gate_fn` must be a name or a callable"),
        (lambda: jrnn.gru(4, activation="tanhh"), r"gru: unknown `activation` 'tanhh'"),
        (lambda: jrnn.simple_rnn(4, activation="swish"), r"simple_rnn: unknown `activation`"),
        (lambda: jrnn.lstm(4, layer_norm="yes"), r"lstm: `layer_norm` must be a Python bool"),
        (lambda: jrnn.gru(4, layer_norm=1), r"gru: `layer_norm` must be a Python bool"),
        (lambda: jrnn.simple_rnn(4, layer_norm=None), r"simple_rnn: `layer_norm` must be"),
    ],
)
def test_bad_options_raise_value_errors_naming_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("kind", ["simple_rnn", "lstm", "gru"])
def test_layer_norm_params_and_plain_params_are_not_interchangeable(kind):
    factory = getattr(jrnn, kind)
    plain, normed = factory(4), factory(4, layer_norm=True)
    p_plain = plain.init(jax.random.key(0), 3)
    p_normed = normed.init(jax.random.key(0), 3)
    xs = jnp.ones((2, 5, 3))
    with pytest.raises(
        ValueError,
        match=rf"unknown key 'ln_.*' in `params`.*did you mean {kind}\(layer_norm=True\)",
    ):
        jrnn.unroll(plain, p_normed, xs)
    with pytest.raises(
        ValueError, match=rf"missing key 'ln_.*did you mean {kind}\(layer_norm=False\)"
    ):
        normed.step(p_plain, normed.initial_carry(p_plain), jnp.ones(3))
    bad = {**p_normed, "ln_hh_scale": jnp.ones(7)}
    with pytest.raises(ValueError, match=r"`params\['ln_hh_scale'\]` must have shape"):
        jrnn.unroll(normed, bad, xs)


# --------------------------------------------------------------------------------------
# reduced precision


@pytest.mark.parametrize("variant", LN_VARIANTS, ids=LN_IDS)
def test_bfloat16_compute_with_float32_params_is_close(variant):
    factory = variant[1]
    cell32 = factory(8)
    cell16 = factory(8, dtype=jnp.bfloat16)
    params = random_params(cell32, jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float32)
    ys32, _ = jrnn.unroll(cell32, params, xs)
    ys16, _ = jrnn.unroll(cell16, params, xs, hoist=True, vjp="hoisted")
    assert ys16.dtype == jnp.bfloat16
    assert bool(jnp.all(jnp.isfinite(ys16.astype(jnp.float32))))
    np.testing.assert_allclose(ys16.astype(jnp.float32), ys32, atol=0.06)
    grads = jax.grad(lambda p: jnp.sum(jrnn.unroll(cell16, p, xs)[0].astype(jnp.float32)))(params)
    assert all(g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g))) for g in grads.values())


def test_block_layer_norm_statistics_in_float32_for_half_inputs():
    from jrnn.cells import block_layer_norm

    # a large common offset beside a small spread: bfloat16 statistics would lose it
    a = (jnp.arange(8.0) + 256.0).astype(jnp.bfloat16)
    out = block_layer_norm(a, jnp.ones(8, jnp.bfloat16), 2)
    v = np.asarray(a.astype(jnp.float32), np.float64).reshape(2, 4)  # bfloat16-rounded
    want = ((v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + 1e-5)).ravel()
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), want, atol=0.02)
