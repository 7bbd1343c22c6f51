"""Helpers shared by the converters: what a jrnn cell is, and checks of parameter pytrees.

A [`jrnn.Cell`][jrnn.base.Cell] is functions plus a name; the converters learn its kind from the
name (``simple_rnn``, ``lstm``, ``gru``) and everything else (peepholes, projection, reset-after,
sizes) from the shapes its own ``init`` produces, so they never guess a layout.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import jax
import numpy as np

from jrnn.base import Cell
from jrnn.checks import check_params
from jrnn.stacks import Stack

NUM_GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}


class CellInfo(NamedTuple):
    """What a converter needs to know about a jrnn cell.

    Attributes:
      kind: ``"simple_rnn"``, ``"lstm"`` or ``"gru"``.
      hidden_size: ``H`` (the gates' width).
      output_size: size of ``h``/``y`` (``P`` for an LSTM with a projection, else ``H``).
      activation: the simple RNN's activation name (``None`` for other kinds).
      peephole: the LSTM has ``w_peep``.
      proj_size: ``P`` or ``None``.
      reset_after: the GRU has ``b_hn`` (cuDNN/PyTorch form).
    """

    kind: str
    hidden_size: int
    output_size: int
    activation: str | None
    peephole: bool
    proj_size: int | None
    reset_after: bool


def cell_info(cell: Cell, where: str) -> CellInfo:
    """Describes ``cell`` (kind from its name; options from the keys its ``init`` makes)."""
    if not isinstance(cell, Cell):
        raise TypeError(f"{where}: expected a jrnn.Cell or jrnn.Stack, got {type(cell).__name__}")
    kind = cell.name.split("(")[0]
    if kind not in NUM_GATES:
        raise ValueError(
            f"{where}: unsupported cell {cell.name!r}; expected a jrnn.simple_rnn, jrnn.lstm "
            f"or jrnn.gru cell"
        )
    keys = set(init_shapes(cell, 1))
    activation = None
    if kind == "simple_rnn":
        match = re.search(r"activation=([^,)]+)", cell.name)
        activation = match.group(1) if match else "tanh"
    proj = cell.output_size if "w_proj" in keys else None
    return CellInfo(
        kind=kind,
        hidden_size=cell.hidden_size,
        output_size=cell.output_size,
        activation=activation,
        peephole="w_peep" in keys,
        proj_size=proj,
        reset_after="b_hn" in keys,
    )


def init_shapes(cell: Cell, input_size: int) -> Any:
    """The ``jax.ShapeDtypeStruct`` tree of ``cell.init(key, input_size)`` (nothing computed)."""
    return jax.eval_shape(lambda key: cell.init(key, input_size), jax.random.key(0))


def check_stack_params(net: Stack, params: Any, where: str, name: str = "params") -> int:
    """Checks nested ``params[layer][direction]`` against ``net``; returns the input size."""
    num_dirs = 2 if net.bidirectional else 1
    if (
        not isinstance(params, tuple | list)
        or len(params) != net.num_layers
        or any(not isinstance(p, tuple | list) or len(p) != num_dirs for p in params)
    ):
        raise ValueError(
            f"{where}: `{name}` must be nested tuples [num_layers={net.num_layers}]"
            f"[directions={num_dirs}] of param dicts, got {jax.tree.structure(params)}"
        )
    input_size = check_params(net.cell, params[0][0], where, f"{name}[0][0]")
    for layer, layer_params in enumerate(params):
        size = input_size if layer == 0 else num_dirs * net.cell.output_size
        for d, p in enumerate(layer_params):
            got = check_params(net.cell, p, where, f"{name}[{layer}][{d}]")
            if got != size:
                raise ValueError(
                    f"{where}: `{name}[{layer}][{d}]['w_ih']` must have {size} rows (the "
                    f"{'input size' if layer == 0 else 'previous layer output size'}), got {got}"
                )
    return input_size


def float_dtype(params: Any, where: str) -> np.dtype:
    """The one floating dtype of every leaf of ``params`` (``ValueError`` if mixed)."""
    dtypes = {np.dtype(getattr(x, "dtype", np.float64)) for x in jax.tree.leaves(params)}
    if len(dtypes) != 1:
        raise ValueError(
            f"{where}: every parameter must have the same dtype, got {sorted(map(str, dtypes))}"
        )
    return dtypes.pop()
