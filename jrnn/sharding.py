"""Data parallelism on JAX's own runtime: a device mesh, the batch split along its ``data``
axis, parameters replicated.

* [`use_cpu_cores`][jrnn.sharding.use_cpu_cores] turns one CPU host into ``n`` host devices (one per
  core), so the data-parallel path puts every core to work: XLA:CPU runs a recurrent step's small
  ``[B, H] x [H, 4H]`` product on one core, a single CPU device leaves the others idle.
* [`data_mesh`][jrnn.sharding.data_mesh] builds the one-axis mesh
  [`jrnn.make_train_step`][jrnn.train.make_train_step] takes (``mesh=``); the same code runs on host
  devices, on the GPUs of a node and on a TPU slice, and on several hosts after
  ``jax.distributed.initialize()``.
* [`shard_batch`][jrnn.sharding.shard_batch] / [`replicate`][jrnn.sharding.replicate] place a batch
  (leading axis split over the devices) and a state (a full copy on every device).

Nothing here holds state: the mesh is an argument, never a global.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jrnn.base import varying_axes

__all__ = [
    "DATA_AXIS",
    "backends_started",
    "cpu_cores",
    "check_batch_divides",
    "data_mesh",
    "data_size",
    "MAX_SPLIT_STEP",
    "MIN_SPLIT_WORK",
    "host_devices_mesh",
    "host_split",
    "replicate",
    "shard_batch",
    "split_devices",
    "use_cpu_cores",
]

DATA_AXIS = "data"


def _how(n: int | str = "n") -> str:
    return (
        f"call jrnn.use_cpu_cores({n}) right after `import jrnn`, before any JAX computation, "
        f"or set JAX_NUM_CPU_DEVICES={n} (or XLA_FLAGS=--xla_force_host_platform_device_count"
        f"={n}) before Python starts"
    )


def backends_started() -> bool:
    """Whether JAX has started its backends (after which the host-device count is fixed)."""
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def cpu_cores() -> int:
    """The CPU cores this process may use (``os.sched_getaffinity`` where there is one)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, n or 1)


def use_cpu_cores(n: int | None = None) -> int:
    """Makes the CPU backend ``n`` host devices (default: one per core of this machine).

    Must run before JAX starts its backends (before the first array is made or the first
    function runs); afterwards the count cannot change, and a call asking for the count JAX
    already has is a no-op.  The host devices share the machine's memory; a data-parallel
    step (``make_train_step(..., mesh=jrnn.sharding.data_mesh())``) then runs one shard of the
    batch on each core.  Library users: the one line ``jrnn.use_cpu_cores()`` after ``import
    jrnn``.  ``jrnn train --devices auto`` does it for the command line.

    Args:
      n: the number of CPU devices, ``>= 1``; ``None``: ``os.cpu_count()`` (the cores this
        process may use where ``os.sched_getaffinity`` tells).

    Returns:
      The number of CPU devices JAX will have.

    Raises:
      TypeError: ``n`` is not an int.
      ValueError: ``n < 1``.
      RuntimeError: JAX's backends already started with another count (the message says
        how to set it in time).

    Examples:
      >>> import jrnn
      >>> n = jrnn.use_cpu_cores(len(jax.devices("cpu")))  # the count JAX has: a no-op
      >>> n == len(jax.devices("cpu"))
      True
    """
    if n is None:
        n = cpu_cores()
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"use_cpu_cores: `n` must be an int or None, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"use_cpu_cores: `n` must be >= 1, got {n}")
    n = int(n)
    if backends_started():
        have = len(jax.devices("cpu"))
        if have != n:
            raise RuntimeError(
                f"use_cpu_cores: JAX already started with {have} CPU device(s) and cannot "
                f"change to {n}; {_how(n)}"
            )
        return n
    jax.config.update("jax_num_cpu_devices", n)
    return n


