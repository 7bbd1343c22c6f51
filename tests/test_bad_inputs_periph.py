"""A table of bad inputs to the peripheral modules (decode, losses, attention, checkpoint,
train, interop, nn, reference): each raises the documented exception type, raised by jrnn,
with a message that names the offending argument."""

from __future__ import annotations

import re
from functools import cache

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jrnn
from jrnn import losses
from jrnn import reference as ref
from jrnn.attention import attention, masked_softmax
from jrnn.checkpoint import Checkpointer, CheckpointError
from jrnn.decode import beam_search, greedy_decode, sample_decode, sequence_scores
from jrnn.nn import stack_params_from_dict
from jrnn.train import init_train_state, make_eval_step, make_train_step, tbptt_value_and_grad


@cache
def _s2s():
    model = jrnn.models.seq2seq(jrnn.lstm(4), jrnn.gru(4), 6, 5, embed_size=3)
    return model, model.init(jax.random.key(0))


SRC = jnp.array([[3, 4, 5], [4, 5, 0]], jnp.int32)
LENS = jnp.array([3, 2], jnp.int32)


def _greedy(**kw):
    model, params = _s2s()
    args = dict(src=SRC, src_lengths=LENS, max_len=3) | kw
    return greedy_decode(model, params, args.pop("src"), args.pop("src_lengths"), **args)


def _beam(**kw):
    model, params = _s2s()
    return beam_search(model, params, SRC, LENS, **(dict(beam_size=2, max_len=3) | kw))


def _sample(**kw):
    model, params = _s2s()
    args = dict(key=jax.random.key(0), max_len=3) | kw
    return sample_decode(model, params, SRC, LENS, **args)


def _scores(tgt, n):
    model, params = _s2s()
    return sequence_scores(model, params, SRC, tgt, n, LENS)


LOGITS = np.zeros((2, 3, 4), np.float32)
LABELS = np.array([[0, 1, 2], [3, 0, 1]], np.int32)


def _xent(logits=LOGITS, labels=LABELS, lengths=None, **kw):
    return losses.sequence_softmax_cross_entropy(logits, labels, lengths, **kw)


def _att_apply(query):
    att = attention("additive")
    params = att.init(jax.random.key(0), 3, 4)
    return att.apply(params, query, att.prepare(params, jnp.zeros((2, 5, 4), jnp.float32)))


def _att_memory_not_prepared():
    att = attention("general")
    params = att.init(jax.random.key(0), 3, 4)
    return att.scores(params, jnp.zeros((2, 3), jnp.float32), jnp.zeros((2, 5, 4)))


def _ckpt(tmp_path, action):
    with Checkpointer(tmp_path / "ck") as ck:
        if action == "restore_missing_step":
            ck.save(1, {"w": jnp.ones(2)}, {})
            ck.wait()
            return ck.restore({"w": jnp.zeros(2)}, step=4)
        if action == "negative_step":
            return ck.save(-1, {"w": jnp.ones(2)}, {})
        return ck.save(1, {"w": jnp.ones(2)}, [("step", 1)])


def _quad(params, batch, key):
    return jnp.sum((params["w"] - batch) ** 2), {}


def _step_with(state):
    return make_train_step(_quad, optax.sgd(0.1), donate=False)(state, jnp.ones(2))


def _torch_meta():
    torch = pytest.importorskip("torch")
    from jrnn.interop import from_torch

    with torch.device("meta"):
        module = torch.nn.LSTM(3, 4)
    return from_torch(module)


def _torch_subclass():
    torch = pytest.importorskip("torch")
    from jrnn.interop import from_torch

    class Doubled(torch.nn.GRU):
        def forward(self, x, hx=None):
            y, h = super().forward(x, hx)
            return 2 * y, h

    return from_torch(Doubled(3, 4))


def _torch_export_mismatch():
    pytest.importorskip("torch")
    from jrnn.interop import to_torch

    cell = jrnn.lstm(4)
    params = dict(cell.init(jax.random.key(0), 3))
    params["w_hh"] = jnp.zeros((4, 12))
    return to_torch(cell, params)


