"""xLSTM's sLSTM (``jrnn.slstm``) against the authors' PyTorch package ``xlstm``.

Ground truth: ``xlstm.blocks.slstm.cell.sLSTMCell`` (test-only extra ``refs``; its
"vanilla" PyTorch backend on CPU: ``slstm_forward`` with ``slstm_forward_pointwise``) with
random weights and biases converted by ``jrnn.xlstm.from_xlstm``, fed ``x @ W_x`` for a
random input projection ``W_x`` (the jrnn cell owns it):

* float64, from a random and from the zero state: outputs, final states ``(h, c, n, m)``
  and the gradients of a loss of both with respect to ``W_x``, ``R``, ``b``, the inputs and
  the initial state, to 1e-10 (measured ~1e-13), with one head and two, including the
  stabiliser's edge cases: inputs scaled by 30 (gate pre-activations in the hundreds), and
  512 steps with forget gates near 1 and input-gate pre-activations near 750, where
  ``exp(ĩ_t)`` overflows float64 and only the stabilised form is finite;
* float32, the same cases (128 steps with input gates near 100 for the long one, beyond
  float32's ``exp``): outputs and states to 2e-5 and gradients to 1e-4 of their largest
  entry (measured <= 1e-5 and ~1e-5);
* the first step of a fresh state (``n == 0``: the authors' ``m_1 = ĩ_1``), where the max
  form would divide 0 by 0; and finite differences (float64).
"""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jrnn
from jrnn.xlstm import SLSTMState, carry_from_xlstm, from_xlstm
from tests.helpers import random_params

H, NH, B, I = 8, 2, 3, 5
HAVE_XLSTM = all(importlib.util.find_spec(m) is not None for m in ("xlstm", "torch"))
needs_xlstm = pytest.mark.skipif(
    not HAVE_XLSTM,
    reason="the reference xlstm (and torch) is not installed: pip install -e '.[refs]'",
)


def _close(a, b, tol):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol)


def _close_scaled(a, b, tol):
    """Equal to ``tol`` times the largest entry of ``b`` (gradients summed over many steps)."""
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        v = np.asarray(v)
        np.testing.assert_allclose(np.asarray(u), v, rtol=0, atol=tol * max(1.0, np.abs(v).max()))


def _run_reference(
    T, dtype, *, heads=NH, scale=1.0, i_shift=0.0, f_shift=0.0, zero_state=False, seed=0
):
    """The authors' cell on ``x @ W_x`` from a random (or zero) state; a loss of its
    outputs and final state, backpropagated.  Returns what the jrnn side needs."""
    import torch
    from xlstm.blocks.slstm.cell import sLSTMCell, sLSTMCellConfig

    torch.manual_seed(seed)  # drawn in float64, then cast: the same numbers in either dtype
    randn = lambda *shape: torch.randn(*shape, dtype=torch.float64).to(dtype)
    config = sLSTMCellConfig(hidden_size=H, num_heads=heads, backend="vanilla", output_shape="BSH")
    ref = sLSTMCell(config).double()
    with torch.no_grad():
        for p in ref.parameters():  # the recurrent kernel and every bias (all 4 gates)
            p.add_(0.5 * torch.randn_like(p))
        ref.bias[:, 0] += i_shift  # external layout [heads, gate (i, f, z, o), unit]
        ref.bias[:, 1] += f_shift
    ref = ref.to(dtype)
    w_x = (randn(I, 4 * H) / I**0.5).requires_grad_()
    x = (scale * randn(B, T, I)).requires_grad_()
    s0 = torch.zeros(4, B, H, dtype=dtype) if zero_state else randn(4, B, H)
    s0.requires_grad_()
    y, s = ref(x @ w_x, s0)
    (torch.sin(y).sum() + (s**2).sum()).backward()
    return {
        "params": from_xlstm(ref, w_x=w_x),
        "xs": jnp.asarray(x.detach().numpy()),
        "carry": carry_from_xlstm(s0),
        "ys": y.detach().numpy(),
        "final": carry_from_xlstm(s.detach()),
        "grads": (
            {**from_xlstm({n: p.grad for n, p in ref.named_parameters()}), "w_x": w_x.grad},
            x.grad.numpy(),
            carry_from_xlstm(s0.grad),
        ),
    }


def _jrnn(ref, heads=NH):
    dtype = ref["xs"].dtype
    cell = jrnn.slstm(H, num_heads=heads, param_dtype=dtype)

    def loss_fn(p, xs, c0):
        ys, c = jrnn.unroll(cell, p, xs, carry=c0)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(a**2) for a in c), (ys, c)

    (_, (ys, carry)), grads = jax.value_and_grad(loss_fn, (0, 1, 2), has_aux=True)(
        ref["params"], ref["xs"], ref["carry"]
    )
    return ys, carry, grads


