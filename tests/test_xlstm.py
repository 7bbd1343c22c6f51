"""xLSTM's mLSTM (``jrnn.mlstm``) against the authors' PyTorch package ``xlstm``.

Ground truth: ``xlstm.blocks.mlstm.cell.mLSTMCell`` (test-only extra ``refs``; its
"vanilla" PyTorch code on CPU: ``recurrent_step_stabilized_simple`` and
``parallel_stabilized_simple``) with random weights converted by ``jrnn.xlstm.from_xlstm``:

* its recurrent step, looped over time from a random state, in float64: outputs, final
  states ``(C, n, m)`` and the gradients of a loss of both with respect to every weight,
  the inputs and the initial state, to 1e-10 (measured ~1e-15), including the stabiliser's
  edge cases (input-gate pre-activations shifted by +-40, and 400 steps of forget gates
  near 1 and input-gate pre-activations near 750, where ``exp(ĩ_t)`` overflows float64
  and only the stabilised form is finite);
* its parallel form (the cell's ``forward``, zero initial state) in float32: outputs and
  input gradients to 1e-5 relative + absolute (the parallel form stabilises row-wise with a
  different ``m`` and adds ``eps`` at that scale: the two forms of the authors' code differ
  by about ``eps`` themselves, measured ~1e-7 in float64);
* finite differences (float64).
"""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jrnn
from jrnn.xlstm import MLSTMState, carry_from_xlstm, from_xlstm
from tests.helpers import random_params

H, NH, B = 8, 2, 3
HAVE_XLSTM = all(importlib.util.find_spec(m) is not None for m in ("xlstm", "torch"))
needs_xlstm = pytest.mark.skipif(
    not HAVE_XLSTM,
    reason="the reference xlstm (and torch) is not installed: pip install -e '.[refs]'",
)


def _close(a, b, tol):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol)


def _reference(T, dtype, gate_shift=0.0, f_shift=0.0, seed=0):
    import torch
    from xlstm.blocks.mlstm.cell import mLSTMCell, mLSTMCellConfig

    torch.manual_seed(seed)
    ref = mLSTMCell(mLSTMCellConfig(context_length=T, embedding_dim=H, num_heads=NH))
    ref = ref.to(dtype)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.5 * torch.randn_like(p))
        ref.igate.bias.add_(gate_shift)
        ref.fgate.bias.add_(f_shift)
    return ref


def _torch_grads(ref, tensors):
    return [t.grad.numpy() for t in tensors]