def data_mesh(devices: int | Sequence[jax.Device] | None = None, *, axis: str = DATA_AXIS) -> Mesh:
    """A one-axis mesh for data parallelism.

    Args:
      devices: ``None``: every device of the default backend (on several hosts: of every
        process); an int ``n``: the first ``n`` of them; or the devices themselves.
      axis: the mesh axis name the batch is split along.

    Returns:
      ``Mesh(devices, (axis,))``.

    Raises:
      TypeError: ``devices`` is neither an int, a sequence of devices nor ``None``.
      ValueError: ``n < 1``, or more devices than exist (the message says how to get more
        host devices on a CPU).

    Examples:
      >>> import jrnn
      >>> mesh = jrnn.sharding.data_mesh(1)
      >>> dict(mesh.shape)
      {'data': 1}
    """
    available = jax.devices()
    if devices is None:
        chosen = available
    elif isinstance(devices, bool):
        raise TypeError("data_mesh: `devices` must be an int, a sequence of devices or None")
    elif isinstance(devices, int | np.integer):
        if devices < 1:
            raise ValueError(f"data_mesh: `devices` must be >= 1, got {devices}")
        if devices > len(available):
            kind = available[0].platform
            raise ValueError(
                f"data_mesh: `devices`={devices} but JAX has {len(available)} {kind} "
                f"device(s)"
                + (f"; for more host devices {_how(int(devices))}" if kind == "cpu" else "")
            )
        chosen = available[: int(devices)]
    else:
        chosen = list(devices)
        if not chosen or not all(isinstance(d, jax.Device) for d in chosen):
            raise TypeError(
                "data_mesh: `devices` must be an int, a non-empty sequence of jax devices or None"
            )
    return Mesh(np.array(chosen), (axis,))


