"""Bad input to the core (cell.step, cell.init, unroll, stack.apply, flip_within_lengths)
raises a ValueError/TypeError from jrnn whose message names the function and the argument.

Each case is ``(id, call, exception, regex)``; the regex names the argument (and usually the
expected and the actual value).  Other modules add their own tables in their own files.
"""

import jax
import jax.numpy as jnp
import pytest

import jrnn

I, H, B, T = 3, 4, 2, 5
KEY = jax.random.key(0)

lstm = jrnn.lstm(H)
lstm_peep = jrnn.lstm(H, peephole=True)
lstm_proj = jrnn.lstm(H, proj_size=2)
gru = jrnn.gru(H)
gru_ra = jrnn.gru(H, reset_after=True)
rnn = jrnn.simple_rnn(H)
P = {
    "lstm": lstm.init(KEY, I),
    "lstm_peep": lstm_peep.init(KEY, I),
    "lstm_proj": lstm_proj.init(KEY, I),
    "gru": gru.init(KEY, I),
    "gru_ra": gru_ra.init(KEY, I),
    "rnn": rnn.init(KEY, I),
}
net = jrnn.stack(lstm, num_layers=2, bidirectional=True)
STEP_ONLY = jrnn.custom_cell(lstm.init, lstm.step, initial_carry=lstm.initial_carry)
NP = net.init(KEY, I)
XS = jnp.zeros((B, T, I))
X = jnp.zeros((B, I))


def c0(cell, key="lstm", batch=(B,)):
    return cell.initial_carry(P[key], batch)


def drop(d, k):
    return {n: v for n, v in d.items() if n != k}


def with_(d, **kw):
    return {**d, **kw}


