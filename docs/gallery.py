"""Writes ``docs/gallery/NN_name.png``: one picture per notebook for ``docs/notebooks.md``,
taken from the notebook's committed outputs (the first figure, or the one ``PICK`` names).

Run after re-executing a notebook: ``python docs/gallery.py``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PICK = {"03_vanishing_exploding": 0, "04_seq2seq_attention": 1}
"""Which figure of a notebook (0-based among its figures); default the first."""


def figures(notebook: Path) -> list[bytes]:
    """The PNG outputs of ``notebook``, in order."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return [
        base64.b64decode(out["data"]["image/png"])
        for cell in cells
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    ]


def main() -> None:
    out = ROOT / "docs" / "gallery"
    out.mkdir(exist_ok=True)
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        pngs = figures(nb)
        if pngs:
            (out / f"{nb.stem}.png").write_bytes(pngs[PICK.get(nb.stem, 0)])
            print(f"docs/gallery/{nb.stem}.png")


if __name__ == "__main__":
    main()
