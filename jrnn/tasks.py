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
* ``copy`` -- with ``arch`` ``tagger``/``bitagger``: the copy-memory task (per-step
  classification); ``val_loss``, ``val_accuracy`` and ``val_exact`` on the ``copy_len``
  recalled symbols.  With ``seq2seq``/``attention``: copy a variable-length sequence.

Variable-length tasks (:mod:`jrnn.seqtasks`; lengths ``min_len..seq_len``, ``num_symbols``
symbols; ``val_loss`` per target token, ``val_accuracy`` per token and ``val_exact`` per
whole sequence, from greedy decoding for the encoder-decoders):

* ``reverse``, ``sort`` (and ``copy``) -- sequence to sequence (``seq2seq``, ``attention``);
* ``count`` -- vector to sequence (``vec2seq``);
* ``classify`` -- sequence to vector, the majority symbol (``seq2vec``);
* ``future`` -- tag each symbol with the next one (``bitagger``, ``tagger``);
* ``runsum`` -- tag with the running sum mod ``V`` (``outrec``, ``outrec-hidden``: teacher
  forcing networks, also measured free-running (``val_accuracy``) and teacher-forced
  (``val_accuracy_tf``); ``tagger``).

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
from jrnn import seqtasks
from jrnn.base import Cell
from jrnn.cells import gru, lstm, simple_rnn
from jrnn.decode import beam_search, greedy_decode, sample_decode
from jrnn.losses import sequence_softmax_cross_entropy
from jrnn.models import (
    EncoderDecoder,
    Model,
    output_recurrent,
    seq2seq,
    sequence_model,
    vec2seq,
)
from jrnn.unroll import stack

__all__ = [
    "CELLS",
    "DTYPES",
    "MODELS",
    "TASKS",
    "TASK_MODELS",
    "Task",
    "check_task_model",
    "make_cell",
    "make_model",
    "make_task",
    "seed_keys",
]

TASKS = ("charlm", "adding", "copy", "reverse", "sort", "count", "classify", "future", "runsum")
MODELS = (
    "lm",
    "seq2vec",
    "tagger",
    "bitagger",
    "outrec",
    "outrec-hidden",
    "vec2seq",
    "seq2seq",
    "attention",
)
TASK_MODELS: dict[str, tuple[str, ...]] = {
    "charlm": ("lm",),
    "adding": ("seq2vec",),
    "copy": ("tagger", "bitagger", "seq2seq", "attention"),
    "reverse": ("attention", "seq2seq"),
    "sort": ("attention", "seq2seq"),
    "count": ("vec2seq",),
    "classify": ("seq2vec",),
    "future": ("bitagger", "tagger"),
    "runsum": ("outrec", "outrec-hidden", "tagger"),
}
"""The models each task accepts; the first is its default."""
SCORES = ("general", "dot", "additive")
POOLS = ("last", "mean", "max")
CONDITIONS = ("both", "init", "input")
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
      show: ``show(params, num, beam_size=1, temperature=0.0, seed=0, length_penalty=0.6)
        -> list of lines`` showing held-out examples decoded (``None`` for charlm/adding).
    """

    name: str
    model: Model
    data: Any
    batch_fn: Callable[[Any, jax.Array], Any]
    loss_fn: Callable[..., Any]
    eval_fn: Callable[..., Any]
    eval_batches: Callable[[], Iterable[Any]]
    tokens_per_step: int
    metric: str
    baseline: tuple[str, float] | None
    has_carry: bool = False
    initial_carry: Callable[[Any], Any] = lambda params: None
    eval_carry: Callable[[Any], Any] = lambda params: None
    vocab: jdata.CharVocab | None = None
    show: Callable[..., list[str]] | None = None


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


def make_cell(config: dict[str, Any], hidden: int | None = None) -> Cell:
    """The cell of a config (``cell``, ``hidden``, ``dtype``)."""
    dtype, param_dtype = _dtypes(config["dtype"])
    name, hidden = config["cell"], hidden or config["hidden"]
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
    return cell


def make_model(
    config: dict[str, Any],
    *,
    output_size: int,
    input_size: int | None = None,
    vocab_size: int | None = None,
    readout: str = "all",
    bidirectional: bool = False,
) -> Model:
    """The model of a config: ``cell``, ``hidden``, ``layers``, ``dropout``, ``embed``, ``dtype``.

    ``embed = 0`` feeds tokens one-hot.
    """
    _, param_dtype = _dtypes(config["dtype"])
    cell = make_cell(config)
    rnn = stack(
        cell, num_layers=config["layers"], bidirectional=bidirectional, dropout=config["dropout"]
    )
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
    arch = check_task_model(task, config.get("arch"))
    if task == "charlm":
        if corpus is None:
            raise ValueError("make_task: the charlm task needs a corpus")
        return _charlm(config, corpus)
    if task == "adding":
        return _adding(config)
    if task == "copy" and arch in ("tagger", "bitagger"):
        return _copy(config)
    if task in ("copy", "reverse", "sort", "count"):
        return _generation(config)
    if task == "classify":
        return _classify(config)
    if task in ("future", "runsum"):
        return _tagging(config)
    raise AssertionError(task)  # pragma: no cover


def check_task_model(task: str, arch: str | None) -> str:
    """The model name for ``task`` (its default when ``arch`` is None).

    Raises:
      ValueError: an unknown task or model name, or a model the task does not accept.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    allowed = TASK_MODELS[task]
    if arch is None:
        return allowed[0]
    if arch not in MODELS:
        raise ValueError(f"unknown model {arch!r}; expected one of {MODELS}")
    if arch not in allowed:
        raise ValueError(
            f"task {task!r} does not take model {arch!r}; it takes {', '.join(allowed)}"
        )
    return arch


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
    pool = config.get("pool", "last")
    model = make_model(config, output_size=1, input_size=2, readout=pool)
    batch_size, seq_len = config["batch_size"], config["seq_len"]
    _, data_key, _ = seed_keys(config["seed"])
    data = {"key": data_key}

    def batch_fn(data, step):
        return seqtasks.adding_problem(jax.random.fold_in(data["key"], step), batch_size, seq_len)

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

    eval_batches = _synthetic_eval(config, lambda k, b: seqtasks.adding_problem(k, b, seq_len))
    return Task(
        name="adding",
        model=model,
        data=data,
        batch_fn=batch_fn,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        eval_batches=eval_batches,
        tokens_per_step=batch_size * seq_len,
        metric="mse",
        baseline=("predicting 1.0, MSE", seqtasks.ADDING_PROBLEM_BASELINE_MSE),
    )


