r"""Vanishing and exploding gradients made visible: state gradients, Jacobians, saturation.

Backpropagation through time sends the gradient of the loss backwards through a product of
step Jacobians.  For the Elman network (column vectors, ``h(t) = tanh(b + W h(t-1) + U x(t))``,
``o(t) = c + V h(t)``) the lecture's BPTT recursion is

.. code-block:: text

    ∇h(t) L = Wᵀ diag(1 - h(t+1)²) ∇h(t+1) L + Vᵀ ∇o(t) L

so ``∇h(t)`` holds the factor ``∏_{k=t+1}^{T} Wᵀ diag(1 - h(k)²)``: over long spans it
shrinks geometrically when the step Jacobians' norms stay below one (vanishing gradients) and
grows when they stay above one (exploding gradients).  Gated cells (the LSTM's additive cell
state, the GRU's interpolation ``(1 - z) h + z n``) keep a path whose Jacobian is close to the
identity; gradient clipping (``optax.clip_by_global_norm``) bounds the damage of explosions.

This module measures those quantities for any [`jrnn.Cell`][jrnn.base.Cell] on a batch of
inputs, and for a model ([`jrnn.sequence_model`][jrnn.models.sequence_model],
[`jrnn.seq2vec`][jrnn.models.seq2vec], [`jrnn.tagger`][jrnn.models.tagger]): the model's
``embed`` feeds its rnn and ``state_grad_norms``' loss reads the model's outputs:

* [`state_grad_norms`][jrnn.diagnostics.state_grad_norms] -- ``‖∂L/∂h_t‖₂`` for every step, the
  total derivative of the loss with respect to the hidden state where it leaves step ``t`` (the
  ``∇h(t)`` above), from one backward pass; also per layer and direction of a
  [`jrnn.stack`][jrnn.stacks.stack].
* [`step_jacobian_norms`][jrnn.diagnostics.step_jacobian_norms] -- the spectral norm of
  each step Jacobian ``∂h_t/∂h_{t-1}``: exactly (the ``[H, H]`` matrix and its SVD) for
  small states, else by power iteration with ``jax.jvp``/``jax.vjp`` to a stated tolerance.
* [`jacobian_product_norms`][jrnn.diagnostics.jacobian_product_norms] -- ``‖∂h_T/∂h_t‖₂`` and its
  growth rate, the finite-time Lyapunov exponent ``log‖∂h_T/∂h_t‖₂ / (T - t)``.
* [`gate_saturation`][jrnn.diagnostics.gate_saturation] -- the fraction of saturated sigmoid gates
  and tanh units over time.
* [`plot_grad_norms`][jrnn.diagnostics.plot_grad_norms],
  [`plot_jacobian_histograms`][jrnn.diagnostics.plot_jacobian_histograms],
  [`plot_gate_saturation`][jrnn.diagnostics.plot_gate_saturation] -- matplotlib figures (matplotlib
  is imported only when a plot function is called).

Layout: ``xs`` is batch-first ``[*batch, T, input_size]`` (any number of leading batch axes)
like [`jrnn.unroll`][jrnn.unrolling.unroll]; ``lengths`` (int ``[*batch]``) marks steps ``t >=
lengths`` as padding, which leave the carry untouched and output zeros, and every per-step result is
zero there. Time indices are 0-based: ``h_t`` is the hidden state after reading ``xs[..., t, :]``,
and ``h_T`` below means the state after the last valid step ``t = lengths - 1``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn.base import Array, Carry, Cell, Params, PRNGKey, exportable
from jrnn.cells import ACTIVATIONS, block_layer_norm
from jrnn.checks import (
    check_float_input,
    check_int,
    check_lengths,
    shape_str,
    type_name,
)
from jrnn.forward import mask_step
from jrnn.models import Model
from jrnn.prepare import Options, Prepared, flip_within_lengths, prepare, step_mask
from jrnn.stacks import Stack

__all__ = [
    "EXACT_MAX_SIZE",
    "GateSaturation",
    "JacobianProducts",
    "batch_geometric_mean",
    "gate_saturation",
    "jacobian_product_norms",
    "plot_gate_saturation",
    "plot_grad_norms",
    "plot_jacobian_histograms",
    "state_grad_norms",
    "step_jacobian_norms",
]


# --------------------------------------------------------------------------------------
# the scan shared by every diagnostic


def _check_cell(cell: Any, where: str, stacks: bool = False) -> None:
    if isinstance(cell, Stack):
        if stacks:
            return
        raise TypeError(
            f"{where}: `cell` must be a jrnn.Cell (or a model over one), got a jrnn.Stack; "
            f"pass one layer's cell and params (stack.cell, params[layer][direction]) and "
            f"that layer's inputs"
        )
    if not isinstance(cell, Cell):
        expected = "a jrnn.Cell or jrnn.Stack" if stacks else "a jrnn.Cell"
        raise TypeError(
            f"{where}: `cell` must be {expected} or a model over one (jrnn.sequence_model, "
            f"seq2vec, tagger), got {type(cell).__name__}"
        )


def _model_parts(target: Any, params: Any, xs: Any, where: str):
    """``(rnn, rnn_params, rnn_inputs, head)``: for a model
    ([`jrnn.models.Model`][jrnn.models.Model]) its rnn, ``params["rnn"]``, the embedded
    ``xs`` and its ``head``; else ``(target, params, xs, None)``."""
    if not isinstance(target, Model):
        return target, params, xs, None
    if target.embed is None or target.head is None:
        raise TypeError(
            f"{where}: the model {target.name!r} has no `embed`/`head`; build it with "
            f"jrnn.sequence_model, seq2vec or tagger"
        )
    if not isinstance(params, Mapping) or "rnn" not in params:
        got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(
            f"{where}: `params` must be the model's params (a dict with 'rnn', from "
            f"model.init), got {got}"
        )
    return target.rnn, params["rnn"], target.embed(params, xs), target.head


def _prepare(cell: Cell, params, xs, carry, lengths, where: str) -> Prepared:
    """[`jrnn.unroll`][jrnn.unrolling.unroll]'s own preparation (checks, compute dtype, time-major,
    mask)."""
    return prepare(cell, params, xs, carry, lengths, None, None, Options(), where=where)


def _state(carry: Carry) -> Any:
    """The part of a carry the diagnostics follow: ``h`` where the carry has one (every
    built-in cell; the LSTM's ``c`` is held), else every leaf of the carry."""
    return carry.h if hasattr(carry, "h") else carry


def _add_to_state(carry: Carry, y_t: Array, e_t: Any) -> tuple[Carry, Array]:
    """``carry`` with the perturbation ``e_t`` added to its state (`_state`), and
    ``y_t`` with the perturbation of the leaf it is (the output of every built-in cell is
    its ``h``); an output computed apart from the carry is left as it is."""
    if hasattr(carry, "h"):
        y_t = y_t + e_t if y_t is carry.h else y_t
        return carry._replace(h=carry.h + e_t), y_t
    leaves, treedef = jax.tree.flatten(carry)
    e_leaves = jax.tree.leaves(e_t)
    for leaf, e in zip(leaves, e_leaves, strict=True):
        if y_t is leaf:
            y_t = y_t + e
    return jax.tree.unflatten(treedef, [a + e for a, e in zip(leaves, e_leaves, strict=True)]), y_t


def _perturbed_scan(cell: Cell, prep: Prepared, eps: Any, reverse: bool = False):
    """Runs ``cell`` over ``prep.xs`` adding ``eps[t]`` to the state (`_state`; and to
    ``y_t`` where it is that state) right after step ``t``.  Returns time-major ``(ys,
    carries_before_each_step, carry_T)``; with ``reverse`` every time-indexed array (``xs``,
    ``eps``, the outputs) is indexed by input position, the scan reading each sequence from
    its last valid step back."""
    xs, mask = prep.xs, prep.mask
    if reverse:
        xs = _flip(xs, prep.lengths)
        eps = None if eps is None else jax.tree.map(lambda a: _flip(a, prep.lengths), eps)

    def body(c, inp):
        x_t, m_t, e_t = inp
        new_c, y_t = cell.step(prep.params, c, x_t)
        if e_t is not None:
            new_c, y_t = _add_to_state(new_c, y_t, _zero_padding(e_t, m_t))
        new_c, y_t = mask_step(c, new_c, y_t, m_t)
        return new_c, (y_t, c)

    carry_T, (ys, before) = jax.lax.scan(body, prep.carry, (xs, mask, eps))
    if reverse:
        ys = _flip(ys, prep.lengths)
        before = jax.tree.map(lambda a: _flip(a, prep.lengths), before)
    return ys, before, carry_T


def _flip(a: Array, lengths: Array | None) -> Array:
    """Reverses time-major ``a`` within each sequence's length (all of it without lengths)."""
    return jnp.flip(a, 0) if lengths is None else flip_within_lengths(a, lengths)


def _state_norm(tree: Any, nb: int) -> Array:
    """``[T, *batch]``: the Euclidean norm over every feature of every leaf of a
    time-major tree (leaves ``[T, *batch, ...]``, ``nb`` batch axes)."""
    return jnp.sqrt(_tree_sqnorm(tree, 1 + nb))


def _zero_padding(values: Any, mask: Array | None) -> Any:
    """``values`` (any pytree of ``[*mask.shape, ...]`` leaves) zero where ``mask`` is false."""
    if mask is None:
        return values

    def zero(a):
        m = mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim))
        return jnp.where(m, a, jnp.zeros_like(a))

    return jax.tree.map(zero, values)


