"""Errors that background threads report while a command runs -- Orbax's writer threads
log them, TensorStore's callbacks print them as "unraisable" -- held until the command
ends: then shown, or dropped when the command's own failure already says it in one line
(a full disk while a checkpoint is written is one line, not a screen of tracebacks).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Iterator

__all__ = ["Held", "held_background_errors"]

_LOGGERS = ("absl",)  # Orbax logs through absl's logger


class Held(logging.Filter):
    """The held reports: log records of level ERROR and above, and unraisable exceptions
    (as text). `drop` forgets them."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.unraisable: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        self.records.append(record)
        return False

    def hook(self, u: sys.UnraisableHookArgs) -> None:
        lines = traceback.format_exception(u.exc_type, u.exc_value, u.exc_traceback)
        where = f"{u.err_msg or 'Exception ignored in'}: {u.object!r}\n" if u.object else ""
        self.unraisable.append(where + "".join(lines))

    def drop(self) -> None:
        """Forgets what is held: the command's failure has said it."""
        self.records.clear()
        self.unraisable.clear()


@contextlib.contextmanager
def held_background_errors() -> Iterator[Held]:
    """Holds what background threads report while the block runs; on exit, shows what was
    not dropped (``Held.drop``), in order, as it would have been shown at once."""
    held = Held()
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    previous = sys.unraisablehook
    for logger in loggers:
        logger.addFilter(held)
    sys.unraisablehook = held.hook
    try:
        yield held
    finally:
        sys.unraisablehook = previous
        for logger in loggers:
            logger.removeFilter(held)
        for record in held.records:
            logging.getLogger(record.name).handle(record)
        for text in held.unraisable:
            sys.stderr.write(text)
