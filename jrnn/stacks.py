"""Layers of one cell, optionally bidirectional, with dropout between them:
[`stack`][jrnn.stacks.stack] (``torch.nn.LSTM`` semantics over any [`jrnn.Cell`][jrnn.base.Cell]).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn import keys
from jrnn.base import Array, Carry, Cell, Method, Params, PRNGKey, RematMode, VJPMode
from jrnn.checks import (
    check_batch_shape,
    check_bool,
    check_float_input,
    check_int,
    check_key,
    check_params,
    shape_str,
)
from jrnn.prepare import Options, check_options
from jrnn.unrolling import run


class Stack(NamedTuple):
    """Layers of one cell, optionally bidirectional, like ``torch.nn.LSTM``.

    ``params`` and carries are nested tuples ``[layer][direction]`` (direction 0 reads
    forward, 1 backward).

    Attributes:
      init: ``init(key, input_size) -> params``.
      apply: ``apply(params, xs, *, carries=None, lengths=None, resets=None, key=None,
        time_major=False, unroll=None, hoist=None, vjp=None, remat="none", debug=False,
        method="scan") -> (ys, carries_T)`` (the options as in [`unroll`][jrnn.unrolling.unroll],
        ``method`` passed to every layer; ``resets`` reaches every layer
        and both directions, so each episode runs through the whole stack on its own;
        ``key`` drives the inter-layer dropout and, for a regularised cell, is split into
        one independent key per layer and direction);
        ``ys: [*batch, T, D * output_size]`` (``D = 2`` when bidirectional, directions
        concatenated ``[forward, backward]`` on the feature axis).
      initial_carry: ``initial_carry(params, batch_shape=()) -> carries``.
      cell: the cell of every layer and direction.
      num_layers: how many layers; layer ``l > 0`` reads layer ``l - 1``'s outputs.
      bidirectional: whether each layer also reads the sequence backwards.
      dropout: the dropout rate between layers (in training, with a ``key``).

    Examples:
      >>> import jrnn
      >>> jrnn.stack(jrnn.gru(8), num_layers=2, bidirectional=True)
      stack(gru(hidden_size=8, reset_after=False, layer_norm=False, gate_fn=sigmoid, activation=tanh, dtype=None, param_dtype=float32), num_layers=2, bidirectional=True, dropout=0.0)
    """  # noqa: E501

    init: Callable[[PRNGKey, int], Params]
    apply: Callable[..., tuple[Array, Carry]]
    initial_carry: Callable[..., Carry]
    cell: Cell
    num_layers: int
    bidirectional: bool
    dropout: float

    def __repr__(self) -> str:
        return (
            f"stack({self.cell.name}, num_layers={self.num_layers}, "
            f"bidirectional={self.bidirectional}, dropout={self.dropout})"
        )


def stack(
    cell: Cell, num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.0
) -> Stack:
    """Stacks ``num_layers`` layers of ``cell`` (``torch.nn.LSTM`` semantics).

    Layer 0 reads ``xs``; layer ``l > 0`` reads the previous layer's output, the
    concatenation ``[forward, backward]`` when bidirectional.  The backward direction runs
    ``unroll(..., reverse=True)`` with the same ``lengths`` (checked, or clamped when traced,
    exactly as in [`unroll`][jrnn.unrolling.unroll]); ``resets`` likewise reaches every layer and
    both directions (the backward one reads episodes right to left as in
    [`unroll`][jrnn.unrolling.unroll]), so a stack over concatenated episodes equals the stack over
    each episode alone.  Dropout with rate ``dropout`` acts on every layer's output except the last,
    and only when ``apply`` gets a ``key`` (evaluation passes none).

    Args:
      cell: the cell of every layer and direction.
      num_layers: number of layers (>= 1).
      bidirectional: add a backward direction to every layer.
      dropout: drop rate between layers, in ``[0, 1)``.

    Returns:
      A [`Stack`][jrnn.stacks.Stack].

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> net = jrnn.stack(jrnn.lstm(4), num_layers=2, bidirectional=True)
      >>> params = net.init(jax.random.key(0), 3)
      >>> ys, carries = net.apply(params, jnp.ones((2, 5, 3)), lengths=jnp.array([5, 3]))
      >>> ys.shape, len(carries), len(carries[0])
      ((2, 5, 8), 2, 2)
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"stack: `cell` must be a jrnn.Cell, got {type(cell).__name__}")
    check_int("num_layers", num_layers, "stack")
    bidirectional = check_bool("bidirectional", bidirectional, "stack")
    if (
        isinstance(dropout, bool)
        or not isinstance(dropout, int | float)
        or not (0.0 <= dropout < 1.0)
    ):
        raise ValueError(f"stack: `dropout` must lie in [0, 1), got {dropout!r}")
    num_dirs = 2 if bidirectional else 1
    where = "stack.apply"
    shape = _Shape(cell, num_layers, num_dirs)

    def init(key: PRNGKey, input_size: int) -> tuple[tuple[Params, ...], ...]:
        check_int("input_size", input_size, "stack.init")
        keys = jax.random.split(key, num_layers * num_dirs).reshape(num_layers, num_dirs)
        layers = []
        for layer in range(num_layers):
            size = input_size if layer == 0 else num_dirs * cell.output_size
            layers.append(tuple(cell.init(keys[layer, d], size) for d in range(num_dirs)))
        return tuple(layers)

    def initial_carry(params, batch_shape: tuple[int, ...] = ()):
        shape.check_params(params, "stack.initial_carry")
        batch_shape = check_batch_shape(batch_shape, "stack.initial_carry")
        return tuple(tuple(cell.initial_carry(p, batch_shape) for p in layer) for layer in params)

    def apply(
        params,
        xs: Array,
        *,
        carries=None,
        lengths: Array | None = None,
        resets: Array | None = None,
        key: PRNGKey | None = None,
        time_major: bool = False,
        unroll: int | bool | None = None,
        hoist: bool | None = None,
        vjp: VJPMode | None = None,
        remat: RematMode = "none",
        debug: bool = False,
        method: Method = "scan",
    ):
        xs = check_float_input("xs", xs, where)
        shape.check_params(params, where, xs.shape[-1] if xs.ndim else None)
        if carries is not None:
            shape.check_nested(carries, "carries", where)
        options = check_options(
            Options(False, time_major, unroll, False, hoist, vjp, remat, debug, method), where
        )
        cell_keys = None
        if key is not None:
            batch = xs.shape[1:-1] if time_major else xs.shape[:-2]
            key = check_key(key, where, batch_shape=batch)
            if cell.noise is not None:  # one independent key per layer and direction
                key, cell_root = keys.split(key)
                cell_keys = keys.split(cell_root, num_layers * num_dirs)
        finals = []
        for layer, layer_params in enumerate(params):
            outs = []
            for d, p in enumerate(layer_params):
                outs.append(
                    run(
                        cell,
                        p,
                        xs,
                        options._replace(reverse=d == 1),
                        None if carries is None else carries[layer][d],
                        lengths,
                        resets,
                        None if cell_keys is None else cell_keys[layer * num_dirs + d],
                        where=where,
                        pname=f"params[{layer}][{d}]",
                        cname=f"carries[{layer}][{d}]",
                    )
                )
            xs = jnp.concatenate([ys for ys, _ in outs], axis=-1)
            finals.append(tuple(c for _, c in outs))
            if dropout > 0.0 and key is not None and layer < num_layers - 1:
                key, sub = keys.split(key)
                xs = _dropout(sub, xs, dropout, 1 if time_major else 0)
        return xs, tuple(finals)

    return Stack(init, apply, initial_carry, cell, num_layers, bidirectional, float(dropout))


