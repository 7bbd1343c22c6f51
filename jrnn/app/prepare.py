"""Before a run's first step: its folder written (config.json, vocab.json), the point it
resumes from read from the newest good checkpoint, and its step functions compiled.

Called by `jrnn.app.fit` once every check has passed, under the run folder's lock.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, NamedTuple

from jrnn.app import runs
from jrnn.app.config import Config
from jrnn.app.errors import UsageError
from jrnn.app.state import restore_newest

__all__ = ["StepFns", "compile_steps", "resume_point", "write_folder"]


def write_folder(
    config: Config,
    out: Path,
    task: Any,
    corpus: Any,
    *,
    resume: bool,
    force: bool,
    lock_into: contextlib.ExitStack | None,
) -> None:
    """Writes config.json (and a new text run's vocab.json) into ``out``.

    ``lock_into``: for a folder that does not exist yet, the stack that holds its lock; the
    folder is created and locked before anything is written.  ``force`` clears a previous run.
    """
    if lock_into is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"--out {out}: cannot create the folder: {e.strerror}") from None
        lock_into.enter_context(runs.lock(out))
    if force:
        runs.clear(out)
    saved = {**config.to_dict(), "config_version": runs.CONFIG_VERSION, "model": task.model.name}
    if corpus is not None:
        saved["data"] = {
            "source": corpus.source,
            "train_chars": int(corpus.train.shape[0]),
            "val_chars": int(corpus.val.shape[0]),
            "train_files": corpus.num_train_files,
            "val_files": corpus.num_val_files,
            "vocab_size": corpus.vocab.size,
        }
        if not resume:
            runs.write_json_atomic(out / "vocab.json", corpus.vocab.to_json())
    runs.write_json_atomic(out / "config.json", saved)


def resume_point(
    ckpt: Any, template: Any, out: Path, resume: bool, primary: bool = True
) -> tuple[Any, int, dict[str, Any]]:
    """``(tree, start, acc)``: where the run goes on, and metrics.jsonl cut to it (with one
    warning if it lost rows the checkpoint counted).

    With ``resume`` and a checkpoint: the newest good one's tree, step and metric
    accumulators (``ckpt`` is closed if none is good: `UsageError`).  Otherwise
    ``(None, 0, {})``; a new run's metrics.jsonl is removed.
    """
    tree, start, acc, written = None, 0, {}, None
    if resume and ckpt.latest_step() is not None:
        try:
            tree, meta = restore_newest(ckpt, template, out)
        except UsageError:
            ckpt.close()
            raise
        start, acc, written = int(meta["step"]), dict(meta["acc"]), meta.get("rows")
        if primary:
            print(f"resuming {out} from step {start}", file=sys.stderr)
    elif resume:
        print(f"no checkpoint in {out}: starting it from step 0", file=sys.stderr)
    metrics_path = out / "metrics.jsonl"
    if not primary:  # process 0 alone writes metrics.jsonl
        return tree, start, acc
    if resume:
        runs.truncate_rows(metrics_path, start, written)
    elif metrics_path.exists():
        metrics_path.unlink()
    return tree, start, acc


class StepFns(NamedTuple):
    """The compiled functions of a run: one training step, one batch, one evaluation."""

    train_step: Any  # (state, [carry,] batch) -> (state, [carry,] metrics)
    batch_fn: Any  # (data, step index) -> batch, split over the mesh's devices
    run_eval: Any  # params -> the task's validation means


def compile_steps(config: Config, task: Any, optimizer: Any, mesh: Any) -> StepFns:
    """The training step, batch function and evaluation of ``task`` (on ``mesh``'s devices:
    each batch is made where it is used, one shard per device)."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    from jrnn import train as jtrain
    from jrnn.sharding import DATA_AXIS, data_size, put_global

    train_step = jtrain.make_train_step(
        task.loss_fn,
        optimizer,
        clip_norm=config.clip or None,
        has_carry=task.has_carry,
        skip_nonfinite=config.skip_nonfinite,
        mesh=mesh,
        micro_batches=config.micro_batches,
        loss_weight=task.loss_weight,
        example_keys=True,  # the same randomness on any layout of devices and processes
    )
    split = None if mesh is None else NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    batch_fn = jax.jit(task.batch_fn, out_shardings=split)
    eval_step = jtrain.make_eval_step(task.eval_fn)

    def run_eval(params):
        batches, carry = task.eval_batches(), task.eval_carry(params)
        if mesh is not None and config.eval_batch_size % data_size(mesh) == 0:
            batches = (put_global(b, split) for b in batches)  # split like training
            carry = put_global(carry, split)
        return jtrain.evaluate(eval_step, params, batches, carry)

    return StepFns(train_step, batch_fn, run_eval)
