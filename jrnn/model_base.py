"""The models' one contract and the checks shared by the model factories
([`jrnn.models`][], `jrnn.feedback`, `jrnn.encdec`).

Every model's ``apply(params, inputs, ..., *, key=None)`` returns ``(outputs, aux)`` with
``aux`` a `ModelAux`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn.base import Array, Carry, Cell, DType, exportable
from jrnn.stacks import Stack


@exportable
class ModelAux(NamedTuple):
    """What a model's ``apply`` returns beside its outputs: ``(outputs, aux)``.

    Attributes:
      carry: the recurrence's final carry: a cell's carry (e.g. ``LSTMState(h, c)`` with
        ``[batch, hidden]`` leaves) or a stack's ``carries[layer][direction]``; for an
        encoder-decoder the decoder's final state; ``None`` where the model has no carry
        (the output-recurrence network without a cell).  Pass it back as ``carry=`` to
        continue a sequence ([`jrnn.sequence_model`][jrnn.models.sequence_model]).
      attention: attention weights ``[batch, target_time, source_time]`` of an attentional
        `jrnn.seq2seq`, else ``None``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> model = jrnn.sequence_model(jrnn.gru(8), 5, vocab_size=5, embed_size=4)
      >>> params = model.init(jax.random.key(0))
      >>> logits, aux = model.apply(params, jnp.zeros((2, 3), jnp.int32))
      >>> logits.shape, aux.carry.h.shape, aux.attention
      ((2, 3, 5), (2, 8), None)
    """

    carry: Carry = None
    attention: Array | None = None


def embed_tokens(table: Array | None, ids: Array, vocab_size: int, dtype: DType) -> Array:
    """Token ids ``[...]`` -> vectors ``[..., E]`` (a table ``[V, E]``) or one-hot ``[..., V]``.

    Ids outside ``[0, vocab_size)`` (possible only under ``jit``, where values are not
    checked) give the zero vector, in both forms: never NaN, never another token's row.
    Zeros rather than JAX's NaN fill, so that padding ids (e.g. ``-1`` at steps masked by
    ``lengths``) keep the padding convention: padded steps contribute exact zeros, also to
    gradients (a NaN input would turn the masked steps' parameter gradients into NaN).  The
    validity of every id is read by a gather (``mode="fill"``), so
    ``jax.experimental.checkify.checkify(apply, errors=checkify.index_checks)`` reports an
    out-of-range id as an error at the call site.
    """
    valid = (
        jnp.ones((vocab_size,), bool)
        .at[ids]
        .get(mode="fill", fill_value=False, wrap_negative_indices=False)
    )
    if table is None:
        return jax.nn.one_hot(ids, vocab_size, dtype=dtype)
    rows = jnp.take(table, jnp.clip(ids, 0, vocab_size - 1), axis=0).astype(dtype)
    return jnp.where(valid[..., None], rows, jnp.zeros((), dtype))


def compute_dtype(dtype: DType | None, default: DType) -> Any:
    """The dtype a model computes in: ``dtype`` if given, else its parameters' ``default``."""
    return jnp.dtype(default if dtype is None else dtype)


def check_tokens(name: str, tokens: Any, vocab_size: int, where: str, rank: int | None) -> Array:
    """Integer tokens of rank ``rank`` (``None``: any rank >= 1, ``[..., time]``); values in
    ``[0, vocab_size)`` when concrete.

    Under ``jit`` (a traced array) values cannot be checked: out-of-range ids then embed to
    the zero vector ([`embed_tokens`][jrnn.model_base.embed_tokens];
    ``checkify.index_checks`` turns them into an error).
    """
    tokens = jnp.asarray(tokens)
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise TypeError(f"{where}: `{name}` must be integer token ids, got dtype {tokens.dtype}")
    if tokens.ndim != rank if rank is not None else tokens.ndim < 1:
        layout = {None: "[..., time]", 2: "[batch, time]"}.get(rank, "[batch]")
        raise ValueError(f"{where}: `{name}` must have shape {layout}, got {list(tokens.shape)}")
    if not isinstance(tokens, jax.core.Tracer) and tokens.size:
        values = np.asarray(tokens)  # numpy: no tracer even inside a jit over closed-over ids
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi >= vocab_size:
            raise ValueError(
                f"{where}: `{name}` holds token ids in [{lo}, {hi}] but the vocabulary has "
                f"{vocab_size} ids ([0, {vocab_size - 1}]): a vocabulary-size mismatch"
            )
    return tokens.astype(jnp.int32)


def dense_init(key: jax.Array, rows: int, cols: int, dtype: Any) -> Array:
    return jax.nn.initializers.lecun_normal()(key, (rows, cols), dtype)


def as_stack(rnn: Cell | Stack) -> Stack:
    from jrnn.stacks import stack

    return rnn if isinstance(rnn, Stack) else stack(rnn)
