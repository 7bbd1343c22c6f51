"""Doctests of the jrnn package run as a user sees them: float32 and JAX's default dtype
promotion, also when tests/conftest.py (float64 available, strict promotion) is loaded in
the same pytest session."""

import atexit
import os
import shutil
import tempfile

# One XLA compilation cache for one run of the suite: its worker processes, the ``jrnn``
# commands, notebooks and documentation examples it starts (they inherit the variable)
# compile many identical programs.  The process that starts the run makes a fresh folder
# and removes it at exit, so no entry outlives the run: a program is only ever read back
# by the code and the jaxlib that compiled it (a folder kept across runs of the suite once
# crashed a worker in XLA's executable deserialization).  A user's own setting wins.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="jrnn-tests-xla-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
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