def _batch_first(a: Array) -> Array:
    """``[T, *batch] -> [*batch, T]``."""
    return jnp.moveaxis(a, 0, -1)


# --------------------------------------------------------------------------------------
# ‖∂L/∂h_t‖


def state_grad_norms(
    cell: Cell | Stack | Model,
    params: Params,
    xs: Array,
    loss_fn: Callable[[Array], Array],
    *,
    lengths: Array | None = None,
    carry: Carry | None = None,
) -> Array:
    r"""``‖∂L/∂h_t‖₂`` for every step ``t``: how much gradient reaches each hidden state.

    ``L = loss_fn(ys)`` with ``ys`` the outputs ``[*batch, T, output_size]`` of the cell run
    over ``xs``.  ``∂L/∂h_t`` is the *total* derivative with respect to ``h_t`` where it leaves
    step ``t``: through ``y_t`` and through every later step -- the lecture's BPTT recursion,
    for the Elman network ``∇h(t) = Wᵀ diag(1 - h(t+1)²) ∇h(t+1) + Vᵀ ∇o(t)``.  It is computed
    in one backward pass as the gradient of ``L`` with respect to zero perturbations
    ``eps_t [*batch, H]`` added to ``h`` after each step (and to ``y_t`` where ``y_t`` is
    ``h_t``, as for every built-in cell).  For the LSTM this is the derivative with respect
    to ``h`` with ``c`` held (``c_t``'s own path to the loss continues through the next
    steps); with ``proj_size=P``, ``h`` is the ``[*batch, P]`` projected state.  A cell of
    your own ([`jrnn.custom_cell`][jrnn.custom.custom_cell]) whose carry has no field ``h`` is
    perturbed in every leaf of its carry, and the norm is taken over all of them; an output ``y_t``
    that is not one of the carry's leaves counts through the later steps only.

    Args:
      cell: a [`jrnn.Cell`][jrnn.base.Cell] (any, built-in or your own), or a
          [`jrnn.Stack`][jrnn.stacks.Stack]
        (evaluated without dropout), or a model
        ([`jrnn.sequence_model`][jrnn.models.sequence_model], [`jrnn.seq2vec`][jrnn.models.seq2vec],
        [`jrnn.tagger`][jrnn.models.tagger]) over either: its rnn is measured, fed by the model's
        ``embed`` and read by its ``head``.
      params: its parameters (for a stack the nested ``[layer][direction]`` tuples; for a
        model ``model.init``'s dict).
      xs: ``[*batch, T, input_size]`` (for a model its inputs: tokens ``[*batch, T]`` or
        features).
      loss_fn: ``ys [*batch, T, output_size] -> scalar`` (for a bidirectional stack
        ``ys`` is ``[*batch, T, 2 * output_size]``, as ``stack.apply`` returns; for a model
        ``ys`` is the model's outputs, as ``model.apply`` returns them without dropout).
      lengths: optional int ``[*batch]``; steps ``t >= lengths`` are padding (carry kept,
        output zero) and get norm 0.
      carry: optional initial carry (cells and models over a cell; default zeros).

    Returns:
      For a cell ``[*batch, T]``.  For a stack ``[num_layers, D, *batch, T]`` with ``D = 1``
      (or ``D = 2`` when bidirectional): entry ``[l, d, ..., t]`` is ``‖∂L/∂h_t‖₂`` for the
      state of layer ``l``, direction ``d`` (0 forward, 1 backward) after it read input
      position ``t``.  For the backward direction "later steps" are earlier positions: its
      gradient flows from ``t = 0`` towards ``t = T - 1``.

    Works under ``jax.jit`` (``loss_fn`` closed over).

    Examples:
      A linear RNN with ``w_hh = 0.5 I`` and ``L = sum(h_T)``: ``∂L/∂h_t = 0.5^{T-1-t} 1``.

      >>> import jax, jax.numpy as jnp, jrnn
      >>> from jrnn.diagnostics import state_grad_norms
      >>> cell = jrnn.simple_rnn(2, activation="identity")
      >>> params = cell.init(jax.random.key(0), 1)
      >>> params = {**params, "w_hh": 0.5 * jnp.eye(2, dtype=params["w_ih"].dtype)}
      >>> xs = jnp.ones((4, 1), params["w_ih"].dtype)
      >>> g = state_grad_norms(cell, params, xs, lambda ys: ys[-1].sum())
      >>> [round(float(v), 4) for v in g / jnp.sqrt(2.0).astype(g.dtype)]
      [0.125, 0.25, 0.5, 1.0]

      A model: the loss reads its logits ``[batch, T, vocab]``.

      >>> from jrnn.losses import sequence_softmax_cross_entropy
      >>> lm = jrnn.sequence_model(jrnn.gru(8), 5, vocab_size=5, embed_size=4)
      >>> tokens = jnp.array([[1, 2, 3, 4, 0, 1]])
      >>> xent = lambda logits: sequence_softmax_cross_entropy(logits[:, :-1], tokens[:, 1:])
      >>> state_grad_norms(lm, lm.init(jax.random.key(0)), tokens, xent).shape
      (1, 6)
    """
    where = "state_grad_norms"
    if not callable(loss_fn):
        raise TypeError(f"{where}: `loss_fn` must be callable ys -> scalar, got {loss_fn!r}")
    model_params = params
    cell, params, xs, head = _model_parts(cell, params, xs, where)
    _check_cell(cell, where, stacks=True)
    if head is not None:
        outputs_loss = loss_fn
        loss_fn = lambda hs: outputs_loss(head(model_params, hs, lengths))
    if isinstance(cell, Stack):
        if carry is not None:
            raise ValueError(f"{where}: `carry` is supported for cells only, got a jrnn.Stack")
        return _stack_grad_norms(cell, params, xs, loss_fn, lengths)
    prep = _prepare(cell, params, xs, carry, lengths, where)
    nb = len(prep.batch_shape)

    def loss(eps):
        ys, _, _ = _perturbed_scan(cell, prep, eps)
        return _scalar_loss(loss_fn, jnp.moveaxis(ys, 0, nb), where)

    grads = jax.grad(loss)(_zero_perturbation(prep))
    return _batch_first(_zero_padding(_state_norm(grads, nb), prep.mask))


