"""The public surface: the export table (``jrnn.__all__``), every public submodule reachable
after ``import jrnn``, a light import."""

import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

import jrnn

REPO = Path(__file__).resolve().parents[1]
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


def _names_used_in(text: str) -> set[str]:
    """``X`` of every ``jrnn.X`` in ``text`` (not ``jrnn.X`` inside ``a.jrnn.X``)."""
    return set(re.findall(r"(?<![\w.])jrnn\.([A-Za-z_]\w*)", text))


def test_the_export_table_is_the_public_surface():
    """``jrnn.__all__`` is ``_EXPORTS`` (no name from two modules); each name is the very
    object its module defines under that name (or its ``_RENAMED`` one), not an alias, and
    lists as public; and nothing public is missing: every ``jrnn.X`` that the README, docs,
    notebooks, benchmarks and the package's own docstrings and messages tell a user to
    write is an export or a module."""
    table = [(module, name) for module, names in jrnn._EXPORTS.items() for name in names]
    assert jrnn.__all__ == sorted(name for _, name in table)
    assert len(set(jrnn.__all__)) == len(table)  # no name exported by two modules
    assert set(jrnn._RENAMED) <= set(jrnn.__all__)
    for module_name, name in table:
        assert module_name.removeprefix("jrnn.") in jrnn._LAZY_SUBMODULES, module_name
        module = importlib.import_module(module_name)
        source = jrnn._RENAMED.get(name, name)
        obj = getattr(jrnn, name)
        assert obj is getattr(module, source), f"jrnn.{name} is not {module_name}.{source}"
        assert obj.__name__ == source, f"jrnn.{name} is {obj.__name__}, an alias"
        assert not source.startswith("_"), f"{module_name}.{source}"
        if hasattr(module, "__all__"):  # a module that says what it makes public
            assert source in module.__all__, f"{module_name}.__all__ lacks {source}"
        else:  # defined there, not imported from elsewhere
            assert obj.__module__ == module_name, f"{name}: {obj.__module__}"

    texts = [REPO / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "docs").rglob("*.py")]
    texts += [*(REPO / "notebooks").rglob("*.ipynb"), *(REPO / "benchmarks").rglob("*.py")]
    texts += [*(REPO / "jrnn").rglob("*.py")]
    used: dict[str, str] = {}
    for path in texts:
        for name in _names_used_in(path.read_text(encoding="utf-8")):
            used.setdefault(name, path.relative_to(REPO).as_posix())
    assert {"unroll", "lstm", "custom_cell", "use_cpu_cores", "nn"} <= set(used)
    missing = {
        name: where
        for name, where in used.items()
        if name not in jrnn.__all__
        and name not in jrnn._LAZY_SUBMODULES
        and not (name.startswith("__") and hasattr(jrnn, name))
        and importlib.util.find_spec(f"jrnn.{name}") is None
    }
    assert not missing, f"used as jrnn.NAME but neither exported nor a module: {missing}"


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        jrnn.nope  # noqa: B018


def test_version_is_the_package_metadata_version():
    from importlib.metadata import version

    assert jrnn.__version__ == version("jrnn")
