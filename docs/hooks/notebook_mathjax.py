"""mkdocs hook: notebook pages drop nbconvert's MathJax loader.

mkdocs-jupyter's template loads MathJax from ``custom_mathjax_url`` (empty: a
``<script src="">`` that loads nothing) and configures it; the site typesets maths with its
own KaTeX (``docs/assets/js/katex.js``), so both are dead weight and go.
"""

from __future__ import annotations

import re
from typing import Any

MATHJAX = re.compile(
    r'<!-- Load mathjax -->\s*<script src="">\s*</script>'
    r'|<!-- MathJax configuration -->\s*<script type="text/x-mathjax-config">.*?</script>',
    flags=re.S,
)


def on_post_page(output: str, page: Any, **kwargs: Any) -> str:
    if not page.file.src_uri.endswith(".ipynb"):
        return output
    return MATHJAX.sub("", output)