def data_size(mesh: Mesh, axis: str = DATA_AXIS) -> int:
    """The number of shards along ``axis`` (the mesh must have it)."""
    if not isinstance(mesh, Mesh):
        raise TypeError(f"`mesh` must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if axis not in mesh.shape:
        raise ValueError(f"`mesh` has no axis {axis!r}: its axes are {tuple(mesh.shape)}")
    return int(mesh.shape[axis])


def check_batch_divides(tree: Any, parts: int, where: str, name: str = "batch") -> None:
    """Every leaf of ``tree`` has a leading (batch) axis that ``parts`` divides.

    Raises:
      ValueError: naming ``name``, the leaf's shape and ``parts``.
    """
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        shape = np.shape(leaf)
        if not shape or shape[0] % parts:
            where_ = f"{name}{jax.tree_util.keystr(path)}"
            got = f"shape {list(shape)}" if shape else "a scalar"
            raise ValueError(
                f"{where}: `{where_}` must have a leading batch axis divisible by {parts} "
                f"(the number of devices x micro-batches), got {got}"
            )


def shard_batch(tree: Any, mesh: Mesh, axis: str = DATA_AXIS) -> Any:
    """Places ``tree`` with every leaf's leading (batch) axis split over ``axis``.

    Args:
      tree: a pytree of arrays ``[batch, ...]``, ``batch`` divisible by the axis size.
      mesh: the mesh.
      axis: the mesh axis to split along.

    Returns:
      The same tree, sharded (``NamedSharding(mesh, P(axis))``).

    Raises:
      ValueError: a leaf without a leading axis that the axis size divides.

    Examples:
      >>> import jax.numpy as jnp, jrnn
      >>> x = jrnn.sharding.shard_batch(jnp.ones((4, 3)), jrnn.sharding.data_mesh(1))
      >>> x.sharding.spec == jax.sharding.PartitionSpec("data")
      True
    """
    check_batch_divides(tree, data_size(mesh, axis), "shard_batch", "tree")
    return put_global(tree, NamedSharding(mesh, PartitionSpec(axis)))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a full copy of ``tree`` on every device of ``mesh`` (parameters, optimiser
    state).

    Examples:
      >>> import jax.numpy as jnp, jrnn
      >>> w = jrnn.sharding.replicate(jnp.ones(3), jrnn.sharding.data_mesh(1))
      >>> w.sharding.is_fully_replicated
      True
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(f"replicate: `mesh` must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    return put_global(tree, NamedSharding(mesh, PartitionSpec()))


def put_global(tree: Any, sharding: NamedSharding) -> Any:
    """``jax.device_put(tree, sharding)``, also where ``sharding`` spans the devices of
    several processes: each process then places its own shards of the value it holds (the
    same in every process: parameters made from one seed, a batch made from the step).
    Typed PRNG keys are placed as their ``key_data``."""
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)

    def leaf(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return x  # already global
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(
                leaf(jax.random.key_data(x)), impl=jax.random.key_impl(x)
            )
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(leaf, tree)


@functools.cache
def host_devices_mesh(n: int) -> Mesh:
    """The one-axis mesh of the first ``n`` CPU (host) devices, axis `DATA_AXIS`.

    Examples:
      >>> dict(host_devices_mesh(1).shape)
      {'data': 1}
    """
    return Mesh(np.array(jax.devices("cpu")[:n]), (DATA_AXIS,))


MIN_SPLIT_WORK = 1 << 22
"""A batch is split over host devices only when each device's share of the recurrent work,
``rows x T x hidden^2`` multiply-adds per gate, is at least this: below it the exchange
between devices costs more than the halved work saves (measured, ``benchmarks/devices.py``:
``B=16, T=32, H=32`` on 2 devices ran at 0.5-0.6x of one; ``B=32, T=64, H=128`` at
1.3-1.9x)."""


MAX_SPLIT_STEP = 1 << 22
"""...and only while each device's per-step recurrent product stays small,
``rows x hidden^2 <= MAX_SPLIT_STEP``: a larger product is already spread over the cores
by XLA:CPU's own matmul threads, and splitting the batch measured slower (``B=64, H=512``:
0.97x for the LSTM, 0.95x for the GRU on 2 devices; ``B=64, H=256``: 1.19-1.34x)."""


def split_devices(rows: int, steps: int, hidden: int, available: int) -> int:
    """The most of ``available`` host devices that divide ``rows`` into shards each worth
    [`MIN_SPLIT_WORK`][jrnn.sharding.MIN_SPLIT_WORK] and each with a per-step product within
    [`MAX_SPLIT_STEP`][jrnn.sharding.MAX_SPLIT_STEP]; 1 when none does.

    Examples:
      >>> split_devices(64, 128, 256, 2), split_devices(16, 32, 32, 2)
      (2, 1)
      >>> split_devices(64, 256, 512, 2)  # a large product: XLA threads it already
      1
    """
    best = 1
    for n in range(2, available + 1):
        share = rows // n
        worth = share * steps * hidden * hidden >= MIN_SPLIT_WORK
        if rows % n == 0 and worth and share * hidden * hidden <= MAX_SPLIT_STEP:
            best = n
    return best


def host_split(xs: Any, batch_shape: tuple[int, ...], hidden: int) -> int:
    """How many host devices [`jrnn.unroll`][jrnn.unrolling.unroll] splits a batch over (1: no
    split).

    More than 1 only in a process whose CPU backend was made several devices by
    [`use_cpu_cores`][jrnn.sharding.use_cpu_cores] (or ``JAX_NUM_CPU_DEVICES``; the ``XLA_FLAGS``
    fake devices of a test do not count), in a process that is the whole job, on the CPU
    backend, outside ``shard_map`` (a caller that
    splits its batch itself, like ``make_train_step(mesh=...)``, is left alone), with a batch of
    time-major ``xs [T, *batch, F]`` large enough ([`split_devices`][jrnn.sharding.split_devices]):
    the most of those devices that divide the first batch axis.

    Examples:
      >>> import jax.numpy as jnp
      >>> host_split(jnp.ones((5, 4, 3)), (4,), 1024)  # one CPU device in a doctest
      1
    """
    n = jax.config.jax_num_cpu_devices
    if n is None or n <= 1 or not batch_shape or varying_axes(xs):
        return 1
    if jax.process_count() > 1:  # arrays span the processes: their mesh is the caller's
        return 1
    if jax.default_backend() != "cpu":
        return 1
    rows = batch_shape[0]
    return split_devices(rows, xs.shape[0] * (math.prod(batch_shape) // rows), hidden, n)
