"""Shared test helpers: the cell variants, random parameters and carry conversions."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jrnn

REPO = Path(__file__).resolve().parents[1]


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment for a subprocess: this checkout first on ``PYTHONPATH``,
    the rest of the path kept (the suite's ``sitecustomize``, see the root ``conftest.py``),
    plus ``extra``."""
    path = os.pathsep.join(filter(None, [str(REPO), os.getenv("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


# (id, factory, reference kind, reference activation)
VARIANTS = [
    ("rnn_tanh", lambda h, **kw: jrnn.simple_rnn(h, **kw), "rnn", "tanh"),
    ("rnn_relu", lambda h, **kw: jrnn.simple_rnn(h, activation=jax.nn.relu, **kw), "rnn", "relu"),
    ("lstm", lambda h, **kw: jrnn.lstm(h, **kw), "lstm", "tanh"),
    ("lstm_peephole", lambda h, **kw: jrnn.lstm(h, peephole=True, **kw), "lstm", "tanh"),
    ("gru", lambda h, **kw: jrnn.gru(h, **kw), "gru", "tanh"),
    ("gru_reset_after", lambda h, **kw: jrnn.gru(h, reset_after=True, **kw), "gru", "tanh"),
]
VARIANT_IDS = [v[0] for v in VARIANTS]


def random_params(cell: jrnn.Cell, key, input_size: int, scale: float = 0.5):
    """Cell params with every leaf random (biases and peepholes too, so all terms count)."""
    params = cell.init(key, input_size)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    return jax.tree.unflatten(
        treedef,
        [scale * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)],
    )


def random_carry(cell: jrnn.Cell, params, key, batch_shape):
    template = cell.initial_carry(params, batch_shape)
    leaves, treedef = jax.tree.flatten(template)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
    )


def to_ref_carry(kind: str, carry):
    """jrnn carry (RNNState / LSTMState) -> reference carry (h, or the tuple (h, c))."""
    if kind == "lstm":
        return (np.asarray(carry.h), np.asarray(carry.c))
    return np.asarray(carry.h)


def ref_to_tuple(kind: str, carry):
    """Reference carry -> tuple of arrays in jrnn's field order."""
    return tuple(carry) if kind == "lstm" else (carry,)


def np_params(params):
    return {k: np.asarray(v) for k, v in params.items()}


def f64(x):
    return jnp.asarray(x, jnp.float64)


def interrupt_train_step_at(monkeypatch, step_number: int) -> None:
    """Makes the CLI's train step send this process SIGINT (Ctrl-C) at call ``step_number``."""
    import os
    import signal

    import jrnn.train

    real = jrnn.train.make_train_step

    def interrupting(*args, **kwargs):
        step = real(*args, **kwargs)
        calls = []

        def wrapped(*a):
            calls.append(1)
            if len(calls) == step_number:
                os.kill(os.getpid(), signal.SIGINT)
            return step(*a)

        return wrapped

    monkeypatch.setattr(jrnn.train, "make_train_step", interrupting)