CASES = {
    "plain": dict(T=7),
    "one-head": dict(T=7, heads=1),
    "fresh-state": dict(T=7, zero_state=True),
    "inputs-x30": dict(T=7, scale=30.0, zero_state=True),
}


@needs_xlstm
@pytest.mark.parametrize(
    "case",
    [*CASES, "long-i-beyond-exp-range"],
)
def test_equals_the_authors_cell_float64(case):
    import torch

    kw = CASES.get(case) or dict(T=512, i_shift=750.0, f_shift=8.0, zero_state=True)
    ref = _run_reference(dtype=torch.float64, **kw)
    ys, carry, grads = _jrnn(ref, kw.get("heads", NH))
    _close(ys, ref["ys"], 1e-10)
    _close(carry, ref["final"], 1e-10)
    _close(grads, ref["grads"], 1e-10)
    if kw["T"] == 512:  # the stabiliser was needed: exp(ĩ_t) beyond float64's range (exp(709))
        assert float(jnp.min(carry.m)) > 720 and bool(jnp.all(jnp.isfinite(ys)))


@needs_xlstm
@pytest.mark.parametrize(
    "case",
    ["plain", "one-head", "inputs-x30", "long-i-beyond-exp-range"],
)
def test_equals_the_authors_cell_float32(case):
    import torch

    kw = {**CASES, "plain": dict(T=16)}.get(case) or dict(
        T=128, i_shift=100.0, f_shift=8.0, zero_state=True
    )
    ref = _run_reference(dtype=torch.float32, seed=1, **kw)
    ys, carry, grads = _jrnn(ref, kw.get("heads", NH))
    _close_scaled(ys, ref["ys"], 2e-5)
    _close_scaled(carry, ref["final"], 2e-5)
    _close_scaled(grads, ref["grads"], 1e-4)
    if kw["T"] == 128:  # exp(ĩ_t) beyond float32's range (exp(88.7))
        assert float(jnp.min(carry.m)) > 89 and bool(jnp.all(jnp.isfinite(ys)))


@needs_xlstm
def test_first_step_of_a_fresh_state():
    """The authors' quirk: on a fresh state (``n == 0``) ``m_1 = ĩ_1``, not the max, so
    ``i_1 = 1`` and ``n_1 = 1``; the max form would give ``n_1 = exp(ĩ_1 − log σ(f̃_1))``,
    0 in float32 for input-gate pre-activations near −120, and ``h_1 = 0 / 0``.  There the
    authors' float32 gradient is NaN (``min(exp(a), 1)`` with ``exp(a)`` overflowing, times
    0); jrnn's ``exp(min(a, 0))`` is the same function and stays finite, equal to the
    authors' float64 gradient.  The test for ``n == 0`` is per sequence: a batch of a fresh
    and a running sequence gives what each gives alone."""
    import torch

    kw = dict(T=6, i_shift=-120.0, zero_state=True)
    ref32 = _run_reference(dtype=torch.float32, **kw)
    ref64 = _run_reference(dtype=torch.float64, **kw)
    ys, carry, grads = _jrnn(ref32)
    assert bool(jnp.all(jnp.isfinite(ys))) and not np.all(np.isfinite(ref32["grads"][1]))
    _close_scaled(ys, ref32["ys"], 1e-5)
    _close_scaled(carry, ref32["final"], 1e-5)
    _close_scaled(grads, ref64["grads"], 1e-4)
    assert bool(jnp.all(jnp.isfinite(jnp.stack(jax.tree.leaves(grads[1])))))

    # per sequence: sequence 0 fresh, sequence 1 from a running state
    ref = _run_reference(T=5, dtype=torch.float64)
    c0 = ref["carry"]._replace(n=ref["carry"].n.at[0].set(0.0))
    cell = jrnn.slstm(H, num_heads=NH, param_dtype=jnp.float64)
    ys, carry = jrnn.unroll(cell, ref["params"], ref["xs"], carry=c0)
    for b in range(2):
        one = jax.tree.map(lambda a, b=b: a[b], c0)
        ys_b, carry_b = jrnn.unroll(cell, ref["params"], ref["xs"][b], carry=one)
        _close((ys[b], jax.tree.map(lambda a, b=b: a[b], carry)), (ys_b, carry_b), 1e-14)
    assert float(carry.m[0, 0]) != float(carry.m[1, 0])


