"""mkdocs hook: a notebook page's table of contents links to its headings as rendered.

mkdocs-jupyter builds a notebook's table of contents from a Markdown conversion of it, in
which inline code is lost: "by hand and by `jax.grad`" became "by hand and by", with an
anchor (``#...-by``) that the page, rendered by nbconvert, does not have.  This puts each
entry's title and anchor back from the rendered headings, in order; a page whose headings
and entries do not pair up one to one is left alone.
"""

from __future__ import annotations

import html
import re
from typing import Any

HEADING = re.compile(r'<h([1-6])\s+id="([^"]+)"[^>]*>(.*?)</h\1>', flags=re.S)


def _entries(items: Any) -> list[Any]:
    return [e for item in items for e in (item, *_entries(item.children))]


def on_page_content(content: str, page: Any, **kwargs: Any) -> str:
    if not page.file.src_uri.endswith(".ipynb"):
        return content
    entries = _entries(page.toc)
    levels = {e.level for e in entries}
    headings = [
        (html.unescape(i), re.sub(r"<a class=\"anchor-link\".*?</a>|<[^>]+>", "", t))
        for level, i, t in HEADING.findall(content)
        if int(level) in levels
    ]
    if len(headings) != len(entries):
        return content
    for entry, (anchor, text) in zip(entries, headings, strict=True):
        entry.id = anchor
        entry.title = html.unescape(text).replace("¶", "").strip()
    return content