@needs_xlstm
@pytest.mark.parametrize(
    "T, gate_shift, f_shift",
    [(7, 0.0, 0.0), (7, 40.0, 0.0), (7, -40.0, 0.0), (400, 750.0, 8.0)],
    ids=["plain", "i-large", "i-very-negative", "long-i-beyond-exp-range"],
)
def test_equals_the_authors_recurrent_step_float64(T, gate_shift, f_shift):
    import torch

    ref = _reference(T, torch.float64, gate_shift, f_shift)
    q, k, v = (torch.randn(B, T, H, dtype=torch.float64, requires_grad=True) for _ in range(3))
    c0 = torch.randn(B, NH, H // NH, H // NH, dtype=torch.float64, requires_grad=True)
    n0 = torch.randn(B, NH, H // NH, 1, dtype=torch.float64, requires_grad=True)
    m0 = torch.randn(B, NH, 1, 1, dtype=torch.float64, requires_grad=True)
    state, ys = (c0, n0, m0), []
    for t in range(T):
        qt, kt, vt = (a[:, t : t + 1].clone() for a in (q, k, v))  # step squeezes in place
        y, state = ref.step(qt, kt, vt, mlstm_state=state)
        ys.append(y)
    y_ref = torch.cat(ys, 1)
    loss = torch.sin(y_ref).sum() + sum((s**2).sum() for s in state)
    loss.backward()

    cell = jrnn.mlstm(H, num_heads=NH, param_dtype=jnp.float64)
    params = from_xlstm(ref)
    xs = jnp.asarray(torch.cat([q, k, v], -1).detach().numpy())
    carry0 = carry_from_xlstm((c0, n0, m0))

    def loss_fn(p, xs, c0):
        ys, c = jrnn.unroll(cell, p, xs, carry=c0)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(a**2) for a in c), (ys, c)

    (_, (ys, carry)), grads = jax.value_and_grad(loss_fn, (0, 1, 2), has_aux=True)(
        params, xs, carry0
    )
    _close(ys, y_ref.detach().numpy(), 1e-10)
    _close(carry, carry_from_xlstm(state), 1e-10)
    # gradients: weights, inputs (the [q | k | v] blocks), initial state
    g_ref = from_xlstm({n: p.grad for n, p in ref.named_parameters()})
    for name in ("w_i", "b_i", "w_f", "b_f", "w_norm"):
        _close(grads[0][name], g_ref[name], 1e-10)
    _close(grads[1], np.concatenate([t.grad.numpy() for t in (q, k, v)], -1), 1e-10)
    _close(grads[2], carry_from_xlstm((c0.grad, n0.grad, m0.grad)), 1e-10)
    if T == 400:  # the stabiliser was needed: exp(ĩ_t) beyond float64's range (exp(709))
        assert float(jnp.min(carry.m)) > 720 and bool(jnp.all(jnp.isfinite(ys)))


@needs_xlstm
def test_equals_the_authors_parallel_form_float32():
    import torch

    T = 16
    ref = _reference(T, torch.float32, seed=1)
    q, k, v = (torch.randn(B, T, H, requires_grad=True) for _ in range(3))
    y_ref = ref(q, k, v)
    torch.sin(y_ref).sum().backward()

    cell = jrnn.mlstm(H, num_heads=NH)
    params = from_xlstm(ref)
    xs = jnp.asarray(torch.cat([q, k, v], -1).detach().numpy())

    def loss_fn(p, xs):
        ys, _ = jrnn.unroll(cell, p, xs)
        return jnp.sum(jnp.sin(ys)), ys

    (_, ys), (gp, gx) = jax.value_and_grad(loss_fn, (0, 1), has_aux=True)(params, xs)
    _close(ys, y_ref.detach().numpy(), 1e-5)
    _close(gx, np.concatenate([t.grad.numpy() for t in (q, k, v)], -1), 1e-4)
    g_ref = from_xlstm({n: p.grad for n, p in ref.named_parameters()})
    for name in ("w_i", "b_i", "w_f", "b_f", "w_norm"):
        _close(gp[name], g_ref[name], 1e-4)


def test_gradients_equal_finite_differences():
    cell = jrnn.mlstm(4, num_heads=2, param_dtype=jnp.float64)
    p = random_params(cell, jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3), jnp.float64)

    def f(p, xs):
        return jnp.sum(jnp.tanh(jrnn.unroll(cell, p, xs, lengths=jnp.array([5, 3]))[0]))

    check_grads(f, (p, xs), order=1, modes=["rev"], atol=1e-6, rtol=1e-6, eps=1e-6)


