"""Running cells over sequences: ``unroll`` (one cell, one direction) and ``stack``
(``torch.nn.LSTM``-like layers, optionally bidirectional, with dropout between layers).

Backpropagation through time is ``jax.grad`` of these functions.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from jrnn import linear_scan, tuned
from jrnn.base import (
    Array,
    Carry,
    Cell,
    Method,
    Params,
    PRNGKey,
    RematMode,
    VJPMode,
    _shape_str,
    cast_tree,
    check_bool,
    check_carry,
    check_choice,
    check_features,
    check_float_input,
    check_int,
    check_key,
    check_lengths,
    check_params,
    check_resets,
    compute_dtype,
    vary_like,
)
from jrnn.sharding import DATA_AXIS, host_mesh


def _flip(xs: Array, lengths: Array) -> Array:
    num_steps = xs.shape[0]
    t = jnp.arange(num_steps, dtype=lengths.dtype).reshape((num_steps,) + (1,) * lengths.ndim)
    idx = jnp.where(t < lengths, lengths - 1 - t, t)
    idx = idx.reshape(idx.shape + (1,) * (xs.ndim - idx.ndim))
    return jnp.take_along_axis(xs, idx, axis=0)


def flip_within_lengths(xs: Array, lengths: Array) -> Array:
    """Reverses each sequence within its own length; padding stays in place.

    Args:
      xs: time-major ``[T, *batch, ...]``.
      lengths: int ``[*batch]`` in ``[0, T]``: checked when concrete, clamped to ``[0, T]``
        when traced (as in :func:`unroll`).

    Returns:
      ``out[t, b] = xs[L_b - 1 - t, b]`` for ``t < L_b`` and ``xs[t, b]`` otherwise.  The map
      is its own inverse.

    Examples:
      >>> import jax.numpy as jnp, jrnn
      >>> xs = jnp.arange(8.0).reshape(4, 2)  # [T=4, batch=2]
      >>> jrnn.flip_within_lengths(xs, jnp.array([4, 2]))[:, 1].tolist()
      [3.0, 1.0, 5.0, 7.0]
    """
    where = "flip_within_lengths"
    xs = jnp.asarray(xs)
    n = jnp.ndim(lengths)
    if xs.ndim < 1 + n:
        raise ValueError(
            f"{where}: `xs` must have shape [T, *batch, ...] with batch rank {n} (the rank of "
            f"`lengths`), got {_shape_str(xs.shape)}"
        )
    lengths = check_lengths(lengths, xs.shape[1 : 1 + n], xs.shape[0], where)
    return _flip(xs, lengths)


TIME_WEIGHT = 0.25
"""Weight of the sequence length in :func:`default_strategy`'s distance (batch and hidden
size weigh 1).  A modelling choice: a step's work is set by the batch and the width, ``T``
only counts the steps, and the table's grid varies ``B`` and ``T`` together (``B·T =
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
    fastest at the nearest shape of :data:`jrnn.tuned.CPU` (distance in log-space of batch,
    T and hidden, T weighted by :data:`TIME_WEIGHT`; written by ``python -m benchmarks.tune``:
    the hand-structured backward wins for long sequences in small batches, where autodiff
    accumulates a weight-sized gradient at every step; between equally near entries the
    in-step autodiff form); without it, or with an empty table, in-step projection
    differentiated by autodiff.  The same shapes always give the same choice.

    Examples:
      >>> from jrnn.unroll import default_strategy
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
    where = [math.log2(max(v, 1)) for v in (batch, steps, hidden)]

    def distance(entry) -> float:
        d = [(math.log2(a) - b) ** 2 for a, b in zip(entry[0], where, strict=True)]
        return d[0] + TIME_WEIGHT * d[1] + d[2]

    # equally near entries: the in-step autodiff form (no custom rule, less memory)
    _, hoist, vjp = min(tuned.CPU, key=lambda e: (distance(e), (e[1], e[2]) != (False, "autodiff")))
    return {"hoist": hoist, "vjp": vjp}


