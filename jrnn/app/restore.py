"""A finished (or interrupted) run, restored: ``jrnn sample``, ``jrnn eval`` and
``jrnn decode`` as functions.

Each checks the folder first -- a run folder (``config.json``), of a task the command
applies to, with a checkpoint -- reading only JSON and listing folders, and raises
`UsageError` before any model is built; then it rebuilds the task and
restores the newest good checkpoint's parameters (a checkpoint that cannot be read or fails
its digest is skipped with a one-line warning; none good, or checkpoints that do not fit
config.json, is a `UsageError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, NamedTuple

from jrnn.app import runs
from jrnn.app.config import ENCODER_DECODERS, Config
from jrnn.app.errors import UsageError
from jrnn.app.state import (
    build_state,
    checkpoint_tree,
    enable_dtype,
    load_data,
    restore_newest,
)

__all__ = ["Restored", "check_run", "decode_run", "evaluate_run", "open_run", "sample_run"]

Command = Literal["sample", "eval", "decode", "export"]


class Restored(NamedTuple):
    """A restored run: its config, built task, latest params, their step and its corpus."""

    config: Config
    task: Any
    params: Any
    step: int
    corpus: Any


def check_run(directory: str | Path, command: Command, **options: Any) -> Config:
    """The run's config, after checking that ``command`` applies to it (no JAX needed).

    ``options``: ``beam``, ``temperature`` and ``plot`` of ``jrnn decode``.
    """
    out = Path(directory)
    config = runs.read_config(out)
    spec, arch = config.spec, config.arch
    if command == "sample" and spec.load is None:
        raise UsageError(
            f"sample needs a run of a text task (charlm); {out} is a {config.task} run "
            "(use jrnn decode / jrnn eval)"
        )
    if command == "decode":
        if not spec.decodable(arch):
            raise UsageError(
                f"decode needs a run of a sequence task; {out} is a {config.task} run "
                f"(--model {arch}; use jrnn sample / jrnn eval)"
            )
        if options.get("beam", 1) > 1 or options.get("temperature", 0.0) > 0:
            if arch not in ENCODER_DECODERS:
                what = "--beam" if options.get("beam", 1) > 1 else "--temperature"
                raise UsageError(
                    f"{what} needs an encoder-decoder run (--model seq2seq, attention or "
                    f"vec2seq); {out} is a {arch} run"
                )
        if options.get("plot") and arch != "attention":
            raise UsageError(f"--plot needs an attention run; {out} is a {arch} run")
    if not (out / "checkpoints").is_dir():
        raise UsageError(f"{out} has no checkpoints")
    if not runs.checkpoint_steps(out):
        raise UsageError(f"{out} has no checkpoint yet")
    return config


def _vocab_only_corpus(out: Path):
    import numpy as np

    from jrnn.data import CharVocab, Corpus

    chars = runs.read_vocab(out)
    try:
        vocab = CharVocab.from_json(chars)
    except (ValueError, TypeError) as e:
        raise UsageError(f"cannot read {out / 'vocab.json'}: {e}") from None
    empty = np.zeros((0,), np.int32)
    return Corpus(empty, empty, vocab, "vocab.json", (), (), "file")


def open_run(
    directory: str | Path, config: Config, *, need_corpus: bool = False, **overrides: Any
) -> Restored:
    """Rebuilds the task of ``config`` (with ``overrides``) and restores the latest params.

    ``need_corpus``: reload a text task's corpus (to evaluate) and check it still has the
    run's vocabulary; else only its ``vocab.json`` is read (to generate).
    """
    import dataclasses

    from jrnn.checkpoint import Checkpointer

    out = Path(directory)
    config = dataclasses.replace(config, **overrides)
    enable_dtype(config)  # a float64 run is read in float64, before any array is made
    corpus = None
    if config.spec.load is not None:
        if need_corpus:
            corpus = load_data(config)
            if runs.read_vocab(out) != corpus.vocab.to_json():
                raise UsageError(
                    f"the corpus changed since the run in {out} was trained "
                    "(its character vocabulary differs)"
                )
        else:
            corpus = _vocab_only_corpus(out)
    task, _, state, carry = build_state(config, corpus)
    ckpt = Checkpointer(out / "checkpoints", create=False)
    try:
        tree, meta = restore_newest(ckpt, checkpoint_tree(task, state, carry), out)
    finally:
        ckpt.close()
    return Restored(config, task, tree["train"].params, int(meta["step"]), corpus)


def sample_run(
    directory: str | Path,
    prompt: str = "\n",
    length: int = 400,
    temperature: float = 0.8,
    seed: int = 0,
) -> str:
    """The prompt and ``length`` characters sampled from a text run's latest checkpoint."""
    if not prompt:
        raise UsageError("--prompt must not be empty")
    run = open_run(directory, check_run(directory, "sample"))
    return run.task.generate(run.params, prompt, length, temperature, seed)


def evaluate_run(directory: str | Path, full: bool = False) -> dict[str, Any]:
    """The validation metrics of a run's latest checkpoint (``full``: a text task's whole
    held-out text)."""
    config = check_run(directory, "eval")  # before JAX is loaded

    from jrnn.train import evaluate, make_eval_step

    overrides = {"eval_batches": 0} if full and config.spec.load is not None else {}
    run = open_run(directory, config, need_corpus=True, **overrides)
    task, params = run.task, run.params
    means = evaluate(
        make_eval_step(task.eval_fn), params, task.eval_batches(), task.eval_carry(params)
    )
    row = {"step": run.step, **task.eval_row(means)}
    if task.eval_extra is not None:
        row.update(task.eval_extra())
    return row


def decode_run(
    directory: str | Path,
    *,
    beam: int = 1,
    num: int = 8,
    temperature: float = 0.0,
    length_penalty: float = 0.6,
    seed: int = 0,
    plot: str | Path | None = None,
) -> list[str]:
    """Held-out examples decoded by a sequence run's latest checkpoint, one line each (and
    the attention weights of the first drawn to ``plot``)."""
    config = check_run(directory, "decode", beam=beam, temperature=temperature, plot=plot)
    run = open_run(directory, config)
    lines = run.task.show(
        run.params,
        num,
        beam_size=beam,
        temperature=temperature,
        seed=seed,
        length_penalty=length_penalty,
    )
    lines = [f"step {run.step} of {directory}", *lines]
    if plot:
        from jrnn.app.plots import plot_attention

        plot_attention(run.task, run.params, Path(plot))
        lines.append(f"attention weights: {plot}")
    return lines
