r"""Parallel-in-time evaluation of any cell: Newton's method on the whole trajectory.

DEER (Lim et al. 2023, "Parallelizing non-linear sequential models over the sequence
length") and quasi-DEER / ELK (Gonzalez et al. 2024, "Towards Scalable and Stable
Parallelization of Nonlinear RNNs") treat the ``T`` states of a recurrence
``s_t = f(s_{t-1}, x_t)`` as the unknowns of one system of equations and solve it by
Newton's method.  Linearising ``f`` around the current guess ``s^{(i)}`` gives an affine
recurrence for the update ``δ_t = s^{(i+1)}_t - s^{(i)}_t``::

    δ_t = J_t δ_{t-1} + r_t,      δ_0 = 0,
    J_t = ∂f/∂s (s^{(i)}_{t-1}, x_t),   r_t = f(s^{(i)}_{t-1}, x_t) - s^{(i)}_t

which is solved for all ``t`` at once by ``jax.lax.associative_scan`` over the affine maps
``δ -> J_t δ + r_t`` (composition ``(J_2, r_2) ∘ (J_1, r_1) = (J_2 J_1, J_2 r_1 + r_2)``):
``O(log T)`` depth.  The state ``s_t`` is the cell's carry flattened to one vector of
``D`` numbers (the LSTM's ``(h, c)`` gives ``D = 2H``).

* ``method="newton"`` (DEER) uses the full Jacobians: ``O(T·D²)`` memory, ``D × D``
  matrix products in the scan.
* ``method="quasi-newton"`` (quasi-DEER) keeps only their diagonals: ``O(T·D)`` memory and
  element-wise products.  The diagonal is derived per cell (see
  [`jacobian_diagonal`][jrnn.newton.jacobian_diagonal]).

Either converges in at most ``T`` iterations in exact arithmetic (after iteration ``i`` the
first ``i`` states are exact), usually in far fewer.

Guarantees.  The stopping rule is the true residual
``max_t |s_t - f(s_{t-1}, x_t)| <= tol``, evaluated at the returned trajectory (not the
size of the last update).  A sequence that does not reach it within ``max_iters``
iterations (divergence, overflow, NaN) is recomputed by the sequential ``lax.scan``
(``fallback=True``, the default): the result is never a wrong trajectory.  ``info`` says
which sequences converged and which fell back.

Gradients.  The trajectory is the solution of ``S = Φ(S; θ, x, s_0)``; its VJP is given by
the implicit function theorem (a ``jax.custom_vjp``), never by differentiating through the
iterations: the adjoint ``λ_t = g_t + J_{t+1}^T λ_{t+1}`` (``g`` the cotangent of the
trajectory, ``J`` the exact Jacobians at the solution) is one reverse linear solve, then
``dθ, dx, ds_0`` are one VJP of all steps at once with cotangent ``λ``.  ``backward=
"parallel"`` solves it with a reverse associative scan over the full Jacobians
(``O(T·D²)`` memory); ``"sequential"`` with a reverse ``lax.scan`` of exact VJPs
(``O(T·D)`` memory, ``T`` sequential steps).  The default is ``"parallel"`` for
``"newton"`` and ``"sequential"`` for ``"quasi-newton"`` (which keeps its memory bound).
The quasi approximation affects only the forward iterations; gradients are exact either
way.  Forward-mode differentiation (``jax.jvp``) is not supported (a custom VJP).

Batch.  Each sequence of a batch is solved on its own (the solver is ``jax.vmap``-ed over
the batch): every sequence converges, stops and falls back independently, and ``info``
has one entry per sequence.  Under ``vmap`` the while-loop runs until the slowest
sequence has converged (finished ones are frozen).  The fallback scan runs (for the whole
batch, used only where a sequence did not converge) inside a ``lax.cond``, so it costs
nothing when every sequence converged — except under a user's own ``jax.vmap`` of the
call, where the ``cond`` becomes a ``select`` and both branches run.

Padding (``lengths``): a padded step is the identity map (Jacobian ``I``, ``y = 0``).
Resets: a step that reads the initial carry has Jacobian ``0`` and takes its input from
``s_0``.  ``reverse``: [`jrnn.unroll`][jrnn.unrolling.unroll] flips each sequence (within its
length) and the solver runs forward over it, as the scan does.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jrnn import scan
from jrnn.base import Array, Carry, Cell, Params, core_step, exportable
from jrnn.checks import check_bool, check_choice, check_int
from jrnn.prepare import Options, Prepared, check_options, finish, prepare
from jrnn.strategy import Plan, plan

NewtonMethod = Literal["newton", "quasi-newton"]
"""The parallel-in-time solvers: full Jacobians (DEER) or their diagonals (quasi-DEER)."""
Damping = Literal["none", "trust-region"]
"""Newton steps as computed (``"none"``), or limited by an adaptive trust region."""
Backward = Literal["parallel", "sequential"]
"""How the adjoint recurrence of the implicit-function-theorem VJP is solved."""

DEFAULT_TOL = {8: 1e-11, 4: 1e-5, 2: 1e-2}
"""The default residual tolerance by the itemsize of the compute dtype (float64, float32,
float16/bfloat16): a few hundred ulps of a state of size 1 in float32, ~5e4 ulps in
float64 (Newton converges quadratically, so the final residual is usually far below)."""


@exportable
class NewtonInfo(NamedTuple):
    """Diagnostics of a parallel-in-time solve, one entry per sequence (``[*batch]``).

    Attributes:
      iterations: int, Newton iterations taken (0 when the initial guess already solved
        the recurrence; rejected trust-region steps count).
      residual: the true residual ``max_t |s_t - f(s_{t-1}, x_t)|`` of the last Newton
        iterate (before any fallback; ``inf``/``nan`` when it diverged).
      converged: bool, ``residual <= tol``.
      fell_back: bool, the sequence was recomputed by the sequential scan (not converged
        and ``fallback=True``).
    """

    iterations: Array
    residual: Array
    converged: Array
    fell_back: Array


class _Config(NamedTuple):
    """The static part of a solve (hashable: a ``nondiff_argnum``)."""

    cell: Cell
    method: str
    tol: float
    max_iters: int
    damping: str
    backward: str
    fallback: bool
    trust_radius: float


# --------------------------------------------------------------------------------------
# one step on the flat state of one sequence


def _unravel_fn(cell: Cell, params: Params):
    """``(D, unravel)`` for one sequence's carry (no batch axes)."""
    flat, unravel = ravel_pytree(cell.initial_carry(params, ()))
    return flat.shape[0], unravel


