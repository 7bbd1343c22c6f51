"""Parallel-in-time evaluation (jrnn.newton): Newton and quasi-Newton equal the sequential
scan, forward and gradients (implicit function theorem), with lengths, reverse, resets and
batch axes; divergence falls back to the scan; warm starts, jit, stacks, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jrnn
from jrnn import newton
from tests.helpers import VARIANT_IDS, VARIANTS, random_carry, random_params

I, H, B, T = 3, 4, 3, 9
METHODS = ("newton", "quasi-newton")


def _setup(variant, hidden=H):
    cell = variant[1](hidden, param_dtype=jnp.float64)
    params = random_params(cell, jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float64)
    carry = random_carry(cell, params, jax.random.key(2), (B,))
    return cell, params, xs, carry


LENGTHS = jnp.array([T, 4, 0])
RESETS = jnp.zeros((B, T), bool).at[0, 5].set(True).at[1, 2].set(True).at[0, 1].set(True)


def _loss_fn(cell, reverse):
    def loss(params, xs, carry, method):
        ys, c_t = jrnn.unroll(
            cell,
            params,
            xs,
            carry=carry,
            lengths=LENGTHS,
            reverse=reverse,
            resets=RESETS,
            method=method,
        )
        value = jnp.sum(jnp.sin(ys)) + sum(jnp.sum(a**2) for a in jax.tree.leaves(c_t))
        return value, (ys, c_t)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True), static_argnums=3)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_trajectories_and_gradients_equal_the_scan(variant):
    """lengths (incl. 0), resets, a random initial carry, batch; reverse on every other
    variant; gradients for params, xs and the initial carry against BPTT of the scan."""
    reverse = VARIANTS.index(variant) % 2 == 1
    cell, params, xs, carry = _setup(variant)
    f = _loss_fn(cell, reverse)
    (_, want), grads_want = f(params, xs, carry, "scan")
    for method in METHODS:
        (_, got), grads = f(params, xs, carry, method)
        chex.assert_trees_all_close(got, want, atol=1e-8, rtol=0)
        chex.assert_trees_all_close(grads, grads_want, atol=1e-8, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_reverse_without_lengths_and_two_batch_axes(method):
    cell = jrnn.lstm(H, peephole=True, param_dtype=jnp.float64)
    params = random_params(cell, jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (2, 2, T, I), jnp.float64)
    resets = jnp.zeros((2, 2, T), bool).at[1, 0, 4].set(True)
    run = jax.jit(
        lambda m: jrnn.unroll(cell, params, xs, reverse=True, resets=resets, method=m),
        static_argnums=0,
    )
    chex.assert_trees_all_close(run(method), run("scan"), atol=1e-8, rtol=0)
    ys, _, info = newton.solve(cell, params, xs, method=method, reverse=True, resets=resets)
    assert info.converged.shape == (2, 2) and bool(jnp.all(info.converged))
    assert not bool(jnp.any(info.fell_back))


@pytest.mark.parametrize(
    "cell",
    [
        jrnn.simple_rnn(H, activation="relu"),
        jrnn.lstm(H, peephole=True),
        jrnn.gru(H),
        jrnn.gru(H, reset_after=True),
        jrnn.lstm(H, layer_norm=True),  # generic: D JVPs
        jrnn.lstm(H, proj_size=2),  # generic
    ],
    ids=["rnn_relu", "lstm_peephole", "gru", "gru_reset_after", "lstm_ln", "lstm_proj"],
)
def test_jacobian_diagonal_is_the_diagonal_of_the_jacobian(cell):
    params = random_params(cell, jax.random.key(0), I, scale=0.8)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    carry = random_carry(cell, params, jax.random.key(1), ())
    x = jax.random.normal(jax.random.key(2), (I,), jnp.float64)
    flat, unravel = ravel_pytree(carry)

    @jax.jit
    def both(params, flat, x):
        step = lambda s: ravel_pytree(cell.step(params, unravel(s), x)[0])[0]
        return newton.jacobian_diagonal(cell, params, unravel(flat), x), jax.jacfwd(step)(flat)

    diag, full = both(params, flat, x)
    np.testing.assert_allclose(diag, jnp.diagonal(full), atol=1e-12)


def test_chaotic_regime_converges_or_falls_back_never_wrong():
    cell = jrnn.gru(8, param_dtype=jnp.float64)
    params = cell.init(jax.random.key(0), I)
    params = {**params, "w_hh": 8.0 * params["w_hh"]}  # recurrent weights x8
    xs = jax.random.normal(jax.random.key(1), (2, 48, I), jnp.float64)
    want, _ = jrnn.unroll(cell, params, xs)
    cases = [("newton", "none", True), ("quasi-newton", "trust-region", True)]
    cases += [("quasi-newton", "none", False)]
    for method, damping, fallback in cases:
        solve = jax.jit(
            lambda p, x, m=method, d=damping, f=fallback: newton.solve(
                cell, p, x, method=m, damping=d, max_iters=16, fallback=f
            )
        )
        ys, _, info = solve(params, xs)
        # this regime does not converge in 16 iterations: the info must say so
        assert not bool(jnp.any(info.converged))
        if not fallback:  # the last iterate is returned as is, flagged as not converged
            assert not bool(jnp.any(info.fell_back))
            assert float(jnp.max(jnp.abs(ys - want))) > 1e-3
            continue
        assert bool(jnp.all(info.fell_back == ~info.converged))
        for b in range(2):
            if bool(info.fell_back[b]):
                np.testing.assert_array_equal(ys[b], want[b])  # the scan's own answer
            else:
                assert float(info.residual[b]) <= newton.default_tol(jnp.float64)
                np.testing.assert_allclose(ys[b], want[b], atol=1e-8)


@pytest.mark.parametrize("method", METHODS)
def test_warm_start_from_the_solution_and_jit(method):
    cell, params, xs, carry = _setup(VARIANTS[3])
    ys, c_t, carries = jrnn.unroll(
        cell, params, xs, carry=carry, lengths=LENGTHS, reverse=True, return_carries=True
    )
    solve = jax.jit(
        lambda p, x, c, g: newton.solve(
            cell, p, x, carry=c, lengths=LENGTHS, reverse=True, method=method, guess=g
        )
    )
    ys_n, c_n, info = solve(params, xs, carry, carries)
    assert int(jnp.max(info.iterations)) <= 1 and bool(jnp.all(info.converged))
    chex.assert_trees_all_close((ys_n, c_n), (ys, c_t), atol=1e-8, rtol=0)
    cold = solve(params, xs, carry, jax.tree.map(jnp.zeros_like, carries))[2]
    assert int(jnp.max(cold.iterations)) > 1
    with_carries = jax.jit(
        lambda p, x, c: jrnn.unroll(
            cell,
            p,
            x,
            carry=c,
            lengths=LENGTHS,
            reverse=True,
            return_carries=True,
            method=method,
        )
    )
    chex.assert_trees_all_close(
        with_carries(params, xs, carry), (ys, c_t, carries), atol=1e-8, rtol=0
    )


def test_stack_apply_and_auto():
    net = jrnn.stack(jrnn.gru(H, param_dtype=jnp.float64), num_layers=2, bidirectional=True)
    params = net.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float64)
    apply = jax.jit(lambda m: net.apply(params, xs, lengths=LENGTHS, method=m), static_argnums=0)
    want = apply("scan")
    chex.assert_trees_all_close(apply("quasi-newton"), want, atol=1e-8, rtol=0)
    chex.assert_trees_all_close(apply("auto"), want, atol=1e-12, rtol=0)  # the scan on CPU
    assert jrnn.strategy.auto_method(1 << 16, 8, "cpu") == "scan"


def test_bad_input_names_the_argument():
    cell, params, xs, _ = _setup(VARIANTS[0])
    with pytest.raises(ValueError, match="`method` must be 'scan', 'newton'"):
        jrnn.unroll(cell, params, xs, method="deer")
    with pytest.raises(ValueError, match="newton.solve: `method`"):
        newton.solve(cell, params, xs, method="scan")
    with pytest.raises(ValueError, match="`damping`"):
        newton.solve(cell, params, xs, damping="elk")
    with pytest.raises(ValueError, match="`tol`"):
        newton.solve(cell, params, xs, tol=-1.0)
    with pytest.raises(ValueError, match="`max_iters`"):
        newton.solve(cell, params, xs, max_iters=-1)
    with pytest.raises(ValueError, match="`backward`"):
        newton.solve(cell, params, xs, backward="both")
    with pytest.raises(ValueError, match="`guess.h` must have shape \\[3, 9, 4\\]"):
        newton.solve(cell, params, xs, guess=jrnn.RNNState(jnp.zeros((B, T + 1, H))))
    zcell = jrnn.zoneout(cell, 0.1)
    with pytest.raises(ValueError, match="`method`='newton' cannot train a regularised"):
        jrnn.unroll(zcell, params, xs, key=jax.random.key(0), method="newton")


def test_sequential_backward_and_float32():
    cell, params, xs, carry = _setup(VARIANTS[2])

    def loss(p, backward):
        ys, _, _ = newton.solve(cell, p, xs, carry=carry, lengths=LENGTHS, backward=backward)
        return jnp.sum(ys**2)

    grad = jax.jit(jax.grad(loss), static_argnums=1)
    chex.assert_trees_all_close(grad(params, "parallel"), grad(params, "sequential"), atol=1e-10)
    p32, xs32 = jax.tree.map(lambda a: a.astype(jnp.float32), (params, xs))
    run = jax.jit(
        lambda m: (
            jrnn.newton.solve(cell, p32, xs32, method=m)
            if m != "scan"
            else jrnn.unroll(cell, p32, xs32)
        ),
        static_argnums=0,
    )
    ys, _, info = run("quasi-newton")
    assert ys.dtype == jnp.float32 and bool(jnp.all(info.converged))
    np.testing.assert_allclose(ys, run("scan")[0], atol=1e-4)
    damped = jax.jit(lambda: newton.solve(cell, p32, xs32, damping="trust-region"))
    ys, _, info = damped()
    assert ys.dtype == jnp.float32 and bool(jnp.all(info.converged | info.fell_back))
    np.testing.assert_allclose(ys, run("scan")[0], atol=1e-4)
