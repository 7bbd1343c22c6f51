"""``--task count``: from a vector (a start symbol and a length) generate the symbols counting
up from it; vector to sequence."""

from __future__ import annotations

from typing import Any

from jrnn.app.tasks.spec import SEQ_DEFAULTS, SEQ_USES, Task, TaskSpec, check_lengths


def build(config: Any, corpus: Any = None) -> Task:
    from jrnn import seqtasks
    from jrnn.app.tasks import sequences

    return sequences.generation(config, seqtasks.count_task)


SPEC = TaskSpec(
    name="count",
    summary="count up from a start symbol given as a vector (vector to sequence)",
    models=("vec2seq",),
    defaults=SEQ_DEFAULTS,
    build=build,
    uses=SEQ_USES,
    check=check_lengths,
)
