"""Training across processes on JAX's distributed runtime: several ``python -m jrnn train``
processes on 127.0.0.1, joined over Gloo (CPU collectives), each with 2 host devices.
Bounded in time: every process has a timeout, and a process left running is killed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from jrnn.app.launch import without_noise
from tests.helpers import REPO, subprocess_env

TIMEOUT = 240  # seconds, each command (compilation dominates)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "jrnn", "train", "--task", "adding", "--out", str(out),
        "--steps", "6", "--batch-size", "16", "--seed", "0", "--dropout", "0.1",
        "--hidden", "8", "--log-every", "1", "--eval-every", "6", "--eval-batches", "1",
        "--checkpoint-every", "3", "--no-progress", *extra,
    ]  # fmt: skip


def _processes(n: int, argv: list[str]) -> list[subprocess.CompletedProcess]:
    """Runs ``argv`` as processes 0..n-1 of one job, each with 2 host devices."""
    port = _free_port()
    procs = [
        subprocess.Popen(
            [*argv, "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n)]
            + ["--process-id", str(i), "--devices", str(2 * n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
            cwd=REPO,
        )
        for i in range(n)
    ]
    done = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=TIMEOUT)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return done


def _one(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, capture_output=True, text=True, env=subprocess_env(), cwd=REPO, timeout=TIMEOUT
    )


def _said(stdout: str) -> list[str]:
    """The lines of ``stdout`` less Gloo's connection messages, as the launcher shows them."""
    lines = (without_noise(x.encode()).decode() for x in stdout.splitlines(keepends=True))
    return [x.rstrip("\n") for x in lines if x]


def _losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def test_one_device_eight_devices_and_two_processes_give_the_same_losses(tmp_path):
    """Randomness keyed by the step and the global example index: with dropout, one
    process on 1 device, one process on 8 host devices and 2 processes x 2 devices (as
    separate commands) log the same losses; the 2-process checkpoint resumes on 1 device."""
    runs = {}
    for name, devices in (("one", "1"), ("eight", "8")):
        runs[name] = tmp_path / name
        r = _one(_train(runs[name], "--devices", devices))
        assert r.returncode == 0, r.stderr
    two = tmp_path / "two"
    results = _processes(2, _train(two))
    for i, r in enumerate(results):
        assert r.returncode == 0, f"process {i}: {r.stderr}"
    said = [_said(r.stdout) for r in results]
    assert "run folder" in said[0][-1] and said[1] == []  # process 0 alone reports
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in runs["one"].iterdir())
    a = _losses(runs["one"])
    assert len(a) == 6
    for name, out in (("eight", runs["eight"]), ("two", two)):
        b = _losses(out)
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 1e-5, (name, a, b)
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["3", "6"]
    # N -> 1 and 1 -> N: the checkpoint of two processes continued by one process on one
    # device, the one-device run's continued by two processes (the launcher), alike
    r = _one([sys.executable, "-m", "jrnn", "train", "--resume", "--out", str(two)]
             + ["--steps", "8", "--devices", "1", "--no-progress"])  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"resuming {two} from step 6" in r.stderr
    r = _one([sys.executable, "-m", "jrnn", "train", "--resume", "--out", str(runs["one"])]
             + ["--steps", "8", "--processes", "2", "--no-progress"])  # fmt: skip
    assert r.returncode == 0, r.stderr
    a, b = _losses(runs["one"]), _losses(two)
    assert len(a) == len(b) == 8
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 1e-5, (a, b)


def _launched(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
        cwd=REPO,
    )


def _charlm(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "jrnn", "train", "--task", "charlm", "--out", str(out),
        "--steps", str(STEPS), "--batch-size", "16", "--seq-len", "48", "--hidden", "48",
        "--embed", "8", "--dropout", "0.2", "--zoneout", "0.1", "--seed", "1",
        "--log-every", "1", "--eval-every", "100000", "--eval-batches", "1",
        "--checkpoint-every", "25", "--no-progress", *extra,
    ]  # fmt: skip


