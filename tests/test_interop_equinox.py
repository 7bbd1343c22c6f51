"""Equinox cell converters (``jrnn.interop.from_equinox``) against Equinox's own forward.

``equinox.nn.LSTMCell`` / ``GRUCell`` (with and without bias, random weights) run one
sequence step by step through their own ``__call__``; the converted jrnn cell runs it
through ``jrnn.unroll`` (unbatched ``[T, I]``) from the same initial carry.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn.interop import carry_from_equinox, carry_to_equinox, from_equinox

eqx = pytest.importorskip("equinox")

T, I, H = 4, 3, 5


def randomize(module, key):
    arrays, static = eqx.partition(module, eqx.is_array)
    leaves, treedef = jax.tree.flatten(arrays)
    keys = jax.random.split(key, len(leaves))
    new = [0.5 * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
    return eqx.combine(jax.tree.unflatten(treedef, new), static)


@pytest.mark.parametrize(
    "kind, use_bias, dtype",
    [
        ("lstm", True, jnp.float64),
        ("lstm", False, jnp.float64),
        ("gru", True, jnp.float64),
        ("gru", False, jnp.float32),
    ],
)
def test_cells_match_equinox(kind, use_bias, dtype):
    make = eqx.nn.LSTMCell if kind == "lstm" else eqx.nn.GRUCell
    module = randomize(
        make(I, H, use_bias=use_bias, dtype=dtype, key=jax.random.key(0)), jax.random.key(1)
    )
    k1, k2, k3 = jax.random.split(jax.random.key(2), 3)
    xs = jax.random.normal(k1, (T, I), dtype)
    h0 = 0.5 * jax.random.normal(k2, (H,), dtype)
    carry0 = (h0, 0.5 * jax.random.normal(k3, (H,), dtype)) if kind == "lstm" else h0

    @jax.jit
    def equinox_sequence(carry, xs):
        ys = []
        for t in range(T):
            carry = module(xs[t], carry)
            ys.append(carry[0] if kind == "lstm" else carry)
        return jnp.stack(ys), carry

    ys_ref, carry = equinox_sequence(carry0, xs)
    cell, params = from_equinox(module)
    assert params["w_ih"].dtype == dtype
    ys, final = jax.jit(lambda p, x, c: jrnn.unroll(cell, p, x, carry=c))(
        params, xs, carry_from_equinox(module, carry0)
    )
    tol = 1e-12 if dtype == jnp.float64 else 1e-5
    np.testing.assert_allclose(ys, ys_ref, rtol=tol, atol=tol)
    for a, b in zip(
        jax.tree.leaves(carry_to_equinox(module, final)), jax.tree.leaves(carry), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    if not use_bias:
        assert not np.any(params["b"]) and (kind == "lstm" or not np.any(params["b_hn"]))


def test_bad_input_raises(monkeypatch):
    with pytest.raises(TypeError, match="unsupported module .*Linear"):
        from_equinox(eqx.nn.Linear(2, 2, key=jax.random.key(0)))
    monkeypatch.setitem(sys.modules, "equinox", None)
    with pytest.raises(ImportError, match="needs Equinox.*pip install equinox"):
        from_equinox(object())
