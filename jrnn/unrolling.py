"""``unroll``: a cell over a sequence, as prepare → plan → engine → finish.

* [`jrnn.prepare`][] checks the arguments and lays the inputs out for the engines;
* [`jrnn.strategy`][] decides how the call runs (one [`Plan`][jrnn.strategy.Plan]);
* an engine runs it: [`jrnn.scan`][] (``lax.scan``, autodiff or the hand-structured VJP
  of [`jrnn.hoisted`][], optionally over a CPU's host devices), [`jrnn.linear_scan`][]
  (the associative scan of an element-wise linear recurrence) or [`jrnn.newton`][]
  (Newton's method in parallel over time);
* [`jrnn.prepare.finish`][] gives the outputs back in the caller's layout.

Backpropagation through time is ``jax.grad`` of [`unroll`][jrnn.unrolling.unroll].  Layers of cells
are in [`jrnn.stacks`][].
"""

from __future__ import annotations

from jrnn import linear_scan, newton, scan
from jrnn.base import Array, Carry, Cell, Method, Params, PRNGKey, RematMode, VJPMode
from jrnn.prepare import Options, check_options, finish, prepare
from jrnn.strategy import plan

__all__ = ["unroll", "run", "ENGINES"]

ENGINES = {
    "scan": scan.run,
    "associative": linear_scan.run,
    "newton": newton.run,
    "quasi-newton": newton.run,
}
"""Each [`Plan`][jrnn.strategy.Plan] engine's ``run(cell, prepared, plan) -> (carry_T,
out, info)``."""


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
    unroll: int | bool | None = None,
    return_carries: bool = False,
    hoist: bool | None = None,
    vjp: VJPMode | None = None,
    remat: RematMode = "none",
    debug: bool = False,
    key: PRNGKey | None = None,
    method: Method = "scan",
) -> tuple[Array, Carry] | tuple[Array, Carry, Carry]:
    """Runs ``cell`` over a sequence with ``jax.lax.scan``.

    Any [`jrnn.Cell`][jrnn.base.Cell] runs, a built-in one or your own
    ([`jrnn.custom_cell`][jrnn.custom.custom_cell]). For a cell with a [`jrnn.base.FastPath`][],
    ``hoist=True`` computes the input part of every pre-activation for all time steps in one matmul
    (``cell.fast.project``) before the scan, so the scan body holds only the recurrent product and
    the gates; with ``hoist=False`` the body projects one step's input itself.  Without ``lengths``
    there is no masking work at all.  How a call runs (the engine, hoisting, the backward pass,
    the host devices) is decided in one place, [`jrnn.strategy.plan`][].

    Every core of a CPU: in a process where [`jrnn.use_cpu_cores`][jrnn.sharding.use_cpu_cores] made
    several host devices, the scan runs inside ``jax.shard_map`` with the first batch axis split
    over them (the most that divide it into shards worth the exchange,
    [`jrnn.sharding.split_devices`][]) and the parameters replicated, so a plain
    ``jax.jit(jax.grad(...))`` step uses every core; outputs and gradients are those of the
    unsplit scan ([`jrnn.scan`][]).  Inside a caller's own ``shard_map``
    (``make_train_step(mesh=...)``) or on an accelerator nothing changes.

    Every argument is checked at trace time (shapes and dtypes only, see
    [`jrnn.base`][]); a mismatch raises ``ValueError``/``TypeError`` naming it.

    Args:
      cell: a [`jrnn.Cell`][jrnn.base.Cell].
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
      unroll: ``lax.scan``'s unroll factor (the results are the same for any).  The
        default (``None``): 1 when the call is differentiated; for inference on CPU, the
        factor measured fastest for the nearest shape
        ([`jrnn.strategy.inference_unroll`][]; 1.1-1.4x at ``hidden=256``), while
        ``jax.grad`` of the same call still differentiates the scan with 1; 1 when the time
        dimension is symbolic (``jax.export``).
      return_carries: also return the carry after every step, stacked along the time axis
        (aligned like ``ys``; LSTM ``c_t`` included), for diagnostics.
      hoist: project the inputs before the scan (``True``) or inside it (``False``).  The
        default (``None``) is [`jrnn.strategy.default_strategy`][]'s for this backend and
        shape: hoisted on accelerators; on CPU the strategy measured fastest for the
        nearest shape (``jrnn/tuned.py``, ``python -m benchmarks.tune``).  On CPU a call
        that is not differentiated (inference) projects inside the scan whatever the
        training strategy: measured 1.7-2.3x faster there (``docs/guide/unroll.md``).  A
        cell without ``FastPath`` always projects in its own ``step`` (``hoist=True`` is an
        error).
      vjp: how ``jax.grad`` differentiates the scan.  ``"hoisted"`` is a custom VJP built
        from the cell's pieces: the reverse scan holds only the element-wise gate backward
        and one ``[B, k'H] x [k'H, H]`` product per step (the forward pass saves each step's
        VJP of the gates where its residuals are per-step data, so the backward evaluates
        no transcendental again), and the weight and input gradients are computed after
        it as single large matmuls over all time steps.  ``"autodiff"``
        differentiates the scan as written (and supports forward-mode ``jax.jvp``/``jacfwd``,
        which custom VJPs do not: pass ``vjp="autodiff"`` for forward mode).  The default
        (``None``) is [`jrnn.strategy.default_strategy`][]'s: ``"hoisted"`` on
        accelerators; on CPU the measured choice for the shape (``"hoisted"`` for long
        sequences in small batches, ``"autodiff"`` elsewhere).  ``return_carries=True``
        always uses ``"autodiff"``, and so does a cell without ``FastPath``
        (``vjp="hoisted"`` is an error).
      remat: memory budget of BPTT.  ``"none"`` keeps every step's residuals; ``"step"``
        checkpoints each step (keeps only the carries, recomputes the gates);
        ``"sqrt"`` checkpoints chunks of about √T steps (keeps about √T carries plus one
        chunk's residuals).  Both recompute the forward pass during the backward pass and
        imply ``hoist=False, vjp="autodiff"``.
      debug: check traced ``lengths`` (and integer ``resets``) with
        ``jax.experimental.checkify`` instead of clamping them: run ``err, out =
        checkify.checkify(jax.jit(f))(...)`` and ``err.throw()`` raises the out-of-range
        message.
      key: a PRNG key for a regularised cell ([`jrnn.zoneout`][jrnn.regularisers.zoneout],
        [`jrnn.recurrent_dropout`][jrnn.regularisers.recurrent_dropout]): with a key the cell
        samples its noise for the whole sequence before the scan (``cell.noise``; independent per
        batch element, and per step where the noise is per step) and each step reads its time slice
        (``cell.train_step``).  Without a key (evaluation) the cell's deterministic form
        runs.  A plain cell ignores ``key`` (its program is unchanged).  Training a
        regularised cell runs the in-step scan differentiated by autodiff (``hoist`` and
        ``vjp`` are ignored; ``remat`` is honoured).
      method: ``"scan"`` (default): the sequential ``lax.scan``.  ``"newton"`` /
        ``"quasi-newton"``: parallel in time, Newton's method on the whole trajectory with
        full / diagonal Jacobians (DEER, Lim et al. 2023; quasi-DEER, Gonzalez et al. 2024),
        stopped on the true residual and falling back to the scan where it does not
        converge, so the results are the scan's (to the tolerance); gradients by the
        implicit function theorem (see [`jrnn.newton`][], and
        [`jrnn.newton.solve`][] for its options and diagnostics).  ``hoist``, ``vjp``,
        ``remat`` and ``unroll`` do not apply to it; it does not train regularised cells
        (with ``key``).  ``"auto"``: [`jrnn.strategy.auto_method`][] picks (the scan on
        CPU).
        A cell with ``affine`` (an element-wise linear recurrence:
        [`jrnn.mingru`][jrnn.mincells.mingru], [`jrnn.minlstm`][jrnn.mincells.minlstm],
        [`jrnn.lru`][jrnn.mincells.lru]) or with ``parallel`` (a whole-sequence form:
        [`jrnn.mlstm`][jrnn.xlstm.mlstm]) is instead evaluated by ``jax.lax.associative_scan`` for
        ``"newton"``/``"quasi-newton"`` (exact: Newton's method on a linear recurrence converges in
        one step; [`jrnn.linear_scan`][]), with the same ``carry``, ``lengths``, ``reverse``,
        ``resets``, batch axes, ``time_major`` and ``return_carries`` semantics and ordinary
        autodiff; for it ``"auto"`` follows [`jrnn.strategy.prefer_associative`][] (the scan on CPU,
        measured faster at every ``T`` up to 16384).  Training it with a ``key`` and
        [`jrnn.newton.solve`][] use the paths above.

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
    where = "unroll"
    options = check_options(
        Options(reverse, time_major, unroll, return_carries, hoist, vjp, remat, debug, method),
        where,
    )
    return run(cell, params, xs, options, carry, lengths, resets, key, where=where)


def run(
    cell: Cell,
    params: Params,
    xs: Array,
    options: Options,
    carry: Carry | None = None,
    lengths: Array | None = None,
    resets: Array | None = None,
    key: PRNGKey | None = None,
    *,
    where: str,
    pname: str = "params",
    cname: str = "carry",
):
    """[`unroll`][jrnn.unrolling.unroll] with checked [`Options`][jrnn.prepare.Options] and the
    names its
    messages use (``stack.apply`` passes its own: ``params[1][0]``, ...)."""
    prep = prepare(
        cell, params, xs, carry, lengths, resets, key, options, where=where, pname=pname,
        cname=cname,
    )  # fmt: skip
    how = plan(cell, prep, options, where=where)
    carry_T, out, _ = ENGINES[how.engine](cell, prep, how)
    return finish(prep, carry_T, out, options)
