"""Property tests (hypothesis, 200 examples each) of unroll's semantics.

Shapes are fixed per test and every function is jitted once per cell (and per window or
slice length), so the examples vary only values, lengths and garbage: 200 examples stay
fast.  Properties: reversing twice is the identity; lengths equal slicing; vmap equals a
batch axis; TBPTT windows with carried state equal the full unroll; garbage in the padding
changes neither outputs nor gradients; every vjp/remat/hoist strategy agrees.
"""

from functools import cache

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jrnn
from tests.helpers import random_carry, random_params

B, T, I = 3, 5, 2
CELLS = {
    "rnn": jrnn.simple_rnn(3, param_dtype=jnp.float64),
    "lstm": jrnn.lstm(3, peephole=True, proj_size=2, param_dtype=jnp.float64),
    "gru": jrnn.gru(3, param_dtype=jnp.float64),
    "gru_reset_after": jrnn.gru(3, reset_after=True, param_dtype=jnp.float64),
}
PARAMS = {k: random_params(c, jax.random.key(0), I) for k, c in CELLS.items()}
CARRY = {k: random_carry(c, PARAMS[k], jax.random.key(1), (B,)) for k, c in CELLS.items()}

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def cases(draw, kinds=tuple(CELLS)):
    kind = draw(st.sampled_from(kinds))
    lengths = np.array(draw(st.lists(st.integers(0, T), min_size=B, max_size=B)))
    seed = draw(st.integers(0, 2**31 - 1))
    xs = np.random.default_rng(seed).normal(size=(B, T, I))
    return kind, xs, lengths


def _flat(tree) -> np.ndarray:
    leaves = jax.tree.leaves(jax.device_get(tree))
    return np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in leaves] + [np.zeros(0)])


def close(a, b, atol=1e-10):
    """All leaves close (one NumPy comparison for the whole tree: cheap per example)."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    np.testing.assert_allclose(_flat(a), _flat(b), atol=atol, rtol=1e-10)


@cache
def run(kind: str, reverse: bool):
    """jitted ``(xs, lengths, carry) -> (ys, carry_T)`` (compiled once per input shape)."""
    cell, p = CELLS[kind], PARAMS[kind]
    return jax.jit(lambda x, n, c: jrnn.unroll(cell, p, x, carry=c, lengths=n, reverse=reverse))


@cache
def run_unpadded(kind: str, reverse: bool):
    cell, p = CELLS[kind], PARAMS[kind]
    return jax.jit(lambda x, c: jrnn.unroll(cell, p, x, carry=c, reverse=reverse))


@cache
def flips(kind: str):
    cell, p = CELLS[kind], PARAMS[kind]

    def f(x_t, n, c):  # x_t: [T, B, I]
        flipped = jrnn.flip_within_lengths(x_t, n)
        twice = jrnn.flip_within_lengths(flipped, n)
        fwd = jrnn.unroll(cell, p, x_t, carry=c, lengths=n, time_major=True)
        ys_r, c_r = jrnn.unroll(cell, p, flipped, carry=c, lengths=n, reverse=True, time_major=True)
        return flipped, twice, fwd, (jrnn.flip_within_lengths(ys_r, n), c_r)

    return jax.jit(f)


@SETTINGS
@given(cases())
def test_reverse_twice_is_identity_within_lengths(case):
    kind, xs, lengths = case
    x_t = np.moveaxis(xs, 1, 0)
    flipped, twice, fwd, rev = jax.device_get(flips(kind)(x_t, lengths, CARRY[kind]))
    np.testing.assert_array_equal(twice, x_t)
    pad = np.arange(T)[:, None] >= lengths[None, :]
    np.testing.assert_array_equal(flipped[pad], x_t[pad])
    # reading the flipped sequences backwards is reading the originals forwards
    close(rev, fwd)


@SETTINGS
@given(cases(kinds=("lstm", "gru_reset_after")), st.booleans())
def test_lengths_equal_slicing_each_sequence(case, reverse):
    kind, xs, lengths = case
    ys, carry = run(kind, reverse)(xs, jnp.asarray(lengths), CARRY[kind])
    for b, n in enumerate(lengths):
        c_b = jax.tree.map(lambda a, b=b: a[b], CARRY[kind])
        ys_b, carry_b = run_unpadded(kind, reverse)(xs[b, :n], c_b)
        close(ys[b, :n], ys_b)
        np.testing.assert_array_equal(ys[b, n:], 0.0)
        close(jax.tree.map(lambda a, b=b: a[b], carry), carry_b)


@cache
def vmapped(kind: str, reverse: bool):
    cell, p = CELLS[kind], PARAMS[kind]
    one = lambda x, n, c: jrnn.unroll(cell, p, x, carry=c, lengths=n, reverse=reverse)
    return jax.jit(jax.vmap(one))


@SETTINGS
@given(cases(), st.booleans())
def test_vmap_over_a_batch_equals_a_leading_batch_axis(case, reverse):
    kind, xs, lengths = case
    n = jnp.asarray(lengths)
    close(vmapped(kind, reverse)(xs, n, CARRY[kind]), run(kind, reverse)(xs, n, CARRY[kind]))


@SETTINGS
@given(cases(), st.integers(1, T - 1))
def test_tbptt_windows_with_carried_state_equal_the_full_unroll(case, cut):
    """Two windows ``[0, cut)`` and ``[cut, T)``, the second starting from the first's final
    carry, with each window's lengths ``clip(L - start, 0, width)``."""
    kind, xs, lengths = case
    f = run(kind, False)
    ys, carry = f(xs, jnp.asarray(lengths), CARRY[kind])
    ys1, c1 = f(xs[:, :cut], jnp.asarray(np.clip(lengths, 0, cut)), CARRY[kind])
    ys2, c2 = f(xs[:, cut:], jnp.asarray(np.clip(lengths - cut, 0, T - cut)), c1)
    close(jnp.concatenate([ys1, ys2], axis=1), ys)
    close(c2, carry)


