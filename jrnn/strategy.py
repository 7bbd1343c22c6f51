"""How [`jrnn.unroll`][jrnn.unrolling.unroll] runs a call: every choice in one place, one
[`Plan`][jrnn.strategy.Plan].

``unroll`` is prepare → plan → engine → finish.  [`plan`][jrnn.strategy.plan] turns the cell, the
prepared inputs (their shapes), the user's options and the backend into a
[`Plan`][jrnn.strategy.Plan]:

* the engine: the sequential ``lax.scan`` ([`jrnn.scan`][]), the exact associative scan
  of an element-wise linear recurrence ([`jrnn.linear_scan`][]), or Newton's method in
  parallel over time ([`jrnn.newton`][]) -- ``method`` as asked, ``"auto"`` by
  [`auto_method`][jrnn.strategy.auto_method] and
  [`prefer_associative`][jrnn.strategy.prefer_associative];
* for the scan: whether the input projection is hoisted out of it, whether ``jax.grad``
  differentiates it by autodiff or by the hand-structured VJP ([`jrnn.hoisted`][]), the
  defaults measured per shape on CPU ([`default_strategy`][jrnn.strategy.default_strategy],
  `jrnn.tuned.CPU`), and the overrides (training a regularised cell, ``remat``, ``return_carries``,
  a cell without [`jrnn.base.FastPath`][]);
* how many of a CPU's host devices split the batch ([`jrnn.sharding.host_split`][]);
* ``lax.scan``'s unroll factor: the caller's ``unroll``, or, when not given, 1 for a call
  that is differentiated and, for inference on CPU, the factor measured fastest for the
  nearest shape ([`inference_unroll`][jrnn.strategy.inference_unroll], `jrnn.tuned.CPU_INFERENCE`).

The same inputs always give the same plan.

**Symbolic shapes** (``jax.export`` with ``symbolic_shape("b, t")``): a choice that depends
on a size cannot be made when the batch or time dimension is symbolic, so
[`plan`][jrnn.strategy.plan] makes fixed ones instead, and never calls Python maths on a dimension:

* the engine is the sequential scan for ``method="auto"`` and for a cell with ``affine``
  or ``parallel`` (the associative scan needs a concrete length; the sequential scan
  computes the same recurrence); ``method="newton"``/``"quasi-newton"`` on a cell without
  either is an error (their linear solves are associative scans);
* ``hoist`` and ``vjp`` not given: the backend's shape-free defaults of
  [`default_strategy`][jrnn.strategy.default_strategy] (on CPU the projection in the step,
  differentiated by autodiff; elsewhere hoisted, with the hand-structured VJP);
* the batch is not split over host devices;
* ``unroll`` becomes 1 and ``remat="sqrt"`` becomes ``"step"`` when the time dimension is
  symbolic (both need the number of steps; the results are the same, only speed and memory
  differ).
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import jax

from jrnn import hoisted, tuned
from jrnn.base import Cell
from jrnn.checks import concrete
from jrnn.prepare import Options, Prepared
from jrnn.sharding import host_split

Engine = Literal["scan", "associative", "newton", "quasi-newton"]


class Plan(NamedTuple):
    """One call of [`jrnn.unroll`][jrnn.unrolling.unroll], decided (hashable).

    Attributes:
      engine: ``"scan"``, ``"associative"``, ``"newton"`` or ``"quasi-newton"``.
      hoist: the scan projects the inputs before it (training; ``infer_hoist`` alone).
      vjp: ``"hoisted"`` (the hand-structured backward) or ``"autodiff"``.
      infer_hoist: whether the hoisted VJP's primal, run when not differentiated (the
        inference path), projects before the scan.
      devices: host devices the scan's batch is split over (1: not split).
      save_step_vjps: the hoisted VJP's forward saves each step's VJP of the gates.
      unroll: ``lax.scan``'s unroll factor when differentiated (the caller's, else 1).
      infer_unroll: ... when not differentiated (the caller's, else
          [`inference_unroll`][jrnn.strategy.inference_unroll]).
      remat, return_carries: as given to [`jrnn.unroll`][jrnn.unrolling.unroll].
      solver: the [`jrnn.newton.NewtonOptions`][] of a Newton engine, else ``None``.
    """

    engine: Engine
    hoist: bool
    vjp: str
    infer_hoist: bool
    devices: int
    save_step_vjps: bool
    remat: str
    unroll: int | bool
    return_carries: bool
    solver: Any = None
    infer_unroll: int | bool = 1


TIME_WEIGHT = 0.25
"""Weight of the sequence length in [`default_strategy`][jrnn.strategy.default_strategy]'s distance
(batch and hidden size weigh 1).  A modelling choice: a step's work is set by the batch and the
width, ``T`` only counts the steps, and the table's grid varies ``B`` and ``T`` together (``B·T =
8192``), so without it a shape between two rows is matched by its length as much as by its
batch."""


def default_strategy(
    backend: str | None = None,
    *,
    batch: int | None = None,
    steps: int | None = None,
    hidden: int | None = None,
) -> dict[str, Any]:
    """``unroll``'s defaults for ``hoist`` and ``vjp`` on ``backend`` (default: JAX's), for
    a batch of ``batch`` sequences of ``steps`` steps through a cell of ``hidden`` units.

    Chosen by measurement: on GPU the hoisted projection and the hand-structured VJP (1.8x at
    the medium LSTM size on an H200).  On CPU, with the shape given, the strategy measured
    fastest at the nearest shape of `jrnn.tuned.CPU` (distance in log-space of batch,
    T and hidden, T weighted by [`TIME_WEIGHT`][jrnn.strategy.TIME_WEIGHT]; written by ``python -m
    benchmarks.tune``: the hand-structured backward wins for long sequences in small batches, where
    autodiff accumulates a weight-sized gradient at every step; between equally near entries the
    in-step autodiff form); without it, or with an empty table, in-step projection
    differentiated by autodiff.  The same shapes always give the same choice.

    Examples:
      >>> from jrnn.strategy import default_strategy
      >>> default_strategy("cpu")
      {'hoist': False, 'vjp': 'autodiff'}
      >>> default_strategy("gpu", batch=8, steps=4096, hidden=256)
      {'hoist': True, 'vjp': 'hoisted'}
    """
    on_cpu = (backend or jax.default_backend()) == "cpu"
    if not on_cpu:
        return {"hoist": True, "vjp": "hoisted"}
    if None in (batch, steps, hidden) or not tuned.CPU:
        return {"hoist": False, "vjp": "autodiff"}
    # equally near entries: the in-step autodiff form (no custom rule, less memory)
    _, hoist, vjp = _nearest(tuned.CPU, (batch, steps, hidden), (False, "autodiff"))
    return {"hoist": hoist, "vjp": vjp}


def inference_unroll(
    backend: str | None = None,
    *,
    batch: int | None = None,
    steps: int | None = None,
    hidden: int | None = None,
) -> int:
    """``lax.scan``'s unroll factor for a call of [`jrnn.unroll`][jrnn.unrolling.unroll] that is not
    differentiated (inference), when the caller gives none.

    On CPU with the shape given, the factor measured fastest for a forward pass at the
    nearest shape of `jrnn.tuned.CPU_INFERENCE` (the distance of
    [`default_strategy`][jrnn.strategy.default_strategy]; written by ``python -m benchmarks.tune
    --part inference``, measured with every core a host device, as after
    [`jrnn.use_cpu_cores`][jrnn.sharding.use_cpu_cores]): there unrolling measured 1.1-1.4x faster
    at ``hidden=256``, up to 1.3x at 512 in small batches, and nothing at most other shapes
    (``benchmarks/results/tune_inference.md``). Elsewhere, or without a shape: 1.  A differentiated
    call always scans with 1 (on CPU, ``unroll > 1`` made training 1.4-2.2x slower).  The results
    are the same whatever the factor.

    Examples:
      >>> from jrnn.strategy import inference_unroll
      >>> inference_unroll("gpu", batch=32, steps=128, hidden=256)
      1
      >>> inference_unroll("cpu")  # no shape: no choice to make
      1
    """
    on_cpu = (backend or jax.default_backend()) == "cpu"
    if not on_cpu or None in (batch, steps, hidden) or not tuned.CPU_INFERENCE:
        return 1
    return _nearest(tuned.CPU_INFERENCE, (batch, steps, hidden), (1,))[1]


def _nearest(table, shape: tuple[int, int, int], preferred: tuple) -> tuple:
    """The entry ``((batch, T, hidden), *choice)`` of ``table`` nearest ``shape`` in
    log-space (``T`` weighted by [`TIME_WEIGHT`][jrnn.strategy.TIME_WEIGHT]); between equally near
    entries, the
    one whose choice is ``preferred``."""
    where = [math.log2(max(v, 1)) for v in shape]

    def distance(entry) -> float:
        d = [(math.log2(a) - b) ** 2 for a, b in zip(entry[0], where, strict=True)]
        return d[0] + TIME_WEIGHT * d[1] + d[2]

    return min(table, key=lambda e: (distance(e), tuple(e[1:]) != preferred))


AUTO_MIN_STEPS = 8192
"""``method="auto"`` considers the parallel solvers only from this many steps on."""
AUTO_MAX_STATE = 64
"""... and only for a flat state of at most this many numbers per sequence."""


def auto_method(num_steps: int, state_size: int, backend: str | None = None) -> str:
    """``unroll(method="auto")``'s choice for a cell without ``affine`` or ``parallel``:
    ``"scan"`` or ``"quasi-newton"``.

    On CPU always ``"scan"``: measured (``benchmarks/newton.py``,
    ``benchmarks/results/newton.md``), the sequential scan beat Newton and quasi-Newton at
    every size (T up to 16k, H up to 64), since a CPU has no parallel width for the
    ``T``-fold work of one iteration.  On an accelerator ``"quasi-newton"`` when
    ``num_steps >= AUTO_MIN_STEPS`` and ``state_size <= AUTO_MAX_STATE`` (the long-sequence,
    small-state regime where DEER/ELK report speed-ups), else ``"scan"``: a provisional
    rule, not yet measured on a GPU here; it cannot give a wrong answer (a solve that does
    not converge falls back to the scan), only a slower one.

    Examples:
      >>> auto_method(16384, 32, "cpu"), auto_method(16384, 32, "gpu"), auto_method(64, 32, "gpu")
      ('scan', 'quasi-newton', 'scan')
    """
    backend = backend or jax.default_backend()
    if backend == "cpu":
        return "scan"
    if num_steps >= AUTO_MIN_STEPS and state_size <= AUTO_MAX_STATE:
        return "quasi-newton"
    return "scan"


ASSOCIATIVE_MIN_STEPS = 256
"""On an accelerator, ``method="auto"`` runs the associative scan from this many time steps
on.  Not measured in this repository yet (the sessions so far had CPUs only): it is the
premise of Feng et al. 2024 and Orvieto et al. 2023, who time the parallel scan on GPUs;
re-measure with ``benchmarks/linear_scan.py`` on the device and move it."""


def prefer_associative(num_steps: int, backend: str | None = None) -> bool:
    """``method="auto"``'s rule for a cell with ``affine`` or ``parallel``: associative scan or ``lax.scan``.

    * CPU (``backend="cpu"``): never.  Measured on a shared 2-core CPU (batch 8, input 16,
      hidden 32; ``benchmarks/linear_scan.py``, docs/guide/cells.md): the sequential scan
      was faster at every ``T`` from 64 to 16384, forward and training, for all three cells
      (e.g. minGRU at ``T = 16384``: 49 ms against 204 ms forward, 0.57 s against 1.0 s
      forward + backward): an element-wise recurrence is memory-bound, and the
      associative scan reads and writes the sequence about ``2 log2 T`` times.
    * other backends: ``T >= ASSOCIATIVE_MIN_STEPS`` (an unmeasured default, see there).

    Examples:
      >>> prefer_associative(4096, "cpu"), prefer_associative(64, "gpu"), prefer_associative(4096, "gpu")
      (False, False, True)
    """  # noqa: E501
    if (backend or jax.default_backend()) == "cpu":
        return False
    return num_steps >= ASSOCIATIVE_MIN_STEPS


def _state_size(prep: Prepared) -> int:
    """Numbers in one sequence's carry."""
    nb = len(prep.batch_shape)
    return sum(math.prod(a.shape[nb:]) for a in jax.tree.leaves(prep.carry))