def _zero_perturbation(prep: Prepared) -> Any:
    """Zeros ``[T, *batch, ...]`` shaped like the state (`_state`) at every step."""
    zeros = lambda a: jnp.zeros((prep.num_steps, *a.shape), a.dtype)
    return jax.tree.map(zeros, _state(prep.carry))


def _scalar_loss(loss_fn, ys, where):
    out = loss_fn(ys)
    if jnp.shape(out) != ():
        raise ValueError(
            f"{where}: `loss_fn` must return a scalar, got shape {shape_str(jnp.shape(out))}"
        )
    return out


def _stack_grad_norms(stack: Stack, params, xs, loss_fn, lengths) -> Array:
    where = "state_grad_norms"
    cell, num_dirs = stack.cell, 2 if stack.bidirectional else 1
    stack.initial_carry(params)  # checks the [layer][direction] structure
    xs = check_float_input("xs", xs, where)
    if xs.ndim < 2:
        raise ValueError(
            f"{where}: `xs` must have shape [*batch, T, input_size] (rank >= 2), "
            f"got {shape_str(xs.shape)}"
        )
    num_steps, batch_shape = xs.shape[-2], tuple(xs.shape[:-2])
    nb = len(batch_shape)
    mask = None
    if lengths is not None:
        mask = step_mask(check_lengths(lengths, batch_shape, num_steps, where), num_steps)

    def layer_inputs(eps):  # every layer's prepared inputs on the way to the loss
        inputs, preps = xs, []
        for layer, layer_params in enumerate(params):
            outs = []
            for d, p in enumerate(layer_params):
                prep = _prepare(cell, p, inputs, None, lengths, where)
                preps.append(prep)
                if eps is not None:
                    ys, _, _ = _perturbed_scan(cell, prep, eps[layer][d], reverse=d == 1)
                    outs.append(jnp.moveaxis(ys, 0, nb))
            if eps is None:
                return preps  # the first layer's alone: every layer has the same state
            inputs = outs[0] if num_dirs == 1 else jnp.concatenate(outs, axis=-1)
        return inputs

    zero = _zero_perturbation(layer_inputs(None)[0])
    eps0 = tuple(tuple(zero for _ in range(num_dirs)) for _ in range(stack.num_layers))
    grads = jax.grad(lambda eps: _scalar_loss(loss_fn, layer_inputs(eps), where))(eps0)
    norms = [[_batch_first(_zero_padding(_state_norm(g, nb), mask)) for g in gl] for gl in grads]
    return jnp.stack([jnp.stack(row) for row in norms])


# --------------------------------------------------------------------------------------
# step Jacobians and their products


def _tree_sqnorm(tree, keep: int) -> Array:
    """Squared norm over every axis after the first ``keep`` of every leaf, summed over the
    leaves: one number per (step,) batch element."""
    return sum(
        jnp.sum(jnp.square(a), axis=tuple(range(keep, a.ndim))) for a in jax.tree.leaves(tree)
    )


def _tree_normalize(tree, nb: int):
    n = jnp.sqrt(_tree_sqnorm(tree, nb))
    safe = jnp.where(n > 0, n, jnp.ones_like(n))
    return jax.tree.map(lambda a: a / safe.reshape(safe.shape + (1,) * (a.ndim - safe.ndim)), tree)


EXACT_MAX_SIZE = 64
"""``step_jacobian_norms(method="auto")`` forms the Jacobian and takes its SVD when the state
it differentiates has at most this many numbers per batch element (power iteration above)."""


