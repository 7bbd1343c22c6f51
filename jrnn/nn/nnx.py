"""Flax NNX modules over jrnn cells and stacks.

``RNN(cell_or_stack, input_size, rngs=nnx.Rngs(0))`` holds the parameters that the jrnn
cell's (or stack's) own ``init`` makes from ``rngs.params()``, as ``nnx.Param`` leaves, and
its call is exactly ``jrnn.unroll`` (or ``Stack.apply``)::

    from flax import nnx
    import jrnn
    from jrnn.nn import nnx as jnnx

    class Tagger(nnx.Module):
        def __init__(self, rngs):
            net = jrnn.stack(jrnn.gru(64, reset_after=True), 2, bidirectional=True, dropout=0.1)
            self.rnn = jnnx.RNN(net, input_size=32, rngs=rngs)
            self.head = nnx.Linear(128, 10, rngs=rngs)

        def __call__(self, xs, lengths):
            return self.head(self.rnn(xs, lengths=lengths))

    model = Tagger(nnx.Rngs(params=0, dropout=1))   # model.eval() turns dropout off

``Cell(cell, input_size, rngs=...)`` is one step as an ``nnx.RNNCellBase`` (so
``nnx.RNN`` can drive it).  ``module.jrnn_params()`` returns the parameters in jrnn's own
layout (a dict, or nested tuples ``[layer][direction]`` for a stack).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jrnn.base import Array, Carry, Params
from jrnn.base import Cell as JrnnCell
from jrnn.checks import check_int
from jrnn.nn._common import (
    check_target,
    needs_key,
    randomness,
    run,
    stack_params_from_dict,
    stack_params_to_dict,
)
from jrnn.stacks import Stack

__all__ = ["RNN", "Cell"]


def _to_variables(tree: Any) -> Any:
    """Nested dicts of arrays -> nested ``nnx.Dict`` of ``nnx.Param``."""
    if isinstance(tree, dict):
        return nnx.Dict({k: _to_variables(v) for k, v in tree.items()})
    return nnx.Param(tree)


def _to_arrays(tree: Any) -> Any:
    """The inverse of `_to_variables` (plain dicts of arrays)."""
    if isinstance(tree, nnx.Variable):
        return tree[...]
    return {k: _to_arrays(v) for k, v in tree.items()}


def _dropout_key(rngs: Any, where: str) -> jax.Array:
    if isinstance(rngs, nnx.Rngs):
        return rngs["dropout"]()
    if isinstance(rngs, nnx.RngStream):
        return rngs()
    if isinstance(rngs, jax.Array):
        return rngs
    raise ValueError(
        f"{where}: dropout is active (deterministic=False) but no RNG was given; pass "
        f"`rngs` to the constructor or the call, or set deterministic=True"
    )


class RNN(nnx.Module):
    """A jrnn cell or stack as a Flax NNX module.

    Args:
      cell: a [`jrnn.Cell`][jrnn.base.Cell] (run with [`jrnn.unroll`][jrnn.unrolling.unroll]) or a
          [`jrnn.Stack`][jrnn.stacks.Stack].
      input_size: the feature size of the inputs (NNX creates parameters eagerly).
      reverse: read each sequence backwards within its length (cells only; outputs stay
        aligned with the inputs).
      time_major: inputs and outputs are ``[T, *batch, F]``.
      return_carry: return ``(final_carry, ys)`` (Flax's order) instead of ``ys``.
      unroll: ``lax.scan``'s unroll factor, as in [`jrnn.unroll`][jrnn.unrolling.unroll] (``None``:
          its default).
      deterministic: ``True`` turns randomness off (``module.eval()`` sets it,
        ``module.train()`` clears it): a stack's dropout between layers and a regularised
        cell's noise ([`jrnn.zoneout`][jrnn.regularisers.zoneout],
        [`jrnn.recurrent_dropout`][jrnn.regularisers.recurrent_dropout], a custom cell with
        ``noise``).
      rngs: ``rngs.params()`` initialises the parameters; a module with randomness keeps a
        fork of the ``"dropout"`` stream (or ``"default"``) for it (without either, pass
        ``rngs`` to every non-deterministic call).

    Attributes:
      params: ``nnx.Dict`` of ``nnx.Param`` -- the cell's param dict, or for a stack
        ``{"layer_l": {"forward" | "backward": {...}}}``.

    Raises:
      TypeError: ``cell`` is not a jrnn Cell or Stack.  ValueError: ``input_size`` is not
        a positive int.

    Examples:
      >>> import jax.numpy as jnp, numpy as np, jrnn
      >>> from flax import nnx
      >>> net = jrnn.stack(jrnn.gru(4), num_layers=2, bidirectional=True)
      >>> layer = RNN(net, input_size=3, rngs=nnx.Rngs(0))
      >>> xs = jnp.ones((2, 5, 3))                                  # [batch, time, features]
      >>> ys = layer(xs, lengths=jnp.array([5, 3]))
      >>> ys.shape                                                  # [batch, time, 2H]
      (2, 5, 8)
      >>> want, _ = net.apply(layer.jrnn_params(), xs, lengths=jnp.array([5, 3]))
      >>> bool(np.array_equal(ys, want))
      True
    """

    def __init__(
        self,
        cell: JrnnCell | Stack,
        input_size: int,
        *,
        reverse: bool = False,
        time_major: bool = False,
        return_carry: bool = False,
        unroll: int | None = None,
        deterministic: bool = False,
        rngs: nnx.Rngs,
    ):
        where = "jrnn.nn.nnx.RNN"
        check_target(cell, where)
        check_int("input_size", input_size, where)
        self.cell = nnx.static(cell)
        self.reverse = reverse
        self.time_major = time_major
        self.return_carry = return_carry
        self.unroll = unroll
        self.deterministic = deterministic
        params = cell.init(rngs.params(), input_size)
        if isinstance(cell, Stack):
            params = stack_params_to_dict(params)
        self.params = _to_variables(params)
        self.rngs = nnx.data(None)
        if randomness(cell) is not None and ("dropout" in rngs or "default" in rngs):
            self.rngs = rngs["dropout"].fork()

    def jrnn_params(self) -> Any:
        """The parameters in jrnn's layout (for ``jrnn.unroll`` / ``Stack.apply``)."""
        tree = _to_arrays(self.params)
        return stack_params_from_dict(tree) if isinstance(self.cell, Stack) else tree

    def __call__(
        self,
        xs: Array,
        initial_carry: Carry | None = None,
        *,
        lengths: Array | None = None,
        deterministic: bool | None = None,
        return_carry: bool | None = None,
        rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None,
    ) -> Array | tuple[Carry, Array]:
        """Runs the RNN.

        Args:
          xs: ``[*batch, T, input_size]`` (or ``[T, *batch, input_size]`` when
            ``time_major``).
          initial_carry: the cell's carry (or a stack's ``[layer][direction]``); default
            zeros.
          lengths: optional int ``[*batch]``.
          deterministic: overrides the attribute.
          return_carry: overrides the attribute.
          rngs: overrides the stored dropout RNG (an ``nnx.Rngs``, stream or key).

        Returns:
          ``ys`` ``[*batch, T, D * output_size]``, or ``(final_carry, ys)``.
        """
        where = "jrnn.nn.nnx.RNN"
        det = self.deterministic if deterministic is None else deterministic
        key = None
        if needs_key(self.cell, det, where):
            key = _dropout_key(rngs if rngs is not None else self.rngs, where)
        ys, carry = run(
            self.cell,
            self.jrnn_params(),
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


class Cell(nnx.RNNCellBase):
    """One step of a jrnn cell as an ``nnx.RNNCellBase`` (usable in ``nnx.RNN``).

    ``__call__(carry, x_t) -> (carry, y_t)`` is ``cell.step``; the carry is jrnn's
    (``LSTMState(h, c)`` or ``RNNState(h)``).

    Args:
      cell: a [`jrnn.Cell`][jrnn.base.Cell].
      input_size: the inputs' feature size.
      rngs: ``rngs.params()`` initialises the parameters with ``cell.init``.

    Examples:
      >>> import jax.numpy as jnp, jrnn
      >>> from flax import nnx
      >>> cell = Cell(jrnn.lstm(4), input_size=3, rngs=nnx.Rngs(0))
      >>> carry = cell.initialize_carry((2, 3))                     # [batch, features]
      >>> carry, y = cell(carry, jnp.ones((2, 3)))
      >>> y.shape, type(carry).__name__
      ((2, 4), 'LSTMState')
    """

    def __init__(self, cell: JrnnCell, input_size: int, *, rngs: nnx.Rngs):
        if not isinstance(cell, JrnnCell):
            raise TypeError(
                f"jrnn.nn.nnx.Cell: `cell` must be a jrnn.Cell, got {type(cell).__name__}"
            )
        check_int("input_size", input_size, "jrnn.nn.nnx.Cell")
        self.cell = nnx.static(cell)
        self.params = _to_variables(cell.init(rngs.params(), input_size))

    def jrnn_params(self) -> Params:
        """The cell's param dict."""
        return _to_arrays(self.params)

    def __call__(self, carry: Carry, x_t: Array) -> tuple[Carry, Array]:  # type: ignore[override]
        """``x_t: [*batch, input_size]`` -> ``(carry, y_t [*batch, output_size])``."""
        return self.cell.step(self.jrnn_params(), carry, x_t)

    def initialize_carry(  # type: ignore[override]
        self, input_shape: tuple[int, ...], rngs: Any = None, carry_init: Any = None
    ) -> Carry:
        """Zero carry for inputs of shape ``[*batch, input_size]`` (``rngs`` unused)."""
        del rngs, carry_init
        carry = self.cell.initial_carry(self.jrnn_params(), tuple(input_shape[:-1]))
        return jax.tree.map(jnp.asarray, carry)

    @property
    def num_feature_axes(self) -> int:
        return 1