def _dropout(key: PRNGKey, xs: Array, rate: float, batch_axis: int = 0) -> Array:
    """Inverted dropout: each unit zero with probability ``rate``, the rest scaled up
    (``key``: one key, or one per example, the batch axes of ``xs`` at ``batch_axis``)."""
    keep = keys.bernoulli(key, 1.0 - rate, xs.shape, batch_axis)
    return jnp.where(keep, xs / (1.0 - rate), jnp.zeros_like(xs))


class _Shape(NamedTuple):
    """A stack's layout, for the checks of its params and carries ``[layer][direction]``."""

    cell: Cell
    num_layers: int
    num_dirs: int

    def check_nested(self, tree: Any, name: str, where: str) -> None:
        """``ValueError`` unless ``tree`` is nested tuples ``[num_layers][num_dirs]``."""
        if (
            not isinstance(tree, tuple | list)
            or len(tree) != self.num_layers
            or any(
                not isinstance(p, tuple | list) or hasattr(p, "_fields") or len(p) != self.num_dirs
                for p in tree
            )
        ):
            got = (
                f"{type(tree).__name__} of length {len(tree)}"
                if isinstance(tree, tuple | list)
                else type(tree).__name__
            )
            raise ValueError(
                f"{where}: `{name}` must be nested tuples [num_layers={self.num_layers}]"
                f"[directions={self.num_dirs}], got {got}: {jax.tree.structure(tree)}"
            )

    def check_params(self, params: Any, where: str, input_size: int | None = None) -> None:
        """Every layer's and direction's params against the cell's layout; layer 0 reads
        ``input_size`` features, every other layer the previous one's output."""
        self.check_nested(params, "params", where)
        cell, want = self.cell, self.num_dirs * self.cell.output_size
        for layer, layer_params in enumerate(params):
            for d, p in enumerate(layer_params):
                size = input_size if layer == 0 else want
                got = check_params(cell, p, where, f"params[{layer}][{d}]", size)
                if layer > 0 and got is not None and got != want:
                    raise ValueError(
                        f"{where}: `params[{layer}][{d}]['w_ih']` must have {want} rows "
                        f"(layer {layer} reads the previous layer's output: {self.num_dirs} "
                        f"direction(s) x output_size={cell.output_size}), got "
                        f"{shape_str(p['w_ih'].shape)}"
                    )
