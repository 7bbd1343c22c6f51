// Typesets every page's maths with the KaTeX served from this site (docs/assets/katex).
// Guide pages: pymdownx.arithmatex (generic) leaves \( \) and \[ \] in
// span/div.arithmatex; notebook pages: nbconvert leaves $ $ and $$ $$ in the text.
// Code (pre, code) is never touched. Material's instant navigation is off, so the
// page's own load is the only time to typeset; <body data-math="done"> tells readers
// (and tests/test_docs_browser.py) that typesetting finished.
(function () {
  function typeset() {
    renderMathInElement(document.body, {
      delimiters: [
        { left: "$$", right: "$$", display: true },
        { left: "\\[", right: "\\]", display: true },
        { left: "\\(", right: "\\)", display: false },
        { left: "$", right: "$", display: false },
      ],
      ignoredTags: ["script", "noscript", "style", "textarea", "pre", "code", "option"],
      throwOnError: false,
    });
    document.body.dataset.math = "done";
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", typeset);
  } else {
    typeset();
  }
})();
