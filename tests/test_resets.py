"""Episode resets: ``unroll(..., resets=)`` equals unrolling every episode on its own.

``resets[b, t]`` marks ``t`` as the first step of an episode (forward time).  The ground
truth everywhere is the same sequences cut into their episodes, each episode unrolled alone
(no resets) from the initial carry, the outputs concatenated (zeros on padded steps) and
the final carry taken from the episode read last: the last one forward, the first one with
``reverse=True``.  Outputs, final carries and the gradients with respect to the parameters,
the inputs and the initial carry must agree, in float64, for every cell, both directions,
with and without lengths, for every ``hoist``/``vjp``/``remat`` strategy, under ``jit`` and
``vmap``; then stacks and models, and the argument checks.
"""

from __future__ import annotations

from functools import cache

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jax.experimental import checkify

import jrnn
from tests.helpers import random_carry, random_params

I, H, B, T = 3, 4, 4, 7

CELLS = {
    "simple_rnn": lambda: jrnn.simple_rnn(H, param_dtype=jnp.float64),
    "lstm": lambda: jrnn.lstm(H, param_dtype=jnp.float64),
    "lstm_peephole": lambda: jrnn.lstm(H, peephole=True, param_dtype=jnp.float64),
    "gru": lambda: jrnn.gru(H, param_dtype=jnp.float64),
    "gru_reset_after": lambda: jrnn.gru(H, reset_after=True, param_dtype=jnp.float64),
}
STRATEGIES = {
    "hoisted_vjp": dict(hoist=True, vjp="hoisted"),
    "hoisted_vjp_in_step": dict(hoist=False, vjp="hoisted"),
    "autodiff": dict(hoist=False, vjp="autodiff"),
    "autodiff_hoist": dict(hoist=True, vjp="autodiff"),
    "remat_step": dict(remat="step"),
    "remat_sqrt": dict(remat="sqrt"),
}

# [B, T] episode starts and lengths; the rows exercise: several episodes (one of a single
# step, a reset at t=0); resets on padded steps, one right at t = L (reverse must ignore
# it); a reset on the last valid step; an empty sequence with resets.
RESETS = np.zeros((B, T), bool)
RESETS[0, [0, 3, 4]] = True
RESETS[1, [5, 6]] = True
RESETS[2, [1, 2, 4]] = True
RESETS[3, [0, 2]] = True
LENGTHS = np.array([7, 5, 3, 0])


@cache
def setup(kind: str):
    cell = CELLS[kind]()
    params = random_params(cell, jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float64)
    carry = random_carry(cell, params, jax.random.key(2), (B,))
    return cell, params, xs, carry


def episodes(resets: np.ndarray, lengths: np.ndarray | None) -> list[list[tuple[int, int]]]:
    """Per sequence, its episodes ``[(start, end), ...]`` within its length."""
    num_steps = resets.shape[-1]
    out = []
    for b in range(resets.shape[0]):
        n = num_steps if lengths is None else int(lengths[b])
        starts = [0] + [t for t in range(1, n) if resets[b, t]]
        out.append(list(zip(starts, starts[1:] + [n], strict=True)) if n else [])
    return out


@cache
def episode_fn(cell: jrnn.Cell, reverse: bool):
    """One episode alone: ``(params, xs [t, I], carry) -> (ys, carry_T)``, no resets."""
    return jax.jit(lambda p, x, c: jrnn.unroll(cell, p, x, carry=c, reverse=reverse))


def separately(cell, params, xs, carry, eps, reverse):
    """The ground truth, literally: every episode unrolled on its own (one call each, no
    batch, no lengths) from ``carry``, the outputs reassembled with zeros on padding."""
    num_steps = xs.shape[1]
    run = episode_fn(cell, reverse)
    rows, finals = [], []
    for b, eps_b in enumerate(eps):
        c_b = jax.tree.map(lambda a, b=b: a[b], carry)
        final, pieces = c_b, []
        end = eps_b[-1][1] if eps_b else 0
        for s, e in eps_b:
            y, c = run(params, xs[b, s:e], c_b)
            pieces.append(y)
            if (s == 0) if reverse else (e == end):
                final = c
        pieces.append(jnp.zeros((num_steps - end, cell.output_size), xs.dtype))
        rows.append(jnp.concatenate(pieces))
        finals.append(final)
    return jnp.stack(rows), jax.tree.map(lambda *a: jnp.stack(a), *finals)


