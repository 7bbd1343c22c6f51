"""The ``jrnn`` command's restart with transparent huge pages (jrnn.app.hugepages): when it
restarts, that it keeps the command line and the user's tunables, and that the tunable
really takes XLA:CPU's buffers off 4 KiB page faults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jrnn.app import hugepages
from jrnn.app.hugepages import TUNABLE, huge_page_environment

REPO = Path(__file__).resolve().parents[1]
GLIBC = hugepages._glibc_version()
THP = hugepages._thp_mode()
QUALIFIES = huge_page_environment({}, sys.platform, GLIBC, THP) is not None


@pytest.mark.parametrize(
    ("environ", "platform", "glibc", "thp", "expected"),
    [
        ({}, "linux", (2, 36), "madvise", f"{TUNABLE}=1"),
        ({"GLIBC_TUNABLES": ""}, "linux", (2, 35), "madvise", f"{TUNABLE}=1"),
        ({"GLIBC_TUNABLES": "a.b=2"}, "linux", (3, 0), "madvise", f"a.b=2:{TUNABLE}=1"),
        ({"GLIBC_TUNABLES": f"{TUNABLE}=0"}, "linux", (2, 36), "madvise", None),  # user's
        ({"GLIBC_TUNABLES": f"{TUNABLE}=1"}, "linux", (2, 36), "madvise", None),  # no loop
        ({}, "linux", (2, 34), "madvise", None),  # no such tunable yet
        ({}, "linux", None, "madvise", None),  # musl
        ({}, "linux", (2, 36), "always", None),  # already huge pages
        ({}, "linux", (2, 36), "never", None),
        ({}, "linux", (2, 36), None, None),  # no /sys entry
        ({}, "darwin", None, None, None),
    ],
)
def test_restarts_only_where_huge_pages_are_available_and_not_chosen_already(
    environ, platform, glibc, thp, expected
):
    env = huge_page_environment({"PATH": "/bin", **environ}, platform, glibc, thp)
    if expected is None:
        assert env is None
    else:
        assert env == {"PATH": "/bin", "GLIBC_TUNABLES": expected}


def _run(code: str, *args: str, tunables: str | None = None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "XLA_FLAGS")}
    if tunables is not None:
        env["GLIBC_TUNABLES"] = tunables
    res = subprocess.run(
        [sys.executable, "-X", "utf8", "-c", code, *args],
        env={**env, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


RESTART = """
import os, sys
print("start", os.environ.get("GLIBC_TUNABLES"), sys.argv[1:], sys.flags.utf8_mode, flush=True)
from jrnn.app.hugepages import restart_with_huge_pages
restart_with_huge_pages()
print("work", os.environ.get("GLIBC_TUNABLES"), sys.argv[1:], sys.flags.utf8_mode)
"""


def test_the_restart_keeps_the_command_line_and_the_users_choice():
    args = ["train", "--a b"]
    lines = _run(RESTART, *args)
    if QUALIFIES:  # started twice, the second time with the tunable, same argv and -X
        assert lines == [
            f"start None {args} 1",
            f"start {TUNABLE}=1 {args} 1",
            f"work {TUNABLE}=1 {args} 1",
        ]
    else:
        assert lines == [f"start None {args} 1", f"work None {args} 1"]
    # a user's own setting (here: off) is never overridden, and nothing restarts
    assert _run(RESTART, tunables=f"{TUNABLE}=0") == [f"start {TUNABLE}=0 [] 1"] + [
        f"work {TUNABLE}=0 [] 1"
    ]


FAULTS = """
import resource, jax, jax.numpy as jnp
f = jax.jit(lambda x: jnp.sum(jnp.cumsum(jnp.sin(x), axis=0) * jnp.cos(x)))
x = jnp.ones((4096, 4096), jnp.float32)  # 64 MiB buffers, allocated anew by every call
f(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    f(x).block_until_ready()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


@pytest.mark.skipif(not QUALIFIES, reason=f"no huge pages here (glibc {GLIBC}, THP {THP})")
def test_the_tunable_takes_xla_cpu_buffers_off_small_page_faults():
    """Measured on a 2-core Xeon: ~50,000 faults per call without, ~700 with (one per
    4 KiB page of the 64 MiB buffers, or one per 2 MiB)."""
    without = float(_run(FAULTS, tunables=f"{TUNABLE}=0")[0])
    with_huge = float(_run(FAULTS, tunables=f"{TUNABLE}=1")[0])
    assert without > 10_000  # the buffers are fresh memory on every call
    assert with_huge < without / 5, (without, with_huge)
