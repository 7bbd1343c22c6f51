"""The reference LSTM with a projection (``w_proj``, PyTorch's ``proj_size``).

The hand-derived BPTT of ``jrnn.reference`` with ``w_proj`` is checked against central
finite differences of its own forward pass (float64), with and without peepholes, lengths
and reverse; then ``jrnn.unroll`` of ``jrnn.lstm(H, proj_size=P)`` is checked against the
reference forward (1e-10) and its ``jax.grad`` against the reference BPTT (1e-8).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn import reference as ref

B, T, I, H, P = 3, 4, 3, 4, 2
EPS = 1e-6


def make_params(rng: np.random.Generator, peephole: bool = False) -> dict[str, np.ndarray]:
    params = {
        "w_ih": 0.6 * rng.standard_normal((I, 4 * H)),
        "w_hh": 0.6 * rng.standard_normal((P, 4 * H)),
        "b": 0.3 * rng.standard_normal(4 * H),
        "w_proj": 0.6 * rng.standard_normal((H, P)),
    }
    if peephole:
        params["w_peep"] = 0.6 * rng.standard_normal((3, H))
    return params


def make_carry(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return 0.5 * rng.standard_normal((B, P)), 0.5 * rng.standard_normal((B, H))


def loss_terms(rng: np.random.Generator):
    """Random cotangents: ``L = Σ dys * ys + Σ dh * h_T + Σ dc * c_T``."""
    return (
        rng.standard_normal((B, T, P)),
        (rng.standard_normal((B, P)), rng.standard_normal((B, H))),
    )


def ref_loss(params, xs, carry0, dys, dcarry, lengths, reverse) -> float:
    ys, (h, c) = ref.forward("lstm", params, xs, carry0, lengths=lengths, reverse=reverse)
    return float(np.sum(ys * dys) + np.sum(h * dcarry[0]) + np.sum(c * dcarry[1]))


def numerical_grad(f, x: np.ndarray) -> np.ndarray:
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


def test_step_equations():
    rng = np.random.default_rng(0)
    p = make_params(rng)
    h0, c0 = make_carry(rng)
    x = rng.standard_normal((B, I))
    (h1, c1), y = ref.cell_step("lstm", p, (h0, c0), x)
    z = x @ p["w_ih"] + h0 @ p["w_hh"] + p["b"]
    i, f, g, o = (z[:, k * H : (k + 1) * H] for k in range(4))
    c = ref.sigmoid(f) * c0 + ref.sigmoid(i) * np.tanh(g)
    h = (ref.sigmoid(o) * np.tanh(c)) @ p["w_proj"]
    np.testing.assert_allclose(c1, c, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(h1, h, rtol=1e-14, atol=1e-14)
    np.testing.assert_array_equal(y, h1)
    assert h1.shape == (B, P) and c1.shape == (B, H)


def test_without_projection_is_unchanged():
    """``w_proj = I`` (P = H) gives exactly the plain LSTM."""
    rng = np.random.default_rng(1)
    p = make_params(rng)
    p["w_hh"] = 0.6 * rng.standard_normal((H, 4 * H))
    plain = {k: v for k, v in p.items() if k != "w_proj"}
    xs = rng.standard_normal((B, T, I))
    ys_p, carry_p = ref.forward("lstm", {**plain, "w_proj": np.eye(H)}, xs, None)
    ys, carry = ref.forward("lstm", plain, xs, None)
    np.testing.assert_allclose(ys_p, ys, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(carry_p[1], carry[1], rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize(
    "peephole, lengths, reverse",
    [(False, None, False), (True, np.array([T, 0, 2]), False), (False, np.array([1, T, 3]), True)],
    ids=["plain", "peephole-ragged", "ragged-reverse"],
)
def test_backward_matches_finite_differences(peephole, lengths, reverse):
    rng = np.random.default_rng(2)
    params = make_params(rng, peephole)
    xs = rng.standard_normal((B, T, I))
    carry0 = make_carry(rng)
    dys, dcarry = loss_terms(rng)
    dparams, dxs, dcarry0 = ref.backward(
        "lstm", params, xs, carry0, dys, dcarry, lengths=lengths, reverse=reverse
    )
    assert set(dparams) == set(params)
    loss = lambda: ref_loss(params, xs, carry0, dys, dcarry, lengths, reverse)
    for name, value in params.items():
        np.testing.assert_allclose(
            dparams[name], numerical_grad(loss, value), rtol=1e-6, atol=1e-8, err_msg=name
        )
    np.testing.assert_allclose(dxs, numerical_grad(loss, xs), rtol=1e-6, atol=1e-8)
    for k, part in enumerate(carry0):
        np.testing.assert_allclose(dcarry0[k], numerical_grad(loss, part), rtol=1e-6, atol=1e-8)


def test_bad_projection_shapes_raise():
    rng = np.random.default_rng(3)
    p = make_params(rng)
    xs = rng.standard_normal((B, T, I))
    with pytest.raises(ValueError, match=r"w_hh"):
        ref.forward("lstm", {**p, "w_proj": np.zeros((H, P + 1))}, xs, None)
    with pytest.raises(ValueError, match=r"w_proj"):
        ref.forward("lstm", {**p, "w_proj": np.zeros((H,))}, xs, None)
    with pytest.raises(ValueError, match=r"carry0"):
        ref.forward("lstm", p, xs, (np.zeros((B, H)), np.zeros((B, H))))
    with pytest.raises(ValueError, match=r"unknown \['w_proj'\]"):
        ref.forward(
            "gru",
            {
                "w_ih": np.zeros((I, 3 * H)),
                "w_hh": np.zeros((H, 3 * H)),
                "b": np.zeros(3 * H),
                "w_proj": np.zeros((H, P)),
            },
            xs,
            None,
        )


def test_unroll_matches_reference(peephole: bool = True):
    """``jrnn.lstm(H, proj_size=P)``: forward to 1e-10 and ``jax.grad`` to 1e-8 (float64)."""
    rng = np.random.default_rng(4)
    params = make_params(rng, peephole)
    xs = rng.standard_normal((B, T, I))
    carry0 = make_carry(rng)
    dys, dcarry = loss_terms(rng)
    lengths = np.array([T, 0, 2])
    cell = jrnn.lstm(H, peephole=peephole, proj_size=P, param_dtype=jnp.float64)
    assert jax.tree.map(jnp.shape, cell.init(jax.random.key(0), I)) == jax.tree.map(
        np.shape, params
    )

    def loss(p, x, c0, reverse):
        ys, c = jrnn.unroll(cell, p, x, carry=c0, lengths=lengths, reverse=reverse)
        value = jnp.sum(ys * dys) + jnp.sum(c.h * dcarry[0]) + jnp.sum(c.c * dcarry[1])
        return value, (ys, c)

    grad_fn = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True), static_argnums=3)
    for reverse in (False, True):
        ys_ref, (h_ref, c_ref) = ref.forward(
            "lstm", params, xs, carry0, lengths=lengths, reverse=reverse
        )
        (g_p, g_x, g_c), (ys, carry) = grad_fn(params, xs, jrnn.LSTMState(*carry0), reverse)
        np.testing.assert_allclose(ys, ys_ref, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(carry.h, h_ref, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(carry.c, c_ref, rtol=1e-10, atol=1e-10)
        dparams, dxs, dcarry0 = ref.backward(
            "lstm", params, xs, carry0, dys, dcarry, lengths=lengths, reverse=reverse
        )
        for name in params:
            np.testing.assert_allclose(g_p[name], dparams[name], rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(g_x, dxs, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(g_c.h, dcarry0[0], rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(g_c.c, dcarry0[1], rtol=1e-8, atol=1e-8)


def test_unroll_hoisted_vjp_matches_reference():
    """The hand-structured VJP of ``unroll`` (``vjp="hoisted"``) with the projection."""
    rng = np.random.default_rng(5)
    params = make_params(rng)
    xs = rng.standard_normal((B, T, I))
    dys, _ = loss_terms(rng)
    cell = jrnn.lstm(H, proj_size=P, param_dtype=jnp.float64)

    def loss(p):
        ys, _ = jrnn.unroll(cell, p, xs, hoist=True, vjp="hoisted")
        return jnp.sum(ys * dys)

    grads = jax.jit(jax.grad(loss))(params)
    dparams, _, _ = ref.backward("lstm", params, xs, None, dys)
    for name in params:
        np.testing.assert_allclose(grads[name], dparams[name], rtol=1e-8, atol=1e-8)
