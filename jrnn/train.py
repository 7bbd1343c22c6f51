"""Training: a train state, one jitted buffer-donating train step, evaluation, truncated BPTT.

* [`TrainState`][jrnn.train.TrainState] ``(step, params, opt_state, key)`` is the whole state of a
  run (with the recurrent carry, for truncated BPTT over streams, kept beside it).
* [`make_train_step`][jrnn.train.make_train_step] builds one jitted step: loss and gradients,
  global-norm gradient clipping (on by default: the lecture's remedy for exploding gradients), the
  optimizer update, and a finiteness check; the state is donated so parameters are updated in place.
* [`make_eval_step`][jrnn.train.make_eval_step] / [`evaluate`][jrnn.train.evaluate] compute exact
  means of per-token metrics.
* Truncated BPTT carries the recurrent state across consecutive windows of a long stream
  and cuts the gradient between them with ``jax.lax.stop_gradient``: either one update per
  window ([`make_train_step`][jrnn.train.make_train_step] with ``has_carry=True``) or the summed
  gradient of a whole sequence cut into windows
  ([`tbptt_value_and_grad`][jrnn.train.tbptt_value_and_grad]).  With one window covering the whole
  sequence the gradient is exactly full BPTT's.

Everything is a pure function of the explicit PRNG key in the state: a run is fully
determined by that key.

Arguments are checked where it is cheap, at build or trace time (never on traced values):
the optimizer's type, the PRNG key, the state's type and the match between
``state.opt_state`` and ``optimizer.init(state.params)``; mistakes raise ``TypeError`` /
``ValueError`` naming the argument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jrnn import keys
from jrnn.base import Array, Carry, Params, exportable, vary_like
from jrnn.checks import check_bool, check_int
from jrnn.sharding import DATA_AXIS, check_batch_divides, data_size

__all__ = [
    "TrainState",
    "evaluate",
    "init_train_state",
    "make_eval_step",
    "make_train_step",
    "tbptt_value_and_grad",
]

Metrics = dict[str, Array]

# optax >= 0.2.5 has optax.tree.norm; optax.global_norm (older) is deprecated there.
_global_norm = optax.tree.norm if hasattr(optax, "tree") else optax.global_norm


@exportable
class TrainState(NamedTuple):
    """Everything a training run carries from one step to the next.

    Attributes:
      step: int32 scalar, the number of updates done so far.
      params: the model parameters.
      opt_state: the optimizer's state.
      key: the PRNG key (``jax.random.key``) the next step splits for its randomness.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> state = init_train_state({"w": jnp.zeros(3)}, optax.sgd(0.1), jax.random.key(0))
      >>> int(state.step), state.params["w"].shape
      (0, (3,))
    """

    step: Array
    params: Params
    opt_state: optax.OptState
    key: Array


def init_train_state(
    params: Params, optimizer: optax.GradientTransformation, key: jax.Array
) -> TrainState:
    """The state before the first step: ``step = 0`` and ``optimizer.init(params)``.

    Args:
      params: the model parameters (any pytree of float arrays, e.g. ``{"w": [I, H]}``).
      optimizer: an ``optax.GradientTransformation``.
      key: a PRNG key (``jax.random.key(0)``, or a raw ``uint32[2]`` key).

    Returns:
      A [`TrainState`][jrnn.train.TrainState].

    Raises:
      TypeError: ``optimizer`` is not a GradientTransformation or ``key`` not a PRNG key.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> state = init_train_state({"w": jnp.ones((2, 3))}, optax.adam(1e-3), jax.random.key(0))
      >>> int(state.step), jax.tree.structure(state.opt_state) == jax.tree.structure(
      ...     optax.adam(1e-3).init({"w": jnp.ones((2, 3))}))
      (0, True)
    """
    where = "init_train_state"
    _check_optimizer(optimizer, where)
    _check_key(key, where)
    return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params), key)


def _check_optimizer(optimizer: Any, where: str) -> None:
    if not (
        callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))
    ):
        raise TypeError(
            f"{where}: `optimizer` must be an optax.GradientTransformation (with init and "
            f"update), e.g. optax.adam(1e-3), got {type(optimizer).__name__}"
        )


def _check_key(key: Any, where: str) -> None:
    ok = isinstance(key, jax.Array) and (
        jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        or (key.dtype == jnp.uint32 and key.shape == (2,))
    )
    if not ok:
        got = f"{type(key).__name__} {getattr(key, 'dtype', '')} {list(np.shape(key))}"
        raise TypeError(
            f"{where}: `key` must be a PRNG key (jax.random.key(0) or a raw uint32[2] key), "
            f"got {got}"
        )


def _check_state(state: Any, optimizer: optax.GradientTransformation, where: str) -> None:
    """At trace time: ``state`` is a TrainState whose opt_state fits ``optimizer``."""
    if not isinstance(state, TrainState):
        raise TypeError(
            f"{where}: `state` must be a jrnn.train.TrainState (from init_train_state), got "
            f"{type(state).__name__}"
        )
    with jax.numpy_dtype_promotion("standard"):  # as for the update (see make_train_step)
        want = jax.tree.structure(jax.eval_shape(optimizer.init, state.params))
    got = jax.tree.structure(state.opt_state)
    if want != got:
        raise ValueError(
            f"{where}: `state.opt_state` does not match optimizer.init(state.params): "
            f"expected the structure {want}, got {got}; build the state with "
            f"init_train_state(params, optimizer, key) for this optimizer and these params"
        )


def _tree_all_finite(tree: Any) -> Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def make_train_step(
    loss_fn: Callable[..., tuple[Array, Any]],
    optimizer: optax.GradientTransformation,
    *,
    clip_norm: float | None = 1.0,
    has_carry: bool = False,
    skip_nonfinite: bool = False,
    donate: bool = True,
    mesh: Mesh | None = None,
    micro_batches: int = 1,
    loss_weight: Callable[[Any], Array] | None = None,
    example_keys: bool = False,
) -> Callable[..., Any]:
    """Builds the jitted training step.

    The step splits ``state.key`` (one half is the next state's key, the other goes to
    ``loss_fn`` for dropout), takes gradients, clips them to global norm ``clip_norm``
    (``optax.clip_by_global_norm``; ``None`` or ``0`` switches clipping off), applies
    ``optimizer`` and increments ``step``.

    Args:
      loss_fn: without a carry, ``loss_fn(params, batch, key) -> (loss, metrics)``; with
        ``has_carry=True``, ``loss_fn(params, carry, batch, key) -> (loss, (carry, metrics))``
        where ``carry`` is the recurrent state at the start of the window and the returned
        one its state at the end.  ``loss`` is a scalar, ``metrics`` a dict of scalars.
      optimizer: any ``optax.GradientTransformation`` (the state's ``opt_state`` must come
        from its ``init``).
      clip_norm: maximum global gradient norm, or ``None``/``0`` for no clipping.
      has_carry: truncated BPTT over streams: the step takes and returns the carry, with
        the gradient cut at the window boundary (``stop_gradient``).
      skip_nonfinite: when the loss, the gradient norm or the updated parameters are not
        finite, keep the old ``params`` and ``opt_state`` (the step counter and key still
        advance).  Without it the non-finite state is returned and the caller decides.
      donate: donate the state's buffers to the step (update in place).
      mesh: data parallelism over a ``jax.sharding.Mesh`` with a ``"data"`` axis
        ([`jrnn.sharding.data_mesh`][]; other axes must have size 1).  Every leaf of
        ``batch`` (and of ``carry``) is split along its leading (batch) axis over the
        devices, ``state`` is replicated; each device runs ``loss_fn`` on its shard (inside
        ``jax.shard_map``), the shards' weighted gradients are summed across devices once per
        step (one all-reduce, after the backward pass), and clipping and the update see the
        gradient of the whole batch.  Without ``example_keys``, the key a shard's
        ``loss_fn`` gets is ``state``'s step key folded with the shard's index, so dropout
        differs between shards (and with the device count).  Inputs on other devices are
        moved to the mesh.  ``None``: one device, no ``shard_map``.
      micro_batches: gradient accumulation: each device's batch is cut along its leading
        axis into this many micro-batches, run one after the other (``lax.scan``, so
        only one micro-batch's activations are alive), and their weighted gradients summed:
        a global batch larger than memory still trains.  With ``micro_batches > 1`` and
        without ``example_keys``, each micro-batch's key is split from the step key.
      loss_weight: ``loss_weight(batch) -> scalar``: the weight of a shard's or a
        micro-batch's loss (and metrics) when they are combined, e.g. the number of valid
        tokens for a masked token mean, so that the combined loss and gradient are exactly
        those of ``loss_fn`` on the whole batch.  ``None``: equal weights, exact for a loss
        that is a mean over the examples (of equal weight) of the batch.
      example_keys: randomness that does not depend on the layout: ``loss_fn``'s ``key``
        is one key per example of its batch (a key array ``[batch]``), example ``i`` of
        the global batch keyed ``fold_in(step_key, i)`` ([`jrnn.keys.example_keys`][]),
        whichever device, process or micro-batch it lands on.  jrnn's models, stacks and
        regularised cells take such keys as they take one key, drawing each example's
        dropout, zoneout and scheduled-sampling masks from its own key; so one device,
        any mesh and any ``micro_batches`` give the same masks, and the same losses up to
        float rounding.  A ``loss_fn`` that draws with ``jax.random`` itself must use
        [`jrnn.keys`][jrnn.keys] (or ``jax.vmap``) for such keys; the default
        (``False``) gives it one key, as described above.

    With ``mesh`` or ``micro_batches``, ``loss``, ``metrics`` and the gradient are the
    ``loss_weight``-weighted means over the pieces; the batch size must be divisible by
    (devices x micro-batches) (checked when the step is traced: ``ValueError`` naming
    ``batch``).  Without them the step is exactly the plain one.

    Returns:
      ``step(state, batch) -> (state, metrics)`` or, with ``has_carry``,
      ``step(state, carry, batch) -> (state, carry, metrics)``.  ``metrics`` holds the
      ``loss_fn``'s metrics plus ``loss``, ``grad_norm`` (the global norm before clipping),
      ``grad_norm_clipped`` (after clipping: the norm the optimizer sees) and ``finite``
      (bool: loss, gradient norm and new parameters are all finite).

    Raises:
      TypeError: ``loss_fn`` not callable, ``optimizer`` not a GradientTransformation,
        ``clip_norm`` not a number; at the first call, ``state`` not a
        [`TrainState`][jrnn.train.TrainState].
      ValueError: a negative ``clip_norm``; at the first call, ``state.opt_state`` made
        by another optimizer or for other params.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> def loss_fn(params, batch, key):  # least squares: batch = (x [B, I], y [B])
      ...     x, y = batch
      ...     loss = jnp.mean((x @ params["w"] - y) ** 2)
      ...     return loss, {}
      >>> opt = optax.sgd(0.1)
      >>> state = init_train_state({"w": jnp.zeros(2)}, opt, jax.random.key(0))
      >>> step = make_train_step(loss_fn, opt)
      >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]]); y = jnp.array([1.0, -1.0])
      >>> for _ in range(100):
      ...     state, metrics = step(state, (x, y))
      >>> int(state.step), [round(float(w), 2) for w in state.params["w"]]
      (100, [1.0, -1.0])
      >>> bool(metrics["finite"])
      True
    """
    where = "make_train_step"
    if not callable(loss_fn):
        raise TypeError(f"{where}: `loss_fn` must be callable, got {type(loss_fn).__name__}")
    _check_optimizer(optimizer, where)
    if clip_norm is not None and (
        isinstance(clip_norm, bool) or not isinstance(clip_norm, int | float | np.number)
    ):
        raise TypeError(
            f"{where}: `clip_norm` must be a Python number or None, got {type(clip_norm).__name__}"
        )
    if clip_norm is not None and not clip_norm >= 0:
        raise ValueError(f"{where}: `clip_norm` must be >= 0 or None, got {clip_norm}")
    clipper = optax.clip_by_global_norm(clip_norm) if clip_norm else None

    def update(state: TrainState, grads: Params, loss: Array, metrics: Metrics):
        grad_norm = _global_norm(grads)
        if clipper is not None:
            grads, _ = clipper.update(grads, clipper.init(state.params))
            clipped_norm = _global_norm(grads)
        else:
            clipped_norm = grad_norm
        # Third-party optimizers are not all written for strict dtype promotion (optax's
        # Adam raises a Python float to an int32 count): run them under standard rules.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & _tree_all_finite(params)
        if skip_nonfinite:
            keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
            params = keep(params, state.params)
            opt_state = keep(opt_state, state.opt_state)
        metrics = dict(
            metrics, loss=loss, grad_norm=grad_norm, grad_norm_clipped=clipped_norm, finite=finite
        )
        return params, opt_state, metrics

    micro_batches = check_int("micro_batches", micro_batches, where)
    if loss_weight is not None and not callable(loss_weight):
        raise TypeError(
            f"{where}: `loss_weight` must be callable or None, got {type(loss_weight).__name__}"
        )
    if mesh is not None:
        data_size(mesh)  # a Mesh with a "data" axis
        others = {a: n for a, n in mesh.shape.items() if a != DATA_AXIS and n != 1}
        if others:
            raise ValueError(
                f"{where}: `mesh` may only have the {DATA_AXIS!r} axis (data parallelism), "
                f"got the further axes {others}"
            )
    example_keys = check_bool("example_keys", example_keys, where)
    grad_fn = _grad_fn(loss_fn, has_carry, mesh, micro_batches, loss_weight, example_keys)

    if has_carry:

        def step(state: TrainState, carry: Carry, batch: Any):
            _check_state(state, optimizer, "train step")
            key, sub = jax.random.split(state.key)
            carry = jax.lax.stop_gradient(carry)
            loss, carry, metrics, grads = grad_fn(state.params, carry, batch, sub)
            params, opt_state, metrics = update(state, grads, loss, metrics)
            new_state = TrainState(state.step + 1, params, opt_state, key)
            return new_state, jax.lax.stop_gradient(carry), metrics

        jitted = jax.jit(step, donate_argnums=(0, 1) if donate else ())
    else:

        def step(state: TrainState, batch: Any):
            _check_state(state, optimizer, "train step")
            key, sub = jax.random.split(state.key)
            loss, _, metrics, grads = grad_fn(state.params, None, batch, sub)
            params, opt_state, metrics = update(state, grads, loss, metrics)
            return TrainState(state.step + 1, params, opt_state, key), metrics

        jitted = jax.jit(step, donate_argnums=(0,) if donate else ())
    if mesh is None:
        return jitted
    return _placed(jitted, mesh, has_carry)


def _placed(jitted: Callable[..., Any], mesh: Mesh, has_carry: bool) -> Callable[..., Any]:
    """``jitted`` with its arguments placed on ``mesh`` first (a no-op where they are)."""
    rep = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec(DATA_AXIS))

    def put(tree, sharding):
        from jrnn.sharding import put_global

        return jax.tree.map(
            lambda x: x if getattr(x, "sharding", None) == sharding else put_global(x, sharding),
            tree,
        )

    if has_carry:

        def step(state, carry, batch):
            return jitted(put(state, rep), put(carry, split), put(batch, split))

    else:

        def step(state, batch):
            return jitted(put(state, rep), put(batch, split))

    return step


def _grad_fn(
    loss_fn: Callable[..., Any],
    has_carry: bool,
    mesh: Mesh | None,
    micro_batches: int,
    loss_weight: Callable[[Any], Array] | None,
    example_keys: bool,
) -> Callable[..., Any]:
    """``grad_fn(params, carry, batch, key) -> (loss, carry, metrics, grads)``: plain
    ``value_and_grad`` or the weighted sum over micro-batches and devices.  With
    ``example_keys``, ``key`` becomes one key per example of the global batch first, and
    the keys are split like the batch."""
    inner = _grad_fn_of_pieces(loss_fn, has_carry, mesh, micro_batches, loss_weight, example_keys)
    if not example_keys:
        return inner

    def grad_fn(params, carry, batch, key):
        return inner(params, carry, batch, keys.example_keys(key, _batch_size(batch)))

    return grad_fn


def _batch_size(batch: Any) -> int:
    """The leading (batch) axis of ``batch``'s leaves, which must agree."""
    sizes = {jnp.shape(x)[0] for x in jax.tree.leaves(batch) if jnp.ndim(x)}
    if len(sizes) != 1:
        raise ValueError(
            f"train step: with `example_keys`, the leaves of `batch` must share one leading "
            f"(batch) axis, got leading sizes {sorted(sizes)}"
        )
    return sizes.pop()