def _spectral_norm_exact(f, primal, nb: int) -> Array:
    """Per-batch-element ``‖J‖₂`` of ``J = ∂f/∂primal``: the ``[P_out, P]`` matrix from ``P``
    ``jax.jvp`` columns, then its largest singular value (SVD)."""
    cols = jax.vmap(lambda e: jax.jvp(f, (primal,), (e,))[1])(_basis(primal, nb))
    flat = [a.reshape(a.shape[: 1 + nb] + (-1,)) for a in jax.tree.leaves(cols)]
    jac = jnp.moveaxis(jnp.concatenate(flat, axis=-1), 0, -1)  # [*batch, P_out, P]
    return jnp.linalg.svd(jac, compute_uv=False)[..., 0]


def _spectral_norm_power(f, primal, v0, nb: int, tol: float, max_iters: int) -> Array:
    """Per-batch-element ``‖J‖₂`` of ``J = ∂f/∂primal`` at ``primal`` by power iteration on
    ``JᵀJ`` (``jax.jvp`` then ``jax.vjp``); ``f`` acts on each batch element separately
    (``nb`` batch axes).  Stops when every estimate ``σ_k = ‖J v_k‖`` is within ``tol``
    (relative) of its limit by Aitken's estimate ``|σ_k - σ_{k-1}| / (1 - r)``, ``r`` the
    largest ratio of successive changes seen (the rate ``(σ₂/σ₁)²``; the largest, because
    rounding makes late ratios noisy), or after ``max_iters`` rounds."""
    _, f_vjp = jax.vjp(f, primal)
    jvp = lambda v: jax.jvp(f, (primal,), (v,))[1]
    u0 = jvp(_tree_normalize(v0, nb))
    sigma0 = jnp.sqrt(_tree_sqnorm(u0, nb))
    inf = jnp.full_like(sigma0, jnp.inf)

    def body(state):
        k, u, sigma, diff, rate, _ = state
        u = jvp(_tree_normalize(f_vjp(u)[0], nb))
        new = jnp.sqrt(_tree_sqnorm(u, nb))
        d = jnp.abs(new - sigma)
        ratio = jnp.clip(d / jnp.where(diff > 0, diff, jnp.ones_like(diff)), 0.0, 0.999)
        rate = jnp.where(k > 0, jnp.maximum(rate, ratio), jnp.zeros_like(rate))
        return k + 1, u, new, d, rate, d / (1.0 - rate)

    def cond(state):
        k, _, sigma, _, _, bound = state
        return (k < max_iters) & jnp.any(bound > tol * sigma)

    zero = jnp.zeros_like(sigma0)
    state = (jnp.zeros((), jnp.int32), u0, sigma0, inf, zero, inf)
    return jax.lax.while_loop(cond, body, state)[2]


def step_jacobian_norms(
    cell: Cell | Model,
    params: Params,
    xs: Array,
    *,
    lengths: Array | None = None,
    carry: Carry | None = None,
    wrt: Literal["h", "carry"] = "h",
    method: Literal["auto", "exact", "power"] = "auto",
    tol: float | None = None,
    num_iters: int = 1000,
    key: PRNGKey | None = None,
) -> Array:
    r"""Spectral norm of every step Jacobian along the trajectory, ``‖∂h_t/∂h_{t-1}‖₂``.

    For the Elman network ``∂h_t/∂h_{t-1} = diag(1 - h_t²) Wᵀ`` (column vectors) is the factor
    that BPTT's recursion ``∇h(t) = Wᵀ diag(1 - h(t+1)²) ∇h(t+1) + ...`` applies once per step:
    norms persistently below 1 make gradients vanish, above 1 explode.

    ``wrt="h"`` (default): the Jacobian of ``h_t`` with respect to ``h_{t-1}`` with the rest
    of the carry (the LSTM's ``c_{t-1}``) and ``x_t`` held fixed; ``[P, P]`` with
    ``proj_size=P``.  ``wrt="carry"``: the Jacobian of the whole new carry with respect to the
    whole previous carry (for the LSTM the ``[2H, 2H]`` map of ``(h, c)``, whose products are
    exactly the chain of BPTT).  For the simple RNN and the GRU the two agree.

    ``method="exact"`` forms the ``[P, P]`` Jacobian (``P`` ``jax.jvp`` columns per step) and
    takes its largest singular value: exact to rounding, cost ``O(P)`` steps' forward plus
    an SVD per time step.  ``method="power"`` runs power iteration on ``JᵀJ`` with
    ``jax.jvp`` and ``jax.vjp`` (no matrix is formed) until every estimate is within ``tol``
    (relative) of its limit by Aitken's estimate of the remaining error, or ``num_iters``
    rounds; it approaches ``‖J‖₂`` from below at the rate ``(σ₂/σ₁)^{2k}``, slowly when the
    top singular values are close (an estimate: with ``σ₂/σ₁ = 0.997`` in float32 the
    error measured up to ``3e-5``, ``1e-5`` for ``σ₂/σ₁ <= 0.99``).  ``"auto"`` (default)
    is exact for states of at most [`EXACT_MAX_SIZE`][jrnn.diagnostics.EXACT_MAX_SIZE]
    numbers, power iteration above.

    Args:
      cell: a [`jrnn.Cell`][jrnn.base.Cell], or a model over one (its rnn, fed by its ``embed``).
      params: its parameters (a model's: ``model.init``'s dict).
      xs: ``[*batch, T, input_size]`` (a model's inputs).
      lengths: optional int ``[*batch]``; padded steps get 0.
      carry: optional initial carry (default zeros).
      wrt: ``"h"`` or ``"carry"``, as above.
      method: ``"auto"``, ``"exact"`` or ``"power"``, as above.
      tol: power iteration's relative tolerance (default ``max(1e-6, 100 ε)`` of the
        state's dtype: ``1.2e-5`` for float32).
      num_iters: the most power-iteration rounds (>= 1).
      key: PRNG key of power iteration's random start vector (default
        ``jax.random.key(0)``).

    Returns:
      ``[*batch, T]``: entry ``t`` is ``‖∂h_t/∂h_{t-1}‖₂`` at the trajectory's
      ``(h_{t-1}, x_t)`` (``h_{-1}`` the initial carry).

    Examples:
      For ``w_hh = 2 I`` and the identity activation every step Jacobian is ``2 I``:

      >>> import jax, jax.numpy as jnp, jrnn
      >>> from jrnn.diagnostics import step_jacobian_norms
      >>> cell = jrnn.simple_rnn(3, activation="identity")
      >>> params = cell.init(jax.random.key(0), 1)
      >>> params = {**params, "w_hh": 2.0 * jnp.eye(3, dtype=params["w_ih"].dtype)}
      >>> xs = jnp.ones((2, 5, 1), params["w_ih"].dtype)
      >>> norms = step_jacobian_norms(cell, params, xs, lengths=jnp.array([5, 3]))
      >>> [[round(float(v), 3) for v in row] for row in norms]
      [[2.0, 2.0, 2.0, 2.0, 2.0], [2.0, 2.0, 2.0, 0.0, 0.0]]
    """
    where = "step_jacobian_norms"
    cell, params, xs, _ = _model_parts(cell, params, xs, where)
    _check_cell(cell, where)
    if wrt not in ("h", "carry"):
        raise ValueError(f"{where}: `wrt` must be 'h' or 'carry', got {wrt!r}")
    if method not in ("auto", "exact", "power"):
        raise ValueError(f"{where}: `method` must be 'auto', 'exact' or 'power', got {method!r}")
    if tol is not None and not (isinstance(tol, int | float) and 0.0 < tol < 1.0):
        raise ValueError(f"{where}: `tol` must be a float in (0, 1), got {tol!r}")
    check_int("num_iters", num_iters, where)
    prep = _prepare(cell, params, xs, carry, lengths, where)
    _, before, _ = _perturbed_scan(cell, prep, None)
    key = jax.random.key(0) if key is None else key

    if wrt == "h" and not hasattr(prep.carry, "h"):
        raise ValueError(
            f"{where}: `wrt`='h' needs a carry with a field `h`; the carry of {cell.name} is "
            f"{type_name(prep.carry)}: use wrt='carry'"
        )
    nb = len(prep.batch_shape)
    state = prep.carry.h if wrt == "h" else prep.carry
    size = sum(math.prod(a.shape[nb:]) for a in jax.tree.leaves(state))
    exact = method == "exact" or (method == "auto" and size <= EXACT_MAX_SIZE)
    if tol is None:
        eps = float(jnp.finfo(jax.tree.leaves(state)[0].dtype).eps)
        tol = max(1e-6, 100 * eps)

    def one_step(c_tm1, x_t, k):
        if wrt == "h":
            f = lambda h: cell.step(prep.params, c_tm1._replace(h=h), x_t)[0].h
            primal = c_tm1.h
        else:
            f = lambda c: cell.step(prep.params, c, x_t)[0]
            primal = c_tm1
        if exact:
            return _spectral_norm_exact(f, primal, nb)
        leaves, treedef = jax.tree.flatten(primal)
        keys = jax.random.split(k, len(leaves))
        v0 = jax.tree.unflatten(
            treedef,
            [jax.random.normal(kk, a.shape, a.dtype) for kk, a in zip(keys, leaves, strict=True)],
        )
        return _spectral_norm_power(f, primal, v0, nb, tol, num_iters)

    keys = jax.random.split(key, prep.xs.shape[0])
    norms = jax.vmap(one_step)(before, prep.xs, keys)
    return _batch_first(_zero_padding(norms, prep.mask))