def _copy(config: dict[str, Any]) -> Task:
    num_symbols, copy_len = config["num_symbols"], config["copy_len"]
    vocab_size = num_symbols + 2
    bidirectional = config.get("arch") == "bitagger"
    model = make_model(
        config, output_size=vocab_size, vocab_size=vocab_size, bidirectional=bidirectional
    )
    batch_size, seq_len = config["batch_size"], config["seq_len"]
    _, data_key, _ = seed_keys(config["seed"])
    data = {"key": data_key}

    def make(key, b):
        return seqtasks.copy_memory(key, b, seq_len, num_symbols, copy_len)

    def batch_fn(data, step):
        return make(jax.random.fold_in(data["key"], step), batch_size)

    def recall(logits, targets):
        guess = jnp.argmax(logits[:, -copy_len:], axis=-1).astype(targets.dtype)
        hits = guess == targets[:, -copy_len:]
        return jnp.sum(hits.astype(jnp.float32)), hits.size, jnp.all(hits, axis=1)

    def loss_fn(params, batch, key):
        inputs, targets = batch
        logits, _ = model.apply(params, inputs, key=key)
        loss = sequence_softmax_cross_entropy(logits, targets)
        hits, n, _ = recall(logits, targets)
        return loss, {"acc": hits / n}

    def eval_fn(params, batch):
        inputs, targets = batch
        logits, _ = model.apply(params, inputs)
        per_seq = sequence_softmax_cross_entropy(logits, targets, reduction="sum")
        total = jnp.sum(per_seq)
        hits, n, exact = recall(logits, targets)
        return {
            "loss": (total, jnp.asarray(targets.size, total.dtype)),
            "accuracy": (hits, jnp.asarray(n, hits.dtype)),
            "exact": (jnp.sum(exact.astype(jnp.float32)), jnp.float32(exact.shape[0])),
        }

    return Task(
        name="copy",
        model=model,
        data=data,
        batch_fn=batch_fn,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        eval_batches=_synthetic_eval(config, make),
        tokens_per_step=batch_size * (seq_len + 2 * copy_len),
        metric="acc",
        baseline=(
            "memoryless, nats/step",
            seqtasks.copy_memory_baseline(seq_len, num_symbols, copy_len),
        ),
    )


# --------------------------------------------------------------------------------------
# variable-length tasks (jrnn.seqtasks): generation, tagging, classification

