"""The documentation builds, and every Python example in it runs.

* ``mkdocs build --strict`` (the site in ``docs/``: guide pages, the API reference generated
  from the docstrings, the notebooks rendered without executing them) into a temporary folder.
* Every fenced ```` ```python ```` block of README.md and of docs/**/*.md runs alone, in a
  fresh interpreter, in an empty temporary folder, and must exit 0 and print something.  A
  block that is deliberately a fragment is marked with ``<!-- not-run -->`` on the line
  before its fence and skipped.  Test ids name the file and the fence's line.

Each block is one test, so pytest-xdist spreads the blocks over the cores.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from html import escape as html_escape
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.helpers import REPO as ROOT
from tests.helpers import subprocess_env

NOT_RUN = "<!-- not-run -->"
BLOCK_TIMEOUT_S = 600  # a hang guard: a block takes seconds on an idle 2-core machine
FENCE_OPEN = re.compile(r"^(?P<indent>\s*)```python\s*$")

QUICKSTART = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && jrnn train",
    '. .venv/bin/activate && pip install -e ".[test]" && pytest',
)


class Block(NamedTuple):
    id: str  # "docs/guide/cells.md:42" (the line of the opening fence)
    code: str
    run: bool


def doc_files() -> list[Path]:
    docs = sorted(p for p in (ROOT / "docs").rglob("*.md") if "hooks" not in p.parts)
    return [ROOT / "README.md", *docs]


def extract_blocks(path: Path, root: Path = ROOT) -> list[Block]:
    """The ```python blocks of one Markdown file, dedented to their fence's indentation."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = path.relative_to(root).as_posix()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE_OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        indent, start = len(m["indent"]), i
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{rel}:{start + 1}: unclosed ```python block")
        marked = start > 0 and lines[start - 1].strip() == NOT_RUN
        blocks.append(Block(f"{rel}:{start + 1}", "\n".join(body) + "\n", not marked))
        i += 1
    return blocks


BLOCKS = [b for f in doc_files() for b in extract_blocks(f)]