def _grad_fn_of_pieces(
    loss_fn: Callable[..., Any],
    has_carry: bool,
    mesh: Mesh | None,
    micro_batches: int,
    loss_weight: Callable[[Any], Array] | None,
    example_keys: bool,
) -> Callable[..., Any]:
    """``_grad_fn`` given the step's key(s): one key, or one per example (split like the
    batch over devices and micro-batches)."""

    def one(params, carry, batch, key):
        if has_carry:
            (loss, (carry, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, carry, batch, key
            )
        else:
            (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, key)
        return loss, carry, metrics, grads

    if mesh is None and micro_batches == 1:
        return one

    def weighted(params, carry, batch, key):
        """The weighted sums ``(w*loss, carry, w*metrics, w*grads, w)`` of one piece."""
        loss, carry, metrics, grads = one(params, carry, batch, key)
        w = jnp.asarray(1.0 if loss_weight is None else loss_weight(batch), jnp.float32)
        # a piece of weight 0 (e.g. no valid token) adds exact zeros, even where its loss
        # is 0/0
        scale = lambda x: jnp.where(w > 0, x * w.astype(x.dtype), jnp.zeros_like(x))
        return scale(loss), carry, jax.tree.map(scale, metrics), jax.tree.map(scale, grads), w

    def local(params, carry, batch, key):
        """One device's batch: its micro-batches one after another, their sums added."""
        check_batch_divides(batch, micro_batches, "train step")
        if micro_batches == 1:
            return weighted(params, carry, batch, key)
        cut = lambda x: x.reshape(micro_batches, x.shape[0] // micro_batches, *x.shape[1:])
        ks = cut(key) if example_keys else jax.random.split(key, micro_batches)
        pieces = (jax.tree.map(cut, carry), jax.tree.map(cut, batch), ks)
        zero = jax.eval_shape(weighted, params, *jax.tree.map(lambda x: x[0], pieces))
        zero = (zero[0], None, zero[2], zero[3], zero[4])
        acc0 = vary_like(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zero), params)

        def body(acc, piece):
            loss, carry, metrics, grads, w = weighted(params, *piece)
            acc = jax.tree.map(jnp.add, acc, (loss, None, metrics, grads, w))
            return acc, carry

        (loss, _, metrics, grads, w), carries = jax.lax.scan(body, acc0, pieces)
        carry = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), carries)
        return loss, carry, metrics, grads, w

    def combine(sums):
        loss, carry, metrics, grads, w = sums
        mean = lambda x: x / w.astype(x.dtype)
        return mean(loss), carry, jax.tree.map(mean, metrics), jax.tree.map(mean, grads)

    if mesh is None:
        return lambda params, carry, batch, key: combine(local(params, carry, batch, key))

    parts = data_size(mesh)

    def sharded(params, carry, batch, key):
        # the params are replicated; each device differentiates its own loss with respect
        # to a device-varying view of them, so its gradient is its shard's alone, and the
        # shards' sums are added once (a replicated loss would be differentiated N times)
        params = jax.tree.map(lambda p: jax.lax.pcast(p, DATA_AXIS, to="varying"), params)
        if not example_keys:  # per-example keys arrive split like the batch
            key = jax.random.fold_in(key, jax.lax.axis_index(DATA_AXIS))
        loss, carry, metrics, grads, w = local(params, carry, batch, key)
        total = jax.lax.psum(vary_like((loss, metrics, grads, w), params), DATA_AXIS)
        return total[0], carry, total[1], total[2], total[3]

    split, rep = PartitionSpec(DATA_AXIS), PartitionSpec()

    def grad_fn(params, carry, batch, key):
        check_batch_divides(batch, parts * micro_batches, "train step")
        if has_carry:
            check_batch_divides(carry, parts * micro_batches, "train step", "carry")
        run = jax.shard_map(
            sharded,
            mesh=mesh,
            in_specs=(rep, split, split, split if example_keys else rep),
            out_specs=(rep, split, rep, rep, rep),
        )
        return combine(run(params, carry, batch, key))

    return grad_fn


