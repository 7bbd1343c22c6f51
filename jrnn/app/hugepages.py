"""Transparent huge pages for XLA:CPU's buffers: the ``jrnn`` command starts itself again,
once, with glibc's ``glibc.malloc.hugetlb=1`` tunable where that helps.

XLA:CPU allocates every call's temporary and output buffers afresh and frees them when the
call returns; anything larger than glibc's mmap threshold (at most 32 MiB) is a fresh
``mmap``.  So a training step touches its tens to hundreds of MiB of residuals anew on every
call, one page fault per 4 KiB page: at the default ``jrnn train`` size (B=64, T=128,
H=256) about 34,000 faults per step, 15-20% of the process's CPU time spent in the kernel.
With the tunable, glibc asks the kernel for transparent huge pages on those mappings
(``madvise(MADV_HUGEPAGE)``), one fault per 2 MiB: 25-30x fewer faults, the kernel's share
of the default ``jrnn train``'s CPU time down from 17% to 5%, and 1.14x its speed on the
median of alternated runs on a 2-core Intel Xeon (figures and the command in
``docs/benchmarks.md#huge-pages``).

glibc reads its tunables only when a process starts, so a library cannot turn this on for
the process it runs in; a program that owns its process can.  The ``jrnn`` command does
(`restart_with_huge_pages`) when all of these hold: Linux, glibc 2.35 or newer (the
first with the tunable), the kernel's transparent huge pages in ``madvise`` mode (with
``always`` they are used already, with ``never`` they cannot be), and no
``glibc.malloc.hugetlb`` in ``GLIBC_TUNABLES`` yet: a value the user set, ``0`` included,
is kept.  In a notebook or a script, set it before Python starts::

    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 jupyter lab
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

__all__ = ["TUNABLE", "huge_page_environment", "restart_with_huge_pages"]

TUNABLE = "glibc.malloc.hugetlb"
THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


def _glibc_version() -> tuple[int, int] | None:
    """``(2, 36)`` for glibc 2.36; ``None`` for another C library or none."""
    try:
        found = re.fullmatch(r"glibc (\d+)\.(\d+).*", os.confstr("CS_GNU_LIBC_VERSION") or "")
    except (AttributeError, ValueError, OSError):
        return None
    return (int(found[1]), int(found[2])) if found else None


def _thp_mode() -> str | None:
    """The kernel's transparent-huge-page mode (``always``, ``madvise``, ``never``)."""
    try:
        with open(THP_MODE) as f:
            found = re.search(r"\[(\w+)\]", f.read())
    except OSError:
        return None
    return found[1] if found else None


def huge_page_environment(
    environ: Mapping[str, str],
    platform: str,
    glibc: tuple[int, int] | None,
    thp_mode: str | None,
) -> dict[str, str] | None:
    """The environment to start again with, or ``None`` where a restart would change nothing
    (see the module's docstring for the conditions).

    Examples:
      >>> env = huge_page_environment({"GLIBC_TUNABLES": "glibc.rtld.x=1"}, "linux", (2, 36), "madvise")
      >>> env["GLIBC_TUNABLES"]
      'glibc.rtld.x=1:glibc.malloc.hugetlb=1'
      >>> huge_page_environment({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "linux", (2, 36), "madvise")
      >>> huge_page_environment({}, "linux", (2, 36), "always")
    """  # noqa: E501
    tunables = environ.get("GLIBC_TUNABLES", "")
    if not platform.startswith("linux") or glibc is None or glibc < (2, 35):
        return None
    if thp_mode != "madvise" or TUNABLE in tunables:
        return None
    setting = f"{TUNABLE}=1"
    return {**environ, "GLIBC_TUNABLES": f"{tunables}:{setting}" if tunables else setting}


def restart_with_huge_pages() -> None:
    """Starts this process's command line again with `huge_page_environment`
    (``os.execve``: same interpreter, options and arguments, ``sys.orig_argv``), or returns
    where that would change nothing.  Call it first thing, before any work (nothing done
    before it survives)."""
    env = huge_page_environment(os.environ, sys.platform, _glibc_version(), _thp_mode())
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, env)
    except OSError:  # could not start again (no executable): carry on without huge pages
        return