STEPS = 300


def _when_logged(p: subprocess.Popen, out: Path, rows: int) -> None:
    """Waits until ``out`` has ``rows`` more loss rows than now (the run going on)."""

    def logged() -> int:  # complete rows only: process 0 may be writing the last one
        path = out / "metrics.jsonl"
        lines = path.read_text().split("\n")[:-1] if path.exists() else []
        return sum('"loss"' in line for line in lines)

    have = logged()
    deadline = time.monotonic() + TIMEOUT
    while logged() < have + rows:
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.1)


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (dead, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _pid_of(out: Path, process_id: int) -> int:
    """The pid of the launched process ``process_id`` of the run in ``out``."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if str(out) in args and args[-2:] == ["--process-id", str(process_id)]:
            return int(proc.name)
    raise AssertionError(f"no process {process_id} of {out}")


def test_the_launcher_stops_on_ctrl_c_and_on_a_lost_process_and_the_run_resumes(tmp_path):
    """``jrnn train --processes N`` on the char LM (TBPTT carry, dropout, zoneout):
    Ctrl-C to the launcher stops both processes at one step, saved, exit 130; resumed on 4
    processes, one of them killed: one line naming it, exit 1, the last checkpoint kept;
    resumed on 2 processes, the launcher killed: both processes die with it; resumed on one
    process to the end, every logged loss is the one-process run's."""
    import signal

    one = tmp_path / "one"
    r = _one(_charlm(one))
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    p = _launched(_charlm(run, "--processes", "2"))
    try:
        _when_logged(p, run, 3)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
    lines = [x for x in err.splitlines() if x.strip()]
    assert p.returncode == 130 and lines[-1].startswith("interrupted at step "), err
    assert "[Gloo]" not in out and "peer ranks" not in out and "process 1" not in err
    stopped = int(lines[-1].split()[3].rstrip(":"))
    assert stopped < STEPS and str(stopped) in [x.name for x in (run / "checkpoints").iterdir()]

    p = _launched(_charlm(run, "--processes", "4", "--resume"))
    try:
        _when_logged(p, run, 30)
        os.kill(_pid_of(run, 2), signal.SIGKILL)
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
    lines = [x for x in err.splitlines() if x.strip()]
    assert p.returncode == 1, err
    assert lines[-1].startswith("jrnn train: error: process 2 of 4 was killed by SIGKILL;"), err
    assert f"continue with jrnn train --out {run} --resume --processes 4" in lines[-1]

    # the launcher itself killed (no handler can run): its processes die with it
    # (PR_SET_PDEATHSIG), none left behind holding the run folder
    p = _launched(_charlm(run, "--processes", "2", "--resume"))
    try:
        _when_logged(p, run, 1)
        children = [_pid_of(run, i) for i in range(2)]
        p.kill()
        p.wait(timeout=TIMEOUT)
        deadline = time.monotonic() + 60
        while alive := [pid for pid in children if _running(pid)]:
            assert time.monotonic() < deadline, f"processes {alive} outlived their launcher"
            time.sleep(0.1)
    finally:
        if p.poll() is None:
            p.kill()

    r = _one(_charlm(run, "--resume", "--devices", "1"))
    assert r.returncode == 0, r.stderr
    a, b = _losses(one), _losses(run)
    assert len(a) == len(b) == STEPS
    drift = [abs(x - y) for x, y in zip(a, b, strict=True)]
    assert max(drift[:20]) <= 1e-5 and max(drift) <= 1e-4, (max(drift[:20]), max(drift))


def test_an_unreachable_coordinator_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "run"
    argv = _train(out, "--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2")
    began = time.monotonic()
    r = _one([*argv, "--process-id", "1", "--join-timeout", "3"])
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "cannot reach the coordinator 127.0.0.1:" in lines[0] and "within 3 s" in lines[0]
    assert time.monotonic() - began < 60  # the 3 s and the start of Python, not a hang
    assert not out.exists()
