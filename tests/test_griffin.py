"""Griffin's RG-LRU (``jrnn.rglru``) against the authors' JAX layer, and its parallel form.

Ground truth:

* ``recurrentgemma.jax.layers.RGLRU`` (the authors' code, test-only extra ``refs``), with
  random weights converted by ``jrnn.griffin.from_recurrentgemma``: outputs and final
  states (float32; measured bit-equal, asserted to 1e-6) and gradients of a loss of both
  with respect to every parameter, the inputs and the initial state (float32, 2e-5
  relative + absolute; measured <= 1.5e-6), for the sequential and the associative scan,
  including the regime where ``1 - a_t²`` rounds to 0 and the authors' bound on the square
  root's derivative decides the gradient.  The reference layer accumulates its scan in
  float32 whatever its inputs (``acc_float_dtype``), so there is no float64 comparison.
* the associative scan equals the sequential step (float64 1e-10, float32 1e-6) with
  lengths, reverse, resets, in outputs, carries and gradients;
* finite differences of the cell (float64, ``jax.test_util.check_grads``).
"""

from __future__ import annotations

import importlib.util
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jrnn
from jrnn.griffin import MAX_SQRT_GRADIENT, from_recurrentgemma
from tests.helpers import random_carry, random_params

B, T, W, HEADS = 3, 9, 6, 2
LENGTHS = np.array([T, 0, 4])
RESETS = jnp.zeros((B, T), bool).at[0, 3].set(True).at[2, 1].set(True)

HAVE_RG = importlib.util.find_spec("recurrentgemma") is not None
needs_rg = pytest.mark.skipif(
    not HAVE_RG,
    reason="the reference recurrentgemma is not installed: pip install -e '.[refs]'",
)


def _close(a, b, tol):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol)


# ---- the authors' layer -------------------------------------------------------------


def _reference(a_shift: float = 0.0):
    """The authors' layer, its variables (random biases too; ``a_param`` shifted by
    ``a_shift``), float32 inputs, positions ``1..T`` (no document start) and ``h0``."""
    from recurrentgemma.jax.layers import RGLRU

    layer = RGLRU(width=W, num_heads=HEADS)
    xs = jax.random.normal(jax.random.key(1), (B, T, W), jnp.float32)
    pos = jnp.broadcast_to(jnp.arange(1, T + 1), (B, T))
    h0 = jax.random.normal(jax.random.key(2), (B, W), jnp.float32)
    variables = layer.init(jax.random.key(0), xs, pos, h0)
    keys = iter(jax.random.split(jax.random.key(3), 8))
    variables = jax.tree.map(
        lambda v: v + 0.3 * jax.random.normal(next(keys), v.shape, v.dtype), variables
    )
    variables["params"]["a_param"] = variables["params"]["a_param"] + a_shift
    return layer, variables, xs, pos, h0


@needs_rg
@pytest.mark.parametrize("a_shift", [0.0, -25.0], ids=["ring", "a-rounds-to-1"])
@pytest.mark.parametrize("method", ["scan", "newton"])
def test_equals_recurrentgemma_outputs_states_and_gradients(method, a_shift):
    """``a_shift=-25``: ``softplus(a_param) ~ 1e-11``, so ``a_t`` is 1 in float32 and the
    gradient through ``√(1 − a_t²)`` is the authors' bounded one (``MAX_SQRT_GRADIENT``)."""
    layer, variables, xs, pos, h0 = _reference(a_shift)
    cell = jrnn.rglru(W, num_heads=HEADS)
    params = from_recurrentgemma(variables)
    assert params["a_param"].dtype == jnp.float32

    def ref_loss(v, xs, h0):
        ys, last = layer.apply(v, xs, pos, h0)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(last**2), (ys, last)

    def jrnn_loss(p, xs, h0):
        ys, carry = jrnn.unroll(cell, p, xs, carry=jrnn.RNNState(h0), method=method)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(carry.h**2), (ys, carry.h)

    (_, want), g_want = jax.value_and_grad(ref_loss, (0, 1, 2), has_aux=True)(variables, xs, h0)
    (_, got), g_got = jax.value_and_grad(jrnn_loss, (0, 1, 2), has_aux=True)(params, xs, h0)
    _close(got, want, 1e-6)
    g_ref = from_recurrentgemma(g_want[0])
    g_ref.pop("w_x")  # the identity stand-in, no counterpart
    _close({k: g_got[0][k] for k in g_ref}, g_ref, 2e-5)
    _close(g_got[1:], g_want[1:], 2e-5)
    if a_shift:
        a = jnp.exp(-8 * jax.nn.softplus(params["a_param"]))
        assert bool(jnp.all(a == 1))  # the regime the bound is for
        assert bool(jnp.all(jnp.isfinite(g_got[0]["a_param"])))


