"""What task builders share: the cell and model of a config, seeds, held-out sets and
metric helpers.  Imported by the builders only (it imports JAX)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jrnn.base import Cell
from jrnn.cells import gru, lstm, simple_rnn
from jrnn.griffin import rglru
from jrnn.mincells import lru, mingru, minlstm
from jrnn.models import Model, sequence_model
from jrnn.regularisers import recurrent_dropout, zoneout
from jrnn.stacks import stack
from jrnn.xlstm import SLSTMState, mlstm, slstm

__all__ = [
    "VAL_KEY",
    "dtypes",
    "example",
    "f32_sum",
    "build_cell",
    "make_cell",
    "make_model",
    "masked_hits",
    "ratio",
    "seed_keys",
    "synthetic_eval",
    "token_eval_row",
]

VAL_KEY = 20240328  # the held-out set of a synthetic task does not depend on the seed


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(init_key, data_key, train_key)`` from an integer seed."""
    k_init, k_data, k_train = jax.random.split(jax.random.key(seed), 3)
    return k_init, k_data, k_train


def dtypes(name: str) -> tuple[Any, Any]:
    """``(compute dtype, param dtype)`` for ``--dtype``: bfloat16 keeps float32 params."""
    return {
        "float32": (jnp.float32, jnp.float32),
        "bfloat16": (jnp.bfloat16, jnp.float32),
        "float64": (jnp.float64, jnp.float64),
    }[name]


def build_cell(
    name: str,
    hidden: int,
    *,
    dtype: Any,
    param_dtype: Any,
    layer_norm: bool = False,
    forget_bias: float = 1.0,
) -> Cell:
    """The cell called ``name`` (a ``--cell`` choice) with these options (``layer_norm``
    must be off for ``mingru``, ``minlstm``, ``lru``, ``rglru``, ``mlstm``, ``slstm``: the
    config refuses it)."""
    kw = {"dtype": dtype, "param_dtype": param_dtype, "layer_norm": layer_norm}
    dt = {"dtype": dtype, "param_dtype": param_dtype}
    if layer_norm and name in ("mingru", "minlstm", "lru", "rglru", "mlstm", "slstm"):
        raise ValueError(f"build_cell: `layer_norm` does not apply to {name}")
    return {
        "mingru": lambda: mingru(hidden, **dt),
        "minlstm": lambda: minlstm(hidden, **dt),
        "lru": lambda: lru(hidden, **dt),
        "rglru": lambda: rglru(hidden, **dt),
        "mlstm": lambda: mlstm(hidden, **dt),
        "slstm": lambda: slstm(hidden, **dt),
        "rnn": lambda: simple_rnn(hidden, **kw),
        "lstm": lambda: lstm(hidden, forget_bias=forget_bias, **kw),
        "lstm-peephole": lambda: lstm(hidden, peephole=True, forget_bias=forget_bias, **kw),
        "gru": lambda: gru(hidden, **kw),
        "gru-reset-after": lambda: gru(hidden, reset_after=True, **kw),
    }[name]()


def make_cell(config: Any, hidden: int | None = None) -> Cell:
    """The cell of a config (``cell``, ``hidden``, ``layer_norm``, ``dtype``), wrapped in
    [`jrnn.recurrent_dropout`][jrnn.regularisers.recurrent_dropout] and
    [`jrnn.zoneout`][jrnn.regularisers.zoneout] when those rates are set (for ``slstm`` zoneout
    acts on ``h`` only: its ``c``, ``n`` are stored at the scale ``exp(-m)``, which a blend
    of two steps would mix)."""
    dtype, param_dtype = dtypes(config.dtype)
    cell = build_cell(
        config.cell,
        hidden or config.hidden,
        dtype=dtype,
        param_dtype=param_dtype,
        layer_norm=config.layer_norm,
    )
    if config.recurrent_dropout:
        cell = recurrent_dropout(cell, config.recurrent_dropout)
    if config.zoneout:
        rate = config.zoneout
        if config.cell == "slstm":
            rate = SLSTMState(h=rate, c=0.0, n=0.0, m=0.0)
        cell = zoneout(cell, rate)
    return cell


def make_model(
    config: Any,
    *,
    output_size: int,
    input_size: int | None = None,
    vocab_size: int | None = None,
    readout: str = "all",
    bidirectional: bool = False,
) -> Model:
    """The model of a config: ``cell``, ``hidden``, ``layers``, ``dropout``, ``embed``, ``dtype``.

    ``embed = 0`` feeds tokens one-hot.
    """
    _, param_dtype = dtypes(config.dtype)
    rnn = stack(
        make_cell(config),
        num_layers=config.layers,
        bidirectional=bidirectional,
        dropout=config.dropout,
    )
    embed = config.embed if vocab_size is not None else None
    return sequence_model(
        rnn,
        output_size,
        input_size=input_size,
        vocab_size=vocab_size,
        embed_size=embed or None,
        readout=readout,
        dropout=config.dropout,
        param_dtype=param_dtype,
    )


def synthetic_eval(config: Any, make_batch):
    """A fixed held-out set: ``eval_batches`` batches from a seed-independent key."""
    num = config.eval_batches or 8
    key = jax.random.key(VAL_KEY)
    size = config.eval_batch_size
    batches = [make_batch(jax.random.fold_in(key, i), size) for i in range(num)]
    batches = [jax.tree.map(np.asarray, b) for b in batches]
    return lambda: iter(batches)


def masked_hits(pred: jax.Array, target: jax.Array, lengths: jax.Array):
    """``(hits, valid, exact)``: per-position hits and validity ``[B, T]``, per-row exact."""
    valid = jnp.arange(target.shape[1], dtype=jnp.int32)[None, :] < lengths[:, None]
    hits = (pred == target) & valid
    exact = jnp.all(hits | ~valid, axis=1)
    return hits, valid, exact


def f32_sum(x: jax.Array) -> jax.Array:
    return jnp.sum(x.astype(jnp.float32))


def ratio(hits: jax.Array, valid: jax.Array) -> jax.Array:
    return f32_sum(hits) / jnp.maximum(f32_sum(valid), jnp.float32(1))


def example(shown: str, got: str, target: str) -> list[str]:
    """One decoded example: ``ok``/``ERR``, input -> output, and the target when wrong."""
    line = f"  {'ok ' if got == target else 'ERR'} {shown}  ->  {got}"
    return [line] if got == target else [line, f"      want {target}"]


def token_eval_row(means: dict[str, float]) -> dict[str, float]:
    """``val_loss``, ``val_accuracy`` and, where measured, ``val_exact``, ``val_accuracy_tf``
    and ``val_exact_tf``."""
    row = {"val_loss": means["loss"], "val_accuracy": means["accuracy"]}
    for name in ("exact", "accuracy_tf", "exact_tf"):
        if name in means:
            row[f"val_{name}"] = means[name]
    return row