def unroll(
    cell: Cell,
    params: Params,
    xs: Array,
    *,
    carry: Carry | None = None,
    lengths: Array | None = None,
    reverse: bool = False,
    resets: Array | None = None,
    time_major: bool = False,
    unroll: int | bool = 1,
    return_carries: bool = False,
    hoist: bool | None = None,
    vjp: VJPMode | None = None,
    remat: RematMode = "none",
    debug: bool = False,
    key: PRNGKey | None = None,
    method: Method = "scan",
) -> tuple[Array, Carry] | tuple[Array, Carry, Carry]:
    """Runs ``cell`` over a sequence with ``jax.lax.scan``.

    With ``hoist=True`` the input part of every pre-activation is computed for all time steps
    in one matmul (``cell.project``) before the scan and the scan body holds only
    ``cell.recur``; with ``hoist=False`` the body projects one step's input itself.  Without
    ``lengths`` there is no masking work at all.

    Every core of a CPU: in a process where :func:`jrnn.use_cpu_cores` made several host
    devices, the scan runs inside ``jax.shard_map`` with the first batch axis split over
    them (the most that divide it into shards worth the exchange,
    :func:`jrnn.sharding.split_devices`) and the parameters replicated, so a plain
    ``jax.jit(jax.grad(...))`` step uses every core; outputs and gradients are those of the
    unsplit scan.  Inside a caller's own ``shard_map`` (``make_train_step(mesh=...)``) or
    on an accelerator nothing changes.

    Every argument is checked at trace time (shapes and dtypes only, see
    :mod:`jrnn.base`); a mismatch raises ``ValueError``/``TypeError`` naming it.

    Args:
      cell: a :class:`jrnn.Cell`.
      params: its parameters.
      xs: ``[*batch, T, input_size]`` (any number of leading batch axes, none for one
        sequence), or ``[T, *batch, input_size]`` with ``time_major=True``.
      carry: initial carry with batch shape ``[*batch]`` exactly (never broadcast); default
        ``cell.initial_carry``.
      lengths: optional int ``[*batch]``, ``0 <= lengths <= T``.  Steps ``t >= lengths`` are
        padding: their inputs are never read (replaced by zeros before the step, so NaN or
        inf there cannot reach outputs or gradients), they leave the carry unchanged and
        output zeros, and their input gradients are exactly zero.  Concrete lengths outside
        ``[0, T]`` raise ``ValueError``; traced ones (under ``jax.jit``) are clamped to
        ``[0, T]``, in every direction, or checked with ``debug=True``.
      reverse: read each sequence from its last valid step back to its first.  Outputs stay
        aligned with input positions (``ys[t]`` is the output right after reading ``xs[t]``)
        so forward and reverse outputs concatenate directly.  A Python bool.
      resets: optional episode starts, bool ``[*batch, T]`` (``[T, *batch]`` with
        ``time_major=True``; integers 0/1 are accepted too).  ``resets[..., t]`` set marks
        ``t`` as the first step of a new episode (in the sequence's forward time): each
        episode is run from the initial carry (``carry``, or the zero carry), exactly as if
        it had been unrolled on its own, outputs and gradients alike (the gradient that
        would cross an episode boundary goes to the initial carry instead).  Forward: the
        carry entering step ``t`` is the initial carry where ``resets[t]`` is set (so a
        reset at ``t = 0`` changes nothing).  With ``reverse=True`` episodes are read
        right to left, each from its last step: the carry entering step ``t - 1`` is the
        initial carry where ``resets[t]`` is set.  A reset on a padded step (``t >=
        lengths``) has no effect; ``carry_T`` is the carry after the last step read (the
        last episode's forward, the first episode's with ``reverse``).  The reset is one
        ``jnp.where`` on the carry inside the same scan, in every strategy below;
        ``resets=None`` adds nothing to the program.  Concrete integer values other than
        0/1 raise ``ValueError``; traced ones count as set where nonzero (or are checked
        with ``debug=True``).
      time_major: whether ``xs`` (and the returned ``ys``) are ``[T, *batch, F]``.
      unroll: passed to ``lax.scan``.
      return_carries: also return the carry after every step, stacked along the time axis
        (aligned like ``ys``; LSTM ``c_t`` included), for diagnostics.
      hoist: project the inputs before the scan (``True``) or inside it (``False``).  The
        default (``None``) is :func:`default_strategy`'s for this backend and shape: hoisted
        on accelerators; on CPU the strategy measured fastest for the nearest shape
        (``jrnn/tuned.py``, ``python -m benchmarks.tune``).  On CPU a call that is not
        differentiated (inference) projects inside the scan whatever the training strategy:
        measured 1.7-2.3x faster there (``docs/guide/unroll.md``).
      vjp: how ``jax.grad`` differentiates the scan.  ``"hoisted"`` is a custom VJP built
        from the cell's pieces: the reverse scan holds only the element-wise gate backward
        and one ``[B, k'H] x [k'H, H]`` product per step (the forward pass saves each step's
        VJP of the gates where its residuals are per-step data, so the backward evaluates
        no transcendental again), and the weight and input gradients are computed after
        it as single large matmuls over all time steps.  ``"autodiff"``
        differentiates the scan as written (and supports forward-mode ``jax.jvp``/``jacfwd``,
        which custom VJPs do not: pass ``vjp="autodiff"`` for forward mode).  The default
        (``None``) is :func:`default_strategy`'s: ``"hoisted"`` on accelerators; on CPU the
        measured choice for the shape (``"hoisted"`` for long sequences in small batches,
        ``"autodiff"`` elsewhere).  ``return_carries=True`` always uses ``"autodiff"``.
      remat: memory budget of BPTT.  ``"none"`` keeps every step's residuals; ``"step"``
        checkpoints each step (keeps only the carries, recomputes the gates);
        ``"sqrt"`` checkpoints chunks of about √T steps (keeps about √T carries plus one
        chunk's residuals).  Both recompute the forward pass during the backward pass and
        imply ``hoist=False, vjp="autodiff"``.
      debug: check traced ``lengths`` (and integer ``resets``) with
        ``jax.experimental.checkify`` instead of clamping them: run ``err, out =
        checkify.checkify(jax.jit(f))(...)`` and ``err.throw()`` raises the out-of-range
        message.
      key: a PRNG key for a regularised cell (:func:`jrnn.zoneout`,
        :func:`jrnn.recurrent_dropout`): with a key the cell samples its noise for the whole
        sequence before the scan (``cell.noise``; independent per batch element, and per
        step where the noise is per step) and each step reads its time slice
        (``cell.train_step``).  Without a key (evaluation) the cell's deterministic form
        runs.  A plain cell ignores ``key`` (its program is unchanged).  Training a
        regularised cell runs the in-step scan differentiated by autodiff (``hoist`` and
        ``vjp`` are ignored; ``remat`` is honoured).
      method: ``"scan"`` (default): the sequential ``lax.scan``.  ``"newton"`` /
        ``"quasi-newton"``: parallel in time, Newton's method on the whole trajectory with
        full / diagonal Jacobians (DEER, Lim et al. 2023; quasi-DEER, Gonzalez et al. 2024),
        stopped on the true residual and falling back to the scan where it does not
        converge, so the results are the scan's (to the tolerance); gradients by the
        implicit function theorem (see :mod:`jrnn.newton`, and
        :func:`jrnn.newton.solve` for its options and diagnostics).  ``hoist``, ``vjp``,
        ``remat`` and ``unroll`` do not apply to it; it does not train regularised cells
        (with ``key``).  ``"auto"``: :func:`jrnn.newton.auto_method` picks (the scan on CPU).
        A cell with ``affine`` (an element-wise linear recurrence: :func:`jrnn.mingru`,
        :func:`jrnn.minlstm`, :func:`jrnn.lru`) is instead evaluated by
        ``jax.lax.associative_scan`` for ``"newton"``/``"quasi-newton"`` (exact: Newton's
        method on a linear recurrence converges in one step; :mod:`jrnn.linear_scan`),
        with the same ``carry``, ``lengths``, ``reverse``, ``resets``, batch axes,
        ``time_major`` and ``return_carries`` semantics and ordinary autodiff; for it
        ``"auto"`` follows :func:`jrnn.linear_scan.prefer_associative` (the scan on CPU,
        measured faster at every ``T`` up to 16384).  Training it with a ``key`` and
        :func:`jrnn.newton.solve` use the paths above.

    Returns:
      ``(ys, carry_T)`` with ``ys: [*batch, T, output_size]`` (or time-major), or
      ``(ys, carry_T, carries)`` with ``return_carries=True``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.lstm(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> xs = jnp.ones((2, 5, 3))  # [batch, T, features]
      >>> ys, carry = jrnn.unroll(cell, params, xs, lengths=jnp.array([5, 2]))
      >>> ys.shape, carry.c.shape
      ((2, 5, 4), (2, 4))
      >>> bool(jnp.all(ys[1, 2:] == 0))  # padded steps output zeros
      True
      >>> resets = jnp.zeros((2, 5), bool).at[0, 3].set(True)  # a new episode at t=3
      >>> ys_r, _ = jrnn.unroll(cell, params, xs, resets=resets)
      >>> bool(jnp.allclose(ys_r[0, 3:], jrnn.unroll(cell, params, xs[0, 3:])[0]))
      True
    """
    return _run(
        cell,
        params,
        xs,
        carry,
        lengths,
        reverse=reverse,
        resets=resets,
        time_major=time_major,
        unroll=unroll,
        return_carries=return_carries,
        hoist=hoist,
        vjp=vjp,
        remat=remat,
        debug=debug,
        where="unroll",
        key=key,
        method=method,
    )


