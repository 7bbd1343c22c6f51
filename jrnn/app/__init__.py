"""jrnn's application layer: the ``jrnn`` command's configuration, tasks, run loop and run
folders, usable from Python.

The library (`jrnn` and its modules) imports nothing from here.

Examples:
  >>> from jrnn.app import Config
  >>> Config(task="parity").steps
  300
"""

from jrnn.app.config import Config, markdown_table
from jrnn.app.diagnose import diagnose_cells, diagnose_run
from jrnn.app.errors import NonFiniteLoss, TrainingInterrupted, UsageError
from jrnn.app.loop import fit
from jrnn.app.restore import decode_run, evaluate_run, sample_run
from jrnn.app.tasks import TASKS

__all__ = [
    "TASKS",
    "Config",
    "NonFiniteLoss",
    "TrainingInterrupted",
    "UsageError",
    "decode_run",
    "diagnose_cells",
    "diagnose_run",
    "evaluate_run",
    "fit",
    "markdown_table",
    "sample_run",
]
