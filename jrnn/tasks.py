"""Training tasks: a model, a batch maker, a loss and evaluation metrics, from a config.

Three tasks, each built by :func:`make_task` from a plain config dict (the one ``jrnn train``
writes to ``config.json``):

* ``charlm`` -- a character-level language model (the seed's ``L = -sum_t log p(y(t) | x(1..t))``
  per character): random windows of the training text, or ``B`` contiguous streams with
  the state carried across windows (truncated BPTT, ``tbptt=True``); evaluated on the
  held-out text read as ``eval_batch_size`` contiguous streams (their first
  ``eval_batches`` windows each, or all of it with ``eval_batches=0``; a fixed,
  deterministic subset), the state carried from window to window, in nats (``val_loss``)
  and bits per character (``val_bpc``).
* ``adding`` -- the adding problem (many-to-one regression); ``val_mse``, baseline 1/6.
* ``copy`` -- the copy-memory task (per-step classification); ``val_loss`` and
  ``val_accuracy`` on the ``copy_len`` recalled symbols.

The batch for step ``s`` is a pure function of ``(data, s)`` (the seed enters through a key in
``data``), so a run resumes exactly from a step count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn import data as jdata
from jrnn.cells import gru, lstm, simple_rnn
from jrnn.losses import sequence_softmax_cross_entropy
from jrnn.models import Model, sequence_model
from jrnn.unroll import stack

__all__ = ["CELLS", "DTYPES", "TASKS", "Task", "make_model", "make_task", "seed_keys"]

TASKS = ("charlm", "adding", "copy")
CELLS = ("rnn", "lstm", "lstm-peephole", "gru", "gru-reset-after")
DTYPES = ("float32", "bfloat16", "float64")
_LN2 = math.log(2.0)
_VAL_KEY = 20240328  # the held-out set of a synthetic task does not depend on the seed


class Task(NamedTuple):
    """Everything the training loop needs to know about a task.

    Attributes:
      name: ``"charlm"``, ``"adding"`` or ``"copy"``.
      model: the :class:`jrnn.models.Model`.
      data: a pytree of arrays the batch maker reads (passed to jit as an argument).
      batch_fn: ``batch_fn(data, step) -> batch`` (jittable, ``step`` an int32 scalar).
      loss_fn: ``loss_fn(params, batch, key) -> (loss, metrics)``, or with ``has_carry``
        ``loss_fn(params, carry, batch, key) -> (loss, (carry, metrics))``.
      has_carry: training carries the recurrent state across steps (truncated BPTT).
      initial_carry: ``initial_carry(params) -> carry`` of the training batch (or None).
      eval_fn: ``eval_fn(params, batch) -> sums``, or, when ``eval_carry`` returns a carry,
        ``eval_fn(params, carry, batch) -> (carry, sums)``; ``sums = {name: (total, count)}``
        (see :func:`jrnn.train.evaluate`).
      eval_batches: ``eval_batches() -> iterable of batches`` (fixed, deterministic).
      eval_carry: ``eval_carry(params) -> carry`` at the start of an evaluation, or None.
      tokens_per_step: input steps consumed per training step (for tokens/s).
      metric: the headline training metric's name in ``metrics`` (``bpc``, ``mse``, ``acc``).
      vocab: the :class:`jrnn.data.CharVocab` (charlm) or ``None``.
      baseline: a reference value of the headline validation metric, with its meaning.
    """

    name: str
    model: Model
    data: Any
    batch_fn: Callable[[Any, jax.Array], Any]
    loss_fn: Callable[..., Any]
    has_carry: bool
    initial_carry: Callable[[Any], Any]
    eval_fn: Callable[..., Any]
    eval_batches: Callable[[], Iterable[Any]]
    eval_carry: Callable[[Any], Any]
    tokens_per_step: int
    metric: str
    vocab: jdata.CharVocab | None
    baseline: tuple[str, float] | None


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(init_key, data_key, train_key)`` from an integer seed."""
    k_init, k_data, k_train = jax.random.split(jax.random.key(seed), 3)
    return k_init, k_data, k_train


def _dtypes(name: str) -> tuple[Any, Any]:
    """``(compute dtype, param dtype)`` for ``--dtype``: bfloat16 keeps float32 params."""
    if name == "float32":
        return jnp.float32, jnp.float32
    if name == "bfloat16":
        return jnp.bfloat16, jnp.float32
    if name == "float64":
        return jnp.float64, jnp.float64
    raise ValueError(f"unknown dtype {name!r}; expected one of {DTYPES}")