def packing(eps, num_steps: int) -> dict[str, np.ndarray]:
    """Index arrays that lay the episodes out as separate sequences of a batch of
    ``B * T`` slots (unused slots are empty) and read the results back: ``first``/``last``
    is the slot of each sequence's first/last episode (``has``: it has one)."""
    slots = len(eps) * num_steps
    seq, start, length = np.zeros(slots, int), np.zeros(slots, int), np.zeros(slots, int)
    slot_of, offset = np.zeros((len(eps), num_steps), int), np.zeros((len(eps), num_steps), int)
    valid = np.zeros((len(eps), num_steps), bool)
    first, last = np.zeros(len(eps), int), np.zeros(len(eps), int)
    k = 0
    for b, eps_b in enumerate(eps):
        first[b] = k
        for s, e in eps_b:
            seq[k], start[k], length[k] = b, s, e - s
            slot_of[b, s:e], offset[b, s:e], valid[b, s:e] = k, np.arange(e - s), True
            k += 1
        last[b] = k - 1
    has = np.array([bool(e) for e in eps])
    return dict(
        seq=seq, start=start, length=length, slot_of=slot_of, offset=offset, valid=valid,
        first=first, last=last, has=has,
    )  # fmt: skip


def to_episodes(x, c, ix):
    """``x [B, T, F]``, carry ``[B, ...]`` -> one row and initial carry per episode slot."""
    num_steps = x.shape[1]
    u = jnp.arange(num_steps)
    t = jnp.clip(ix["start"][:, None] + u, 0, num_steps - 1)
    inside = (u < ix["length"][:, None])[..., None]
    x_ep = jnp.where(inside, x[ix["seq"][:, None], t], jnp.zeros((), x.dtype))
    return x_ep, jax.tree.map(lambda a: a[ix["seq"]], c)


def from_episodes(ys_ep, ix):
    """Episode outputs ``[slots, T, F]`` -> ``[B, T, F]`` (zeros on padded steps)."""
    ys = ys_ep[ix["slot_of"], ix["offset"]]
    return jnp.where(ix["valid"][..., None], ys, jnp.zeros((), ys.dtype))


def final_carry(c_ep, c0, ix, reverse):
    """The carry after the episode read last (the first one reading backwards); ``c0`` for
    an empty sequence."""
    slot = ix["first"] if reverse else ix["last"]
    has = ix["has"][:, None]
    return jax.tree.map(lambda a, a0: jnp.where(has, a[slot], a0), c_ep, c0)


@cache
def packed_fn(cell: jrnn.Cell, reverse: bool):
    """The ground truth as one batched call: every episode is its own sequence (its own
    row, initial carry and length) of one ``unroll`` without resets; jitted once per cell
    and direction (the episode layout comes in as index arrays)."""

    def run(p, x, c, ix):
        x_ep, c_ep = to_episodes(x, c, ix)
        ys_ep, c_t = jrnn.unroll(cell, p, x_ep, carry=c_ep, lengths=ix["length"], reverse=reverse)
        return from_episodes(ys_ep, ix), final_carry(c_t, c, ix, reverse)

    return jax.jit(lambda p, x, c, ix: value_and_grads(lambda *a: run(*a, ix), p, x, c))


def loss(out):
    ys, carry_t = out[0], out[1]
    weights = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
    return jnp.sum(jnp.sin(ys) * weights) + sum(jnp.sum(a**2) for a in jax.tree.leaves(carry_t))


def value_and_grads(run, params, xs, carry):
    """``run(params, xs, carry) -> (ys, carry_T)``: its outputs and the gradients of
    :func:`loss` with respect to all three arguments."""
    return run(params, xs, carry), jax.grad(lambda *a: loss(run(*a)), (0, 1, 2))(params, xs, carry)


def expected(cell, params, xs, carry, resets, lengths, reverse):
    """Outputs, final carry and gradients of the episodes run separately."""
    ix = packing(episodes(resets, lengths), xs.shape[1])
    return packed_fn(cell, reverse)(params, xs, carry, ix)


