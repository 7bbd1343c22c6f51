"""Where a run computes: ``--devices`` (data parallelism over local devices, host devices on
a CPU) and a multi-host launch (``--coordinator``, ``--num-processes``, ``--process-id``).

The order matters and is kept here: `start` runs before anything starts JAX's
backends (a CPU's host-device count is fixed then), `mesh_for` after.
"""

from __future__ import annotations

import argparse
from typing import Any

from jrnn.app.errors import UsageError

__all__ = [
    "add_arguments",
    "any_process",
    "auto_devices",
    "barrier",
    "is_primary",
    "mesh_for",
    "start",
    "stop",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The multi-host flags (process-level, not saved in the run's config)."""
    g = parser.add_argument_group(
        "multi-host (jax.distributed.initialize; on SLURM, Open MPI, Kubernetes and Cloud TPU "
        "the flags can be left out: JAX reads the environment)"
    )
    g.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
    g.add_argument("--num-processes", type=int, metavar="N", help="processes in the job")
    g.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")
    g.add_argument(
        "--distributed", action="store_true", help="initialise from the environment alone"
    )
    g.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="start N local processes of one job (on 127.0.0.1, each with --devices/N "
        "devices; default --devices N) and forward Ctrl-C to them",
    )
    g.add_argument(
        "--join-timeout",
        type=int,
        default=120,
        metavar="SECONDS",
        help="how long to wait for every process to join (default 120); then one line, exit 2",
    )


def start(config: Any, args: argparse.Namespace | None = None) -> None:
    """Before JAX starts: joins a multi-host job when asked, and on a CPU makes the host
    devices ``config.devices`` needs (``auto``: `auto_devices` of the cores).  Once
    JAX has started (in a notebook, a test) nothing changes: `mesh_for` uses the
    devices there are."""
    import jax

    from jrnn.sharding import backends_started, cpu_cores, use_cpu_cores

    flags: dict[str, Any] = {}
    if args is not None:
        flags = {
            k: v
            for k, v in (
                ("coordinator_address", args.coordinator),
                ("num_processes", args.num_processes),
                ("process_id", args.process_id),
            )
            if v is not None
        }
        if flags or args.distributed:
            # CPU processes exchange over Gloo (TCP); other platforms keep their own
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
            _join(flags, args.join_timeout)
    if args is None and jax.distributed.is_initialized():
        return  # the command's own call (with its flags) made this process's share
    if not backends_started():  # as many host devices as will be used
        n = config.devices
        if n == "auto":
            n = auto_devices(config, cpu_cores())
        # this process's share (with --distributed alone the count is the environment's,
        # which JAX does not tell before its backends start: each process makes them all)
        use_cpu_cores(max(1, n // flags.get("num_processes", 1)))


def _join(flags: dict[str, Any], timeout: int) -> None:
    """``jax.distributed.initialize``, bounded: a coordinator that cannot be reached, or
    processes that do not all join within ``timeout`` seconds, is a `UsageError`."""
    import jax

    if timeout < 1:
        raise UsageError(f"--join-timeout: must be a positive number of seconds, got {timeout}")
    address = flags.get("coordinator_address")
    if address and flags.get("process_id"):  # JAX's client aborts the process when it fails
        _wait_for(address, timeout)
    try:
        jax.distributed.initialize(**flags, initialization_timeout=timeout)
    except Exception as e:  # XlaRuntimeError (DEADLINE_EXCEEDED, UNAVAILABLE), ValueError
        where = flags.get("coordinator_address", "the address the environment gives")
        first = " ".join(str(e).split("\n", 1)[0].split())[:200]
        raise UsageError(
            f"cannot join the job at {where} within {timeout} s: is process 0 running there, "
            f"and --num-processes the same for all? ({first})"
        ) from None


def _wait_for(address: str, timeout: int) -> None:
    """Waits until the coordinator ``HOST:PORT`` accepts a connection, at most ``timeout``
    seconds (`UsageError` after)."""
    import socket
    import time

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--coordinator: expected HOST:PORT, got {address!r}")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise UsageError(
                    f"cannot reach the coordinator {address} within {timeout} s "
                    f"({e.strerror or e}): is process 0 running there?"
                ) from None
            time.sleep(0.2)


def is_primary() -> bool:
    """Whether this is process 0 of the job (or the only process): the one that writes the
    run folder's files (config.json, metrics.jsonl, plots, the sample) and prints."""
    import jax

    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process of the job gets here (nothing with one process)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"jrnn: {name}")


def stop() -> None:
    """Leaves the multi-process job, after every process has finished (a process that
    exited first would make the others' runtime abort)."""
    import jax

    if jax.distributed.is_initialized():
        jax.distributed.shutdown()


def any_process(flag: bool) -> bool:
    """Whether ``flag`` holds in any process of the job (``flag`` itself with one
    process): how the processes agree to stop at the same step when a signal reaches
    some of them."""
    import jax

    if jax.process_count() == 1:
        return flag
    import numpy as np
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


def auto_devices(config: Any, available: int) -> int:
    """``--devices auto``: the most devices, at most ``available``, that split each
    micro-batch into shards worth the exchange ([`jrnn.sharding.split_devices`][] of its
    rows, ``seq_len`` and ``hidden``); 1 if none does."""
    from jrnn.sharding import split_devices

    rows = config.batch_size // config.micro_batches
    return split_devices(rows, config.seq_len, config.hidden, available)


def mesh_for(config: Any) -> Any:
    """The data mesh of ``config.devices`` (``None`` for one device); `UsageError`
    when the batch does not split or more devices are asked for than exist."""
    import jax

    from jrnn.sharding import cpu_cores, data_mesh

    devices = jax.devices()
    on_cpu = devices[0].platform == "cpu"
    available = len(devices)
    if on_cpu and jax.process_count() == 1:  # host devices: at most one per core
        available = min(available, cpu_cores())
    if config.devices == "auto":
        n = auto_devices(config, available)
    else:
        n = config.devices
        if n > len(devices):
            how = (
                f"; on a CPU, start the process with JAX_NUM_CPU_DEVICES={n} or let jrnn train "
                f"make them (it does before JAX starts)"
                if on_cpu
                else ""
            )
            raise UsageError(
                f"--devices {n}: JAX has {len(devices)} {devices[0].platform} device(s){how}"
            )
    parts = n * config.micro_batches
    if config.batch_size % parts:
        raise UsageError(
            f"--batch-size {config.batch_size} does not split over --devices {n} x "
            f"--micro-batches {config.micro_batches}: it must be a multiple of {parts}"
        )
    return data_mesh(n) if n > 1 else None