_GENERATORS: dict[str, Callable[..., Any]] = {
    "copy": seqtasks.copy_task,
    "reverse": seqtasks.reverse_task,
    "sort": seqtasks.sort_task,
    "count": seqtasks.count_task,
    "future": seqtasks.next_symbol_task,
    "runsum": seqtasks.running_sum_task,
    "classify": seqtasks.majority_task,
}


def _seq_setup(config: dict[str, Any]):
    """``(arch, V, min_len, T, vocab, embed, param_dtype, make, data, batch_fn)``."""
    task = config["task"]
    arch = check_task_model(task, config.get("arch"))
    num_symbols, max_len = config["num_symbols"], config["seq_len"]
    min_len = config.get("min_len") or 1
    if min_len > max_len:
        raise ValueError(f"min_len={min_len} is beyond the maximum length T=seq_len={max_len}")
    vocab = seqtasks.vocab_size(num_symbols)
    embed = config.get("embed") or None
    _, param_dtype = _dtypes(config["dtype"])
    gen = _GENERATORS[task]
    batch_size = config["batch_size"]
    _, data_key, _ = seed_keys(config["seed"])

    def make(key, b):
        return gen(key, b, min_len, max_len, num_symbols)

    def batch_fn(data, step):
        return make(jax.random.fold_in(data["key"], step), batch_size)

    return (
        arch,
        num_symbols,
        min_len,
        max_len,
        vocab,
        embed,
        param_dtype,
        make,
        {"key": data_key},
        batch_fn,
    )


def _masked_hits(pred: jax.Array, target: jax.Array, lengths: jax.Array):
    """``(hits, valid, exact)``: per-position hits and validity ``[B, T]``, per-row exact."""
    valid = jnp.arange(target.shape[1], dtype=jnp.int32)[None, :] < lengths[:, None]
    hits = (pred == target) & valid
    exact = jnp.all(hits | ~valid, axis=1)
    return hits, valid, exact


def _f32_sum(x: jax.Array) -> jax.Array:
    return jnp.sum(x.astype(jnp.float32))


def _ratio(hits: jax.Array, valid: jax.Array) -> jax.Array:
    return _f32_sum(hits) / jnp.maximum(_f32_sum(valid), jnp.float32(1))


def _example(shown: str, got: str, target: str) -> list[str]:
    """One decoded example: ``ok``/``ERR``, input -> output, and the target when wrong."""
    line = f"  {'ok ' if got == target else 'ERR'} {shown}  ->  {got}"
    return [line] if got == target else [line, f"      want {target}"]