@needs_rg
def test_initialisation_is_the_authors_ring():
    """``σ(Λ) = exp(-softplus(a_param))`` lies on the authors' ring ``[0.9, 0.999]`` for
    jrnn's init as for the layer's, with the same gate-weight scale (std ``1/sqrt(width)``:
    the layer's fan-in counts the heads; within 15% over 2 x 2048 weights)."""
    from recurrentgemma.jax.layers import RGLRU

    width, heads = 64, 2
    v = RGLRU(width=width, num_heads=heads).init(
        jax.random.key(0), jnp.ones((1, 2, width), jnp.float32), jnp.ones((1, 2), int)
    )["params"]
    p = jrnn.rglru(width, num_heads=heads).init(jax.random.key(0), width)
    for a_param in (v["a_param"], p["a_param"]):
        rad = np.exp(-np.asarray(jax.nn.softplus(a_param)))
        assert rad.min() >= 0.9 - 1e-6 and rad.max() <= 0.999 + 1e-6
    std = 1 / np.sqrt(width)
    for w in (v["a_gate"]["w"], v["input_gate"]["w"], p["w_a"], p["w_i"]):
        assert abs(float(np.std(w)) / std - 1) < 0.15
    assert p["w_a"].shape == v["a_gate"]["w"].shape and p["b_i"].shape == v["input_gate"]["b"].shape


# ---- parallel = sequential ----------------------------------------------------------


@pytest.mark.parametrize("dtype, tol", [(jnp.float64, 1e-10), (jnp.float32, 1e-6)])
def test_associative_scan_equals_the_sequential_step(dtype, tol):
    cell = jrnn.rglru(W, num_heads=HEADS, param_dtype=dtype)
    p = random_params(cell, jax.random.key(0), 4)
    xs = jax.random.normal(jax.random.key(1), (B, T, 4), dtype)
    c0 = random_carry(cell, p, jax.random.key(2), (B,))
    for kw in ({}, {"lengths": LENGTHS, "reverse": True}, {"resets": RESETS, "lengths": LENGTHS}):

        def loss(p, xs, c0, method, kw=kw):
            ys, c, cs = jrnn.unroll(cell, p, xs, carry=c0, method=method, return_carries=True, **kw)
            return jnp.sum(jnp.tanh(ys)) + jnp.sum(c.h**2), (ys, c, cs)

        seq = jax.value_and_grad(loss, (0, 1, 2), has_aux=True)(p, xs, c0, "scan")
        par = jax.value_and_grad(loss, (0, 1, 2), has_aux=True)(p, xs, c0, "newton")
        _close(par, seq, tol)
        assert seq[0][1][0].dtype == dtype


