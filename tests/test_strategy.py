"""``jrnn.strategy.plan``: every choice of how ``unroll`` runs, in one function, as a table.

Each row is (cell, input shape, options, backend) -> the plan's engine, ``hoist``,
``vjp`` and inference hoisting, or the error it raises.  The same inputs give the same
plan, and a custom cell with the built-in cell's ``FastPath`` gets the built-in's plan.
"""

from __future__ import annotations

from functools import cache

import jax
import jax.numpy as jnp
import pytest

import jrnn
from jrnn.newton import NewtonOptions
from jrnn.prepare import Options, prepare
from jrnn.strategy import plan

LSTM = jrnn.lstm(256)
SMALL = jrnn.lstm(8)
MINGRU = jrnn.mingru(8)
MLSTM = jrnn.mlstm(8, num_heads=2)  # `parallel`: the same rules as `affine`
ZONEOUT = jrnn.zoneout(SMALL, 0.2)
STEP_ONLY = jrnn.custom_cell(SMALL.init, SMALL.step, initial_carry=SMALL.initial_carry)

# (id, cell, [batch, T, input], options, backend, key?, solver?, expected (engine, hoist,
# vjp, infer_hoist) or (exception, regex))
ROWS = [
    ("long_small_batch_cpu", LSTM, (4, 2048, 2), {}, "cpu", 0, 0, ("scan", True, "hoisted", False)),
    ("long_small_batch_gpu", LSTM, (4, 2048, 2), {}, "gpu", 0, 0, ("scan", True, "hoisted", True)),
    ("large_batch_cpu", LSTM, (128, 64, 2), {}, "cpu", 0, 0, ("scan", False, "autodiff", False)),
    ("large_batch_gpu", LSTM, (128, 64, 2), {}, "gpu", 0, 0, ("scan", True, "hoisted", True)),
    ("explicit", LSTM, (128, 64, 2), {"hoist": False, "vjp": "hoisted"}, "cpu", 0, 0,
     ("scan", False, "hoisted", False)),
    ("remat", LSTM, (4, 2048, 2), {"remat": "sqrt"}, "gpu", 0, 0,
     ("scan", False, "autodiff", False)),
    ("return_carries", LSTM, (4, 2048, 2), {"return_carries": True}, "cpu", 0, 0,
     ("scan", True, "autodiff", False)),
    ("training_noise", ZONEOUT, (4, 64, 2), {"hoist": True}, "gpu", 1, 0,
     ("scan", False, "autodiff", False)),
    ("training_noise_newton", ZONEOUT, (4, 64, 2), {"method": "newton"}, "cpu", 1, 0,
     (ValueError, "cannot train a regularised cell")),
    ("training_noise_auto", ZONEOUT, (1, 8192, 2), {"method": "auto"}, "gpu", 1, 0,
     ("scan", False, "autodiff", False)),
    ("newton", SMALL, (4, 64, 2), {"method": "newton"}, "cpu", 0, 0, ("newton",)),
    ("quasi", SMALL, (4, 64, 2), {"method": "quasi-newton"}, "cpu", 0, 0, ("quasi-newton",)),
    ("auto_cpu", SMALL, (1, 8192, 2), {"method": "auto"}, "cpu", 0, 0, ("scan",)),
    ("auto_gpu_long", SMALL, (1, 8192, 2), {"method": "auto"}, "gpu", 0, 0, ("quasi-newton",)),
    ("auto_gpu_short", SMALL, (1, 64, 2), {"method": "auto"}, "gpu", 0, 0, ("scan",)),
    ("empty_sequence", SMALL, (4, 0, 2), {"method": "newton"}, "cpu", 0, 0, ("scan",)),
    ("affine_newton", MINGRU, (4, 64, 2), {"method": "newton"}, "cpu", 0, 0, ("associative",)),
    ("affine_auto_cpu", MINGRU, (4, 512, 2), {"method": "auto"}, "cpu", 0, 0, ("scan",)),
    ("affine_auto_gpu", MINGRU, (4, 512, 2), {"method": "auto"}, "gpu", 0, 0, ("associative",)),
    ("affine_solve", MINGRU, (4, 64, 2), {"method": "newton"}, "cpu", 0, 1, ("newton",)),
    ("parallel_newton", MLSTM, (4, 64, 2), {"method": "newton"}, "cpu", 0, 0, ("associative",)),
    ("parallel_quasi", MLSTM, (4, 64, 2), {"method": "quasi-newton"}, "cpu", 0, 0,
     ("associative",)),
    ("parallel_auto_cpu", MLSTM, (4, 512, 2), {"method": "auto"}, "cpu", 0, 0, ("scan",)),
    ("parallel_auto_gpu", MLSTM, (4, 512, 2), {"method": "auto"}, "gpu", 0, 0, ("associative",)),
    ("parallel_auto_gpu_short", MLSTM, (4, 64, 2), {"method": "auto"}, "gpu", 0, 0, ("scan",)),
    ("parallel_solve", MLSTM, (4, 64, 2), {"method": "newton"}, "cpu", 0, 1, ("newton",)),
    ("step_only", STEP_ONLY, (4, 2048, 2), {}, "gpu", 0, 0, ("scan", False, "autodiff", False)),
    ("step_only_hoist", STEP_ONLY, (4, 64, 2), {"hoist": True}, "cpu", 0, 0,
     (ValueError, r"`hoist=True` needs the cell's FastPath")),
    # jax.export's symbolic dimensions (strings): the fixed, shape-free choices
    ("symbolic_cpu", LSTM, ("b", "t", 2), {}, "cpu", 0, 0, ("scan", False, "autodiff", False)),
    ("symbolic_batch_cpu", LSTM, ("b", 2048, 2), {}, "cpu", 0, 0,
     ("scan", False, "autodiff", False)),
    ("symbolic_gpu", LSTM, ("b", "t", 2), {}, "gpu", 0, 0, ("scan", True, "hoisted", True)),
    ("symbolic_explicit", LSTM, ("b", "t", 2), {"hoist": True, "vjp": "hoisted"}, "cpu", 0, 0,
     ("scan", True, "hoisted", True)),
    ("symbolic_auto_gpu", SMALL, (1, "t", 2), {"method": "auto"}, "gpu", 0, 0, ("scan",)),
    ("symbolic_affine_newton", MINGRU, (4, "t", 2), {"method": "newton"}, "gpu", 0, 0, ("scan",)),
    ("symbolic_parallel_newton", MLSTM, (4, "t", 2), {"method": "newton"}, "gpu", 0, 0,
     ("scan",)),
    ("symbolic_newton", SMALL, ("b", "t", 2), {"method": "newton"}, "cpu", 0, 0,
     (ValueError, r"`method`='newton' needs concrete batch and time dimensions")),
]  # fmt: skip