def _ravel(carry: Carry) -> Array:
    return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(carry)])


def _phi(cell: Cell, params, s_prev, x_t, s0, m_t, r_t):
    """One step ``s_t = Φ_t(s_{t-1})`` of one sequence on flat states ``[D]``, with the
    reset (``r_t``: read ``s0``) and the padding (``m_t`` false: identity, ``y = 0``)."""
    _, unravel = _unravel_fn(cell, params)
    s_in = jnp.where(r_t, s0, s_prev)
    new_c, y_t = core_step(cell)(params, unravel(s_in), x_t)
    s_t = jnp.where(m_t, _ravel(new_c), s_in)
    return s_t, jnp.where(m_t, y_t, jnp.zeros_like(y_t))


def _phi_all(cell, params, s_prev, xs, s0, mask, resets):
    """All steps of one sequence at once: ``[T, D]`` states and ``[T, O]`` outputs."""
    step = lambda s, x, m, r: _phi(cell, params, s, x, s0, m, r)
    return jax.vmap(step)(s_prev, xs, mask, resets)


def _shift(S: Array, s0: Array) -> Array:
    """``[s_0, s_1, ..., s_{T-1}]``: the state each step reads."""
    return jnp.concatenate([s0[None], S[:-1]], axis=0)


# --------------------------------------------------------------------------------------
# Jacobians: full and diagonal


def _full_jacobians(cell, params, s_prev, xs, s0, mask, resets) -> Array:
    """``J_t = ∂Φ_t/∂s_{t-1}`` for all ``t``: ``[T, D, D]`` (forward mode, ``D`` JVPs)."""
    f = lambda s, x, m, r: _phi(cell, params, s, x, s0, m, r)[0]
    return jax.vmap(jax.jacfwd(f))(s_prev, xs, mask, resets)


