"""``--task copy``: with ``tagger``/``bitagger`` the copy-memory task (per-step
classification, [`jrnn.seqtasks.copy_memory`][]): ``val_loss``, ``val_accuracy`` and
``val_exact`` on the ``copy_len`` recalled symbols.  With ``seq2seq``/``attention``: copy a
variable-length sequence ([`jrnn.seqtasks.copy_task`][])."""

from __future__ import annotations

from typing import Any

from jrnn.app.tasks.spec import SEQ_DEFAULTS, Task, TaskSpec, check_lengths

_GENERATORS = ("seq2seq", "attention")


def check(config: Any) -> None:
    if config.arch in _GENERATORS:
        check_lengths(config)


def build(config: Any, corpus: Any = None) -> Task:
    if config.arch in _GENERATORS:
        from jrnn import seqtasks
        from jrnn.app.tasks import sequences

        return sequences.generation(config, seqtasks.copy_task)
    return _copy_memory(config)


def _copy_memory(config: Any) -> Task:
    import jax
    import jax.numpy as jnp

    from jrnn import seqtasks
    from jrnn.app.tasks.common import make_model, seed_keys, synthetic_eval, token_eval_row
    from jrnn.losses import sequence_softmax_cross_entropy

    num_symbols, copy_len = config.num_symbols, config.copy_len
    vocab_size = num_symbols + 2
    model = make_model(
        config,
        output_size=vocab_size,
        vocab_size=vocab_size,
        bidirectional=config.arch == "bitagger",
    )
    batch_size, seq_len = config.batch_size, config.seq_len
    _, data_key, _ = seed_keys(config.seed)

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
        data={"key": data_key},
        batch_fn=batch_fn,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        eval_batches=synthetic_eval(config, make),
        tokens_per_step=batch_size * (seq_len + 2 * copy_len),
        metric="acc",
        baseline=(
            "memoryless, nats/step",
            seqtasks.copy_memory_baseline(seq_len, num_symbols, copy_len),
        ),
        eval_row=token_eval_row,
        plot_key=("val_loss", "loss (nats/step)"),
    )


SPEC = TaskSpec(
    name="copy",
    summary="recall copy-len symbols after a delay (copy memory), or with an "
    "encoder-decoder copy a variable-length sequence",
    models=("tagger", "bitagger", "seq2seq", "attention"),
    defaults={
        "hidden": 64,
        "embed": 0,
        "steps": 1000,
        "batch_size": 64,
        "seq_len": 10,
        "lr": 1e-2,
        "checkpoint_every": 250,
        "eval_every": 100,
        "eval_batches": 4,
        "eval_batch_size": 256,
    },
    model_defaults={"seq2seq": SEQ_DEFAULTS, "attention": SEQ_DEFAULTS},
    build=build,
    uses=("copy_len", "num_symbols", "min_len"),
    check=check,
    decodes=_GENERATORS,
)
