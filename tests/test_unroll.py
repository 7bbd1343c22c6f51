"""unroll semantics: batching, vmap, time-major, unroll factor, lengths, reverse, carries;
stacks against manual composition and the reference."""

from functools import partial

import chex
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn import reference as ref
from tests.helpers import (
    VARIANT_IDS,
    VARIANTS,
    np_params,
    random_carry,
    random_params,
    ref_to_tuple,
    to_ref_carry,
)

I, H = 3, 4


def _cell(variant, dtype=jnp.float64):
    _, factory, kind, act = variant
    cell = factory(H, param_dtype=dtype)
    return cell, random_params(cell, jax.random.key(0), I), kind, act


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_vmap_of_one_sequence_equals_batched_call(variant):
    cell, params, _, _ = _cell(variant)
    xs = jax.random.normal(jax.random.key(1), (5, 7, I), jnp.float64)
    lengths = jnp.array([7, 0, 3, 1, 5])
    batched = jrnn.unroll(cell, params, xs, lengths=lengths, reverse=True)
    single = jax.vmap(lambda x, n: jrnn.unroll(cell, params, x, lengths=n, reverse=True))(
        xs, lengths
    )
    chex.assert_trees_all_close(batched, single, atol=1e-12)


def test_several_batch_axes_time_major_and_unroll_factor():
    cell, params, _, _ = _cell(VARIANTS[2])
    xs = jax.random.normal(jax.random.key(1), (2, 3, 9, I), jnp.float64)
    lengths = jnp.array([[9, 4, 0], [1, 9, 6]])
    ys, carry = jrnn.unroll(cell, params, xs, lengths=lengths)
    assert ys.shape == (2, 3, 9, H) and carry.h.shape == (2, 3, H)
    flat, flat_carry = jrnn.unroll(cell, params, xs.reshape(6, 9, I), lengths=lengths.reshape(6))
    chex.assert_trees_all_close(ys.reshape(6, 9, H), flat, atol=1e-12)
    ys_tm, carry_tm = jrnn.unroll(
        cell, params, jnp.moveaxis(xs, 2, 0), lengths=lengths, time_major=True
    )
    chex.assert_trees_all_close(jnp.moveaxis(ys_tm, 0, 2), ys, atol=1e-12)
    chex.assert_trees_all_close(carry_tm, carry, atol=1e-12)
    for u in (2, 3, 9):
        chex.assert_trees_all_close(
            jrnn.unroll(cell, params, xs, lengths=lengths, unroll=u), (ys, carry), atol=1e-12
        )
    single, _ = jrnn.unroll(cell, params, xs[0, 0])  # no batch axis at all
    chex.assert_trees_all_close(single, ys[0, 0], atol=1e-12)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_lengths_and_reverse_match_reference(variant, reverse):
    cell, params, kind, act = _cell(variant)
    xs = jax.random.normal(jax.random.key(2), (4, 6, I), jnp.float64)
    xs = xs.at[1, 2:].set(jnp.nan)  # padding content must never leak
    lengths = jnp.array([6, 2, 0, 5])
    carry = random_carry(cell, params, jax.random.key(3), (4,))
    ys, carry_t = jrnn.unroll(cell, params, xs, carry=carry, lengths=lengths, reverse=reverse)
    xs_np = np.where(np.isnan(np.asarray(xs)), 0.0, np.asarray(xs))
    ys_ref, carry_ref = ref.forward(
        kind,
        np_params(params),
        xs_np,
        to_ref_carry(kind, carry),
        lengths=np.asarray(lengths),
        reverse=reverse,
        activation=act,
    )
    chex.assert_trees_all_close(ys, ys_ref, atol=1e-10)
    chex.assert_trees_all_close(tuple(carry_t), ref_to_tuple(kind, carry_ref), atol=1e-10)
    chex.assert_trees_all_equal(
        jax.tree.map(lambda c: c[2], carry_t), jax.tree.map(lambda c: c[2], carry)
    )  # length 0: carry returned unchanged
    assert not np.any(np.asarray(ys[2]))  # and all outputs zero


