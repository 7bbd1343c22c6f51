"""Doctests of the jrnn package run as a user sees them: float32 and JAX's default dtype
promotion, also when tests/conftest.py (float64 available, strict promotion) is loaded in
the same pytest session."""

import os
import tempfile

# One persistent XLA compilation cache for the whole suite: its worker processes, the
# ``jrnn`` commands, notebooks and documentation examples it starts (they inherit the
# variable) compile many identical programs.  A user's own setting wins.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"jrnn-tests-xla-cache-{os.getuid()}"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax  # noqa: E402
import pytest
from _pytest.doctest import DoctestItem


@pytest.fixture(autouse=True)
def _default_jax_config_for_doctests(request):
    if not isinstance(request.node, DoctestItem):
        yield
        return
    with jax.enable_x64(False), jax.numpy_dtype_promotion("standard"):
        yield
