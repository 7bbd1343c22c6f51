"""``--task charlm``: a character-level language model, ``L = -sum_t log p(y(t) | x(1..t))``
per character, on a text corpus (default: the running Python's standard-library source).

Training reads random windows of the training text, or with ``tbptt`` ``batch_size``
contiguous streams with the state carried across windows (truncated BPTT).  Evaluation reads
the held-out text as ``eval_batch_size`` contiguous streams (their first ``eval_batches``
windows each, or all of it with ``eval_batches=0``; a fixed, deterministic subset), the
state carried from window to window, in nats (``val_loss``) and bits per character
(``val_bpc``).
"""

from __future__ import annotations

import math
from typing import Any

from jrnn.app.errors import UsageError
from jrnn.app.tasks.spec import Task, TaskSpec

_LN2 = math.log(2.0)


def load(config: Any):
    """The corpus of ``config`` ([`jrnn.data.load_corpus`][]), checked against the window
    length and batch size."""
    from pathlib import Path

    from jrnn.data import load_corpus, read_text

    path = config.corpus
    try:
        # A single file is read as it is by load_corpus: refuse a binary one here (a folder's
        # binary files are skipped by the same test).
        binary = path is not None and Path(path).is_file() and read_text(Path(path), 1, True)
        corpus = None if binary is None else load_corpus(path, max_chars=config.max_chars)
    except FileNotFoundError:
        raise UsageError(f"--corpus {path}: no such file or folder") from None
    except (ValueError, OSError) as e:
        raise UsageError(f"--corpus {path}: {e}") from None
    if corpus is None:
        raise UsageError(f"--corpus {path}: a binary file, not text (give a text file or folder)")
    where = "the standard-library corpus" if path is None else f"corpus {path}"
    if corpus.val.shape[0] < 2:
        raise UsageError(f"{where} is too small to hold out validation text")
    n, b, t = corpus.train.shape[0], config.batch_size, config.seq_len
    if config.tbptt:
        if t >= n // b:
            raise UsageError(
                f"--seq-len {t} is longer than each of the {b} --tbptt streams of {where} "
                f"({n} training characters / {b} = {n // b}); lower --seq-len or --batch-size"
            )
    elif t >= n - 1:
        raise UsageError(
            f"--seq-len {t} is longer than {where} allows ({n} training characters; "
            f"need --seq-len < {n - 1})"
        )
    return corpus


def build(config: Any, corpus: Any) -> Task:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jrnn import data as jdata
    from jrnn.app.tasks.common import make_model, seed_keys
    from jrnn.losses import sequence_softmax_cross_entropy
    from jrnn.sample import sample

    if corpus is None:
        raise ValueError("charlm: the task needs a corpus")
    vocab = corpus.vocab
    model = make_model(config, output_size=vocab.size, vocab_size=vocab.size)
    batch_size, seq_len, tbptt = config.batch_size, config.seq_len, config.tbptt
    _, data_key, _ = seed_keys(config.seed)
    data = {"ids": jnp.asarray(corpus.train, jnp.int32), "key": data_key}

    def batch_fn(data, step):
        if tbptt:
            return jdata.stream_windows(data["ids"], batch_size, seq_len, step)
        key = jax.random.fold_in(data["key"], step)
        return jdata.random_windows(data["ids"], key, batch_size, seq_len)

    def window_loss(params, carry, windows, key):
        logits, (carry, _) = model.apply(params, windows[:, :-1], carry=carry, key=key)
        loss = sequence_softmax_cross_entropy(logits, windows[:, 1:])
        return loss, (carry, {"bpc": loss / _LN2})

    if tbptt:
        loss_fn = window_loss
    else:

        def loss_fn(params, windows, key):
            loss, (_, metrics) = window_loss(params, None, windows, key)
            return loss, metrics

    val = np.asarray(corpus.val)
    eval_batch, max_batches = config.eval_batch_size, config.eval_batches or None

    def eval_batches():
        for b in jdata.eval_windows(val, eval_batch, seq_len, max_batches):
            yield (b.windows, b.lengths)

    def eval_fn(params, carry, batch):
        windows, lengths = batch
        logits, (new_carry, _) = model.apply(params, windows[:, :-1], carry=carry, lengths=lengths)
        total = sequence_softmax_cross_entropy(
            logits, windows[:, 1:], lengths, reduction="sum"
        ).sum()
        count = jnp.sum(lengths).astype(total.dtype)
        return new_carry, {"loss": (total, count)}

    def eval_extra():
        return {"chars": int(sum(int(lengths.sum()) for _, lengths in eval_batches()))}

    def generate(params, prompt, length, temperature, seed):
        ids = vocab.encode(prompt)
        tokens = sample(model, params, jax.random.key(seed), ids, length, temperature)
        return prompt + vocab.decode(np.asarray(tokens))

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
        eval_row=lambda m: {"val_loss": m["loss"], "val_bpc": m["loss"] / _LN2},
        plot_key=("val_loss", "loss (nats/char)"),
        generate=generate,
        eval_extra=eval_extra,
    )


SPEC = TaskSpec(
    name="charlm",
    summary="a character-level language model on a text corpus",
    models=("lm",),
    defaults={
        "hidden": 256,
        "embed": 64,
        "steps": 1000,
        "batch_size": 64,
        "seq_len": 128,
        "lr": 3e-3,
        "checkpoint_every": 200,
        "eval_every": 200,
        "eval_batches": 16,
        "eval_batch_size": 128,
    },
    build=build,
    uses=("corpus", "max_chars", "tbptt", "sample_length"),
    decodes=(),
    load=load,
)