@cache
def want(kind: str, reverse: bool, with_lengths: bool):
    cell, params, xs, carry = setup(kind)
    return expected(cell, params, xs, carry, RESETS, LENGTHS if with_lengths else None, reverse)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_the_packed_ground_truth_is_one_call_per_episode(reverse):
    """The batched ground truth used below equals literally separate calls."""
    cell, params, xs, carry = setup("lstm_peephole")
    for lengths in (None, LENGTHS):
        eps = episodes(RESETS, lengths)
        (ys, c_t), _ = expected(cell, params, xs, carry, RESETS, lengths, reverse)
        chex.assert_trees_all_close(
            (ys, c_t), separately(cell, params, xs, carry, eps, reverse), atol=1e-12
        )


# --------------------------------------------------------------------------------------
# unroll against separately unrolled episodes


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("kind", CELLS)
def test_resets_equal_separately_unrolled_episodes(kind, reverse, strategy):
    cell, params, xs, carry = setup(kind)
    kw = dict(reverse=reverse, **STRATEGIES[strategy])

    @jax.jit
    def both(p, x, c, r, n):
        without = lambda p, x, c: jrnn.unroll(cell, p, x, carry=c, resets=r, **kw)
        with_n = lambda p, x, c: jrnn.unroll(cell, p, x, carry=c, resets=r, lengths=n, **kw)
        return value_and_grads(without, p, x, c), value_and_grads(with_n, p, x, c)

    got = both(params, xs, carry, jnp.asarray(RESETS), jnp.asarray(LENGTHS))
    for g, with_lengths in zip(got, (False, True), strict=True):
        chex.assert_trees_all_close(g, want(kind, reverse, with_lengths), atol=1e-10)
    (ys, _), (_, d_xs, _) = got[1]
    pad = np.arange(T)[None, :] >= LENGTHS[:, None]
    assert not np.any(np.asarray(ys)[pad]) and not np.any(np.asarray(d_xs)[pad])


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_return_carries_restart_at_every_episode(reverse):
    cell, params, xs, carry = setup("lstm_peephole")
    ys, carry_t, carries = jax.jit(
        lambda r, n: jrnn.unroll(
            cell, params, xs, carry=carry, resets=r, lengths=n, reverse=reverse, return_carries=True
        )
    )(jnp.asarray(RESETS), jnp.asarray(LENGTHS))
    (want_ys, want_c), _ = want("lstm_peephole", reverse, True)
    chex.assert_trees_all_close((ys, carry_t), (want_ys, want_c), atol=1e-10)
    run = lambda p, x, c: jrnn.unroll(cell, p, x, carry=c, reverse=reverse, return_carries=True)
    for b, eps_b in enumerate(episodes(RESETS, LENGTHS)):
        c_b = jax.tree.map(lambda a, b=b: a[b], carry)
        for s, e in eps_b:
            _, _, want_carries = run(params, xs[b, s:e], c_b)
            got = jax.tree.map(lambda a, b=b, s=s, e=e: a[b, s:e], carries)
            chex.assert_trees_all_close(got, want_carries, atol=1e-10)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_vmap_of_one_sequence_equals_the_batched_call(reverse):
    cell, params, xs, carry = setup("gru_reset_after")
    kw = dict(reverse=reverse, hoist=True, vjp="hoisted")

    def batched(p, x, c):
        one = lambda x, c, r, n: jrnn.unroll(cell, p, x, carry=c, resets=r, lengths=n, **kw)
        return jax.vmap(one)(x, c, jnp.asarray(RESETS), jnp.asarray(LENGTHS))

    got = jax.jit(lambda p, x, c: value_and_grads(batched, p, x, c))(params, xs, carry)
    chex.assert_trees_all_close(got, want("gru_reset_after", reverse, True), atol=1e-10)


