"""A run folder handled as a hostile user would: corrupt checkpoints, edited config.json and
vocab.json, two runs on one folder, a metrics.jsonl cut mid-line, an --out that cannot be
written, a binary --corpus, SIGTERM. Each is one line on stderr and exit code 2 (or a
one-line warning and a correct result), and nothing already saved is lost. Real
``python -m jrnn`` subprocesses on a tiny run."""

from __future__ import annotations

import fcntl
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jrnn.app.runs import checkpoint_steps
from tests.helpers import REPO, subprocess_env
from tests.test_cli import _rows, _small, _write_corpus


def _jrnn(*argv: object, timeout: float = 300) -> subprocess.CompletedProcess:
    env = subprocess_env()
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
    elif how == "garbage":  # the arrays' metadata replaced by garbage
        (step / "state" / "_METADATA").write_text("{{{ not json")
    elif how == "empty":
        for p in step.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["flip", "truncate", "delete", "garbage", "empty"])
def test_corrupt_newest_checkpoint_falls_back_with_one_warning(run, how):
    _corrupt(run / "checkpoints" / "20", how)
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    r = _jrnn("eval", run)
    assert r.returncode == 0, r.stderr
    warns = _warnings(r.stderr)
    assert len(warns) == 1 and warns[0].startswith("jrnn eval: warning: "), r.stderr
    assert "skipping checkpoint 20" in warns[0], r.stderr
    assert r.stdout.startswith("step=10 "), r.stdout  # the step read from the restored one
    # read-only commands move nothing
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before


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


# ------------------------------------------------------------------------------------------
# edited or damaged config.json / vocab.json: one line naming the file, exit code 2


def _edit_config(run: Path, **changes: object) -> None:
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**saved, **changes}))


