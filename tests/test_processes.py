"""Training across processes on JAX's distributed runtime: several ``python -m jrnn train``
processes on 127.0.0.1, joined over Gloo (CPU collectives), each with 2 host devices.
Bounded in time: every process has a timeout, and a process left running is killed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 240  # seconds, each command (compilation dominates)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


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
            env=_env(),
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
        argv, capture_output=True, text=True, env=_env(), cwd=REPO, timeout=TIMEOUT
    )


def _losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def test_two_processes_train_as_one_and_their_checkpoint_resumes_on_one(tmp_path):
    one = tmp_path / "one"
    r = _one(_train(one, "--devices", "4"))
    assert r.returncode == 0, r.stderr
    two = tmp_path / "two"
    results = _processes(2, _train(two))
    for i, r in enumerate(results):
        assert r.returncode == 0, f"process {i}: {r.stderr}"
    said = [[x for x in r.stdout.splitlines() if not x.startswith("[Gloo]")] for r in results]
    assert "run folder" in said[0][-1] and said[1] == []  # process 0 alone reports
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    a, b = _losses(one), _losses(two)
    assert len(a) == len(b) == 6
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 1e-5, (a, b)
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["3", "6"]
    # the checkpoint of two processes, continued by one process on one device
    r = _one([sys.executable, "-m", "jrnn", "train", "--resume", "--out", str(two)]
             + ["--steps", "8", "--devices", "1", "--no-progress"])  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"resuming {two} from step 6" in r.stderr
    assert [json.loads(x)["step"] for x in (two / "metrics.jsonl").read_text().splitlines()][
        -3:
    ] == [7, 8, 8]


def test_an_unreachable_coordinator_is_one_line_and_exit_2(tmp_path):
    import time

    out = tmp_path / "run"
    argv = _train(out, "--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2")
    began = time.monotonic()
    r = _one([*argv, "--process-id", "1", "--join-timeout", "3"])
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "cannot reach the coordinator 127.0.0.1:" in lines[0] and "within 3 s" in lines[0]
    assert time.monotonic() - began < 60  # the 3 s and the start of Python, not a hang
    assert not out.exists()