def _run(
    cell: Cell,
    params: Params,
    xs: Array,
    carry: Carry | None,
    lengths: Array | None,
    *,
    reverse: bool,
    resets: Array | None = None,
    time_major: bool,
    unroll: int | bool,
    return_carries: bool,
    hoist: bool | None,
    vjp: VJPMode | None,
    remat: RematMode,
    debug: bool,
    where: str,
    pname: str = "params",
    cname: str = "carry",
    key: PRNGKey | None = None,
    method: Method = "scan",
    newton_options: Any = None,
    return_info: bool = False,
):
    """:func:`unroll` with the names its messages use (``stack.apply`` passes its own).

    ``newton_options`` (a :class:`jrnn.newton.NewtonOptions`) and ``return_info`` (append
    the :class:`jrnn.newton.NewtonInfo`) serve :func:`jrnn.newton.solve`."""
    if not isinstance(cell, Cell):
        raise TypeError(f"{where}: `cell` must be a jrnn.Cell, got {type(cell).__name__}")
    reverse = check_bool("reverse", reverse, where)
    time_major = check_bool("time_major", time_major, where)
    return_carries = check_bool("return_carries", return_carries, where)
    debug = check_bool("debug", debug, where)
    if hoist is not None:
        hoist = check_bool("hoist", hoist, where)
    if not isinstance(unroll, bool):
        check_int("unroll", unroll, where)
    if vjp is not None:
        check_choice("vjp", vjp, ("hoisted", "autodiff"), where)
    check_choice("remat", remat, ("none", "step", "sqrt"), where)
    check_choice("method", method, ("scan", "newton", "quasi-newton", "auto"), where)
    if key is not None:
        key = check_key(key, where)

    input_size = check_params(cell, params, where, pname)
    xs = check_float_input("xs", xs, where)
    layout = "[T, *batch, input_size]" if time_major else "[*batch, T, input_size]"
    if xs.ndim < 2:
        raise ValueError(
            f"{where}: `xs` must have shape {layout} (rank >= 2), got {_shape_str(xs.shape)}"
        )
    check_features("xs", xs, input_size, where, layout)
    if not time_major:
        xs = jnp.moveaxis(xs, -2, 0)
    num_steps, batch_shape = xs.shape[0], xs.shape[1:-1]

    dtype = compute_dtype(cell, params)
    params = cast_tree(params, dtype)
    template = cell.initial_carry(params, batch_shape)
    if carry is not None:
        carry = check_carry(carry, template, where, cname, cell.name, batch_shape)
        carry = cast_tree(carry, dtype)
    else:
        carry = template
    carry = vary_like(carry, xs, params)  # inside shard_map: typed like the body's output
    xs = xs.astype(dtype)
    if resets is not None:
        r_layout = "[T, *batch]" if time_major else "[*batch, T]"
        r_shape = (num_steps, *batch_shape) if time_major else (*batch_shape, num_steps)
        resets = check_resets(resets, r_shape, where, r_layout, debug=debug)
        if not time_major:
            resets = jnp.moveaxis(resets, -1, 0)

    mesh = host_mesh(xs, batch_shape, cell.hidden_size)  # every core of a CPU, if worth it
    defaults = default_strategy(  # measured for the batch each device runs
        batch=math.prod(batch_shape) // (1 if mesh is None else mesh.size),
        steps=num_steps,
        hidden=cell.hidden_size,
    )
    # inference (the custom VJP's primal) on CPU: in-step unless the caller chose
    infer_hoist = hoist if hoist is not None else jax.default_backend() != "cpu"
    hoist = defaults["hoist"] if hoist is None else hoist
    vjp = defaults["vjp"] if vjp is None else vjp
    mask, flipped = None, False
    if lengths is not None:
        lengths = check_lengths(lengths, batch_shape, num_steps, where, debug=debug)
        steps = jnp.arange(num_steps, dtype=lengths.dtype)
        mask = steps.reshape((num_steps,) + (1,) * len(batch_shape)) < lengths
        # padded inputs are never read: zeros instead of whatever they hold, so that
        # NaN/inf there cannot reach the outputs or (as NaN * 0) the gradients
        xs = jnp.where(mask[..., None], xs, jnp.zeros_like(xs))
    if resets is not None:
        resets = _carry_resets(resets, mask, reverse)
    guess = None if newton_options is None else newton_options.guess
    if guess is not None:  # a warm start of jrnn.newton: time-major like xs
        nb = len(batch_shape)
        g_shape = (  # each carry leaf with a time axis where xs has it
            (lambda a: (num_steps, *a.shape))
            if time_major
            else (lambda a: (*a.shape[:nb], num_steps, *a.shape[nb:]))
        )
        g_template = jax.tree.map(lambda a: jax.ShapeDtypeStruct(g_shape(a), a.dtype), template)
        guess = check_carry(guess, g_template, where, "guess", cell.name)
        if not time_major:
            guess = jax.tree.map(lambda a: jnp.moveaxis(a, nb, 0), guess)
        guess = cast_tree(guess, dtype)
    if lengths is not None and reverse:  # run forward over the sequences flipped within
        xs = _flip(xs, lengths)  # their lengths
        if resets is not None:
            resets = _flip(resets, lengths)
        if guess is not None:
            guess = jax.tree.map(lambda a: _flip(a, lengths), guess)
        reverse, flipped = False, True

    noise = None
    if key is not None and cell.noise is not None:  # training a regularised cell
        noise = cell.noise(key, params, xs.shape)  # sampled for all steps before the scan
        hoist, vjp = False, "autodiff"
    if remat != "none":  # recompute inside the scan: project in-step, differentiate the scan
        hoist, vjp = False, "autodiff"
    info = None
    affine = False
    if cell.affine is not None and method != "scan" and noise is None and newton_options is None:
        # a linear recurrence: the associative scan is exact (Newton converges in one step)
        affine = num_steps > 0 and (method != "auto" or linear_scan.prefer_associative(num_steps))
        method = method if affine else "scan"
    if method != "scan" and not affine:  # parallel in time (jrnn.newton); "auto" may choose
        from jrnn import newton  # the scan

        method = newton.resolve_method(method, template, xs.shape, noise is not None, where)
    if affine:
        emit = "carries" if return_carries else "y"
        carry, out = linear_scan.associative_unroll(
            cell, params, xs, carry, mask, resets, reverse, emit
        )
    elif method != "scan":
        options = newton.check_options(newton_options or newton.NewtonOptions(), where)
        carry, out, info = newton.parallel_forward(
            cell,
            params,
            xs,
            carry,
            mask,
            resets,
            reverse=reverse,
            method=method,
            options=options,
            guess=guess,
        )
        out = out if return_carries else out[0]
    else:
        opts = _ScanOptions(cell, hoist, reverse, unroll, remat, infer_hoist)
        emit = "carries" if return_carries else "y"

        def scan(params, xs, carry, mask, resets, noise):
            if return_carries or vjp == "autodiff":
                return _forward(opts, params, xs, carry, mask, resets, emit, noise)
            out, carry = _scan_hoisted_vjp(opts, params, xs, carry, mask, resets)
            return carry, out

        if mesh is None:
            carry, out = scan(params, xs, carry, mask, resets, noise)
        else:  # every core of the CPU: the batch split over its host devices
            carry, out = _split_batch(scan, mesh, params, xs, carry, mask, resets, noise)
    if flipped:
        out = jax.tree.map(lambda a: _flip(a, lengths), out)

    if not time_major:
        out = jax.tree.map(lambda a: jnp.moveaxis(a, 0, -2), out)
    if return_info:
        return out, carry, info
    if return_carries:
        ys, carries = out
        return ys, carry, carries
    return out, carry