def tbptt_value_and_grad(
    window_loss: Callable[[Params, Carry, Any], tuple[Array, Carry]],
    params: Params,
    carry: Carry,
    windows: Any,
) -> tuple[Array, Params, Carry]:
    """Truncated BPTT over consecutive windows of one long sequence.

    ``windows`` holds ``K`` consecutive windows stacked on a leading axis (e.g. inputs
    ``[K, batch, k, features]``).  The windows are run in order with ``lax.scan``; the carry
    flows from each window into the next, but the gradient does not (``stop_gradient`` at
    every boundary), so each window backpropagates through its own ``k`` steps only.  The
    result is the sum over windows of the per-window losses and gradients.  With ``K = 1``
    (one window covering the whole sequence) this is exactly full BPTT.

    Args:
      window_loss: ``window_loss(params, carry, window) -> (loss, carry_out)``.
      params: the parameters to differentiate.
      carry: the state before the first window.
      windows: a pytree whose leaves have a leading window axis ``[K, ...]``.

    Returns:
      ``(loss_sum, grads, carry_out)``: the summed loss, its truncated gradient (the
      structure of ``params``) and the carry after the last window.

    Raises:
      ValueError: ``windows`` has no leaves, or leaves without one common leading axis
        ``K >= 1``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> def window_loss(w, h, xs):  # a linear recurrence h_t = w h_{t-1} + x_t
      ...     def f(h, x):
      ...         h = w * h + x
      ...         return h, h
      ...     h, hs = jax.lax.scan(f, h, xs)
      ...     return jnp.sum(hs), h
      >>> xs = jnp.ones((6,))
      >>> full = tbptt_value_and_grad(window_loss, 0.5, 0.0, xs[None])   # K=1: full BPTT
      >>> cut = tbptt_value_and_grad(window_loss, 0.5, 0.0, xs.reshape(3, 2))
      >>> bool(jnp.isclose(full[0], cut[0])), bool(full[1] > cut[1])  # same loss, less grad
      (True, True)
    """
    leaves = jax.tree.leaves(windows)
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if not leaves or len(sizes) != 1 or None in sizes or 0 in sizes:
        raise ValueError(
            "tbptt_value_and_grad: `windows` must be a pytree of arrays with one common "
            f"leading window axis K >= 1 ([K, ...]), got leading sizes {sorted(sizes, key=str)}"
        )
    grad_fn = jax.value_and_grad(window_loss, has_aux=True)

    def window(c, w):
        (loss, c), grads = grad_fn(params, jax.lax.stop_gradient(c), w)
        return loss, grads, c

    # The first window outside the scan: with K = 1 this is literally full BPTT.
    loss_sum, grads, carry = window(carry, jax.tree.map(lambda x: x[0], windows))

    def body(acc, w):
        loss_sum, grads_sum, c = acc
        loss, grads, c = window(c, w)
        return (loss_sum + loss, jax.tree.map(jnp.add, grads_sum, grads), c), None

    rest = jax.tree.map(lambda x: x[1:], windows)
    if jax.tree.leaves(rest)[0].shape[0]:
        (loss_sum, grads, carry), _ = jax.lax.scan(body, (loss_sum, grads, carry), rest)
    return loss_sum, grads, jax.lax.stop_gradient(carry)