@needs_xlstm
def test_converts_either_backend_and_initialises_as_the_authors():
    import torch
    from xlstm.blocks.slstm.cell import sLSTMCell, sLSTMCellConfig

    torch.manual_seed(0)
    vanilla = sLSTMCell(sLSTMCellConfig(hidden_size=H, num_heads=NH, backend="vanilla"))
    # the authors' default init (zero recurrent kernel, power-law forget bias) is jrnn's
    want = from_xlstm(vanilla)
    got = jrnn.slstm(H, num_heads=NH).init(jax.random.key(0), 4 * H)
    _close({k: got[k] for k in ("w_h", "b")}, {k: want[k] for k in ("w_h", "b")}, 1e-6)
    with torch.no_grad():
        for p in vanilla.parameters():
            p.add_(torch.randn_like(p))
    cuda = sLSTMCell(sLSTMCellConfig(hidden_size=H, num_heads=NH, backend="cuda"), True)
    cuda.recurrent_kernel[:] = vanilla.recurrent_kernel[:]  # the same external weights
    cuda.bias[:] = vanilla.bias[:]
    _close(from_xlstm(cuda), from_xlstm(vanilla), 0)
    _close(from_xlstm(cuda.state_dict()), from_xlstm(vanilla), 0)


def test_gradients_equal_finite_differences():
    cell = jrnn.slstm(4, num_heads=2, param_dtype=jnp.float64)
    p = random_params(cell, jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3), jnp.float64)

    def f(p, xs):
        return jnp.sum(jnp.tanh(jrnn.unroll(cell, p, xs, lengths=jnp.array([5, 3]))[0]))

    check_grads(f, (p, xs), order=1, modes=["rev"], atol=1e-6, rtol=1e-6, eps=1e-6)


def _scan(cell, p, xs, carry):
    """The step in a plain ``lax.scan`` (time-major), the ground truth for ``unroll``."""
    return jax.lax.scan(lambda c, x: cell.step(p, c, x), carry, jnp.swapaxes(xs, 0, 1))


def test_composes_with_unroll_stacks_models_zoneout_and_dtypes():
    cell = jrnn.slstm(4, num_heads=2, param_dtype=jnp.float64)
    p = random_params(cell, jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (B, 6, 3), jnp.float64)
    c0 = cell.initial_carry(p, (B,))
    # unroll (its fast path: the projection hoisted) equals the step scanned, also jitted
    carry, ys = _scan(cell, p, xs, c0)
    _close(
        jax.jit(lambda p, xs: jrnn.unroll(cell, p, xs))(p, xs),
        (jnp.swapaxes(ys, 0, 1), carry),
        1e-12,
    )
    # lengths: padded steps give y = 0, leave the carry alone and get exactly zero gradient,
    # whatever they hold (NaN here), with every strategy (hoisted projection or not, the
    # hand-structured backward pass, autodiff, remat) giving the same values and gradients
    lengths = jnp.array([6, 2, 0])
    pad = jnp.arange(6)[None, :, None] >= lengths[:, None, None]
    dirty = jnp.where(pad, jnp.nan, xs)

    def loss(p, xs, **kw):
        ys, c = jrnn.unroll(cell, p, xs, lengths=lengths, **kw)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(c.h) + jnp.sum(c.m), (ys, c)

    strategies = [
        dict(hoist=True, vjp="hoisted"),
        dict(hoist=False, vjp="autodiff"),
        dict(hoist=True, vjp="autodiff"),
        dict(remat="step"),
    ]
    grad = jax.grad(loss, (0, 1), has_aux=True)
    (gp, gx), (ys, c) = grad(p, dirty)
    assert bool(jnp.all(ys[1, 2:] == 0)) and not bool(jnp.any(gx[pad[..., 0]]))
    for kw in strategies:
        _close(grad(p, dirty, **kw), ((gp, gx), (ys, c)), 1e-12)
    _close(
        jax.tree.map(lambda a: a[1:2], c),
        _scan(cell, p, xs[1:2, :2], jax.tree.map(lambda a: a[:1], c0))[0],
        1e-12,
    )
    # reverse within lengths = forward on the flipped sequences
    ys_r, _ = jrnn.unroll(cell, p, xs, lengths=lengths, reverse=True)
    _close(ys_r[1, :2], jrnn.unroll(cell, p, xs[1, 1::-1])[0][::-1], 1e-12)
    # a reset at step 3 equals a fresh unroll of steps 3..5 (the fresh-state first step too)
    resets = jnp.zeros((B, 6), bool).at[:, 3].set(True)
    _close(
        jrnn.unroll(cell, p, xs, resets=resets)[0][:, 3:], jrnn.unroll(cell, p, xs[:, 3:])[0], 1e-12
    )
    # vmap of one sequence = the batch
    _close(jax.vmap(lambda x: jrnn.unroll(cell, p, x))(xs), jrnn.unroll(cell, p, xs), 1e-12)
    net = jrnn.stack(cell, num_layers=2, bidirectional=True)
    out = net.apply(net.init(jax.random.key(3), 3), xs, lengths=lengths)
    assert out[0].shape == (B, 6, 8) and bool(jnp.all(out[0][2] == 0))
    # zoneout of h (the output; c, n, m are the stabilised pair and its scale)
    zoned = jrnn.zoneout(cell, SLSTMState(h=0.1, c=0.0, n=0.0, m=0.0))
    ys_z, c_z = jrnn.unroll(zoned, p, xs, key=jax.random.key(4))
    assert bool(jnp.all(jnp.isfinite(ys_z))) and bool(jnp.all(ys_z[:, -1] == c_z.h))
    _close(jrnn.unroll(jrnn.zoneout(cell, 0.0), p, xs)[0], jrnn.unroll(cell, p, xs)[0], 1e-12)
    half = jrnn.slstm(4, dtype=jnp.bfloat16)
    ph = half.init(jax.random.key(0), 3)
    ys, carry = jrnn.unroll(half, ph, xs.astype(jnp.float32))
    assert ys.dtype == carry.m.dtype == jnp.bfloat16 and ph["w_x"].dtype == jnp.float32
    model = jrnn.sequence_model(jrnn.slstm(8, num_heads=2), 2, input_size=3)
    out, _ = model.apply(model.init(jax.random.key(0)), xs.astype(jnp.float32))
    assert out.shape == (B, 6, 2) and bool(jnp.all(jnp.isfinite(out)))