def exact_parallel(cell: Cell) -> bool:
    """Whether ``cell`` has an exact parallel-in-time form for the associative engine
    ([`jrnn.linear_scan`][]): ``affine`` or ``parallel``.

    Examples:
      >>> import jrnn
      >>> [exact_parallel(c) for c in (jrnn.mingru(4), jrnn.mlstm(4), jrnn.lstm(4))]
      [True, True, False]
    """
    return cell.affine is not None or cell.parallel is not None


def _engine(cell: Cell, prep: Prepared, method: str, solve: bool, backend: str, where: str):
    if method == "scan":
        return "scan"
    if not concrete(prep.num_steps, *prep.batch_shape):  # jax.export: see the module
        if method == "auto" or (exact_parallel(cell) and not solve):
            return "scan"
        raise ValueError(
            f"{where}: `method`={method!r} needs concrete batch and time dimensions (its "
            f"linear solves are associative scans); with jax.export's symbolic shapes use "
            f"method='scan' or 'auto'"
        )
    if prep.noise is not None:  # training a regularised cell: its noise is read in the scan
        if method == "auto":
            return "scan"
        raise ValueError(
            f"{where}: `method`={method!r} cannot train a regularised cell (with a `key`); "
            f"use method='scan'"
        )
    if prep.num_steps == 0:
        return "scan"
    if exact_parallel(cell) and not solve:  # exact: Newton converges in one step
        if method == "auto":
            return "associative" if prefer_associative(prep.num_steps, backend) else "scan"
        return "associative"
    if method == "auto":
        return auto_method(prep.num_steps, _state_size(prep), backend)
    return method


