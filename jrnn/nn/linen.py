"""Flax linen modules over jrnn cells and stacks.

``RNN(cell_or_stack)`` is a linen module whose parameters are exactly what the jrnn cell's
(or stack's) own ``init`` makes, created from the module's ``"params"`` RNG the first time
it sees an input, and whose call is exactly ``jrnn.unroll`` (or ``Stack.apply``): same
numerics as the pure functions, so a jrnn RNN drops into any Flax model::

    import flax.linen as nn, jrnn
    from jrnn.nn import linen as jnn

    class Tagger(nn.Module):
        @nn.compact
        def __call__(self, xs, lengths, deterministic=True):
            net = jrnn.stack(jrnn.lstm(64), num_layers=2, bidirectional=True, dropout=0.1)
            ys = jnn.RNN(net)(xs, lengths=lengths, deterministic=deterministic)
            return nn.Dense(10)(ys)

``Cell(cell)`` wraps one step as a `flax.linen.RNNCellBase`, so ``flax.linen.RNN``
(or any hand-written loop) can drive a jrnn cell.

Parameters live under ``variables["params"]["cell"]`` (the cell's param dict) or, for a
stack, ``variables["params"]["stack"]`` as ``{"layer_0": {"forward": ..., "backward": ...},
...}`` (`stack_params_to_dict`; `stack_params_from_dict` gives back jrnn's
nested tuples).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jrnn.base import Array, Carry
from jrnn.base import Cell as JrnnCell
from jrnn.nn._common import (
    check_target,
    needs_key,
    run,
    stack_params_from_dict,
    stack_params_to_dict,
)
from jrnn.stacks import Stack

__all__ = ["RNN", "Cell", "stack_params_from_dict", "stack_params_to_dict"]


class RNN(nn.Module):
    """A jrnn cell or stack as a Flax linen module.

    Attributes:
      cell: a [`jrnn.Cell`][jrnn.base.Cell] (run with [`jrnn.unroll`][jrnn.unrolling.unroll]) or a
          [`jrnn.Stack`][jrnn.stacks.Stack]
        (run with its ``apply``).
      reverse: read each sequence backwards within its length (cells only); outputs stay
        aligned with the inputs (jrnn's convention; unlike ``flax.linen.RNN`` there is no
        ``keep_order`` to set).
      time_major: inputs and outputs are ``[T, *batch, F]`` instead of ``[*batch, T, F]``.
      return_carry: return ``(final_carry, ys)`` (Flax's order) instead of ``ys``.
      unroll: ``lax.scan``'s unroll factor, as in [`jrnn.unroll`][jrnn.unrolling.unroll] (``None``:
          its default).
      deterministic: default for the call's ``deterministic``.  Randomness acts only when it
        is ``False``: a stack's dropout between layers and a regularised cell's noise
        ([`jrnn.zoneout`][jrnn.regularisers.zoneout],
        [`jrnn.recurrent_dropout`][jrnn.regularisers.recurrent_dropout], a custom cell with
        ``noise``); the key comes from the ``"dropout"`` RNG stream.  Undecided (``None`` here and
        in the call) with such randomness is an error.

    Parameters: ``"cell"`` (the cell's own param dict, from ``cell.init`` with the module's
    ``"params"`` RNG) or ``"stack"`` (`stack_params_to_dict` of ``stack.init``).

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np, jrnn
      >>> layer = RNN(jrnn.lstm(4))
      >>> xs = jnp.ones((2, 5, 3))                                  # [batch, time, features]
      >>> variables = layer.init(jax.random.key(0), xs)
      >>> ys = layer.apply(variables, xs, lengths=jnp.array([5, 2]))
      >>> ys.shape                                                  # [batch, time, H]
      (2, 5, 4)
      >>> want, _ = jrnn.unroll(jrnn.lstm(4), variables["params"]["cell"], xs,
      ...                       lengths=jnp.array([5, 2]))
      >>> bool(np.array_equal(ys, want))                           # exactly jrnn.unroll
      True
    """

    cell: JrnnCell | Stack
    reverse: bool = False
    time_major: bool = False
    return_carry: bool = False
    unroll: int | None = None
    deterministic: bool | None = None

    @nn.compact
    def __call__(
        self,
        xs: Array,
        initial_carry: Carry | None = None,
        *,
        lengths: Array | None = None,
        deterministic: bool | None = None,
        return_carry: bool | None = None,
    ) -> Array | tuple[Carry, Array]:
        """Runs the RNN.

        Args:
          xs: ``[*batch, T, input_size]`` (or ``[T, *batch, input_size]`` when
            ``time_major``).
          initial_carry: the cell's carry ``[*batch, .]`` (or a stack's carries
            ``[layer][direction]``); default zeros.
          lengths: optional int ``[*batch]``; steps ``t >= lengths`` are padding.
          deterministic: overrides the attribute (for stacks with dropout and regularised
            cells).
          return_carry: overrides the attribute.

        Returns:
          ``ys`` ``[*batch, T, D * output_size]``, or ``(final_carry, ys)``.
        """
        where = "jrnn.nn.linen.RNN"
        check_target(self.cell, where)
        input_size = int(jnp.shape(xs)[-1])
        if isinstance(self.cell, Stack):
            tree = self.param(
                "stack", lambda k: stack_params_to_dict(self.cell.init(k, input_size))
            )
            params = stack_params_from_dict(tree)
        else:
            params = self.param("cell", lambda k: self.cell.init(k, input_size))
        det = self.deterministic if deterministic is None else deterministic
        key = self.make_rng("dropout") if needs_key(self.cell, det, where) else None
        ys, carry = run(
            self.cell,
            params,
            xs,
            initial_carry,
            lengths,
            self.reverse,
            self.time_major,
            self.unroll,
            key,
            where,
        )
        ret = self.return_carry if return_carry is None else return_carry
        return (carry, ys) if ret else ys


class Cell(nn.RNNCellBase):
    """One step of a jrnn cell as a ``flax.linen.RNNCellBase`` (usable in ``nn.RNN``).

    ``__call__(carry, x_t) -> (carry, y_t)`` is ``cell.step`` with the parameters
    ``"cell"`` (made by ``cell.init`` from the module's ``"params"`` RNG); the carry is
    jrnn's (``LSTMState(h, c)`` or ``RNNState(h)``, not Flax's ``(c, h)``).

    Attributes:
      cell: a [`jrnn.Cell`][jrnn.base.Cell].

    Examples:
      >>> import jax, jax.numpy as jnp, flax.linen as nn, jrnn
      >>> scan = nn.RNN(Cell(jrnn.gru(4)))                          # Flax drives the loop
      >>> xs = jnp.ones((2, 5, 3))                                  # [batch, time, features]
      >>> variables = scan.init(jax.random.key(0), xs)
      >>> scan.apply(variables, xs).shape
      (2, 5, 4)
    """

    cell: Any  # a jrnn.Cell

    @nn.compact
    def __call__(self, carry: Carry, x_t: Array) -> tuple[Carry, Array]:
        """``x_t: [*batch, input_size]`` -> ``(carry, y_t [*batch, output_size])``."""
        if not isinstance(self.cell, JrnnCell):
            raise TypeError(
                f"jrnn.nn.linen.Cell: `cell` must be a jrnn.Cell, got {type(self.cell).__name__}"
            )
        input_size = int(jnp.shape(x_t)[-1])
        params = self.param("cell", lambda k: self.cell.init(k, input_size))
        return self.cell.step(params, carry, x_t)

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> Carry:
        """Zero carry for inputs of shape ``[*batch, input_size]`` (``rng`` is unused)."""
        *batch, input_size = input_shape
        shapes = jax.eval_shape(
            lambda k: self.cell.initial_carry(self.cell.init(k, input_size), tuple(batch)),
            jax.random.key(0),
        )
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    @property
    def num_feature_axes(self) -> int:
        return 1