@exportable
class JacobianProducts(NamedTuple):
    """Norms of the long-range Jacobians ``∂h_T/∂h_t`` (see
    [`jacobian_product_norms`][jrnn.diagnostics.jacobian_product_norms]).

    Attributes:
      norms: ``[*batch, T]``, ``‖∂h_T/∂h_t‖₂`` (1 at ``t = T``, 0 on padding).
      lyapunov: ``[*batch, T]``, the finite-time Lyapunov exponent
        ``log‖∂h_T/∂h_t‖₂ / (T - t)``: the average log growth per step over the span
        (negative: vanishing, positive: exploding; 0 at ``t = T`` and on padding).
    """

    norms: Array
    lyapunov: Array


def jacobian_product_norms(
    cell: Cell | Model,
    params: Params,
    xs: Array,
    *,
    lengths: Array | None = None,
    carry: Carry | None = None,
) -> JacobianProducts:
    r"""``‖∂h_T/∂h_t‖₂`` for every ``t`` and its growth rate (finite-time Lyapunov exponent).

    ``h_T`` is the hidden state after each sequence's last valid step (``T = lengths - 1``,
    0-based; ``T - 1`` without lengths).  ``∂h_T/∂h_t`` is the total derivative through the
    full carry of the steps ``t+1 .. T`` of a change of ``h_t`` (the LSTM's ``c_t`` held),
    i.e. the product of the full-carry step Jacobians restricted to ``h`` at both ends; for
    the Elman network ``∏_{k=t+1}^{T} diag(1 - h_k²) Wᵀ``.  The lecture's argument:
    ``‖∂h_T/∂h_t‖₂`` decays or grows like ``exp(λ (T - t))``; ``λ`` is reported as
    ``lyapunov = log‖∂h_T/∂h_t‖₂ / (T - t)``.

    Computed exactly by one reverse scan that carries the ``P`` rows of ``∂h_T/∂carry_t``
    (``P`` the size of ``h``; ``P`` vector-Jacobian products per step) and takes the largest
    singular value of their ``h`` block (``[P, P]``) at every step: memory ``O(P · carry)``
    per batch element.

    Args:
      cell: a [`jrnn.Cell`][jrnn.base.Cell], or a model over one (its rnn, fed by its ``embed``).
      params: its parameters (a model's: ``model.init``'s dict).
      xs: ``[*batch, T, input_size]`` (a model's inputs).
      lengths: optional int ``[*batch]``; padded steps get 0.
      carry: optional initial carry (default zeros).

    Returns:
      [`JacobianProducts`][jrnn.diagnostics.JacobianProducts] of two ``[*batch, T]`` arrays.

    Examples:
      With ``w_hh = 0.5 I`` and the identity activation ``∂h_T/∂h_t = 0.5^{T-t} I``, so the
      Lyapunov exponent is ``log 0.5`` at every step before the last:

      >>> import jax, jax.numpy as jnp, jrnn
      >>> from jrnn.diagnostics import jacobian_product_norms
      >>> cell = jrnn.simple_rnn(3, activation="identity")
      >>> params = cell.init(jax.random.key(0), 1)
      >>> params = {**params, "w_hh": 0.5 * jnp.eye(3, dtype=params["w_ih"].dtype)}
      >>> out = jacobian_product_norms(cell, params, jnp.ones((4, 1), params["w_ih"].dtype))
      >>> [round(float(v), 4) for v in out.norms]
      [0.125, 0.25, 0.5, 1.0]
      >>> [round(float(v), 4) for v in out.lyapunov]
      [-0.6931, -0.6931, -0.6931, 0.0]
    """
    where = "jacobian_product_norms"
    cell, params, xs, _ = _model_parts(cell, params, xs, where)
    _check_cell(cell, where)
    prep = _prepare(cell, params, xs, carry, lengths, where)
    _, before, _ = _perturbed_scan(cell, prep, None)
    num_steps, nb = prep.num_steps, len(prep.batch_shape)
    rows0 = _identity_rows(prep.carry, nb)  # rows r of ∂s_T/∂carry, leading axis r
    mask = prep.mask

    def body(rows, inp):
        c_tm1, x_t, m_t = inp
        norm_t = jnp.linalg.svd(_state_matrix(rows, nb), compute_uv=False)[..., 0]
        step = lambda c: mask_step(c, *cell.step(prep.params, c, x_t), m_t)[0]
        _, step_vjp = jax.vjp(step, c_tm1)
        rows = jax.vmap(lambda r: step_vjp(r)[0])(rows)
        return rows, norm_t

    _, norms = jax.lax.scan(body, rows0, (before, prep.xs, mask), reverse=True)
    last = (jnp.int32(num_steps) if prep.lengths is None else prep.lengths) - 1
    t = jnp.arange(num_steps, dtype=jnp.int32).reshape((num_steps,) + (1,) * len(prep.batch_shape))
    span = (last - t).astype(norms.dtype)
    safe_span = jnp.where(span > 0, span, jnp.ones_like(span))
    tiny = jnp.finfo(norms.dtype).tiny
    lyap = jnp.where(span > 0, jnp.log(jnp.maximum(norms, tiny)) / safe_span, 0.0)
    norms = _zero_padding(norms, mask)
    lyap = _zero_padding(lyap.astype(norms.dtype), mask)
    return JacobianProducts(_batch_first(norms), _batch_first(lyap))