def test_reverse_outputs_align_with_inputs_and_full_lengths_equal_no_lengths():
    cell, params, _, _ = _cell(VARIANTS[4])
    xs = jax.random.normal(jax.random.key(4), (3, 5, I), jnp.float64)
    full = jnp.full((3,), 5)
    for reverse in (False, True):
        chex.assert_trees_all_close(
            jrnn.unroll(cell, params, xs, reverse=reverse),
            jrnn.unroll(cell, params, xs, lengths=full, reverse=reverse),
            atol=1e-12,
        )
    # reverse == forward over the time-flipped input, flipped back
    ys_rev, c_rev = jrnn.unroll(cell, params, xs, reverse=True)
    ys_flip, c_flip = jrnn.unroll(cell, params, xs[:, ::-1])
    chex.assert_trees_all_close((ys_rev, c_rev), (ys_flip[:, ::-1], c_flip), atol=1e-12)


def test_return_carries_gives_every_state_including_lstm_cell():
    cell, params, kind, _ = _cell(VARIANTS[3])
    xs = jax.random.normal(jax.random.key(5), (2, 5, I), jnp.float64)
    lengths = jnp.array([5, 3])
    ys, carry_t, carries = jrnn.unroll(cell, params, xs, lengths=lengths, return_carries=True)
    assert carries.c.shape == (2, 5, H)
    chex.assert_trees_all_close(carries.h[0], ys[0], atol=1e-12)
    chex.assert_trees_all_close(carries.c[:, -1], carry_t.c, atol=1e-12)  # padded steps hold
    for t in range(5):  # carries[t] is the state after the prefix of length t+1
        _, c = jrnn.unroll(cell, params, xs[:, : t + 1], lengths=jnp.minimum(lengths, t + 1))
        chex.assert_trees_all_close(jax.tree.map(lambda a, t=t: a[:, t], carries), c, atol=1e-12)


def test_jitted_unroll_traces_once():
    cell = jrnn.gru(H)
    params = cell.init(jax.random.key(0), I)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(p, x, n):
        return jrnn.unroll(cell, p, x, lengths=n)

    x = jnp.ones((2, 5, I), jnp.float32)
    run(params, x, jnp.array([5, 2]))
    run(params, x + 1, jnp.array([1, 3]))


# --------------------------------------------------------------------------------------
# stacks


@pytest.mark.parametrize("variant", [VARIANTS[2], VARIANTS[5]], ids=["lstm", "gru_reset_after"])
def test_bidirectional_stack_equals_manual_composition_and_reference(variant):
    _, factory, kind, act = variant
    cell = factory(H, param_dtype=jnp.float64)
    net = jrnn.stack(cell, num_layers=2, bidirectional=True)
    params = net.init(jax.random.key(0), I)
    assert params[1][0]["w_ih"].shape[0] == 2 * H
    xs = jax.random.normal(jax.random.key(1), (3, 6, I), jnp.float64)
    lengths = jnp.array([6, 1, 4])
    ys, carries = net.apply(params, xs, lengths=lengths)
    assert ys.shape == (3, 6, 2 * H)

    inp, manual = xs, []
    for layer in params:
        f, cf = jrnn.unroll(cell, layer[0], inp, lengths=lengths)
        b, cb = jrnn.unroll(cell, layer[1], inp, lengths=lengths, reverse=True)
        inp = jnp.concatenate([f, b], -1)
        manual.append((cf, cb))
    chex.assert_trees_all_close(ys, inp, atol=1e-12)
    chex.assert_trees_all_close(carries, tuple(manual), atol=1e-12)

    layer_params = tuple(tuple(np_params(p) for p in layer) for layer in params)
    ys_ref, carries_ref = ref.stack_forward(
        kind,
        layer_params,
        np.asarray(xs),
        lengths=np.asarray(lengths),
        bidirectional=True,
        activation=act,
    )
    chex.assert_trees_all_close(ys, ys_ref, atol=1e-10)
    for layer in range(2):
        for d in range(2):
            chex.assert_trees_all_close(
                tuple(carries[layer][d]), ref_to_tuple(kind, carries_ref[layer][d]), atol=1e-10
            )


