"""A run folder handled as a hostile user would: corrupt checkpoints, edited config.json and
vocab.json, two runs on one folder, a metrics.jsonl cut mid-line, an --out that cannot be
written, a binary --corpus, SIGTERM. Each is one line on stderr and exit code 2 (or a
one-line warning and a correct result), and nothing already saved is lost. Real
``python -m jrnn`` subprocesses on a tiny run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli import _rows, _small, _write_corpus

REPO = Path(__file__).resolve().parents[1]


def _jrnn(*argv: object, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "jrnn", *map(str, argv)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
    )


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _one_error(result: subprocess.CompletedProcess, *words: str) -> str:
    """The process failed with exit code 2 and one line on stderr holding ``words``."""
    lines = _lines(result.stderr)
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _warnings(stderr: str) -> list[str]:
    return [line for line in _lines(stderr) if ": warning: " in line]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return _write_corpus(tmp_path_factory.mktemp("corpus") / "text", files=4, words=500)


def _args(corpus: Path, out: Path, steps: int = 20) -> list[str]:
    return _small(corpus, out, steps, **{"--eval-every": 10, "--sample-length": 10})


@pytest.fixture(scope="module")
def base_run(corpus, tmp_path_factory) -> Path:
    """A finished charlm run with checkpoints at steps 10 and 20."""
    out = tmp_path_factory.mktemp("base") / "run"
    r = _jrnn(*_args(corpus, out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["10", "20"]
    return out


@pytest.fixture
def run(base_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(base_run, out)
    return out


def _data_files(step: Path) -> list[Path]:
    return sorted(
        (p for p in (step / "state").rglob("*") if p.is_file() and p.parent.name == "d"),
        key=lambda p: p.stat().st_size,
    )


def _corrupt(step: Path, how: str) -> None:
    if how == "flip":  # flipped bytes in the largest array file: the digest differs
        f = _data_files(step)[-1]
        data = bytearray(f.read_bytes())
        for i in range(len(data) // 2, len(data) // 2 + 16):
            data[i] ^= 0xFF
        f.write_bytes(bytes(data))
    elif how == "truncate":
        for f in _data_files(step):
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif how == "delete":
        shutil.rmtree(step / "state")
    elif how == "empty":
        for p in step.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["flip", "truncate", "delete", "empty"])
def test_corrupt_newest_checkpoint_falls_back_with_one_warning(run, how):
    _corrupt(run / "checkpoints" / "20", how)
    r = _jrnn("eval", run)
    assert r.returncode == 0, r.stderr
    warns = _warnings(r.stderr)
    assert len(warns) == 1 and "checkpoint 20" in warns[0], r.stderr
    assert "Traceback" not in r.stderr and "warnings.warn" not in r.stderr
    assert r.stdout.startswith("step=10 "), r.stdout  # the step read from the restored one
    # read-only commands move nothing
    assert (run / "checkpoints" / "20").exists()


def test_sample_and_resume_fall_back_and_keep_the_bad_checkpoint(run):
    _corrupt(run / "checkpoints" / "20", "flip")
    r = _jrnn("sample", run, "--length", "5")
    assert r.returncode == 0, r.stderr
    assert len(_warnings(r.stderr)) == 1 and len(_lines(r.stderr)) == 1, r.stderr
    rows = _rows(run)
    r = _jrnn("train", "--out", run, "--resume", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert len(_warnings(r.stderr)) == 1, r.stderr
    assert "resuming" in r.stderr and "from step 10" in r.stderr
    assert (run / "checkpoints" / "corrupt" / "20").is_dir()  # moved aside, not deleted
    assert (run / "checkpoints" / "20").is_dir()  # saved again
    assert _rows(run) == rows  # steps 11..20 retrained to the same metrics


@pytest.mark.parametrize("command", ["eval", "sample", "resume"])
def test_no_good_checkpoint_is_one_line_and_exit_2(run, command):
    _corrupt(run / "checkpoints" / "20", "flip")
    _corrupt(run / "checkpoints" / "10", "truncate")
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    if command == "resume":
        r = _jrnn("train", "--out", run, "--resume", "--no-progress")
    else:
        r = _jrnn(command, run)
    _one_error(r, "no good checkpoint", "step 20", "step 10")
    after = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    assert after == before  # nothing moved or deleted


def test_decode_falls_back_to_a_good_checkpoint(tmp_path):
    out = tmp_path / "rev"
    r = _jrnn(
        "train", "--task", "reverse", "--out", out, "--steps", "4", "--eval-every", "2",
        "--checkpoint-every", "2", "--batch-size", "8", "--hidden", "8", "--no-progress",
        "--eval-batches", "1",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    _corrupt(out / "checkpoints" / "4", "delete")
    r = _jrnn("decode", out, "--num", "2")
    assert r.returncode == 0, r.stderr
    assert len(_warnings(r.stderr)) == 1, r.stderr
    assert r.stdout.startswith(f"step 2 of {out}"), r.stdout