def _basis(tree: Any, nb: int) -> Any:
    """The unit vectors of ``tree``'s numbers per batch element, ``P`` of them on a leading
    axis (leaves ``[P, *a.shape]``): vector ``r`` is 1 at the ``r``-th number (leaves in
    order, each flattened) of every batch element and 0 elsewhere."""
    leaves = jax.tree.leaves(tree)
    sizes = [math.prod(a.shape[nb:]) for a in leaves]
    P, offsets = sum(sizes), np.cumsum([0, *sizes])
    eye = jnp.eye(P, dtype=leaves[0].dtype)

    def rows(a, i):
        block = eye[:, offsets[i] : offsets[i + 1]].reshape((P,) + (1,) * nb + a.shape[nb:])
        return jnp.broadcast_to(block.astype(a.dtype), (P, *a.shape))

    return jax.tree.unflatten(jax.tree.structure(tree), [rows(a, i) for i, a in enumerate(leaves)])


def _identity_rows(carry: Carry, nb: int) -> Carry:
    """Cotangents of the whole carry, one per number of the state (`_state`), ``P``
    of them on a leading axis: row ``r`` is 1 at the state's ``r``-th number of every batch
    element and 0 elsewhere."""
    state_rows = _basis(_state(carry), nb)
    if not hasattr(carry, "h"):
        return state_rows
    P = jax.tree.leaves(state_rows)[0].shape[0]
    zeros = jax.tree.map(lambda a: jnp.zeros((P, *a.shape), a.dtype), carry)
    return zeros._replace(h=state_rows)


def _state_matrix(rows: Carry, nb: int) -> Array:
    """``[*batch, P(rows), P]``: the state's part of every row of ``rows``."""
    flat = [a.reshape(a.shape[: 1 + nb] + (-1,)) for a in jax.tree.leaves(_state(rows))]
    return jnp.moveaxis(jnp.concatenate(flat, axis=-1), 0, -2)


# --------------------------------------------------------------------------------------
# gate saturation


@exportable
class GateSaturation(NamedTuple):
    """Saturation of one gate over time (see [`gate_saturation`][jrnn.diagnostics.gate_saturation]).

    Attributes:
      kind: the gate's function: ``"sigmoid"`` or ``"hard_sigmoid"`` (values in ``[0, 1]``),
        or ``"tanh"`` (values in ``[-1, 1]``).
      low: ``[T]``, fraction of units below ``1 - threshold`` (``[0, 1]`` functions) or
        ``-threshold`` (tanh).
      high: ``[T]``, fraction of units above ``threshold``.
    """

    kind: str
    low: Array
    high: Array

    @property
    def total(self) -> Array:
        """``[T]``, the fraction saturated either way, ``low + high``."""
        return self.low + self.high


_BOUNDED = {"sigmoid": 0.0, "hard_sigmoid": 0.0, "tanh": -1.0}
"""Functions that saturate, by the name a cell records in its config -> their lower bound
(the upper bound is 1)."""

_Fn = tuple[str, Callable[[Array], Array]]  # (name, function)


def _rnn_gates(params, carry, xa, ha, *, act: _Fn, gate: _Fn, ln: bool):
    del carry, gate
    if ln:
        ha = block_layer_norm(ha, params["ln_hh_scale"])
    return {act[0]: (act[0], act[1](xa + ha))}


def _lstm_gates(params, carry, xa, ha, *, act: _Fn, gate: _Fn, ln: bool):
    if ln:
        ha = block_layer_norm(ha, params["ln_hh_scale"], 4)
    a_i, a_f, a_g, a_o = jnp.split(xa + ha, 4, axis=-1)
    c_tm1 = carry.c
    if "w_peep" in params:  # Graves' peepholes: i, f see c_{t-1}, o sees c_t
        p_i, p_f, p_o = params["w_peep"]
        a_i, a_f = a_i + p_i * c_tm1, a_f + p_f * c_tm1
    sigma, tanh = gate[1], act[1]
    i, f, g = sigma(a_i), sigma(a_f), tanh(a_g)
    if "w_peep" in params:
        a_o = a_o + p_o * (f * c_tm1 + i * g)
    o = sigma(a_o)
    return {"i": (gate[0], i), "f": (gate[0], f), "g": (act[0], g), "o": (gate[0], o)}


