"""jrnn: recurrent neural networks as pure JAX functions.

A cell is an ``init`` + ``step`` pair over a parameter pytree; sequences are unrolled with
``jax.lax.scan``; backpropagation through time is ``jax.grad``.

Importing ``jrnn`` is cheap: its public names load (with JAX) on first use, so the ``jrnn``
command refuses bad input without importing JAX.
"""

# ruff: noqa: F401  (the names _load imports are returned through locals())
from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any


def _load() -> dict[str, Any]:
    """Imports the public names (the first time one is used)."""
    from jrnn.base import Cell, LSTMState, RNNState
    from jrnn.cells import gru, lstm, simple_rnn
    from jrnn.decode import Beams, Decoded, beam_search, greedy_decode, sample_decode
    from jrnn.models import (
        EncoderDecoder,
        FeedbackModel,
        Model,
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

    return {k: v for k, v in locals().items() if k in __all__}


__version__ = "0.1.0"

__all__ = [
    "Beams",
    "Cell",
    "Decoded",
    "EncoderDecoder",
    "FeedbackModel",
    "LSTMState",
    "Model",
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


if TYPE_CHECKING:  # for type checkers and documentation tools: the same names, eagerly
    from jrnn.base import Cell, LSTMState, RNNState
    from jrnn.cells import gru, lstm, simple_rnn
    from jrnn.decode import Beams, Decoded, beam_search, greedy_decode, sample_decode
    from jrnn.models import (
        EncoderDecoder,
        FeedbackModel,
        Model,
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


def __getattr__(name: str) -> Any:
    # Loading binds the public names and, as the eager imports did, the submodules they
    # come from (jrnn.train, jrnn.models, ...).
    if not name.startswith("__"):
        globals().update(_load())
        if name in globals():
            return globals()[name]
    raise AttributeError(f"module 'jrnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps a public name (``jrnn.unroll``, the function) from being replaced by the
    submodule of the same name when that submodule is first imported."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in __all__ and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
