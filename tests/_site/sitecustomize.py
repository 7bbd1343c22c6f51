"""Loaded by every Python process of the test suite (the root ``conftest.py`` puts this
folder first on ``PYTHONPATH``, and the suite's subprocesses inherit it): JAX's persistent
compilation cache, shared by all of them, gets atomic writes.

Without a size limit JAX writes a cache entry in place (``LRUCache.put``), so another
process can read an entry that is still being written; JAX then warns ("Error reading
persistent compilation cache entry") and compiles again, and that warning breaks the tests
that assert what a command prints. With a size limit JAX locks every read and write and,
inside the lock, lists the whole folder to evict: each write costs O(entries), a cold run of
the suite O(entries²). Here an entry is written to a temporary file and renamed into place,
which readers see whole or not at all, with no lock and no listing.

``prune`` bounds the folder (the root ``conftest.py`` calls it when a run starts).  The
pytest process itself starts before the root ``conftest.py`` sets ``PYTHONPATH``, so there
this file is imported as ``tests._site.sitecustomize``, not as the interpreter's
``sitecustomize`` (which may be another, Debian's).

The patch is applied when JAX imports ``jax._src.lru_cache``, not here: importing JAX at
interpreter start would read its configuration before a script sets its environment.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import runpy
import sys
import tempfile
import time

_MODULE = "jax._src.lru_cache"


def _patch(lru_cache) -> None:
    cls = lru_cache.LRUCache
    if getattr(cls.put, "_jrnn_atomic", False):
        return
    put_locked = cls.put

    def put(self, key: str, value: bytes) -> None:
        if self.eviction_enabled:  # JAX's own lock serialises its reads and writes
            return put_locked(self, key, value)
        if not key:
            raise ValueError("key cannot be empty")
        final = os.path.join(str(self.path), f"{key}{lru_cache._CACHE_SUFFIX}")
        if os.path.exists(final):
            return
        fd, tmp = tempfile.mkstemp(dir=str(self.path), prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(value)
            os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    put._jrnn_atomic = True
    cls.put = put


class _PatchOnImport(importlib.abc.MetaPathFinder):
    jrnn_atomic_cache = True  # one hook per process, whichever copy of this file made it

    def find_spec(self, name, path, target=None):
        if name != _MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module) -> None:
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


def install() -> None:
    if _MODULE in sys.modules:
        _patch(sys.modules[_MODULE])
    elif not any(getattr(f, "jrnn_atomic_cache", False) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())


def prune(folder: str, *, unused_days: float = 7, max_bytes: int = 2 << 30) -> None:
    """Bound the suite's cache: drop entries not read for ``unused_days`` (the file system
    updates a read file's access time at least daily), then the least recently read until
    the folder holds at most ``max_bytes``, and temporary files a killed process left.
    Another run may prune or write at the same time: a file already gone is skipped."""
    now = time.time()
    entries = []
    for entry in os.scandir(folder):
        with contextlib.suppress(FileNotFoundError):
            st = entry.stat()
            if not entry.name.endswith(".tmp"):
                entries.append((st.st_atime, st.st_size, entry.path))
            elif now - st.st_mtime > 3600:
                os.unlink(entry.path)
    entries.sort()
    total = sum(size for _, size, _ in entries)
    for atime, size, path in entries:
        if now - atime < unused_days * 86400 and total <= max_bytes:
            break
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        total -= size


def _chain() -> None:
    """Run the interpreter's own ``sitecustomize`` too (Debian ships one), which this file
    hides by coming first on the path."""
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        other = os.path.join(entry, "sitecustomize.py")
        if entry and os.path.abspath(entry) != here and os.path.isfile(other):
            runpy.run_path(other, run_name="sitecustomize")
            return


install()
if __name__ == "sitecustomize":  # loaded at interpreter start, not by the root conftest.py
    _chain()
