"""``--task mqar``: multi-query associative recall ([`jrnn.seqtasks.mqar`][]), a tagger
scored at the queries only: ``num_pairs`` key-value pairs, then every key queried once in
random order (at random steps of the ``seq_len - 2 * num_pairs`` steps after the pairs); at
a query the model must output the value bound to its key.  Keys and values come from two
disjoint vocabularies of ``num_symbols`` tokens each.

``val_loss`` (nats per query), ``val_accuracy`` (per query) and ``val_exact`` (every query of
a sequence right).  The baseline is ``1 / num_pairs``: the exact query accuracy of any model
that remembers which values occurred but not which key each was bound to (a model with no
memory of the pairs scores at best ``1 / num_symbols``).
"""

from __future__ import annotations

from typing import Any

from jrnn.app.errors import UsageError
from jrnn.app.tasks.spec import Task, TaskSpec


def check(config: Any) -> None:
    pairs = config.num_pairs
    if config.num_symbols < pairs:
        raise UsageError(
            f"--num-symbols {config.num_symbols} is below --num-pairs {pairs}: the keys and "
            "the values of a sequence are distinct symbols"
        )
    if config.seq_len < 3 * pairs:
        raise UsageError(
            f"--seq-len {config.seq_len} is below 3 x --num-pairs = {3 * pairs} (the pairs, "
            "then a query of each key)"
        )


def token(t: int, num_symbols: int) -> str:
    """A token of [`jrnn.seqtasks.mqar`][] as text: ``_`` blank, keys ``a, b, ...``, values
    ``A, B, ...`` (``k26``/``v26`` beyond the alphabet)."""
    if t == 0:
        return "_"
    if t <= num_symbols:
        return chr(ord("a") + t - 1) if t <= 26 else f"k{t - 1}"
    s = t - num_symbols - 1
    return chr(ord("A") + s) if s < 26 else f"v{s}"


def build(config: Any, corpus: Any = None) -> Task:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jrnn import seqtasks
    from jrnn.app.tasks.common import (
        example,
        f32_sum,
        make_model,
        seed_keys,
        synthetic_eval,
        token_eval_row,
    )
    from jrnn.losses import sequence_softmax_cross_entropy

    pairs, symbols, seq_len = config.num_pairs, config.num_symbols, config.seq_len
    vocab = seqtasks.mqar_vocab_size(symbols)
    model = make_model(config, output_size=vocab, vocab_size=vocab)
    batch_size = config.batch_size
    _, data_key, _ = seed_keys(config.seed)

    def make(key, b):
        return seqtasks.mqar(key, b, pairs, symbols, seq_len=seq_len)

    def batch_fn(data, step):
        return make(jax.random.fold_in(data["key"], step), batch_size)

    def logits_of(params, batch, key=None):
        return model.apply(params, batch.inputs, key=key)[0]

    def hits_of(logits, batch):
        guess = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return (guess == batch.targets) & batch.mask

    def loss_fn(params, batch, key):
        logits = logits_of(params, batch, key)
        loss = sequence_softmax_cross_entropy(logits, batch.targets, mask=batch.mask)
        hits = hits_of(logits, batch)
        return loss, {"acc": f32_sum(hits) / jnp.maximum(f32_sum(batch.mask), 1.0)}

    def eval_fn(params, batch):
        logits = logits_of(params, batch)
        total = jnp.sum(
            sequence_softmax_cross_entropy(logits, batch.targets, mask=batch.mask, reduction="sum")
        )
        hits = hits_of(logits, batch)
        exact = jnp.all(hits | ~batch.mask, axis=1)
        n_queries, n_seq = f32_sum(batch.mask), jnp.float32(exact.shape[0])
        return {
            "loss": (total, n_queries.astype(total.dtype)),
            "accuracy": (f32_sum(hits), n_queries),
            "exact": (f32_sum(exact), n_seq),
        }

    eval_batches = synthetic_eval(config, make)

    def show(params, num, beam_size=1, temperature=0.0, seed=0, length_penalty=0.6):
        batch = jax.tree.map(lambda a: a[:num], next(iter(eval_batches())))
        guess = np.asarray(jnp.argmax(logits_of(params, batch), -1))
        inputs, targets, mask = (np.asarray(a) for a in batch)
        lines = [f"mqar ({config.arch}), the pairs | the queries, and the values output there:"]
        for i in range(inputs.shape[0]):
            shown = " ".join(
                f"{token(k, symbols)}{token(v, symbols)}"
                for k, v in inputs[i, : 2 * pairs].reshape(pairs, 2).tolist()
            )
            asked = " ".join(token(t, symbols) for t in inputs[i, 2 * pairs :].tolist())
            at = np.flatnonzero(mask[i])
            got = " ".join(token(t, symbols) for t in guess[i, at].tolist())
            want = " ".join(token(t, symbols) for t in targets[i, at].tolist())
            lines += example(f"{shown} | {asked}", got, want)
        return lines

    return Task(
        name="mqar",
        model=model,
        data={"key": data_key},
        batch_fn=batch_fn,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        eval_batches=eval_batches,
        tokens_per_step=batch_size * seq_len,
        metric="acc",
        baseline=(
            "no key-value binding: a guess among the sequence's values, query accuracy",
            1.0 / pairs,
        ),
        eval_row=token_eval_row,
        plot_key=("val_loss", "loss (nats/query)"),
        show=show,
        loss_weight=lambda batch: jnp.sum(batch.mask),  # a mean over the queries
    )


SPEC = TaskSpec(
    name="mqar",
    summary="multi-query associative recall: key-value pairs, then each key queried "
    "(baseline 1/num-pairs)",
    models=("tagger",),
    defaults={
        "num_pairs": 4,
        "num_symbols": 16,
        "seq_len": 16,
        "hidden": 128,
        "embed": 32,
        "steps": 2000,
        "batch_size": 64,
        "lr": 5e-3,
        "checkpoint_every": 500,
        "eval_every": 250,
        "eval_batches": 4,
        "eval_batch_size": 256,
    },
    build=build,
    uses=("num_pairs", "num_symbols"),
    check=check,
)