def _loss(cell, p, x, c, n, **kw):
    ys, c_t = jrnn.unroll(cell, p, x, carry=c, lengths=n, **kw)
    return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(a**2) for a in jax.tree.leaves(c_t))


@cache
def value_and_grads(kind: str, reverse: bool):
    cell = CELLS[kind]
    return jax.jit(
        jax.value_and_grad(lambda p, x, c, n: _loss(cell, p, x, c, n, reverse=reverse), (0, 1, 2))
    )


GARBAGE = st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1e30, 1e300, 0.0])


@SETTINGS
@given(
    cases(kinds=("lstm", "gru_reset_after")),
    st.lists(GARBAGE, min_size=B * T * I, max_size=B * T * I),
    st.booleans(),
)
def test_garbage_in_padding_changes_neither_outputs_nor_gradients(case, garbage, reverse):
    kind, xs, lengths = case
    pad = np.arange(T)[None, :, None] >= lengths[:, None, None]
    dirty = np.where(pad, np.reshape(garbage, xs.shape), xs)
    clean = np.where(pad, 0.0, xs)
    f, n = value_and_grads(kind, reverse), jnp.asarray(lengths)
    got, want = f(PARAMS[kind], dirty, CARRY[kind], n), f(PARAMS[kind], clean, CARRY[kind], n)
    np.testing.assert_array_equal(_flat(got), _flat(want))
    assert not np.any(np.asarray(got[1][1])[np.broadcast_to(pad, xs.shape)])


STRATEGIES = {
    "hoisted_vjp": dict(hoist=True, vjp="hoisted"),
    "hoisted_vjp_in_step": dict(hoist=False, vjp="hoisted"),
    "autodiff_hoist": dict(hoist=True, vjp="autodiff"),
    "remat_step": dict(remat="step"),
    "remat_sqrt": dict(remat="sqrt"),
}


@cache
def all_strategies(kind: str):
    cell = CELLS[kind]

    def every(p, x, c, n):
        out = {}
        for reverse in (False, True):
            base = dict(hoist=False, vjp="autodiff", reverse=reverse)
            vg = lambda kw: jax.value_and_grad(
                lambda p, x, c: _loss(cell, p, x, c, n, **kw), (0, 1, 2)
            )(p, x, c)
            out[("autodiff", reverse)] = vg(base)
            for name, kw in STRATEGIES.items():
                out[(name, reverse)] = vg({**base, **kw})
        return out

    return jax.jit(every)


@SETTINGS
@given(cases(kinds=("lstm", "gru")))
def test_every_vjp_remat_hoist_strategy_agrees(case):
    kind, xs, lengths = case
    out = all_strategies(kind)(PARAMS[kind], xs, CARRY[kind], jnp.asarray(lengths))
    for reverse in (False, True):
        want = out[("autodiff", reverse)]
        for name in STRATEGIES:
            close(out[(name, reverse)], want, atol=1e-9)
