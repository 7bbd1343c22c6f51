"""The built site as a reader sees it: every page opened in headless Chromium.

The site that ``mkdocs build --strict`` builds (``built_site``, tests/conftest.py), served
over HTTP from a thread; one Chromium (Debian's ``chromium``, driven through
``tests/cdp.py``) opens each page, waits for the load and for KaTeX
(``<body data-math="done">``, set by ``docs/assets/js/katex.js``), and
asserts on the rendered DOM: no raw ``$...$`` / ``\\(...\\)`` / ``\\[...\\]`` outside code,
KaTeX output wherever the page's source has maths, no Sphinx role (``:func:`` ...), no image
that failed to load, and no internal link to a missing page or anchor.  Screenshots of the
home page, a guide page, a notebook page and an API page are saved under the test's
temporary folder and their paths printed (``pytest -s``).

Without Chromium the test is skipped, unless ``JRNN_REQUIRE_BROWSER=1`` (``.ci/run`` sets
it, after installing Chromium) makes its absence a failure.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.cdp import Browser, find_chromium

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = {  # page -> what to scroll into view first
    "index.html": "h1",
    "guide/parallel/index.html": ".md-content .katex",
    "notebooks/02_bptt_by_hand/index.html": ".md-content .katex-display",
    "api/unrolling/index.html": "#jrnn\\.unrolling\\.unroll",
}
# A page with one of each defect: the checks must see them all (a check that cannot fail
# would pass every page).
PROBE = (
    '<link rel="preconnect" href="https://fonts.gstatic.com">'
    '<body data-math="done"><div class="md-content"><p>raw $x^2$ and \\[ y \\]</p>'
    "<p>see :func:`jrnn.unroll` and [<code>jrnn.scan</code>][]</p>"
    '<pre style="width:5em;overflow:hidden">a line far wider than five ems</pre>'
    '<img src="missing.png"><a href="nowhere/">x</a><pre><code>$ok$</code></pre></div></body>'
)
READY = "document.readyState === 'complete' && document.body.dataset.math === 'done'"
# What one page looks like, rendered: computed in the page, returned as JSON.
INSPECT = r"""(() => {
  const skip = "pre, code, script, style, textarea, .katex, .katex-mathml";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const raw = [], roles = [], refs = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement.closest(skip)) continue;
    const t = n.textContent;
    const m = t.match(/\$[^$\s][^$]*\$|\\\(|\\\)|\\\[|\\\]/);
    if (m) raw.push(t.slice(Math.max(0, m.index - 30), m.index + 50));
    const r = t.match(/:(func|class|mod|meth|attr|data|exc|obj):`?/);
    if (r) roles.push(t.slice(Math.max(0, r.index - 30), r.index + 50));
  }
  // an unresolved cross-reference is left as the text "[name][]" or "[name][path]"
  for (const c of document.querySelectorAll(".md-content :not(pre) > code")) {
    const before = c.previousSibling, after = c.nextSibling;
    if (before?.nodeType === 3 && before.textContent.endsWith("[") &&
        after?.nodeType === 3 && /^\]\[[\w.]*\]/.test(after.textContent))
      refs.push(c.textContent);
  }
  // content wider than its box must scroll: going up from it, an element that scrolls
  // sideways comes before any that hides the overflow (or the end of the content)
  const overflowX = e => getComputedStyle(e).overflowX;
  const clipped = [...document.querySelectorAll(".md-content pre, .md-content .katex-display")]
    .filter(e => e.scrollWidth > e.clientWidth + 1)
    .filter(e => {
      for (let a = e; a && !a.matches(".md-content"); a = a.parentElement) {
        if (["auto", "scroll"].includes(overflowX(a))) return false;
        if (["hidden", "clip"].includes(overflowX(a))) return true;
      }
      return true;
    })
    .map(e => e.textContent.slice(0, 60));
  return {
    raw, roles, refs, clipped,
    // the site renders offline: nothing it loads comes from elsewhere
    external: [...document.querySelectorAll("link[href], script[src], img[src], iframe[src]")]
      .map(e => e.href || e.src).filter(u => /^https?:/.test(u) && !u.startsWith(location.origin)),
    katex: document.querySelectorAll(".katex").length,
    katexErrors: document.querySelectorAll(".katex-error").length,
    brokenImages: [...document.images]
      .filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src.slice(0, 120)),
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
  };
})()"""


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids |= {v for k, v in attrs if k in ("id", "name") and v}


@functools.cache
def anchors(page: Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(page.read_text(encoding="utf-8"))
    return frozenset(parser.ids)


def has_maths(page: Path) -> bool:
    """Whether the page's source has maths: arithmatex's markup, or TeX in a notebook's text."""
    html = page.read_text(encoding="utf-8")
    if 'class="arithmatex"' in html:
        return True
    if "jupyter-wrapper" not in html:
        return False
    cells = re.findall(r"jp-MarkdownCell.*?(?=jp-Cell |\Z)", html, flags=re.S)
    return any(re.search(r"\$[^$\s][^$]*\$|\\\[", c) for c in cells)


def serve(site: Path) -> http.server.ThreadingHTTPServer:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def link_problem(href: str, base: str, site: Path) -> str | None:
    """Why an internal link is broken (``None``: it is fine; external links are not ours)."""
    if not href.startswith(base):
        return None
    parts = urlsplit(href)
    target = site / unquote(parts.path).lstrip("/")
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        return f"{href}: no such file"
    if parts.fragment and target.suffix == ".html":
        if unquote(parts.fragment) not in anchors(target):
            return f"{href}: no such anchor"
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        if os.environ.get("JRNN_REQUIRE_BROWSER") == "1":
            pytest.fail("JRNN_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("no chromium on PATH: apt-get install chromium (CI requires it)")
    return path


def test_every_page_renders_in_a_browser(chromium: str, built_site: Path, tmp_path: Path) -> None:
    site = built_site
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("index.html"))
    assert len(pages) > 40 and set(SCREENSHOTS) <= set(pages)
    server = serve(site)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    problems: list[str] = []
    try:
        with Browser(chromium) as browser:
            (site / "probe.html").write_text(PROBE, encoding="utf-8")
            browser.open(base + "probe.html", READY)
            seen = browser.evaluate(INSPECT)
            kinds = ("raw", "roles", "refs", "brokenImages", "clipped", "external")
            found = {k: len(seen[k]) for k in kinds}
            assert found == dict.fromkeys(kinds, 1), found
            assert [link_problem(h, base, site) is not None for h in seen["links"]] == [True]
            for page in pages:
                url = base + page.removesuffix("index.html")
                browser.open(url, READY)
                seen = browser.evaluate(INSPECT)
                problems += [f"{page}: raw maths {s!r}" for s in seen["raw"]]
                problems += [f"{page}: Sphinx role {s!r}" for s in seen["roles"]]
                problems += [f"{page}: unresolved reference {s!r}" for s in seen["refs"]]
                problems += [f"{page}: clipped, not scrolling {s!r}" for s in seen["clipped"]]
                problems += [f"{page}: loads {s} from outside the site" for s in seen["external"]]
                problems += [f"{page}: image not loaded {s}" for s in seen["brokenImages"]]
                if seen["katexErrors"]:
                    problems.append(f"{page}: {seen['katexErrors']} KaTeX errors")
                if has_maths(site / page) and not seen["katex"]:
                    problems.append(f"{page}: maths in the source, none typeset")
                for href in set(seen["links"]):
                    if why := link_problem(href, base, site):
                        problems.append(f"{page}: broken link {why}")
                if page in SCREENSHOTS:
                    where = f"document.querySelector({SCREENSHOTS[page]!r})"
                    assert browser.evaluate(f"{where} !== null"), (page, SCREENSHOTS[page])
                    browser.evaluate(f"{where}.scrollIntoView({{block: 'center'}})")
                    browser.wait("document.getAnimations().length === 0")  # the header's
                    shot = browser.screenshot(tmp_path / (page.replace("/", "_") + ".png"))
                    print(f"screenshot: {shot}")
    finally:
        server.shutdown()
        server.server_close()
    assert not problems, "\n".join(problems[:60]) + f"\n({len(problems)} problems)"


def test_link_check_sees_missing_pages_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "index.html").write_text('<h2 id="x">x</h2>', encoding="utf-8")
    base = "http://127.0.0.1:1/"
    assert link_problem(base + "a/#x", base, tmp_path) is None
    assert link_problem("https://jax.readthedocs.io/", base, tmp_path) is None
    assert "no such anchor" in str(link_problem(base + "a/#y", base, tmp_path))
    assert "no such file" in str(link_problem(base + "b/", base, tmp_path))