def test_stack_initial_carries_and_dropout():
    net = jrnn.stack(jrnn.lstm(H), num_layers=3, dropout=0.5)
    params = net.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (2, 5, I), jnp.float32)
    c0 = net.initial_carry(params, (2,))
    c0 = jax.tree.map(lambda a: a + 0.3, c0)
    ys_eval, _ = net.apply(params, xs, carries=c0)
    chex.assert_trees_all_equal(ys_eval, net.apply(params, xs, carries=c0)[0])
    ys_a, _ = net.apply(params, xs, carries=c0, key=jax.random.key(2))
    ys_b, _ = net.apply(params, xs, carries=c0, key=jax.random.key(3))
    assert not np.allclose(ys_a, ys_eval) and not np.allclose(ys_a, ys_b)
    # dropout=0 with a key is the evaluation path
    net0 = jrnn.stack(jrnn.lstm(H), num_layers=3)
    chex.assert_trees_all_equal(
        net0.apply(params, xs, carries=c0, key=jax.random.key(2)),
        net0.apply(params, xs, carries=c0),
    )
    # the last layer's output is never dropped: dropout on layer 1 only, manual check
    net2 = jrnn.stack(jrnn.lstm(H), num_layers=2, dropout=0.5)
    p2 = net2.init(jax.random.key(4), I)
    key = jax.random.key(5)
    ys2, _ = net2.apply(p2, xs, key=key)
    _, sub = jax.random.split(key)
    h1, _ = jrnn.unroll(net2.cell, p2[0][0], xs)
    keep = jax.random.bernoulli(sub, 0.5, h1.shape)
    h2, _ = jrnn.unroll(net2.cell, p2[1][0], jnp.where(keep, h1 / 0.5, 0.0))
    chex.assert_trees_all_close(ys2, h2, atol=1e-6)


@pytest.mark.parametrize("remat", ["step", "sqrt"])
@pytest.mark.parametrize("num_steps", [1, 9])
def test_remat_gives_the_same_values_and_gradients(remat, num_steps):
    cell, params, _, _ = _cell(VARIANTS[3])
    xs = jax.random.normal(jax.random.key(6), (2, num_steps, I), jnp.float64)
    for kw in (dict(), dict(reverse=True), dict(lengths=jnp.array([num_steps, 1]), reverse=True)):

        def loss(p, x, remat, kw=kw):
            ys, c = jrnn.unroll(cell, p, x, remat=remat, **kw)
            return jnp.sum(jnp.sin(ys)) + jnp.sum(c.c**2)

        want = jax.value_and_grad(loss, (0, 1))(params, xs, "none")
        got = jax.value_and_grad(loss, (0, 1))(params, xs, remat)
        chex.assert_trees_all_close(got, want, atol=1e-12)


def test_sqrt_remat_bounds_temporary_memory():
    cell = jrnn.gru(32)
    params = cell.init(jax.random.key(0), 8)
    xs = jnp.ones((4, 1024, 8))

    def temp_bytes(remat):
        loss = lambda p: jnp.sum(jrnn.unroll(cell, p, xs, remat=remat)[1].h ** 2)
        compiled = jax.jit(jax.grad(loss)).lower(params).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    none, sqrt = temp_bytes("none"), temp_bytes("sqrt")
    assert sqrt * 10 < none, (sqrt, none)


def test_unknown_remat():
    cell, params, _, _ = _cell(VARIANTS[0])
    with pytest.raises(ValueError, match="`remat` must be 'none', 'step' or 'sqrt', got 'all'"):
        jrnn.unroll(cell, params, jnp.ones((2, 3, I)), remat="all")