def test_several_batch_axes_and_time_major():
    cell, params, xs, carry = setup("lstm")
    resets, lengths = jnp.asarray(RESETS), jnp.asarray(LENGTHS)
    for reverse in (False, True):
        (want_ys, want_c), _ = want("lstm", reverse, True)
        grid = lambda a: a.reshape((2, 2) + a.shape[1:])
        ys, c_t = jrnn.unroll(
            cell,
            params,
            grid(xs),
            carry=jax.tree.map(grid, carry),
            resets=grid(resets),
            lengths=grid(lengths),
            reverse=reverse,
            unroll=3,
        )
        chex.assert_trees_all_close(
            (ys, c_t), (grid(want_ys), jax.tree.map(grid, want_c)), atol=1e-10
        )
        ys_tm, c_tm = jrnn.unroll(
            cell,
            params,
            jnp.swapaxes(xs, 0, 1),
            carry=carry,
            resets=resets.T,
            lengths=lengths,
            reverse=reverse,
            time_major=True,
        )
        chex.assert_trees_all_close(
            (jnp.swapaxes(ys_tm, 0, 1), c_tm), (want_ys, want_c), atol=1e-10
        )


def test_default_carry_is_the_zero_carry():
    cell, params, xs, _ = setup("gru")
    zeros = cell.initial_carry(params, (B,))
    for reverse in (False, True):
        got = jrnn.unroll(cell, params, xs, resets=RESETS, lengths=LENGTHS, reverse=reverse)
        (ys, c_t), _ = expected(cell, params, xs, zeros, RESETS, LENGTHS, reverse)
        chex.assert_trees_all_close(got, (ys, c_t), atol=1e-12)


# --------------------------------------------------------------------------------------
# exact identities: no resets set, or resets only at t = 0


@pytest.mark.parametrize("strategy", ["hoisted_vjp", "autodiff", "remat_sqrt"])
@pytest.mark.parametrize("kind", ["lstm_peephole", "gru"])
def test_no_resets_set_and_resets_at_t0_change_nothing(kind, strategy, xla_defaults):
    cell, params, xs, carry = setup(kind)
    at_t0 = np.zeros((B, T), bool)
    at_t0[[0, 2], 0] = True

    @jax.jit
    def all_runs(p, x, c, n):
        out = {}
        for reverse in (False, True):
            kw = dict(reverse=reverse, lengths=n, **STRATEGIES[strategy])
            for name, r in (("none", None), ("false", np.zeros((B, T), bool)), ("t0", at_t0)):
                run = lambda p, x, c, r=r, kw=kw: jrnn.unroll(cell, p, x, carry=c, resets=r, **kw)
                out[name, reverse] = value_and_grads(run, p, x, c)
        return out

    out = all_runs(params, xs, carry, jnp.asarray(LENGTHS))
    for reverse in (False, True):
        chex.assert_trees_all_equal(out["false", reverse], out["none", reverse])
        chex.assert_trees_all_equal(out["t0", reverse], out["none", reverse])


def test_resets_none_adds_nothing_to_the_program():
    """Without ``resets`` the traced program is the one without any reset machinery: no
    select on the carry (and no lengths, and no ragged √T chunk: T = 4) means no
    ``select_n`` at all."""
    cell, params, xs, carry = setup("lstm")
    xs, resets = xs[:, :4], RESETS[:, :4]
    for kw in STRATEGIES.values():
        f = lambda p, x, kw=kw: loss(jrnn.unroll(cell, p, x, carry=carry, **kw))
        assert "select_n" not in str(jax.make_jaxpr(jax.value_and_grad(f, (0, 1)))(params, xs))
        g = lambda p, x, kw=kw: loss(jrnn.unroll(cell, p, x, carry=carry, resets=resets, **kw))
        assert "select_n" in str(jax.make_jaxpr(jax.value_and_grad(g, (0, 1)))(params, xs))


# --------------------------------------------------------------------------------------
# random reset patterns


PROPERTY_KINDS = ("lstm_peephole", "gru_reset_after")
PROPERTY_STRATEGIES = ("hoisted_vjp", "autodiff", "remat_sqrt")
PB, PT = 2, 5