def test_bad_arguments_are_named():
    with pytest.raises(
        ValueError, match=r"slstm: `hidden_size` \(6\) must be divisible by `num_heads`"
    ):
        jrnn.slstm(6, num_heads=4)
    with pytest.raises(ValueError, match="slstm: `num_heads` must be a positive int, got 0"):
        jrnn.slstm(4, num_heads=0)
    with pytest.raises(ValueError, match="slstm: `hidden_size` must be a positive int"):
        jrnn.slstm(2.5)
    with pytest.raises(ValueError, match=r"missing \['_bias_'\]"):
        from_xlstm({"_recurrent_kernel_": np.zeros((1, 8, 2))})
    with pytest.raises(ValueError, match=r"`_recurrent_kernel_` is \[NH, 4\*DH, DH\]"):
        from_xlstm({"_recurrent_kernel_": np.zeros((1, 3, 2)), "_bias_": np.zeros(8)})
    with pytest.raises(ValueError, match=r"`w_x` must have shape \[input_size, 4\*H\] = \[I, 8\]"):
        from_xlstm(
            {"_recurrent_kernel_": np.zeros((1, 8, 2)), "_bias_": np.zeros(8)}, w_x=np.zeros((3, 4))
        )
    mlstm_weights = dict.fromkeys(
        ("igate.weight", "igate.bias", "fgate.weight", "fgate.bias", "outnorm.weight"),
        np.zeros(4),
    )
    with pytest.raises(ValueError, match="`w_x` applies to an sLSTMCell"):
        from_xlstm(mlstm_weights, w_x=np.zeros((3, 16)))
    with pytest.raises(ValueError, match=r"or an sLSTMCell's \[4, B, H\], got 2 parts"):
        carry_from_xlstm(np.zeros((2, 3, 8)))
    cell = jrnn.slstm(4)
    p = cell.init(jax.random.key(0), 3)
    bad = SLSTMState(*(jnp.zeros((2, 4)) for _ in range(3)), jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="carry"):
        cell.step(p, bad, jnp.ones((2, 3)))


def test_cli_builds_slstm_and_refuses_what_does_not_apply():
    from jrnn.app.config import Config
    from jrnn.app.errors import UsageError
    from jrnn.app.tasks.common import build_cell, make_cell

    assert Config(task="adding", cell="slstm").cell == "slstm"
    with pytest.raises(UsageError, match="--layer-norm does not apply to --cell slstm"):
        Config(task="adding", cell="slstm", layer_norm=True)
    cell = build_cell("slstm", 4, dtype=jnp.float32, param_dtype=jnp.float32)
    assert cell.name.startswith("slstm(hidden_size=4, num_heads=1") and cell.fast
    zoned = make_cell(Config(task="charlm", cell="slstm", zoneout=0.1))
    assert zoned.name.startswith("zoneout(") and "h=0.1, c=0.0, n=0.0, m=0.0" in zoned.name


def test_newton_solvers_equal_the_sequential_scan():
    """The sLSTM has no ``affine`` (its stabiliser ``m`` is a max-plus recurrence and its
    recurrent weights read ``h`` through a nonlinearity): ``method="newton"``/
    ``"quasi-newton"`` run jrnn's general parallel-in-time Newton solver, equal to
    ``lax.scan`` (float32, 1e-6), with lengths, from the fresh state."""
    cell = jrnn.slstm(4, num_heads=2)
    p = random_params(cell, jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 12, 3))
    lengths = jnp.array([12, 5])
    seq = jrnn.unroll(cell, p, xs, lengths=lengths)
    for method in ("newton", "quasi-newton"):
        _close(jrnn.unroll(cell, p, xs, lengths=lengths, method=method), seq, 1e-6)