def _gru_gates(params, carry, xa, ha, *, act: _Fn, gate: _Fn, ln: bool):
    xr, xz, xn = jnp.split(xa, 3, axis=-1)
    size = carry.h.shape[-1]
    sigma, tanh = gate[1], act[1]
    if "b_hn" in params:  # reset-after (cuDNN / PyTorch)
        if ln:
            ha = block_layer_norm(ha, params["ln_hh_scale"], 3)
        hr, hz, hn = jnp.split(ha, 3, axis=-1)
        r = sigma(xr + hr)
        n = tanh(xn + r * (hn + params["b_hn"]))
    else:  # Cho's reset-before form
        if ln:
            ha = block_layer_norm(ha, params["ln_hh_scale"][: 2 * size], 2)
        hr, hz = jnp.split(ha, 2, axis=-1)
        r = sigma(xr + hr)
        rn = (r * carry.h) @ params["w_hh"][:, 2 * size :]
        if ln:
            rn = block_layer_norm(rn, params["ln_hh_scale"][2 * size :])
        n = tanh(xn + rn)
    z = sigma(xz + hz)
    return {"r": (gate[0], r), "z": (gate[0], z), "n": (act[0], n)}


# The per-cell knowledge of gate layouts: cell kind -> gates(params, carry_{t-1}, xa_t, ha_t,
# act=, gate=, ln=) -> {gate: (function name, values [..., H])}.  ``xa_t`` is the cell's own
# ``project`` (layer-normalised there); options are read from the params' keys (w_peep, b_hn)
# and from the cell's config (layer_norm, gate_fn, activation).
_GATE_TABLE: dict[str, Callable[..., dict[str, tuple[str, Array]]]] = {
    "simple_rnn": _rnn_gates,
    "lstm": _lstm_gates,
    "gru": _gru_gates,
}


def _gate_fn(cell: Cell, where: str):
    """``gates(params, carry, xa, ha)`` for ``cell``: its gate values by name."""
    prefix = re.match(r"\s*([A-Za-z_]+)", str(cell.name))
    kind = prefix.group(1) if prefix else ""
    fn = _GATE_TABLE.get(kind)
    if fn is None:
        raise ValueError(
            f"{where}: no gate layout known for cell {cell.name!r}; expected a cell whose name "
            f"starts with one of {sorted(_GATE_TABLE)}"
        )
    config = dict(cell.config)

    def named(arg: str, default: str) -> _Fn:
        name = config.get(arg, default)
        if name not in ACTIVATIONS:
            raise ValueError(
                f"{where}: the `{arg}` of {cell.name} is a custom function {name!r}; gate "
                f"saturation evaluates only the named functions {sorted(ACTIVATIONS)}"
            )
        return name, ACTIVATIONS[name]

    act = named("activation", "tanh")
    gate = named("gate_fn", "sigmoid") if kind != "simple_rnn" else act
    if kind == "simple_rnn" and act[0] not in _BOUNDED:
        raise ValueError(
            f"{where}: a simple_rnn saturates only with a bounded activation "
            f"{sorted(_BOUNDED)}, got {act[0]!r} (from the config of {cell.name})"
        )
    ln = bool(config.get("layer_norm", False))
    return lambda params, carry, xa, ha: fn(params, carry, xa, ha, act=act, gate=gate, ln=ln)


def gate_saturation(
    cell: Cell | Model,
    params: Params,
    xs: Array,
    *,
    lengths: Array | None = None,
    carry: Carry | None = None,
    threshold: float = 0.95,
) -> dict[str, GateSaturation]:
    r"""Fraction of saturated gates over time: where gradients stop flowing through a gate.

    A sigmoid gate near 0 or 1 and a tanh unit near ±1 have derivative near 0
    (``σ' = σ(1 - σ)``, ``tanh' = 1 - tanh²``; the hard sigmoid's is exactly 0 at its
    bounds), so the gradient through them vanishes; a forget gate saturated at 1 is the
    LSTM's open memory path.  Gates per cell (the table ``_GATE_TABLE`` in this module):
    LSTM ``i, f, o`` (its ``gate_fn``) and ``g`` (its ``activation``), with Graves'
    peepholes where the params have ``w_peep``; GRU ``r, z`` (``gate_fn``) and ``n``
    (``activation``), Cho's form or reset-after (params with ``b_hn``); simple RNN its
    ``activation``.  The values are the cell's own: with ``layer_norm=True`` the
    pre-activations are normalised and scaled as in the cell (the input part is the cell's
    ``project``), then passed through the cell's ``gate_fn`` / ``activation``.

    Only functions with a bounded range saturate: ``"sigmoid"``, ``"hard_sigmoid"`` (values
    in ``[0, 1]``) and ``"tanh"`` (``[-1, 1]``).  Gates computed with another named function
    (e.g. an LSTM's ``activation="relu"`` candidate ``g``) are left out of the result; a
    simple RNN with such an activation, or a cell whose ``gate_fn``/``activation`` is a
    custom callable (its range is unknown), raises ``ValueError``.

    Args:
      cell: a built-in [`jrnn.Cell`][jrnn.base.Cell] (``simple_rnn``, ``lstm``, ``gru``; any
        ``layer_norm``, ``gate_fn`` and ``activation`` of [`jrnn.cells.ACTIVATIONS`][]),
        or a model over one (its rnn, fed by its ``embed``).
      params: its parameters (a model's: ``model.init``'s dict).
      xs: ``[*batch, T, input_size]`` (a model's inputs).
      lengths: optional int ``[*batch]``; only valid steps are counted.
      carry: optional initial carry (default zeros).
      threshold: ``[0, 1]`` gates count as saturated below ``1 - threshold`` or above
        ``threshold``, tanh units below ``-threshold`` or above ``threshold``.

    Returns:
      ``{gate: GateSaturation(kind, low [T], high [T])}``: at every step the fraction over
      units and valid batch elements (0 at steps where no sequence is valid).

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> from jrnn.diagnostics import gate_saturation
      >>> cell = jrnn.lstm(8, forget_bias=5.0)  # σ(5) = 0.993: forget gates start saturated
      >>> params = cell.init(jax.random.key(0), 2)
      >>> sat = gate_saturation(cell, params, jnp.zeros((3, 6, 2), params["w_ih"].dtype))
      >>> sorted(sat), sat["f"].kind, sat["f"].high.shape
      (['f', 'g', 'i', 'o'], 'sigmoid', (6,))
      >>> float(sat["f"].high.min()), float(sat["i"].total.max())
      (1.0, 0.0)
      >>> ln = jrnn.lstm(8, layer_norm=True, gate_fn="hard_sigmoid", activation="relu")
      >>> sat = gate_saturation(ln, ln.init(jax.random.key(0), 2), jnp.ones((3, 6, 2)))
      >>> sorted(sat), sat["f"].kind  # the relu candidate g does not saturate
      (['f', 'i', 'o'], 'hard_sigmoid')
    """
    where = "gate_saturation"
    cell, params, xs, _ = _model_parts(cell, params, xs, where)
    _check_cell(cell, where)
    gates_fn = _gate_fn(cell, where)
    if not 0.5 < float(threshold) < 1.0:
        raise ValueError(f"{where}: `threshold` must lie in (0.5, 1), got {threshold!r}")
    prep = _prepare(cell, params, xs, carry, lengths, where)
    _, before, _ = _perturbed_scan(cell, prep, None)
    xa = cell.fast.project(prep.params, prep.xs)
    ha = before.h @ cell.fast.recurrent_kernel(prep.params)
    values = gates_fn(prep.params, before, xa, ha)
    num_steps = prep.xs.shape[0]
    mask = prep.mask
    if mask is None:
        mask = jnp.ones((num_steps,) + prep.batch_shape, bool)
    batch_axes = tuple(range(1, 1 + len(prep.batch_shape)))
    weight = mask.astype(prep.xs.dtype)
    count = jnp.sum(weight, axis=batch_axes) if batch_axes else weight
    count = jnp.maximum(count, jnp.ones_like(count))

    def fraction(hit):  # hit: bool [T, *batch, H] -> [T]
        per = jnp.mean(hit.astype(weight.dtype), axis=-1) * weight
        return (jnp.sum(per, axis=batch_axes) if batch_axes else per) / count

    out = {}
    for name, (kind, v) in values.items():
        if kind not in _BOUNDED:  # e.g. an LSTM's relu candidate: nothing to saturate
            continue
        lo = 1.0 - threshold if _BOUNDED[kind] == 0.0 else -threshold
        out[name] = GateSaturation(kind, fraction(v < lo), fraction(v > threshold))
    return out