def _split_batch(scan, mesh, params, xs, carry, mask, resets, noise):
    """``scan`` inside ``shard_map``: the first batch axis split over ``mesh`` (time-major
    ``xs``, ``mask``, ``resets``: axis 1; the carry and per-sequence noise: axis 0; per-step
    noise: axis 1), the parameters replicated; their gradient is summed once, at the
    boundary, after the backward scan."""
    split_t, split_b, rep = P(None, DATA_AXIS), P(DATA_AXIS), P()
    noise_specs = None
    if noise is not None:
        seq_noise, step_noise = noise
        noise_specs = (
            jax.tree.map(lambda _: split_b, seq_noise),
            jax.tree.map(lambda _: split_t, step_noise),
        )

    def inner(params, xs, carry, mask, resets, noise):
        # a device-varying view of the parameters: each device's parameter gradient is its
        # shard's alone (also through the hand-written VJP), summed where it leaves
        params, carry = vary_like((params, carry), xs)
        return scan(params, xs, carry, mask, resets, noise)

    out_carry = jax.tree.map(lambda _: split_b, carry)
    return jax.shard_map(
        inner,
        mesh=mesh,
        in_specs=(rep, split_t, split_b, split_t, split_t, noise_specs),
        out_specs=(out_carry, split_t),
    )(params, xs, carry, mask, resets, noise)


