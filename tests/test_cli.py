"""Tests of the ``jrnn`` command: run folders, sample/eval, exact resume after SIGKILL and
Ctrl-C, non-finite losses, and bad input (one line, exit code 2, no file touched)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jrnn.app.restore import open_run
from jrnn.app.runs import TIMING_KEYS, read_config
from jrnn.cli import main
from tests.helpers import interrupt_train_step_at

REPO = Path(__file__).resolve().parents[1]
WORDS = "def class return self value index list dict for while if else import from".split()


def _write_corpus(folder: Path, files: int = 6, words: int = 700) -> Path:
    rng = np.random.RandomState(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        lines = []
        for _ in range(words // 7):
            lines.append("    " + " ".join(rng.choice(WORDS, 7)) + "(x, y):")
        (folder / f"f{i}.py").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return _write_corpus(tmp_path_factory.mktemp("corpus") / "text")


def _small(corpus: Path, out: Path, steps: int = 40, **extra: object) -> list[str]:
    args = {
        "--corpus": corpus,
        "--out": out,
        "--hidden": 16,
        "--embed": 8,
        "--batch-size": 8,
        "--seq-len": 16,
        "--steps": steps,
        "--eval-every": 20,
        "--checkpoint-every": 10,
        "--eval-batches": 2,
        "--eval-batch-size": 8,
        "--sample-length": 20,
        "--log-every": 5,
    }
    args.update({k: v for k, v in extra.items()})
    argv = ["train", "--no-progress"]
    for k, v in args.items():
        argv += [k] if v is True else [k, str(v)]
    return argv


def _rows(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def _steps(out: Path) -> list[int]:
    folder = out / "checkpoints"
    return (
        sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.exists() else []
    )


def _snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    snap = {}
    for p in sorted(folder.rglob("*")):
        st = p.stat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        snap[str(p.relative_to(folder))] = (st.st_mtime_ns, digest)
    return snap


@pytest.fixture(scope="module")
def finished_run(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "done"
    assert main(_small(corpus, out)) == 0
    return out


# ------------------------------------------------------------------------------------------
# a run and its folder


def test_train_writes_the_run_folder(finished_run, capsys):
    out = finished_run
    for name in ("config.json", "vocab.json", "metrics.jsonl", "loss.png", "sample.txt"):
        assert (out / name).is_file(), name
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert _steps(out) == [20, 30, 40]  # the last 3 of every 10 steps
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "charlm" and config["hidden"] == 16 and config["cell"] == "lstm"
    raw = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in raw if "loss" in r]
    evals = [r for r in raw if "val_loss" in r]
    assert [r["step"] for r in train] == list(range(5, 41, 5))
    assert all({"loss", "bpc", "tokens_per_s"} <= set(r) for r in train)
    assert [r["step"] for r in evals] == [20, 40]
    assert all(np.isclose(r["val_bpc"], r["val_loss"] / np.log(2)) for r in evals)
    assert train[-1]["loss"] < train[0]["loss"]

    capsys.readouterr()
    assert main(["sample", str(out), "--length", "30", "--prompt", "def ", "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("def ") and len(text) == 4 + 30 + 1
    assert main(["eval", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"val_bpc={evals[-1]['val_bpc']:.4f}" in printed and "step=40" in printed


def test_vocab_json_is_what_docs_cli_md_says(finished_run):
    """docs/cli.md: entry i of vocab.json is the character with id i + 1; id 0 (unknown) is
    not stored; the vocabulary has len + 1 ids; sorted by code point."""
    from jrnn.data import CharVocab

    doc = " ".join((REPO / "docs" / "cli.md").read_text(encoding="utf-8").split())
    assert "entry `i` (counting from 0) is the character with id `i + 1`" in doc
    assert "has `len(vocab.json) + 1` ids" in doc and "sorted by code point" in doc
    chars = json.loads((finished_run / "vocab.json").read_text(encoding="utf-8"))
    config = json.loads((finished_run / "config.json").read_text())
    assert isinstance(chars, list) and all(isinstance(c, str) and len(c) == 1 for c in chars)
    assert chars == sorted(chars) and "\ufffd" not in chars
    assert config["data"]["vocab_size"] == len(chars) + 1
    vocab = CharVocab.from_json(chars)
    for i, c in enumerate(chars):
        assert vocab.encode(c).tolist() == [i + 1]
    assert vocab.decode([0]) == "\ufffd"


def test_kill_and_ctrl_c_then_resume_match_an_uninterrupted_run(corpus, tmp_path):
    """A real SIGKILL and a real SIGINT mid-run; both resumed runs end with exactly the
    uninterrupted run's metrics, checkpoints and sample."""
    steps = 120
    argv = _small(corpus, "OUT", steps=steps, **{"--checkpoint-every": 10, "--eval-every": 20})
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)

    def start(out: Path, *extra: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "jrnn", *(str(out) if a == "OUT" else a for a in argv)]
        return subprocess.Popen(
            [*cmd, *extra], env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    ref, killed, stopped = tmp_path / "ref", tmp_path / "killed", tmp_path / "stopped"
    procs = {ref: start(ref), killed: start(killed), stopped: start(stopped)}
    signals = {killed: signal.SIGKILL, stopped: signal.SIGINT}
    deadline = time.monotonic() + 240
    while signals and time.monotonic() < deadline:
        for out, sig in list(signals.items()):
            if procs[out].poll() is not None or any(s >= 20 for s in _steps(out)):
                procs[out].send_signal(sig)
                del signals[out]
        time.sleep(0.005)
    errs = {out: p.communicate(timeout=240)[1].decode() for out, p in procs.items()}
    assert procs[ref].returncode == 0, errs[ref]
    assert procs[killed].returncode == -signal.SIGKILL, errs[killed]
    assert procs[stopped].returncode == 130, errs[stopped]
    assert "interrupted at step" in errs[stopped] and "--resume" in errs[stopped]
    for out in (killed, stopped):
        assert max(_steps(out)) < steps, f"{out.name}: the run ended before the signal"

    resumed = {out: start(out, "--resume") for out in (killed, stopped)}
    for proc in resumed.values():
        err = proc.communicate(timeout=240)[1].decode()
        assert proc.returncode == 0, err
        assert "resuming" in err

    want = _rows(ref)
    assert len(want) == steps // 5 + steps // 20
    for out in (killed, stopped):
        assert _rows(out) == want, out.name
        assert _steps(out) == _steps(ref) == [steps - 20, steps - 10, steps]
        assert (out / "sample.txt").read_text() == (ref / "sample.txt").read_text()


def test_tbptt_interrupted_run_resumes_exactly(corpus, tmp_path, monkeypatch, capsys):
    """Truncated BPTT keeps the recurrent carry in the checkpoint: an interrupted stream run
    resumes to exactly the uninterrupted one (SIGINT sent to this process at step 13)."""
    extra = {"--tbptt": True, "--checkpoint-every": 5, "--eval-every": 10, "--layers": 2}
    ref = tmp_path / "ref"
    assert main(_small(corpus, ref, steps=20, **extra)) == 0

    out = tmp_path / "run"
    interrupt_train_step_at(monkeypatch, 13)
    assert main(_small(corpus, out, steps=20, **extra)) == 130
    assert "interrupted at step 13" in capsys.readouterr().err
    assert _steps(out) == [5, 10, 13]
    monkeypatch.undo()
    assert main(_small(corpus, out, steps=20, **extra, **{"--resume": True})) == 0
    assert _rows(out) == _rows(ref)
    assert (out / "sample.txt").read_text() == (ref / "sample.txt").read_text()


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(corpus, tmp_path, capsys):
    out = tmp_path / "nan"
    argv = _small(corpus, out, steps=30, **{"--lr": 1e38, "--checkpoint-every": 1})
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "last good checkpoint" in err
    steps = _steps(out)
    assert steps and max(steps) < 30
    # the kept checkpoints restore to finite parameters
    _, _, params, step, _ = open_run(out, read_config(out))
    assert step == max(steps)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))

    skip = tmp_path / "skip"
    argv = _small(corpus, skip, steps=10, **{"--lr": 1e38, "--skip-nonfinite": True})
    assert main(argv) == 0
    rows = [json.loads(line) for line in (skip / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("skipped") for r in rows)


def test_synthetic_tasks(tmp_path, capsys):
    common = [
        "--hidden",
        "8",
        "--batch-size",
        "8",
        "--steps",
        "20",
        "--eval-every",
        "10",
        "--eval-batches",
        "1",
        "--eval-batch-size",
        "16",
        "--no-progress",
    ]
    assert (
        main(
            [
                "train",
                "--task",
                "adding",
                "--seq-len",
                "10",
                "--out",
                str(tmp_path / "add"),
                *common,
            ]
        )
        == 0
    )
    rows = _rows(tmp_path / "add")
    assert [r["step"] for r in rows if "val_mse" in r] == [10, 20]
    assert "baseline (predicting 1.0, MSE): 0.1667" in capsys.readouterr().out
    assert (
        main(
            [
                "train",
                "--task",
                "copy",
                "--seq-len",
                "5",
                "--copy-len",
                "3",
                "--cell",
                "gru",
                "--out",
                str(tmp_path / "copy"),
                *common,
            ]
        )
        == 0
    )
    rows = _rows(tmp_path / "copy")
    assert all(0.0 <= r["val_accuracy"] <= 1.0 for r in rows if "val_accuracy" in r)
    assert main(["eval", str(tmp_path / "copy")]) == 0
    assert "val_accuracy=" in capsys.readouterr().out


def test_force_replaces_a_run(corpus, tmp_path):
    out = tmp_path / "run"
    assert main(_small(corpus, out, steps=10, **{"--sample-length": 0})) == 0
    assert (
        main(
            _small(
                corpus, out, steps=10, **{"--force": True, "--cell": "gru", "--sample-length": 0}
            )
        )
        == 0
    )
    assert json.loads((out / "config.json").read_text())["cell"] == "gru"
    assert _steps(out) == [10]


# ------------------------------------------------------------------------------------------
# bad input: one line, exit code 2, nothing touched


def _bad_cases(corpus: Path, done: Path, tmp: Path) -> list[tuple[list[str], str]]:
    empty_file = tmp / "empty.txt"
    empty_file.write_text("")
    empty_dir = tmp / "empty_dir"
    empty_dir.mkdir()
    tiny = tmp / "tiny.txt"
    tiny.write_text("abcdefghij" * 5)
    new = str(tmp / "new")
    base = ["train", "--out", new, "--corpus", str(corpus)]
    return [
        (["train", "--out", new, "--corpus", str(tmp / "missing")], "no such file"),
        (["train", "--out", new, "--corpus", str(empty_file)], "empty"),
        (["train", "--out", new, "--corpus", str(empty_dir)], "empty"),
        (["train", "--out", new, "--corpus", str(tiny), "--seq-len", "100"], "--seq-len 100"),
        ([*base, "--seq-len", "100000"], "--seq-len 100000"),
        ([*base, "--cell", "transformer"], "invalid choice: 'transformer'"),
        ([*base, "--task", "translate"], "invalid choice: 'translate'"),
        ([*base, "--hidden", "0"], "--hidden: must be a positive integer, got 0"),
        ([*base, "--layers", "-1"], "--layers: must be a positive integer"),
        ([*base, "--steps", "0"], "--steps"),
        ([*base, "--batch-size", "0"], "--batch-size"),
        ([*base, "--seq-len", "-5"], "--seq-len"),
        ([*base, "--lr", "0"], "--lr: must be a positive number"),
        ([*base, "--lr", "nan"], "--lr"),
        ([*base, "--dropout", "1.0"], "--dropout: must be in [0, 1)"),
        ([*base, "--clip", "-1"], "--clip"),
        ([*base, "--checkpoint-every", "0"], "--checkpoint-every"),
        ([*base, "--eval-every", "0"], "--eval-every"),
        ([*base, "--hidden", "many"], "must be an integer, got 'many'"),
        ([*base, "--task", "adding", "--tbptt"], "--tbptt applies to --task charlm only"),
        (["train", "--out", str(done)], "already holds a run"),
        (["train", "--out", str(done), "--resume", "--hidden", "32"], "different configuration"),
        (["train", "--out", str(done), "--resume", "--cell", "gru"], "different configuration"),
        (["train", "--out", str(done), "--resume", "--force"], "exclude each other"),
        (["train", "--out", new, "--resume"], "no run to resume"),
        (["sample", str(done), "--prompt", ""], "--prompt must not be empty"),
        (["sample", new], "not a run folder"),
        (["eval", new], "not a run folder"),
        (["frobnicate"], "invalid choice"),
    ]


def test_bad_input_is_one_line_and_exit_code_2(corpus, finished_run, tmp_path, capsys):
    before = _snapshot(finished_run)
    for argv, message in _bad_cases(corpus, finished_run, tmp_path):
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(argv)
        captured = capsys.readouterr()
        assert info.value.code == 2, (argv, captured.err)
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1, (argv, captured.err)
        assert message in lines[0] and "error:" in lines[0], (argv, lines[0])
        assert "Traceback" not in captured.err
        assert not (tmp_path / "new").exists(), argv
    assert _snapshot(finished_run) == before


def test_console_entry_point_reports_bad_input_without_traceback(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "jrnn",
            "train",
            "--out",
            str(tmp_path / "x"),
            "--corpus",
            str(tmp_path / "missing"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "no such file" in res.stderr
    assert not (tmp_path / "x").exists()
