"""The task registry: one task is one file of this package, listed once in `_FILES`.

A task file defines ``SPEC``, a `TaskSpec` (name, models,
defaults, builder); importing it is cheap (its builder imports JAX when called), so the
parser and ``--help`` read every task's defaults without loading a model.  Shared pieces:
`spec` (the types and the sequence tasks' defaults),
`common` and `sequences` (builder helpers).
"""

from __future__ import annotations

from importlib import import_module

from jrnn.app.errors import UsageError
from jrnn.app.tasks.spec import Task, TaskSpec

__all__ = ["TASKS", "Task", "TaskSpec", "get"]

_FILES = (
    "charlm",
    "adding",
    "copy",
    "reverse",
    "sort",
    "count",
    "classify",
    "future",
    "runsum",
    "parity",
    "mqar",
)

_SPECS: dict[str, TaskSpec] = {}
for _name in _FILES:
    _spec = import_module(f"{__name__}.{_name}").SPEC
    _SPECS[_spec.name] = _spec
TASKS: tuple[str, ...] = tuple(_SPECS)
"""The task names, in ``--help`` order."""


def get(name: str) -> TaskSpec:
    """The `TaskSpec` of task ``name`` (`jrnn.app.UsageError` if unknown)."""
    try:
        return _SPECS[name]
    except (KeyError, TypeError):
        raise UsageError(
            f"--task: invalid choice: {name!r} (choose from {', '.join(TASKS)})"
        ) from None
