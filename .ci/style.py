"""Style rules ruff cannot express, run by ``.ci/run`` next to ruff (``python .ci/style.py``).

They are design rules, not behaviour, so they live here and not in the test count.

* ``jrnn/cli.py`` only parses the command line and dispatches to :mod:`jrnn.app`: at most
  300 lines (ruff has no module-length rule), importing nothing but the standard library,
  ``jrnn`` (for ``__version__``) and ``jrnn.app``.
* The package's modules import each other without a circle (module-level imports; an import
  inside a function is a deliberate lazy one), and no module imports another's private
  (``_name``) names: what is shared is public, or it moves.
* No function in ``jrnn`` is longer than 80 lines of its own code (its docstring and the
  bodies of the functions it defines not counted).

Prints one line per broken rule on stderr and exits 1; exits 0 when all hold.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "jrnn" / "cli.py"
CLI_MAX_LINES = 300
PACKAGE = ROOT / "jrnn"
FUNCTION_MAX_LINES = 80


def _imports(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def _cli_problems() -> list[str]:
    text = CLI.read_text(encoding="utf-8")
    problems = []
    lines = len(text.splitlines())
    if lines > CLI_MAX_LINES:
        problems.append(
            f"jrnn/cli.py: {lines} lines, over its budget of {CLI_MAX_LINES}: it only parses "
            "and dispatches; move the work into jrnn.app"
        )
    for name in sorted(_imports(ast.parse(text))):
        top = name.split(".")[0]
        if name == "jrnn" or name.startswith("jrnn.app") or top in sys.stdlib_module_names:
            continue
        problems.append(
            f"jrnn/cli.py imports {name}: it only parses and dispatches to jrnn.app "
            "(the library and third-party packages are jrnn.app's to import)"
        )
    return problems


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _package_problems() -> list[str]:
    modules = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    problems = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(ROOT).as_posix()
        edges = graph.setdefault(name, set())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _absolute(node, name, path.name == "__init__.py")
                private = [a.name for a in node.names if a.name.startswith("_")]
                if target.startswith("jrnn") and target != name and private:
                    problems.append(
                        f"{where}:{node.lineno} imports private {', '.join(private)} from "
                        f"{target}: make it public or move it"
                    )
        for node in tree.body:  # module level: the import graph
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom):
                target = _absolute(node, name, path.name == "__init__.py")
                subs = {f"{target}.{a.name}" for a in node.names} & modules.keys()
                edges |= subs or ({target} & modules.keys())
        edges.discard(name)
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                n = _own_lines(fn)
                if n > FUNCTION_MAX_LINES:
                    problems.append(
                        f"{where}:{fn.lineno} {fn.name} has {n} lines of its own code, over "
                        f"{FUNCTION_MAX_LINES}: split it"
                    )
    return problems + [f"import circle: {' -> '.join(c)}" for c in _circles(graph)]


def _own_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    lines = set(range(fn.lineno, (fn.end_lineno or fn.lineno) + 1))
    if ast.get_docstring(fn, clean=False):
        doc = fn.body[0]
        lines -= set(range(doc.lineno, (doc.end_lineno or doc.lineno) + 1))
    for node in ast.walk(fn):
        if node is not fn and isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
        ):
            lines -= set(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return len(lines)


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected group of modules (depth-first search)."""
    found, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            found.append([*path[path.index(node) :], node])
            return
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*path, node])
        done.add(node)

    for start in sorted(graph):
        visit(start, [])
    return found


def main() -> int:
    problems = _cli_problems() + _package_problems()
    for p in problems:
        print(f"style: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