def test_gradients_equal_finite_differences():
    cell = jrnn.rglru(4, num_heads=2, param_dtype=jnp.float64)
    p = random_params(cell, jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3), jnp.float64)

    def f(p, xs):
        return jnp.sum(jnp.tanh(jrnn.unroll(cell, p, xs, lengths=jnp.array([5, 3]))[0]))

    check_grads(f, (p, xs), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


def test_the_square_root_derivative_is_bounded():
    from jrnn.griffin import _sqrt_bounded

    x = jnp.array([0.0, 1e-9, 0.25, 4.0], jnp.float64)
    np.testing.assert_array_equal(_sqrt_bounded(x), jnp.sqrt(x))
    grad = jax.vmap(jax.grad(_sqrt_bounded))(x)
    np.testing.assert_allclose(grad, [MAX_SQRT_GRADIENT, MAX_SQRT_GRADIENT, 1.0, 0.25])
    # forward mode agrees with reverse mode (diagnostics and Newton use jvp)
    np.testing.assert_allclose(jax.vmap(jax.jacfwd(_sqrt_bounded))(x), grad)


# ---- composition, dtypes, the CLI ---------------------------------------------------


def test_composes_with_stacks_models_and_dtypes():
    net = jrnn.stack(jrnn.rglru(4, param_dtype=jnp.float64), num_layers=2, bidirectional=True)
    p = net.init(jax.random.key(3), 3)
    xs = jax.random.normal(jax.random.key(1), (B, T, 3), jnp.float64)
    seq = net.apply(p, xs, lengths=LENGTHS, resets=RESETS)
    par = net.apply(p, xs, lengths=LENGTHS, resets=RESETS, method="newton")
    assert seq[0].shape == (B, T, 8)
    _close(seq, par, 1e-12)
    # bfloat16 compute over float32 params; zoneout keeps the step, drops `affine`
    cell = jrnn.rglru(4, dtype=jnp.bfloat16)
    params = cell.init(jax.random.key(0), 3)
    ys, carry = jrnn.unroll(cell, params, xs.astype(jnp.float32))
    assert ys.dtype == carry.h.dtype == jnp.bfloat16 and params["w_x"].dtype == jnp.float32
    assert jrnn.zoneout(cell, 0.1).affine is None
    model = jrnn.sequence_model(jrnn.rglru(8), 2, input_size=3)
    out, _ = model.apply(model.init(jax.random.key(0)), xs.astype(jnp.float32))
    assert out.shape == (B, T, 2)
    from jrnn.nn.linen import RNN  # the Flax wrapper runs the cell as jrnn.unroll does

    layer = RNN(jrnn.rglru(8, num_heads=2))
    x32 = xs.astype(jnp.float32)
    variables = layer.init(jax.random.key(0), x32)
    lengths = jnp.array([T, 2, 1])
    want, _ = jrnn.unroll(layer.cell, variables["params"]["cell"], x32, lengths=lengths)
    _close(layer.apply(variables, x32, lengths=lengths), want, 1e-6)


def test_cli_builds_rglru_and_refuses_what_does_not_apply():
    from jrnn.app.config import Config
    from jrnn.app.errors import UsageError
    from jrnn.app.tasks.common import build_cell

    assert Config(task="adding", cell="rglru").cell == "rglru"
    with pytest.raises(UsageError, match="--layer-norm does not apply to --cell rglru"):
        Config(task="adding", cell="rglru", layer_norm=True)
    cell = build_cell("rglru", 4, dtype=jnp.float32, param_dtype=jnp.float32)
    assert cell.name.startswith("rglru(hidden_size=4, num_heads=1") and cell.affine


# ---- bad input ----------------------------------------------------------------------


def test_bad_arguments_are_named():
    with pytest.raises(
        ValueError, match=r"`hidden_size` \(6\) must be divisible by `num_heads` \(4\)"
    ):
        jrnn.rglru(6, num_heads=4)
    with pytest.raises(ValueError, match="`min_rad` and `max_rad` must satisfy"):
        jrnn.rglru(4, min_rad=0.9, max_rad=1.0)
    with pytest.raises(ValueError, match="`c` must be > 0, got 0"):
        jrnn.rglru(4, c=0)
    with pytest.raises(TypeError, match="`w_init_variance_scale` must be a float, got '1'"):
        jrnn.rglru(4, w_init_variance_scale="1")
    with pytest.raises(ValueError, match="hidden_size"):
        jrnn.rglru(0)
    with pytest.raises(ValueError, match=r"lacks \['a_gate'\]"):
        from_recurrentgemma({"params": {"a_param": np.zeros(4), "input_gate": {}}})
    with pytest.raises(ValueError, match="only_real=False"):
        from_recurrentgemma({"a_imag_param": np.zeros(2)})
    bad = {"a_param": np.zeros(4), "input_gate": {"w": np.zeros((2, 2, 3)), "b": np.zeros(4)},
           "a_gate": {"w": np.zeros((2, 2, 2)), "b": np.zeros((2, 2))}}  # fmt: skip
    with pytest.raises(ValueError, match=r"`w_i` must be \[heads, width/heads"):
        from_recurrentgemma(bad)
    cell = jrnn.rglru(4)
    p = cell.init(jax.random.key(0), 3)
    with pytest.raises(
        ValueError, match=r"`params\['w_x'\]` must have shape \[5, 4\].*got \[3, 4\]"
    ):
        cell.step(p, cell.initial_carry(p, (2,)), jnp.ones((2, 5)))


def test_custom_cell_affine_needs_fast_and_a_one_field_carry():
    """The contract's ``affine`` capability, which ``rglru`` is built on."""
    init = lambda key, i: {"w": jnp.ones((i, 2))}
    step = lambda p, c, x: (jrnn.RNNState(0.5 * c.h + x @ p["w"]), c.h)
    affine = lambda p, xa: None
    with pytest.raises(ValueError, match="`affine` needs `fast`"):
        jrnn.custom_cell(init, step, hidden_size=2, affine=affine)
    fast = jrnn.FastPath(
        lambda p, xs: xs @ p["w"],
        lambda p: jnp.zeros((2, 0)),
        lambda p, c, xa, ha: (type(c)(*(0.5 * v + xa for v in c)), c[0]),
    )

    class TwoStates(NamedTuple):
        h: jax.Array
        n: jax.Array

    with pytest.raises(ValueError, match="`affine` needs the carry RNNState"):
        jrnn.custom_cell(
            init,
            lambda p, c, x: (TwoStates(c.h, c.n), c.h),
            initial_carry=lambda p, bs=(): TwoStates(jnp.zeros((*bs, 2)), jnp.zeros((*bs, 2))),
            fast=fast,
            affine=affine,
        )
    with pytest.raises(TypeError, match="`affine` must be callable"):
        jrnn.custom_cell(init, step, hidden_size=2, fast=fast, affine=1)
