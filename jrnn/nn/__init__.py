"""Flax modules over jrnn cells and stacks: [`jrnn.nn.linen`][] and [`jrnn.nn.nnx`][].

An Equinox module, [`jrnn.nn.eqx.RNN`][jrnn.nn.eqx.RNN], is imported on its own
(``import jrnn.nn.eqx``, with the ``[equinox]`` extra).

Both hold the parameters that the cell's own ``init`` makes and call ``jrnn.unroll`` /
``Stack.apply``, so they compute exactly what the pure functions compute.
"""

from jrnn.nn import linen, nnx
from jrnn.nn.linen import stack_params_from_dict, stack_params_to_dict

__all__ = ["linen", "nnx", "stack_params_from_dict", "stack_params_to_dict"]
