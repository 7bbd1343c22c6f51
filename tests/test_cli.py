"""Tests of the ``jrnn`` command: run folders; ``jrnn sample`` (greedy at temperature 0,
more entropy at a higher temperature); ``jrnn eval`` (what the run logged, ``--full`` over
all held-out text, both equal to a computation written out here); exact resume after
SIGKILL and Ctrl-C, non-finite losses, and bad input (one line, exit code 2, no file
touched)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import jax
import numpy as np
import pytest

from jrnn.app import evaluate_run
from jrnn.app.progress import format_row
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
    assert main(["eval", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed == format_row({"step": 40, **evals[-1], "chars": 2 * 8 * 16}) + "\n"


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


def _cli(capsys, *argv: str) -> str:
    """stdout of ``jrnn ARGV`` run in this process (exit code 0)."""
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def _entropy_bits(text: str) -> float:
    """Empirical entropy of the characters of ``text``, in bits per character."""
    counts = np.array(list(Counter(text).values()), np.float64)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def test_sample_is_the_prompt_then_length_characters_reproducibly(finished_run, capsys):
    """The prompt, ``--length`` characters of the run's vocabulary (id 0, unknown, is
    printed as U+FFFD) and a newline; a pure function of ``--seed``."""
    chars = set(json.loads((finished_run / "vocab.json").read_text(encoding="utf-8")))
    argv = ["sample", str(finished_run), "--length", "30", "--prompt", "def "]
    text = _cli(capsys, *argv, "--seed", "1")
    assert text.startswith("def ") and text.endswith("\n") and len(text) == 4 + 30 + 1
    assert set(text[4:-1]) <= chars | {"\ufffd"}
    assert _cli(capsys, *argv, "--seed", "1") == text
    assert _cli(capsys, *argv, "--seed", "2") != text


def test_sample_at_temperature_0_is_greedy_decoding(finished_run, capsys):
    """``--temperature 0`` is the argmax at every step, whatever the seed: the same text as
    greedy decoding written out here, the prompt read once and one character fed back at a
    time with the carried state."""
    argv = ["sample", str(finished_run), "--length", "40", "--prompt", "def ", "--temperature"]
    text = _cli(capsys, *argv, "0", "--seed", "0")
    assert _cli(capsys, *argv, "0", "--seed", "7") == text

    run = open_run(finished_run, read_config(finished_run))
    model, vocab = run.task.model, run.corpus.vocab
    apply = jax.jit(lambda tokens, carry: model.apply(run.params, tokens, carry=carry))
    logits, aux = apply(vocab.encode("def ")[None], None)
    greedy = []
    for _ in range(40):
        greedy.append(int(np.argmax(np.asarray(logits)[0, -1])))
        logits, aux = apply(np.array([[greedy[-1]]], np.int32), aux.carry)
    assert text == "def " + vocab.decode(np.array(greedy)) + "\n"
    # a sampling temperature draws something else from the same model
    assert _cli(capsys, *argv, "0.8", "--seed", "0") != text


def test_a_higher_sampling_temperature_gives_higher_entropy_text(finished_run, capsys):
    """Dividing the logits by a larger temperature flattens every step's distribution: 2000
    characters sampled at 2.0 have a higher empirical entropy than at 0.5 (4.74 vs 4.53
    bits for this run and seed), and neither exceeds log2 of the vocabulary size."""
    argv = ["sample", str(finished_run), "--length", "2000", "--seed", "0", "--temperature"]
    cold = _entropy_bits(_cli(capsys, *argv, "0.5")[1:-1])
    hot = _entropy_bits(_cli(capsys, *argv, "2.0")[1:-1])
    vocab_size = len(json.loads((finished_run / "vocab.json").read_text(encoding="utf-8"))) + 1
    assert cold + 0.1 < hot <= np.log2(vocab_size)


def _direct_val_loss(run, streams: int, cap: int | None) -> tuple[float, int]:
    """Mean next-character cross-entropy (nats) of the restored model over the held-out
    text as ``eval_windows`` documents it: the ``N - 1`` targets cut into ``streams``
    contiguous streams of nearly equal size (the first ``(N - 1) % streams`` one longer),
    each read whole from a zero state, only its first ``cap`` targets counted."""
    val = np.asarray(run.corpus.val)
    q, r = divmod(val.shape[0] - 1, streams)
    total, count, start = 0.0, 0, 0
    for i in range(streams):
        size = q + (i < r)
        n = size if cap is None else min(size, cap)
        ids = val[start : start + n + 1]
        logits, _ = run.task.model.apply(run.params, ids[None, :-1])
        logp = np.asarray(jax.nn.log_softmax(np.asarray(logits[0], np.float64), axis=-1))
        total -= float(logp[np.arange(n), ids[1:]].sum())
        count += n
        start += size
    return total / count, count


def test_eval_full_covers_all_held_out_text(finished_run, capsys):
    """``jrnn eval`` reads the run's evaluation subset (``--eval-batches`` windows of each
    stream) and equals what the run logged at its last step; ``--full`` predicts every
    held-out character but the first, once.  Both equal the model run here over the
    held-out streams in one piece (float32: to 1e-5)."""
    config = read_config(finished_run)
    subset, full = evaluate_run(finished_run), evaluate_run(finished_run, full=True)
    logged = [r for r in _rows(finished_run) if "val_loss" in r][-1]
    assert {k: v for k, v in subset.items() if k != "chars"} == logged

    run = open_run(finished_run, config, need_corpus=True)
    held_out = int(run.corpus.val.shape[0])
    window = config.eval_batches * config.seq_len  # 2 windows of 16 per stream
    assert subset["chars"] == config.eval_batch_size * window == 256
    assert full["chars"] == held_out - 1 > 10 * subset["chars"]
    for row, cap in ((subset, window), (full, None)):
        loss, count = _direct_val_loss(run, config.eval_batch_size, cap)
        assert count == row["chars"] and row["step"] == 40
        np.testing.assert_allclose(row["val_loss"], loss, rtol=1e-5)
        assert row["val_bpc"] == row["val_loss"] / np.log(2)
    assert full["val_loss"] != subset["val_loss"]
    assert _cli(capsys, "eval", str(finished_run), "--full") == format_row(full) + "\n"


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


_SYNTHETIC = ["--hidden", "8", "--batch-size", "8", "--eval-batches", "1", "--no-progress"]


def test_adding_run_logs_val_mse_and_prints_its_baseline(tmp_path, capsys):
    out = tmp_path / "add"
    argv = ["train", "--task", "adding", "--seq-len", "10", "--out", str(out), *_SYNTHETIC]
    assert main([*argv, "--steps", "20", "--eval-every", "10", "--eval-batch-size", "16"]) == 0
    assert [r["step"] for r in _rows(out) if "val_mse" in r] == [10, 20]
    assert "baseline (predicting 1.0, MSE): 0.1667" in capsys.readouterr().out


def test_copy_memory_metrics_are_jrnn_eval_and_a_recount(tmp_path, capsys):
    """The copy-memory run's last logged evaluation is what ``jrnn eval`` computes from its
    checkpoint, and what counting here gives: ``val_accuracy`` the share of the copy_len
    recalled symbols whose argmax is right, ``val_exact`` the share of sequences with all
    of them right (exact: counts), ``val_loss`` the mean cross-entropy per step."""
    out, copy_len = tmp_path / "copy", 3
    argv = ["train", "--task", "copy", "--seq-len", "5", "--copy-len", str(copy_len)]
    argv += ["--cell", "gru", "--out", str(out), "--steps", "150", "--eval-every", "50"]
    assert main([*argv, "--checkpoint-every", "150", "--eval-batch-size", "16", *_SYNTHETIC]) == 0
    logged = [r for r in _rows(out) if "val_loss" in r]
    assert [r["step"] for r in logged] == [50, 100, 150]
    assert evaluate_run(out) == logged[-1]
    assert _cli(capsys, "eval", str(out)) == format_row(logged[-1]) + "\n"

    run = open_run(out, read_config(out))
    hits, rows_right, nll, steps = 0, 0, 0.0, 0
    for inputs, targets in run.task.eval_batches():
        logits, _ = run.task.model.apply(run.params, inputs)
        logits, targets = np.asarray(logits, np.float64), np.asarray(targets)
        right = logits[:, -copy_len:].argmax(-1) == targets[:, -copy_len:]
        hits, rows_right = hits + int(right.sum()), rows_right + int(right.all(1).sum())
        logp = np.asarray(jax.nn.log_softmax(logits, axis=-1))
        nll -= float(np.take_along_axis(logp, targets[..., None], -1).sum())
        steps += targets.size
    assert steps == 16 * (5 + 2 * copy_len)
    assert hits > 0  # 6 of 48 at step 150: the counts compared are not all zero
    assert logged[-1]["val_accuracy"] == hits / (16 * copy_len)
    assert logged[-1]["val_exact"] == rows_right / 16
    np.testing.assert_allclose(logged[-1]["val_loss"], nll / steps, rtol=1e-5)


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
