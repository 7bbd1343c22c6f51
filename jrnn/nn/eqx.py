"""An Equinox module over any jrnn cell or stack: ``jrnn.nn.eqx.RNN``.

The module holds the parameters that the cell's (or stack's) own ``init`` makes, in jrnn's
layout, as Equinox leaves (``eqx.filter(module, eqx.is_array)`` selects them, so
``eqx.filter_grad`` and optax train them), and its call is exactly
[`jrnn.unroll`][jrnn.unrolling.unroll] (or ``Stack.apply``)::

    import equinox as eqx
    import jax
    import jrnn
    from jrnn.nn.eqx import RNN

    class Tagger(eqx.Module):
        rnn: RNN
        head: eqx.nn.Linear

        def __init__(self, key):
            k1, k2 = jax.random.split(key)
            self.rnn = RNN(jrnn.gru(32), input_size=8, key=k1)
            self.head = eqx.nn.Linear(32, 5, key=k2)

        def __call__(self, xs, lengths=None):          # xs: [batch, time, 8]
            ys, _ = self.rnn(xs, lengths=lengths)
            return jax.vmap(jax.vmap(self.head))(ys)  # [batch, time, 5]

Equinox is not a dependency of jrnn: install the extra, ``pip install 'jrnn[equinox]'``.
Importing this module without Equinox raises an ``ImportError`` that says so.
"""

from __future__ import annotations

import jax

from jrnn.base import Array, Carry, Cell, Params
from jrnn.checks import check_int
from jrnn.nn._common import check_target, needs_key, randomness, run
from jrnn.stacks import Stack

try:
    import equinox as eqx
except ImportError as e:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "jrnn.nn.eqx needs Equinox, which is not installed; install the extra: "
        "pip install 'jrnn[equinox]'"
    ) from e

__all__ = ["RNN"]


class RNN(eqx.Module):
    """A jrnn cell or stack as an Equinox module: parameters as leaves, the call is ``unroll``.

    Args:
      cell: a [`jrnn.Cell`][jrnn.base.Cell] (run with [`jrnn.unroll`][jrnn.unrolling.unroll]) or a
        [`jrnn.Stack`][jrnn.stacks.Stack] (run with ``Stack.apply``); kept as a static field.
      input_size: the feature size of the inputs.
      key: PRNG key of the parameters (``cell.init(key, input_size)``).
      reverse: read each sequence backwards within its length (cells only).
      time_major: inputs and outputs are ``[T, *batch, F]``.
      unroll: passed to ``lax.scan``.
      inference: ``True`` turns randomness off (a stack's dropout between layers, a
        regularised cell's noise: [`jrnn.zoneout`][jrnn.regularisers.zoneout],
        [`jrnn.recurrent_dropout`][jrnn.regularisers.recurrent_dropout]);
        ``eqx.nn.inference_mode(model)`` sets it in every submodule.

    Attributes:
      params: the parameters in jrnn's layout (the cell's dict, or a stack's
        ``[layer][direction]`` tuples), ready for ``jrnn.unroll`` / ``Stack.apply``.

    Raises:
      TypeError: ``cell`` is not a jrnn Cell or Stack.  ValueError: ``input_size`` is not a
        positive int.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np, jrnn
      >>> layer = RNN(jrnn.lstm(4), input_size=3, key=jax.random.key(0))
      >>> xs = jnp.ones((2, 5, 3))                                  # [batch, time, features]
      >>> ys, carry = layer(xs, lengths=jnp.array([5, 2]))
      >>> ys.shape, carry.c.shape                                   # [batch, time, H]
      ((2, 5, 4), (2, 4))
      >>> want, _ = jrnn.unroll(layer.cell, layer.params, xs, lengths=jnp.array([5, 2]))
      >>> bool(np.array_equal(ys, want))
      True
    """

    params: Params
    cell: Cell | Stack = eqx.field(static=True)
    reverse: bool = eqx.field(static=True)
    time_major: bool = eqx.field(static=True)
    unroll: int = eqx.field(static=True)
    inference: bool

    def __init__(
        self,
        cell: Cell | Stack,
        input_size: int,
        *,
        key: jax.Array,
        reverse: bool = False,
        time_major: bool = False,
        unroll: int = 1,
        inference: bool = False,
    ):
        where = "jrnn.nn.eqx.RNN"
        check_target(cell, where)
        input_size = check_int("input_size", input_size, where)
        self.cell = cell
        self.params = cell.init(key, input_size)
        self.reverse = reverse
        self.time_major = time_major
        self.unroll = unroll
        self.inference = inference

    def __call__(
        self,
        xs: Array,
        carry: Carry | None = None,
        *,
        lengths: Array | None = None,
        key: jax.Array | None = None,
        inference: bool | None = None,
    ) -> tuple[Array, Carry]:
        """Runs the RNN: ``(ys, final_carry)``, as [`jrnn.unroll`][jrnn.unrolling.unroll]
        returns them.

        Args:
          xs: ``[*batch, T, input_size]`` (``[T, *batch, input_size]`` when
            ``time_major``).
          carry: the cell's carry (a stack's ``[layer][direction]`` carries); default zeros.
          lengths: optional int ``[*batch]``; steps ``t >= lengths`` keep the carry and
            output zeros.
          key: PRNG key of the randomness (dropout, zoneout, ...); needed unless
            ``inference``, ignored for a cell or stack without randomness.
          inference: overrides the attribute.

        Returns:
          ``ys [*batch, T, D * output_size]`` and the final carry.

        Raises:
          ValueError: the cell or stack is random when training and no ``key`` was given.
        """
        where = "jrnn.nn.eqx.RNN"
        off = self.inference if inference is None else inference
        if not needs_key(self.cell, off, where):
            key = None
        elif key is None:
            raise ValueError(
                f"{where}: the {'stack' if isinstance(self.cell, Stack) else 'cell'} is random "
                f"when training ({randomness(self.cell)}); pass `key`, or `inference=True` "
                f"(eqx.nn.inference_mode) for evaluation"
            )
        return run(
            self.cell,
            self.params,
            xs,
            carry,
            lengths,
            self.reverse,
            self.time_major,
            self.unroll,
            key,
            where,
        )