# --------------------------------------------------------------------------------------
# the scan and its hand-structured backward pass


def _carry_resets(resets: Array, mask: Array | None, reverse: bool) -> Array:
    """Episode starts ``resets`` (bool ``[T, *batch]``, forward time) -> where the carry
    entering each step, in the order the scan reads the steps, is the initial carry.

    Forward that is ``resets[t]``; reading backwards the carry entering step ``t`` follows
    step ``t + 1``, so it is ``resets[t + 1]`` (nothing for ``t = T - 1``).  Resets on padded
    steps (``mask`` false) are dropped."""
    if mask is not None:
        resets = resets & mask
    if reverse:
        resets = jnp.zeros_like(resets).at[:-1].set(resets[1:])
    return resets


def _reset(carry, carry0, r_t):
    """The carry entering a step: ``carry0`` where ``r_t`` (bool ``[*batch]``) is set."""
    if r_t is None:
        return carry
    r = r_t[..., None]
    return jax.tree.map(lambda c0, c: jnp.where(r, c0, c), carry0, carry)


class _ScanOptions(NamedTuple):
    cell: Cell
    hoist: bool
    reverse: bool
    unroll: int
    remat: str = "none"
    infer_hoist: bool | None = None  # hoist when not differentiated (None: as hoist)


def _gate_step(cell: Cell, params, carry, xa_t, ha_t, m_t):
    """``cell.gates`` plus masking: padded steps keep the carry and output zeros."""
    new_carry, y_t = cell.gates(params, carry, xa_t, ha_t)
    return _mask_step(carry, new_carry, y_t, m_t)


def _gate_fn(cell: Cell, params, m_t):
    """The element-wise step as a function of ``(gate params, carry, xa_t, ha_t)``, the
    arguments the hand-structured backward differentiates it in."""
    return lambda g, c, a, h: _gate_step(cell, {**params, **g}, c, a, h, m_t)


def _gate_params(cell: Cell, params):
    return {k: params[k] for k in cell.gate_params}


def _mask_step(carry, new_carry, y_t, m_t):
    """Padded steps (``m_t`` false) keep ``carry`` and output zeros."""
    if m_t is None:
        return new_carry, y_t
    m = m_t[..., None]
    new_carry = jax.tree.map(lambda n, o: jnp.where(m, n, o), new_carry, carry)
    return new_carry, jnp.where(m, y_t, jnp.zeros_like(y_t))


def _forward(opts: _ScanOptions, params, xs, carry, mask, resets, emit: str, noise=None):
    """The forward scan over time-major ``xs`` ``[T, *batch, I]``.

    ``noise``: ``None``, or a regularised cell's ``(seq_noise, step_noise)`` (see
    ``Cell.noise``): then every step is ``cell.train_step`` reading the noise's time slice,
    projected in the step (``emit`` must not be ``"residuals"``).

    ``resets`` (bool ``[T, *batch]`` or ``None``): where the carry entering a step (in scan
    order) is replaced by the initial ``carry``.  ``emit``: ``"y"`` -> ys; ``"carries"`` ->
    (ys, carry after each step); ``"residuals"`` -> (ys, (carry the step read, after any
    reset, xa, ha)) for the backward pass; ``"linearized"`` -> (ys, (``h`` the step read,
    the step's VJP)): the backward then applies each step's saved VJP instead of
    linearising the gates again (see :func:`_saves_step_vjps`).
    """
    cell = opts.cell
    w_rec = cell.recurrent_kernel(params)
    inputs = cell.project(params, xs) if opts.hoist else xs
    carry0 = carry

    if noise is not None:
        seq_noise, step_noise = noise
        inputs = (xs, step_noise)

    def body(c, inp):
        x_t, m_t, r_t = inp
        c = _reset(c, carry0, r_t)
        if noise is not None:
            x_t, n_t = x_t
            new_c, y_t = cell.train_step(params, c, x_t, seq_noise, n_t)
            new_c, y_t = _mask_step(c, new_c, y_t, m_t)
            return new_c, (y_t if emit == "y" else (y_t, new_c))
        xa_t = x_t if opts.hoist else cell.project(params, x_t)
        ha_t = c.h @ w_rec
        if emit == "linearized":
            gates = _gate_fn(cell, params, m_t)
            (new_c, y_t), step_vjp = jax.vjp(gates, _gate_params(cell, params), c, xa_t, ha_t)
            return new_c, (y_t, (c.h, step_vjp))
        new_c, y_t = _gate_step(cell, params, c, xa_t, ha_t, m_t)
        if emit == "y":
            return new_c, y_t
        if emit == "carries":
            return new_c, (y_t, new_c)
        return new_c, (y_t, (c, xa_t, ha_t))

    scanned = (inputs, mask, resets)
    if opts.remat == "none":
        return jax.lax.scan(body, carry, scanned, reverse=opts.reverse, unroll=opts.unroll)
    if opts.remat == "step":
        return jax.lax.scan(
            jax.checkpoint(body), carry, scanned, reverse=opts.reverse, unroll=opts.unroll
        )
    return _sqrt_remat_scan(body, carry, inputs, mask, resets, opts)


