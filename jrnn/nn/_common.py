"""What the Flax modules of [`jrnn.nn`][] share: the stack parameter layout, the checks,
which calls need a key, and the call itself (``jrnn.unroll`` or ``Stack.apply``)."""

from __future__ import annotations

from typing import Any

import jax

from jrnn.base import Array, Carry, Cell, Params, kind_of
from jrnn.stacks import Stack
from jrnn.unrolling import unroll

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
    """The inverse of `stack_params_to_dict` (any mapping type, e.g. a FrozenDict).

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


def check_target(cell: Any, where: str) -> None:
    """``TypeError`` unless ``cell`` is a jrnn Cell or Stack."""
    if not isinstance(cell, Cell | Stack):
        raise TypeError(
            f"{where}: `cell` must be a jrnn.Cell or a jrnn.Stack, got {type(cell).__name__}"
        )


def randomness(target: Cell | Stack) -> str | None:
    """What is random in ``target`` when training, in words, or ``None``: a stack's dropout
    between layers, a regularised cell's noise ([`jrnn.zoneout`][jrnn.regularisers.zoneout],
    [`jrnn.recurrent_dropout`][jrnn.regularisers.recurrent_dropout], a custom cell with ``noise``).

    Examples:
      >>> import jrnn
      >>> randomness(jrnn.lstm(4)) is None
      True
      >>> randomness(jrnn.stack(jrnn.zoneout(jrnn.lstm(4), 0.1), 2, dropout=0.2))
      'dropout=0.2 between layers, the noise of zoneout'
    """
    cell = target.cell if isinstance(target, Stack) else target
    parts = []
    if isinstance(target, Stack) and target.dropout > 0.0:
        parts.append(f"dropout={target.dropout} between layers")
    if cell.noise is not None:
        parts.append(f"the noise of {kind_of(cell)}")
    return ", ".join(parts) or None


def needs_key(target: Cell | Stack, deterministic: bool | None, where: str) -> bool:
    """Whether a call must draw a key: ``target`` has randomness (`randomness`) and
    is not ``deterministic``; raises when that is undecided (``deterministic`` is
    ``None``)."""
    what = randomness(target)
    if what is None:
        return False
    if deterministic is None:
        raise ValueError(
            f"{where}: the {'stack' if isinstance(target, Stack) else 'cell'} is random when "
            f"training ({what}); pass `deterministic` (True for evaluation, False for "
            f"training) to the constructor or the call"
        )
    return not deterministic


def run(
    cell: Cell | Stack,
    params: Any,
    xs: Array,
    initial_carry: Carry | None,
    lengths: Array | None,
    reverse: bool,
    time_major: bool,
    unroll_factor: int | None,
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
        key=key,
    )