def _diag_generic(f, s: Array) -> Array:
    """Exact diagonal of ``∂f/∂s`` for any ``f``: ``D`` JVPs, one basis vector at a time
    (``lax.map``), so the memory stays that of one JVP (``O(D)`` per step)."""
    eye = jnp.eye(s.shape[0], dtype=s.dtype)
    return jax.lax.map(lambda e: jnp.vdot(e, jax.jvp(f, (s,), (e,))[1]), eye)


def diag_kind(cell: Cell) -> str:
    """How [`jacobian_diagonal`][jrnn.newton.jacobian_diagonal] obtains the diagonal for ``cell``:
    the name of the cell's own exact diagonal (``cell.fast.diagonal``, [`jrnn.diagonals`][]), or
    ``"generic"`` (``D`` Jacobian-vector products).

    Examples:
      >>> import jrnn
      >>> [diag_kind(c) for c in (jrnn.lstm(4), jrnn.gru(4), jrnn.lstm(4, layer_norm=True))]
      ['unit_wise', 'gru_reset_before', 'generic']
    """
    fast = cell.fast
    if fast is None or fast.diagonal is None:
        return "generic"
    return getattr(fast.diagonal, "__name__", "custom")


def jacobian_diagonal(cell: Cell, params: Params, carry: Carry, x_t: Array) -> Array:
    r"""The diagonal of ``∂ s_t / ∂ s_{t-1}`` of one step, on the flat state ``[D]``.

    ``s`` is the carry flattened field by field (LSTM: ``[h, c]``).  All exact:

    * ``"unit_wise"`` (``simple_rnn``, ``lstm`` incl. peepholes, ``gru(reset_after=True)``;
      no layer norm, no projection): the gates are element-wise per unit given
      ``ha = h_{t-1} @ w_rec``: one JVP per carry field ([`jrnn.diagonals.unit_wise`][]);
    * ``"gru_reset_before"``: by hand, ``O(H²)`` per step
      ([`jrnn.diagonals.gru_reset_before`][]);
    * a cell's own ``cell.fast.diagonal`` (a custom cell may give one);
    * ``"generic"`` (any other cell): ``D`` JVPs, one basis vector at a time, memory
      ``O(D)`` per step (``O(T·D)`` for a sequence) and the compute of a full Jacobian.

    Args:
      cell: the cell.
      params: its parameters (compute dtype).
      carry: one sequence's carry (no batch axes).
      x_t: ``[input_size]``.

    Returns:
      ``[D]``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> from jax.flatten_util import ravel_pytree
      >>> cell = jrnn.lstm(3, peephole=True)
      >>> p = cell.init(jax.random.key(0), 2)
      >>> c = jrnn.LSTMState(jnp.full(3, 0.1), jnp.full(3, -0.2))
      >>> d = jacobian_diagonal(cell, p, c, jnp.ones(2))
      >>> s, unravel = ravel_pytree(c)
      >>> full = jax.jacfwd(lambda s: ravel_pytree(cell.step(p, unravel(s), jnp.ones(2))[0])[0])
      >>> bool(jnp.allclose(d, jnp.diagonal(full(s)), atol=1e-6))
      True
    """
    fast = cell.fast
    if fast is not None and fast.diagonal is not None:
        return fast.diagonal(params, carry, fast.project(params, x_t))
    flat, unravel = ravel_pytree(carry)
    step = core_step(cell)
    return _diag_generic(lambda s: _ravel(step(params, unravel(s), x_t)[0]), flat)


def _diag_jacobians(cell, params, s_prev, xs, s0, mask, resets) -> Array:
    """Diagonals of ``∂Φ_t/∂s_{t-1}`` for all ``t``: ``[T, D]`` (padding 1, reset 0)."""
    _, unravel = _unravel_fn(cell, params)

    def one(s, x, m, r):
        s_in = jnp.where(r, s0, s)
        d = jacobian_diagonal(cell, params, unravel(s_in), x)
        d = jnp.where(m, d, jnp.ones_like(d))
        return jnp.where(r, jnp.zeros_like(d), d)

    return jax.vmap(one)(s_prev, xs, mask, resets)


# --------------------------------------------------------------------------------------
# linear recurrences by associative scans


