"""The suite's shared compilation cache (root ``conftest.py``): every process of a run,
this one and the ones it starts, writes entries atomically, and the folder is bounded."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import jax._src.lru_cache as lru_cache

from tests._site.sitecustomize import prune
from tests.helpers import subprocess_env

_PUT = """
import os, sys, tempfile
import jax._src.lru_cache as lru_cache
cache = lru_cache.LRUCache(sys.argv[1], max_size=-1)
cache.put("k", b"x" * 1000)
print(getattr(lru_cache.LRUCache.put, "_jrnn_atomic", False), sorted(os.listdir(sys.argv[1])))
"""


def test_this_process_and_its_subprocesses_write_entries_atomically(tmp_path):
    assert getattr(lru_cache.LRUCache.put, "_jrnn_atomic", False)
    done = subprocess.run(
        [sys.executable, "-c", _PUT, str(tmp_path)],
        capture_output=True, text=True, env=subprocess_env(), timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "['k-cache']"]
    assert lru_cache.LRUCache(str(tmp_path), max_size=-1).get("k") == b"x" * 1000


def test_prune_drops_unused_entries_then_the_oldest_beyond_the_size_bound(tmp_path):
    now = time.time()
    ages = {"old-cache": 9, "stale.tmp": 1, "a-cache": 3, "b-cache": 2, "c-cache": 1}
    for name, days in ages.items():
        (tmp_path / name).write_bytes(b"x" * 100)
        os.utime(tmp_path / name, (now - days * 86400, now - days * 86400))
    (tmp_path / "fresh.tmp").write_bytes(b"x")  # a process may be writing it now
    prune(str(tmp_path), unused_days=7, max_bytes=250)
    assert sorted(os.listdir(tmp_path)) == ["b-cache", "c-cache", "fresh.tmp"]
