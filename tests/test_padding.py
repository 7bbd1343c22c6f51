"""Padding never leaks, traced lengths are clamped in every path, checkify catches them.

Garbage (NaN, inf, 1e30) in the padded steps of ``xs`` must give exactly the outputs, final
carries and gradients (parameters, inputs, initial carry) of zeros there, for every cell,
every vjp/remat/hoist strategy, both directions and the bidirectional stack; and the input
gradient of a padded step is exactly zero.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jrnn
from tests.helpers import random_carry, random_params

I, H, B, T = 3, 4, 4, 6
LENGTHS = np.array([6, 2, 0, 4])

CELLS = {
    "simple_rnn": lambda: jrnn.simple_rnn(H, param_dtype=jnp.float64),
    "lstm": lambda: jrnn.lstm(H, param_dtype=jnp.float64),
    "lstm_peephole": lambda: jrnn.lstm(H, peephole=True, param_dtype=jnp.float64),
    "lstm_proj": lambda: jrnn.lstm(H, peephole=True, proj_size=2, param_dtype=jnp.float64),
    "gru": lambda: jrnn.gru(H, param_dtype=jnp.float64),
    "gru_reset_after": lambda: jrnn.gru(H, reset_after=True, param_dtype=jnp.float64),
}
STRATEGIES = {
    "hoisted_vjp": dict(hoist=True, vjp="hoisted"),
    "autodiff": dict(hoist=False, vjp="autodiff"),
    "autodiff_hoist": dict(hoist=True, vjp="autodiff"),
    "remat_step": dict(remat="step"),
    "remat_sqrt": dict(remat="sqrt"),
}


def _inputs():
    xs = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float64)
    pad = np.arange(T)[None, :] >= LENGTHS[:, None]  # [B, T]
    garbage = np.zeros((B, T, I))
    garbage[1] = np.nan
    garbage[2] = np.inf
    garbage[3] = -1e30
    garbage[2, 3] = 1e30
    clean = jnp.where(pad[..., None], 0.0, xs)
    dirty = jnp.where(pad[..., None], garbage, xs)
    return clean, dirty, pad


def _check_no_leak(run, params, carry):
    """``run(params, xs, carry) -> (ys, carry_T)``: outputs and all gradients equal."""
    clean, dirty, pad = _inputs()

    def loss(p, x, c):
        ys, c_t = run(p, x, c)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(jnp.cos(a)) for a in jax.tree.leaves(c_t))

    f = jax.jit(lambda p, x, c: (run(p, x, c), jax.grad(loss, (0, 1, 2))(p, x, c)))
    want, got = f(params, clean, carry), f(params, dirty, carry)
    assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(got))
    chex.assert_trees_all_equal(got, want)
    (ys, _), (_, d_xs, _) = got
    assert not np.any(np.asarray(d_xs)[pad]) and not np.any(np.asarray(ys)[pad])


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("kind", CELLS)
def test_garbage_in_padding_changes_nothing(kind, reverse, strategy):
    cell = CELLS[kind]()
    params = random_params(cell, jax.random.key(0), I)
    carry = random_carry(cell, params, jax.random.key(2), (B,))
    kw = dict(lengths=jnp.asarray(LENGTHS), reverse=reverse, **STRATEGIES[strategy])
    _check_no_leak(lambda p, x, c: jrnn.unroll(cell, p, x, carry=c, **kw), params, carry)


@pytest.mark.parametrize("kind", CELLS)
def test_garbage_in_padding_of_a_bidirectional_stack_changes_nothing(kind):
    net = jrnn.stack(CELLS[kind](), num_layers=2, bidirectional=True)
    params = net.init(jax.random.key(0), I)
    carries = jax.tree.map(lambda a: a + 0.1, net.initial_carry(params, (B,)))
    lengths = jnp.asarray(LENGTHS)
    _check_no_leak(lambda p, x, c: net.apply(p, x, carries=c, lengths=lengths), params, carries)


# --------------------------------------------------------------------------------------
# traced lengths: clamped to [0, T] in every path; concrete ones raise


def _paths():
    cell = jrnn.gru(H, reset_after=True, param_dtype=jnp.float64)
    p = random_params(cell, jax.random.key(0), I)
    net = jrnn.stack(cell, num_layers=1, bidirectional=True)
    sp = net.init(jax.random.key(3), I)
    return {
        "forward": lambda x, n: jrnn.unroll(cell, p, x, lengths=n),
        "reverse": lambda x, n: jrnn.unroll(cell, p, x, lengths=n, reverse=True),
        "reverse_hoisted_vjp": lambda x, n: jrnn.unroll(
            cell, p, x, lengths=n, reverse=True, hoist=True, vjp="hoisted"
        ),
        "reverse_remat_sqrt": lambda x, n: jrnn.unroll(
            cell, p, x, lengths=n, reverse=True, remat="sqrt"
        ),
        "return_carries": lambda x, n: jrnn.unroll(
            cell, p, x, lengths=n, reverse=True, return_carries=True
        ),
        "bidirectional_stack": lambda x, n: net.apply(sp, x, lengths=n),
        "flip_within_lengths": lambda x, n: jrnn.flip_within_lengths(jnp.moveaxis(x, 1, 0), n),
    }


@pytest.mark.parametrize("path", list(_paths()))
def test_traced_lengths_are_clamped_to_0_T(path):
    run = _paths()[path]
    xs = jax.random.normal(jax.random.key(4), (4, T, I), jnp.float64)
    bad = jnp.array([T + 3, -2, 2, 1000])
    got = jax.jit(run)(xs, bad)
    want = run(xs, jnp.clip(bad, 0, T))
    assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(got))
    chex.assert_trees_all_close(got, want, atol=1e-12)
    with pytest.raises(
        ValueError, match=r"`lengths` must lie in \[0, T=6\], got values in \[-2, 1000\]"
    ):
        run(xs, bad)  # concrete: a clear error


@pytest.mark.parametrize("path", ["forward", "reverse", "bidirectional_stack"])
def test_debug_mode_turns_traced_out_of_range_lengths_into_errors(path):
    cell = jrnn.lstm(H)
    p = cell.init(jax.random.key(0), I)
    net = jrnn.stack(cell, bidirectional=True)
    sp = net.init(jax.random.key(0), I)
    run = {
        "forward": lambda x, n: jrnn.unroll(cell, p, x, lengths=n, debug=True)[0],
        "reverse": lambda x, n: jrnn.unroll(cell, p, x, lengths=n, reverse=True, debug=True)[0],
        "bidirectional_stack": lambda x, n: net.apply(sp, x, lengths=n, debug=True)[0],
    }[path]
    checked = checkify.checkify(jax.jit(run))
    xs = jnp.ones((2, 5, I))
    err, ys = checked(xs, jnp.array([5, 2]))
    assert err.get() is None and ys.shape[:2] == (2, 5)
    err, _ = checked(xs, jnp.array([7, 2]))
    assert "`lengths` must lie in [0, T=5], got values in [2, 7]" in err.get()
    with pytest.raises(ValueError, match=r"lengths` must lie in \[0, T=5\]"):
        err.throw()  # checkify's JaxRuntimeError is a ValueError
    # without checkify.checkify JAX refuses to trace the check: never a silent result
    with pytest.raises(ValueError, match="checkify"):
        jax.jit(run)(xs, jnp.array([7, 2]))


def test_traced_flags_are_refused():
    cell = jrnn.lstm(H)
    p = cell.init(jax.random.key(0), I)
    xs = jnp.ones((2, 5, I))
    with pytest.raises(TypeError, match="`reverse` must be a Python bool, got a traced array"):
        jax.jit(lambda r: jrnn.unroll(cell, p, xs, reverse=r))(True)
    with pytest.raises(TypeError, match="`time_major` must be a Python bool, got a traced"):
        jax.jit(lambda r: jrnn.unroll(cell, p, xs, time_major=r))(False)
    ys, _ = jax.jit(lambda x: jrnn.unroll(cell, p, x, reverse=True))(xs)  # static is fine
    assert ys.shape == (2, 5, H)
