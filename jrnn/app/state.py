"""A run's task and training state: built from its [`Config`][jrnn.app.config.Config], or
restored from the newest good checkpoint of its run folder.

Shared by the run loop (`jrnn.app.loop`) and the commands that read a finished run
(`jrnn.app.restore`).  Importing it loads neither JAX nor Orbax: they are loaded when a
state is built or restored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jrnn.app.config import Config
from jrnn.app.errors import UsageError

__all__ = [
    "build_state",
    "checkpoint_tree",
    "enable_dtype",
    "load_data",
    "make_optimizer",
    "restore_newest",
]


def make_optimizer(config: Config):
    """Adam with a linear warm-up and cosine decay to a tenth of ``lr`` over
    ``decay_steps`` (default ``steps``), constant after (a run extended by ``--resume``)."""
    import optax

    steps, lr = config.decay_steps or config.steps, config.lr
    warmup = min(100, max(steps // 10, 1))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, lr, warmup_steps=warmup, decay_steps=max(steps, warmup + 1), end_value=lr / 10
    )
    return optax.adam(schedule)


def enable_dtype(config: Config) -> None:
    """Enables JAX's 64-bit types for a ``float64`` run (before any array is made)."""
    if config.dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)


def load_data(config: Config) -> Any:
    """The task's corpus (``None`` for a synthetic task); `UsageError` if unusable."""
    enable_dtype(config)
    return config.spec.load(config) if config.spec.load is not None else None


def build_state(config: Config, corpus: Any = None):
    """``(task, optimizer, state, carry)``: the built task and its initial training state."""
    from jrnn.app.tasks.common import seed_keys
    from jrnn.train import init_train_state

    task = config.spec.build(config, corpus)
    optimizer = make_optimizer(config)
    init_key, _, train_key = seed_keys(config.seed)
    params = task.model.init(init_key)
    state = init_train_state(params, optimizer, train_key)
    carry = task.initial_carry(params) if task.has_carry else None
    return task, optimizer, state, carry


def checkpoint_tree(task: Any, state: Any, carry: Any) -> dict[str, Any]:
    """What a checkpoint of ``task`` holds: the train state, and the carry with TBPTT."""
    return {"train": state, "carry": carry} if task.has_carry else {"train": state}


def restore_newest(ckpt: Any, template: Any, out: Path) -> tuple[Any, dict[str, Any]]:
    """``ckpt.restore(template)``: the newest good checkpoint (a bad one is skipped with a
    one-line warning); `UsageError` when none is good (nothing is moved then)."""
    import warnings

    from jrnn.checkpoint import CheckpointError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            tree, meta = ckpt.restore(template)
        except FileNotFoundError:
            raise UsageError(f"{out} has no checkpoint yet") from None
        except CheckpointError as e:
            text = str(e)
            if "shape" in text.lower():
                text = (
                    f"the checkpoints in {out} do not fit its config.json (was it edited? "
                    f"e.g. another hidden size): {text}"
                )
            raise UsageError(text) from None
    _check_shapes(tree, template, out)
    for w in caught:  # only when a checkpoint was restored: the skipped ones
        warnings.warn(str(w.message), w.category, stacklevel=2)
    return tree, meta


def _check_shapes(tree: Any, template: Any, out: Path) -> None:
    """Refuses a restored tree whose arrays do not have the shapes that config.json gives
    (orbax restores the stored shapes): config.json was edited."""
    import jax
    import numpy as np

    got = jax.tree_util.tree_flatten_with_path(tree)[0]
    want = jax.tree.leaves(template)
    for (path, leaf), ref in zip(got, want, strict=False):
        if np.shape(leaf) != np.shape(ref):
            raise UsageError(
                f"the checkpoints in {out} do not fit its config.json (was it edited? e.g. "
                f"the hidden size): {jax.tree_util.keystr(path)} has shape "
                f"{list(np.shape(leaf))}, config.json gives {list(np.shape(ref))}"
            )
