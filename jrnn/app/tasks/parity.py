"""``--task parity``: read a sequence of bits and tag every step with the running parity
(the XOR of the bits so far: ``y_t = y_{t-1} xor x_t``).

Bits are the symbols ``a`` (0) and ``b`` (1) of [`jrnn.seqtasks`][], tags ``a`` (even) and
``b`` (odd); sequences have ``min_len..seq_len`` bits.  The batches are
[`jrnn.seqtasks.running_sum_task`][] with two symbols (a running sum mod 2 is the running
parity).  Chance is 0.5 per step and ``2**-n`` per sequence of ``n`` bits.  This file is the
whole task: it and one line in `jrnn.app.tasks` add it to ``jrnn train``.
"""

from __future__ import annotations

from typing import Any

from jrnn.app.errors import UsageError
from jrnn.app.tasks.spec import Task, TaskSpec, check_lengths


def check(config: Any) -> None:
    if config.num_symbols != 2:
        raise UsageError(f"--num-symbols is 2 for --task parity (bits), got {config.num_symbols}")
    check_lengths(config)


def build(config: Any, corpus: Any = None) -> Task:
    from jrnn import seqtasks
    from jrnn.app.tasks import sequences

    return sequences.tagging(config, seqtasks.running_sum_task, ("chance, token accuracy", 0.5))


SPEC = TaskSpec(
    name="parity",
    summary="tag each bit with the running parity of the bits so far",
    models=("tagger", "outrec"),
    defaults={
        "num_symbols": 2,
        "min_len": 2,
        "seq_len": 12,
        "hidden": 32,
        "embed": 8,
        "steps": 300,
        "batch_size": 64,
        "lr": 1e-2,
        "checkpoint_every": 100,
        "eval_every": 100,
        "eval_batches": 2,
        "eval_batch_size": 256,
    },
    build=build,
    uses=("num_symbols", "min_len"),
    check=check,
)
