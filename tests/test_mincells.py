"""minGRU, minLSTM (Feng et al. 2024) and the LRU (Orvieto et al. 2023), and the associative
scan that ``jrnn.unroll(..., method="newton" | "quasi-newton" | "auto")`` runs for them.

Ground truth: two NumPy float64 references written separately from the papers' equations
-- ``jrnn.reference.min_forward`` (the sequential recurrence, complex arithmetic for the
LRU) and ``jrnn.reference.min_parallel`` (the papers' parallel forms: every state summed in
closed form, Heinsen's log-space scan, powers of the LRU's ``λ``, in the papers' own
parameter layout) --, finite differences of the JAX cells (``jax.test_util.check_grads``),
and the sequential ``lax.scan`` path, which the associative path must match in outputs,
carries and gradients (float64, 1e-8) with lengths, reverse, resets, batch axes and
``time_major``.  The LRU's initialisation is checked against the paper's distribution
(Kolmogorov-Smirnov statistics), and a small model with a min cell is trained.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import jrnn
from jrnn import reference as ref
from jrnn.strategy import prefer_associative
from tests.helpers import np_params, random_carry, random_params

B, T, I, H, N = 3, 7, 4, 3, 2
LENGTHS = np.array([T, 0, 4])
F64 = {"param_dtype": jnp.float64}

# (id, cell, reference kind, log_space)
VARIANTS = [
    ("mingru", jrnn.mingru(H, **F64), "mingru", False),
    ("mingru_log", jrnn.mingru(H, log_space=True, **F64), "mingru", True),
    ("minlstm", jrnn.minlstm(H, **F64), "minlstm", False),
    ("minlstm_log", jrnn.minlstm(H, log_space=True, **F64), "minlstm", True),
    ("lru", jrnn.lru(H, N, **F64), "lru", False),
]
IDS = [v[0] for v in VARIANTS]
PARAMS = {k: random_params(c, jax.random.key(0), I) for k, c, *_ in VARIANTS}
XS = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float64)
RESETS = jnp.zeros((B, T), bool).at[0, 3].set(True).at[2, 1].set(True).at[2, 3].set(True)


def _carry(name, cell, batch=(B,)):
    c = random_carry(cell, PARAMS[name], jax.random.key(2), batch)
    if dict(cell.config).get("log_space"):  # the log-space variant's state is positive
        c = c._replace(h=jnp.abs(c.h))
    return c


def _close(a, b, tol=1e-8):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol)


# ---- forward against the NumPy reference ------------------------------------------------


@pytest.mark.parametrize(("name", "cell", "kind", "log_space"), VARIANTS, ids=IDS)
@pytest.mark.parametrize("method", ["scan", "newton"])
@pytest.mark.parametrize("reverse", [False, True])
def test_forward_matches_reference(name, cell, kind, log_space, method, reverse):
    c0 = _carry(name, cell)
    ys, c_t = jrnn.unroll(
        cell, PARAMS[name], XS, carry=c0, lengths=LENGTHS, reverse=reverse, method=method
    )
    args = (kind, np_params(PARAMS[name]), np.asarray(XS), np.asarray(c0.h), LENGTHS)
    for oracle in (ref.min_forward, ref.min_parallel):  # sequential; the papers' parallel forms
        want_ys, want_h = oracle(*args, reverse=reverse, log_space=log_space)
        np.testing.assert_allclose(np.asarray(ys), want_ys, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.asarray(c_t.h), want_h, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("name", "cell", "kind", "log_space"), VARIANTS, ids=IDS)
def test_step_matches_reference_and_unbatched(name, cell, kind, log_space):
    p, c0 = PARAMS[name], _carry(name, cell)
    c1, y = cell.step(p, c0, XS[:, 0])
    want_ys, want_h = ref.min_forward(
        kind, np_params(p), np.asarray(XS[:, :1]), np.asarray(c0.h), log_space=log_space
    )
    np.testing.assert_allclose(np.asarray(y), want_ys[:, 0], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(c1.h), want_h, rtol=1e-12)
    c1_0, y_0 = cell.step(p, jrnn.RNNState(c0.h[0]), XS[0, 0])  # one unbatched input
    _close((c1_0.h, y_0), (c1.h[0], y[0]), 1e-14)


# ---- gradients ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "cell", "kind", "log_space"), VARIANTS, ids=IDS)
def test_gradients_match_finite_differences(name, cell, kind, log_space):
    c0 = _carry(name, cell)

    def loss(p, xs, h0):
        ys, c_t = jrnn.unroll(
            cell, p, xs, carry=jrnn.RNNState(h0), lengths=LENGTHS, resets=RESETS, method="newton"
        )
        return jnp.sum(jnp.sin(ys)) + jnp.sum(c_t.h**2)

    check_grads(loss, (PARAMS[name], XS, c0.h), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


# ---- the associative scan equals the sequential one ---------------------------------------


def _both(cell, p, xs, **kw):
    """``(outputs, gradients)`` of the sequential and the associative evaluation."""

    def run(method):
        def loss(p, xs, c0):
            ys, c_t, cs = jrnn.unroll(cell, p, xs, carry=c0, method=method, **kw)
            return jnp.sum(jnp.cos(ys)) + jnp.sum(jnp.tanh(c_t.h)) + jnp.sum(cs.h**2)

        out = jrnn.unroll(cell, p, xs, carry=kw_c0, method=method, **kw)
        return out, jax.grad(loss, argnums=(0, 1, 2))(p, xs, kw_c0)

    kw = dict(kw)
    kw_c0 = kw.pop("carry")
    kw["return_carries"] = True
    return run("scan"), run("newton")


@pytest.mark.parametrize(
    ("variant", "reverse"),
    [(0, False), (0, True), (1, True), (2, False), (3, True), (4, False), (4, True)],
    ids=["mingru", "mingru-rev", "mingru_log-rev", "minlstm", "minlstm_log-rev", "lru", "lru-rev"],
)
def test_associative_equals_scan_with_lengths_resets_and_two_batch_axes(variant, reverse):
    name, cell, *_ = VARIANTS[variant]
    xs = XS.reshape(1, B, T, I).repeat(2, axis=0) * jnp.array([1.0, -0.5])[:, None, None, None]
    lengths = jnp.stack([jnp.asarray(LENGTHS), jnp.array([2, T, 1])])
    resets = jnp.stack([RESETS, RESETS[::-1]])
    c0 = _carry(name, cell, (2, B))
    seq, par = _both(
        cell, PARAMS[name], xs, carry=c0, lengths=lengths, resets=resets, reverse=reverse
    )
    _close(seq, par)


@pytest.mark.parametrize(("name", "cell", "kind", "log_space"), VARIANTS[::2], ids=IDS[::2])
def test_associative_equals_scan_time_major_reverse_without_lengths(name, cell, kind, log_space):
    xs = jnp.swapaxes(XS, 0, 1)  # [T, B, I]
    seq, par = _both(
        cell,
        PARAMS[name],
        xs,
        carry=_carry(name, cell),
        reverse=True,
        resets=RESETS.T,
        time_major=True,
    )
    _close(seq, par)


@pytest.mark.parametrize("variant", [0, 4], ids=["mingru", "lru"])
def test_every_sequential_strategy_agrees_with_the_associative_scan(variant):
    # the hoisted VJP multiplies by the empty [S, 0] recurrent kernel: zero-width matmuls
    name, cell, *_ = VARIANTS[variant]
    p = PARAMS[name]

    def grad(**kw):
        loss = lambda p: jnp.sum(jnp.sin(jrnn.unroll(cell, p, XS, lengths=LENGTHS, **kw)[0]))
        return jax.grad(loss)(p)

    want = grad(method="newton")
    for kw in ({"vjp": "hoisted", "hoist": True}, {"remat": "sqrt"}):
        _close(grad(**kw), want, 1e-12)


def test_resets_equal_separately_unrolled_episodes():
    name, cell = "minlstm", VARIANTS[2][1]
    p, c0 = PARAMS[name], _carry(name, cell)
    resets = jnp.zeros((B, T), bool).at[:, 3].set(True)
    ys, _ = jrnn.unroll(cell, p, XS, carry=c0, resets=resets, method="newton")
    first, _ = jrnn.unroll(cell, p, XS[:, :3], carry=c0, method="newton")
    second, _ = jrnn.unroll(cell, p, XS[:, 3:], carry=c0, method="newton")
    _close(ys, jnp.concatenate([first, second], axis=1), 1e-12)


@settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    lengths=st.lists(st.integers(0, T), min_size=B, max_size=B),
    resets=st.lists(st.booleans(), min_size=B * T, max_size=B * T),
    scale=st.floats(0.1, 3.0),
)
def test_property_associative_equals_scan_for_any_lengths_and_resets(lengths, resets, scale):
    p = PARAMS["mingru"]
    args = (XS * scale, jnp.array(lengths), jnp.array(resets).reshape(B, T))
    seq, par = (_JITTED[m](p, *args) for m in ("scan", "newton"))
    _close(seq, par, 1e-10)


def _jitted(method):
    cell = VARIANTS[0][1]
    return jax.jit(lambda p, xs, n, r: jrnn.unroll(cell, p, xs, lengths=n, resets=r, method=method))


_JITTED = {m: _jitted(m) for m in ("scan", "newton")}


# ---- log space -------------------------------------------------------------------------


@pytest.mark.parametrize("factory", [jrnn.mingru, jrnn.minlstm])
def test_log_space_coefficients_are_the_logs_of_the_step(factory):
    cell = factory(H, log_space=True, **F64)
    p = PARAMS["mingru_log" if factory is jrnn.mingru else "minlstm_log"]
    xa = cell.fast.project(p, XS)
    la, lb, log_space = cell.affine(p, xa)
    assert log_space
    h = jnp.abs(jax.random.normal(jax.random.key(5), (B, T, H), jnp.float64))
    new, _ = cell.fast.gates(p, jrnn.RNNState(h), xa, jnp.zeros((B, T, 0), jnp.float64))
    _close(jnp.exp(la) * h + jnp.exp(lb), new.h, 1e-13)


def test_log_space_scan_is_stable_where_the_gates_saturate():
    cell = jrnn.mingru(H, log_space=True)  # float32
    p = cell.init(jax.random.key(0), I)
    xs = 60.0 * jax.random.normal(jax.random.key(1), (2, 64, I))  # σ(±large) saturates

    @jax.jit
    def run(p, xs):
        loss = lambda p: jnp.sum(jrnn.unroll(cell, p, xs, method="newton")[0])
        return (
            jrnn.unroll(cell, p, xs, method="newton")[0],
            jrnn.unroll(cell, p, xs)[0],
            jax.grad(loss)(p),
        )

    ys, ys_seq, grad = run(p, xs)
    assert bool(jnp.all(jnp.isfinite(ys))) and bool(jnp.all(ys >= 0))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grad))
    np.testing.assert_allclose(np.asarray(ys), np.asarray(ys_seq), rtol=1e-4, atol=1e-4)


# ---- methods, stacks, wrappers ----------------------------------------------------------


def test_newton_solve_and_training_keys_take_the_general_paths():
    # jrnn.newton.solve (explicit options) runs the Newton solver, which converges at once
    name, cell = "minlstm", VARIANTS[2][1]
    p = PARAMS[name]
    ys, _, info = jrnn.newton.solve(cell, p, XS, lengths=LENGTHS)
    _close(ys, jrnn.unroll(cell, p, XS, lengths=LENGTHS, method="newton")[0], 1e-8)
    assert bool(jnp.all(info.converged))
    # training a regularised affine cell with a parallel method: refused as for any cell
    drop = jrnn.recurrent_dropout(cell, 0.0, input_rate=0.5)
    with pytest.raises(ValueError, match="cannot train a regularised cell"):
        jrnn.unroll(drop, p, XS, key=jax.random.key(0), method="newton")


def test_methods_auto_and_quasi_newton():
    name, cell = "lru", VARIANTS[4][1]
    p = PARAMS[name]
    scan = jrnn.unroll(cell, p, XS, lengths=LENGTHS)
    for method in ("auto", "quasi-newton"):
        _close(jrnn.unroll(cell, p, XS, lengths=LENGTHS, method=method), scan)
    assert not prefer_associative(1 << 14, "cpu")  # measured: lax.scan wins on CPU
    assert prefer_associative(4096, "gpu") and not prefer_associative(16, "gpu")
    ys, _ = jrnn.unroll(cell, p, XS[:, :0], method="newton")  # T = 0: nothing to scan
    assert ys.shape == (B, 0, H)


def test_stack_of_min_cells_passes_method_to_every_layer():
    net = jrnn.stack(jrnn.minlstm(H, **F64), num_layers=2, bidirectional=True)
    p = net.init(jax.random.key(3), I)
    seq = net.apply(p, XS, lengths=LENGTHS, resets=RESETS)
    par = net.apply(p, XS, lengths=LENGTHS, resets=RESETS, method="newton")
    assert seq[0].shape == (B, T, 2 * H)
    _close(seq, par, 1e-12)


def test_a_sequence_model_with_a_min_cell_trains():
    """A minGRU model learns ``y_t = y_{t-1} / 2 + x_t[0]`` (a recurrence it can represent:
    ``z = 1/2``, ``h̃ = 2 x[0]``): with fixed seeds, 100 Adam steps take the MSE from about
    1.6 to below 1/50 of its initial value (measured: 0.008)."""
    from jrnn.train import init_train_state, make_train_step

    xs = jax.random.normal(jax.random.key(1), (16, 10, I), jnp.float32)
    ys, y = np.zeros((16, 10, 1), np.float32), np.zeros(16, np.float32)
    for t in range(10):
        y = 0.5 * y + np.asarray(xs[:, t, 0])
        ys[:, t, 0] = y
    model = jrnn.sequence_model(jrnn.mingru(8), 1, input_size=I)

    def loss_fn(p, batch, key):
        out, _ = model.apply(p, batch[0])
        return jnp.mean((out - batch[1]) ** 2), {}

    opt = optax.adam(1e-2)
    state = init_train_state(model.init(jax.random.key(0)), opt, jax.random.key(7))
    step = make_train_step(loss_fn, opt)
    losses = []
    for _ in range(100):
        state, metrics = step(state, (xs, jnp.asarray(ys)))
        losses.append(float(metrics["loss"]))
    assert losses[0] > 1.0 and losses[-1] < losses[0] / 50, (losses[0], losses[-1])


def _ks_statistic(samples: np.ndarray, cdf) -> float:
    """Kolmogorov-Smirnov ``sup_x |F_n(x) - F(x)|`` of ``samples`` against the CDF ``cdf``."""
    x = np.sort(samples)
    n, f = x.size, cdf(np.sort(samples))
    return float(max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n)))


def test_lru_initialisation_follows_the_paper():
    """Orvieto et al. 2023 (§3.3, Appendix A): λ uniform on the ring r_min <= |λ| <= r_max
    of the complex plane, i.e. |λ|² uniform on [r_min², r_max²]; phases uniform on
    [0, max_phase]; γ = sqrt(1 - |λ|²); Re B, Im B ~ N(0, 1/(2I)), C ~ N(0, 1/N) and
    D ~ N(0, 1/I) (the docstring's scales).  KS bound: 1.95 / sqrt(N), the 0.1% critical
    value; with the fixed key the statistics are deterministic."""
    n, size, r_min, r_max, max_phase = 4096, 64, 0.4, 0.9, math.pi
    cell = jrnn.lru(size, n, r_min=r_min, r_max=r_max, max_phase=max_phase, **F64)
    p = np_params(cell.init(jax.random.key(0), size))
    modulus, phase = np.exp(-np.exp(p["nu_log"])), np.exp(p["theta_log"])
    bound = 1.95 / math.sqrt(n)
    assert r_min <= modulus.min() and modulus.max() <= r_max
    area = lambda r2: (r2 - r_min**2) / (r_max**2 - r_min**2)  # CDF of |λ|²
    assert _ks_statistic(modulus**2, area) < bound
    # the statistic tells the two readings apart: |λ| uniform on [r_min, r_max] is rejected
    assert _ks_statistic(modulus, lambda r: (r - r_min) / (r_max - r_min)) > 2 * bound
    assert 0.0 <= phase.min() and phase.max() <= max_phase
    assert _ks_statistic(phase, lambda x: x / max_phase) < bound
    np.testing.assert_allclose(np.exp(p["gamma_log"]), np.sqrt(1 - modulus**2), rtol=1e-14)
    # scales: a variance over m samples has relative standard error sqrt(2 / m), 0.2% for
    # B and C (524288 entries each), 2.2% for D (4096)
    b, d, c = p["w_ih"][:, : 2 * n], p["w_ih"][:, 2 * n :], p["w_out"]
    for block, var in ((b, 1 / (2 * size)), (c, 1 / n), (d, 1 / size)):
        assert abs(block.var() / var - 1) < 0.05, (block.shape, block.var(), var)


def test_wrappers_and_other_cells():
    for cell in (jrnn.lstm(H), jrnn.gru(H), jrnn.simple_rnn(H)):
        assert cell.affine is None
    assert jrnn.zoneout(jrnn.mingru(H), 0.1).affine is None  # blended: sequential only
    assert jrnn.recurrent_dropout(jrnn.mingru(H), 0.0, input_rate=0.1).affine is not None
    cell = jrnn.recurrent_dropout(jrnn.mingru(H, **F64), 0.0, input_rate=0.5)
    p = PARAMS["mingru"]
    ys, _ = jrnn.unroll(cell, p, XS, key=jax.random.key(0), method="auto")  # sequential
    assert ys.shape == (B, T, H)
    _close(jrnn.unroll(cell, p, XS, method="newton"), jrnn.unroll(cell, p, XS), 1e-12)


def test_half_precision_lru_runs():
    cell = jrnn.lru(4, dtype=jnp.bfloat16)
    p = cell.init(jax.random.key(0), 3)
    ys, c = jax.jit(lambda p, xs: jrnn.unroll(cell, p, xs, method="newton"))(p, jnp.ones((2, 5, 3)))
    assert ys.dtype == jnp.bfloat16 and c.h.dtype == jnp.bfloat16 and c.h.shape == (2, 8)


# ---- bad inputs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: jrnn.mingru(0), ValueError, "mingru: `hidden_size` must be a positive int, got 0"),
        (lambda: jrnn.minlstm(2.5), ValueError, "minlstm: `hidden_size` must be a positive int"),
        (lambda: jrnn.mingru(4, log_space=1), ValueError, "mingru: `log_space` must be a Python"),
        (lambda: jrnn.lru(4, state_size=0), ValueError, "lru: `state_size` must be a positive"),
        (lambda: jrnn.lru(4, r_min=0.9, r_max=0.5), ValueError, "r_min=0.9, r_max=0.5"),
        (lambda: jrnn.lru(4, max_phase=0.0), ValueError, "lru: `max_phase` must be > 0, got 0.0"),
        (lambda: jrnn.lru(4, r_max="1"), TypeError, "lru: `r_max` must be a float, got '1'"),
        (
            lambda: jrnn.recurrent_dropout(jrnn.mingru(4), 0.2),
            ValueError,
            "recurrent_dropout: `rate` must be 0 for mingru",
        ),
    ],
)
def test_factories_refuse_bad_arguments(make, error, message):
    with pytest.raises(error, match=None) as info:
        make()
    assert message in str(info.value)


def test_unroll_refuses_bad_method_params_and_inputs():
    cell, p = VARIANTS[0][1], PARAMS["mingru"]
    with pytest.raises(ValueError, match="unroll: `method` must be 'scan', 'newton', 'quasi-"):
        jrnn.unroll(cell, p, XS, method="parallel")
    with pytest.raises(ValueError, match=r"unroll: `params\['w_ih'\]` must have shape \[4, 6\]"):
        jrnn.unroll(cell, {**p, "w_ih": p["w_ih"][:, :4]}, XS, method="newton")
    with pytest.raises(ValueError, match=r"unroll: `xs` must have shape \[\*batch, T, input_"):
        jrnn.unroll(cell, p, XS[..., :2], method="newton")
    with pytest.raises(ValueError, match=r"`carry.h` must have shape \[3, 3\]"):
        jrnn.unroll(cell, p, XS, carry=jrnn.RNNState(jnp.zeros((3, 4))), method="newton")
    lru = VARIANTS[4][1]
    with pytest.raises(ValueError, match="missing key 'gamma_log'"):
        bad = {k: v for k, v in PARAMS["lru"].items() if k != "gamma_log"}
        lru.step(bad, lru.initial_carry(PARAMS["lru"], (B,)), XS[:, 0])


def test_cli_config_takes_min_cells_and_refuses_layer_norm():
    from jrnn.app.config import Config
    from jrnn.app.errors import UsageError
    from jrnn.app.tasks.common import build_cell

    assert Config(task="adding", cell="lru").cell == "lru"
    with pytest.raises(UsageError, match="--layer-norm does not apply to --cell mingru"):
        Config(task="adding", cell="mingru", layer_norm=True)
    with pytest.raises(UsageError, match="--recurrent-dropout does not apply to --cell lru"):
        Config(task="adding", cell="lru", recurrent_dropout=0.1)
    cell = build_cell("minlstm", 4, dtype=jnp.float32, param_dtype=jnp.float32)
    assert cell.name.startswith("minlstm(hidden_size=4")


def test_diagnose_refuses_what_does_not_apply(tmp_path):
    from jrnn.app.diagnose import diagnose_cells
    from jrnn.app.errors import UsageError

    with pytest.raises(UsageError, match="--cell lru: diagnose reads the gradient through h_t"):
        diagnose_cells(("gru", "lru"), tmp_path / "d")
    with pytest.raises(UsageError, match="--recurrent-scale: --cell mingru has no recurrent"):
        diagnose_cells(("mingru",), tmp_path / "d", recurrent_scale=2.0)
