"""Checkpoints: a thin wrapper over ``orbax.checkpoint.CheckpointManager``, verified on restore.

A checkpoint holds one pytree of arrays (e.g. ``{"train": TrainState, "carry": ...}``) and a
JSON dict of metadata (data position, metric accumulators, ...).  Orbax writes each step into
a temporary folder and renames it when complete, so a checkpoint on disk is always whole:
a run killed mid-write leaves the previous checkpoint as the latest.  The last
``max_to_keep`` (3) are kept.

Integrity, checked twice:

* the files: once Orbax has finished writing a step, a manifest of the size and SHA-256 of
  every file in its folder is written next to them ([`jrnn.checkpoint_manifest`][]).
  [`Checkpointer.restore`][jrnn.checkpoint.Checkpointer.restore] checks it with plain file reads
  *before* Orbax opens the step, so a truncated, deleted, flipped or garbage file is found without
  any TensorStore read of it (such reads fail asynchronously and print tracebacks of their own);
* the contents: every checkpoint carries a SHA-256 digest of what it holds (each array's
  dtype, shape and bytes, in the tree's order, and the metadata's canonical JSON), computed
  from the host copies when [`Checkpointer.save`][jrnn.checkpoint.Checkpointer.save] is called and
  stored inside the checkpoint's own JSON item.
  [`Checkpointer.restore`][jrnn.checkpoint.Checkpointer.restore] recomputes it from what it read
  (this also catches a template of another shape).  The stored dtypes are kept beside the
  digest: a template of another precision (a float64 checkpoint read without JAX's 64-bit
  mode) is a [`CheckpointError`][jrnn.checkpoint.CheckpointError] saying so, before any
  array is read, and the checkpoint is neither skipped nor moved aside.

A checkpoint that fails either check or cannot be read (an empty step folder, missing or
garbage metadata) is skipped with a one-line ``warnings.warn`` and the next older one is
tried.  A writable checkpointer moves the skipped ones to ``<directory>/corrupt/`` so that
training can save those steps again.  When no checkpoint is good,
[`CheckpointError`][jrnn.checkpoint.CheckpointError] (a ``ValueError``) says why for each step.
Checkpoints written before manifests existed (or by a process killed between Orbax's write and the
manifest) are opened by Orbax directly, and those written before digests existed are restored
unverified.

Saves are asynchronous (training goes on while the files are written).  The arrays are
copied to host memory and the metadata is snapshotted before
[`Checkpointer.save`][jrnn.checkpoint.Checkpointer.save] returns, so the caller may donate its
buffers or mutate its dict at once.  Call [`Checkpointer.wait`][jrnn.checkpoint.Checkpointer.wait]
(or ``close``) before exiting: it also writes the manifests.

Typed PRNG keys (``jax.random.key``) are stored as their raw ``key_data`` and rewrapped on
restore from the template's key implementation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jrnn.checkpoint_manifest import verify_manifest, write_manifest

__all__ = ["CheckpointError", "Checkpointer", "tree_digest"]

_DIGEST_KEY = "__jrnn_sha256__"
_DTYPES_KEY = "__jrnn_dtypes__"  # each leaf's dtype, as stored (numpy's ``dtype.str``)


class CheckpointError(ValueError):
    """No checkpoint could be restored: every candidate is unreadable or fails its digest.

    Examples:
      >>> issubclass(CheckpointError, ValueError)
      True
    """


class _DtypeMismatch(CheckpointError):
    """A checkpoint read into a template of another precision: not a damaged checkpoint,
    so it is neither skipped nor moved aside."""


_OS_ERROR = re.compile(r"os_error_code='(\d+)'")
_FAILED_FILE = re.compile(r'Failed writing: "([^"]+)"')


@contextlib.contextmanager
def _writing(directory: Path):
    """Turns a failed Orbax / TensorStore write that names an OS error (a full disk, a
    file-size limit, a read-only file system: ``os_error_code='28'`` in its message) into
    the ``OSError`` it is, naming the file; other errors pass unchanged."""
    try:
        yield
    except OSError:
        raise
    except Exception as e:
        code = _OS_ERROR.search(str(e))
        if code is None:
            raise
        number = int(code.group(1))
        where = _FAILED_FILE.search(str(e))
        path = where.group(1) if where else str(directory)
        raise OSError(number, os.strerror(number), path) from e


def tree_digest(tree: Any, metadata: dict[str, Any]) -> str:
    """SHA-256 (hex) of a pytree of arrays and a JSON dict, as stored with each checkpoint.

    Covers every leaf's dtype, shape and bytes (C order, in ``jax.tree.leaves`` order;
    typed keys as their ``key_data``) and the metadata's canonical JSON (sorted keys).

    Args:
      tree: a pytree of arrays (``[...]`` of any shape).
      metadata: a JSON-serialisable dict.

    Returns:
      64 hex digits.

    Examples:
      >>> import numpy as np
      >>> a = tree_digest({"w": np.zeros((2, 3), np.float32)}, {"step": 1})
      >>> b = tree_digest({"w": np.zeros((2, 3), np.float32)}, {"step": 2})
      >>> len(a), a == b
      (64, False)
    """
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(_to_host(tree)):
        leaf = np.ascontiguousarray(leaf)
        h.update(f"{leaf.dtype.str}{leaf.shape}".encode())
        h.update(leaf.tobytes())
    h.update(json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "no message"
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(error).__name__}: {text}"


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_host(tree: Any) -> Any:
    """Host copies of every leaf (keys as their ``key_data``), independent of device buffers."""

    def leaf(x):
        if _is_key(x):
            x = jax.random.key_data(x)
        if isinstance(x, jax.Array) and not x.is_fully_addressable:  # several hosts
            from jax.experimental import multihost_utils

            return np.array(multihost_utils.process_allgather(x, tiled=True), copy=True)
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
    """Atomic, asynchronous, verified checkpoints of a pytree plus JSON metadata.

    Args:
      directory: the checkpoints folder (one sub-folder per step).
      max_to_keep: how many of the most recent checkpoints to keep.
      create: create ``directory`` if missing; ``False`` opens it read-only (corrupt
        checkpoints are then skipped but left in place).
      async_save: write in a background thread.

    Examples:
      >>> import tempfile, jax.numpy as jnp
      >>> folder = tempfile.mkdtemp()
      >>> with Checkpointer(folder) as ck:
      ...     ck.save(1, {"w": jnp.ones((2, 3))}, {"step": 1})
      ...     ck.save(2, {"w": 2 * jnp.ones((2, 3))}, {"step": 2})
      >>> with Checkpointer(folder, create=False) as ck:
      ...     tree, meta = ck.restore({"w": jnp.zeros((2, 3))})
      >>> meta, float(tree["w"][0, 0]), ck.all_steps()
      ({'step': 2}, 2.0, [1, 2])
    """

    def __init__(
        self,
        directory: str | Path,
        max_to_keep: int = 3,
        create: bool = True,
        async_save: bool = True,
    ) -> None:
        if isinstance(max_to_keep, bool) or not isinstance(max_to_keep, int) or max_to_keep < 1:
            raise ValueError(
                f"Checkpointer: `max_to_keep` must be a positive int, got {max_to_keep!r}"
            )
        logging.getLogger("absl").setLevel(logging.WARNING)
        self.directory = Path(directory).absolute()
        self._writable = bool(create)
        self._async = bool(async_save)
        self._unsealed: list[int] = []  # saved steps still without a manifest
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            create=create,
            enable_async_checkpointing=async_save,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or ``None`` (not yet verified)."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of all complete checkpoints, ascending."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, tree: Any, metadata: dict[str, Any]) -> None:
        """Starts saving ``tree`` and ``metadata`` (with their digest) as checkpoint ``step``.

        Args:
          step: the checkpoint's step number (a Python int ``>= 0``).
          tree: a pytree of arrays (typed PRNG keys allowed).
          metadata: JSON-serialisable dict.

        Raises:
          TypeError: ``metadata`` is not a JSON-serialisable dict.
          ValueError: a negative or non-int ``step``.
        """
        if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"Checkpointer.save: `step` must be an int >= 0, got {step!r}")
        if not isinstance(metadata, dict):
            raise TypeError(
                f"Checkpointer.save: `metadata` must be a JSON-serialisable dict, got "
                f"{type(metadata).__name__}"
            )
        for reserved in (_DIGEST_KEY, _DTYPES_KEY):
            if reserved in metadata:
                raise ValueError(f"Checkpointer.save: `metadata` may not use the key {reserved!r}")
        host = _to_host(tree)
        # A snapshot: the write is asynchronous and the caller may mutate its dict at once.
        try:
            metadata = json.loads(json.dumps(metadata))
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"Checkpointer.save: `metadata` must be JSON-serialisable: {_one_line(e)}"
            ) from None
        stored = dict(
            metadata,
            **{
                _DIGEST_KEY: tree_digest(host, metadata),
                _DTYPES_KEY: [np.asarray(x).dtype.str for x in jax.tree.leaves(host)],
            },
        )
        self._seal()  # Orbax waits for the previous save here anyway
        with _writing(self.directory):
            self._manager.save(
                int(step),
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(host), meta=ocp.args.JsonSave(stored)
                ),
                force=True,
            )
        self._unsealed.append(int(step))
        if not self._async:
            self._seal()

    def _seal(self) -> None:
        """Waits for the pending save, then writes the manifest of every step saved since
        the last call (on the primary process; steps Orbax already deleted are passed).

        A failed write is raised here, as the ``OSError`` it is when it names one (a full
        disk: ``errno.ENOSPC``); the unfinished step stays a temporary folder, which no
        restore reads, and every complete checkpoint is kept."""
        steps, self._unsealed = self._unsealed, []
        with _writing(self.directory):
            self._manager.wait_until_finished()
        if jax.process_index() != 0:
            return
        for s in steps:
            folder = self.directory / str(s)
            if folder.is_dir():
                write_manifest(folder)

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restores and verifies checkpoint ``step`` (default: the newest good one).

        Without ``step``, the checkpoints are tried newest first: one whose files fail
        their manifest, that cannot be read or fails its SHA-256 digest is skipped with a
        one-line ``warnings.warn`` (and, when the checkpointer is writable, moved to
        ``<directory>/corrupt/``).  A step's files are checked against its manifest before
        Orbax opens it.

        Args:
          template: a pytree with the structure, shapes and dtypes of the saved one (e.g. a
            freshly initialised state); its typed keys say how to rewrap the stored keys.
          step: which checkpoint; default the newest good one (no fallback for an explicit
            step).

        Returns:
          ``(tree, metadata)``.

        Raises:
          FileNotFoundError: there is no checkpoint at all.
          CheckpointError: ``step`` does not exist or is bad, or (without ``step``) no
            checkpoint is good; the message gives the reason for each.  Or the newest
            checkpoint holds another precision than ``template`` (it is not skipped).
        """
        self._seal()
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        if step is not None:
            if int(step) not in steps:
                raise CheckpointError(
                    f"Checkpointer.restore: no checkpoint for `step`={step} in "
                    f"{self.directory}; the checkpoints are {steps}"
                )
            try:
                return self._restore_verified(template, int(step))
            except _DtypeMismatch as e:
                raise CheckpointError(str(e)) from None
            except Exception as e:  # orbax, tensorstore, JSON, digest: one clear error
                raise CheckpointError(
                    f"checkpoint {step} in {self.directory} cannot be restored: {_one_line(e)}"
                ) from e
        failures, bad = [], []
        for s in reversed(steps):
            try:
                result = self._restore_verified(template, s)
            except _DtypeMismatch as e:  # the checkpoint is good: the reader is wrong
                raise CheckpointError(str(e)) from None
            except Exception as e:  # orbax, tensorstore, JSON, digest: try the next one
                reason = _one_line(e)
                failures.append(f"step {s}: {reason}")
                bad.append(s)
                warnings.warn(
                    f"jrnn: skipping checkpoint {s} in {self.directory} ({reason})",
                    stacklevel=2,
                )
                continue
            self._quarantine(bad)
            return result
        raise CheckpointError(f"no good checkpoint in {self.directory}: " + "; ".join(failures))

    def _check_files(self, step: int) -> None:
        """Refuses a step whose files fail its manifest, or an empty step folder, before
        Orbax opens it (no TensorStore read of a damaged file is ever started)."""
        folder = self.directory / str(step)
        if verify_manifest(folder):
            return
        if folder.is_dir() and not any(p.is_file() for p in folder.rglob("*")):
            raise CheckpointError("its step folder holds no file")

    def _check_dtypes(self, step: int, abstract: Any) -> None:
        """Refuses to read a checkpoint into a template of another precision (e.g. float64
        arrays into float32 ones, as JAX makes them without 64-bit mode): reading would
        truncate them, and the digest of what was read could not match."""
        path = self.directory / str(step) / "meta" / "metadata"
        try:
            stored = json.loads(path.read_text(encoding="utf-8")).get(_DTYPES_KEY)
        except (OSError, ValueError, AttributeError):
            return  # no such file in this Orbax version, or an older checkpoint: not checked
        leaves = jax.tree.leaves(abstract)
        if not isinstance(stored, list) or len(stored) != len(leaves):
            return  # another structure: Orbax's restore says which
        for got, leaf in zip(stored, leaves, strict=True):
            want = np.dtype(leaf.dtype)
            if np.dtype(got) != want:
                hint = (
                    " (enable JAX's 64-bit types first: jax.config.update('jax_enable_x64', True))"
                    if np.dtype(got).itemsize == 8 and not jax.config.jax_enable_x64
                    else ""
                )
                raise _DtypeMismatch(
                    f"checkpoint {step} in {self.directory} holds {np.dtype(got).name} "
                    f"arrays, the template asks for {want.name}{hint}"
                )

    def _restore_verified(self, template: Any, step: int) -> tuple[Any, dict[str, Any]]:
        self._check_files(step)
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), _storable_template(template)
        )
        self._check_dtypes(step, abstract)
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        meta = restored.meta
        if not isinstance(meta, dict):
            raise CheckpointError(f"its metadata is not a JSON dict but {type(meta).__name__}")
        meta = dict(meta)
        meta.pop(_DTYPES_KEY, None)
        expected = meta.pop(_DIGEST_KEY, None)
        if expected is not None:  # older checkpoints have no digest: restored unverified
            got = tree_digest(restored.state, meta)
            if got != expected:
                raise CheckpointError(
                    f"SHA-256 mismatch: stored {expected[:12]}..., the data read gives "
                    f"{got[:12]}... (corrupted files)"
                )
        return _rewrap_keys(restored.state, template), meta

    def _quarantine(self, steps: list[int]) -> None:
        """Moves bad step folders to ``<directory>/corrupt/`` (writable checkpointers only),
        so the run can save those steps again."""
        if not steps or not self._writable:
            return
        target = self.directory / "corrupt"
        for s in steps:
            src = self.directory / str(s)
            if not src.exists():
                continue
            target.mkdir(exist_ok=True)
            dst, n = target / str(s), 1
            while dst.exists():
                dst, n = target / f"{s}-{n}", n + 1
            shutil.move(str(src), str(dst))
        self._manager.reload()

    def wait(self) -> None:
        """Blocks until every started save is on disk, with its manifest."""
        self._seal()

    def close(self) -> None:
        """Waits for pending saves (writing their manifests) and releases the manager (also
        when a pending save failed: its error is raised after)."""
        try:
            self._seal()
        finally:
            with contextlib.suppress(Exception):  # the failed save's error, once more
                self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