def _affine_scan(A: Array, b: Array) -> Array:
    """``u_t = A_t u_{t-1} + b_t``, ``u_0 = 0``, for all ``t``: ``A [T, D, D]`` (full) or
    ``[T, D]`` (diagonal), ``b [T, D]``."""
    if A.ndim == b.ndim:  # diagonal

        def combine(e1, e2):
            a1, b1 = e1
            a2, b2 = e2
            return a2 * a1, a2 * b1 + b2

    else:

        def combine(e1, e2):
            a1, b1 = e1
            a2, b2 = e2
            return a2 @ a1, jnp.einsum("...ij,...j->...i", a2, b1) + b2

    return jax.lax.associative_scan(combine, (A, b))[1]


def _adjoint_parallel(J: Array, g: Array) -> Array:
    """``λ_t = g_t + J_{t+1}^T λ_{t+1}`` (``λ_{T+1} = 0``) by a reverse associative scan."""
    Jt = jnp.swapaxes(J, -1, -2)[1:]  # J_{t+1}^T for t = 1..T-1
    A = jnp.concatenate([Jt, jnp.zeros_like(Jt[:1])], axis=0)  # [T, D, D], last unused
    # reversed time k = T-1-t: u_k = A_{T-1-k} u_{k-1} + g_{T-1-k}, u_k = λ_{T-1-k}
    return jnp.flip(_affine_scan(jnp.flip(A, 0), jnp.flip(g, 0)), 0)


def _adjoint_sequential(cell, params, s_prev, xs, s0, mask, resets, g: Array) -> Array:
    """The same adjoint by a reverse ``lax.scan`` of exact VJPs (``O(T·D)`` memory)."""

    def body(carry_lam, inp):
        s, x, m, r, g_t = inp
        lam = g_t + carry_lam
        _, vjp = jax.vjp(lambda v: _phi(cell, params, v, x, s0, m, r)[0], s)
        return vjp(lam)[0], lam

    _, lam = jax.lax.scan(body, jnp.zeros_like(g[0]), (s_prev, xs, mask, resets, g), reverse=True)
    return lam


# --------------------------------------------------------------------------------------
# the Newton iterations of one sequence


def _newton_one(cfg: _Config, params, xs, s0, mask, resets, guess):
    """Newton (or quasi-Newton) on one sequence: ``(S [T, D], iterations, residual)``."""
    cell = cfg.cell
    jac = _full_jacobians if cfg.method == "newton" else _diag_jacobians

    def evaluate(S):
        F, _ = _phi_all(cell, params, _shift(S, s0), xs, s0, mask, resets)
        res = jnp.max(jnp.abs(F - S))
        return F, jnp.where(jnp.isnan(res), jnp.inf, res)

    def keep_going(state):
        _, _, res, it, radius = state
        # stop when converged, diverged (inf/nan) or, damped, when the radius collapsed
        return (it < cfg.max_iters) & ~(res <= cfg.tol) & jnp.isfinite(res) & (radius > 1e-12)

    def body(state):
        S, F, res, it, radius = state
        J = jac(cell, params, _shift(S, s0), xs, s0, mask, resets)
        delta = _affine_scan(J, F - S)
        if cfg.damping == "trust-region":
            size = jnp.max(jnp.abs(delta))
            tiny = jnp.finfo(S.dtype).tiny
            delta = delta * jnp.minimum(1.0, radius / jnp.maximum(size, tiny))
        S_new = S + delta
        F_new, res_new = evaluate(S_new)
        if cfg.damping == "trust-region":
            ok = res_new < res
            S_new = jnp.where(ok, S_new, S)
            F_new = jnp.where(ok, F_new, F)
            res_new = jnp.where(ok, res_new, res)
            radius = jnp.where(ok, 2 * radius, radius / 4)
        return S_new, F_new, res_new, it + 1, radius

    F0, res0 = evaluate(guess)
    radius0 = jnp.asarray(cfg.trust_radius, guess.dtype)
    S, F, res, it, _ = jax.lax.while_loop(
        keep_going, body, (guess, F0, res0, jnp.asarray(0, jnp.int32), radius0)
    )
    return S, it, res


