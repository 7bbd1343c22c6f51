"""The sequential engine of [`jrnn.unroll`][jrnn.unrolling.unroll]: ``lax.scan``, differentiated by
autodiff or by the hand-structured VJP, on one device or split over a CPU's host devices.

Every core of a CPU: in a process where [`jrnn.use_cpu_cores`][jrnn.sharding.use_cpu_cores] made
several host devices and the plan says the batch is worth splitting (``plan.devices > 1``), the scan
runs inside ``jax.shard_map`` with the first batch axis split over them and the
parameters replicated, so a plain ``jax.jit(jax.grad(...))`` step uses every core;
outputs and gradients are those of the unsplit scan.
"""

from __future__ import annotations

from functools import partial

import jax
from jax.sharding import PartitionSpec as P

from jrnn import hoisted
from jrnn.base import Cell, vary_like
from jrnn.forward import forward
from jrnn.prepare import Prepared
from jrnn.sharding import DATA_AXIS, host_devices_mesh
from jrnn.strategy import Plan


def run(cell: Cell, prep: Prepared, plan: Plan):
    """``(carry_T, out, None)``: ``out`` is time-major ``ys``, or ``(ys, carries)`` with
    ``plan.return_carries``.

    Examples:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> from jrnn.prepare import Options, prepare
      >>> from jrnn.strategy import plan as make_plan
      >>> cell = jrnn.lstm(4)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> prep = prepare(cell, p, jnp.ones((2, 5, 3)), None, None, None, None, Options(),
      ...                where="demo")
      >>> carry, ys, _ = run(cell, prep, make_plan(cell, prep, Options(), where="demo"))
      >>> ys.shape  # time-major
      (5, 2, 4)
    """
    emit = "carries" if plan.return_carries else "y"

    def scan(params, xs, carry, mask, resets, noise):
        if plan.vjp == "autodiff":

            def autodiff(params, xs, carry, mask, resets, noise, unroll=plan.unroll):
                return forward(
                    cell, params, xs, carry, mask, resets, emit=emit, hoist=plan.hoist,
                    reverse=prep.reverse, unroll=unroll, remat=plan.remat, noise=noise,
                )  # fmt: skip

            if plan.infer_unroll == plan.unroll:
                return autodiff(params, xs, carry, mask, resets, noise)
            infer = partial(autodiff, unroll=plan.infer_unroll)
            return _differentiated_as(autodiff, infer)(params, xs, carry, mask, resets, noise)
        static = hoisted.Static(
            cell, plan.hoist, plan.infer_hoist, prep.reverse, plan.unroll, plan.save_step_vjps,
            plan.infer_unroll,
        )  # fmt: skip
        ys, carry = hoisted.scan(static, params, xs, carry, mask, resets)
        return carry, ys

    args = (prep.params, prep.xs, prep.carry, prep.mask, prep.resets, prep.noise)
    if plan.devices > 1:
        carry, out = _split_batch(scan, plan.devices, *args)
    else:
        carry, out = scan(*args)
    return carry, out, None


def _split_batch(scan, devices: int, params, xs, carry, mask, resets, noise):
    """``scan`` inside ``shard_map``: the first batch axis split over ``devices`` host
    devices (time-major ``xs``, ``mask``, ``resets``: axis 1; the carry and per-sequence
    noise: axis 0; per-step noise: axis 1), the parameters replicated; their gradient is
    summed once, at the boundary, after the backward scan."""
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
        mesh=host_devices_mesh(devices),
        in_specs=(rep, split_t, split_b, split_t, split_t, noise_specs),
        out_specs=(out_carry, split_t),
    )(params, xs, carry, mask, resets, noise)


def _differentiated_as(train, infer):
    """``infer`` when evaluated, and differentiated (either mode, any order) as ``train``:
    the same function computed another way (here, another unroll factor of the scan), so
    inference gets its own fastest form while ``jax.grad`` sees exactly ``train``."""
    f = jax.custom_jvp(infer)
    f.defjvp(lambda primals, tangents: jax.jvp(train, primals, tangents))
    return f