CASES = [
    # ---- cell.step: params
    (
        "step_missing_w_hh",
        lambda: lstm.step(drop(P["lstm"], "w_hh"), c0(lstm), X),
        ValueError,
        r"lstm\.step: `params` is missing key 'w_hh'",
    ),
    (
        "step_missing_w_ih",
        lambda: lstm.step(drop(P["lstm"], "w_ih"), c0(lstm), X),
        ValueError,
        r"`params` is missing key 'w_ih'",
    ),
    (
        "step_peephole_params_to_plain_lstm",
        lambda: lstm.step(P["lstm_peep"], c0(lstm), X),
        ValueError,
        r"unknown key 'w_peep' in `params` for lstm\(.*peephole=False.*did you mean "
        r"lstm\(peephole=True\)\?",
    ),
    (
        "step_plain_params_to_peephole_lstm",
        lambda: lstm_peep.step(P["lstm"], c0(lstm), X),
        ValueError,
        r"`params` is missing key 'w_peep'.*did you mean lstm\(peephole=False\)\?",
    ),
    (
        "step_b_hn_to_reset_before_gru",
        lambda: gru.step(P["gru_ra"], c0(gru, "gru"), X),
        ValueError,
        r"unknown key 'b_hn'.*did you mean gru\(reset_after=True\)\?",
    ),
    (
        "step_reset_before_params_to_reset_after_gru",
        lambda: gru_ra.step(P["gru"], c0(gru, "gru"), X),
        ValueError,
        r"missing key 'b_hn'.*did you mean gru\(reset_after=False\)\?",
    ),
    (
        "step_gru_params_to_lstm",
        lambda: lstm.step(P["gru"], c0(lstm), X),
        ValueError,
        r"`params\['w_hh'\]` must have shape \[4, 16\] \(hidden_size=4, 4 gates\), got "
        r"\[4, 12\].*look like the parameters of gru\(hidden_size=4, reset_after=False\)",
    ),
    (
        "step_lstm_params_to_gru",
        lambda: gru.step(P["lstm"], c0(gru, "gru"), X),
        ValueError,
        r"`params\['w_hh'\]` must have shape \[4, 12\].*got \[4, 16\].*look like the "
        r"parameters of lstm\(hidden_size=4",
    ),
    (
        "step_proj_params_to_plain_lstm",
        lambda: lstm.step(P["lstm_proj"], c0(lstm), X),
        ValueError,
        r"unknown key 'w_proj'.*did you mean lstm\(proj_size=2\)\?",
    ),
    (
        "step_wrong_hidden_size",
        lambda: lstm.step(jrnn.lstm(3).init(KEY, I), c0(lstm), X),
        ValueError,
        r"`params\['w_hh'\]` must have shape \[4, 16\].*got \[3, 12\]",
    ),
    (
        "step_wrong_bias_width",
        lambda: lstm.step(with_(P["lstm"], b=jnp.zeros(12)), c0(lstm), X),
        ValueError,
        r"`params\['b'\]` must have shape \[16\] \(hidden_size=4, 4 gates\), got \[12\]",
    ),
    (
        "step_w_ih_wrong_gate_width",
        lambda: lstm.step(with_(P["lstm"], w_ih=jnp.zeros((I, 8))), c0(lstm), X),
        ValueError,
        r"`params\['w_ih'\]` must have shape \[3, 16\] \(input_size=3",
    ),
    (
        "step_w_ih_rank_1",
        lambda: lstm.step(with_(P["lstm"], w_ih=jnp.zeros(16)), c0(lstm), X),
        ValueError,
        r"`params\['w_ih'\]` must have shape \[input_size, 16\].*got \[16\]",
    ),
    (
        "step_integer_params",
        lambda: rnn.step(with_(P["rnn"], b=jnp.zeros(H, jnp.int32)), c0(rnn, "rnn"), X),
        TypeError,
        r"`params\['b'\]` must be a floating-point array, got dtype int32",
    ),
    (
        "step_params_not_a_dict",
        lambda: lstm.step(NP, c0(lstm), X),
        TypeError,
        r"`params` must be a dict of arrays.*got tuple.*stack\.apply",
    ),
    # ---- cell.step: carry
    (
        "step_gru_carry_to_lstm",
        lambda: lstm.step(P["lstm"], jrnn.RNNState(jnp.zeros((B, H))), X),
        TypeError,
        r"lstm\.step: `carry` must be an LSTMState\(h, c\).*got RNNState\(h\)",
    ),
    (
        "step_lstm_carry_to_gru",
        lambda: gru.step(P["gru"], c0(lstm), X),
        TypeError,
        r"gru\.step: `carry` must be an RNNState\(h\).*got LSTMState\(h, c\)",
    ),
    (
        "step_carry_wrong_batch",
        lambda: lstm.step(P["lstm"], c0(lstm, batch=(3,)), X),
        ValueError,
        r"`carry\.h` must have shape \[2, 4\].*batch_shape=\(2,\).*got \[3, 4\]",
    ),
    (
        "step_carry_unbatched_for_batched_input",
        lambda: lstm.step(P["lstm"], c0(lstm, batch=()), X),
        ValueError,
        r"`carry\.h` must have shape \[2, 4\].*got \[4\]",
    ),
    (
        "step_carry_wrong_hidden",
        lambda: gru.step(P["gru"], jrnn.RNNState(jnp.zeros((B, 5))), X),
        ValueError,
        r"`carry\.h` must have shape \[2, 4\].*got \[2, 5\]",
    ),
    (
        "step_lstm_c_wrong",
        lambda: lstm.step(P["lstm"], jrnn.LSTMState(jnp.zeros((B, H)), jnp.zeros((B, 3))), X),
        ValueError,
        r"`carry\.c` must have shape \[2, 4\].*got \[2, 3\]",
    ),
    (
        "step_proj_c_has_proj_size",
        lambda: lstm_proj.step(
            P["lstm_proj"], jrnn.LSTMState(jnp.zeros((B, 2)), jnp.zeros((B, 2))), X
        ),
        ValueError,
        r"`carry\.c` must have shape \[2, 4\].*got \[2, 2\]",
    ),
    (
        "step_proj_h_has_hidden_size",
        lambda: lstm_proj.step(
            P["lstm_proj"], jrnn.LSTMState(jnp.zeros((B, H)), jnp.zeros((B, H))), X
        ),
        ValueError,
        r"`carry\.h` must have shape \[2, 2\].*got \[2, 4\]",
    ),
    (
        "step_integer_carry",
        lambda: gru.step(P["gru"], jrnn.RNNState(jnp.zeros((B, H), jnp.int32)), X),
        TypeError,
        r"`carry\.h` must be a floating-point array, got dtype int32",
    ),
    # ---- cell.step: inputs
    (
        "step_scalar_input",
        lambda: lstm.step(P["lstm"], c0(lstm, batch=()), jnp.float32(1.0)),
        ValueError,
        r"lstm\.step: `x_t` must have shape \[\*batch, input_size\].*got a scalar",
    ),
    (
        "step_wrong_features",
        lambda: lstm.step(P["lstm"], c0(lstm), jnp.zeros((B, 5))),
        ValueError,
        r"`x_t` must have shape .*input_size=3.*got shape \[2, 5\]",
    ),
    (
        "step_unbatched_wrong_features",
        lambda: gru.step(P["gru"], c0(gru, "gru", ()), jnp.zeros(5)),
        ValueError,
        r"`x_t`.*input_size=3.*got shape \[5\]",
    ),
    (
        "step_integer_input",
        lambda: lstm.step(P["lstm"], c0(lstm), jnp.zeros((B, I), jnp.int32)),
        TypeError,
        r"`x_t` must be a floating-point array, got dtype int32",
    ),
    # ---- cell.init and the factories
    (
        "init_zero_input_size",
        lambda: lstm.init(KEY, 0),
        ValueError,
        r"lstm\.init: `input_size` must be a positive int, got 0",
    ),
    (
        "init_float_input_size",
        lambda: gru.init(KEY, 3.0),
        ValueError,
        r"gru\.init: `input_size` must be a positive int, got 3\.0",
    ),
    (
        "init_bool_input_size",
        lambda: rnn.init(KEY, True),
        ValueError,
        r"simple_rnn\.init: `input_size` must be a positive int, got True",
    ),
    (
        "factory_bad_proj_size",
        lambda: jrnn.lstm(H, proj_size=0),
        ValueError,
        r"lstm: `proj_size` must be a positive int, got 0",
    ),
    (
        "factory_bad_hidden_size",
        lambda: jrnn.gru(-1),
        ValueError,
        r"gru: `hidden_size` must be a positive int, got -1",
    ),
    # ---- unroll
    (
        "unroll_xs_rank_1",
        lambda: jrnn.unroll(lstm, P["lstm"], jnp.zeros(I)),
        ValueError,
        r"unroll: `xs` must have shape \[\*batch, T, input_size\] \(rank >= 2\), got \[3\]",
    ),
    (
        "unroll_xs_wrong_features",
        lambda: jrnn.unroll(lstm, P["lstm"], jnp.zeros((B, T, 7))),
        ValueError,
        r"unroll: `xs` must have shape .*input_size=3.*got shape \[2, 5, 7\]",
    ),
    (
        "unroll_integer_xs",
        lambda: jrnn.unroll(lstm, P["lstm"], jnp.zeros((B, T, I), jnp.int32)),
        TypeError,
        r"unroll: `xs` must be a floating-point array",
    ),
    (
        "unroll_params_of_other_cell",
        lambda: jrnn.unroll(lstm, P["gru_ra"], XS),
        ValueError,
        r"unroll: unknown key 'b_hn' in `params`.*look like the parameters of "
        r"gru\(hidden_size=4, reset_after=True\)",
    ),
    (
        "unroll_carry_wrong_batch",
        lambda: jrnn.unroll(lstm, P["lstm"], XS, carry=c0(lstm, batch=(1,))),
        ValueError,
        r"unroll: `carry\.h` must have shape \[2, 4\].*got \[1, 4\]",
    ),
    (
        "unroll_carry_of_other_cell",
        lambda: jrnn.unroll(gru, P["gru"], XS, carry=c0(lstm)),
        TypeError,
        r"unroll: `carry` must be an RNNState\(h\)",
    ),
    (
        "unroll_lengths_float",
        lambda: jrnn.unroll(lstm, P["lstm"], XS, lengths=jnp.array([1.0, 2.0])),
        TypeError,
        r"unroll: `lengths` must be an integer array, got dtype float",
    ),
    (
        "unroll_lengths_wrong_shape",
        lambda: jrnn.unroll(lstm, P["lstm"], XS, lengths=jnp.array([1, 2, 3])),
        ValueError,
        r"unroll: `lengths` must have the batch shape \[2\] of xs, got shape \[3\]",
    ),
    (
        "unroll_lengths_too_long",
        lambda: jrnn.unroll(lstm, P["lstm"], XS, lengths=jnp.array([1, 6])),
        ValueError,
        r"unroll: `lengths` must lie in \[0, T=5\], got values in \[1, 6\]",
    ),
    (
        "unroll_lengths_negative_reverse",
        lambda: jrnn.unroll(lstm, P["lstm"], XS, lengths=jnp.array([-1, 2]), reverse=True),
        ValueError,
        r"`lengths` must lie in \[0, T=5\], got values in \[-1, 2\]",
    ),
    (
        "unroll_bad_vjp",
        lambda: jrnn.unroll(lstm, P["lstm"], XS, vjp="magic"),
        ValueError,
        r"unroll: `vjp` must be 'hoisted' or 'autodiff', got 'magic'",
    ),
    (
        "unroll_bad_remat",
        lambda: jrnn.unroll(lstm, P["lstm"], XS, remat="all"),
        ValueError,
        r"unroll: `remat` must be 'none', 'step' or 'sqrt', got 'all'",
    ),
    (
        "unroll_reverse_not_bool",
        lambda: jrnn.unroll(lstm, P["lstm"], XS, reverse="yes"),
        TypeError,
        r"unroll: `reverse` must be a Python bool, got 'yes'",
    ),
    (
        "unroll_traced_reverse",
        lambda: jax.jit(lambda r: jrnn.unroll(lstm, P["lstm"], XS, reverse=r))(True),
        TypeError,
        r"`reverse` must be a Python bool, got a traced array",
    ),
    (
        "unroll_bad_unroll_factor",
        lambda: jrnn.unroll(lstm, P["lstm"], XS, unroll=0),
        ValueError,
        r"unroll: `unroll` must be a positive int, got 0",
    ),
    (
        "unroll_hoist_not_bool",
        lambda: jrnn.unroll(lstm, P["lstm"], XS, hoist=1),
        TypeError,
        r"unroll: `hoist` must be a Python bool, got 1",
    ),
    (
        "unroll_positional_carry",
        lambda: jrnn.unroll(lstm, P["lstm"], XS, c0(lstm)),
        TypeError,
        r"unroll\(\) takes 3 positional arguments",
    ),
    (
        "unroll_not_a_cell",
        lambda: jrnn.unroll(net, P["lstm"], XS),
        TypeError,
        r"unroll: `cell` must be a jrnn\.Cell, got Stack",
    ),
    # ---- stack.apply
    (
        "stack_params_too_few_layers",
        lambda: net.apply(NP[:1], XS),
        ValueError,
        r"stack\.apply: `params` must be nested tuples \[num_layers=2\]\[directions=2\]",
    ),
    (
        "stack_params_bad_leaf",
        lambda: net.apply(((NP[0][0], drop(NP[0][1], "b")), NP[1]), XS),
        ValueError,
        r"stack\.apply: `params\[0\]\[1\]` is missing key 'b'",
    ),
    (
        "stack_params_layer1_wrong_input",
        lambda: net.apply((NP[0], (NP[0][0], NP[1][1])), XS),
        ValueError,
        r"stack\.apply: `params\[1\]\[0\]\['w_ih'\]` must have 8 rows .*got \[3, 16\]",
    ),
    (
        "stack_carries_structure",
        lambda: net.apply(NP, XS, carries=net.initial_carry(NP, (B,))[0]),
        ValueError,
        r"stack\.apply: `carries` must be nested tuples",
    ),
    (
        "stack_carries_wrong_batch",
        lambda: net.apply(NP, XS, carries=net.initial_carry(NP, (3,))),
        ValueError,
        r"stack\.apply: `carries\[0\]\[0\]\.h` must have shape \[2, 4\].*got \[3, 4\]",
    ),
    (
        "stack_xs_wrong_features",
        lambda: net.apply(NP, jnp.zeros((B, T, 4))),
        ValueError,
        r"stack\.apply: `xs`.*input_size=3.*got shape \[2, 5, 4\]",
    ),
    (
        "stack_lengths_too_long",
        lambda: net.apply(NP, XS, lengths=jnp.array([9, 1])),
        ValueError,
        r"stack\.apply: `lengths` must lie in \[0, T=5\], got values in \[1, 9\]",
    ),
    (
        "stack_bad_remat",
        lambda: net.apply(NP, XS, remat="chunks"),
        ValueError,
        r"stack\.apply: `remat` must be 'none', 'step' or 'sqrt', got 'chunks'",
    ),
    (
        "stack_positional_carries",
        lambda: net.apply(NP, XS, net.initial_carry(NP, (B,))),
        TypeError,
        r"apply\(\) takes 2 positional arguments",
    ),
    (
        "stack_factory_bad_dropout",
        lambda: jrnn.stack(lstm, dropout=1.5),
        ValueError,
        r"stack: `dropout` must lie in \[0, 1\), got 1\.5",
    ),
    (
        "stack_factory_not_a_cell",
        lambda: jrnn.stack("lstm"),
        TypeError,
        r"stack: `cell` must be a jrnn\.Cell, got str",
    ),
    # ---- flip_within_lengths
    (
        "flip_lengths_too_long",
        lambda: jrnn.flip_within_lengths(jnp.zeros((T, B)), jnp.array([6, 1])),
        ValueError,
        r"flip_within_lengths: `lengths` must lie in \[0, T=5\], got values in \[1, 6\]",
    ),
    (
        "flip_lengths_float",
        lambda: jrnn.flip_within_lengths(jnp.zeros((T, B)), jnp.array([1.0, 2.0])),
        TypeError,
        r"flip_within_lengths: `lengths` must be an integer array",
    ),
    (
        "flip_lengths_wrong_batch",
        lambda: jrnn.flip_within_lengths(jnp.zeros((T, B)), jnp.array([1, 2, 3])),
        ValueError,
        r"flip_within_lengths: `lengths` must have the batch shape \[2\]",
    ),
    # ---- initial_carry: batch_shape
    (
        "initial_carry_float_batch_shape",
        lambda: lstm.initial_carry(P["lstm"], batch_shape=(1.5, 4)),
        TypeError,
        r"lstm\.initial_carry: `batch_shape` must be a tuple of non-negative ints, got \(1\.5, 4\)",
    ),
    (
        "initial_carry_negative_batch_shape",
        lambda: gru.initial_carry(P["gru"], batch_shape=(-1,)),
        ValueError,
        r"gru\.initial_carry: `batch_shape` must be a tuple of non-negative ints, got \(-1,\)",
    ),
    (
        "stack_initial_carry_batch_shape_not_a_tuple",
        lambda: net.initial_carry(NP, batch_shape=2),
        TypeError,
        r"stack\.initial_carry: `batch_shape` must be a tuple of non-negative ints, got 2",
    ),
    # ---- a cell without FastPath: the options that need one
    (
        "unroll_hoist_without_fast_path",
        lambda: jrnn.unroll(STEP_ONLY, P["lstm"], XS, vjp="hoisted"),
        ValueError,
        r"unroll: `vjp=` needs the cell's FastPath .* custom has none",
    ),
    (
        "flip_xs_rank_too_small",
        lambda: jrnn.flip_within_lengths(jnp.zeros(T), jnp.array([1, 2])),
        ValueError,
        r"flip_within_lengths: `xs` must have shape \[T, \*batch, \.\.\.\] with batch rank 1",
    ),
]