def _shape(cell: Cell, prep: Prepared, devices: int) -> dict[str, int]:
    """What the strategy tables are keyed by: each device's batch, the steps and the width;
    nothing when a dimension is symbolic (``jax.export``: the shape-free defaults)."""
    if not concrete(prep.num_steps, *prep.batch_shape):
        return {}
    batch = math.prod(prep.batch_shape) // devices  # what each device runs
    return {"batch": batch, "steps": prep.num_steps, "hidden": cell.hidden_size}


def _scan_choice(cell: Cell, prep: Prepared, options: Options, devices: int, backend, where):
    """``(hoist, vjp, infer_hoist)`` of the sequential engine."""
    if cell.fast is None:  # the step as written: in the scan, differentiated by autodiff
        for asked, arg in ((options.hoist, "hoist=True"), (options.vjp == "hoisted", "vjp=")):
            if asked:
                raise ValueError(
                    f"{where}: `{arg}` needs the cell's FastPath (its input projection and "
                    f"recurrent kernel); {cell.name} has none (see jrnn.custom_cell(fast=...))"
                )
        return False, "autodiff", False
    if prep.noise is not None or options.remat != "none":
        return False, "autodiff", False  # noise and remat act inside the step
    defaults = default_strategy(backend, **_shape(cell, prep, devices))
    # inference (the custom VJP's primal) on CPU: in-step unless the caller chose
    infer_hoist = options.hoist if options.hoist is not None else backend != "cpu"
    hoist = defaults["hoist"] if options.hoist is None else options.hoist
    vjp = defaults["vjp"] if options.vjp is None else options.vjp
    if options.return_carries:
        vjp = "autodiff"
    return hoist, vjp, infer_hoist


