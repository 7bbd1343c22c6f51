"""The lecture's teacher forcing networks: recurrence through the model's own previous output.

Trained with teacher forcing (the true ``y(t-1)`` fed back), run free at test time (its own
prediction fed back), optionally with scheduled sampling.  Re-exported by [`jrnn.models`][].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from jrnn import keys
from jrnn.base import Array, Carry, Cell, DType, Params, vary_like
from jrnn.checks import check_int
from jrnn.model_base import (
    ModelAux,
    check_tokens,
    compute_dtype,
    dense_init,
    embed_tokens,
)


class FeedbackModel(NamedTuple):
    """A tagger whose recurrence runs through its own previous output (teacher forcing nets).

    Attributes:
      init: ``init(key) -> params``.
      apply: ``apply(params, inputs, targets=None, *, feedback="teacher", sample_prob=0.0,
        key=None) -> (logits [B, T, num_classes], ModelAux(carry=final carry))``.
        ``feedback="teacher"`` feeds the true
        previous output ``y(t-1) = targets[:, t-1]`` (teacher forcing, training);
        ``"free"`` feeds the model's own previous prediction ``argmax o(t-1)`` (free
        running, test time; ``targets`` not needed).  With ``feedback="teacher"`` and
        ``sample_prob = p > 0`` (and a ``key``), each step feeds the model's own
        prediction with probability ``p`` instead (scheduled sampling).
      step: ``step(params, carry, x_t, y_prev) -> (carry, o_t)`` with ``y_prev`` int ``[B]``.
      initial_carry: ``initial_carry(params, batch_shape) -> carry``.
      num_classes: ``C``.
      start: the class fed as ``y(0)`` before the first step.
      vocab_size, input_size: the inputs (one of them is ``None``).
      hidden_recurrence: whether ``h(t)`` also sees ``h(t-1)``.
      name: a short description.
    """

    init: Callable[[jax.Array], Params]
    apply: Callable[..., tuple[Array, ModelAux]]
    step: Callable[..., tuple[Carry, Array]]
    initial_carry: Callable[..., Carry]
    num_classes: int
    start: int
    vocab_size: int | None
    input_size: int | None
    hidden_recurrence: bool
    name: str


def output_recurrent(
    num_classes: int,
    hidden_size: int,
    *,
    vocab_size: int | None = None,
    input_size: int | None = None,
    embed_size: int | None = None,
    cell: Cell | None = None,
    start: int = 0,
    dtype: DType | None = None,
    param_dtype: DType = jnp.float32,
) -> FeedbackModel:
    """Teacher forcing networks: the recurrence goes through the previous *output*.

    (a) ``cell=None``: the output-to-hidden recurrence network, with no
    hidden-to-hidden connection: the hidden state at ``t`` sees only the input and the
    previous output::

        h(t) = tanh(b + W y(t-1) + U x(t))      (row form: x_t @ w_xh + w_yh[y_{t-1}] + b)
        o(t) = c + V h(t)

    with ``y(t-1)`` one-hot (so ``W y(t-1)`` is a row of ``w_yh [C, H]``).  Trained with
    teacher forcing, the steps decouple: each ``o(t)`` depends on the data only, and
    training parallelises over time.  At test time the true ``y(t-1)`` is unknown and the
    network runs free, feeding back its own prediction.

    (b) ``cell`` given: hidden recurrence plus output feedback, ``h(t) = cell(h(t-1),
    [x(t), onehot(y(t-1))])`` (``hidden_size`` must equal the cell's).

    Args:
      num_classes: ``C``, the output classes (also the feedback alphabet).
      hidden_size: ``H``.
      vocab_size, input_size: token inputs ``[B, T]`` or float inputs ``[B, T, I]``.
      embed_size: embedding width of token inputs (``None``: one-hot).
      cell: ``None`` for (a); a [`jrnn.Cell`][jrnn.base.Cell] for (b).
      start: the class fed as ``y(0)`` (e.g. a BOS id), in ``[0, C)``.
      dtype: compute dtype (``None``: ``param_dtype``).
      param_dtype: storage dtype.

    Returns:
      A `FeedbackModel`.  Params: ``{"embed"?, "w_xh" [I, H], "w_yh" [C, H],
      "b" [H], "w_ho" [H, C], "b_o" [C]}`` for (a); ``{"embed"?, "cell", "w_ho", "b_o"}``
      for (b).  Causal: padding after a sequence's end does not change its valid outputs.
      ``apply`` returns ``(logits, ModelAux(carry=...))``: the cell's final carry for (b),
      ``None`` for (a).

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> net = jrnn.output_recurrent(num_classes=4, hidden_size=8, vocab_size=6)
      >>> params = net.init(jax.random.key(0))
      >>> xs = jnp.zeros((2, 5), jnp.int32)                    # [batch, time] tokens
      >>> logits, _ = net.apply(params, xs, jnp.ones((2, 5), jnp.int32))   # teacher forcing
      >>> free, _ = net.apply(params, xs, feedback="free")                  # free running
      >>> logits.shape, free.shape
      ((2, 5, 4), (2, 5, 4))
    """
    where = "output_recurrent"
    num_classes = check_int("num_classes", num_classes, where)
    hidden_size = check_int("hidden_size", hidden_size, where)
    if (input_size is None) == (vocab_size is None):
        raise ValueError(f"{where}: give exactly one of `input_size` and `vocab_size`")
    if not 0 <= start < num_classes:
        raise ValueError(
            f"{where}: `start` must lie in [0, num_classes={num_classes}), got {start}"
        )
    if vocab_size is not None:
        vocab_size = check_int("vocab_size", vocab_size, where)
        if embed_size is not None:
            embed_size = check_int("embed_size", embed_size, where)
        x_size = embed_size or vocab_size
    else:
        input_size = check_int("input_size", input_size, where)
        if embed_size is not None:
            raise ValueError(f"{where}: `embed_size` needs token inputs (`vocab_size`)")
        x_size = input_size
    compute = compute_dtype(dtype, param_dtype)
    if cell is not None and cell.output_size != hidden_size:
        raise ValueError(
            f"{where}: `hidden_size` ({hidden_size}) must equal the cell's output size "
            f"({cell.output_size})"
        )

    def init(key: jax.Array) -> Params:
        """Kernels lecun_normal, biases zero, ``embed ~ N(0, 1)``."""
        k_e, k_x, k_y, k_o = jax.random.split(key, 4)
        params: dict[str, Any] = {}
        if vocab_size is not None and embed_size is not None:
            params["embed"] = jax.random.normal(k_e, (vocab_size, embed_size), param_dtype)
        if cell is None:
            params["w_xh"] = dense_init(k_x, x_size, hidden_size, param_dtype)
            params["w_yh"] = dense_init(k_y, num_classes, hidden_size, param_dtype)
            params["b"] = jnp.zeros((hidden_size,), param_dtype)
        else:
            params["cell"] = cell.init(k_x, x_size + num_classes)
        params["w_ho"] = dense_init(k_o, hidden_size, num_classes, param_dtype)
        params["b_o"] = jnp.zeros((num_classes,), param_dtype)
        return params

    def initial_carry(params: Params, batch_shape: tuple[int, ...] = ()) -> Carry:
        if cell is None:
            return None
        return cell.initial_carry(params["cell"], tuple(batch_shape))

    def _inputs(params: Params, xs: Array) -> Array:
        xs = jnp.asarray(xs)
        if vocab_size is None:
            if xs.ndim != 3 or xs.shape[-1] != input_size:
                raise ValueError(
                    f"{where}.apply: `inputs` must have shape [B, T, {input_size}], got "
                    f"{list(xs.shape)}"
                )
            return xs.astype(compute)
        xs = check_tokens("inputs", xs, vocab_size, f"{where}.apply", rank=2)
        return embed_tokens(params.get("embed"), xs, vocab_size, compute)

    def step(params: Params, carry: Carry, x_t: Array, y_prev: Array) -> tuple[Carry, Array]:
        """``x_t [B, x_size]`` (embedded), ``y_prev`` int ``[B]`` -> ``(carry, o_t [B, C])``."""
        if cell is None:
            h_t = jnp.tanh(
                x_t @ params["w_xh"]
                + embed_tokens(params["w_yh"], y_prev, num_classes, x_t.dtype)
                + params["b"]
            )
        else:
            y_in = jax.nn.one_hot(y_prev, num_classes, dtype=x_t.dtype)
            carry, h_t = cell.step(params["cell"], carry, jnp.concatenate([x_t, y_in], -1))
            h_t = h_t.astype(x_t.dtype)
        return carry, h_t @ params["w_ho"] + params["b_o"]

    def apply(
        params: Params,
        inputs: Array,
        targets: Array | None = None,
        *,
        feedback: Literal["teacher", "free"] = "teacher",
        sample_prob: float | Array = 0.0,
        key: jax.Array | None = None,
    ) -> tuple[Array, ModelAux]:
        """``inputs [B, T]`` tokens or ``[B, T, I]`` -> ``(logits [B, T, C], ModelAux)``."""
        if feedback not in ("teacher", "free"):
            raise ValueError(
                f"{where}.apply: `feedback` must be 'teacher' or 'free', got {feedback!r}"
            )
        inputs = _inputs(params, inputs)
        batch, num_steps = inputs.shape[0], inputs.shape[1]
        scheduled = not (isinstance(sample_prob, (int, float)) and sample_prob == 0)
        if feedback == "teacher":
            if targets is None:
                raise ValueError(f"{where}.apply: teacher forcing needs `targets`")
            targets = check_tokens("targets", targets, num_classes, f"{where}.apply", rank=2)
            if targets.shape != (batch, num_steps):
                raise ValueError(
                    f"{where}.apply: `targets` must have shape [{batch}, {num_steps}], got "
                    f"{list(targets.shape)}"
                )
            if scheduled and key is None:
                raise ValueError(f"{where}.apply: scheduled sampling needs a `key`")
        first = jnp.full((batch, 1), start, jnp.int32)
        true_prev = (
            jnp.concatenate([first, targets[:, :-1]], axis=1)
            if feedback == "teacher"
            else jnp.zeros((batch, num_steps), jnp.int32)
        )
        if feedback == "free":
            own = jnp.ones((batch, num_steps), bool)
        elif scheduled:
            own = keys.bernoulli(key, sample_prob, (batch, num_steps))
        else:
            own = None
        p = jax.tree.map(lambda a: a.astype(inputs.dtype), params)

        if own is None and cell is None:
            # pure teacher forcing of network (a): every step is independent (parallel)
            y_in = embed_tokens(p["w_yh"], true_prev, num_classes, inputs.dtype)
            h = jnp.tanh(inputs @ p["w_xh"] + y_in + p["b"])
            return h @ p["w_ho"] + p["b_o"], ModelAux()

        def body(state, inp):
            carry, pred = state
            x_t, y_true, own_t = inp
            y_prev = y_true if own_t is None else jnp.where(own_t, pred, y_true)
            carry, o_t = step(p, carry, x_t, y_prev)
            return (carry, jnp.argmax(o_t, axis=-1).astype(jnp.int32)), o_t

        tm = lambda a: None if a is None else jnp.moveaxis(a, 1, 0)
        init = (initial_carry(p, (batch,)), jnp.full((batch,), start, jnp.int32))
        init = vary_like(init, inputs, true_prev, p)  # inside shard_map: typed like the body's
        (carry, _), logits = jax.lax.scan(body, init, (tm(inputs), tm(true_prev), tm(own)))
        return jnp.moveaxis(logits, 0, 1), ModelAux(carry=carry)

    kind = "a: output recurrence" if cell is None else f"b: {cell.name} + output feedback"
    name = f"output_recurrent({kind}, hidden={hidden_size}, classes={num_classes})"
    return FeedbackModel(
        init,
        apply,
        step,
        initial_carry,
        num_classes,
        start,
        vocab_size,
        input_size,
        cell is not None,
        name,
    )
