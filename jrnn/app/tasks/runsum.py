"""``--task runsum``: tag each symbol with the running sum mod ``V``, what an
output-recurrence (teacher forcing) network computes from its own previous output."""

from __future__ import annotations

from typing import Any

from jrnn.app.tasks.spec import SEQ_DEFAULTS, SEQ_USES, Task, TaskSpec, check_lengths


def build(config: Any, corpus: Any = None) -> Task:
    from jrnn import seqtasks
    from jrnn.app.tasks import sequences

    return sequences.tagging(config, seqtasks.running_sum_task)


SPEC = TaskSpec(
    name="runsum",
    summary="tag each symbol with the running sum mod V (output recurrence)",
    models=("outrec", "outrec-hidden", "tagger"),
    defaults={**SEQ_DEFAULTS, "num_symbols": 5, "steps": 1000},
    build=build,
    uses=SEQ_USES,
    check=check_lengths,
)
