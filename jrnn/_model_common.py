"""Checks and small helpers shared by the model factories (:mod:`jrnn.models`,
:mod:`jrnn.feedback`, :mod:`jrnn.encdec`)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jrnn.base import Array, Cell
from jrnn.unroll import Stack


def _check_tokens(name: str, tokens: Any, vocab_size: int, where: str, rank: int) -> Array:
    """Integer tokens of rank ``rank``; values in ``[0, vocab_size)`` when concrete."""
    tokens = jnp.asarray(tokens)
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise TypeError(f"{where}: `{name}` must be integer token ids, got dtype {tokens.dtype}")
    if tokens.ndim != rank:
        layout = "[batch, time]" if rank == 2 else "[batch]"
        raise ValueError(f"{where}: `{name}` must have shape {layout}, got {list(tokens.shape)}")
    if not isinstance(tokens, jax.core.Tracer) and tokens.size:
        lo, hi = int(jnp.min(tokens)), int(jnp.max(tokens))
        if lo < 0 or hi >= vocab_size:
            raise ValueError(
                f"{where}: `{name}` holds token ids in [{lo}, {hi}] but the vocabulary has "
                f"{vocab_size} ids ([0, {vocab_size - 1}]): a vocabulary-size mismatch"
            )
    return tokens.astype(jnp.int32)


def _check_seq_lengths(lengths: Any, batch: int, num_steps: int, where: str, name: str) -> Array:
    """int ``[batch]`` lengths in ``[0, T]`` (checked when concrete)."""
    if lengths is None:
        return jnp.full((batch,), num_steps, jnp.int32)
    concrete = not isinstance(lengths, jax.core.Tracer)
    lengths = jnp.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"{where}: `{name}` must be integers, got dtype {lengths.dtype}")
    if lengths.shape != (batch,):
        raise ValueError(f"{where}: `{name}` must have shape [{batch}], got {list(lengths.shape)}")
    if concrete and lengths.size:
        lo, hi = int(jnp.min(lengths)), int(jnp.max(lengths))
        if lo < 0 or hi > num_steps:
            raise ValueError(
                f"{where}: `{name}` must lie in [0, T={num_steps}] (T the padded length), got "
                f"values in [{lo}, {hi}]"
            )
    return lengths.astype(jnp.int32)


def _dense_init(key: jax.Array, rows: int, cols: int, dtype: Any) -> Array:
    return jax.nn.initializers.lecun_normal()(key, (rows, cols), dtype)


def _as_stack(rnn: Cell | Stack) -> Stack:
    from jrnn.unroll import stack

    return rnn if isinstance(rnn, Stack) else stack(rnn)