def _torch_carry():
    torch = pytest.importorskip("torch")
    from jrnn.interop import carry_from_torch, from_torch

    net, _ = from_torch(torch.nn.GRU(3, 4))
    return carry_from_torch(net, torch.zeros(1, 2, 5))


def _flax_without_params():
    import flax.linen as nn

    from jrnn.interop import from_flax

    return from_flax(nn.LSTMCell(features=4))


def _nnx_input_size():
    from flax import nnx

    from jrnn.nn import nnx as jnnx

    return jnnx.RNN(jrnn.gru(4), input_size=0, rngs=nnx.Rngs(0))


RNN_PARAMS = {"w_ih": np.ones((2, 3)), "w_hh": np.zeros((3, 3)), "b": np.zeros(3)}

# id -> (call taking tmp_path, exception type, the argument the message must name)
CASES = {
    # decode
    "decode_model_not_encdec": (
        lambda t: greedy_decode(jrnn.lstm(4), {}, SRC, max_len=3),
        TypeError,
        "model",
    ),
    "decode_max_len_zero": (lambda t: _greedy(max_len=0), ValueError, "max_len"),
    "decode_src_id_out_of_vocab": (lambda t: _greedy(src=SRC.at[0, 0].set(6)), ValueError, "src"),
    "decode_src_float": (lambda t: _greedy(src=SRC.astype(jnp.float32)), TypeError, "src"),
    "decode_src_rank": (lambda t: _greedy(src=SRC[0]), ValueError, "src"),
    "decode_src_lengths_too_long": (
        lambda t: _greedy(src_lengths=LENS.at[0].set(4)),
        ValueError,
        "src_lengths",
    ),
    "decode_src_lengths_shape": (
        lambda t: _greedy(src_lengths=LENS[:1]),
        ValueError,
        "src_lengths",
    ),
    "beam_size_zero": (lambda t: _beam(beam_size=0), ValueError, "beam_size"),
    "beam_negative_length_penalty": (
        lambda t: _beam(length_penalty=-0.5),
        ValueError,
        "length_penalty",
    ),
    "sample_negative_temperature": (lambda t: _sample(temperature=-1.0), ValueError, "temperature"),
    "sample_int_key": (lambda t: _sample(key=3), TypeError, "key"),
    "scores_tgt_out_of_vocab": (
        lambda t: _scores(jnp.array([[3, 7], [2, 0]]), jnp.array([2, 1])),
        ValueError,
        "tgt_out",
    ),
    "scores_float_tgt_lengths": (
        lambda t: _scores(jnp.array([[3, 2], [2, 0]]), jnp.array([2.0, 1.0])),
        TypeError,
        "tgt_lengths",
    ),
    # losses
    "xent_float_labels": (lambda t: _xent(labels=LABELS.astype(np.float32)), TypeError, "labels"),
    "xent_int_logits": (lambda t: _xent(logits=LOGITS.astype(np.int32)), TypeError, "logits"),
    "xent_labels_shape": (lambda t: _xent(labels=LABELS[:, :2]), ValueError, "labels"),
    "xent_label_out_of_range": (lambda t: _xent(labels=LABELS + 1), ValueError, "labels"),
    "xent_lengths_shape": (
        lambda t: _xent(lengths=np.array([1, 2, 3], np.int32)),
        ValueError,
        "lengths",
    ),
    "xent_mask_dtype": (lambda t: _xent(mask=np.ones((2, 3), np.int32)), TypeError, "mask"),
    "xent_reduction": (lambda t: _xent(reduction="avg"), ValueError, "reduction"),
    "mse_targets_shape": (
        lambda t: losses.sequence_mse(LOGITS, LOGITS[:, :2]),
        ValueError,
        "targets",
    ),
    "length_mask_num_steps": (
        lambda t: losses.length_mask(np.array([1]), -2),
        ValueError,
        "num_steps",
    ),
    # attention
    "attention_unknown_kind": (lambda t: attention("cosine"), ValueError, "kind"),
    "attention_query_size": (
        lambda t: _att_apply(jnp.zeros((2, 7), jnp.float32)),
        ValueError,
        "query",
    ),
    "attention_query_batch": (
        lambda t: _att_apply(jnp.zeros((4, 3), jnp.float32)),
        ValueError,
        "query",
    ),
    "attention_memory_type": (lambda t: _att_memory_not_prepared(), TypeError, "memory"),
    "attention_values_int": (
        lambda t: attention("dot").prepare({}, jnp.zeros((2, 3, 4), jnp.int32)),
        TypeError,
        "values",
    ),
    "masked_softmax_mask_shape": (
        lambda t: masked_softmax(jnp.zeros((2, 5)), jnp.ones((2, 4), bool)),
        ValueError,
        "mask",
    ),
    # checkpoint
    "checkpoint_negative_step": (lambda t: _ckpt(t, "negative_step"), ValueError, "step"),
    "checkpoint_metadata_not_dict": (lambda t: _ckpt(t, "metadata"), TypeError, "metadata"),
    "checkpoint_missing_step": (
        lambda t: _ckpt(t, "restore_missing_step"),
        CheckpointError,
        "step",
    ),
    "checkpoint_max_to_keep": (
        lambda t: Checkpointer(t / "ck", max_to_keep=0),
        ValueError,
        "max_to_keep",
    ),
    # train
    "train_optimizer_factory": (
        lambda t: make_train_step(_quad, optax.adam),
        TypeError,
        "optimizer",
    ),
    "train_negative_clip_norm": (
        lambda t: make_train_step(_quad, optax.sgd(0.1), clip_norm=-1.0),
        ValueError,
        "clip_norm",
    ),
    "train_int_key": (
        lambda t: init_train_state({"w": jnp.zeros(2)}, optax.sgd(0.1), 0),
        TypeError,
        "key",
    ),
    "train_state_not_trainstate": (
        lambda t: _step_with(({"w": jnp.zeros(2)},)),
        TypeError,
        "state",
    ),
    "train_opt_state_mismatch": (
        lambda t: _step_with(
            init_train_state({"w": jnp.zeros(2)}, optax.adam(0.1), jax.random.key(0))
        ),
        ValueError,
        "state.opt_state",
    ),
    "tbptt_windows_ragged": (
        lambda t: tbptt_value_and_grad(
            lambda p, c, w: (jnp.sum(w["a"]) * p, c),
            1.0,
            0.0,
            {"a": jnp.ones((2, 3)), "b": jnp.ones((3,))},
        ),
        ValueError,
        "windows",
    ),
    "eval_metric_fn_not_callable": (lambda t: make_eval_step(3), TypeError, "metric_fn"),
    # interop
    "from_torch_meta_device": (lambda t: _torch_meta(), ValueError, "module"),
    "from_torch_custom_forward": (lambda t: _torch_subclass(), TypeError, "module"),
    "to_torch_params_shape": (lambda t: _torch_export_mismatch(), ValueError, "params"),
    "carry_from_torch_h_size": (lambda t: _torch_carry(), ValueError, "hx"),
    "from_flax_linen_without_params": (lambda t: _flax_without_params(), ValueError, "params"),
    # nn
    "nnx_rnn_input_size": (lambda t: _nnx_input_size(), ValueError, "input_size"),
    "linen_stack_dict_keys": (
        lambda t: stack_params_from_dict({"layer_1": {}}),
        ValueError,
        "tree",
    ),
    # reference (NumPy ground truth)
    "reference_unknown_kind": (
        lambda t: ref.forward("elman", RNN_PARAMS, np.ones((1, 2, 2)), None),
        ValueError,
        "kind",
    ),
    "reference_xs_features": (
        lambda t: ref.forward("rnn", RNN_PARAMS, np.ones((1, 2, 5)), None),
        ValueError,
        "xs",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_a_clear_error_naming_the_argument(case, tmp_path):
    call, exc_type, name = CASES[case]
    with pytest.raises(exc_type) as info:
        call(tmp_path)
    assert type(info.value).__module__.split(".")[0] in ("builtins", "jrnn")
    message = str(info.value)
    assert re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", message), message
    assert "Traceback" not in message


def test_the_table_is_large_enough():
    assert len(CASES) >= 25