@cache
def property_run(kind: str, reverse: bool, strategy: str, with_lengths: bool):
    cell, params, _, _ = setup(kind)
    kw = dict(reverse=reverse, **STRATEGIES[strategy])

    def f(p, x, c, r, n):
        n = n if with_lengths else None
        run = lambda p, x, c: jrnn.unroll(cell, p, x, carry=c, resets=r, lengths=n, **kw)
        return value_and_grads(run, p, x, c)

    return jax.jit(f)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(PROPERTY_KINDS),
    strategy=st.sampled_from(PROPERTY_STRATEGIES),
    reverse=st.booleans(),
    resets=st.lists(st.booleans(), min_size=PB * PT, max_size=PB * PT),
    lengths=st.none() | st.lists(st.integers(0, PT), min_size=PB, max_size=PB),
    seed=st.integers(0, 2**16),
)
def test_random_reset_patterns_equal_separate_episodes(
    kind, strategy, reverse, resets, lengths, seed
):
    cell, params, _, _ = setup(kind)
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.normal(size=(PB, PT, I)))
    carry = random_carry(cell, params, jax.random.key(seed), (PB,))
    resets = np.reshape(resets, (PB, PT))
    n = None if lengths is None else np.asarray(lengths)
    got = property_run(kind, reverse, strategy, n is not None)(
        params, xs, carry, resets, np.full(PB, PT) if n is None else n
    )
    chex.assert_trees_all_close(
        got, expected(cell, params, xs, carry, resets, n, reverse), atol=1e-10
    )


# --------------------------------------------------------------------------------------
# stacks and models


@pytest.mark.parametrize("kind", ["lstm", "gru_reset_after"])
def test_bidirectional_stack_equals_per_episode_stacks(kind):
    net = jrnn.stack(CELLS[kind](), num_layers=2, bidirectional=True)
    params = net.init(jax.random.key(0), I)
    xs = setup(kind)[2]
    carries = jax.tree.map(lambda a: a + 0.2, net.initial_carry(params, (B,)))

    def run(p, x, c):
        return net.apply(p, x, carries=c, resets=RESETS, lengths=LENGTHS, hoist=True, vjp="hoisted")

    def per_episode(p, x, c, ix):  # every episode its own sequence of one stack call
        x_ep, c_ep = to_episodes(x, c, ix)
        ys_ep, c_t = net.apply(p, x_ep, carries=c_ep, lengths=ix["length"])
        finals = tuple(  # forward: after the last episode; backward: after the first
            tuple(final_carry(c_t[layer][d], c[layer][d], ix, d == 1) for d in range(2))
            for layer in range(2)
        )
        return from_episodes(ys_ep, ix), finals

    ix = packing(episodes(RESETS, LENGTHS), T)
    want_all = jax.jit(lambda p, x, c: value_and_grads(lambda *a: per_episode(*a, ix), p, x, c))
    got = jax.jit(lambda p, x, c: value_and_grads(run, p, x, c))(params, xs, carries)
    chex.assert_trees_all_close(got, want_all(params, xs, carries), atol=1e-10)


@pytest.mark.parametrize("rnn", ["cell", "bidirectional_stack"])
def test_sequence_model_and_tagger_equal_per_episode_models(rnn):
    cell = jrnn.gru(H, param_dtype=jnp.float64)
    if rnn == "cell":
        model = jrnn.sequence_model(cell, 5, vocab_size=6, embed_size=3, param_dtype=jnp.float64)
    else:
        model = jrnn.tagger(cell, 5, vocab_size=6, embed_size=3, bidirectional=True, num_layers=2)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), model.init(jax.random.key(0)))
    tokens = jax.random.randint(jax.random.key(1), (B, T), 0, 6)
    out, aux = jax.jit(
        lambda p, t: model.apply(p, t, resets=jnp.asarray(RESETS), lengths=jnp.asarray(LENGTHS))
    )(params, tokens)
    assert out.shape == (B, T, 5)
    for b, eps_b in enumerate(episodes(RESETS, LENGTHS)):
        for s, e in eps_b:
            want_o, _ = model.apply(params, tokens[b, s:e])
            chex.assert_trees_all_close(out[b, s:e], want_o, atol=1e-10)
    if rnn == "cell":  # the final carry is the last episode's
        _, want_aux = model.apply(params, tokens[0, 4:])
        chex.assert_trees_all_close(aux.carry.h[0], want_aux.carry.h, atol=1e-10)