# --------------------------------------------------------------------------------------
# plots (matplotlib is imported only here)


def batch_geometric_mean(values: Any) -> np.ndarray:
    """One curve ``[T]`` from norms ``[*batch, T]``: the geometric mean over the batch, as
    the plots draw it (zeros, e.g. padded steps, are ignored; ``-inf`` logs where every
    entry is zero give 0).  A ``[T]`` input is returned as it is.

    Examples:
      >>> import numpy as np
      >>> from jrnn.diagnostics import batch_geometric_mean
      >>> batch_geometric_mean(np.array([[1.0, 4.0, 0.0], [4.0, 1.0, 2.0]])).tolist()
      [2.0, 2.0, 2.0]
    """
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 1:
        return a
    a = a.reshape(-1, a.shape[-1])
    with np.errstate(divide="ignore"):
        logs = np.where(a > 0, np.log(np.where(a > 0, a, 1.0)), np.nan)
    counts = np.sum(np.isfinite(logs), axis=0)
    mean = np.where(counts > 0, np.nansum(logs, axis=0) / np.maximum(counts, 1), -np.inf)
    return np.exp(mean)


def plot_grad_norms(
    curves: Mapping[str, Any],
    *,
    ax: Any = None,
    title: str | None = None,
    ylabel: str = "‖∂L/∂h_t‖₂",
) -> Any:
    """Gradient norm over time on a log axis, one line per cell.

    Args:
      curves: ``{label: [T] or [*batch, T]}`` (e.g. from
          [`state_grad_norms`][jrnn.diagnostics.state_grad_norms]); with
        batch axes the geometric mean over the batch is drawn.
      ax: a matplotlib ``Axes`` to draw into (default: a new figure).
      title, ylabel: labels.

    Returns:
      The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
    else:
        fig = ax.figure
    for label, values in curves.items():
        c = batch_geometric_mean(values)
        ax.semilogy(np.arange(len(c)), np.where(c > 0, c, np.nan), label=label)
    ax.set_xlabel("time step t")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return fig


def plot_jacobian_histograms(
    norms: Mapping[str, Any], *, bins: int = 40, ax: Any = None, title: str | None = None
) -> Any:
    """Histograms of step-Jacobian spectral norms (from
    [`step_jacobian_norms`][jrnn.diagnostics.step_jacobian_norms]), one per cell, with the critical
    value 1 marked (padding zeros are left out).

    Args:
      norms: ``{label: array of norms, any shape}``.
      bins: histogram bins.
      ax: a matplotlib ``Axes`` (default: a new figure).
      title: optional title.

    Returns:
      The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
    else:
        fig = ax.figure
    for label, values in norms.items():
        v = np.asarray(values, dtype=np.float64).ravel()
        ax.hist(v[v > 0], bins=bins, alpha=0.5, label=label)
    ax.axvline(1.0, color="k", linestyle="--", linewidth=1)
    ax.set_xlabel("‖∂h_t/∂h_{t-1}‖₂")
    ax.set_ylabel("count")
    if title:
        ax.set_title(title)
    ax.legend()
    return fig


def plot_gate_saturation(
    saturation: Mapping[str, GateSaturation], *, ax: Any = None, title: str | None = None
) -> Any:
    """Heat-map of gate saturation over time: one row per gate and side (``low``/``high``),
    white where no unit saturates, dark red where all do, with its colour bar.

    Args:
      saturation: the result of [`gate_saturation`][jrnn.diagnostics.gate_saturation].
      ax: a matplotlib ``Axes`` (default: a new figure).
      title: optional title.

    Returns:
      The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    rows, labels = [], []
    for name, s in saturation.items():
        for side in ("low", "high"):
            rows.append(np.asarray(getattr(s, side), dtype=np.float64))
            labels.append(f"{name} ({s.kind}) {side}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(rows) + 1.2))
    else:
        fig = ax.figure
    # white where nothing saturates, dark red where everything does; the square-root scale
    # keeps a few per cent visible (a linear dark-to-light map drew a healthy cell all black)
    im = ax.imshow(
        np.stack(rows),
        aspect="auto",
        norm=PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0),
        cmap="YlOrRd",
        interpolation="nearest",
    )
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("time step t")
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, label="fraction saturated (square-root scale)")
    return fig
