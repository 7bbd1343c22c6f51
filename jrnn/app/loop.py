"""The run loop: `fit` (``jrnn.app.fit``) trains a [`Config`][jrnn.app.config.Config]
into a run folder.

Checks come first (a bad config, corpus or run folder raises `UsageError`
before any file is written); then every ``log_every`` steps a row goes to metrics.jsonl,
every ``eval_every`` steps an evaluation row, every ``checkpoint_every`` steps an atomic
checkpoint (the train state, the carried state with TBPTT, and the metric accumulators), so
a run killed at any moment resumes (``resume=True``) to exactly the uninterrupted run.
Ctrl-C or SIGTERM saves a checkpoint and raises `TrainingInterrupted`; a
non-finite loss stops the run without saving it and raises `NonFiniteLoss`
(unless ``skip_nonfinite``).

The parts, each in its module: the task and its state (`jrnn.app.state`), the run
folder, resume point and step functions (`jrnn.app.prepare`), the step loop
(`jrnn.app.steps`) with its rows and progress bar (`jrnn.app.progress`), and
the finish (`jrnn.app.finish`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from jrnn.app import devices, prepare, runs
from jrnn.app.config import FIXED_KEYS, Config, canonical
from jrnn.app.errors import UsageError
from jrnn.app.finish import already_complete, finish
from jrnn.app.progress import format_row
from jrnn.app.state import build_state, checkpoint_tree, load_data, make_optimizer
from jrnn.app.steps import run_steps

# build_state, load_data, make_optimizer (jrnn.app.state) and format_row
# (jrnn.app.progress) are re-exported: they were defined here.
__all__ = [
    "build_state",
    "check_resume",
    "fit",
    "format_row",
    "load_data",
    "make_optimizer",
    "resumed",
]


def check_resume(saved: Config, values: dict[str, Any], out: Path) -> None:
    """Refuses ``values`` that change a fixed field of the run ``saved`` in ``out``; more
    ``steps`` extend it (with the learning rate's schedule of its ``steps``: see
    [`resumed`][jrnn.app.loop.resumed]), fewer are refused."""
    steps = values.get("steps")
    if steps is not None and canonical("steps", steps) < saved.steps:
        raise UsageError(
            f"--resume --steps {steps}: the run in {out} has {saved.steps} steps; --resume "
            "can extend a run, not shorten it"
        )
    for key in FIXED_KEYS:
        if key == "steps" or (
            key == "decay_steps" and values.get(key) in (0, saved.decay_steps or saved.steps)
        ):
            continue  # an extension; decay_steps 0 is the run's steps (see resumed)
        if key in values and canonical(key, values[key]) != getattr(saved, key):
            flag = "--model" if key == "arch" else "--" + key.replace("_", "-")
            raise UsageError(
                f"--resume with a different configuration: {flag} {values[key]} but the run "
                f"in {out} has {key}={getattr(saved, key)!r} (start a new run with another --out)"
            )


def resumed(saved: Config, values: dict[str, Any]) -> Config:
    """The config that resumes the run ``saved`` with ``values`` (checked by
    [`check_resume`][jrnn.app.loop.check_resume]): a run extended by more ``steps`` keeps
    the schedule of its own (``decay_steps``, then ``lr / 10``), so its first steps are
    those of the run it extends."""
    import dataclasses

    config = Config(**{**saved.to_dict(), **values})
    if config.steps != saved.steps and not saved.decay_steps:
        config = dataclasses.replace(config, decay_steps=saved.steps)
    elif not config.decay_steps:
        config = dataclasses.replace(config, decay_steps=saved.decay_steps)
    return config


def _check_out(config: Config, out: Path, resume: bool, force: bool) -> Config:
    if resume and force:
        raise UsageError("--resume and --force exclude each other")
    runs.check_writable(out)
    if resume:
        saved = runs.read_config(out, "--resume: ")
        check_resume(saved, config.to_dict(), out)
        return resumed(saved, config.to_dict())
    if out.exists() and runs.has_run(out):
        if not force:
            raise UsageError(
                f"{out} already holds a run; pass --resume to continue it or --force to replace it"
            )
        runs.check_clearable(out)
    return config


def fit(
    config: Config,
    out_dir: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains ``config`` into the run folder ``out_dir``; returns the final metrics.

    Args:
      config: the run's [`Config`][jrnn.app.config.Config].
      out_dir: the run folder (created if needed).
      resume: continue the run in ``out_dir`` from its latest checkpoint; ``config`` must
        equal the saved one but for the schedule (``checkpoint_every``, ``eval_every``,
        ``log_every``, ``sample_length``) and the devices (``devices``, ``micro_batches``).
      force: replace a run in ``out_dir``: only a run jrnn wrote (its ``config.json`` and
        checkpoint layout) is removed, and only jrnn's files in it; anything else is refused.
      progress: draw a tqdm progress bar on stderr.

    Returns:
      ``{"step": steps, "val_...": ..., "baseline": ...}``: the last evaluation's metrics.

    Raises:
      UsageError: a bad config, corpus or run folder (nothing was written); the run folder
        is in use by another process (its ``.lock``); no checkpoint to resume is good, or
        they do not fit the config (a checkpoint that cannot be read or fails its digest is
        skipped with a one-line warning and the newest good one is resumed).
      NonFiniteLoss: a non-finite loss stopped the run (the last good checkpoint is kept).
      TrainingInterrupted: Ctrl-C or SIGTERM stopped the run after saving a checkpoint.

    Examples:
      >>> import tempfile
      >>> from jrnn.app import Config, fit
      >>> config = Config(task="parity", steps=20, hidden=8, eval_every=20, eval_batches=1)
      >>> m = fit(config, tempfile.mkdtemp(), progress=False)  # doctest: +ELLIPSIS
      eval step=20 val_loss=...
      run folder: ...
      >>> m["step"], 0.0 <= m["val_accuracy"] <= 1.0
      (20, True)
    """
    if not isinstance(config, Config):
        raise TypeError(f"fit: config must be a jrnn.app.Config, got {type(config).__name__}")
    out = Path(out_dir)
    config = _check_out(config, out, resume, force)
    devices.start(config)
    corpus = load_data(config)
    mesh = devices.mesh_for(config)
    if resume and corpus is not None:
        if runs.read_vocab(out, "--resume: ") != corpus.vocab.to_json():
            raise UsageError(
                f"--resume: the corpus changed since the run in {out} started "
                "(its character vocabulary differs)"
            )
    # Every check is done: from here on files are written, under the run folder's lock.
    primary = devices.is_primary()
    with contextlib.ExitStack() as held:
        locked = out.is_dir() and primary
        if locked:
            held.enter_context(runs.lock(out))
        return _train(config, out, resume, force, corpus, mesh, progress, None if locked else held)


