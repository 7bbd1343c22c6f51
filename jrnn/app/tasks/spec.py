"""What a task is: `TaskSpec` (its name, models, defaults; cheap to import) and
`Task` (what its builder returns to the training loop)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

__all__ = ["SEQ_DEFAULTS", "SEQ_USES", "Task", "TaskSpec", "check_lengths"]


class TaskSpec(NamedTuple):
    """A task's description, read by the parser, ``--help``, the docs and the run loop.

    Attributes:
      name: the ``--task`` name.
      summary: one line for ``--help`` and the docs.
      models: the ``--model`` names it accepts; the first is its default.
      defaults: its defaults that differ from the common ones (config field -> value).
      model_defaults: per model, defaults that differ from the task's.
      uses: the task-specific config fields it reads (``corpus``, ``copy_len``, ...).
      build: ``build(config, corpus) -> Task`` (imports JAX when called, not before).
      check: ``check(config)`` raising `jrnn.app.UsageError` for combinations the
        field checks cannot see (``None``: nothing to check).
      decodes: the models whose runs ``jrnn decode`` shows decoded (``None``: every model).
      load: ``load(config) -> corpus`` for tasks that learn from text (their run folders
        hold a ``vocab.json``, ``jrnn sample`` generates from them); raises
        `jrnn.app.UsageError` for a missing or too small corpus.
    """

    name: str
    summary: str
    models: tuple[str, ...]
    defaults: Mapping[str, Any]
    build: Callable[..., Task]
    model_defaults: Mapping[str, Mapping[str, Any]] = {}
    uses: tuple[str, ...] = ()
    check: Callable[[Any], None] | None = None
    decodes: tuple[str, ...] | None = None
    load: Callable[[Any], Any] | None = None

    def decodable(self, model: str) -> bool:
        """Whether ``jrnn decode`` shows a ``model`` run of this task decoded."""
        return self.decodes is None or model in self.decodes


class Task(NamedTuple):
    """Everything the training loop needs to know about a built task.

    Attributes:
      name: the task's name.
      model: the model (``init``, ``apply``, ``initial_carry``, ``name``).
      data: a pytree of arrays the batch maker reads (passed to jit as an argument).
      batch_fn: ``batch_fn(data, step) -> batch`` (jittable, ``step`` an int32 scalar).
      loss_fn: ``loss_fn(params, batch, key) -> (loss, metrics)``, or with ``has_carry``
        ``loss_fn(params, carry, batch, key) -> (loss, (carry, metrics))``.
      eval_fn: ``eval_fn(params, batch) -> sums``, or, when ``eval_carry`` returns a carry,
        ``eval_fn(params, carry, batch) -> (carry, sums)``; ``sums = {name: (total, count)}``
        (see [`jrnn.train.evaluate`][]).
      eval_batches: ``eval_batches() -> iterable of batches`` (fixed, deterministic).
      tokens_per_step: input steps consumed per training step (for tokens/s).
      metric: the headline training metric's name in ``metrics`` (``bpc``, ``mse``, ``acc``).
      baseline: a reference value of the headline validation metric, with its meaning.
      eval_row: ``eval_row(means) -> {column: value}``, the ``val_*`` columns of metrics.jsonl.
      plot_key: the validation column drawn in ``loss.png``, with the y-axis label.
      has_carry: training carries the recurrent state across steps (truncated BPTT).
      initial_carry: ``initial_carry(params) -> carry`` of the training batch.
      eval_carry: ``eval_carry(params) -> carry`` at the start of an evaluation, or None.
      vocab: the [`jrnn.data.CharVocab`][] (charlm) or ``None``.
      show: ``show(params, num, beam_size=1, temperature=0.0, seed=0, length_penalty=0.6)
        -> list of lines`` showing held-out examples decoded (``None`` for charlm/adding).
      generate: ``generate(params, prompt, length, temperature, seed) -> text`` (charlm).
      eval_extra: ``eval_extra() -> {column: value}`` printed by ``jrnn eval`` (charlm: the
        number of held-out characters scored).
      decode_len: the number of tokens an encoder-decoder task's model generates (its
        targets' length with EOS; ``None`` for the other tasks), for ``jrnn export``.
      loss_weight: ``loss_weight(batch) -> scalar``, the weight of a batch's piece when a
        step splits it over devices or micro-batches (the valid tokens of a masked token
        mean); ``None``: equal weights (see [`jrnn.make_train_step`][jrnn.train.make_train_step]).
    """

    name: str
    model: Any
    data: Any
    batch_fn: Callable[[Any, Any], Any]
    loss_fn: Callable[..., Any]
    eval_fn: Callable[..., Any]
    eval_batches: Callable[[], Iterable[Any]]
    tokens_per_step: int
    metric: str
    baseline: tuple[str, float] | None
    eval_row: Callable[[dict[str, float]], dict[str, float]]
    plot_key: tuple[str, str] = ("val_loss", "loss (nats/token)")
    has_carry: bool = False
    initial_carry: Callable[[Any], Any] = lambda params: None
    eval_carry: Callable[[Any], Any] = lambda params: None
    vocab: Any = None
    show: Callable[..., list[str]] | None = None
    generate: Callable[..., str] | None = None
    eval_extra: Callable[[], dict[str, Any]] | None = None
    loss_weight: Callable[[Any], Any] | None = None
    decode_len: int | None = None


# ------------------------------------------------------------------------------------------
# shared by the variable-length sequence tasks (jrnn.seqtasks)

SEQ_DEFAULTS: Mapping[str, Any] = {
    "hidden": 128,
    "embed": 32,
    "steps": 1500,
    "batch_size": 64,
    "seq_len": 20,
    "min_len": 5,
    "num_symbols": 20,
    "lr": 5e-3,
    "checkpoint_every": 500,
    "eval_every": 250,
    "eval_batches": 4,
    "eval_batch_size": 256,
}
"""Defaults of the variable-length sequence tasks (each task overrides some)."""
SEQ_USES = ("num_symbols", "min_len")


def check_lengths(config: Any) -> None:
    """Sequence tasks: ``min_len <= seq_len`` (the longest sequence, T)."""
    if config.min_len > config.seq_len:
        from jrnn.app.errors import UsageError

        raise UsageError(
            f"--min-len {config.min_len} is beyond the maximum length T = --seq-len "
            f"{config.seq_len}"
        )
