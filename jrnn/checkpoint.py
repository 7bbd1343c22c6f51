"""Checkpoints: a thin wrapper over ``orbax.checkpoint.CheckpointManager``.

A checkpoint holds one pytree of arrays (e.g. ``{"train": TrainState, "carry": ...}``) and a
JSON dict of metadata (data position, metric accumulators, ...).  Orbax writes each step into
a temporary folder and renames it when complete, so a checkpoint on disk is always whole:
a run killed mid-write leaves the previous checkpoint as the latest.  The last
``max_to_keep`` (3) are kept.

Saves are asynchronous (training goes on while the files are written).  The arrays are
copied to host memory and the metadata is snapshotted before :meth:`Checkpointer.save`
returns, so the caller may donate its buffers or mutate its dict at once.  Call
:meth:`Checkpointer.wait` (or ``close``) before exiting.

Typed PRNG keys (``jax.random.key``) are stored as their raw ``key_data`` and rewrapped on
restore from the template's key implementation.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["Checkpointer"]


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_host(tree: Any) -> Any:
    """Host copies of every leaf (keys as their ``key_data``), independent of device buffers."""

    def leaf(x):
        if _is_key(x):
            x = jax.random.key_data(x)
        return np.array(x, copy=True)

    return jax.tree.map(leaf, tree)


def _storable_template(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _rewrap_keys(restored: Any, template: Any) -> Any:
    def leaf(r, t):
        if _is_key(t):
            return jax.random.wrap_key_data(r, impl=jax.random.key_impl(t))
        return r

    return jax.tree.map(leaf, restored, template)


class Checkpointer:
    """Atomic, asynchronous checkpoints of a pytree plus JSON metadata in ``directory``.

    Args:
      directory: the checkpoints folder (one sub-folder per step).
      max_to_keep: how many of the most recent checkpoints to keep.
      create: create ``directory`` if missing (``False`` to only read).
      async_save: write in a background thread.
    """

    def __init__(
        self,
        directory: str | Path,
        max_to_keep: int = 3,
        create: bool = True,
        async_save: bool = True,
    ) -> None:
        logging.getLogger("absl").setLevel(logging.WARNING)
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            create=create,
            enable_async_checkpointing=async_save,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or ``None``."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of all complete checkpoints, ascending."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, tree: Any, metadata: dict[str, Any]) -> None:
        """Starts saving ``tree`` and ``metadata`` as checkpoint ``step``.

        Args:
          step: the checkpoint's step number (a Python int).
          tree: a pytree of arrays (typed PRNG keys allowed).
          metadata: JSON-serialisable dict.
        """
        host = _to_host(tree)
        # A snapshot: the write is asynchronous and the caller may mutate its dict at once.
        metadata = json.loads(json.dumps(metadata))
        self._manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(host), meta=ocp.args.JsonSave(metadata)
            ),
            force=True,
        )

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restores checkpoint ``step`` (default: the latest) into the structure of ``template``.

        Args:
          template: a pytree with the structure, shapes and dtypes of the saved one (e.g. a
            freshly initialised state); its typed keys say how to rewrap the stored keys.
          step: which checkpoint; default the latest.

        Returns:
          ``(tree, metadata)``.

        Raises:
          FileNotFoundError: there is no checkpoint.
        """
        if step is None:
            step = self.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), _storable_template(template)
        )
        restored = self._manager.restore(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return _rewrap_keys(restored.state, template), dict(restored.meta)

    def wait(self) -> None:
        """Blocks until every started save is on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
