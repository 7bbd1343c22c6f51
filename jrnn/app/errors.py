"""The application's exceptions: what the ``jrnn`` command turns into exit codes."""

from __future__ import annotations

import errno

__all__ = ["NonFiniteLoss", "TrainingInterrupted", "UsageError"]


class UsageError(ValueError):
    """Bad input (a configuration, a run folder, a flag): one line, exit code 2.

    Raised before any file is written or any model is built.
    """


class NonFiniteLoss(RuntimeError):
    """A non-finite loss stopped a run; the last good checkpoint is kept (exit code 1)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run after saving a checkpoint (exit code 130).

    Attributes:
      step: the step saved.
    """

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO}


def environment_failure(e: BaseException) -> str | None:
    """One line for a failure of the machine rather than of the input -- a full disk or
    quota, a read-only or failing file system, memory exhausted (by Python or by XLA's
    ``RESOURCE_EXHAUSTED``) -- else ``None`` (the exception propagates)."""
    first = " ".join(str(e).split("\n", 1)[0].split())[:300]
    kept = "files already written (checkpoints, metrics) are kept"
    if isinstance(e, OSError) and e.errno in _DISK_ERRNOS:
        where = f" ({e.filename})" if e.filename else ""
        return f"cannot write{where}: {e.strerror or first}; {kept}"
    if isinstance(e, MemoryError) or "RESOURCE_EXHAUSTED" in first:
        return (
            f"out of memory ({first or type(e).__name__}); try a smaller --batch-size, "
            f"--hidden or --seq-len; {kept}"
        )
    return None
