"""Doctests of the jrnn package run as a user sees them: float32 and JAX's default dtype
promotion, also when tests/conftest.py (float64 available, strict promotion) is loaded in
the same pytest session."""

import importlib
import os
import tempfile
from pathlib import Path

import pytest
from _pytest.doctest import DoctestItem

# One persistent XLA compilation cache, kept across runs of the suite and shared by every
# process of a run: the pytest controller, the xdist workers (work stealing hands a worker
# different tests on each run, so per-worker folders would stay cold) and the processes the
# suite starts (``jrnn`` commands, notebooks, documentation examples), which inherit these
# variables.  A user's own ``JAX_COMPILATION_CACHE_DIR`` wins.
# - Every program is kept, however quick its compilation: the suite compiles thousands of
#   small programs, and ``jax.clear_caches()`` after each module (below) drops them from
#   memory, so a later module or process reloads them from here.
# - No size limit, so JAX takes no lock and does not list the folder on every write; the
#   suite's processes write entries atomically instead (``tests/_site/sitecustomize.py``,
#   first on ``PYTHONPATH``), and the folder is pruned when a run starts.
# - The suite's programs are small and most run once, so XLA compiles them without its
#   expensive LLVM passes (``JAX_DISABLE_MOST_OPTIMIZATIONS``): the same programs, the same
#   IEEE arithmetic, compiled faster.  On tests/test_cells.py, test_unroll.py,
#   test_padding.py, test_models.py and test_layer_norm.py (``-n 2``, two cores), with a
#   cold cache: 224 s with JAX's defaults here, 167 s with this flag, 145 s with the
#   unlimited cache too; with a warm cache 114 s and 48 s.  A test that asserts two
#   different programs give the same bits compiles as users do (``tests/conftest.py``,
#   fixture ``xla_defaults``): XLA guarantees no such identity, and its unoptimised code
#   can round one of them differently in the last bit.
_SITE = Path(__file__).resolve().parent / "tests" / "_site"
_CACHE = os.path.join(tempfile.gettempdir(), f"jrnn-tests-xla-cache-{os.getuid()}")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", "-1")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SITE), os.getenv("PYTHONPATH")]))
_site = importlib.import_module("tests._site.sitecustomize")  # this process too, before JAX

import jax  # noqa: E402


@pytest.fixture(autouse=True)
def _default_jax_config_for_doctests(request, monkeypatch):
    """A doctest runs with JAX's defaults, and the folders its example makes with
    ``tempfile.mkdtemp()`` go to the test's own temporary folder."""
    if not isinstance(request.node, DoctestItem):
        yield
        return
    monkeypatch.setattr(tempfile, "tempdir", str(request.getfixturevalue("tmp_path")))
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


def pytest_sessionstart(session) -> None:
    mine = os.environ["JAX_COMPILATION_CACHE_DIR"] == _CACHE and os.path.isdir(_CACHE)
    if mine and not os.getenv("PYTEST_XDIST_WORKER"):
        _site.prune(_CACHE)
