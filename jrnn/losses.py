"""Sequence losses with padding masks.

Every loss here works on batch-major sequences ``[..., time, ...]`` where the
leading ``...`` axes are batch axes. Padded steps are described either by
``lengths`` (int ``[...]``: step ``t`` is valid iff ``t < lengths``) or by an
explicit boolean ``mask`` (``[..., time]``), never both.

Three reductions are offered, and they are consistent with each other:

* ``"none"``  -- the per-step loss ``[..., time]``, exactly ``0`` at padded steps;
* ``"sum"``   -- the per-sequence total ``[...]`` (the sum over time of ``"none"``);
* ``"mean"``  -- a scalar: the sum over everything divided by the number of valid
  steps (0 when there are none, never NaN).

For the character-level language model, ``reduction="sum"`` is the seed's
``L = sum_t L(t) = -sum_t log p(y(t) | x(1..t))``, and ``reduction="mean"`` is the
average negative log-likelihood per token in nats (divide by ``ln 2`` for bits per
character).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import optax

__all__ = ["length_mask", "sequence_mse", "sequence_softmax_cross_entropy"]

Reduction = Literal["none", "sum", "mean"]
_REDUCTIONS = ("none", "sum", "mean")


def length_mask(lengths: jax.typing.ArrayLike, num_steps: int) -> jax.Array:
    """Boolean mask of valid steps from sequence lengths.

    Args:
      lengths: int ``[...]``, the number of valid steps of each sequence. Values
        ``<= 0`` give an all-False row; values ``>= num_steps`` an all-True row.
      num_steps: ``T``, the padded length (a static Python int).

    Returns:
      bool ``[..., T]`` with ``mask[..., t] = t < lengths[...]``.
    """
    lengths = jnp.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"lengths must have an integer dtype, got {lengths.dtype}")
    num_steps = int(num_steps)
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    steps = jnp.arange(num_steps, dtype=lengths.dtype)
    return steps < lengths[..., None]


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _step_mask(
    lengths: jax.typing.ArrayLike | None,
    mask: jax.typing.ArrayLike | None,
    step_shape: tuple[int, ...],
) -> jax.Array | None:
    """Validates ``lengths``/``mask`` against ``step_shape = [..., T]``; returns bool or None."""
    if lengths is not None and mask is not None:
        raise ValueError("pass at most one of lengths and mask, not both")
    if lengths is not None:
        lengths = jnp.asarray(lengths)
        if not jnp.issubdtype(lengths.dtype, jnp.integer):
            raise TypeError(f"lengths must have an integer dtype, got {lengths.dtype}")
        if lengths.shape != step_shape[:-1]:
            raise ValueError(
                f"lengths shape must be the batch shape {step_shape[:-1]} "
                f"(the sequence shape {step_shape} without time), got {lengths.shape}"
            )
        return length_mask(lengths, step_shape[-1])
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_:
            raise TypeError(f"mask must have dtype bool, got {mask.dtype}")
        if mask.shape != step_shape:
            raise ValueError(f"mask shape must be {step_shape} ([..., time]), got {mask.shape}")
        return mask
    return None


def _reduce(per_step: jax.Array, step_mask: jax.Array | None, reduction: str) -> jax.Array:
    """Masks and reduces a per-step loss ``[..., T]``."""
    if step_mask is not None:
        per_step = jnp.where(step_mask, per_step, jnp.zeros((), per_step.dtype))
    if reduction == "none":
        return per_step
    if reduction == "sum":
        return jnp.sum(per_step, axis=-1)
    # "mean": per valid step; an empty selection gives 0 rather than 0/0.
    total = jnp.sum(per_step)
    if step_mask is None:
        count = jnp.asarray(max(per_step.size, 1), per_step.dtype)
    else:
        count = jnp.maximum(jnp.sum(step_mask, dtype=per_step.dtype), 1)
    return total / count


def _compute_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """Accumulate half-precision losses in float32."""
    return jnp.float32 if jnp.finfo(dtype).bits < 32 else dtype


def sequence_softmax_cross_entropy(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    lengths: jax.typing.ArrayLike | None = None,
    *,
    mask: jax.typing.ArrayLike | None = None,
    reduction: Reduction = "mean",
) -> jax.Array:
    """Softmax cross-entropy of integer labels over padded sequences.

    Per step, ``L(t) = -log softmax(logits[..., t, :])[labels[..., t]]``, computed
    by :func:`optax.softmax_cross_entropy_with_integer_labels` (log-sum-exp, so
    finite for logits of any magnitude). Padded steps contribute exactly 0 to the
    loss and to its gradient, whatever their labels hold (e.g. ``-1`` or ``-100``
    as "ignore" markers are fine there). Labels at *valid* steps must lie in
    ``[0, K)``; that cannot be checked at trace time.

    Args:
      logits: float ``[..., T, K]`` unnormalised log-probabilities.
      labels: int ``[..., T]`` target classes.
      lengths: optional int ``[...]``; steps ``t >= lengths`` are padding.
      mask: optional bool ``[..., T]``, True at valid steps (instead of lengths).
      reduction: ``"none"`` -> ``[..., T]`` per-step losses (0 at padding);
        ``"sum"`` -> ``[...]`` per-sequence sums over time, the seed's
        ``L = sum_t L(t) = -sum_t log p(y(t) | x(1..t))``; ``"mean"`` -> scalar mean
        per valid token (0 if there is none).

    Returns:
      The reduced loss in the logits' dtype (float32 for half-precision logits).

    Raises:
      TypeError: float labels, non-float logits, non-integer lengths, non-bool mask.
      ValueError: mismatched shapes, both lengths and mask, unknown reduction.
    """
    _check_reduction(reduction)
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise TypeError(f"logits must have a floating dtype, got {logits.dtype}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(
            f"labels must have an integer dtype (class indices), got {labels.dtype}; "
            "for one-hot or soft targets use optax.softmax_cross_entropy"
        )
    if logits.ndim < 2:
        raise ValueError(f"logits must have shape [..., T, K] (rank >= 2), got {logits.shape}")
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"labels shape must equal logits.shape[:-1] = {logits.shape[:-1]}, got {labels.shape}"
        )
    step_mask = _step_mask(lengths, mask, labels.shape)
    logits = logits.astype(_compute_dtype(logits.dtype))
    if step_mask is not None:
        # Padded labels may be anything (ignore markers); make the gather safe.
        labels = jnp.where(step_mask, labels, jnp.zeros((), labels.dtype))
    per_step = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return _reduce(per_step, step_mask, reduction)


def sequence_mse(
    preds: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    lengths: jax.typing.ArrayLike | None = None,
    *,
    mask: jax.typing.ArrayLike | None = None,
    reduction: Reduction = "mean",
) -> jax.Array:
    """Mean squared error over padded sequences.

    Per step, ``L(t) = mean_d (preds[..., t, d] - targets[..., t, d])**2`` (squared
    errors from :func:`optax.squared_error`, averaged over the feature axis).

    Args:
      preds: float ``[..., T, D]``.
      targets: float ``[..., T, D]``, the same shape as ``preds``.
      lengths: optional int ``[...]``; steps ``t >= lengths`` are padding.
      mask: optional bool ``[..., T]``, True at valid steps (instead of lengths).
      reduction: ``"none"`` -> ``[..., T]`` per-step losses (0 at padding);
        ``"sum"`` -> ``[...]`` sums over time of the per-step losses; ``"mean"`` ->
        scalar mean per valid element, i.e. the total squared error divided by
        ``D * (number of valid steps)`` (0 if there is none).

    Returns:
      The reduced loss (float32 for half-precision inputs).

    Raises:
      TypeError: non-float inputs, non-integer lengths, non-bool mask.
      ValueError: mismatched shapes, both lengths and mask, unknown reduction.
    """
    _check_reduction(reduction)
    preds = jnp.asarray(preds)
    targets = jnp.asarray(targets)
    for name, arr in (("preds", preds), ("targets", targets)):
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            raise TypeError(f"{name} must have a floating dtype, got {arr.dtype}")
    if preds.ndim < 2:
        raise ValueError(f"preds must have shape [..., T, D] (rank >= 2), got {preds.shape}")
    if targets.shape != preds.shape:
        raise ValueError(f"targets shape must equal preds shape {preds.shape}, got {targets.shape}")
    step_mask = _step_mask(lengths, mask, preds.shape[:-1])
    wider = max(preds.dtype, targets.dtype, key=lambda d: jnp.finfo(d).bits)
    dtype = _compute_dtype(wider)
    per_step = jnp.mean(optax.squared_error(preds.astype(dtype), targets.astype(dtype)), axis=-1)
    return _reduce(per_step, step_mask, reduction)