def test_default_strategy_is_the_measured_table_and_deterministic():
    """On CPU the default for a shape is the strategy measured fastest at the nearest shape
    of ``jrnn/tuned.py`` (written by ``python -m benchmarks.tune``): exactly the entry at a
    measured shape, the same choice for the same shapes, and in-step autodiff without a
    shape; accelerators always get the hoisted projection and backward."""
    from jrnn import tuned
    from jrnn.strategy import default_strategy

    assert tuned.CPU, "jrnn/tuned.py holds no measurements"
    for (batch, steps, hidden), hoist, vjp in tuned.CPU:
        got = default_strategy("cpu", batch=batch, steps=steps, hidden=hidden)
        assert got == {"hoist": hoist, "vjp": vjp}
    shapes = [(2, 5, 4), (3, 3000, 200), (1000, 16, 1024), (8, 4096, 256)]
    first = [default_strategy("cpu", batch=b, steps=t, hidden=h) for b, t, h in shapes]
    assert first == [default_strategy("cpu", batch=b, steps=t, hidden=h) for b, t, h in shapes]
    assert first[3] == {"hoist": True, "vjp": "hoisted"}  # long sequences, small batch
    assert first[2] == {"hoist": False, "vjp": "autodiff"}  # a large batch
    # T weighs a quarter: B=64, T=256, H=512 is nearest to (64, 128, 512), not (32, 256, 512)
    near = {(b, t, h): (hoist, vjp) for (b, t, h), hoist, vjp in tuned.CPU}
    if (64, 128, 512) in near:
        hoist, vjp = near[64, 128, 512]
        got = default_strategy("cpu", batch=64, steps=256, hidden=512)
        assert got == {"hoist": hoist, "vjp": vjp}
    assert default_strategy("cpu") == {"hoist": False, "vjp": "autodiff"}
    assert default_strategy("gpu", batch=2, steps=5, hidden=4) == {"hoist": True, "vjp": "hoisted"}


def test_inference_projects_in_step_on_cpu_while_training_keeps_the_hoisted_strategy():
    """At a shape whose training strategy is the hoisted projection (B=4, T=2048), a call
    that is not differentiated runs the in-step scan: its program holds no ``[T, B, 4H]``
    projection buffer (an explicit ``hoist=True`` does), its outputs are those of
    ``hoist=True``, and ``jax.grad`` still differentiates the hoisted strategy."""
    from jrnn.strategy import default_strategy

    B, T, H = 4, 2048, 64
    assert default_strategy("cpu", batch=B, steps=T, hidden=H)["hoist"] is True
    cell = jrnn.lstm(H)
    params = cell.init(jax.random.key(0), 8)
    xs = jax.random.normal(jax.random.key(1), (B, T, 8))

    def forward(**kw):
        return jax.jit(lambda p, x: jrnn.unroll(cell, p, x, **kw)[0])

    def temp_bytes(f):
        return f.lower(params, xs).compile().memory_analysis().temp_size_in_bytes

    projection = T * B * 4 * H * 4  # float32 bytes
    assert temp_bytes(forward(hoist=True)) - temp_bytes(forward()) >= projection
    np.testing.assert_allclose(
        forward()(params, xs), forward(hoist=True)(params, xs), rtol=1e-5, atol=1e-6
    )

    def loss(p, **kw):
        return jnp.sum(jrnn.unroll(cell, p, xs[:, :64], **kw)[0] ** 2)

    chex.assert_trees_all_close(
        jax.grad(loss)(params),
        jax.grad(partial(loss, vjp="autodiff"))(params),
        rtol=1e-4,
        atol=1e-5,
    )


def _scan_unrolls(jaxpr) -> set:
    """The ``unroll`` of every ``scan`` in a jaxpr, nested ones included."""
    found = {e.params["unroll"] for e in jaxpr.eqns if e.primitive.name == "scan"}
    for sub in jax.extend.core.subjaxprs(jaxpr):
        found |= _scan_unrolls(sub)
    return found