def _sqrt_remat_scan(body, carry, xs, mask, resets, opts: _ScanOptions):
    """Nested √T checkpointing: an outer scan over ``n ≈ √T`` chunks of ``k ≈ √T`` steps
    whose inner scan is ``jax.checkpoint``-ed, so the backward pass keeps only the ``n``
    chunk-boundary carries plus one chunk's residuals at a time.  A ragged last chunk is
    padded with masked steps (they leave the carry unchanged) that never reset.  ``xs`` may
    be a pytree whose first leaf is the inputs ``[T, *batch, I]`` (and the rest a noise
    slice with a leading ``T`` axis)."""
    x0 = jax.tree.leaves(xs)[0]
    num_steps, batch_shape = x0.shape[0], x0.shape[1:-1]
    if opts.reverse:
        xs = jax.tree.map(lambda a: jnp.flip(a, 0), xs)
        mask = None if mask is None else jnp.flip(mask, 0)
        resets = None if resets is None else jnp.flip(resets, 0)
    k = max(1, math.isqrt(num_steps - 1) + 1) if num_steps > 1 else 1
    n = -(-num_steps // k)
    pad = n * k - num_steps
    if pad:
        if mask is None:
            mask = jnp.ones((num_steps,) + batch_shape, bool)
        xs = jax.tree.map(
            lambda a: jnp.concatenate([a, jnp.zeros((pad,) + a.shape[1:], a.dtype)]), xs
        )
        mask = jnp.concatenate([mask, jnp.zeros((pad,) + batch_shape, bool)])
        if resets is not None:
            resets = jnp.concatenate([resets, jnp.zeros((pad,) + batch_shape, bool)])
    chunk = lambda a: a.reshape((n, k) + a.shape[1:])

    @jax.checkpoint
    def inner(c, chunk_inputs):
        return jax.lax.scan(body, c, chunk_inputs, unroll=opts.unroll)

    carry, out = jax.lax.scan(inner, carry, jax.tree.map(chunk, (xs, mask, resets)))
    out = jax.tree.map(lambda a: a.reshape((n * k,) + a.shape[2:])[:num_steps], out)
    if opts.reverse:
        out = jax.tree.map(lambda a: jnp.flip(a, 0), out)
    return carry, out


def _flat2(a: Array) -> Array:
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])  # also for a zero-width a


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _scan_hoisted_vjp(opts: _ScanOptions, params, xs, carry, mask, resets):
    if opts.infer_hoist is not None:  # not differentiated: the inference path
        opts = opts._replace(hoist=opts.infer_hoist)
    carry, ys = _forward(opts, params, xs, carry, mask, resets, emit="y")
    return ys, carry


def _saves_step_vjps(opts: _ScanOptions, params, xs, carry, mask) -> bool:
    """Whether the forward pass saves every step's VJP of the element-wise gates (then the
    backward only applies them: no transcendental is evaluated twice; 1.1-1.3x faster
    training on CPU, ``benchmarks/results/tune.md``) rather than the step's inputs (and
    linearises the gates again in the backward).

    Only when every residual of that VJP is per-step data ``[*batch, ...]``: a residual
    that is a parameter (a reset-before GRU's ``w_hn``, peepholes, layer-norm gains) would
    be stored once per step.  Decided on shapes, with a batch size no parameter has."""
    cell = opts.cell
    nb = xs.ndim - 2
    fake = 1 + max((d for a in jax.tree.leaves(params) for d in a.shape), default=1)
    fake = max(fake, 1 + max(xs.shape))
    batch = (fake,) * nb

    def leaves(params, carry, x_t, m_t):
        xa_t = cell.project(params, x_t)
        ha_t = carry.h @ cell.recurrent_kernel(params)
        gates = _gate_fn(cell, params, m_t)
        return jax.tree.leaves(jax.vjp(gates, _gate_params(cell, params), carry, xa_t, ha_t)[1])

    spec = lambda a: jax.ShapeDtypeStruct(batch + a.shape[nb:], a.dtype)
    abstract_carry = jax.tree.map(spec, carry)
    x_t = jax.ShapeDtypeStruct(batch + xs.shape[-1:], xs.dtype)
    m_t = None if mask is None else jax.ShapeDtypeStruct(batch, mask.dtype)
    shapes = jax.eval_shape(leaves, params, abstract_carry, x_t, m_t)
    return all(s.shape[:nb] == batch for s in shapes)


def _scan_fwd(opts, params, xs, carry, mask, resets):
    saved = _saves_step_vjps(opts, params, xs, carry, mask)
    emit = "linearized" if saved else "residuals"
    carry, (ys, residuals) = _forward(opts, params, xs, carry, mask, resets, emit=emit)
    return (ys, carry), (params, xs, mask, resets, residuals)


