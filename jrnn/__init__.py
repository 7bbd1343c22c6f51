"""jrnn: recurrent neural networks as pure JAX functions.

A cell is an ``init`` + ``step`` pair over a parameter pytree; sequences are unrolled with
``jax.lax.scan``; backpropagation through time is ``jax.grad``.

The core names are imported here; the other public submodules (``jrnn.losses``,
``jrnn.data``, ``jrnn.interop``, ``jrnn.nn``, ...) are imported on first attribute access,
so ``import jrnn`` stays as cheap as importing JAX and optax.
"""

import importlib

from jrnn.base import Cell, LSTMState, RNNState
from jrnn.cells import gru, lstm, simple_rnn
from jrnn.decode import Beams, Decoded, beam_search, greedy_decode, sample_decode
from jrnn.models import (
    EncoderDecoder,
    FeedbackModel,
    Model,
    ModelAux,
    output_recurrent,
    seq2seq,
    seq2vec,
    sequence_model,
    tagger,
    vec2seq,
)
from jrnn.train import (
    TrainState,
    evaluate,
    init_train_state,
    make_eval_step,
    make_train_step,
    tbptt_value_and_grad,
)
from jrnn.unroll import Stack, flip_within_lengths, stack, unroll
from jrnn.unroll import default_strategy as unroll_defaults

__version__ = "0.1.0"

# Public submodules reachable as attributes after ``import jrnn``, imported when first used.
_LAZY_SUBMODULES = (
    "app",
    "attention",
    "base",
    "cells",
    "checkpoint",
    "data",
    "decode",
    "diagnostics",
    "interop",
    "losses",
    "models",
    "nn",
    "reference",
    "sample",
    "seqtasks",
    "train",
)


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"jrnn.{name}")
    raise AttributeError(f"module 'jrnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))

__all__ = [
    "Beams",
    "Cell",
    "Decoded",
    "EncoderDecoder",
    "FeedbackModel",
    "LSTMState",
    "Model",
    "ModelAux",
    "RNNState",
    "Stack",
    "TrainState",
    "beam_search",
    "evaluate",
    "flip_within_lengths",
    "greedy_decode",
    "gru",
    "init_train_state",
    "lstm",
    "make_eval_step",
    "make_train_step",
    "output_recurrent",
    "sample_decode",
    "seq2seq",
    "seq2vec",
    "sequence_model",
    "simple_rnn",
    "stack",
    "tagger",
    "tbptt_value_and_grad",
    "unroll",
    "unroll_defaults",
    "vec2seq",
]
