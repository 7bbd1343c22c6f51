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

``Cell(cell)`` wraps one step as a :class:`flax.linen.RNNCellBase`, so ``flax.linen.RNN``
(or any hand-written loop) can drive a jrnn cell.

Parameters live under ``variables["params"]["cell"]`` (the cell's param dict) or, for a
stack, ``variables["params"]["stack"]`` as ``{"layer_0": {"forward": ..., "backward": ...},
...}`` (:func:`stack_params_to_dict`; :func:`stack_params_from_dict` gives back jrnn's
nested tuples).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jrnn.base import Array, Carry, Params
from jrnn.base import Cell as JrnnCell
from jrnn.unroll import Stack, unroll

__all__ = ["RNN", "Cell", "stack_params_from_dict", "stack_params_to_dict"]

_DIRECTIONS = ("forward", "backward")


def stack_params_to_dict(params: Any) -> dict[str, dict[str, Params]]:
    """jrnn stack params ``[layer][direction]`` -> ``{"layer_l": {"forward"|"backward": p}}``.

    Examples:
      >>> import jax, jrnn
      >>> net = jrnn.stack(jrnn.gru(4), num_layers=2, bidirectional=True)
      >>> tree = stack_params_to_dict(net.init(jax.random.key(0), 3))
      >>> sorted(tree), sorted(tree["layer_1"]), tree["layer_1"]["backward"]["w_ih"].shape
      (['layer_0', 'layer_1'], ['backward', 'forward'], (8, 12))
    """
    return {
        f"layer_{layer}": {_DIRECTIONS[d]: p for d, p in enumerate(layer_params)}
        for layer, layer_params in enumerate(params)
    }


def stack_params_from_dict(tree: Any) -> tuple[tuple[Params, ...], ...]:
    """The inverse of :func:`stack_params_to_dict` (any mapping type, e.g. a FrozenDict).

    Raises:
      ValueError: keys other than ``layer_0 .. layer_{L-1}``, or a layer without
        ``forward``.

    Examples:
      >>> import jax, jrnn
      >>> net = jrnn.stack(jrnn.lstm(4), num_layers=2)
      >>> params = net.init(jax.random.key(0), 3)
      >>> back = stack_params_from_dict(stack_params_to_dict(params))
      >>> len(back), len(back[0]), back[1][0]["w_ih"].shape     # [layer][direction]
      (2, 1, (4, 16))
    """
    names = sorted(tree) if hasattr(tree, "keys") else None
    want = [f"layer_{i}" for i in range(len(tree))] if names is not None else None
    if names is None or sorted(want) != names:
        raise ValueError(
            f"stack_params_from_dict: `tree` must map layer_0 .. layer_{{L-1}} to "
            f"{{'forward': ..., 'backward': ...}}, got keys {names}"
        )
    for name in want:
        if not hasattr(tree[name], "keys") or "forward" not in tree[name]:
            raise ValueError(
                f"stack_params_from_dict: `tree['{name}']` must have a 'forward' entry (and "
                f"'backward' for a bidirectional stack), got "
                f"{sorted(tree[name]) if hasattr(tree[name], 'keys') else type(tree[name])}"
            )
    num_layers = len(tree)
    out = []
    for layer in range(num_layers):
        entry = tree[f"layer_{layer}"]
        out.append(tuple(entry[name] for name in _DIRECTIONS if name in entry))
    return tuple(out)


def _check_target(cell: Any, where: str) -> None:
    if not isinstance(cell, JrnnCell | Stack):
        raise TypeError(
            f"{where}: `cell` must be a jrnn.Cell or a jrnn.Stack, got {type(cell).__name__}"
        )


def _needs_dropout_key(cell: JrnnCell | Stack, deterministic: bool | None, where: str) -> bool:
    """Whether a call must draw a dropout key (a stack with ``dropout > 0``, not
    deterministic); raises when that is undecided (``deterministic`` is ``None``)."""
    if not isinstance(cell, Stack) or cell.dropout == 0.0:
        return False
    if deterministic is None:
        raise ValueError(
            f"{where}: the stack has dropout={cell.dropout}; pass `deterministic` (True for "
            f"evaluation, False for training) to the constructor or the call"
        )
    return not deterministic


def _run(
    cell: JrnnCell | Stack,
    params: Any,
    xs: Array,
    initial_carry: Carry | None,
    lengths: Array | None,
    reverse: bool,
    time_major: bool,
    unroll_factor: int,
    key: jax.Array | None,
    where: str,
) -> tuple[Array, Carry]:
    """``jrnn.unroll`` for a cell, ``Stack.apply`` for a stack: ``(ys, final carry)``."""
    if isinstance(cell, Stack):
        if reverse:
            raise ValueError(
                f"{where}: `reverse` applies to a single cell; a bidirectional stack "
                f"already reads both ways (jrnn.stack(..., bidirectional=True))"
            )
        return cell.apply(
            params,
            xs,
            carries=initial_carry,
            lengths=lengths,
            key=key,
            time_major=time_major,
            unroll=unroll_factor,
        )
    return unroll(
        cell,
        params,
        xs,
        carry=initial_carry,
        lengths=lengths,
        reverse=reverse,
        time_major=time_major,
        unroll=unroll_factor,
    )


class RNN(nn.Module):
    """A jrnn cell or stack as a Flax linen module.

    Attributes:
      cell: a :class:`jrnn.Cell` (run with :func:`jrnn.unroll`) or a :class:`jrnn.Stack`
        (run with its ``apply``).
      reverse: read each sequence backwards within its length (cells only); outputs stay
        aligned with the inputs (jrnn's convention; unlike ``flax.linen.RNN`` there is no
        ``keep_order`` to set).
      time_major: inputs and outputs are ``[T, *batch, F]`` instead of ``[*batch, T, F]``.
      return_carry: return ``(final_carry, ys)`` (Flax's order) instead of ``ys``.
      unroll: passed to ``lax.scan``.
      deterministic: default for the call's ``deterministic`` (a stack's dropout acts only
        when it is ``False``; the key comes from the ``"dropout"`` RNG stream).

    Parameters: ``"cell"`` (the cell's own param dict, from ``cell.init`` with the module's
    ``"params"`` RNG) or ``"stack"`` (:func:`stack_params_to_dict` of ``stack.init``).

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
    unroll: int = 1
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
          deterministic: overrides the attribute (stacks with dropout only).
          return_carry: overrides the attribute.

        Returns:
          ``ys`` ``[*batch, T, D * output_size]``, or ``(final_carry, ys)``.
        """
        where = "jrnn.nn.linen.RNN"
        _check_target(self.cell, where)
        input_size = int(jnp.shape(xs)[-1])
        if isinstance(self.cell, Stack):
            tree = self.param(
                "stack", lambda k: stack_params_to_dict(self.cell.init(k, input_size))
            )
            params = stack_params_from_dict(tree)
        else:
            params = self.param("cell", lambda k: self.cell.init(k, input_size))
        det = self.deterministic if deterministic is None else deterministic
        key = self.make_rng("dropout") if _needs_dropout_key(self.cell, det, where) else None
        ys, carry = _run(
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
      cell: a :class:`jrnn.Cell`.

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