@cache
def _params(cell, input_size):
    return cell.init(jax.random.key(1), input_size)


def _plan(cell, shape, options, backend, key, solver):
    """The plan for ``xs`` of ``shape``; a string in it is a symbolic dimension, and the
    plan is then made while ``jax.export`` traces ``unroll``'s preparation."""
    options = Options(**options)
    k = jax.random.key(0) if key else None

    def plan_for(xs):
        prep = prepare(cell, _params(cell, shape[-1]), xs, None, None, None, k, options,
                       where="unroll")  # fmt: skip
        return plan(cell, prep, options, where="unroll", backend=backend,
                    solver=NewtonOptions() if solver else None)  # fmt: skip

    if all(isinstance(d, int) for d in shape):
        return plan_for(jnp.zeros(shape, jnp.float32))
    plans = []
    dims = jax.export.symbolic_shape(", ".join(map(str, shape)))
    trace = jax.jit(lambda xs: plans.append(plan_for(xs)) or xs)
    jax.export.export(trace)(jax.ShapeDtypeStruct(dims, jnp.float32))
    return plans[0]


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_the_plan_table(row):
    _, cell, shape, options, backend, key, solver, expected = row
    if isinstance(expected[0], type):
        with pytest.raises(expected[0], match=expected[1]):
            _plan(cell, shape, options, backend, key, solver)
        return
    got = _plan(cell, shape, options, backend, key, solver)
    assert (got.engine, got.hoist, got.vjp, got.infer_hoist)[: len(expected)] == expected
    assert got == _plan(cell, shape, options, backend, key, solver)  # deterministic
    assert (got.solver is not None) == (got.engine in ("newton", "quasi-newton") and solver)


@pytest.mark.parametrize("shape", [(4, "t", 2), ("b", 64, 2)])
def test_symbolic_time_or_batch_needs_no_shape_dependent_choice(shape):
    """``unroll=k`` and ``remat="sqrt"`` need the number of steps: 1 and ``"step"`` when it
    is symbolic; nor is a symbolic batch split over host devices."""
    got = _plan(SMALL, shape, {"unroll": 4, "remat": "sqrt"}, "cpu", 0, 0)
    symbolic_time = isinstance(shape[1], str)
    assert (got.unroll, got.remat) == ((1, "step") if symbolic_time else (4, "sqrt"))
    assert got.devices == 1


@pytest.mark.parametrize("shape", [(4, 2048, 2), (128, 64, 2), (8, 1024, 2)])
def test_a_custom_cell_with_the_fast_path_gets_the_built_in_plan(shape):
    fast = jrnn.custom_cell(
        LSTM.init, LSTM.step, initial_carry=LSTM.initial_carry, fast=LSTM.fast, name="mine"
    )
    for backend in ("cpu", "gpu"):
        assert _plan(fast, shape, {}, backend, 0, 0) == _plan(LSTM, shape, {}, backend, 0, 0)