def _scan_bwd(opts, res, cotangents):
    """BPTT from the cell's pieces.  Per step: the VJP of the element-wise ``gates`` and
    ``dh_{t-1} += dha_t @ w_rec.T``.  After the reverse scan: ``dw_rec = Σ_t h_{t-1}^T dha_t``
    and the projection's VJP (``dw_ih = Σ_t x_t^T dxa_t``, ``db``, ``dxs``) as one matmul
    each over all time steps.

    With ``resets`` the carry a reset step read is the initial carry: its cotangent does
    not flow on into the previous episode but is added to the initial carry's (an extra
    ``[*batch, ...]`` accumulator in the reverse scan)."""
    cell = opts.cell
    params, xs, mask, resets, residuals = res
    dys, dcarry_T = cotangents
    w_rec_t = cell.recurrent_kernel(params).T
    gate_params = _gate_params(cell, params)
    saved = len(residuals) == 2  # (h_prev, step VJPs) or (c_prev, xa, ha)
    steps = residuals[1] if saved else residuals

    def body(acc, inp):
        dc, dgp, dc0 = acc
        step_t, dy_t, m_t, r_t = inp
        if saved:
            step_vjp = step_t
        else:
            c_tm1, xa_t, ha_t = step_t
            gates = _gate_fn(cell, params, m_t)
            _, step_vjp = jax.vjp(gates, gate_params, c_tm1, xa_t, ha_t)
        dg, dc_tm1, dxa_t, dha_t = step_vjp((dc, dy_t))
        dc_tm1 = dc_tm1._replace(h=dc_tm1.h + dha_t @ w_rec_t)
        if r_t is not None:  # the step read the initial carry: route its cotangent there
            r = r_t[..., None]
            zero = lambda d: jnp.zeros_like(d)
            dc0 = jax.tree.map(lambda a, d: a + jnp.where(r, d, zero(d)), dc0, dc_tm1)
            dc_tm1 = jax.tree.map(lambda d: jnp.where(r, zero(d), d), dc_tm1)
        # one array where both products entered as a sum (the LSTM's xa + ha): written once
        return (dc_tm1, jax.tree.map(jnp.add, dgp, dg), dc0), (
            dxa_t,
            None if dha_t is dxa_t else dha_t,
        )

    zeros_gp = jax.tree.map(jnp.zeros_like, gate_params)
    zeros_c0 = None if resets is None else jax.tree.map(jnp.zeros_like, dcarry_T)
    (dcarry0, dgp, dc0), (dxa, dha) = jax.lax.scan(
        body,
        (dcarry_T, zeros_gp, zeros_c0),
        (steps, dys, mask, resets),
        reverse=not opts.reverse,
        unroll=opts.unroll,
    )
    if resets is not None:
        dcarry0 = jax.tree.map(jnp.add, dcarry0, dc0)
    dha = dxa if dha is None else dha
    h_prev = residuals[0] if saved else residuals[0].h
    dw_rec = _flat2(h_prev).T @ _flat2(dha)
    _, rec_vjp = jax.vjp(cell.recurrent_kernel, params)
    _, proj_vjp = jax.vjp(cell.project, params, _flat2(xs))  # 2-d: one plain matmul each
    _, gp_vjp = jax.vjp(partial(_gate_params, cell), params)
    (dp_rec,) = rec_vjp(dw_rec)
    dp_proj, dxs = proj_vjp(_flat2(dxa))
    dxs = dxs.reshape(xs.shape)
    (dp_gates,) = gp_vjp(dgp)
    dparams = jax.tree.map(lambda a, b, c: a + b + c, dp_rec, dp_proj, dp_gates)
    return dparams, dxs, dcarry0, None, None


_scan_hoisted_vjp.defvjp(_scan_fwd, _scan_bwd)


# --------------------------------------------------------------------------------------
# stacks


class Stack(NamedTuple):
    """Layers of one cell, optionally bidirectional, like ``torch.nn.LSTM``.

    ``params`` and carries are nested tuples ``[layer][direction]`` (direction 0 reads
    forward, 1 backward).

    Attributes:
      init: ``init(key, input_size) -> params``.
      apply: ``apply(params, xs, *, carries=None, lengths=None, resets=None, key=None,
        time_major=False, unroll=1, hoist=None, vjp=None, remat="none", debug=False,
        method="scan") -> (ys, carries_T)`` (the options as in :func:`unroll`, ``method``
        passed to every layer; ``resets`` reaches every layer
        and both directions, so each episode runs through the whole stack on its own;
        ``key`` drives the inter-layer dropout and, for a regularised cell, is split into
        one independent key per layer and direction);
        ``ys: [*batch, T, D * output_size]`` (``D = 2`` when bidirectional, directions
        concatenated ``[forward, backward]`` on the feature axis).
      initial_carry: ``initial_carry(params, batch_shape=()) -> carries``.
      cell, num_layers, bidirectional, dropout: the configuration.

    Examples:
      >>> import jrnn
      >>> jrnn.stack(jrnn.gru(8), num_layers=2, bidirectional=True)
      stack(gru(hidden_size=8, reset_after=False, layer_norm=False, gate_fn=sigmoid, activation=tanh, dtype=None, param_dtype=float32), num_layers=2, bidirectional=True, dropout=0.0)
    """  # noqa: E501

    init: Any
    apply: Any
    initial_carry: Any
    cell: Cell
    num_layers: int
    bidirectional: bool
    dropout: float

    def __repr__(self) -> str:
        return (
            f"stack({self.cell.name}, num_layers={self.num_layers}, "
            f"bidirectional={self.bidirectional}, dropout={self.dropout})"
        )


