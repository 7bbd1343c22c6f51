"""``--task adding``: the adding problem (many-to-one regression,
[`jrnn.seqtasks.adding_problem`][]); ``val_mse``, baseline 1/6."""

from __future__ import annotations

from typing import Any

from jrnn.app.errors import UsageError
from jrnn.app.tasks.spec import Task, TaskSpec


def check(config: Any) -> None:
    if config.seq_len < 2:
        raise UsageError("--seq-len must be at least 2 for the adding problem")


def build(config: Any, corpus: Any = None) -> Task:
    import jax
    import jax.numpy as jnp

    from jrnn import seqtasks
    from jrnn.app.tasks.common import make_model, seed_keys, synthetic_eval

    model = make_model(config, output_size=1, input_size=2, readout=config.pool)
    batch_size, seq_len = config.batch_size, config.seq_len
    _, data_key, _ = seed_keys(config.seed)

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

    return Task(
        name="adding",
        model=model,
        data={"key": data_key},
        batch_fn=batch_fn,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        eval_batches=synthetic_eval(config, lambda k, b: seqtasks.adding_problem(k, b, seq_len)),
        tokens_per_step=batch_size * seq_len,
        metric="mse",
        baseline=("predicting 1.0, MSE", seqtasks.ADDING_PROBLEM_BASELINE_MSE),
        eval_row=lambda m: {"val_mse": m["mse"]},
        plot_key=("val_mse", "MSE"),
    )


SPEC = TaskSpec(
    name="adding",
    summary="the adding problem (many-to-one regression, baseline MSE 1/6)",
    models=("seq2vec",),
    defaults={
        "hidden": 64,
        "embed": 0,
        "steps": 1000,
        "batch_size": 64,
        "seq_len": 50,
        "lr": 1e-2,
        "checkpoint_every": 250,
        "eval_every": 100,
        "eval_batches": 4,
        "eval_batch_size": 256,
    },
    build=build,
    check=check,
    decodes=(),
)
