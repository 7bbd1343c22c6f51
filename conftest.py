"""Doctests of the jrnn package run as a user sees them: float32 and JAX's default dtype
promotion, also when tests/conftest.py (float64 available, strict promotion) is loaded in
the same pytest session."""

import os
import tempfile

import pytest
from _pytest.doctest import DoctestItem

# One persistent XLA compilation cache, kept across runs of the suite and shared by every
# process of a run: the pytest controller, the xdist workers (work stealing hands a worker
# different tests on each run, so per-worker folders would stay cold) and the processes the
# suite starts (``jrnn`` commands, notebooks, documentation examples), which inherit it.
# A user's own ``JAX_COMPILATION_CACHE_DIR`` wins.  JAX writes an entry in place, not by
# renaming a finished file, so a process could read another's half-written entry; with a
# size limit set, JAX takes a file lock around every read and write (``filelock``, which
# the test extra installs with torch), so no process sees a torn entry.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"jrnn-tests-xla-cache-{os.getuid()}"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(4 << 30))

import jax  # noqa: E402


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
