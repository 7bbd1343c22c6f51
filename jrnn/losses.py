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

For the character-level language model, ``reduction="sum"`` is the lecture's sequence loss
``L = sum_t L(t) = -sum_t log p(y(t) | x(1..t))``, and ``reduction="mean"`` is the
average negative log-likelihood per token in nats (divide by ``ln 2`` for bits per
character).

Checks: shapes, dtypes and options are checked at trace time (also under ``jax.jit``) and
raise ``TypeError``/``ValueError`` naming the argument.  Label *values* are checked only when
they are concrete: an eager call with a label outside ``[0, K)`` at a valid step raises
``ValueError``.  Under ``jit`` (traced labels) such a step is treated as masked: it adds 0 to
the loss and its gradient and is not counted by ``"mean"``, so the loss is never NaN.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jrnn.checks import check_int

__all__ = ["length_mask", "sequence_mse", "sequence_softmax_cross_entropy"]

Reduction = Literal["none", "sum", "mean"]
_REDUCTIONS = ("none", "sum", "mean")


def length_mask(lengths: jax.typing.ArrayLike, num_steps: int) -> jax.Array:
    """Boolean mask of valid steps from sequence lengths.

    Args:
      lengths: int ``[...]`` (e.g. ``[batch]``), the number of valid steps of each sequence.
        Values ``<= 0`` give an all-False row; values ``>= num_steps`` an all-True row.
      num_steps: ``T``, the padded length (a static Python int ``>= 0``).

    Returns:
      bool ``[..., T]`` with ``mask[..., t] = t < lengths[...]``.

    Raises:
      TypeError: non-integer ``lengths``.  ValueError: ``num_steps`` not an int ``>= 0``.

    Examples:
      >>> import jax.numpy as jnp
      >>> length_mask(jnp.array([1, 3]), 3).astype(int).tolist()
      [[1, 0, 0], [1, 1, 1]]
    """
    lengths = jnp.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"length_mask: `lengths` must have an integer dtype, got {lengths.dtype}")
    num_steps = check_int("num_steps", num_steps, "length_mask", minimum=0)
    steps = jnp.arange(num_steps, dtype=lengths.dtype)
    return steps < lengths[..., None]