def make_eval_step(metric_fn: Callable[..., Any]) -> Callable[..., Any]:
    """Jits an evaluation function (one compilation for every batch of one shape).

    Args:
      metric_fn: ``metric_fn(params, batch) -> sums`` or, carrying the recurrent state from
        one batch to the next, ``metric_fn(params, carry, batch) -> (carry, sums)``; ``sums``
        maps each metric name to a pair ``(total, count)`` of scalars (e.g. the summed loss
        over valid tokens and their number), so [`evaluate`][jrnn.train.evaluate] forms exact means
        over many batches.

    Returns:
      The jitted function (no donation: ``params`` stay valid).

    Raises:
      TypeError: ``metric_fn`` is not callable.

    Examples:
      >>> import jax.numpy as jnp
      >>> def metric_fn(params, batch):
      ...     err = jnp.abs(batch * params["w"])
      ...     return {"err": (jnp.sum(err), jnp.asarray(err.size, jnp.float32))}
      >>> eval_step = make_eval_step(metric_fn)
      >>> total, count = eval_step({"w": jnp.float32(2.0)}, jnp.ones(4))["err"]
      >>> float(total), float(count)
      (8.0, 4.0)
    """
    if not callable(metric_fn):
        raise TypeError(
            f"make_eval_step: `metric_fn` must be callable, got {type(metric_fn).__name__}"
        )
    return jax.jit(metric_fn)


