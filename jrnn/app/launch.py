"""``jrnn train --processes N``: one job of N local processes, as on N machines.

The launcher starts ``python -m jrnn train`` N times with the same flags plus
``--coordinator 127.0.0.1:PORT --num-processes N --process-id I`` (a free port), so the
processes join over JAX's distributed runtime (Gloo collectives on a CPU) exactly as
separate commands on a cluster would.  It imports no JAX itself.

- **Output**: process 0's output is passed on as it comes, less Gloo's connection lines
  (process 0 alone writes the run folder and reports); another process's output is shown
  only if that process is the one lost.
- **Ctrl-C / SIGTERM**: forwarded to every process (they run in their own sessions, so a
  terminal's Ctrl-C reaches the launcher alone).  The processes agree on a step to stop
  at, save it and exit 130; a second Ctrl-C stops them at once (SIGKILL), keeping the last
  checkpoint.
- **A process lost** (killed, crashed, out of memory): the others cannot go on (their
  collectives wait for it), so they are stopped at once, their output from then on
  dropped, and the launcher prints one line naming the process and exits 1.  The run
  folder keeps its last complete checkpoint: ``--resume`` continues (on any number of
  processes and devices).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from jrnn.app.errors import UsageError

__all__ = ["child_argv", "launch", "launch_train", "without_noise"]

# Gloo's connection messages ("[Gloo] Rank 1 is connected to 3 peer ranks. Expected number of
# connected peer ranks is : 3"), printed by one thread per device, so that two may be torn
# over each other: "[Gloo] Rank [Gloo] Rank 2 is connected ...", then "3 is connected ..."
_NOISE = re.compile(
    rb"\[Gloo\] Rank |(?:Rank )?\d+ is connected to \d+ peer ranks\. "
    rb"Expected number of connected peer ranks is : \d+"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_argv(argv: list[str], out: Path) -> list[str]:
    """``jrnn``'s ``argv`` (``["train", ...]``) without ``--processes N``, with ``--out``
    (every process must use the same folder, also when the launcher named it).

    Examples:
      >>> child_argv(["train", "--processes", "2", "--steps=5"], Path("runs/x"))
      ['train', '--steps=5', '--out', 'runs/x']
      >>> child_argv(["train", "--processes=2", "--out", "r"], Path("r"))
      ['train', '--out', 'r']
    """
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--processes":
            skip = True
        elif not arg.startswith("--processes="):
            kept.append(arg)
    if "--out" not in kept and not any(a.startswith("--out=") for a in kept):
        kept += ["--out", str(out)]
    return kept


def without_noise(line: bytes) -> bytes:
    """One line of a process's output less Gloo's connection messages, which say nothing
    to the user (whole, or torn by another thread's message); ``b""`` where nothing else
    was on the line.

    Examples:
      >>> said = b"is connected to 3 peer ranks. Expected number of connected peer ranks is : 3"
      >>> without_noise(b"[Gloo] Rank 1 " + said + b"\\n"), without_noise(b"3 " + said + b"\\n")
      (b'', b'')
      >>> without_noise(b"run folder: runs/x[Gloo] Rank \\n")
      b'run folder: runs/x\\n'
      >>> without_noise(b"step 5: loss 1.25\\n")
      b'step 5: loss 1.25\\n'
    """
    kept = _NOISE.sub(b"", line)
    if len(kept) == len(line):
        return line
    return kept if kept.strip() else b""


def _pump(src, dst) -> None:
    """Copies ``src`` to ``dst`` (a binary stream, or a deque that keeps the last lines)
    line by line, less Gloo's messages (`without_noise`)."""
    for line in iter(src.readline, b""):
        line = without_noise(line)
        if not line:
            continue
        if isinstance(dst, collections.deque):
            dst.append(line)
        else:
            dst.write(line)
            dst.flush()
    src.close()


def _die_with_parent() -> None:
    """In a child, before it runs: on Linux, SIGKILL when the launcher dies (even by
    SIGKILL), so no process of the job is left waiting on its collectives."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def launch(argv: list[str], processes: int, out: Path) -> int:
    """Runs ``jrnn`` ``argv`` as ``processes`` local processes of one job; returns the
    exit code (0 when every process finished, 130 after Ctrl-C, else 1 or the processes'
    own code)."""
    port = free_port()
    base = [sys.executable, "-m", "jrnn", *child_argv(argv, out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    children: list[subprocess.Popen] = []
    failed: list[int] = []  # the first process lost, once one is
    pumps = []
    held = [collections.deque(maxlen=40) for _ in range(processes)]  # processes 1..N-1
    for i in range(processes):
        cmd = [*base, "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes)]
        child = subprocess.Popen(
            [*cmd, "--process-id", str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # signals come from the launcher, once
            preexec_fn=_die_with_parent,
        )
        children.append(child)
        out_to, err_to = (sys.stdout.buffer, sys.stderr.buffer) if i == 0 else (held[i], held[i])
        for src, dst in ((child.stdout, out_to), (child.stderr, err_to)):
            t = threading.Thread(target=_pump, args=(src, dst), daemon=True)
            t.start()
            pumps.append(t)

    signals = {"count": 0}

    def forward(signum, frame) -> None:
        signals["count"] += 1
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGKILL if signals["count"] > 1 else signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = _wait(children, failed)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        for t in pumps:
            t.join(timeout=5)
    if signals["count"] > 1:
        print(
            f"jrnn train: stopped at once (a second Ctrl-C); the last complete checkpoint in "
            f"{out / 'checkpoints'} is kept: continue with jrnn train --out {out} --resume",
            file=sys.stderr,
        )
        return 130
    if failed:
        i = failed[0]
        sys.stderr.buffer.writelines(held[i])  # what the lost process said (process 0: shown)
        sys.stderr.flush()
        print(
            f"jrnn train: error: process {i} of {processes} {_how(children[i].returncode)}; "
            f"stopped the other processes (their collectives wait for it); the last complete "
            f"checkpoint in {out / 'checkpoints'} is kept: continue with jrnn train --out "
            f"{out} --resume --processes {processes}",
            file=sys.stderr,
        )
        return 1
    return code


def _wait(children: list[subprocess.Popen], failed: list[int]) -> int:
    """Waits for every process; the first one lost (a signal, or an exit the others did not
    share: they are still running a while later) stops the others.  Returns the common
    exit code when they all end alike."""
    ended: dict[int, float] = {}
    while True:
        now = time.monotonic()
        for i, child in enumerate(children):
            if i not in ended and child.poll() is not None:
                ended[i] = now
        if len(ended) == len(children):
            codes = {c.returncode for c in children}
            return codes.pop() if len(codes) == 1 else 1
        lost = [
            i
            for i, t in sorted(ended.items(), key=lambda kv: kv[1])
            if children[i].returncode < 0  # killed: the others cannot finish
            or (children[i].returncode not in (0, 130) and now - t > 10)
        ]
        if lost:
            failed.append(lost[0])
            for child in children:
                if child.poll() is None:
                    child.kill()
            for child in children:
                child.wait()
            return 1
        time.sleep(0.05)


def launch_train(args: argparse.Namespace, config: Any, devices_given: bool, out: Path) -> int:
    """``jrnn train --processes N``: the checked configuration ``config`` (of the parsed
    ``args``, whose ``argv`` is the command line as given) run as N local processes."""
    n = args.processes
    if n < 1:
        raise UsageError(f"--processes: must be at least 1, got {n}")
    joined = [f for f in ("coordinator", "num_processes", "process_id") if getattr(args, f)]
    if joined or args.distributed:
        flag = "--" + (joined[0].replace("_", "-") if joined else "distributed")
        raise UsageError(f"--processes starts the processes of its job itself: leave out {flag}")
    argv = list(args.argv)
    if not devices_given:
        argv += ["--devices", str(n)]  # one device per process
    elif config.devices == "auto" or config.devices % n:
        raise UsageError(
            f"--devices {config.devices} does not split over --processes {n}: give a "
            f"multiple of {n} (the job's devices, each process making its share)"
        )
    return launch(argv, n, out)