def test_composes_with_stacks_models_resets_and_dtypes():
    cell = jrnn.mlstm(4, num_heads=2, param_dtype=jnp.float64)
    p = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (B, 6, 3), jnp.float64)
    # a reset at step 3 equals a fresh unroll of steps 3..5
    resets = jnp.zeros((B, 6), bool).at[:, 3].set(True)
    ys, _ = jrnn.unroll(cell, p, xs, resets=resets)
    _close(ys[:, 3:], jrnn.unroll(cell, p, xs[:, 3:])[0], 1e-12)
    net = jrnn.stack(cell, num_layers=2, bidirectional=True)
    out = net.apply(net.init(jax.random.key(3), 3), xs, lengths=jnp.array([6, 2, 0]))
    assert out[0].shape == (B, 6, 8) and bool(jnp.all(out[0][2] == 0))
    half = jrnn.mlstm(4, dtype=jnp.bfloat16)
    ph = half.init(jax.random.key(0), 3)
    ys, carry = jrnn.unroll(half, ph, xs.astype(jnp.float32))
    assert ys.dtype == carry.C.dtype == jnp.bfloat16 and ph["w_q"].dtype == jnp.float32
    model = jrnn.sequence_model(jrnn.mlstm(8, num_heads=2), 2, input_size=3)
    out, _ = model.apply(model.init(jax.random.key(0)), xs.astype(jnp.float32))
    assert out.shape == (B, 6, 2) and bool(jnp.all(jnp.isfinite(out)))
    from jrnn.nn.linen import RNN  # the Flax wrapper runs the cell as jrnn.unroll does

    layer = RNN(jrnn.mlstm(8, num_heads=2))
    x32 = xs.astype(jnp.float32)
    variables = layer.init(jax.random.key(0), x32)
    lengths = jnp.array([6, 2, 1])
    want, _ = jrnn.unroll(layer.cell, variables["params"]["cell"], x32, lengths=lengths)
    _close(layer.apply(variables, x32, lengths=lengths), want, 1e-6)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"`hidden_size` \(6\) must be divisible by `num_heads`"):
        jrnn.mlstm(6, num_heads=4)
    with pytest.raises(ValueError, match="`eps` must be a float >= 0, got -1"):
        jrnn.mlstm(4, eps=-1)
    with pytest.raises(ValueError, match=r"missing \['outnorm.weight'\]"):
        from_xlstm({"igate.weight": 0, "igate.bias": 0, "fgate.weight": 0, "fgate.bias": 0})
    cell = jrnn.mlstm(4)
    p = cell.init(jax.random.key(0), 3)
    bad = MLSTMState(jnp.zeros((2, 1, 4, 4)), jnp.zeros((2, 1, 4)), jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match="carry"):
        cell.step(p, bad, jnp.ones((2, 3)))


def test_cli_builds_mlstm_and_refuses_what_does_not_apply(tmp_path):
    from jrnn.app.config import Config
    from jrnn.app.diagnose import diagnose_cells
    from jrnn.app.errors import UsageError
    from jrnn.app.tasks.common import build_cell

    assert Config(task="adding", cell="mlstm").cell == "mlstm"
    with pytest.raises(UsageError, match="--layer-norm does not apply to --cell mlstm"):
        Config(task="adding", cell="mlstm", layer_norm=True)
    with pytest.raises(UsageError, match="--zoneout does not apply to --cell mlstm"):
        Config(task="charlm", cell="mlstm", zoneout=0.1)
    with pytest.raises(UsageError, match="--cell mlstm: diagnose reads the gradient"):
        diagnose_cells(("mlstm",), tmp_path / "d")
    cell = build_cell("mlstm", 4, dtype=jnp.float32, param_dtype=jnp.float32)
    assert cell.name.startswith("mlstm(hidden_size=4, num_heads=1")


def test_newton_solvers_equal_the_sequential_scan():
    """``method="newton"``/``"quasi-newton"`` run the mLSTM's parallel form (associative
    scans; ``tests/test_mlstm_parallel.py``) and ``jrnn.newton.solve`` jrnn's general
    parallel-in-time Newton solver: both equal ``lax.scan`` (float64, 1e-10; measured
    ~1e-15), with lengths."""
    cell = jrnn.mlstm(4, num_heads=2, param_dtype=jnp.float64)
    p = random_params(cell, jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 12, 3), jnp.float64)
    lengths = jnp.array([12, 5])
    seq = jrnn.unroll(cell, p, xs, lengths=lengths)
    for method in ("newton", "quasi-newton"):
        _close(jrnn.unroll(cell, p, xs, lengths=lengths, method=method), seq, 1e-10)
    ys, carry, _ = jrnn.newton.solve(cell, p, xs, lengths=lengths)
    _close((ys, carry), seq, 1e-10)
