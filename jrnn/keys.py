r"""Random keys that are one key, or one key per example.

Everything in jrnn that draws random numbers while it runs (dropout between layers and
before a readout, zoneout, recurrent dropout, scheduled sampling) takes a ``key`` that is
either

- **one key** (``jax.random.key(0)``, shape ``[]``, or a raw ``uint32`` key of shape
  ``[2]``): one draw for the whole batch, as ``jax.random`` does; or
- **one key per example**: a key array of the data's batch shape (``[batch]`` for inputs
  ``[batch, T, features]``), example ``b`` drawing from ``key[b]`` alone.

With one key per example, what example ``b`` sees does not depend on which other examples
share its batch, so a batch split over devices, processes or micro-batches draws exactly
what the whole batch draws in one piece.  [`jrnn.make_train_step`][jrnn.train.make_train_step]
with ``example_keys=True`` gives the loss function such keys, keyed by the step and the
example's index in the global batch ([`example_keys`][jrnn.keys.example_keys]).

The functions here are what jrnn's own layers use; a cell's ``noise`` function and a
loss function may use them too, to support both kinds of key.

Examples:
  >>> import jax, jax.numpy as jnp, jrnn
  >>> keys = jrnn.keys.example_keys(jax.random.key(0), 4)  # one key per example
  >>> keys.shape
  (4,)
  >>> whole = jrnn.keys.bernoulli(keys, 0.5, (4, 3))       # [batch, features]
  >>> half = jrnn.keys.bernoulli(keys[2:], 0.5, (2, 3))    # the last two examples alone
  >>> bool(jnp.all(whole[2:] == half))
  True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jrnn.base import Array, PRNGKey

__all__ = ["batch_shape", "bernoulli", "example_keys", "noise", "split"]


def _typed(key: Any) -> bool:
    return jnp.issubdtype(key.dtype, jax.dtypes.prng_key)


def batch_shape(key: PRNGKey) -> tuple[int, ...]:
    """The batch shape of ``key``: ``()`` for one key, else the shape it has one key per
    example of (a typed key array's shape; a raw ``uint32`` key's shape less its last
    axis of 2).

    Examples:
      >>> import jax
      >>> batch_shape(jax.random.key(0)), batch_shape(jax.random.split(jax.random.key(0), 3))
      ((), (3,))
      >>> batch_shape(jax.random.PRNGKey(0))
      ()
    """
    shape = tuple(key.shape)
    return shape if _typed(key) else shape[:-1]


def _flat(key: PRNGKey) -> PRNGKey:
    """The per-example keys on one axis ``[N]`` (``[N, 2]`` raw)."""
    return key.reshape(-1) if _typed(key) else key.reshape(-1, key.shape[-1])


def example_keys(key: PRNGKey, num: int, offset: int | Array = 0) -> PRNGKey:
    """One key per example: ``fold_in(key, offset + i)`` for ``i < num``, shape ``[num]``
    (``[num, 2]`` for a raw key).

    Example ``i``'s key depends on ``key`` and its index alone, so any piece of a batch can
    make its own examples' keys given where it starts (``offset``).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> k = jax.random.key(0)
      >>> whole, tail = example_keys(k, 5), example_keys(k, 2, offset=3)
      >>> bool(jnp.all(jax.random.key_data(whole[3:]) == jax.random.key_data(tail)))
      True
    """
    index = jnp.asarray(offset, jnp.uint32) + jnp.arange(num, dtype=jnp.uint32)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, index)


def split(key: PRNGKey, num: int = 2) -> PRNGKey:
    """``num`` independent keys from ``key``, shape ``[num, *batch_shape(key)]``: as
    ``jax.random.split`` for one key; for per-example keys, each example's key split
    alone (so ``split(keys)[j][b] == jax.random.split(keys[b])[j]``).

    Examples:
      >>> import jax
      >>> split(jax.random.split(jax.random.key(0), 3), 2).shape
      (2, 3)
    """
    batch = batch_shape(key)
    if not batch:
        return jax.random.split(key, num)
    keys = jax.vmap(lambda k: jax.random.split(k, num), out_axes=1)(_flat(key))
    return keys.reshape(num, *batch, *keys.shape[2:])


def bernoulli(key: PRNGKey, p: float | Array, shape: tuple[int, ...], batch_axis: int = 0) -> Array:
    """Booleans ``[shape]``, true with probability ``p``: ``jax.random.bernoulli`` for one
    key; for per-example keys, example ``b``'s entries drawn from ``key[b]`` alone, the
    batch axes of ``shape`` starting at ``batch_axis`` (``0`` for ``[batch, T, F]``, ``1``
    for time-major ``[T, batch, F]``).

    Raises:
      ValueError: per-example keys whose batch shape is not ``shape``'s at ``batch_axis``.

    Examples:
      >>> import jax
      >>> keys = jax.random.split(jax.random.key(0), 2)
      >>> bernoulli(keys, 0.5, (5, 2, 3), batch_axis=1).shape   # [T, batch, F]
      (5, 2, 3)
    """
    batch = batch_shape(key)
    if not batch:
        return jax.random.bernoulli(key, p, shape)
    n = len(batch)
    got = tuple(shape[batch_axis : batch_axis + n])
    if got != batch:
        raise ValueError(
            f"bernoulli: one key per example needs the batch shape {list(batch)} at axis "
            f"{batch_axis} of `shape`, got shape {list(shape)}"
        )
    rest = (*shape[:batch_axis], *shape[batch_axis + n :])
    drawn = jax.vmap(lambda k: jax.random.bernoulli(k, p, rest), out_axes=batch_axis)(_flat(key))
    return drawn.reshape(shape)


# a batch size no other axis of a noise array has, to find where the batch axes go
_PROBE = 7919


def noise(
    fn: Callable[[PRNGKey, Any, tuple[int, ...]], Any],
    key: PRNGKey,
    params: Any,
    xs_shape: tuple[int, ...],
) -> Any:
    """A cell's ``noise(key, params, xs_shape)`` (``xs_shape`` time-major ``[T, *batch,
    I]``) for one key or for one key per example.

    With per-example keys, ``fn`` is called for one example at a time (batch shape ``()``)
    under ``jax.vmap``, and each array it returns gets the batch axes where ``fn`` puts
    them for a batch, so any cell's ``noise`` supports per-example keys unchanged.

    Raises:
      ValueError: per-example keys whose batch shape is not ``xs_shape``'s.

    Examples:
      >>> import jax, jrnn
      >>> cell = jrnn.zoneout(jrnn.lstm(4), 0.1)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> keys = jax.random.split(jax.random.key(1), 2)
      >>> _, (_, keeps) = noise(cell.noise, keys, params, (5, 2, 3))
      >>> keeps[0].shape                                       # [T, batch, H]
      (5, 2, 4)
    """
    batch = batch_shape(key)
    if not batch:
        return fn(key, params, xs_shape)
    num_steps, size = xs_shape[0], xs_shape[-1]
    if tuple(xs_shape[1:-1]) != batch:
        raise ValueError(
            f"noise: one key per example needs inputs of batch shape {list(batch)}, got "
            f"inputs of shape {list(xs_shape)} (time-major)"
        )
    one = jax.random.key(0) if _typed(key) else jax.random.PRNGKey(0)
    probe = (_PROBE,) * len(batch)
    single = jax.eval_shape(lambda k: fn(k, params, (num_steps, size)), one)
    batched = jax.eval_shape(lambda k: fn(k, params, (num_steps, *probe, size)), one)
    drawn = jax.vmap(lambda k: fn(k, params, (num_steps, size)))(_flat(key))

    def place(a: Array, s: jax.ShapeDtypeStruct, b: jax.ShapeDtypeStruct) -> Array:
        s, b = tuple(s.shape), tuple(b.shape)
        at = [i for i in range(len(s) + 1) if (*s[:i], *probe, *s[i:]) == b]
        if len(at) != 1:
            raise ValueError(
                f"noise: cannot tell where the batch axes of a noise array of shape "
                f"{list(b)} go (one example's is {list(s)})"
            )
        a = jnp.moveaxis(a, 0, at[0])
        return a.reshape(*s[: at[0]], *batch, *s[at[0] :])

    return jax.tree.map(place, drawn, single, batched)
