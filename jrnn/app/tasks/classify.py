"""``--task classify``: label a variable-length sequence with its most frequent symbol;
sequence to vector."""

from __future__ import annotations

from typing import Any

from jrnn.app.tasks.spec import SEQ_DEFAULTS, SEQ_USES, Task, TaskSpec, check_lengths


def build(config: Any, corpus: Any = None) -> Task:
    from jrnn import seqtasks
    from jrnn.app.tasks import sequences

    return sequences.classify(config, seqtasks.majority_task)


SPEC = TaskSpec(
    name="classify",
    summary="the most frequent symbol of a sequence (sequence to vector)",
    models=("seq2vec",),
    defaults={**SEQ_DEFAULTS, "num_symbols": 4, "hidden": 64},
    build=build,
    uses=SEQ_USES,
    check=check_lengths,
)
