"""Doctests of the jrnn package run as a user sees them: float32 and JAX's default dtype
promotion, also when tests/conftest.py (float64 available, strict promotion) is loaded in
the same pytest session."""

import os
import tempfile

import pytest
from _pytest.doctest import DoctestItem

# A persistent XLA compilation cache, kept across runs of the suite (a user's own
# ``JAX_COMPILATION_CACHE_DIR`` wins).  The processes the suite starts (``jrnn`` commands,
# notebooks, documentation examples) inherit ``subprocesses/`` and share it.  Each pytest
# process (the controller, each xdist worker) reads and writes a folder of its own.  (The
# split was made while a worker crash was blamed on a shared cache; the crash was the limit
# on memory mappings, see ``_release_compiled_programs``.  Work stealing gives a worker
# other tests on each run, so its folder warms up slowly: one shared folder again is the
# next step, once a full run confirms it.)
_BASE = os.path.join(tempfile.gettempdir(), f"jrnn-tests-xla-cache-{os.getuid()}")
_SHARED = os.path.join(_BASE, "subprocesses")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _SHARED)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax  # noqa: E402

if os.environ["JAX_COMPILATION_CACHE_DIR"] == _SHARED:  # the suite's, not the user's
    _own = os.path.join(_BASE, os.environ.get("PYTEST_XDIST_WORKER", "controller"))
    jax.config.update("jax_compilation_cache_dir", _own)


@pytest.fixture(autouse=True)
def _default_jax_config_for_doctests(request):
    if not isinstance(request.node, DoctestItem):
        yield
        return
    with jax.enable_x64(False), jax.numpy_dtype_promotion("standard"):
        yield


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Every program JAX compiles stays loaded while its cache entry lives, and eager
    primitives (an eager ``lax.scan`` in a test) are cached for the life of the process.
    XLA:CPU maps each executable's code into memory in several pieces, so a pytest worker
    that runs hundreds of modules reaches the kernel's limit on memory mappings
    (``vm.max_map_count``, 65530 by default): the next compilation fails and, while its
    error unwinds, the process dies of a segmentation fault (seen in ``.ci/run`` at about
    1500 tests on two workers). Releasing the compiled programs after each module keeps a
    worker far below the limit; the persistent compilation cache above reloads any program
    a later module needs."""
    yield
    jax.clear_caches()
