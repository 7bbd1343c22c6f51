"""Attention over encoder states: Bahdanau (additive) and Luong (dot, general) scores.

The seed's last slides ("Attention Models", "Encoder-Decoder Networks with Attention"): the
decoder, at every output step, scores each encoder state against its own state (the
*query*), turns the scores into weights with a softmax over the valid source steps, and
reads the weighted sum of the encoder states (the *context*)::

    e_{t,s} = score(q_t, k_s)                     (scores,  [..., S])
    α_{t,s} = exp(e_{t,s}) / Σ_{s' < L} exp(e_{t,s'})   (weights: 0 at padded steps s >= L)
    c_t     = Σ_s α_{t,s} v_s                     (context, [..., E])

Scores (row-vector convention ``x @ w``; ``q [..., Q]``, ``k_s`` the encoder state
``[E]``):

* ``"additive"`` (Bahdanau et al. 2015): ``e = v · tanh(q @ w_q + k @ w_k + b)`` with
  ``w_q [Q, A]``, ``w_k [E, A]``, ``b [A]``, ``v [A]``;
* ``"dot"`` (Luong et al. 2015): ``e = q · k`` (needs ``Q == E``; no parameters);
* ``"general"`` (Luong et al. 2015): ``e = q @ w_a @ k`` with ``w_a [Q, E]``.

Everything that depends only on the encoder states (``k @ w_k`` for the additive score,
``k @ w_a.T`` for the general one) is computed once by :meth:`Attention.prepare`, before the
decoder's scan, so each decoder step does one ``[S, A]`` product at most.

Like a :class:`jrnn.Cell`, :func:`attention` returns a ``NamedTuple`` of pure functions over
an explicit parameter dict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn.base import Array, Params, check_int

__all__ = ["SCORES", "Attention", "AttentionMemory", "attention", "masked_softmax"]


SCORES = ("additive", "dot", "general")
_ALIASES = {"bahdanau": "additive", "concat": "additive", "luong": "general"}


class AttentionMemory(NamedTuple):
    """What a decoder attends over, prepared once per source batch.

    Attributes:
      keys: ``[..., S, K]``: the encoder states as the score reads them (projected for the
        additive and general scores, the states themselves for the dot score).
      values: ``[..., S, E]``: the encoder states averaged into the context.
      mask: bool ``[..., S]``: ``True`` at valid (non-padded) source steps.
    """

    keys: Array
    values: Array
    mask: Array


class Attention(NamedTuple):
    """An attention score as pure functions.

    Attributes:
      init: ``init(key, query_size, value_size) -> params`` (``{}`` for the dot score).
      prepare: ``prepare(params, values [..., S, E], mask [..., S]) -> AttentionMemory``.
      scores: ``scores(params, query [..., Q], memory) -> e [..., S]`` (unmasked).
      apply: ``apply(params, query [..., Q], memory) -> (context [..., E], weights [..., S])``;
        the weights are zero at padded steps and sum to 1 over the valid ones (all zero when
        a row has no valid step).
      kind: ``"additive"``, ``"dot"`` or ``"general"``.
      size: ``A``, the width of the additive score's hidden layer (``None`` otherwise).
    """

    init: Callable[..., Params]
    prepare: Callable[..., AttentionMemory]
    scores: Callable[..., Array]
    apply: Callable[..., tuple[Array, Array]]
    kind: str
    size: int | None


def masked_softmax(scores: Array, mask: Array | None) -> Array:
    """Softmax over the last axis restricted to ``mask``.

    Args:
      scores: ``[..., S]``.
      mask: bool ``[..., S]`` (broadcastable), ``True`` where a step may be attended, or
        ``None`` for all steps.

    Returns:
      ``[..., S]`` weights: exactly 0 where ``mask`` is False (whatever the scores hold, NaN
      included), summing to 1 over the valid steps, and all 0 for a row with no valid step
      (never NaN, also in the gradient).
    """
    if mask is None:
        return jax.nn.softmax(scores, axis=-1)
    mask = jnp.broadcast_to(mask, scores.shape)
    neg = jnp.asarray(jnp.finfo(scores.dtype).min, scores.dtype)
    safe = jnp.where(mask, scores, neg)
    top = jax.lax.stop_gradient(jnp.max(safe, axis=-1, keepdims=True))
    e = jnp.where(mask, jnp.exp(safe - top), jnp.zeros((), scores.dtype))
    total = jnp.sum(e, axis=-1, keepdims=True)
    return e / jnp.where(total > 0, total, jnp.ones((), scores.dtype))


def attention(
    kind: str = "general",
    size: int | None = None,
    *,
    param_dtype: Any = jnp.float32,
) -> Attention:
    """An attention score: ``"additive"`` (Bahdanau), ``"dot"`` or ``"general"`` (Luong).

    Args:
      kind: ``"additive"`` (alias ``"bahdanau"``, ``"concat"``), ``"dot"`` or ``"general"``
        (alias ``"luong"``).
      size: ``A``, the hidden width of the additive score (default: the query size).
      param_dtype: storage dtype of the parameters.

    Returns:
      An :class:`Attention`.  Parameters: additive ``{"w_q": [Q, A], "w_k": [E, A],
      "b": [A], "v": [A]}``; general ``{"w_a": [Q, E]}``; dot ``{}``.  Initialisation:
      ``lecun_normal`` kernels, zero bias, ``v ~ N(0, 1/A)``.

    Raises:
      ValueError: an unknown ``kind``; a bad ``size``; at ``init``, the dot score with
        ``query_size != value_size``.
    """
    where = "attention"
    kind = _ALIASES.get(kind, kind)
    if kind not in SCORES:
        raise ValueError(
            f"{where}: unknown score {kind!r}; expected one of {SCORES} "
            f"(or the aliases {sorted(_ALIASES)})"
        )
    if size is not None:
        size = check_int("size", size, where)
        if kind != "additive":
            raise ValueError(f"{where}: `size` applies to the additive score only, not {kind!r}")
    kernel = jax.nn.initializers.lecun_normal()

    def init(key: jax.Array, query_size: int, value_size: int) -> Params:
        check_int("query_size", query_size, f"{where}.init")
        check_int("value_size", value_size, f"{where}.init")
        if kind == "dot":
            if query_size != value_size:
                raise ValueError(
                    f"{where}.init: the dot score needs query_size == value_size (decoder "
                    f"state size == encoder output size), got {query_size} and {value_size}; "
                    "use the 'general' or 'additive' score"
                )
            return {}
        if kind == "general":
            return {"w_a": kernel(key, (query_size, value_size), param_dtype)}
        a = size or query_size
        kq, kk, kv = jax.random.split(key, 3)
        return {
            "w_q": kernel(kq, (query_size, a), param_dtype),
            "w_k": kernel(kk, (value_size, a), param_dtype),
            "b": jnp.zeros((a,), param_dtype),
            "v": jax.random.normal(kv, (a,), param_dtype) / jnp.sqrt(jnp.asarray(a, param_dtype)),
        }

    def _params_for(params: Params, dtype) -> Params:
        return jax.tree.map(lambda p: p.astype(dtype), params)

    def prepare(params: Params, values: Array, mask: Array | None = None) -> AttentionMemory:
        values = jnp.asarray(values)
        if values.ndim < 2:
            raise ValueError(
                f"{where}.prepare: `values` must have shape [..., S, E], got {list(values.shape)}"
            )
        if mask is None:
            mask = jnp.ones(values.shape[:-1], bool)
        mask = jnp.asarray(mask)
        if mask.shape != values.shape[:-1] or mask.dtype != jnp.bool_:
            raise ValueError(
                f"{where}.prepare: `mask` must be bool {list(values.shape[:-1])} ([..., S]), got "
                f"{mask.dtype} {list(mask.shape)}"
            )
        p = _params_for(params, values.dtype)
        if kind == "dot":
            keys = values
        elif kind == "general":
            _check_value_size(p["w_a"].shape[1], values)
            keys = values @ p["w_a"].T  # [..., S, Q]: e = q · (k @ w_a.T)
        else:
            _check_value_size(p["w_k"].shape[0], values)
            keys = values @ p["w_k"] + p["b"]
        return AttentionMemory(keys, values, mask)

    def _check_value_size(expected: int, values: Array) -> None:
        if values.shape[-1] != expected:
            raise ValueError(
                f"{where}.prepare: `values` must have shape [..., S, {expected}] (the encoder "
                f"output size the params were made for), got {list(values.shape)}"
            )

    def scores(params: Params, query: Array, memory: AttentionMemory) -> Array:
        query = jnp.asarray(query)
        p = _params_for(params, memory.keys.dtype)
        query = query.astype(memory.keys.dtype)
        if kind == "additive":
            q = query @ p["w_q"]  # [..., A]
            return jnp.tanh(memory.keys + q[..., None, :]) @ p["v"]
        if query.shape[-1] != memory.keys.shape[-1]:
            raise ValueError(
                f"{where}.scores: `query` must have shape [..., {memory.keys.shape[-1]}] for the "
                f"{kind} score, got {list(query.shape)}"
            )
        return jnp.einsum("...q,...sq->...s", query, memory.keys)

    def apply(params: Params, query: Array, memory: AttentionMemory) -> tuple[Array, Array]:
        e = scores(params, query, memory)
        w = masked_softmax(e, memory.mask)
        context = jnp.einsum("...s,...se->...e", w, memory.values)
        return context, w

    return Attention(init, prepare, scores, apply, kind, size)