def _sequential(cell, params, xs, s0, mask, resets):
    """The reference: a ``lax.scan`` over the flat steps of one sequence, ``[T, D]``."""

    def body(s, inp):
        x, m, r = inp
        s_t, _ = _phi(cell, params, s, x, s0, m, r)
        return s_t, s_t

    return jax.lax.scan(body, s0, (xs, mask, resets))[1]


def _solve(cfg: _Config, params, xs, s0, mask, resets, guess):
    """Batched: ``xs [B, T, I]``, ``s0 [B, D]``, ``mask, resets [B, T]``, ``guess
    [B, T, D]`` -> ``(S [B, T, D], NewtonInfo)``."""
    S, it, res = jax.vmap(partial(_newton_one, cfg, params))(xs, s0, mask, resets, guess)
    converged = res <= cfg.tol
    if cfg.fallback:

        def rerun(_):
            seq = jax.vmap(partial(_sequential, cfg.cell, params))(xs, s0, mask, resets)
            return jnp.where(converged[:, None, None], S, seq)

        S = jax.lax.cond(jnp.all(converged), lambda _: S, rerun, None)
    fell_back = ~converged if cfg.fallback else jnp.zeros_like(converged)
    return S, NewtonInfo(it, res, converged, fell_back)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _trajectory(cfg: _Config, params, xs, s0, mask, resets, guess):
    return _solve(cfg, params, xs, s0, mask, resets, guess)


def _trajectory_fwd(cfg, params, xs, s0, mask, resets, guess):
    S, info = _solve(cfg, params, xs, s0, mask, resets, guess)
    return (S, info), (params, xs, s0, mask, resets, S)


def _trajectory_bwd(cfg, res, cotangents):
    """Implicit function theorem: one reverse linear solve for ``λ``, then one VJP."""
    params, xs, s0, mask, resets, S = res
    g = cotangents[0]
    cell = cfg.cell
    S_prev = jax.vmap(_shift)(S, s0)
    if cfg.backward == "parallel":
        J = jax.vmap(partial(_full_jacobians, cell, params))(S_prev, xs, s0, mask, resets)
        lam = jax.vmap(_adjoint_parallel)(J, g)
    else:
        lam = jax.vmap(partial(_adjoint_sequential, cell, params))(S_prev, xs, s0, mask, resets, g)

    def all_steps(p, x, s0_, sp):
        return jax.vmap(lambda *a: _phi_all(cell, p, *a)[0])(sp, x, s0_, mask, resets)

    _, vjp = jax.vjp(all_steps, params, xs, s0, S_prev)
    dparams, dxs, ds0, dS_prev = vjp(lam)
    ds0 = ds0 + dS_prev[:, 0]
    return dparams, dxs, ds0, None, None, jnp.zeros_like(S)


_trajectory.defvjp(_trajectory_fwd, _trajectory_bwd)


# --------------------------------------------------------------------------------------
# entry points


def default_tol(dtype: Any) -> float:
    """The default residual tolerance for a compute dtype
    ([`DEFAULT_TOL`][jrnn.newton.DEFAULT_TOL]).

    Examples:
      >>> import jax.numpy as jnp
      >>> default_tol(jnp.float32), default_tol(jnp.float64)
      (1e-05, 1e-11)
    """
    return DEFAULT_TOL.get(jnp.dtype(dtype).itemsize, 1e-5)


class NewtonOptions(NamedTuple):
    """Options of the parallel solvers (see [`solve`][jrnn.newton.solve]; hashable, part of the
    [`jrnn.strategy.Plan`][]).

    Examples:
      >>> NewtonOptions().damping
      'none'
    """

    tol: float | None = None
    max_iters: int | None = None
    damping: Damping = "none"
    trust_radius: float = 1.0
    backward: Backward | None = None
    fallback: bool = True