def plan(
    cell: Cell,
    prep: Prepared,
    options: Options,
    *,
    where: str,
    solver: Any = None,
    backend: str | None = None,
) -> Plan:
    """The [`Plan`][jrnn.strategy.Plan] of one [`jrnn.unroll`][jrnn.unrolling.unroll] call (see the
    module).

    Args:
      cell: the cell.
      prep: the prepared inputs ([`jrnn.prepare.prepare`][]).
      options: the checked options.
      where: the calling function, for messages.
      solver: [`jrnn.newton.NewtonOptions`][] when [`jrnn.newton.solve`][] calls
        (always Newton, never the associative scan), else ``None`` (the Newton engine's
        defaults).
      backend: default JAX's.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> from jrnn.prepare import Options, prepare
      >>> cell = jrnn.lstm(256)
      >>> p = cell.init(jax.random.key(0), 8)
      >>> xs = jnp.zeros((4, 2048, 8))  # long sequences, a small batch: the hoisted VJP
      >>> def plan_for(options, backend):
      ...     prep = prepare(cell, p, xs, None, None, None, None, options, where="d")
      ...     return plan(cell, prep, options, where="d", backend=backend)
      >>> plan_for(Options(), "cpu")[:3]
      ('scan', True, 'hoisted')
      >>> plan_for(Options(remat="step"), "cpu")[:3]
      ('scan', False, 'autodiff')
      >>> plan_for(Options(method="auto"), "gpu")[:3]
      ('scan', True, 'hoisted')
    """
    backend = backend or jax.default_backend()
    engine = _engine(cell, prep, options.method, solver is not None, backend, where)
    static, static_time = concrete(prep.num_steps, *prep.batch_shape), concrete(prep.num_steps)
    devices = 1
    if engine == "scan" and backend == "cpu" and static:
        devices = host_split(prep.xs, prep.batch_shape, cell.hidden_size)
    hoist, vjp, infer_hoist = _scan_choice(cell, prep, options, devices, backend, where)
    if not static_time:
        infer_unroll = 1
    elif options.unroll is not None:
        infer_unroll = options.unroll
    elif engine == "scan" and cell.fast is not None and prep.noise is None:
        infer_unroll = inference_unroll(backend, **_shape(cell, prep, devices))
    else:
        infer_unroll = 1
    save = engine == "scan" and vjp == "hoisted"
    if save:
        save = hoisted.per_step_residuals(cell, prep.params, prep.xs, prep.carry, prep.mask)
    return Plan(
        engine=engine,
        hoist=hoist,
        vjp=vjp,
        infer_hoist=infer_hoist,
        devices=devices,
        save_step_vjps=save,
        remat=options.remat if static_time or options.remat != "sqrt" else "step",
        unroll=options.unroll if static_time and options.unroll is not None else 1,
        return_carries=options.return_carries,
        solver=solver if engine in ("newton", "quasi-newton") else None,
        infer_unroll=infer_unroll,
    )