@pytest.mark.parametrize("vjp", ["autodiff", "hoisted"])
def test_inference_takes_the_measured_unroll_factor_and_grad_still_scans_once(monkeypatch, vjp):
    """``unroll`` left out: a call that is not differentiated scans with the factor of
    ``jrnn.tuned.CPU_INFERENCE`` for its shape, while ``jax.grad`` (and ``jax.jvp``) of
    the same call differentiate the scan unrolled once, with the same values as an
    explicit ``unroll=1``; an explicit factor is used everywhere; symbolic time: 1."""
    from jrnn import tuned
    from jrnn.strategy import inference_unroll

    B, T, I, H = 3, 12, 5, 6
    monkeypatch.setattr(tuned, "CPU_INFERENCE", (((B, T, H), 4),))
    assert inference_unroll("cpu", batch=B, steps=T, hidden=H) == 4
    assert inference_unroll("gpu", batch=B, steps=T, hidden=H) == 1
    cell = jrnn.lstm(H)
    params = cell.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (B, T, I))
    lengths = jnp.array([12, 7, 0])

    def run(p, x, **kw):
        return jrnn.unroll(cell, p, x, lengths=lengths, vjp=vjp, **kw)[0]

    def loss(p, x, **kw):
        return jnp.sum(jnp.sin(run(p, x, **kw)))

    assert _scan_unrolls(jax.make_jaxpr(run)(params, xs).jaxpr) == {4}
    assert _scan_unrolls(jax.make_jaxpr(jax.grad(loss))(params, xs).jaxpr) == {1}
    assert _scan_unrolls(jax.make_jaxpr(partial(run, unroll=2))(params, xs).jaxpr) == {2}
    np.testing.assert_allclose(run(params, xs), run(params, xs, unroll=1), rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_close(
        jax.grad(loss)(params, xs), jax.grad(partial(loss, unroll=1))(params, xs), rtol=1e-6
    )
    if vjp == "autodiff":  # forward mode: the custom VJP refuses it by design
        dx = jnp.ones_like(xs)
        chex.assert_trees_all_close(
            jax.jvp(lambda x: run(params, x), (xs,), (dx,)),
            jax.jvp(lambda x: run(params, x, unroll=1), (xs,), (dx,)),
            rtol=1e-6,
        )
    b, t = jax.export.symbolic_shape("b, t")
    exported = jax.export.export(jax.jit(lambda p, x: jrnn.unroll(cell, p, x, vjp=vjp)[0]))(
        params, jax.ShapeDtypeStruct((b, t, I), xs.dtype)
    )
    np.testing.assert_allclose(
        exported.call(params, xs), jrnn.unroll(cell, params, xs, unroll=1)[0], rtol=1e-6
    )


def test_the_hoisted_backward_saves_step_vjps_only_when_they_are_per_step_data():
    """The hoisted VJP's forward saves each step's VJP of the gates (the backward then only
    applies it) when every residual is per-step data: the plain LSTM, the reset-after GRU
    and the Elman cell.  Cells whose step VJP keeps a parameter (the reset-before GRU's
    ``w_hn``, peepholes, layer-norm gains, a projection) save the step's inputs and
    linearise again, so no parameter is stored once per step.  Gradients agree either way
    (the equivalence tests above run both kinds of cell)."""
    from jrnn.hoisted import per_step_residuals

    xs = jnp.ones((6, 3, 5), jnp.float32)  # [T, B, I], the cells' dtype
    mask = jnp.ones((6, 3), bool)
    expected = {
        "lstm": (jrnn.lstm(4), True),
        "gru reset-after": (jrnn.gru(4, reset_after=True), True),
        "elman": (jrnn.simple_rnn(4), True),
        "gru reset-before": (jrnn.gru(4), False),
        "peephole lstm": (jrnn.lstm(4, peephole=True), False),
        "layer-norm lstm": (jrnn.lstm(4, layer_norm=True), False),
        "projected lstm": (jrnn.lstm(4, proj_size=2), False),
    }
    for name, (cell, saves) in expected.items():
        params = cell.init(jax.random.key(0), 5)
        carry = cell.initial_carry(params, (3,))
        for m in (None, mask):
            assert per_step_residuals(cell, params, xs, carry, m) is saves, name