DAMAGE = {
    "config-invalid-json": (lambda d: (d / "config.json").write_text('{"task": '), "config.json"),
    "config-not-object": (lambda d: (d / "config.json").write_text("[1, 2]"), "not a JSON object"),
    "config-binary": (lambda d: (d / "config.json").write_bytes(b"\x89PNG\x00\xff"), "config.json"),
    "config-wrong-type": (lambda d: _edit_config(d, hidden="x"), "--hidden"),
    "config-unknown-cell": (lambda d: _edit_config(d, cell="transformer"), "'transformer'"),
    "config-unknown-task": (lambda d: _edit_config(d, task="nope"), "'nope'"),
    "config-missing": (lambda d: (d / "config.json").unlink(), "config.json"),
    "vocab-invalid-json": (lambda d: (d / "vocab.json").write_text('["a",'), "vocab.json"),
    "vocab-wrong-type": (lambda d: (d / "vocab.json").write_text('{"a": 1}'), "vocab.json"),
    "vocab-missing": (lambda d: (d / "vocab.json").unlink(), "vocab.json is missing"),
    "hidden-mismatch": (lambda d: _edit_config(d, hidden=32), "do not fit its config.json"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_config_or_vocab_is_one_line_and_exit_2(run, damage):
    edit, words = DAMAGE[damage]
    edit(run)
    before = {p: p.read_bytes() for p in (run / "checkpoints").rglob("*") if p.is_file()}
    rows = (run / "metrics.jsonl").read_text()
    commands = [["eval", run], ["train", "--out", run, "--resume", "--no-progress"]]
    if damage.startswith("vocab") or damage == "hidden-mismatch":
        commands.append(["sample", run])
    for argv in commands:
        _one_error(_jrnn(*argv), words)
    after = {p: p.read_bytes() for p in (run / "checkpoints").rglob("*") if p.is_file()}
    assert after == before and (run / "metrics.jsonl").read_text() == rows


# ------------------------------------------------------------------------------------------
# one run folder, one process; SIGTERM saves and exits like Ctrl-C


def _adding(out: Path, steps: int = 100000, *extra: str) -> list[str]:
    return [
        "train", "--task", "adding", "--out", str(out), "--steps", str(steps), "--hidden", "8",
        "--batch-size", "8", "--eval-every", "1000000", "--checkpoint-every", "1000000",
        "--eval-batches", "1", "--no-progress", *extra,
    ]  # fmt: skip


def test_a_live_run_locks_its_folder_and_sigterm_saves_and_exits_130(tmp_path):
    out = tmp_path / "live"
    env = subprocess_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jrnn", *_adding(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        deadline = time.time() + 120
        while not (out / "metrics.jsonl").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert (out / "metrics.jsonl").exists()
        for extra in (["--resume"], ["--force"]):
            r = _jrnn(*_adding(out, 100000, *extra))
            _one_error(r, f"run folder {out} is in use by pid {proc.pid}")
        assert proc.poll() is None  # the live run goes on
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "--resume" in err
    step = int(err.split("interrupted at step ")[1].split(":")[0])
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir()) == [step]
    # the lock went with the process
    with open(out / ".lock") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


# ------------------------------------------------------------------------------------------
# metrics.jsonl cut mid-line


def test_a_metrics_line_cut_short_is_dropped_with_one_warning(run):
    rows = _rows(run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 25, "loss": 3.1')  # a kill while writing
    r = _jrnn("train", "--out", run, "--resume", "--no-progress")
    assert r.returncode == 0, r.stderr
    warns = _warnings(r.stderr)
    assert len(warns) == 1 and "cut short" in warns[0], r.stderr
    assert _rows(run) == rows  # every complete row kept


# ------------------------------------------------------------------------------------------
# --out that cannot be written, binary --corpus


def test_out_under_a_file_and_binary_corpus_are_one_line(corpus, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    _one_error(_jrnn(*_adding(a_file / "run", 4)), "is a file")
    _one_error(_jrnn(*_adding(a_file, 4)), "not a folder")
    png = tmp_path / "image.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8)
    for binary in (png, Path(sys.executable).resolve()):
        r = _jrnn("train", "--corpus", binary, "--out", tmp_path / "new", "--no-progress")
        _one_error(r, "binary")
    assert not (tmp_path / "new").exists()


# Root writes any folder through CAP_DAC_OVERRIDE (CI runs as root): the command runs
# without it (dropped from the capability bounding set, so the exec'd ``python`` never has
# it), as an ordinary user would. The prctl needs CAP_SETPCAP, which root has (also in
# Docker's default set); an ordinary user runs the command as it is.
_WITHOUT_DAC_OVERRIDE = """
import ctypes, os, sys
if os.geteuid() == 0:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(24, 1, 0, 0, 0):  # PR_CAPBSET_DROP, CAP_DAC_OVERRIDE
        sys.exit("cannot drop CAP_DAC_OVERRIDE: " + os.strerror(ctypes.get_errno()))
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


def test_unwritable_out_is_one_line_and_touches_nothing(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    (locked / "kept.txt").write_text("x")
    locked.chmod(0o500)
    try:
        r = subprocess.run(
            [sys.executable, "-c", _WITHOUT_DAC_OVERRIDE, "-m", "jrnn"]
            + _adding(locked / "run", 4),
            capture_output=True,
            text=True,
            env=subprocess_env(),
            cwd=REPO,
            timeout=300,
        )
        _one_error(r, f"--out {locked / 'run'}: the folder {locked} is not writable")
    finally:
        locked.chmod(0o700)
    assert [p.name for p in locked.iterdir()] == ["kept.txt"]


@pytest.mark.parametrize(
    "error, words",
    [
        (
            OSError(28, "No space left on device", "/runs/x/metrics.jsonl"),
            ("cannot write", "No space left", "metrics.jsonl", "kept"),
        ),
        (OSError(30, "Read-only file system", "/runs/x"), ("cannot write", "Read-only")),
        (MemoryError(), ("out of memory", "--batch-size")),
        (
            RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 9e12 bytes.\nmore"),
            ("out of memory", "RESOURCE_EXHAUSTED", "--hidden"),
        ),
    ],
)
def test_a_full_disk_or_exhausted_memory_is_one_line_and_exit_1(
    monkeypatch, capsys, tmp_path, error, words
):
    """What the machine cannot give (disk, memory) ends the command with one line naming it;
    other errors keep their traceback (they are bugs to report)."""
    import jrnn.app
    from jrnn.cli import main

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(jrnn.app, "fit", fail)
    assert main(["train", "--task", "parity", "--out", str(tmp_path / "r")]) == 1
    lines = _lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("jrnn train: error: "), lines
    for w in words:
        assert w in lines[0], lines[0]
    monkeypatch.setattr(jrnn.app, "fit", lambda *a, **k: (_ for _ in ()).throw(OSError(2, "gone")))
    with pytest.raises(OSError):
        main(["train", "--task", "parity", "--out", str(tmp_path / "r")])


# ------------------------------------------------------------------------------------------
# --force deletes only what jrnn wrote


def test_force_refuses_a_folder_of_the_users_own_files(tmp_path):
    mine = tmp_path / "mine"
    (mine / "checkpoints").mkdir(parents=True)
    (mine / "checkpoints" / "model.pt").write_bytes(b"weights")
    (mine / "notes.txt").write_text("notes")
    _one_error(_jrnn(*_adding(mine, 4, "--force")), f"--force: {mine} is not a jrnn run")
    (mine / "config.json").write_text('{"lr": 0.1}')  # someone else's config.json
    _one_error(_jrnn(*_adding(mine, 4, "--force")), "config.json is not one jrnn wrote")
    assert (mine / "checkpoints" / "model.pt").read_bytes() == b"weights"
    assert (mine / "notes.txt").read_text() == "notes"
    # nothing a run writes (a new folder, or only the user's notes): --force has nothing to
    # delete and trains there
    shutil.rmtree(mine / "checkpoints")
    (mine / "config.json").unlink()
    r = _jrnn(*_adding(mine, 4, "--force"))
    assert r.returncode == 0, r.stderr
    assert (mine / "notes.txt").read_text() == "notes"
    assert json.loads((mine / "config.json").read_text())["task"] == "adding"


def test_force_on_a_run_keeps_the_users_files_in_it(run):
    (run / "notes.txt").write_text("notes")
    (run / "checkpoints" / "model.pt").write_bytes(b"weights")
    (run / "checkpoints" / "20" / "mine.txt").write_text("x")
    r = _jrnn(*_adding(run, 4, "--force"))
    line = _one_error(r, f"{run / 'checkpoints'} holds files jrnn did not write")
    assert "20/mine.txt" in line and "model.pt" in line
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["10", "20", "model.pt"]
    (run / "checkpoints" / "model.pt").unlink()
    (run / "checkpoints" / "20" / "mine.txt").unlink()
    r = _jrnn(*_adding(run, 4, "--force"))
    assert r.returncode == 0, r.stderr
    assert (run / "notes.txt").read_text() == "notes"  # never a run's file
    assert not (run / "sample.txt").exists() and not (run / "vocab.json").exists()
    assert json.loads((run / "config.json").read_text())["task"] == "adding"


# ------------------------------------------------------------------------------------------
# a float64 run is read back in float64


def test_a_float64_run_samples_evaluates_and_exports(corpus, tmp_path):
    out = tmp_path / "f64"
    r = _jrnn(*_args(corpus, out, 10), "--dtype", "float64")
    assert r.returncode == 0, r.stderr
    for argv in (
        ["sample", out, "--length", "8"],
        ["eval", out],
        ["export", out, "--out", tmp_path / "f64.hlo"],
    ):
        r = _jrnn(*argv)
        assert r.returncode == 0, r.stderr
        assert _lines(r.stderr) == [], r.stderr  # no truncation warning, no digest mismatch
    signature = json.loads((tmp_path / "f64.hlo.json").read_text())
    assert {o["dtype"] for o in signature["outputs"]} == {"float64"}


def test_a_checkpoint_read_at_another_precision_is_not_called_corrupted(tmp_path):
    import numpy as np

    from jrnn.checkpoint import Checkpointer, CheckpointError

    with Checkpointer(tmp_path) as ck:
        ck.save(1, {"w": np.arange(6, dtype=np.float64)}, {"step": 1})
    with Checkpointer(tmp_path) as ck:  # writable: a bad checkpoint would be moved aside
        with pytest.raises(CheckpointError, match="holds float64 arrays") as e:
            ck.restore({"w": np.zeros(6, np.float32)})
        assert "SHA-256" not in str(e.value)
        tree, _ = ck.restore({"w": np.zeros(6, np.float64)})
    assert tree["w"].dtype == np.float64 and ck.all_steps() == [1]


# ------------------------------------------------------------------------------------------
# a run killed after its last checkpoint, before its sample: --resume writes that sample


def test_resume_of_a_run_killed_before_its_sample_writes_the_same_sample(run):
    sample = (run / "sample.txt").read_text()
    # the state SIGKILL leaves between the last checkpoint and the sample (sample.txt and
    # loss.png are written after it, sample.txt atomically)
    (run / "sample.txt").unlink()
    (run / "loss.png").unlink()
    r = _jrnn("train", "--out", run, "--resume", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "already complete" in r.stdout
    assert (run / "sample.txt").read_text() == sample
    assert (run / "loss.png").exists()


# ------------------------------------------------------------------------------------------
# metrics.jsonl cut: every complete row kept, one warning, always


@pytest.mark.parametrize("cut", ["at_a_line_end", "mid_line"])
def test_a_cut_metrics_file_keeps_its_complete_rows_with_one_warning(run, cut):
    rows = _rows(run)
    text = (run / "metrics.jsonl").read_text()
    lines = text.splitlines(keepends=True)
    kept = "".join(lines[:-1])  # the last row (step 20's evaluation) lost
    (run / "metrics.jsonl").write_text(kept + (lines[-1][:25] if cut == "mid_line" else ""))
    r = _jrnn("train", "--out", run, "--resume", "--no-progress")
    assert r.returncode == 0, r.stderr
    warns = _warnings(r.stderr)
    assert len(warns) == 1, r.stderr
    assert f"1 of the {len(rows)} rows written up to step 20 is lost" in warns[0]
    assert ("cut short" in warns[0]) == (cut == "mid_line")
    assert _rows(run) == rows[:-1]


# ------------------------------------------------------------------------------------------
# a full disk while a checkpoint is written: one line, exit 1, the last checkpoint kept

# From the second checkpoint on, no file may grow past 4 KiB (RLIMIT_FSIZE: the write
# fails with EFBIG, as a full disk fails it with ENOSPC; both are the kernel refusing the
# write of a TensorStore thread, so Orbax's threads report it as they would a full disk).
_FULL_AFTER_ONE_CHECKPOINT = """
import resource, signal, sys
import jrnn.checkpoint as ck
from jrnn import cli
real, calls = ck.Checkpointer.save, []
def save(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        self.wait()  # the first checkpoint is on disk, whole
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
    return real(self, *args, **kwargs)
ck.Checkpointer.save = save
sys.argv = ["jrnn", *sys.argv[1:]]
cli.run()
"""


def test_a_full_disk_while_checkpointing_is_one_line_and_resumes(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-c", _FULL_AFTER_ONE_CHECKPOINT, *_adding(out, 8)]
        + ["--checkpoint-every", "3"],
        capture_output=True,
        text=True,
        env=subprocess_env(GLIBC_TUNABLES="glibc.malloc.hugetlb=0"),
        cwd=REPO,
        timeout=300,
    )
    assert r.returncode == 1, r.stderr
    lines = _lines(r.stderr)  # one line: no tracebacks of Orbax's threads
    assert len(lines) == 1 and lines[0].startswith("jrnn train: error: cannot write"), r.stderr
    for words in ("checkpoints", "File too large", "are kept"):
        assert words in lines[0], lines[0]
    assert checkpoint_steps(out) == [3]  # the complete one; step 6 never became one
    r = _jrnn("train", "--out", out, "--resume", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert f"resuming {out} from step 3" in r.stderr
    assert checkpoint_steps(out) == [3, 6, 8]


@pytest.mark.parametrize("dropped", [False, True])
def test_background_errors_are_held_then_shown_unless_dropped(caplog, capsys, dropped):
    import logging

    from jrnn.app.background import held_background_errors

    class Dies:
        def __del__(self):
            raise RuntimeError("Event loop is closed")  # what TensorStore's callbacks print

    with held_background_errors() as held:
        logging.getLogger("absl").error("save thread failed")
        logging.getLogger("absl").warning("a warning passes at once")
        Dies()
        assert [r.getMessage() for r in caplog.records] == ["a warning passes at once"]
        assert capsys.readouterr().err == ""
        if dropped:
            held.drop()
    shown = [r.getMessage() for r in caplog.records]
    err = capsys.readouterr().err
    if dropped:
        assert shown == ["a warning passes at once"] and err == ""
    else:
        assert shown == ["a warning passes at once", "save thread failed"]
        assert "RuntimeError: Event loop is closed" in err


# ------------------------------------------------------------------------------------------
# --resume --steps M extends a run


def test_resume_with_more_steps_extends_the_run_on_its_schedule(tmp_path):
    out = tmp_path / "run"
    r = _jrnn(*_adding(out, 6, "--checkpoint-every", "3", "--log-every", "3"))
    assert r.returncode == 0, r.stderr
    before = _rows(out)
    _one_error(_jrnn("train", "--out", out, "--resume", "--steps", "4"), "not shorten it")
    r = _jrnn("train", "--out", out, "--resume", "--steps", "9", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert f"resuming {out} from step 6" in r.stderr
    saved = json.loads((out / "config.json").read_text())
    assert (saved["steps"], saved["decay_steps"]) == (9, 6)  # the schedule of the 6 steps
    assert checkpoint_steps(out) == [3, 6, 9]
    rows = _rows(out)
    assert rows[: len(before)] == before and [r["step"] for r in rows[len(before) :]] == [9, 9]


def test_an_extended_schedule_holds_its_last_learning_rate():
    from jrnn.app import Config
    from jrnn.app.loop import resumed

    saved = Config(task="parity", steps=20)
    longer = resumed(saved, {"steps": 50})
    assert (longer.steps, longer.decay_steps) == (50, 20)
    assert resumed(longer, {"steps": 80}).decay_steps == 20  # extended again: the same
    assert resumed(saved, {"log_every": 5}).decay_steps == 0  # not extended: its steps
