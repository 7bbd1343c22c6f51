"""The application's exceptions: what the ``jrnn`` command turns into exit codes."""

from __future__ import annotations

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