def run_block(block: Block) -> subprocess.CompletedProcess:
    """One block in a fresh interpreter, cwd an empty temporary folder, and its own
    temporary folders (``tempfile.mkdtemp()`` in an example) removed with it."""
    with tempfile.TemporaryDirectory() as scripts, tempfile.TemporaryDirectory() as cwd:
        script = Path(scripts) / (re.sub(r"\W", "_", block.id) + ".py")
        script.write_text(block.code, encoding="utf-8")
        env = subprocess_env(MPLBACKEND="Agg", TMPDIR=scripts)
        try:
            return subprocess.run(
                [sys.executable, str(script)],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=BLOCK_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
            return subprocess.CompletedProcess(
                e.cmd, -9, out, err + f"\n[timed out after {BLOCK_TIMEOUT_S} s]"
            )


@pytest.mark.parametrize(
    "block",
    [
        pytest.param(
            b,
            id=b.id,
            marks=() if b.run else pytest.mark.skip(reason=f"marked {NOT_RUN}"),
        )
        for b in BLOCKS
    ],
)
def test_python_block(block: Block) -> None:
    proc = run_block(block)
    assert proc.returncode == 0, (
        f"{block.id} exited {proc.returncode}\n--- code ---\n{block.code}"
        f"--- stderr (tail) ---\n{proc.stderr[-4000:]}"
    )
    assert proc.stdout.strip(), f"{block.id} printed nothing; an example must show its result"


def test_examples_are_found_and_few_are_skipped() -> None:
    runnable = [b for b in BLOCKS if b.run]
    skipped = [b for b in BLOCKS if not b.run]
    assert sum(b.id.startswith("README.md:") for b in runnable) >= 1
    assert {b.id.split(":")[0] for b in runnable} >= {
        "README.md",
        "docs/getting-started.md",
        "docs/guide/cells.md",
        "docs/guide/unroll.md",
        "docs/guide/training.md",
        "docs/guide/models.md",
        "docs/guide/interop.md",
    }
    assert len(skipped) <= 3, [b.id for b in skipped]


def test_extract_blocks_handles_markers_and_indentation(tmp_path: Path) -> None:
    md = tmp_path / "x.md"
    md.write_text(
        "text\n```python\nprint(1)\n```\n<!-- not-run -->\n```python\nfrag(\n```\n"
        "- item\n\n    ```python\n    if True:\n        print(2)\n    ```\n"
    )
    blocks = extract_blocks(md, root=tmp_path)
    assert [(b.id, b.run) for b in blocks] == [
        ("x.md:2", True),
        ("x.md:6", False),
        ("x.md:11", True),
    ]
    assert blocks[0].code == "print(1)\n"
    assert blocks[2].code == "if True:\n    print(2)\n"


def test_readme_quickstart_is_the_two_commands_ci_runs() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    bash = re.findall(r"^```bash\n(.*?)\n```$", text, flags=re.M | re.S)
    assert tuple(bash[:2]) == QUICKSTART
    assert text.index(QUICKSTART[0]) < 1500, "the Quickstart must stay at the very top"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'pip install -q -e ".[test]"' in ci and "\npytest" in ci


def test_mkdocs_build_strict(built_site: Path) -> None:
    site = built_site  # built once for this test and tests/test_docs_browser.py
    # the API reference is generated from the docstrings, one page per public module
    cells = (site / "api" / "cells" / "index.html").read_text(encoding="utf-8")
    for name in ("jrnn.cells.simple_rnn", "jrnn.cells.lstm", "jrnn.cells.gru"):
        assert f'id="{name}"' in cells
    for module in (
        "base custom cells unrolling stacks strategy losses data seqtasks models attention "
        "decode export train checkpoint interop nn reference sample"
    ).split():
        page = (site / "api" / module / "index.html").read_text(encoding="utf-8")
        assert f'id="jrnn{module}"' in page or f'id="jrnn.{module}"' in page, module
    # the notebooks are rendered (not executed) from notebooks/, with their stored outputs
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        html = (site / "notebooks" / nb.stem / "index.html").read_text(encoding="utf-8")
        assert "jp-Notebook" in html or "jupyter-wrapper" in html, nb.name
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        headings = [
            line.lstrip("#").strip()
            for c in cells
            if c["cell_type"] == "markdown"
            for line in "".join(c["source"]).splitlines()
            if line.startswith("# ")
        ]
        text_only = re.sub(r"<[^>]+>", "", html)  # `code` in a heading renders as <code>
        assert headings and all(
            html_escape(h.replace("`", ""), quote=False) in text_only for h in headings
        ), nb.name
        for c in cells:
            for out in c.get("outputs", []):
                if "image/png" in out.get("data", {}):  # a plot: rendered as the image
                    assert "data:image/png;base64" in html, nb.name
                    continue
                text = out.get("text") or out.get("data", {}).get("text/plain") or ""
                first = "".join(text).strip().splitlines()[:1]
                if first and first[0].strip():
                    assert html_escape(first[0].strip(), quote=False) in html, (nb.name, first)
    assert (site / "cli" / "index.html").exists()
    assert (site / "attention_vs_length.png").exists()
    # the notebooks page shows every notebook with a picture from its own outputs
    page = (site / "notebooks" / "index.html").read_text(encoding="utf-8")
    sys.path.insert(0, str(ROOT / "docs"))
    from gallery import PICK, figures

    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f'gallery/{nb.stem}.png"' in page and f"{nb.stem}/" in page, nb.name
        picture = (site / "gallery" / f"{nb.stem}.png").read_bytes()
        assert picture == figures(nb)[PICK.get(nb.stem, 0)], (
            f"run python docs/gallery.py ({nb.name})"
        )
