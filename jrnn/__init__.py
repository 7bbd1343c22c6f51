"""jrnn: recurrent neural networks as pure JAX functions.

A cell is an ``init`` + ``step`` pair over a parameter pytree; sequences are unrolled with
``jax.lax.scan``; backpropagation through time is ``jax.grad``.
"""

from jrnn.base import Cell, LSTMState, RNNState
from jrnn.cells import gru, lstm, simple_rnn
from jrnn.unroll import Stack, flip_within_lengths, stack, unroll
from jrnn.unroll import default_strategy as unroll_defaults

__version__ = "0.1.0"

__all__ = [
    "Cell",
    "LSTMState",
    "RNNState",
    "Stack",
    "flip_within_lengths",
    "gru",
    "lstm",
    "simple_rnn",
    "stack",
    "unroll",
    "unroll_defaults",
]