def _generation(config: dict[str, Any]) -> Task:
    """copy / reverse / sort (``seq2seq``, ``attention``) and count (``vec2seq``)."""
    arch, num_symbols, _, max_len, vocab, embed, param_dtype, make, data, batch_fn = _seq_setup(
        config
    )
    if arch == "vec2seq":
        model: EncoderDecoder = vec2seq(
            make_cell(config),
            num_symbols + max_len,
            vocab,
            embed_size=embed,
            condition=config.get("condition") or "both",
            param_dtype=param_dtype,
        )
    else:
        encoder = stack(
            make_cell(config),
            num_layers=config["layers"],
            bidirectional=True,
            dropout=config["dropout"],
        )
        model = seq2seq(
            encoder,
            make_cell(config),
            vocab,
            vocab,
            embed_size=embed,
            attention=(config.get("score") or "general") if arch == "attention" else None,
            param_dtype=param_dtype,
        )
    is_vec = arch == "vec2seq"
    sample_prob = float(config.get("sample_prob") or 0.0)
    decode_len = max_len + 1

    def source(batch):
        return (batch.vec, None) if is_vec else (batch.src, batch.src_lengths)

    def loss_fn(params, batch, key):
        src, src_lengths = source(batch)
        logits, _ = model.apply(
            params, src, batch.tgt_in, src_lengths, key=key, sample_prob=sample_prob
        )
        loss = sequence_softmax_cross_entropy(logits, batch.tgt_out, batch.tgt_lengths)
        pred = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        hits, valid, _ = _masked_hits(pred, batch.tgt_out, batch.tgt_lengths)
        return loss, {"acc": _ratio(hits, valid)}

    def eval_fn(params, batch):
        src, src_lengths = source(batch)
        logits, _ = model.apply(params, src, batch.tgt_in, src_lengths)
        total = jnp.sum(
            sequence_softmax_cross_entropy(
                logits, batch.tgt_out, batch.tgt_lengths, reduction="sum"
            )
        )
        tf_pred = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        tf_hits, valid, tf_exact = _masked_hits(tf_pred, batch.tgt_out, batch.tgt_lengths)
        decoded = greedy_decode(model, params, src, src_lengths, max_len=decode_len)
        hits, _, exact = _masked_hits(decoded.tokens, batch.tgt_out, batch.tgt_lengths)
        n_tok, n_seq = _f32_sum(valid), jnp.float32(exact.shape[0])
        return {
            "loss": (total, n_tok.astype(total.dtype)),
            "accuracy": (_f32_sum(hits), n_tok),
            "exact": (_f32_sum(exact), n_seq),
            "accuracy_tf": (_f32_sum(tf_hits), n_tok),
        }

    eval_batches = _synthetic_eval(config, make)

    def show(params, num, beam_size=1, temperature=0.0, seed=0, length_penalty=0.6):
        batch = jax.tree.map(lambda a: a[:num], next(iter(eval_batches())))
        src, src_lengths = source(batch)
        if temperature > 0:
            out = sample_decode(
                model,
                params,
                src,
                src_lengths,
                key=jax.random.key(seed),
                max_len=decode_len,
                temperature=temperature,
            )
            tokens, how = out.tokens, f"sampled at temperature {temperature}"
        elif beam_size > 1:
            beams = beam_search(
                model,
                params,
                src,
                src_lengths,
                beam_size=beam_size,
                max_len=decode_len,
                length_penalty=length_penalty,
            )
            tokens, how = beams.tokens[:, 0], f"beam search, width {beam_size}"
        else:
            tokens, how = (
                greedy_decode(model, params, src, src_lengths, max_len=decode_len)[0],
                "greedy",
            )
        tokens, want = np.asarray(tokens), np.asarray(batch.tgt_out)
        lines = [f"{config['task']} ({arch}), {how}:"]
        for i in range(tokens.shape[0]):
            if is_vec:
                vec = np.asarray(batch.vec[i])
                first = int(np.argmax(vec[:num_symbols]))
                n = int(np.argmax(vec[num_symbols:])) + 1
                shown = f"start={seqtasks.format_tokens([first + seqtasks.FIRST_SYMBOL])} n={n}"
            else:
                shown = seqtasks.format_tokens(batch.src[i], int(batch.src_lengths[i]))
            got = seqtasks.format_tokens(tokens[i])
            target = seqtasks.format_tokens(want[i])
            lines += _example(shown, got, target)
        return lines

    return Task(
        name=config["task"],
        model=model,
        data=data,
        batch_fn=batch_fn,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        eval_batches=eval_batches,
        tokens_per_step=config["batch_size"] * (2 * max_len + 1),
        metric="acc",
        baseline=("uniform guessing, token accuracy", 1.0 / (num_symbols + 1)),
        show=show,
    )


