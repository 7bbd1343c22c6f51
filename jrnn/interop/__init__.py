"""Interoperability with PyTorch, Flax and Equinox.

- `jrnn.interop.torch`: exact import/export of ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` and
  their ``*Cell`` versions (``from_torch``, ``to_torch``), recurrent states
  (``carry_from_torch``, ``carry_to_torch``) and gradients (``grads_from_torch``).
- `jrnn.interop.flax`: Flax linen/NNX ``LSTMCell``, ``OptimizedLSTMCell`` and ``GRUCell``
  parameters -> jrnn cells and back to linen, with their ``gate_fn``/``activation_fn``
  (``from_flax``, ``to_flax``, ``carry_from_flax``, ``carry_to_flax``).
- `jrnn.interop.equinox`: ``equinox.nn.LSTMCell`` / ``GRUCell`` -> jrnn cells
  (``from_equinox``, ``carry_from_equinox``, ``carry_to_equinox``).

PyTorch and Equinox are optional: they are imported only when a converter is called, so
``import jrnn.interop`` works without them (the call then raises a clear ``ImportError``).
The Flax modules that wrap jrnn cells live in [`jrnn.nn`][].
"""

from jrnn.interop.equinox import carry_from_equinox, carry_to_equinox, from_equinox
from jrnn.interop.flax import carry_from_flax, carry_to_flax, from_flax, to_flax
from jrnn.interop.torch import (
    carry_from_torch,
    carry_to_torch,
    from_torch,
    grads_from_torch,
    to_torch,
)

__all__ = [
    "carry_from_equinox",
    "carry_from_flax",
    "carry_from_torch",
    "carry_to_equinox",
    "carry_to_flax",
    "carry_to_torch",
    "from_equinox",
    "from_flax",
    "from_torch",
    "grads_from_torch",
    "to_flax",
    "to_torch",
]
