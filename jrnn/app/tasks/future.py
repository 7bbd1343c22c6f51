"""``--task future``: tag each symbol with the next one (needs future context: a
bidirectional tagger solves it, a unidirectional one is at chance)."""

from __future__ import annotations

from typing import Any

from jrnn.app.tasks.spec import SEQ_DEFAULTS, SEQ_USES, Task, TaskSpec, check_lengths


def build(config: Any, corpus: Any = None) -> Task:
    from jrnn import seqtasks
    from jrnn.app.tasks import sequences

    return sequences.tagging(config, seqtasks.next_symbol_task)


SPEC = TaskSpec(
    name="future",
    summary="tag each symbol with the next one (needs the future: bidirectional)",
    models=("bitagger", "tagger"),
    defaults={**SEQ_DEFAULTS, "hidden": 64, "steps": 1000},
    build=build,
    uses=SEQ_USES,
    check=check_lengths,
)