def make_model(
    config: dict[str, Any],
    *,
    output_size: int,
    input_size: int | None = None,
    vocab_size: int | None = None,
    readout: str = "all",
) -> Model:
    """The model of a config: ``cell``, ``hidden``, ``layers``, ``dropout``, ``embed``, ``dtype``.

    ``embed = 0`` feeds tokens one-hot.
    """
    dtype, param_dtype = _dtypes(config["dtype"])
    name, hidden = config["cell"], config["hidden"]
    kw = {"dtype": dtype, "param_dtype": param_dtype}
    if name == "rnn":
        cell = simple_rnn(hidden, **kw)
    elif name == "lstm":
        cell = lstm(hidden, **kw)
    elif name == "lstm-peephole":
        cell = lstm(hidden, peephole=True, **kw)
    elif name == "gru":
        cell = gru(hidden, **kw)
    elif name == "gru-reset-after":
        cell = gru(hidden, reset_after=True, **kw)
    else:
        raise ValueError(f"unknown cell {name!r}; expected one of {CELLS}")
    rnn = stack(cell, num_layers=config["layers"], dropout=config["dropout"])
    embed = config.get("embed", 0) if vocab_size is not None else None
    return sequence_model(
        rnn,
        output_size,
        input_size=input_size,
        vocab_size=vocab_size,
        embed_size=embed or None,
        readout=readout,
        dropout=config["dropout"],
        param_dtype=param_dtype,
    )


def make_task(config: dict[str, Any], corpus: jdata.Corpus | None = None) -> Task:
    """Builds the task named by ``config["task"]``.

    Args:
      config: the run configuration (keys as written by ``jrnn train`` to ``config.json``).
      corpus: for ``charlm``, the loaded :class:`jrnn.data.Corpus`.

    Returns:
      A :class:`Task`.
    """
    task = config["task"]
    if task == "charlm":
        if corpus is None:
            raise ValueError("make_task: the charlm task needs a corpus")
        return _charlm(config, corpus)
    if task == "adding":
        return _adding(config)
    if task == "copy":
        return _copy(config)
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


# --------------------------------------------------------------------------------------
# charlm


def _charlm(config: dict[str, Any], corpus: jdata.Corpus) -> Task:
    vocab = corpus.vocab
    model = make_model(config, output_size=vocab.size, vocab_size=vocab.size)
    batch_size, seq_len = config["batch_size"], config["seq_len"]
    tbptt = bool(config["tbptt"])
    _, data_key, _ = seed_keys(config["seed"])
    data = {"ids": jnp.asarray(corpus.train, jnp.int32), "key": data_key}

    def batch_fn(data, step):
        if tbptt:
            return jdata.stream_windows(data["ids"], batch_size, seq_len, step)
        key = jax.random.fold_in(data["key"], step)
        return jdata.random_windows(data["ids"], key, batch_size, seq_len)

    def window_loss(params, carry, windows, key):
        logits, carry = model.apply(params, windows[:, :-1], carry, key=key)
        loss = sequence_softmax_cross_entropy(logits, windows[:, 1:])
        return loss, (carry, {"bpc": loss / _LN2})

    if tbptt:
        loss_fn = window_loss
    else:

        def loss_fn(params, windows, key):
            loss, (_, metrics) = window_loss(params, None, windows, key)
            return loss, metrics

    val = np.asarray(corpus.val)
    eval_batch, eval_len = config["eval_batch_size"], seq_len
    max_batches = config["eval_batches"] or None

    def eval_batches():
        for b in jdata.eval_windows(val, eval_batch, eval_len, max_batches):
            yield (b.windows, b.lengths)

    def eval_fn(params, carry, batch):
        windows, lengths = batch
        logits, new_carry = model.apply(params, windows[:, :-1], carry, lengths=lengths)
        total = sequence_softmax_cross_entropy(
            logits, windows[:, 1:], lengths, reduction="sum"
        ).sum()
        count = jnp.sum(lengths).astype(total.dtype)
        return new_carry, {"loss": (total, count)}

    return Task(
        name="charlm",
        model=model,
        data=data,
        batch_fn=batch_fn,
        loss_fn=loss_fn,
        has_carry=tbptt,
        initial_carry=lambda params: model.initial_carry(params, (batch_size,)),
        eval_fn=eval_fn,
        eval_batches=eval_batches,
        eval_carry=lambda params: model.initial_carry(params, (eval_batch,)),
        tokens_per_step=batch_size * seq_len,
        metric="bpc",
        vocab=vocab,
        baseline=("uniform over the vocabulary, bits/char", math.log2(vocab.size)),
    )