@pytest.mark.parametrize("call,exc,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(call, exc, pattern):
    with pytest.raises(exc, match=pattern) as info:
        call()
    assert type(info.value) in (ValueError, TypeError)


def test_the_table_is_large_enough_and_ids_are_unique():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


def test_checks_also_run_under_jit_and_vmap():
    bad = drop(P["lstm"], "w_hh")
    with pytest.raises(ValueError, match=r"`params` is missing key 'w_hh'"):
        jax.jit(lambda p: jrnn.unroll(lstm, p, XS))(bad)
    with pytest.raises(ValueError, match=r"`carry\.c` must have shape \[4\]"):
        jax.vmap(lambda x: lstm.step(P["lstm"], jrnn.LSTMState(jnp.zeros(H), jnp.zeros(2)), x))(X)


def test_unbatched_step_input_is_allowed():
    """``x_t [input_size]`` is one unbatched input (batch_shape ``()``)."""
    carry = c0(lstm, batch=())
    new, y = lstm.step(P["lstm"], carry, jnp.ones(I))
    batched, yb = lstm.step(P["lstm"], c0(lstm, batch=(1,)), jnp.ones((1, I)))
    assert y.shape == (H,) and new.c.shape == (H,)
    assert jnp.allclose(y, yb[0]) and jnp.allclose(new.c, batched.c[0])
