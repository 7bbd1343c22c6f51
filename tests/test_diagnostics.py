"""jrnn.diagnostics against independent truths: hand-written Python loops with explicit
per-step perturbations differentiated one h_t at a time, ``jax.jacfwd`` + ``numpy.linalg.norm``
for the Jacobians, a linear RNN with known gradient decay, and NumPy reference gate values."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn import diagnostics, reference
from jrnn.diagnostics import (
    gate_saturation,
    jacobian_product_norms,
    state_grad_norms,
    step_jacobian_norms,
)
from tests.helpers import random_params

F64 = jnp.float64
I, H, T, B = 3, 4, 6, 2

CELLS = {
    "rnn_tanh": lambda: jrnn.simple_rnn(H, param_dtype=F64),
    "lstm": lambda: jrnn.lstm(H, param_dtype=F64),
    "lstm_peephole": lambda: jrnn.lstm(H, peephole=True, param_dtype=F64),
    "lstm_proj": lambda: jrnn.lstm(H, proj_size=2, param_dtype=F64),
    "gru": lambda: jrnn.gru(H, param_dtype=F64),
    "gru_reset_after": lambda: jrnn.gru(H, reset_after=True, param_dtype=F64),
}


def setup(name, scale=0.7, seed=0):
    cell = CELLS[name]()
    key = jax.random.key(seed)
    params = random_params(cell, key, I, scale=scale)
    xs = jax.random.normal(jax.random.fold_in(key, 7), (B, T, I), F64)
    return cell, params, xs


def weighted_loss(ys):
    """A loss that reads every output step with a different weight."""
    w = (0.5 + 0.25 * jnp.arange(ys.shape[-2], dtype=ys.dtype))[:, None]
    return jnp.sum(w * jnp.sin(ys) + 0.3 * w * ys**2)


def loop_outputs(cell, params, xs, eps):
    """Python loop over time (no scan) that adds ``eps[t]`` to ``h`` (and ``y_t = h_t``)
    right after step ``t``."""
    carry = cell.initial_carry(params, xs.shape[:-2])
    ys = []
    for t in range(xs.shape[-2]):
        carry, y = cell.step(params, carry, xs[..., t, :])
        carry = carry._replace(h=carry.h + eps[t])
        ys.append(y + eps[t])
    return jnp.stack(ys, axis=-2)


def loop_grad_norms(cell, params, xs, loss_fn):
    """‖∂L/∂h_t‖ per batch element ``[*batch, T]``: the gradient with respect to the explicit
    per-step perturbations of the loop."""
    h_shape = cell.initial_carry(params, xs.shape[:-2]).h.shape
    eps = jnp.zeros((xs.shape[-2],) + h_shape, F64)
    g = jax.grad(lambda e: loss_fn(loop_outputs(cell, params, xs, e)))(eps)
    return np.moveaxis(np.linalg.norm(np.asarray(g), axis=-1), 0, -1)


# --------------------------------------------------------------------------------------
# state_grad_norms


@pytest.mark.parametrize("name", list(CELLS))
def test_state_grad_norms_match_per_step_perturbation_loop(name):
    cell, params, xs = setup(name)
    got = state_grad_norms(cell, params, xs, weighted_loss)
    assert got.shape == (B, T)
    np.testing.assert_allclose(got, loop_grad_norms(cell, params, xs, weighted_loss), rtol=1e-10)


def test_state_grad_norms_match_finite_differences():
    cell, params, xs = setup("lstm")
    got = np.asarray(state_grad_norms(cell, params, xs[0], weighted_loss))
    eps = 1e-6
    for t0 in (0, 3, T - 1):
        g = np.zeros(H)
        for k in range(H):
            e = jnp.zeros((T, H), F64).at[t0, k].set(eps)
            up = weighted_loss(loop_outputs(cell, params, xs[0], e))
            down = weighted_loss(loop_outputs(cell, params, xs[0], -e))
            g[k] = (up - down) / (2 * eps)
        np.testing.assert_allclose(got[t0], np.linalg.norm(g), rtol=1e-7)


@pytest.mark.parametrize("s", [0.9, 1.1])
def test_linear_rnn_gradient_decays_like_s_to_the_span(s):
    """w_hh = s·Q (Q orthogonal), identity activation, L = w·h_T: ‖∂L/∂h_t‖ = s^{T-1-t}‖w‖."""
    n, steps = 8, 30
    cell = jrnn.simple_rnn(n, activation="identity", param_dtype=F64)
    key = jax.random.key(3)
    params = cell.init(key, 2)
    q = jax.nn.initializers.orthogonal()(jax.random.fold_in(key, 1), (n, n), F64)
    params = {**params, "w_hh": s * q}
    xs = jax.random.normal(jax.random.fold_in(key, 2), (steps, 2), F64)
    w = jax.random.normal(jax.random.fold_in(key, 4), (n,), F64)
    got = state_grad_norms(cell, params, xs, lambda ys: ys[-1] @ w)
    want = s ** np.arange(steps - 1, -1, -1.0) * np.linalg.norm(w)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    if s < 1:
        return
    prod = jacobian_product_norms(cell, params, xs)
    np.testing.assert_allclose(prod.norms, s ** np.arange(steps - 1, -1, -1.0), rtol=1e-12)
    np.testing.assert_allclose(prod.lyapunov[:-1], np.log(s), rtol=1e-10)
    assert float(prod.lyapunov[-1]) == 0.0
    np.testing.assert_allclose(step_jacobian_norms(cell, params, xs), s, rtol=1e-12)


def test_lengths_zero_padding_and_equal_trimmed_runs():
    cell, params, xs = setup("lstm")
    lengths = jnp.array([T, 3], jnp.int32)
    np.testing.assert_allclose(  # the loop's padding-free sequence: no difference
        state_grad_norms(cell, params, xs, weighted_loss, lengths=jnp.array([T, T], jnp.int32)),
        loop_grad_norms(cell, params, xs, weighted_loss),
        rtol=1e-10,
    )
    got = np.asarray(state_grad_norms(cell, params, xs, weighted_loss, lengths=lengths))
    jac = np.asarray(step_jacobian_norms(cell, params, xs, lengths=lengths, num_iters=300))
    prod = jacobian_product_norms(cell, params, xs, lengths=lengths)
    for b, n in enumerate(np.asarray(lengths)):
        trimmed = xs[b, :n]
        np.testing.assert_allclose(
            got[b, :n], state_grad_norms(cell, params, trimmed, weighted_loss), rtol=1e-10
        )
        np.testing.assert_allclose(
            jac[b, :n], step_jacobian_norms(cell, params, trimmed, num_iters=300), rtol=1e-8
        )
        want = jacobian_product_norms(cell, params, trimmed)
        np.testing.assert_allclose(prod.norms[b, :n], want.norms, rtol=1e-10)
        np.testing.assert_allclose(prod.lyapunov[b, :n], want.lyapunov, rtol=1e-10, atol=1e-14)
        for a in (got, jac, prod.norms, prod.lyapunov):
            assert np.all(np.asarray(a)[b, n:] == 0.0)


def test_works_under_jit():
    cell, params, xs = setup("gru")
    lengths = jnp.array([4, T], jnp.int32)
    f = jax.jit(lambda p, x, n: state_grad_norms(cell, p, x, weighted_loss, lengths=n))
    np.testing.assert_allclose(
        f(params, xs, lengths),
        state_grad_norms(cell, params, xs, weighted_loss, lengths=lengths),
        rtol=1e-12,
    )
    g = jax.jit(lambda p, x, n: jacobian_product_norms(cell, p, x, lengths=n))
    np.testing.assert_allclose(
        g(params, xs, lengths).norms,
        jacobian_product_norms(cell, params, xs, lengths=lengths).norms,
        rtol=1e-12,
    )
    s = jax.jit(lambda p, x: gate_saturation(cell, p, x)["z"].high)(params, xs)
    np.testing.assert_allclose(s, gate_saturation(cell, params, xs)["z"].high)


# --------------------------------------------------------------------------------------
# stacks


def loop_stack_outputs(stk, params, xs, eps):
    """A bidirectional stack by hand: Python loops, the backward direction reading positions
    T-1 .. 0; adds ``eps[layer][d][t]`` to ``h`` of that layer and direction after it read
    position ``t``."""
    cell, inputs = stk.cell, xs
    for layer, layer_params in enumerate(params):
        outs = []
        for d, p in enumerate(layer_params):
            carry = cell.initial_carry(p, xs.shape[:-2])
            ys = [None] * xs.shape[-2]
            order = range(xs.shape[-2]) if d == 0 else reversed(range(xs.shape[-2]))
            for t in order:
                carry, y = cell.step(p, carry, inputs[..., t, :])
                carry = carry._replace(h=carry.h + eps[layer, d, t])
                ys[t] = y + eps[layer, d, t]
            outs.append(jnp.stack(ys, axis=-2))
        inputs = jnp.concatenate(outs, axis=-1)
    return inputs


def test_bidirectional_stack_matches_hand_loop():
    cell = jrnn.gru(3, param_dtype=F64)
    stk = jrnn.stack(cell, num_layers=2, bidirectional=True)
    key = jax.random.key(5)
    params = stk.init(key, I)
    xs = jax.random.normal(jax.random.fold_in(key, 1), (B, 4, I), F64)
    eps = jnp.zeros((2, 2, 4, B, 3), F64)
    ys = loop_stack_outputs(stk, params, xs, eps)
    np.testing.assert_allclose(ys, stk.apply(params, xs)[0], rtol=1e-12)
    g = jax.grad(lambda e: weighted_loss(loop_stack_outputs(stk, params, xs, e)))(eps)
    want = np.moveaxis(np.linalg.norm(np.asarray(g), axis=-1), 2, -1)  # [L, D, B, T]
    got = state_grad_norms(stk, params, xs, weighted_loss)
    assert got.shape == (2, 2, B, 4)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_one_layer_stack_equals_cell_with_lengths():
    cell, params, xs = setup("lstm")
    stk = jrnn.stack(cell, num_layers=1)
    lengths = jnp.array([2, 5], jnp.int32)
    got = state_grad_norms(stk, ((params,),), xs, weighted_loss, lengths=lengths)
    want = state_grad_norms(cell, params, xs, weighted_loss, lengths=lengths)
    assert got.shape == (1, 1, B, T)
    np.testing.assert_allclose(got[0, 0], want, rtol=1e-12)


# --------------------------------------------------------------------------------------
# Jacobians


def loop_carries(cell, params, xs):
    """Carries before every step, by a Python loop."""
    carry = cell.initial_carry(params, ())
    out = []
    for t in range(xs.shape[0]):
        out.append(carry)
        carry, _ = cell.step(params, carry, xs[t])
    return out


@pytest.mark.parametrize("name", list(CELLS))
def test_step_jacobian_norms_match_jacfwd(name):
    cell, params, xs = setup(name, scale=0.9)
    x = xs[1, :4]
    got_h = np.asarray(step_jacobian_norms(cell, params, x, num_iters=1000))
    got_c = np.asarray(step_jacobian_norms(cell, params, x, wrt="carry", num_iters=1000))
    for t, c in enumerate(loop_carries(cell, params, x)):
        jh = jax.jacfwd(lambda h, c=c, t=t: cell.step(params, c._replace(h=h), x[t])[0].h)(c.h)
        np.testing.assert_allclose(got_h[t], np.linalg.norm(np.asarray(jh), 2), rtol=1e-8)
        flat0, unravel = jax.flatten_util.ravel_pytree(c)
        step = lambda v, t=t, unravel=unravel: cell.step(params, unravel(v), x[t])[0]
        jc = jax.jacfwd(lambda v, step=step: jax.flatten_util.ravel_pytree(step(v))[0])(flat0)
        np.testing.assert_allclose(got_c[t], np.linalg.norm(np.asarray(jc), 2), rtol=1e-7)
    if "lstm" not in name:  # the carry is h alone
        np.testing.assert_allclose(got_h, got_c, rtol=1e-8)


@pytest.mark.parametrize("dtype, rtol", [(jnp.float64, 5e-6), (jnp.float32, 1e-4)])
def test_step_jacobian_norms_with_close_top_singular_values(dtype, rtol):
    """σ₂/σ₁ = 0.997: 30 rounds of power iteration read ~0.2% low; "exact" (the default at
    this size) matches numpy.linalg.norm(jacfwd, 2) and "power" iterates to its tolerance."""
    cell = jrnn.simple_rnn(5, param_dtype=dtype)
    key = jax.random.key(0)
    q = jax.nn.initializers.orthogonal()(jax.random.fold_in(key, 1), (5, 5), dtype)
    sv = jnp.array([1.0, 0.997, 0.5, 0.3, 0.1], dtype)
    params = {**cell.init(key, 2), "w_hh": q @ jnp.diag(sv) @ q.T}
    xs = 0.1 * jax.random.normal(jax.random.fold_in(key, 2), (3, 2), dtype)
    want, c = [], cell.initial_carry(params, ())
    for t in range(3):
        j = jax.jacfwd(lambda h, c=c, t=t: cell.step(params, c._replace(h=h), xs[t])[0].h)(c.h)
        want.append(np.linalg.norm(np.asarray(j, np.float64), 2))
        c, _ = cell.step(params, c, xs[t])
    exact = step_jacobian_norms(cell, params, xs)
    np.testing.assert_allclose(exact, want, rtol=1e-12 if dtype == jnp.float64 else 1e-6)
    power = step_jacobian_norms(cell, params, xs, method="power")
    np.testing.assert_allclose(power, want, rtol=rtol)
    assert np.all(np.asarray(power) <= np.asarray(want) * (1 + 1e-6))  # from below
    short = step_jacobian_norms(cell, params, xs, method="power", num_iters=30)
    assert np.max(np.abs(np.asarray(short) / want - 1)) > 1e-3  # what a fixed 30 rounds gave


@pytest.mark.parametrize("name", ["rnn_tanh", "lstm_peephole", "lstm_proj", "gru"])
def test_jacobian_product_norms_match_jacfwd(name):
    cell, params, xs = setup(name, scale=0.9)
    x = xs[0]
    got = jacobian_product_norms(cell, params, x)
    carries = loop_carries(cell, params, x) + [None]

    def h_last(h, t):  # h after step t replaced by h, then steps t+1 .. T-1
        carry = carries[t + 1] if t + 1 < T else None
        if carry is None:
            return h
        carry = carry._replace(h=h)
        for k in range(t + 1, T):
            carry, _ = cell.step(params, carry, x[k])
        return carry.h

    for t in range(T):
        start = carries[t + 1].h if t + 1 < T else jnp.zeros(cell.output_size, F64)
        want = np.linalg.norm(np.asarray(jax.jacfwd(lambda h, t=t: h_last(h, t))(start)), 2)
        np.testing.assert_allclose(got.norms[t], want, rtol=1e-10)
        if t < T - 1:
            np.testing.assert_allclose(got.lyapunov[t], np.log(want) / (T - 1 - t), rtol=1e-9)


# --------------------------------------------------------------------------------------
# gate saturation


def reference_gates(kind, params, xs, activation="tanh"):
    """{gate: [B, T, H]} from jrnn.reference's float64 NumPy steps."""
    p = {k: np.asarray(v) for k, v in params.items()}
    xs = np.asarray(xs)
    h = np.zeros((xs.shape[0], p["w_hh"].shape[0]))
    c = np.zeros((xs.shape[0], p["w_hh"].shape[1] // 4)) if kind == "lstm" else None
    out: dict[str, list] = {}
    for t in range(xs.shape[1]):
        if kind == "rnn":
            h, cache = reference._rnn_step(p, h, xs[:, t], activation)
            gates = {activation: cache["h_t"]}
        elif kind == "lstm":
            (h, c), cache = reference._lstm_step(p, (h, c), xs[:, t])
            gates = {g: cache[f"{g}_t"] for g in "ifgo"}
        else:
            h, cache = reference._gru_step(p, h, xs[:, t])
            gates = {"r": cache["r_t"], "z": cache["z_t"], "n": cache["n_t"]}
        for g, v in gates.items():
            out.setdefault(g, []).append(v)
    return {g: np.stack(v, axis=1) for g, v in out.items()}


@pytest.mark.parametrize(
    "name,kind",
    [
        ("rnn_tanh", "rnn"),
        ("lstm", "lstm"),
        ("lstm_peephole", "lstm"),
        ("lstm_proj", "lstm"),
        ("gru", "gru"),
        ("gru_reset_after", "gru"),
    ],
)
def test_gate_saturation_matches_reference_gates(name, kind):
    cell, params, xs = setup(name, scale=2.5)
    xs = 2.0 * xs
    lengths = np.array([T, 4])
    got = gate_saturation(cell, params, xs, lengths=jnp.asarray(lengths, jnp.int32))
    want = reference_gates(kind, params, xs)
    assert sorted(got) == sorted(want)
    valid = np.arange(T)[None, :] < lengths[:, None]  # [B, T]
    for g, v in want.items():
        kind_g = "tanh" if g in ("g", "n", "tanh") else "sigmoid"
        assert got[g].kind == kind_g
        lo = -0.95 if kind_g == "tanh" else 0.05
        for side, hit in (("low", v < lo), ("high", v > 0.95)):
            frac = hit.mean(axis=-1)  # [B, T]
            expect = (frac * valid).sum(0) / valid.sum(0)
            np.testing.assert_allclose(getattr(got[g], side), expect, atol=1e-12)
        np.testing.assert_allclose(got[g].total, got[g].low + got[g].high)
    # the test exercises saturation: some gate is saturated somewhere
    assert max(float(s.total.max()) for s in got.values()) > 0.1


_NP_FNS = {
    "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)),
    "hard_sigmoid": lambda v: np.clip(v + 3.0, 0.0, 6.0) / 6.0,
    "tanh": np.tanh,
    "relu": lambda v: np.maximum(v, 0.0),
}


def _np_ln(v, gain, blocks):
    """Per-block layer norm (population variance, ε = 1e-5) times the gain, NumPy."""
    u = v.reshape(v.shape[0], blocks, -1)
    u = (u - u.mean(-1, keepdims=True)) / np.sqrt(u.var(-1, keepdims=True) + 1e-5)
    return u.reshape(v.shape) * gain


def direct_gates(kind, params, xs, gate_fn, activation, ln):
    """{gate: [B, T, H]} computed directly in NumPy from the cell equations, with layer
    norm and the named functions (no jrnn code)."""
    p = {k: np.asarray(v) for k, v in params.items()}
    xs = np.asarray(xs)
    sig, act = _NP_FNS[gate_fn], _NP_FNS[activation]
    norm = _np_ln if ln else (lambda v, g, k: v)
    ones = lambda n: np.ones(n)
    n_b = xs.shape[0]
    h = np.zeros((n_b, H))
    c = np.zeros((n_b, H))
    out: dict[str, list] = {}
    for t in range(xs.shape[1]):
        x = xs[:, t]
        if kind == "rnn":
            h = act(
                norm(x @ p["w_ih"], p.get("ln_ih_scale", ones(H)), 1)
                + p["b"]
                + norm(h @ p["w_hh"], p.get("ln_hh_scale", ones(H)), 1)
            )
            gates = {activation: h}
        elif kind == "lstm":
            z = (
                norm(x @ p["w_ih"], p.get("ln_ih_scale"), 4)
                + p["b"]
                + norm(h @ p["w_hh"], p.get("ln_hh_scale"), 4)
            )
            a_i, a_f, a_g, a_o = (z[:, k * H : (k + 1) * H] for k in range(4))
            peep = p.get("w_peep", np.zeros((3, H)))
            i, f = sig(a_i + peep[0] * c), sig(a_f + peep[1] * c)
            g = act(a_g)
            c = f * c + i * g
            o = sig(a_o + peep[2] * c)
            c_out = norm(c, p.get("ln_c_scale"), 1) + p.get("ln_c_bias", 0.0)
            h = o * act(c_out)
            gates = {"i": i, "f": f, "g": g, "o": o}
        else:
            gx = norm(x @ p["w_ih"], p.get("ln_ih_scale"), 3) + p["b"]
            g_hh = p.get("ln_hh_scale", ones(3 * H))
            if "b_hn" in p:
                gh = norm(h @ p["w_hh"], g_hh, 3)
                r = sig(gx[:, :H] + gh[:, :H])
                z = sig(gx[:, H : 2 * H] + gh[:, H : 2 * H])
                n = act(gx[:, 2 * H :] + r * (gh[:, 2 * H :] + p["b_hn"]))
            else:
                gh = norm(h @ p["w_hh"][:, : 2 * H], g_hh[: 2 * H], 2)
                r = sig(gx[:, :H] + gh[:, :H])
                z = sig(gx[:, H : 2 * H] + gh[:, H:])
                n = act(gx[:, 2 * H :] + norm((r * h) @ p["w_hh"][:, 2 * H :], g_hh[2 * H :], 1))
            h = (1 - z) * h + z * n
            gates = {"r": r, "z": z, "n": n}
        for name, v in gates.items():
            out.setdefault(name, []).append(v)
    return {name: np.stack(v, axis=1) for name, v in out.items()}


OPTION_CELLS = [
    # (id, kind, factory kwargs)
    ("rnn_ln", "rnn", dict(activation="tanh", layer_norm=True)),
    ("rnn_hard_sigmoid", "rnn", dict(activation="hard_sigmoid")),
    ("lstm_ln", "lstm", dict(layer_norm=True)),
    ("lstm_ln_peephole_hard", "lstm", dict(layer_norm=True, peephole=True, gate_fn="hard_sigmoid")),
    ("lstm_ln_relu", "lstm", dict(layer_norm=True, activation="relu")),
    ("lstm_hard_relu", "lstm", dict(gate_fn="hard_sigmoid", activation="relu")),
    ("gru_ln", "gru", dict(layer_norm=True, gate_fn="hard_sigmoid")),
    ("gru_ln_reset_after", "gru", dict(layer_norm=True, reset_after=True)),
    ("gru_hard_relu", "gru", dict(reset_after=True, gate_fn="hard_sigmoid", activation="relu")),
]


@pytest.mark.parametrize(
    "kind, kw", [c[1:] for c in OPTION_CELLS], ids=[c[0] for c in OPTION_CELLS]
)
def test_gate_saturation_with_layer_norm_and_gate_functions(kind, kw):
    make = {"rnn": jrnn.simple_rnn, "lstm": jrnn.lstm, "gru": jrnn.gru}[kind]
    cell = make(H, param_dtype=F64, **kw)
    key = jax.random.key(3)
    params = random_params(cell, key, I, scale=1.5)
    xs = 2.0 * jax.random.normal(jax.random.fold_in(key, 7), (B, T, I), F64)
    lengths = np.array([T, 4])
    got = gate_saturation(cell, params, xs, lengths=jnp.asarray(lengths, jnp.int32))
    gate_fn = kw.get("gate_fn", "sigmoid") if kind != "rnn" else kw["activation"]
    activation = kw.get("activation", "tanh")
    want = direct_gates(kind, params, xs, gate_fn, activation, kw.get("layer_norm", False))
    # relu units do not saturate: they are left out
    want = {g: v for g, v in want.items() if not (activation == "relu" and g in ("g", "n"))}
    assert sorted(got) == sorted(want)
    valid = np.arange(T)[None, :] < lengths[:, None]  # [B, T]
    for g, v in want.items():
        fn = activation if g in ("g", "n") or kind == "rnn" else gate_fn
        assert got[g].kind == fn
        lo = -0.95 if fn == "tanh" else 0.05
        for side, hit in (("low", v < lo), ("high", v > 0.95)):
            expect = (hit.mean(axis=-1) * valid).sum(0) / valid.sum(0)
            np.testing.assert_allclose(getattr(got[g], side), expect, atol=1e-12)
    assert max(float(s.total.max()) for s in got.values()) > 0.1


def test_gate_saturation_with_layer_norm_matches_reference_gates():
    """The float64 reference's layer-normalised steps (sigmoid gates, tanh) give the same
    gate values as the direct NumPy computation above, so both agree with jrnn."""
    cell = jrnn.lstm(H, peephole=True, layer_norm=True, param_dtype=F64)
    params = random_params(cell, jax.random.key(1), I, scale=1.5)
    xs = 2.0 * jax.random.normal(jax.random.key(2), (B, T, I), F64)
    p = {k: np.asarray(v) for k, v in params.items()}
    h, c = np.zeros((B, H)), np.zeros((B, H))
    want = direct_gates("lstm", params, xs, "sigmoid", "tanh", True)
    for t in range(T):
        (h, c), cache = reference._ln_lstm_step(p, (h, c), np.asarray(xs[:, t]))
        for g in "ifgo":
            np.testing.assert_allclose(want[g][:, t], cache[f"{g}_t"], rtol=1e-12, atol=1e-12)
    got = gate_saturation(cell, params, xs)
    for g, v in want.items():
        np.testing.assert_allclose(got[g].high, (v > 0.95).mean(axis=(0, 2)), atol=1e-12)


def test_gate_saturation_refuses_custom_functions():
    for cell in (
        jrnn.lstm(H, gate_fn=lambda v: jax.nn.sigmoid(2 * v), param_dtype=F64),
        jrnn.gru(H, layer_norm=True, activation=lambda v: v, param_dtype=F64),
    ):
        params = cell.init(jax.random.key(0), I)
        with pytest.raises(ValueError, match="is a custom function '<lambda>'"):
            gate_saturation(cell, params, jnp.zeros((B, T, I), F64))

    def sigmoid(v):  # named like a known function, but another one
        return jax.nn.sigmoid(2 * v)

    cell = jrnn.lstm(H, gate_fn=sigmoid, param_dtype=F64)
    assert "gate_fn=custom_sigmoid" in cell.name
    with pytest.raises(ValueError, match="custom function 'custom_sigmoid'"):
        gate_saturation(cell, cell.init(jax.random.key(0), I), jnp.zeros((B, T, I), F64))


def test_forget_bias_saturates_the_forget_gate():
    xs = jnp.zeros((2, 5, I), F64)
    for bias, want in ((5.0, 1.0), (0.0, 0.0)):
        cell = jrnn.lstm(H, forget_bias=bias, param_dtype=F64)
        sat = gate_saturation(cell, cell.init(jax.random.key(0), I), xs)
        np.testing.assert_allclose(sat["f"].high, want)


# --------------------------------------------------------------------------------------
# errors, docs, plots


def test_errors_name_the_argument():
    cell, params, xs = setup("lstm")
    stk = jrnn.stack(cell)
    with pytest.raises(TypeError, match="`cell` must be a jrnn.Cell"):
        step_jacobian_norms(stk, ((params,),), xs)
    with pytest.raises(ValueError, match="`wrt` must be 'h' or 'carry'"):
        step_jacobian_norms(cell, params, xs, wrt="c")
    with pytest.raises(ValueError, match="`num_iters`"):
        step_jacobian_norms(cell, params, xs, num_iters=0)
    with pytest.raises(ValueError, match="`method` must be 'auto', 'exact' or 'power'"):
        step_jacobian_norms(cell, params, xs, method="svd")
    with pytest.raises(ValueError, match="`tol` must be a float in"):
        step_jacobian_norms(cell, params, xs, tol=0.0)
    with pytest.raises(ValueError, match="`loss_fn` must return a scalar"):
        state_grad_norms(cell, params, xs, lambda ys: ys)
    with pytest.raises(ValueError, match="`lengths` must lie in"):
        state_grad_norms(cell, params, xs, weighted_loss, lengths=jnp.array([1, T + 1]))
    with pytest.raises(ValueError, match="input_size=3"):
        jacobian_product_norms(cell, params, xs[..., :2])
    relu = jrnn.simple_rnn(H, activation="relu", param_dtype=F64)
    with pytest.raises(ValueError, match=r"bounded activation \[.*\], got 'relu'"):
        gate_saturation(relu, relu.init(jax.random.key(0), I), xs)
    odd = cell._replace(name="mycell(4)")
    with pytest.raises(ValueError, match="no gate layout known for cell 'mycell"):
        gate_saturation(odd, params, xs)
    with pytest.raises(ValueError, match="`threshold`"):
        gate_saturation(cell, params, xs, threshold=1.5)


# --------------------------------------------------------------------------------------
# models: the rnn between the model's embedding and its readout


def test_diagnostics_of_a_model_equal_the_hand_built_rnn():
    """sequence_model (tokens, readout over every step): the loss over the model's logits
    equals the rnn's diagnostics fed the embedded tokens, with the readout by hand."""
    model = jrnn.sequence_model(
        jrnn.lstm(H, param_dtype=F64), 5, vocab_size=5, embed_size=3, param_dtype=F64
    )
    params = model.init(jax.random.key(0))
    tokens = jnp.array([[1, 2, 3, 4, 0, 1], [4, 3, 2, 0, 0, 0]])  # 0: padding
    lengths = jnp.array([6, 3])
    embedded = params["embed"][tokens]
    readout = lambda hs: hs @ params["w_ho"] + params["b_o"]
    got = state_grad_norms(model, params, tokens, weighted_loss, lengths=lengths)
    want = state_grad_norms(
        model.rnn, params["rnn"], embedded, lambda hs: weighted_loss(readout(hs)), lengths=lengths
    )
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert float(jnp.min(got[0])) > 0 and np.all(np.asarray(got)[1, 3:] == 0.0)
    for fn in (step_jacobian_norms, jacobian_product_norms):
        a = fn(model, params, tokens, lengths=lengths)
        b = fn(model.rnn, params["rnn"], embedded, lengths=lengths)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-12)
    sat = gate_saturation(model, params, tokens, lengths=lengths, threshold=0.6)
    want_sat = gate_saturation(model.rnn, params["rnn"], embedded, lengths=lengths, threshold=0.6)
    np.testing.assert_allclose(sat["f"].total, want_sat["f"].total, rtol=1e-12)


def test_state_grad_norms_of_seq2vec_and_bidirectional_tagger():
    """The loss reads the model's outputs: seq2vec's last valid step and a bidirectional
    tagger's concatenated directions, against the stack run by hand."""
    xs = jax.random.normal(jax.random.key(1), (B, T, I), F64)
    lengths = jnp.array([T, 4])
    clf = jrnn.seq2vec(jrnn.gru(H, param_dtype=F64), 2, input_size=I, param_dtype=F64)
    p = clf.init(jax.random.key(2))
    loss = lambda o: jnp.sum(jnp.sin(o))
    got = state_grad_norms(clf, p, xs, loss, lengths=lengths)
    last = lambda hs: hs[jnp.arange(B), lengths - 1]
    want = state_grad_norms(
        clf.rnn,
        p["rnn"],
        xs,
        lambda hs: loss(last(hs) @ p["w_ho"] + p["b_o"]),
        lengths=lengths,
    )
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert float(got[1, 3]) > 0 and np.all(np.asarray(got)[1, 4:] == 0.0)
    tag = jrnn.tagger(
        jrnn.gru(H, param_dtype=F64), 3, input_size=I, bidirectional=True, param_dtype=F64
    )
    p = tag.init(jax.random.key(3))
    got = state_grad_norms(tag, p, xs, weighted_loss, lengths=lengths)
    want = state_grad_norms(
        tag.rnn, p["rnn"], xs, lambda hs: weighted_loss(hs @ p["w_ho"] + p["b_o"]), lengths=lengths
    )
    assert got.shape == (1, 2, B, T)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.raises(ValueError, match="`params` must be the model's params"):
        state_grad_norms(tag, p["rnn"], xs, weighted_loss)
    with pytest.raises(TypeError, match="got a jrnn.Stack"):
        step_jacobian_norms(tag, p, xs)


def test_import_does_not_load_matplotlib_and_plots_return_figures():
    code = "import sys, jrnn.diagnostics; print('matplotlib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip() == "False"

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cell, params, xs = setup("gru")
    g = state_grad_norms(cell, params, xs, weighted_loss)
    fig = diagnostics.plot_grad_norms({"gru": g, "gru[0]": g[0]})
    assert len(fig.axes[0].lines) == 2 and fig.axes[0].get_yscale() == "log"
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), g[0])
    fig2 = diagnostics.plot_jacobian_histograms({"gru": step_jacobian_norms(cell, params, xs)})
    assert len(fig2.axes[0].patches) == 40
    fig3 = diagnostics.plot_gate_saturation(gate_saturation(cell, params, xs))
    assert fig3.axes[0].images[0].get_array().shape == (6, T)
    plt.close("all")