# --------------------------------------------------------------------------------------
# synthetic tasks


def _synthetic_eval(config, make_batch):
    """A fixed held-out set: ``eval_batches`` batches from a seed-independent key."""
    num = config["eval_batches"] or 8
    key = jax.random.key(_VAL_KEY)
    batch_size = config["eval_batch_size"]
    batches = [make_batch(jax.random.fold_in(key, i), batch_size) for i in range(num)]
    batches = [jax.tree.map(np.asarray, b) for b in batches]
    return lambda: iter(batches)


def _adding(config: dict[str, Any]) -> Task:
    model = make_model(config, output_size=1, input_size=2, readout="last")
    batch_size, seq_len = config["batch_size"], config["seq_len"]
    _, data_key, _ = seed_keys(config["seed"])
    data = {"key": data_key}

    def batch_fn(data, step):
        return jdata.adding_problem(jax.random.fold_in(data["key"], step), batch_size, seq_len)

    def loss_fn(params, batch, key):
        xs, ys = batch
        o, _ = model.apply(params, xs, key=key)
        err = o[:, 0].astype(jnp.float32) - ys.astype(jnp.float32)
        loss = jnp.mean(err * err)
        return loss, {"mse": loss}

    def eval_fn(params, batch):
        xs, ys = batch
        o, _ = model.apply(params, xs)
        err = o[:, 0].astype(jnp.float32) - ys.astype(jnp.float32)
        total = jnp.sum(err * err)
        return {"mse": (total, jnp.asarray(err.shape[0], total.dtype))}

    eval_batches = _synthetic_eval(config, lambda k, b: jdata.adding_problem(k, b, seq_len))
    return Task(
        name="adding",
        model=model,
        data=data,
        batch_fn=batch_fn,
        loss_fn=loss_fn,
        has_carry=False,
        initial_carry=lambda params: None,
        eval_fn=eval_fn,
        eval_batches=eval_batches,
        eval_carry=lambda params: None,
        tokens_per_step=batch_size * seq_len,
        metric="mse",
        vocab=None,
        baseline=("predicting 1.0, MSE", jdata.ADDING_PROBLEM_BASELINE_MSE),
    )


def _copy(config: dict[str, Any]) -> Task:
    num_symbols, copy_len = config["num_symbols"], config["copy_len"]
    vocab_size = num_symbols + 2
    model = make_model(config, output_size=vocab_size, vocab_size=vocab_size)
    batch_size, seq_len = config["batch_size"], config["seq_len"]
    _, data_key, _ = seed_keys(config["seed"])
    data = {"key": data_key}

    def make(key, b):
        return jdata.copy_memory(key, b, seq_len, num_symbols, copy_len)

    def batch_fn(data, step):
        return make(jax.random.fold_in(data["key"], step), batch_size)

    def recall(logits, targets):
        guess = jnp.argmax(logits[:, -copy_len:], axis=-1).astype(targets.dtype)
        hits = guess == targets[:, -copy_len:]
        return jnp.sum(hits.astype(jnp.float32)), hits.size

    def loss_fn(params, batch, key):
        inputs, targets = batch
        logits, _ = model.apply(params, inputs, key=key)
        loss = sequence_softmax_cross_entropy(logits, targets)
        hits, n = recall(logits, targets)
        return loss, {"acc": hits / n}

    def eval_fn(params, batch):
        inputs, targets = batch
        logits, _ = model.apply(params, inputs)
        per_seq = sequence_softmax_cross_entropy(logits, targets, reduction="sum")
        total = jnp.sum(per_seq)
        hits, n = recall(logits, targets)
        return {
            "loss": (total, jnp.asarray(targets.size, total.dtype)),
            "accuracy": (hits, jnp.asarray(n, hits.dtype)),
        }

    return Task(
        name="copy",
        model=model,
        data=data,
        batch_fn=batch_fn,
        loss_fn=loss_fn,
        has_carry=False,
        initial_carry=lambda params: None,
        eval_fn=eval_fn,
        eval_batches=_synthetic_eval(config, make),
        eval_carry=lambda params: None,
        tokens_per_step=batch_size * (seq_len + 2 * copy_len),
        metric="acc",
        vocab=None,
        baseline=(
            "memoryless, nats/step",
            jdata.copy_memory_baseline(seq_len, num_symbols, copy_len),
        ),
    )
