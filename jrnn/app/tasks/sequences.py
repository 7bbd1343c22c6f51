"""Shared plumbing of the variable-length sequence tasks ([`jrnn.seqtasks`][] batches):
generation (encoder-decoders), tagging (one output per step) and classification.

Each task file names its generator and calls one of `generation`, `tagging` or
`classify`; the batch for step ``s`` is a pure function of ``(seed, s)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jrnn import seqtasks
from jrnn.app.tasks.common import (
    dtypes,
    example,
    f32_sum,
    make_cell,
    make_model,
    masked_hits,
    ratio,
    seed_keys,
    synthetic_eval,
    token_eval_row,
)
from jrnn.app.tasks.spec import Task
from jrnn.decode import beam_search, greedy_decode, sample_decode
from jrnn.losses import sequence_softmax_cross_entropy
from jrnn.models import EncoderDecoder, output_recurrent, seq2seq, vec2seq
from jrnn.stacks import stack

__all__ = ["classify", "generation", "setup", "tagging"]


def setup(config: Any, generator: Callable[..., Any]):
    """``(arch, V, min_len, T, vocab, embed, param_dtype, make, data, batch_fn)``."""
    num_symbols, max_len, min_len = config.num_symbols, config.seq_len, config.min_len
    vocab = seqtasks.vocab_size(num_symbols)
    _, param_dtype = dtypes(config.dtype)
    batch_size = config.batch_size
    _, data_key, _ = seed_keys(config.seed)

    def make(key, b):
        return generator(key, b, min_len, max_len, num_symbols)

    def batch_fn(data, step):
        return make(jax.random.fold_in(data["key"], step), batch_size)

    return (
        config.arch,
        num_symbols,
        min_len,
        max_len,
        vocab,
        config.embed or None,
        param_dtype,
        make,
        {"key": data_key},
        batch_fn,
    )


def generation(config: Any, generator: Callable[..., Any]) -> Task:
    """Sequence generation: ``SeqBatch`` (``seq2seq``, ``attention``) or ``VecBatch``
    (``vec2seq``) data."""
    arch, num_symbols, _, max_len, vocab, embed, param_dtype, make, data, batch_fn = setup(
        config, generator
    )
    if arch == "vec2seq":
        model: EncoderDecoder = vec2seq(
            make_cell(config),
            num_symbols + max_len,
            vocab,
            embed_size=embed,
            condition=config.condition,
            param_dtype=param_dtype,
        )
    else:
        encoder = stack(
            make_cell(config),
            num_layers=config.layers,
            bidirectional=True,
            dropout=config.dropout,
        )
        model = seq2seq(
            encoder,
            make_cell(config),
            vocab,
            vocab,
            embed_size=embed,
            attention=config.score if arch == "attention" else None,
            param_dtype=param_dtype,
        )
    is_vec = arch == "vec2seq"
    sample_prob = config.sample_prob
    decode_len = max_len + 1

    def source(batch):
        return (batch.vec, None) if is_vec else (batch.src, batch.src_lengths)

    def loss_fn(params, batch, key):
        src, src_lengths = source(batch)
        logits, _ = model.apply(
            params, src, batch.tgt_in, src_lengths=src_lengths, key=key, sample_prob=sample_prob
        )
        loss = sequence_softmax_cross_entropy(logits, batch.tgt_out, batch.tgt_lengths)
        pred = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        hits, valid, _ = masked_hits(pred, batch.tgt_out, batch.tgt_lengths)
        return loss, {"acc": ratio(hits, valid)}

    def eval_fn(params, batch):
        src, src_lengths = source(batch)
        logits, _ = model.apply(params, src, batch.tgt_in, src_lengths=src_lengths)
        total = jnp.sum(
            sequence_softmax_cross_entropy(
                logits, batch.tgt_out, batch.tgt_lengths, reduction="sum"
            )
        )
        tf_pred = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        tf_hits, valid, tf_exact = masked_hits(tf_pred, batch.tgt_out, batch.tgt_lengths)
        decoded = greedy_decode(model, params, src, src_lengths, max_len=decode_len)
        hits, _, exact = masked_hits(decoded.tokens, batch.tgt_out, batch.tgt_lengths)
        n_tok, n_seq = f32_sum(valid), jnp.float32(exact.shape[0])
        return {
            "loss": (total, n_tok.astype(total.dtype)),
            "accuracy": (f32_sum(hits), n_tok),
            "exact": (f32_sum(exact), n_seq),
            "accuracy_tf": (f32_sum(tf_hits), n_tok),
        }

    eval_batches = synthetic_eval(config, make)

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
        lines = [f"{config.task} ({arch}), {how}:"]
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
            lines += example(shown, got, target)
        return lines

    return Task(
        name=config.task,
        model=model,
        data=data,
        batch_fn=batch_fn,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        eval_batches=eval_batches,
        tokens_per_step=config.batch_size * (2 * max_len + 1),
        metric="acc",
        baseline=("uniform guessing, token accuracy", 1.0 / (num_symbols + 1)),
        eval_row=token_eval_row,
        show=show,
        decode_len=decode_len,
        loss_weight=lambda batch: jnp.sum(batch.tgt_lengths),  # a mean over target tokens
    )


def tagging(
    config: Any, generator: Callable[..., Any], baseline: tuple[str, float] | None = None
) -> Task:
    """Tagging, one output per input step (``TagBatch`` data): ``tagger``, ``bitagger``, and
    the output-recurrence networks ``outrec``, ``outrec-hidden``; ``baseline`` names the
    headline's reference value (default: uniform guessing, ``1 / (V + 1)``)."""
    arch, num_symbols, _, max_len, vocab, embed, param_dtype, make, data, batch_fn = setup(
        config, generator
    )
    feedback = arch in ("outrec", "outrec-hidden")
    sample_prob = config.sample_prob
    if feedback:
        model: Any = output_recurrent(
            vocab,
            config.hidden,
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
                return model.apply(params, batch.inputs, feedback="free")[0]
            sp = sample_prob if key is not None else 0.0
            return model.apply(params, batch.inputs, batch.tags, sample_prob=sp, key=key)[0]
        return model.apply(params, batch.inputs, lengths=batch.lengths, key=key)[0]

    def loss_fn(params, batch, key):
        logits = logits_of(params, batch, key)
        loss = sequence_softmax_cross_entropy(logits, batch.tags, batch.lengths)
        pred = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        hits, valid, _ = masked_hits(pred, batch.tags, batch.lengths)
        return loss, {"acc": ratio(hits, valid)}

    def eval_fn(params, batch):
        logits = logits_of(params, batch)
        total = jnp.sum(
            sequence_softmax_cross_entropy(logits, batch.tags, batch.lengths, reduction="sum")
        )
        pred = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        hits, valid, exact = masked_hits(pred, batch.tags, batch.lengths)
        n_tok, n_seq = f32_sum(valid), jnp.float32(exact.shape[0])
        sums = {"loss": (total, n_tok.astype(total.dtype))}
        if feedback:  # headline: free running; also teacher forced
            free = jnp.argmax(logits_of(params, batch, mode="free"), -1).astype(jnp.int32)
            f_hits, _, f_exact = masked_hits(free, batch.tags, batch.lengths)
            sums["accuracy"] = (f32_sum(f_hits), n_tok)
            sums["exact"] = (f32_sum(f_exact), n_seq)
            sums["accuracy_tf"] = (f32_sum(hits), n_tok)
            sums["exact_tf"] = (f32_sum(exact), n_seq)
        else:
            sums["accuracy"] = (f32_sum(hits), n_tok)
            sums["exact"] = (f32_sum(exact), n_seq)
        return sums

    eval_batches = synthetic_eval(config, make)

    def show(params, num, beam_size=1, temperature=0.0, seed=0, length_penalty=0.6):
        batch = jax.tree.map(lambda a: a[:num], next(iter(eval_batches())))
        mode = "free" if feedback else "teacher"
        pred = np.asarray(jnp.argmax(logits_of(params, batch, mode=mode), -1))
        how = "free running (own outputs fed back)" if feedback else "argmax per step"
        lines = [f"{config.task} ({arch}), {how}:"]
        for i in range(pred.shape[0]):
            n = int(batch.lengths[i])
            got = seqtasks.format_tokens(pred[i], n)
            target = seqtasks.format_tokens(batch.tags[i], n)
            lines += example(seqtasks.format_tokens(batch.inputs[i], n), got, target)
        return lines

    return Task(
        name=config.task,
        model=model,
        data=data,
        batch_fn=batch_fn,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        eval_batches=eval_batches,
        tokens_per_step=config.batch_size * max_len,
        metric="acc",
        baseline=baseline or ("uniform guessing, token accuracy", 1.0 / (num_symbols + 1)),
        eval_row=token_eval_row,
        show=show,
        loss_weight=lambda batch: jnp.sum(batch.lengths),  # a mean over valid tokens
    )


def classify(config: Any, generator: Callable[..., Any]) -> Task:
    """Sequence classification (``seq2vec``): ``ClassBatch`` labels in ``[0, V)``."""
    _, num_symbols, _, max_len, vocab, _, _, make, data, batch_fn = setup(config, generator)
    model = make_model(config, output_size=num_symbols, vocab_size=vocab, readout=config.pool)

    def logits_of(params, batch, key=None):
        return model.apply(params, batch.inputs, lengths=batch.lengths, key=key)[0]

    def perexample(logits, labels):
        return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)

    def loss_fn(params, batch, key):
        logits = logits_of(params, batch, key)
        loss = jnp.mean(perexample(logits, batch.labels))
        hits = jnp.argmax(logits, -1).astype(jnp.int32) == batch.labels
        return loss, {"acc": jnp.mean(hits.astype(jnp.float32))}

    def eval_fn(params, batch):
        logits = logits_of(params, batch)
        hits = f32_sum(jnp.argmax(logits, -1).astype(jnp.int32) == batch.labels)
        n = jnp.float32(batch.labels.shape[0])
        return {
            "loss": (jnp.sum(perexample(logits, batch.labels)), n),
            "accuracy": (hits, n),
            "exact": (hits, n),
        }

    eval_batches = synthetic_eval(config, make)

    def show(params, num, beam_size=1, temperature=0.0, seed=0, length_penalty=0.6):
        batch = jax.tree.map(lambda a: a[:num], next(iter(eval_batches())))
        pred = np.asarray(jnp.argmax(logits_of(params, batch), -1))
        lines = [f"{config.task} (seq2vec, pool={config.pool}):"]
        for i in range(pred.shape[0]):
            n = int(batch.lengths[i])
            got = seqtasks.format_tokens([int(pred[i]) + seqtasks.FIRST_SYMBOL])
            want = seqtasks.format_tokens([int(batch.labels[i]) + seqtasks.FIRST_SYMBOL])
            lines += example(seqtasks.format_tokens(batch.inputs[i], n), got, want)
        return lines

    return Task(
        name=config.task,
        model=model,
        data=data,
        batch_fn=batch_fn,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        eval_batches=eval_batches,
        tokens_per_step=config.batch_size * max_len,
        metric="acc",
        baseline=("uniform guessing, accuracy", 1.0 / num_symbols),
        eval_row=token_eval_row,
        show=show,
    )
