"""jrnn: recurrent neural networks as pure JAX functions.

A cell is an ``init`` + ``step`` pair over a parameter pytree; sequences are unrolled with
``jax.lax.scan``; backpropagation through time is ``jax.grad``.

``import jrnn`` is cheap: the public names below and the public submodules (``jrnn.losses``,
``jrnn.data``, ``jrnn.interop``, ``jrnn.nn``, ``jrnn.diagnostics``, ...) load, with JAX, on
first use, so the ``jrnn`` command refuses bad input without importing JAX.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Each public name and the module it comes from: the one table of the package's surface.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "jrnn.base": ("Cell", "FastPath", "LSTMState", "RNNState"),
    "jrnn.cells": ("gru", "lstm", "simple_rnn"),
    "jrnn.custom": ("custom_cell",),
    "jrnn.mincells": ("lru", "mingru", "minlstm"),
    "jrnn.griffin": ("rglru",),
    "jrnn.xlstm": ("mlstm", "slstm"),
    "jrnn.decode": ("Beams", "Decoded", "beam_search", "greedy_decode", "sample_decode"),
    "jrnn.models": (
        "EncoderDecoder",
        "FeedbackModel",
        "Model",
        "ModelAux",
        "output_recurrent",
        "seq2seq",
        "seq2vec",
        "sequence_model",
        "tagger",
        "vec2seq",
    ),
    "jrnn.regularisers": ("recurrent_dropout", "zoneout"),
    "jrnn.sharding": ("use_cpu_cores",),
    "jrnn.train": (
        "TrainState",
        "evaluate",
        "init_train_state",
        "make_eval_step",
        "make_train_step",
        "tbptt_value_and_grad",
    ),
    "jrnn.prepare": ("flip_within_lengths",),
    "jrnn.stacks": ("Stack", "stack"),
    "jrnn.strategy": ("unroll_defaults",),
    "jrnn.unrolling": ("unroll",),
}
_RENAMED = {"unroll_defaults": "default_strategy"}  # public name -> name in its module

# Public submodules reachable as attributes after ``import jrnn``.
_LAZY_SUBMODULES = (
    "app",
    "attention",
    "base",
    "cells",
    "checkpoint",
    "checks",
    "custom",
    "data",
    "decode",
    "diagnostics",
    "diagonals",
    "export",
    "forward",
    "griffin",
    "hoisted",
    "interop",
    "keys",
    "linear_scan",
    "losses",
    "mincells",
    "models",
    "newton",
    "nn",
    "onnx_graph",
    "prepare",
    "reference",
    "regularisers",
    "sample",
    "scan",
    "seqtasks",
    "sharding",
    "stacks",
    "strategy",
    "train",
    "unrolling",
    "xlstm",
)

__all__ = sorted(name for names in _EXPORTS.values() for name in names)


def _load() -> None:
    """Binds every public name (the first time one is used); importing them also binds the
    submodules they come from (``jrnn.train``, ``jrnn.models``, ...)."""
    values = {}
    for module_name, names in _EXPORTS.items():
        module = importlib.import_module(module_name)
        values.update({name: getattr(module, _RENAMED.get(name, name)) for name in names})
    globals().update(values)


def __getattr__(name: str) -> Any:
    if name in __all__:
        _load()
        return globals()[name]
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"jrnn.{name}")
    raise AttributeError(f"module 'jrnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_LAZY_SUBMODULES))
