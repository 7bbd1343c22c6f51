"""The mLSTM's parallel form (``Cell.parallel``: associative scans) against its sequential step.

``jrnn.unroll(..., method="newton")`` runs ``jrnn.mlstm``'s whole-sequence form: the stabiliser
``m`` by a max-plus associative scan (exact up to the rounding of its additions), then ``C`` and
``n`` as linear recurrences with the gates ``m`` fixes; ``method="scan"`` runs the step.

Tolerances, relative to the largest output (or gradient) of the float64 sequential scan:

* float64: outputs, every step's carry, the final carry and gradients to 1e-10 (measured
  ~1e-14), with lengths, resets, reverse, two batch axes, random initial states, and gate
  pre-activations ×30 over 512 steps (``|m|`` in the hundreds: ``exp(ĩ)`` overflows float32).
* float32: the cell as initialised, outputs to 1e-6 and each carry leaf to 1e-6 of its own
  largest value (measured ≤ 6e-7).  With random weights (gates that
  read the inputs) the sequential float32 scan is itself 1e-6..1e-4 from float64 (rounding of
  ``m ~ 10²`` enters every ``exp``), so there every step's carry of the parallel form must be
  as near to the float64 truth as the sequential one's (at most twice its error, plus 1e-6;
  measured about as near: ``C`` 4.7e-6 against 5.7e-6), and its outputs within ten times the
  sequential outputs' error (measured 4e-4 against 1e-4 at the worst, ill-conditioned step).
  Gradients to 1e-5 of the largest.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn.linear_scan import scan_recurrence
from tests.helpers import random_carry, random_params

B, T, I = 3, 13, 5


def _rel(a, b, scale):
    return max(
        float(jnp.max(jnp.abs(u - v))) / scale
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def _scale(tree):
    return max(float(jnp.max(jnp.abs(u))) for u in jax.tree.leaves(tree))


def _run(cell, p, xs, c0=None, **kw):
    """``jrnn.unroll`` jitted (one compilation instead of one per eager operation)."""
    return jax.jit(lambda p, xs, c0: jrnn.unroll(cell, p, xs, carry=c0, **kw))(p, xs, c0)


def _setup(heads, dtype, *, steps=T, gain=1.0, batch=(B,), seed=0):
    cell = jrnn.mlstm(8, num_heads=heads, param_dtype=dtype)
    p = random_params(cell, jax.random.key(seed), I)
    xs = gain * jax.random.normal(jax.random.key(seed + 1), (*batch, steps, I), dtype)
    c0 = random_carry(cell, p, jax.random.key(seed + 2), batch)
    return cell, p, xs, c0


LENGTHS = jnp.array([T, 6, 1])
RESETS = jax.random.bernoulli(jax.random.key(7), 0.2, (B, T))


@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize(
    "kw",
    [{}, {"lengths": LENGTHS, "resets": RESETS, "reverse": True, "return_carries": True}],
    ids=["plain", "lengths-resets-reverse-carries"],
)
def test_float64_equals_the_sequential_step(heads, kw):
    cell, p, xs, c0 = _setup(heads, jnp.float64)
    seq = _run(cell, p, xs, c0, method="scan", **kw)
    par = _run(cell, p, xs, c0, method="newton", **kw)
    assert _rel(par, seq, _scale(seq)) <= 1e-10
    if "lengths" in kw:  # padded outputs are exact zeros
        pad = jnp.arange(T)[None, :] >= LENGTHS[:, None]
        assert bool(jnp.all(jnp.where(pad[..., None], par[0], 0) == 0))


def test_two_batch_axes_time_major():
    cell, p, xs, c0 = _setup(2, jnp.float64, batch=(2, 3))
    xs = jnp.moveaxis(xs, 2, 0)  # [T, 2, 3, I]
    resets = jax.random.bernoulli(jax.random.key(3), 0.2, (T, 2, 3))
    kw = {"carry": c0, "time_major": True, "resets": resets, "reverse": True}
    seq = jrnn.unroll(cell, p, xs, method="scan", **kw)
    assert _rel(jrnn.unroll(cell, p, xs, method="newton", **kw), seq, _scale(seq)) <= 1e-10


@pytest.mark.parametrize("heads", [1, 2])
def test_float32_the_initialised_cell_to_1e_6(heads):
    cell = jrnn.mlstm(8, num_heads=heads)
    p = cell.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (B, 48, I))
    lengths = jnp.array([48, 30, 1])
    seq = _run(cell, p, xs, lengths=lengths, method="scan")
    par = _run(cell, p, xs, lengths=lengths, method="newton")
    assert _rel(par[0], seq[0], _scale(seq[0])) <= 1e-6  # outputs
    for got, want in zip(par[1], seq[1], strict=True):  # C, n, m: each to its own scale
        assert _rel(got, want, _scale(want)) <= 1e-6


@pytest.mark.parametrize("heads", [2])
def test_large_gates_over_512_steps_keep_the_stabiliser_exact(heads):
    """Inputs ×30 through random gate weights: ``|m|`` in the hundreds, where the
    unstabilised ``exp(ĩ)`` overflows float32.  float64 to 1e-10; float32 as near to the
    float64 truth as the sequential float32 scan (its own error is ~1e-5 here), ``m`` equal
    to a few ulps."""
    cell, p, xs, c0 = _setup(heads, jnp.float64, steps=512, gain=30.0)
    lengths = jnp.array([512, 300, 7])
    truth = _run(cell, p, xs, c0, lengths=lengths, return_carries=True)
    par = _run(cell, p, xs, c0, lengths=lengths, return_carries=True, method="newton")
    assert float(jnp.max(truth[2].m)) > 100  # exp(m) beyond float32's range
    assert _rel(par, truth, _scale(truth)) <= 1e-10

    cell32 = jrnn.mlstm(8, num_heads=heads)
    p32, xs32, c32 = jax.tree.map(lambda a: a.astype(jnp.float32), (p, xs, c0))
    seq32 = _run(cell32, p32, xs32, c32, lengths=lengths, return_carries=True)
    par32 = _run(cell32, p32, xs32, c32, lengths=lengths, return_carries=True, method="newton")
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(par32))
    truth32 = jax.tree.map(lambda a: a.astype(jnp.float32), truth)
    for got, seq, want in zip(par32[2], seq32[2], truth32[2], strict=True):  # C, n, m
        err_seq, err_par = _rel(seq, want, _scale(want)), _rel(got, want, _scale(want))
        assert err_par <= 2 * err_seq + 1e-6, (err_par, err_seq)
    # the outputs amplify the states' rounding at ill-conditioned steps (|h̃| small against
    # its group's spread), differently for the two: measured 1e-4 (sequential), 4e-4 (parallel)
    y_scale = _scale(truth[0])
    err_seq, err_par = _rel(seq32[0], truth32[0], y_scale), _rel(par32[0], truth32[0], y_scale)
    assert err_par <= 10 * err_seq + 1e-6, (err_par, err_seq)
    m_scale = max(_scale(truth[2].m), 1.0)
    assert _rel(par32[2].m, seq32[2].m, m_scale) <= 1e-6


@pytest.mark.parametrize("dtype, tol", [(jnp.float64, 1e-10), (jnp.float32, 1e-5)])
def test_gradients_equal_the_sequential_scans(dtype, tol):
    cell, p, xs, c0 = _setup(2, dtype)
    w = jax.random.normal(jax.random.key(9), (B, T, 8), dtype)

    def loss(method):
        def f(p, xs, c0):
            ys, c = jrnn.unroll(
                cell, p, xs, carry=c0, lengths=LENGTHS, resets=RESETS, method=method
            )
            return jnp.sum(ys * w) + sum(jnp.sum(jnp.sin(a)) for a in jax.tree.leaves(c))

        return jax.jit(jax.grad(f, argnums=(0, 1, 2)))(p, xs, c0)

    seq, par = loss("scan"), loss("newton")
    assert _rel(par, seq, _scale(seq)) <= tol


def test_nan_in_padded_inputs_gives_zero_outputs_and_finite_gradients():
    cell, p, xs, c0 = _setup(2, jnp.float32)
    pad = jnp.arange(T)[None, :] >= LENGTHS[:, None]
    xs = jnp.where(pad[..., None], jnp.nan, xs)

    def f(p, xs):
        ys, c = jrnn.unroll(cell, p, xs, carry=c0, lengths=LENGTHS, method="newton")
        return jnp.sum(ys) + jnp.sum(c.C), ys

    (_, ys), grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(p, xs)
    assert bool(jnp.all(jnp.where(pad[..., None], ys, 0.0) == 0.0))
    assert bool(jnp.all(jnp.isfinite(ys)))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    seq = _run(cell, p, xs, c0, lengths=LENGTHS)
    assert _rel(ys, seq[0], _scale(seq[0])) <= 1e-5


def test_scan_recurrence_max_plus_and_linear():
    a = jnp.array([[-1.0], [-2.0], [0.0], [-0.5]])
    b = jnp.array([[0.5], [3.0], [-9.0], [1.0]])
    h0, seq, h = jnp.array([2.0]), [], jnp.array([2.0])
    for t in range(4):
        h = jnp.maximum(a[t] + h, b[t])
        seq.append(h)
    np.testing.assert_array_equal(scan_recurrence(a, b, h0, semiring="max-plus"), jnp.stack(seq))
    mask, resets = jnp.array([True, False, True, True]), jnp.array([False, False, False, True])
    got = scan_recurrence(a, b, h0, mask, resets, semiring="linear")
    want = [a[0] * h0 + b[0]]
    want += [want[0], a[2] * want[0] + b[2], a[3] * h0 + b[3]]
    np.testing.assert_allclose(got, jnp.stack(want), rtol=1e-6)
    with pytest.raises(ValueError, match="semiring"):
        scan_recurrence(a, b, h0, semiring="log")


def _leaky():
    """``h_t = 0.5 h_{t-1} + x_t W``: a custom cell with a ``parallel`` form."""

    def init(key, input_size):
        return {"w": jax.random.normal(key, (input_size, 4))}

    def step(p, c, x):
        h = 0.5 * c.h + x @ p["w"]
        return jrnn.RNNState(h), h

    def parallel(p, xs, c, mask, resets):
        b = xs @ p["w"]
        hs = scan_recurrence(jnp.full_like(b, 0.5), b, c.h, mask, resets)
        return jrnn.RNNState(hs), hs

    return init, step, parallel


def test_custom_cell_parallel_and_wrappers():
    init, step, parallel = _leaky()
    cell = jrnn.custom_cell(init, step, hidden_size=4, parallel=parallel, name="leaky")
    p = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 9, 3))
    kw = {"lengths": jnp.array([9, 4]), "reverse": True, "return_carries": True}
    seq = jrnn.unroll(cell, p, xs, **kw)
    assert _rel(jrnn.unroll(cell, p, xs, method="newton", **kw), seq, _scale(seq)) <= 1e-6
    # wrappers that change the recurrence drop it; evaluation-identical ones keep it
    assert jrnn.zoneout(cell, 0.1).parallel is None
    assert jrnn.recurrent_dropout(cell, 0.0, input_rate=0.1).parallel is parallel
    with pytest.raises(ValueError, match="no field `h`"):  # the mLSTM's carry has no `h`
        jrnn.zoneout(jrnn.mlstm(4), 0.1)
    # training with a key: the sequential scan (method="auto")
    dropped = jrnn.recurrent_dropout(jrnn.mlstm(4), 0.0, input_rate=0.2)
    assert dropped.parallel is not None
    q = dropped.init(jax.random.key(0), 3)
    ys, _ = jrnn.unroll(dropped, q, xs, key=jax.random.key(2), method="auto")
    assert ys.shape == (2, 9, 4)
    # the layout is checked at construction
    bad = lambda p, xs, c, mask, resets: (c, xs @ p["w"])  # carries without the T axis
    with pytest.raises(ValueError, match="every step's carry"):
        jrnn.custom_cell(init, step, hidden_size=4, parallel=bad)
    with pytest.raises(TypeError, match="`parallel` must be callable"):
        jrnn.custom_cell(init, step, hidden_size=4, parallel=1)
