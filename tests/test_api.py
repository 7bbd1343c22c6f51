"""The public surface: every public submodule reachable after ``import jrnn``, a light import."""

import subprocess
import sys

import pytest

import jrnn

SUBMODULES = [name for name in jrnn._LAZY_SUBMODULES if name != "app"]


def _fresh(code: str) -> str:
    """Runs ``code`` in a fresh interpreter (nothing imported yet) and returns its stdout."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    return out.stdout.strip()


def test_every_public_submodule_is_reachable_after_import_jrnn():
    code = (
        "import types, jrnn\n"
        f"names = {SUBMODULES + ['app']!r}\n"
        "bad = [n for n in names if not isinstance(getattr(jrnn, n), types.ModuleType)]\n"
        "print(bad)"
    )
    assert _fresh(code) == "[]"


def test_import_jrnn_loads_no_heavy_optional_library():
    # flax, orbax, matplotlib and torch load only with the modules that need them
    code = (
        "import sys, jrnn\n"
        "print(sorted(m for m in ('flax', 'orbax', 'matplotlib', 'torch', 'tqdm')"
        " if m in sys.modules))"
    )
    assert _fresh(code) == "[]"


@pytest.mark.parametrize("name", jrnn.__all__)
def test_every_name_in_all_exists(name):
    assert getattr(jrnn, name) is not None


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        jrnn.nope  # noqa: B018


def test_version_is_the_package_metadata_version():
    from importlib.metadata import version

    assert jrnn.__version__ == version("jrnn")