def stack(
    cell: Cell, num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.0
) -> Stack:
    """Stacks ``num_layers`` layers of ``cell`` (``torch.nn.LSTM`` semantics).

    Layer 0 reads ``xs``; layer ``l > 0`` reads the previous layer's output, the
    concatenation ``[forward, backward]`` when bidirectional.  The backward direction runs
    ``unroll(..., reverse=True)`` with the same ``lengths`` (checked, or clamped when traced,
    exactly as in :func:`unroll`); ``resets`` likewise reaches every layer and both
    directions (the backward one reads episodes right to left as in :func:`unroll`), so a
    stack over concatenated episodes equals the stack over each episode alone.  Dropout with
    rate ``dropout`` acts on every layer's output except the last, and only when ``apply``
    gets a ``key`` (evaluation passes none).

    Args:
      cell: the cell of every layer and direction.
      num_layers: number of layers (>= 1).
      bidirectional: add a backward direction to every layer.
      dropout: drop rate between layers, in ``[0, 1)``.

    Returns:
      A :class:`Stack`.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> net = jrnn.stack(jrnn.lstm(4), num_layers=2, bidirectional=True)
      >>> params = net.init(jax.random.key(0), 3)
      >>> ys, carries = net.apply(params, jnp.ones((2, 5, 3)), lengths=jnp.array([5, 3]))
      >>> ys.shape, len(carries), len(carries[0])
      ((2, 5, 8), 2, 2)
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"stack: `cell` must be a jrnn.Cell, got {type(cell).__name__}")
    check_int("num_layers", num_layers, "stack")
    bidirectional = check_bool("bidirectional", bidirectional, "stack")
    if (
        isinstance(dropout, bool)
        or not isinstance(dropout, int | float)
        or not (0.0 <= dropout < 1.0)
    ):
        raise ValueError(f"stack: `dropout` must lie in [0, 1), got {dropout!r}")
    num_dirs = 2 if bidirectional else 1
    where = "stack.apply"

    def init(key: PRNGKey, input_size: int) -> tuple[tuple[Params, ...], ...]:
        check_int("input_size", input_size, "stack.init")
        keys = jax.random.split(key, num_layers * num_dirs).reshape(num_layers, num_dirs)
        layers = []
        for layer in range(num_layers):
            size = input_size if layer == 0 else num_dirs * cell.output_size
            layers.append(tuple(cell.init(keys[layer, d], size) for d in range(num_dirs)))
        return tuple(layers)

    def _nested(tree, name, fn_where):
        if (
            not isinstance(tree, tuple | list)
            or len(tree) != num_layers
            or any(
                not isinstance(p, tuple | list) or hasattr(p, "_fields") or len(p) != num_dirs
                for p in tree
            )
        ):
            got = (
                f"{type(tree).__name__} of length {len(tree)}"
                if isinstance(tree, tuple | list)
                else type(tree).__name__
            )
            raise ValueError(
                f"{fn_where}: `{name}` must be nested tuples [num_layers={num_layers}]"
                f"[directions={num_dirs}], got {got}: {jax.tree.structure(tree)}"
            )

    def _check_params(params, fn_where):
        _nested(params, "params", fn_where)
        for layer, layer_params in enumerate(params):
            for d, p in enumerate(layer_params):
                size = check_params(cell, p, fn_where, f"params[{layer}][{d}]")
                want = num_dirs * cell.output_size
                if layer > 0 and size is not None and size != want:
                    raise ValueError(
                        f"{fn_where}: `params[{layer}][{d}]['w_ih']` must have {want} rows "
                        f"(layer {layer} reads the previous layer's output: {num_dirs} "
                        f"direction(s) x output_size={cell.output_size}), got "
                        f"{_shape_str(p['w_ih'].shape)}"
                    )

    def initial_carry(params, batch_shape: tuple[int, ...] = ()):
        _check_params(params, "stack.initial_carry")
        return tuple(tuple(cell.initial_carry(p, batch_shape) for p in layer) for layer in params)

    def apply(
        params,
        xs: Array,
        *,
        carries=None,
        lengths: Array | None = None,
        resets: Array | None = None,
        key: PRNGKey | None = None,
        time_major: bool = False,
        unroll: int | bool = 1,
        hoist: bool | None = None,
        vjp: VJPMode | None = None,
        remat: RematMode = "none",
        debug: bool = False,
        method: Method = "scan",
    ):
        _check_params(params, where)
        if carries is not None:
            _nested(carries, "carries", where)
        cell_keys = None
        if key is not None:
            key = check_key(key, where)
            if cell.noise is not None:  # one independent key per layer and direction
                key, cell_root = jax.random.split(key)
                cell_keys = jax.random.split(cell_root, num_layers * num_dirs)
        finals = []
        for layer, layer_params in enumerate(params):
            outs, layer_finals = [], []
            for d, p in enumerate(layer_params):
                c0 = None if carries is None else carries[layer][d]
                ys, c_t = _run(
                    cell,
                    p,
                    xs,
                    c0,
                    lengths,
                    reverse=d == 1,
                    resets=resets,
                    time_major=time_major,
                    unroll=unroll,
                    return_carries=False,
                    hoist=hoist,
                    vjp=vjp,
                    remat=remat,
                    debug=debug,
                    where=where,
                    pname=f"params[{layer}][{d}]",
                    cname=f"carries[{layer}][{d}]",
                    key=None if cell_keys is None else cell_keys[layer * num_dirs + d],
                    method=method,
                )
                outs.append(ys)
                layer_finals.append(c_t)
            xs = outs[0] if num_dirs == 1 else jnp.concatenate(outs, axis=-1)
            finals.append(tuple(layer_finals))
            if dropout > 0.0 and key is not None and layer < num_layers - 1:
                key, sub = jax.random.split(key)
                keep = jax.random.bernoulli(sub, 1.0 - dropout, xs.shape)
                xs = jnp.where(keep, xs / (1.0 - dropout), jnp.zeros_like(xs))
        return xs, tuple(finals)

    return Stack(init, apply, initial_carry, cell, num_layers, bidirectional, float(dropout))
