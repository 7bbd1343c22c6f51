"""``--task sort``: sort a variable-length sequence; sequence to sequence."""

from __future__ import annotations

from typing import Any

from jrnn.app.tasks.spec import SEQ_DEFAULTS, SEQ_USES, Task, TaskSpec, check_lengths


def build(config: Any, corpus: Any = None) -> Task:
    from jrnn import seqtasks
    from jrnn.app.tasks import sequences

    return sequences.generation(config, seqtasks.sort_task)


SPEC = TaskSpec(
    name="sort",
    summary="sort a variable-length sequence",
    models=("attention", "seq2seq"),
    defaults=SEQ_DEFAULTS,
    build=build,
    uses=SEQ_USES,
    check=check_lengths,
)
