"""Attention over encoder states: Bahdanau (additive) and Luong (dot, general) scores.

The lecture's last slides ("Attention Models", "Encoder-Decoder Networks with Attention"): the
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
``k @ w_a.T`` for the general one) is computed once by `Attention.prepare`, before the
decoder's scan, so each decoder step does one ``[S, A]`` product at most.

Like a [`jrnn.Cell`][jrnn.base.Cell], [`attention`][jrnn.attention.attention] returns a
``NamedTuple`` of pure functions over an explicit parameter dict.

Padding is exact: `Attention.prepare` zeroes the encoder states at padded steps before
anything reads them, and [`masked_softmax`][jrnn.attention.masked_softmax] replaces their scores
before the exponential (the "double ``where``"), so padded steps get weight exactly 0 and contribute
exactly 0 to the context and to every gradient, even when the padded states hold NaN or
``inf``.  Shapes are checked at trace time and raise ``ValueError`` naming the argument.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn.base import Array, Params, exportable
from jrnn.checks import check_int

__all__ = ["SCORES", "Attention", "AttentionMemory", "attention", "masked_softmax"]


SCORES = ("additive", "dot", "general")
_ALIASES = {"bahdanau": "additive", "concat": "additive", "luong": "general"}


@exportable
class AttentionMemory(NamedTuple):
    """What a decoder attends over, prepared once per source batch.

    Attributes:
      keys: ``[..., S, K]``: the encoder states as the score reads them (projected for the
        additive and general scores, the states themselves for the dot score).
      values: ``[..., S, E]``: the encoder states averaged into the context, zero at padded
        steps.
      mask: bool ``[..., S]``: ``True`` at valid (non-padded) source steps.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> att = attention("dot")
      >>> memory = att.prepare({}, jnp.ones((2, 3, 4)), jnp.array([[1, 1, 0], [1, 0, 0]], bool))
      >>> memory.keys.shape, memory.values.shape, memory.mask.shape
      ((2, 3, 4), (2, 3, 4), (2, 3))
    """

    keys: Array
    values: Array
    mask: Array


class Attention(NamedTuple):
    """An attention score as pure functions.

    Attributes:
      init: ``init(key, query_size, value_size) -> params`` (``{}`` for the dot score).
      prepare: ``prepare(params, values [..., S, E], mask [..., S]) -> AttentionMemory``.
      scores: ``scores(params, query [..., Q], memory) -> e [..., S]`` (unmasked; at padded
        steps they are the scores of the zeroed states, never read by ``apply``).
      apply: ``apply(params, query [..., Q], memory) -> (context [..., E], weights [..., S])``;
        the weights are zero at padded steps and sum to 1 over the valid ones (all zero when
        a row has no valid step).
      kind: ``"additive"``, ``"dot"`` or ``"general"``.
      size: ``A``, the width of the additive score's hidden layer (``None`` otherwise).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> att = attention("additive", size=5)
      >>> params = att.init(jax.random.key(0), 3, 4)  # query size Q=3, encoder size E=4
      >>> {k: v.shape for k, v in sorted(params.items())}
      {'b': (5,), 'v': (5,), 'w_k': (4, 5), 'w_q': (3, 5)}
      >>> memory = att.prepare(params, jnp.ones((2, 6, 4)))          # values [B=2, S=6, E=4]
      >>> context, weights = att.apply(params, jnp.ones((2, 3)), memory)  # query [B, Q]
      >>> context.shape, weights.shape
      ((2, 4), (2, 6))
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
      scores: float ``[..., S]`` (e.g. ``[batch, S]``).
      mask: bool ``[..., S]`` (broadcastable to ``scores``), ``True`` where a step may be
        attended, or ``None`` for all steps.

    Returns:
      ``[..., S]`` weights: exactly 0 where ``mask`` is False (whatever the scores hold, NaN
      and ``inf`` included), summing to 1 over the valid steps, and all 0 for a row with no
      valid step (never NaN, also in the gradient).

    Raises:
      TypeError: non-float ``scores`` or a non-bool ``mask``.
      ValueError: ``scores`` of rank 0, or a ``mask`` that does not broadcast to ``scores``.

    Examples:
      >>> import jax.numpy as jnp
      >>> w = masked_softmax(jnp.array([[0.0, 0.0, jnp.nan]]), jnp.array([[True, True, False]]))
      >>> w.tolist()
      [[0.5, 0.5, 0.0]]
    """
    where = "masked_softmax"
    scores = jnp.asarray(scores)
    if not jnp.issubdtype(scores.dtype, jnp.floating):
        raise TypeError(f"{where}: `scores` must be floating point, got dtype {scores.dtype}")
    if scores.ndim < 1:
        raise ValueError(f"{where}: `scores` must have shape [..., S], got a scalar")
    if mask is None:
        return jax.nn.softmax(scores, axis=-1)
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise TypeError(f"{where}: `mask` must be bool [..., S], got dtype {mask.dtype}")
    try:
        mask = jnp.broadcast_to(mask, scores.shape)
    except ValueError:
        raise ValueError(
            f"{where}: `mask` must broadcast to the scores' shape {list(scores.shape)} "
            f"([..., S]), got {list(mask.shape)}"
        ) from None
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
      An [`Attention`][jrnn.attention.Attention].  Parameters: additive ``{"w_q": [Q, A], "w_k":
      [E, A], "b": [A], "v": [A]}``; general ``{"w_a": [Q, E]}``; dot ``{}``.  Initialisation:
      ``lecun_normal`` kernels, zero bias, ``v ~ N(0, 1/A)``.

    Raises:
      ValueError: an unknown ``kind``; a bad ``size``; at ``init``, the dot score with
        ``query_size != value_size``; in ``prepare`` / ``scores`` / ``apply``, shapes of
        ``values [..., S, E]``, ``mask [..., S]`` or ``query [..., Q]`` that do not fit the
        params or each other, or params of another score.
      TypeError: non-float ``values`` or ``query``; a ``memory`` that is not an
        [`AttentionMemory`][jrnn.attention.AttentionMemory].

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> att = attention("general")
      >>> params = att.init(jax.random.key(0), 3, 4)   # w_a [Q=3, E=4]
      >>> values = jnp.ones((2, 5, 4))                  # encoder states [batch, S, E]
      >>> mask = jnp.arange(5) < jnp.array([[5], [2]])  # lengths 5 and 2
      >>> context, weights = att.apply(params, jnp.ones((2, 3)), att.prepare(params, values, mask))
      >>> context.shape, weights.shape
      ((2, 4), (2, 5))
      >>> weights[1].tolist()  # equal scores: uniform over the 2 valid steps
      [0.5, 0.5, 0.0, 0.0, 0.0]
    """
    where = "attention"
    kind = _ALIASES.get(kind, kind)
    if kind not in SCORES:
        raise ValueError(
            f"{where}: unknown score `kind`={kind!r}; expected one of {SCORES} "
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
        if not jnp.issubdtype(values.dtype, jnp.floating):
            raise TypeError(
                f"{where}.prepare: `values` must be floating point, got dtype {values.dtype}"
            )
        if mask is None:
            mask = jnp.ones(values.shape[:-1], bool)
        mask = jnp.asarray(mask)
        if mask.shape != values.shape[:-1] or mask.dtype != jnp.bool_:
            raise ValueError(
                f"{where}.prepare: `mask` must be bool {list(values.shape[:-1])} ([..., S]), got "
                f"{mask.dtype} {list(mask.shape)}"
            )
        _check_params(params, f"{where}.prepare")
        # the first ``where`` of two: padded states (NaN, inf, anything) become exact zeros
        # before the projection reads them, so no NaN reaches a score, context or gradient
        values = jnp.where(mask[..., None], values, jnp.zeros((), values.dtype))
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

    def _check_params(params: Params, at: str) -> None:
        need = {"dot": (), "general": ("w_a",), "additive": ("w_q", "w_k", "b", "v")}[kind]
        if not hasattr(params, "keys") or any(k not in params for k in need):
            got = sorted(params) if hasattr(params, "keys") else type(params).__name__
            raise ValueError(
                f"{at}: `params` must be the {kind} score's params with keys {list(need)} "
                f"(from its init), got {got}"
            )

    def scores(params: Params, query: Array, memory: AttentionMemory) -> Array:
        at = f"{where}.scores"
        if not isinstance(memory, AttentionMemory):
            raise TypeError(
                f"{at}: `memory` must be the AttentionMemory from prepare(params, values, mask), "
                f"got {type(memory).__name__}"
            )
        _check_params(params, at)
        query = jnp.asarray(query)
        if not jnp.issubdtype(query.dtype, jnp.floating):
            raise TypeError(f"{at}: `query` must be floating point, got dtype {query.dtype}")
        if query.ndim < 1:
            raise ValueError(f"{at}: `query` must have shape [..., Q], got a scalar")
        batch = memory.keys.shape[:-2]
        if query.shape[:-1] != batch:
            raise ValueError(
                f"{at}: `query` must have shape [..., Q] with the memory's batch shape "
                f"{list(batch)} (memory keys {list(memory.keys.shape)} = [..., S, K]), got "
                f"{list(query.shape)}"
            )
        p = _params_for(params, memory.keys.dtype)
        query = query.astype(memory.keys.dtype)
        if kind == "additive":
            if query.shape[-1] != p["w_q"].shape[0]:
                raise ValueError(
                    f"{at}: `query` must have shape [..., {p['w_q'].shape[0]}] (the query size "
                    f"the params were made for, params['w_q'] {list(p['w_q'].shape)}), got "
                    f"{list(query.shape)}"
                )
            q = query @ p["w_q"]  # [..., A]
            return jnp.tanh(memory.keys + q[..., None, :]) @ p["v"]
        if query.shape[-1] != memory.keys.shape[-1]:
            raise ValueError(
                f"{at}: `query` must have shape [..., {memory.keys.shape[-1]}] for the "
                f"{kind} score, got {list(query.shape)}"
            )
        return jnp.einsum("...q,...sq->...s", query, memory.keys)

    def apply(params: Params, query: Array, memory: AttentionMemory) -> tuple[Array, Array]:
        e = scores(params, query, memory)
        w = masked_softmax(e, memory.mask)
        context = jnp.einsum("...s,...se->...e", w, memory.values)
        return context, w

    return Attention(init, prepare, scores, apply, kind, size)