def _train(
    config: Config,
    out: Path,
    resume: bool,
    force: bool,
    corpus: Any,
    mesh: Any,
    progress: bool,
    lock_into: contextlib.ExitStack | None,
) -> dict[str, Any]:
    """Set-up (folder, state, checkpoints, resume point), the step loop, the finish."""
    from jrnn.checkpoint import Checkpointer

    task, optimizer, state, carry = build_state(config, corpus)
    primary = devices.is_primary()
    if primary:  # process 0 alone writes the run folder's files
        prepare.write_folder(
            config, out, task, corpus, resume=resume, force=force, lock_into=lock_into
        )
    devices.barrier("run folder written")
    ckpt = Checkpointer(out / "checkpoints")
    template = checkpoint_tree(task, state, carry)
    tree, start, acc = prepare.resume_point(ckpt, template, out, resume, primary)
    devices.barrier("metrics.jsonl cut")
    if tree is not None:
        state, carry = tree["train"], tree.get("carry")
    if start >= config.steps:
        ckpt.close()
        return already_complete(config, out, task, state.params, primary)
    fns = prepare.compile_steps(config, task, optimizer, mesh)
    outcome = run_steps(config, out, task, ckpt, fns, state, carry, start, acc, progress, primary)
    return finish(config, out, task, outcome, primary)