def _tagging(config: dict[str, Any]) -> Task:
    """future (``bitagger``, ``tagger``) and runsum (``outrec``, ``outrec-hidden``,
    ``tagger``): one output per input step."""
    arch, num_symbols, _, max_len, vocab, embed, param_dtype, make, data, batch_fn = _seq_setup(
        config
    )
    feedback = arch in ("outrec", "outrec-hidden")
    sample_prob = float(config.get("sample_prob") or 0.0)
    if feedback:
        model: Any = output_recurrent(
            vocab,
            config["hidden"],
            vocab_size=vocab,
            embed_size=embed,
            cell=make_cell(config) if arch == "outrec-hidden" else None,
            start=seqtasks.BOS,
            param_dtype=param_dtype,
        )
    else:
        model = make_model(
            config, output_size=vocab, vocab_size=vocab, bidirectional=arch == "bitagger"
        )

    def logits_of(params, batch, key=None, mode="teacher"):
        if feedback:
            if mode == "free":
                return model.apply(params, batch.inputs, feedback="free")
            sp = sample_prob if key is not None else 0.0
            return model.apply(params, batch.inputs, batch.tags, sample_prob=sp, key=key)
        return model.apply(params, batch.inputs, lengths=batch.lengths, key=key)[0]

    def loss_fn(params, batch, key):
        logits = logits_of(params, batch, key)
        loss = sequence_softmax_cross_entropy(logits, batch.tags, batch.lengths)
        pred = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        hits, valid, _ = _masked_hits(pred, batch.tags, batch.lengths)
        return loss, {"acc": _ratio(hits, valid)}

    def eval_fn(params, batch):
        logits = logits_of(params, batch)
        total = jnp.sum(
            sequence_softmax_cross_entropy(logits, batch.tags, batch.lengths, reduction="sum")
        )
        pred = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        hits, valid, exact = _masked_hits(pred, batch.tags, batch.lengths)
        n_tok, n_seq = _f32_sum(valid), jnp.float32(exact.shape[0])
        sums = {"loss": (total, n_tok.astype(total.dtype))}
        if feedback:  # headline: free running; also teacher forced
            free = jnp.argmax(logits_of(params, batch, mode="free"), -1).astype(jnp.int32)
            f_hits, _, f_exact = _masked_hits(free, batch.tags, batch.lengths)
            sums["accuracy"] = (_f32_sum(f_hits), n_tok)
            sums["exact"] = (_f32_sum(f_exact), n_seq)
            sums["accuracy_tf"] = (_f32_sum(hits), n_tok)
            sums["exact_tf"] = (_f32_sum(exact), n_seq)
        else:
            sums["accuracy"] = (_f32_sum(hits), n_tok)
            sums["exact"] = (_f32_sum(exact), n_seq)
        return sums

    eval_batches = _synthetic_eval(config, make)

    def show(params, num, beam_size=1, temperature=0.0, seed=0, length_penalty=0.6):
        batch = jax.tree.map(lambda a: a[:num], next(iter(eval_batches())))
        mode = "free" if feedback else "teacher"
        pred = np.asarray(jnp.argmax(logits_of(params, batch, mode=mode), -1))
        how = "free running (own outputs fed back)" if feedback else "argmax per step"
        lines = [f"{config['task']} ({arch}), {how}:"]
        for i in range(pred.shape[0]):
            n = int(batch.lengths[i])
            got = seqtasks.format_tokens(pred[i], n)
            target = seqtasks.format_tokens(batch.tags[i], n)
            lines += _example(seqtasks.format_tokens(batch.inputs[i], n), got, target)
        return lines

    return Task(
        name=config["task"],
        model=model,
        data=data,
        batch_fn=batch_fn,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        eval_batches=eval_batches,
        tokens_per_step=config["batch_size"] * max_len,
        metric="acc",
        baseline=("uniform guessing, token accuracy", 1.0 / (num_symbols + 1)),
        show=show,
    )


def _classify(config: dict[str, Any]) -> Task:
    """classify (``seq2vec``): the majority symbol of a variable-length sequence."""
    _, num_symbols, _, max_len, vocab, _, _, make, data, batch_fn = _seq_setup(config)
    model = make_model(
        config, output_size=num_symbols, vocab_size=vocab, readout=config.get("pool") or "last"
    )

    def logits_of(params, batch, key=None):
        return model.apply(params, batch.inputs, lengths=batch.lengths, key=key)[0]

    def per_example(logits, labels):
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        return -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]

    def loss_fn(params, batch, key):
        logits = logits_of(params, batch, key)
        loss = jnp.mean(per_example(logits, batch.labels))
        hits = jnp.argmax(logits, -1).astype(jnp.int32) == batch.labels
        return loss, {"acc": jnp.mean(hits.astype(jnp.float32))}

    def eval_fn(params, batch):
        logits = logits_of(params, batch)
        hits = _f32_sum(jnp.argmax(logits, -1).astype(jnp.int32) == batch.labels)
        n = jnp.float32(batch.labels.shape[0])
        return {
            "loss": (jnp.sum(per_example(logits, batch.labels)), n),
            "accuracy": (hits, n),
            "exact": (hits, n),
        }

    eval_batches = _synthetic_eval(config, make)

    def show(params, num, beam_size=1, temperature=0.0, seed=0, length_penalty=0.6):
        batch = jax.tree.map(lambda a: a[:num], next(iter(eval_batches())))
        pred = np.asarray(jnp.argmax(logits_of(params, batch), -1))
        lines = [f"classify (seq2vec, pool={config.get('pool') or 'last'}):"]
        for i in range(pred.shape[0]):
            n = int(batch.lengths[i])
            got = seqtasks.format_tokens([int(pred[i]) + seqtasks.FIRST_SYMBOL])
            want = seqtasks.format_tokens([int(batch.labels[i]) + seqtasks.FIRST_SYMBOL])
            lines += _example(seqtasks.format_tokens(batch.inputs[i], n), got, want)
        return lines

    return Task(
        name="classify",
        model=model,
        data=data,
        batch_fn=batch_fn,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        eval_batches=eval_batches,
        tokens_per_step=config["batch_size"] * max_len,
        metric="acc",
        baseline=("uniform guessing, accuracy", 1.0 / num_symbols),
        show=show,
    )