def _check_reduction(reduction: str, where: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{where}: `reduction` must be one of {_REDUCTIONS}, got {reduction!r}")


def _step_mask(
    lengths: jax.typing.ArrayLike | None,
    mask: jax.typing.ArrayLike | None,
    step_shape: tuple[int, ...],
    where: str,
) -> jax.Array | None:
    """Validates ``lengths``/``mask`` against ``step_shape = [..., T]``; returns bool or None."""
    if lengths is not None and mask is not None:
        raise ValueError(f"{where}: pass at most one of `lengths` and `mask`, not both")
    if lengths is not None:
        lengths = jnp.asarray(lengths)
        if not jnp.issubdtype(lengths.dtype, jnp.integer):
            raise TypeError(f"{where}: `lengths` must have an integer dtype, got {lengths.dtype}")
        if lengths.shape != step_shape[:-1]:
            raise ValueError(
                f"{where}: `lengths` shape must be the batch shape {step_shape[:-1]} "
                f"(the sequence shape {step_shape} without time), got {lengths.shape}"
            )
        return length_mask(lengths, step_shape[-1])
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_:
            raise TypeError(f"{where}: `mask` must have dtype bool, got {mask.dtype}")
        if mask.shape != step_shape:
            raise ValueError(
                f"{where}: `mask` shape must be {step_shape} ([..., time]), got {mask.shape}"
            )
        return mask
    return None


def _concrete(x: jax.typing.ArrayLike | None) -> np.ndarray | None:
    """``x`` as NumPy when its value is known now (not a tracer), else ``None``."""
    if x is None or isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


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
    by `optax.softmax_cross_entropy_with_integer_labels` (log-sum-exp with the
    maximum subtracted, so finite for logits of any magnitude). Padded steps contribute
    exactly 0 to the loss and to its gradient, whatever their labels hold (e.g. ``-1`` or
    ``-100`` as "ignore" markers are fine there).

    Labels at *valid* steps must lie in ``[0, K)``: checked eagerly (``ValueError``) when
    the labels, ``lengths`` and ``mask`` are concrete; under ``jax.jit`` a valid step with
    an out-of-range label is treated as masked (0 loss and gradient, not counted by
    ``"mean"``), so the loss never becomes NaN.

    Args:
      logits: float ``[batch, time, K]`` (any leading batch axes ``[..., T, K]``)
        unnormalised log-probabilities.
      labels: int ``[batch, time]`` target classes in ``[0, K)``.
      lengths: optional int ``[batch]``; steps ``t >= lengths`` are padding.
      mask: optional bool ``[batch, time]``, True at valid steps (instead of lengths).
      reduction: ``"none"`` -> ``[batch, time]`` per-step losses (0 at padding);
        ``"sum"`` -> ``[batch]`` per-sequence sums over time, the lecture's sequence loss
        ``L = sum_t L(t) = -sum_t log p(y(t) | x(1..t))``; ``"mean"`` -> scalar mean
        per valid token (0 if there is none).

    Returns:
      The reduced loss in the logits' dtype (float32 for half-precision logits).

    Raises:
      TypeError: float labels, non-float logits, non-integer lengths, non-bool mask.
      ValueError: mismatched shapes, both lengths and mask, unknown reduction, concrete
        labels outside ``[0, K)`` at valid steps.

    Examples:
      >>> import jax.numpy as jnp
      >>> logits = jnp.zeros((2, 3, 4))            # uniform over K=4 classes
      >>> labels = jnp.array([[0, 1, 2], [3, -100, -100]])
      >>> loss = sequence_softmax_cross_entropy(logits, labels, jnp.array([3, 1]))
      >>> round(float(loss), 4) == round(float(jnp.log(4.0)), 4)
      True
      >>> sequence_softmax_cross_entropy(logits, labels, jnp.array([3, 1]),
      ...                                reduction="sum").shape
      (2,)
    """
    where = "sequence_softmax_cross_entropy"
    _check_reduction(reduction, where)
    raw_labels, raw_lengths, raw_mask = labels, lengths, mask
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise TypeError(f"{where}: `logits` must have a floating dtype, got {logits.dtype}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(
            f"{where}: `labels` must have an integer dtype (class indices), got {labels.dtype}; "
            "for one-hot or soft targets use optax.softmax_cross_entropy"
        )
    if logits.ndim < 2:
        raise ValueError(
            f"{where}: `logits` must have shape [..., T, K] (rank >= 2), got {logits.shape}"
        )
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"{where}: `labels` shape must equal logits.shape[:-1] = {logits.shape[:-1]}, "
            f"got {labels.shape}"
        )
    num_classes = logits.shape[-1]
    step_mask = _step_mask(lengths, mask, labels.shape, where)
    _check_label_values(raw_labels, raw_lengths, raw_mask, labels.shape, num_classes, where)
    in_range = (labels >= 0) & (labels < num_classes)
    step_mask = in_range if step_mask is None else step_mask & in_range
    logits = logits.astype(_compute_dtype(logits.dtype))
    # Padded or out-of-range labels may be anything (ignore markers): make the gather safe.
    labels = jnp.where(step_mask, labels, jnp.zeros((), labels.dtype))
    per_step = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return _reduce(per_step, step_mask, reduction)


def _check_label_values(labels, lengths, mask, shape, num_classes: int, where: str) -> None:
    """Eagerly: every label at a valid step lies in ``[0, K)`` (skipped when traced)."""
    values = _concrete(labels)
    if values is None or values.size == 0:
        return
    valid = np.ones(shape, bool)
    if lengths is not None:
        lens = _concrete(lengths)
        if lens is None:
            return
        valid = np.arange(shape[-1]) < lens[..., None]
    elif mask is not None:
        m = _concrete(mask)
        if m is None:
            return
        valid = m.astype(bool)
    bad = valid & ((values < 0) | (values >= num_classes))
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{where}: `labels` must lie in [0, K={num_classes}) at valid steps (K from "
            f"logits.shape[-1]); got {values[index]} at index {index} "
            f"({int(bad.sum())} out-of-range labels in all)"
        )


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
    errors from `optax.squared_error`, averaged over the feature axis).

    Args:
      preds: float ``[batch, time, D]`` (any leading batch axes ``[..., T, D]``).
      targets: float ``[batch, time, D]``, the same shape as ``preds``.
      lengths: optional int ``[batch]``; steps ``t >= lengths`` are padding.
      mask: optional bool ``[batch, time]``, True at valid steps (instead of lengths).
      reduction: ``"none"`` -> ``[batch, time]`` per-step losses (0 at padding);
        ``"sum"`` -> ``[batch]`` sums over time of the per-step losses; ``"mean"`` ->
        scalar mean per valid element, i.e. the total squared error divided by
        ``D * (number of valid steps)`` (0 if there is none).

    Returns:
      The reduced loss (float32 for half-precision inputs).

    Raises:
      TypeError: non-float inputs, non-integer lengths, non-bool mask.
      ValueError: mismatched shapes, both lengths and mask, unknown reduction.

    Examples:
      >>> import jax.numpy as jnp
      >>> preds, targets = jnp.ones((2, 3, 2)), jnp.zeros((2, 3, 2))
      >>> float(sequence_mse(preds, targets, jnp.array([3, 0])))
      1.0
      >>> sequence_mse(preds, targets, jnp.array([3, 0]), reduction="sum").tolist()
      [3.0, 0.0]
    """
    where = "sequence_mse"
    _check_reduction(reduction, where)
    preds = jnp.asarray(preds)
    targets = jnp.asarray(targets)
    for name, arr in (("preds", preds), ("targets", targets)):
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            raise TypeError(f"{where}: `{name}` must have a floating dtype, got {arr.dtype}")
    if preds.ndim < 2:
        raise ValueError(
            f"{where}: `preds` must have shape [..., T, D] (rank >= 2), got {preds.shape}"
        )
    if targets.shape != preds.shape:
        raise ValueError(
            f"{where}: `targets` shape must equal preds shape {preds.shape}, got {targets.shape}"
        )
    step_mask = _step_mask(lengths, mask, preds.shape[:-1], where)
    wider = max(preds.dtype, targets.dtype, key=lambda d: jnp.finfo(d).bits)
    dtype = _compute_dtype(wider)
    per_step = jnp.mean(optax.squared_error(preds.astype(dtype), targets.astype(dtype)), axis=-1)
    return _reduce(per_step, step_mask, reduction)