def check_solver(opts: NewtonOptions, where: str) -> NewtonOptions:
    """Checks [`NewtonOptions`][jrnn.newton.NewtonOptions] at trace time; errors name the argument.

    Examples:
      >>> check_solver(NewtonOptions(tol=0.0), "newton.solve")
      Traceback (most recent call last):
      ...
      ValueError: newton.solve: `tol` must be a positive float or None, got 0.0
    """
    if opts.tol is not None and (
        isinstance(opts.tol, bool) or not isinstance(opts.tol, int | float) or opts.tol <= 0
    ):
        raise ValueError(f"{where}: `tol` must be a positive float or None, got {opts.tol!r}")
    if opts.max_iters is not None:
        check_int("max_iters", opts.max_iters, where, minimum=0)
    check_choice("damping", opts.damping, ("none", "trust-region"), where)
    if (
        isinstance(opts.trust_radius, bool)
        or not isinstance(opts.trust_radius, int | float)
        or opts.trust_radius <= 0
    ):
        raise ValueError(
            f"{where}: `trust_radius` must be a positive float, got {opts.trust_radius!r}"
        )
    if opts.backward is not None:
        check_choice("backward", opts.backward, ("parallel", "sequential"), where)
    check_bool("fallback", opts.fallback, where)
    return opts


def run(cell: Cell, prep: Prepared, plan: Plan) -> tuple:
    """The Newton engine of [`jrnn.unroll`][jrnn.unrolling.unroll] (``plan.engine`` ``"newton"`` or
    ``"quasi-newton"``): ``(carry_T, out, info)`` time-major like the scan's, with the
    [`NewtonInfo`][jrnn.newton.NewtonInfo] of every sequence."""
    method, options = plan.engine, plan.solver or NewtonOptions()
    xs, mask, resets = prep.xs, prep.mask, prep.resets
    num_steps, batch_shape = prep.num_steps, prep.batch_shape
    n, B = len(batch_shape), math.prod(batch_shape)
    D, unravel = _unravel_fn(cell, prep.params)
    tol = default_tol(xs.dtype) if options.tol is None else float(options.tol)
    max_iters = min(num_steps, 100) if options.max_iters is None else options.max_iters
    backward = options.backward or ("parallel" if method == "newton" else "sequential")
    cfg = _Config(
        cell, method, tol, max_iters, options.damping, backward, bool(options.fallback),
        float(options.trust_radius),
    )  # fmt: skip

    flip = (lambda a: jnp.flip(a, 0)) if prep.reverse else (lambda a: a)

    def batch_major(a):  # [T, *batch, ...] -> [B, T, ...]
        a = jnp.moveaxis(flip(a), 0, n)
        return a.reshape((B, num_steps) + a.shape[n + 1 :])

    def time_major(a):  # [B, T, ...] -> [T, *batch, ...]
        a = a.reshape(batch_shape + (num_steps,) + a.shape[2:])
        return flip(jnp.moveaxis(a, n, 0))

    if mask is None:
        mask = jnp.ones((num_steps, *batch_shape), bool)
    if resets is None:
        resets = jnp.zeros((num_steps, *batch_shape), bool)
    xs_b, mask_b, resets_b = (batch_major(a) for a in (xs, mask, resets))
    s0 = jax.vmap(_ravel)(jax.tree.map(lambda a: a.reshape((B,) + a.shape[n:]), prep.carry))
    if prep.guess is None:
        S0 = jnp.broadcast_to(s0[:, None], (B, num_steps, D))
    else:
        g = jax.tree.map(batch_major, prep.guess)
        S0 = jax.vmap(jax.vmap(_ravel))(g).astype(xs.dtype)
    S, info = _trajectory(cfg, prep.params, xs_b, s0, mask_b, resets_b, jax.lax.stop_gradient(S0))
    S_prev = jax.vmap(_shift)(S, s0)
    phi_ys = lambda *a: _phi_all(cell, prep.params, *a)[1]
    ys = jax.vmap(phi_ys)(S_prev, xs_b, s0, mask_b, resets_b)
    carries = jax.tree.map(time_major, jax.vmap(jax.vmap(unravel))(S))
    carry_T = jax.tree.map(
        lambda a: a.reshape(batch_shape + a.shape[1:]), jax.vmap(unravel)(S[:, -1])
    )
    info = jax.tree.map(lambda a: a.reshape(batch_shape), info)
    out = (time_major(ys), carries) if plan.return_carries else time_major(ys)
    return carry_T, out, info