def evaluate(
    eval_step: Callable[..., Any],
    params: Params,
    batches: Iterable[Any],
    carry: Carry | None = None,
) -> dict[str, float]:
    """Exact means of an eval step's metrics over ``batches``.

    Totals and counts are summed on the host in float64 (order fixed: deterministic).

    Args:
      eval_step: from [`make_eval_step`][jrnn.train.make_eval_step].
      params: the parameters.
      batches: an iterable of batches (all of one shape, so one compilation).
      carry: with a carrying eval step, the initial carry (e.g. zeros); ``None`` otherwise.

    Returns:
      ``{name: total / count}`` (``nan`` for a metric with count 0).

    Raises:
      ValueError: a metric that is not a ``(total, count)`` pair.

    Examples:
      >>> import jax.numpy as jnp
      >>> def metric_fn(params, batch):
      ...     return {"mean": (jnp.sum(batch), jnp.asarray(batch.size, jnp.float32))}
      >>> batches = [jnp.array([1.0, 2.0]), jnp.array([3.0, 6.0])]
      >>> evaluate(make_eval_step(metric_fn), {}, batches)
      {'mean': 3.0}
    """
    totals: dict[str, list[float]] = {}
    for batch in batches:
        if carry is None:
            sums = eval_step(params, batch)
        else:
            carry, sums = eval_step(params, carry, batch)
        sums = jax.device_get(sums)
        for name, pair in sums.items():
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise ValueError(
                    f"evaluate: the eval step's metric {name!r} must be a (total, count) pair, "
                    f"got {type(pair).__name__}"
                )
            total, count = pair
            acc = totals.setdefault(name, [0.0, 0.0])
            acc[0] += float(np.float64(total))
            acc[1] += float(np.float64(count))
    return {name: (t / c if c > 0 else float("nan")) for name, (t, c) in sorted(totals.items())}