def test_seq2vec_passes_resets_through():
    cell = jrnn.lstm(H, param_dtype=jnp.float64)
    model = jrnn.seq2vec(cell, 2, input_size=I, pool="last", param_dtype=jnp.float64)
    params = model.init(jax.random.key(0))
    xs = setup("lstm")[2]
    out, _ = model.apply(params, xs, resets=RESETS, lengths=LENGTHS)
    for b, eps_b in enumerate(episodes(RESETS, LENGTHS)[:3]):
        s, e = eps_b[-1]  # "last" reads the last valid step: the last episode's state
        want_o, _ = model.apply(params, xs[b : b + 1, s:e])
        chex.assert_trees_all_close(out[b], want_o[0], atol=1e-10)


# --------------------------------------------------------------------------------------
# argument checks


def test_integer_resets_are_accepted_as_0_1():
    cell, params, xs, carry = setup("gru")
    as_bool = jrnn.unroll(cell, params, xs, carry=carry, resets=RESETS, lengths=LENGTHS)
    as_int = jrnn.unroll(
        cell, params, xs, carry=carry, resets=RESETS.astype(np.int32), lengths=LENGTHS
    )
    chex.assert_trees_all_equal(as_int, as_bool)
    # traced integers cannot be checked: nonzero counts as set
    traced = jax.jit(
        lambda r: jrnn.unroll(cell, params, xs, carry=carry, resets=r, lengths=LENGTHS)
    )
    chex.assert_trees_all_equal(traced(RESETS.astype(np.int32) * 7), as_bool)


def test_bad_resets_raise_clear_errors():
    cell, params, xs, _ = setup("lstm")
    with pytest.raises(
        ValueError,
        match=r"unroll: `resets` must have shape \[\*batch, T\] = \[4, 7\] .* got shape \[4, 6\]",
    ):
        jrnn.unroll(cell, params, xs, resets=RESETS[:, :6])
    with pytest.raises(ValueError, match=r"`resets` must have shape \[\*batch, T\] = \[4, 7\]"):
        jrnn.unroll(cell, params, xs, resets=RESETS[0])  # never broadcast
    with pytest.raises(
        ValueError,
        match=r"`resets` must have shape \[T, \*batch\] = \[7, 4\] .* got shape \[4, 7\]",
    ):
        jrnn.unroll(cell, params, jnp.swapaxes(xs, 0, 1), resets=RESETS, time_major=True)
    with pytest.raises(TypeError, match=r"`resets` must be a bool array .* got dtype float64"):
        jrnn.unroll(cell, params, xs, resets=RESETS.astype(np.float64))
    with pytest.raises(TypeError, match="`resets` must be a bool array"):
        jrnn.unroll(cell, params, xs, resets=[[None] * T] * B)
    with pytest.raises(
        ValueError, match=r"`resets` must hold only 0 and 1 .* got values in \[0, 2\]"
    ):
        jrnn.unroll(cell, params, xs, resets=RESETS.astype(np.int32) * 2)
    net = jrnn.stack(cell, bidirectional=True)
    sp = net.init(jax.random.key(0), I)
    with pytest.raises(ValueError, match=r"stack\.apply: `resets` must have shape"):
        net.apply(sp, xs, resets=RESETS.T)
    model = jrnn.sequence_model(cell, 2, input_size=I)
    with pytest.raises(ValueError, match=r"`resets` must have shape \[\*batch, T\] = \[4, 7\]"):
        model.apply(model.init(jax.random.key(0)), xs.astype(jnp.float32), resets=RESETS[:, 1:])


def test_debug_mode_checks_traced_integer_resets():
    cell = jrnn.lstm(H)
    p = cell.init(jax.random.key(0), I)
    xs = jnp.ones((2, 5, I), jnp.float32)
    checked = checkify.checkify(jax.jit(lambda r: jrnn.unroll(cell, p, xs, resets=r, debug=True)))
    err, _ = checked(jnp.zeros((2, 5), jnp.int32).at[1, 2].set(1))
    assert err.get() is None
    err, _ = checked(jnp.zeros((2, 5), jnp.int32).at[1, 2].set(3))
    assert "`resets` must hold only 0 and 1 (or be bool), got values in [0, 3]" in err.get()