def solve(
    cell: Cell,
    params: Params,
    xs: Array,
    *,
    carry: Carry | None = None,
    lengths: Array | None = None,
    reverse: bool = False,
    resets: Array | None = None,
    time_major: bool = False,
    method: NewtonMethod = "newton",
    guess: Carry | None = None,
    tol: float | None = None,
    max_iters: int | None = None,
    damping: Damping = "none",
    trust_radius: float = 1.0,
    backward: Backward | None = None,
    fallback: bool = True,
) -> tuple[Array, Carry, NewtonInfo]:
    r"""Runs ``cell`` over ``xs`` by Newton's method in parallel over time (DEER/quasi-DEER).

    The same results as [`jrnn.unroll`][jrnn.unrolling.unroll] (same arguments, same semantics of
    ``carry``, ``lengths``, ``reverse``, ``resets``, ``time_major``), plus diagnostics.  Iterates
    ``S ← S + δ`` with ``δ_t = J_t δ_{t-1} + (f(s_{t-1}, x_t) - s_t)`` solved by an
    associative scan, until the true residual ``max_t |s_t - f(s_{t-1}, x_t)| <= tol``;
    see [`jrnn.newton`][] for the method, the guarantees and the gradients.

    Args:
      cell, params, xs, carry, lengths, reverse, resets, time_major: as in
        [`jrnn.unroll`][jrnn.unrolling.unroll] (``xs: [*batch, T, input_size]``).
      method: ``"newton"`` (full Jacobians, ``O(T·D²)`` memory) or ``"quasi-newton"``
        (their diagonals, ``O(T·D)``).
      guess: a warm start: the carry after every step, a carry pytree with leaves
        ``[*batch, T, ...]`` (``[T, *batch, ...]`` with ``time_major``), aligned like ``ys``
        (what ``unroll(..., return_carries=True)`` returns).  Default: the initial carry
        at every step.
      tol: residual tolerance (default by dtype, [`default_tol`][jrnn.newton.default_tol]).
      max_iters: most Newton iterations (default ``min(T, 100)``; undamped Newton and
        quasi-Newton converge in at most ``T`` in exact arithmetic).
      damping: ``"trust-region"`` limits each update to ``max|δ| <= radius`` and accepts it
        only if the residual falls (the radius doubles on success and is quartered on
        failure, starting at ``trust_radius``): a cheap stabiliser in the spirit of ELK's
        Levenberg-Marquardt steps (Gonzalez et al. 2024), not ELK's Kalman smoother.
      trust_radius: the initial radius.
      backward: the adjoint solve of the gradient, ``"parallel"`` (default for
        ``"newton"``) or ``"sequential"`` (default for ``"quasi-newton"``).
      fallback: recompute non-converged sequences with the sequential scan (default); with
        ``False`` the last iterate is returned as is (check ``info.converged``).

    Returns:
      ``(ys, carry_T, info)``: ``ys`` and ``carry_T`` as [`jrnn.unroll`][jrnn.unrolling.unroll]'s,
      ``info`` a [`NewtonInfo`][jrnn.newton.NewtonInfo] with leaves ``[*batch]``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.gru(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 50, 3))  # [batch, T, features]
      >>> ys, carry, info = jrnn.newton.solve(cell, params, xs)
      >>> bool(jnp.allclose(ys, jrnn.unroll(cell, params, xs)[0], atol=1e-5))
      True
      >>> info.converged.tolist(), bool(jnp.all(info.iterations < 50))
      ([True, True], True)
    """
    where = "newton.solve"
    check_choice("method", method, ("newton", "quasi-newton"), where)
    solver = check_solver(
        NewtonOptions(tol, max_iters, damping, trust_radius, backward, fallback), where
    )
    options = check_options(Options(reverse=reverse, time_major=time_major, method=method), where)
    prep = prepare(
        cell, params, xs, carry, lengths, resets, None, options, where=where, guess=guess
    )
    how = plan(cell, prep, options, where=where, solver=solver)
    if how.engine == "scan":  # an empty sequence: nothing to solve, no iteration taken
        carry_T, out, _ = scan.run(cell, prep, how)
        zeros = jnp.zeros(prep.batch_shape, jnp.int32)
        info = NewtonInfo(zeros, zeros.astype(prep.xs.dtype), zeros == 0, zeros != 0)
    else:
        carry_T, out, info = run(cell, prep, how)
    ys, carry_T = finish(prep, carry_T, out, options)
    return ys, carry_T, info
