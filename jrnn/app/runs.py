"""The run folder: its files, read and written atomically.

::

    DIR/config.json       the configuration (Config.to_dict()), config_version, the model's
                          name and, for a corpus task, the corpus source and sizes
    DIR/vocab.json        a corpus task's characters: a JSON list, entry i has id i + 1
                          (id 0, the unknown character, is not stored)
    DIR/metrics.jsonl     one JSON row per log interval and per evaluation
    DIR/checkpoints/      orbax checkpoints, one folder per saved step (the last 3 kept)
    DIR/loss.png          training and validation curves
    DIR/sample.txt        a corpus task's text generated at the end
    DIR/.lock             the pid of the process training in DIR; ``fcntl.flock``-ed for the
                          run's lifetime (the lock goes with the process, even on SIGKILL)

Nothing here imports JAX: ``jrnn sample/eval/decode`` refuse a wrong folder with these
functions before any model is built.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from jrnn.app.config import Config
from jrnn.app.errors import UsageError

__all__ = [
    "CONFIG_VERSION",
    "RUN_FILES",
    "TIMING_KEYS",
    "check_clearable",
    "check_writable",
    "checkpoint_steps",
    "clear",
    "has_run",
    "lock",
    "out_folder",
    "read_config",
    "read_json",
    "read_rows",
    "read_vocab",
    "truncate_rows",
    "write_json_atomic",
    "write_text_atomic",
]

CONFIG_VERSION = 1
GRAD_NORMS = ("grad_norm", "grad_norm_clipped")  # logged each row: before / after clipping
RUN_FILES = ("config.json", "vocab.json", "metrics.jsonl", "checkpoints", "loss.png", "sample.txt")
TIMING_KEYS = ("tokens_per_s", "time")
"""metrics.jsonl columns that differ between otherwise identical runs."""


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Writes ``obj`` as indented JSON to a temporary file, then renames it onto ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to a temporary file, then renames it onto ``path`` (a kill leaves
    the old file or the new one, never a part)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def check_writable(out: Path) -> None:
    """Refuses (`UsageError`) an ``--out`` that is a file, lies under a file, or
    whose nearest existing folder cannot be written."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    folder = out.absolute()
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"--out {out}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: the folder {folder} is not writable")


def lock(out: Path):
    """Locks the run folder ``out`` for this process (``out/.lock``, ``fcntl.flock``; the
    lock goes with the process): returns the open lock file, to close when the run ends.
    `UsageError` if another process holds it."""
    path = out / ".lock"
    try:
        f = open(path, "a+", encoding="utf-8")
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write {path}: {e.strerror}") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        pid = f.read().strip() or "?"
        f.close()
        raise UsageError(f"run folder {out} is in use by pid {pid}") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def has_run(out: Path) -> bool:
    """Whether ``out`` holds any of a run's files."""
    return any((out / name).exists() for name in RUN_FILES)


# What Orbax and jrnn write in a checkpoint's step folder, and beside the step folders.
_STEP_ENTRIES = frozenset(
    {"_CHECKPOINT_METADATA", "commit_success.txt", "jrnn_manifest.json", "meta", "state"}
)
_TMP_MARK = ".orbax-checkpoint-tmp"


def _foreign_checkpoint_files(folder: Path) -> list[str]:
    """The entries of a checkpoints folder that jrnn's layout does not explain: anything but
    step folders (holding Orbax's and jrnn's entries only), Orbax's unfinished step folders
    and ``corrupt/`` (the quarantined steps, laid out the same way)."""
    foreign = []
    for p in sorted(folder.iterdir()):
        if _TMP_MARK in p.name and p.is_dir():
            continue
        if p.name == "corrupt" and p.is_dir() and folder.name != "corrupt":
            foreign += [f"corrupt/{name}" for name in _foreign_checkpoint_files(p)]
            continue
        step = p.name.split("-", 1)[0] if folder.name == "corrupt" else p.name
        if step.isdigit() and p.is_dir() and p.name.split("-", 1)[-1].isdigit():
            foreign += [f"{p.name}/{e.name}" for e in p.iterdir() if e.name not in _STEP_ENTRIES]
            continue
        foreign.append(p.name + ("/" if p.is_dir() else ""))
    return foreign


def check_clearable(out: Path) -> None:
    """Refuses (`UsageError`) to replace the contents of ``out`` unless they are a
    run jrnn wrote: a readable ``config.json`` of a jrnn run and, if any, a ``checkpoints/``
    folder in jrnn's layout.  A user's own files, which merely share a name with a run's
    (``checkpoints/model.pt``, ``sample.txt`` beside no ``config.json``), are never deleted."""
    what = f"--force: {out} is not a jrnn run"
    if not (out / "config.json").is_file():
        found = ", ".join(name for name in RUN_FILES if (out / name).exists())
        if not found:  # nothing a run writes (a new folder, its .lock): nothing to delete
            return
        raise UsageError(
            f"{what} (no config.json) but holds {found}: refusing to delete them (choose "
            "another --out, or remove them yourself)"
        )
    try:
        saved = read_json(out / "config.json")
    except (OSError, ValueError):
        saved = None
    if not (isinstance(saved, dict) and "config_version" in saved and "task" in saved):
        raise UsageError(
            f"{what}: its config.json is not one jrnn wrote; refusing to delete anything "
            "(choose another --out, or remove the files yourself)"
        )
    for name in RUN_FILES:
        if name != "checkpoints" and (out / name).is_dir():
            raise UsageError(f"{what}: {out / name} is a folder; refusing to delete it")
    folder = out / "checkpoints"
    if folder.exists():
        foreign = _foreign_checkpoint_files(folder) if folder.is_dir() else ["(a file)"]
        if foreign:
            shown = ", ".join(foreign[:3]) + (
                f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            )
            raise UsageError(
                f"--force: {folder} holds files jrnn did not write ({shown}); refusing to "
                "delete them (choose another --out, or remove them yourself)"
            )


def clear(out: Path) -> None:
    """Removes a run's files from ``out`` (nothing else there), after
    `check_clearable` (a `UsageError` if they are not all jrnn's)."""
    check_clearable(out)
    for name in RUN_FILES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def read_config(out: Path, what: str = "") -> Config:
    """The [`Config`][jrnn.app.config.Config] saved in ``out/config.json`` (`UsageError` if there is
    none
    or it cannot be read); ``what`` prefixes the messages (e.g. ``"--resume: "``)."""
    path = out / "config.json"
    if not path.is_file():
        if what:
            raise UsageError(f"{what}no run to resume in {out} (no config.json)")
        raise UsageError(f"{out} is not a run folder (no config.json)")
    try:
        saved = read_json(path)
    except (OSError, ValueError) as e:
        raise UsageError(f"{what}cannot read {path}: {e}") from None
    try:
        return Config.from_dict(saved, str(path))
    except UsageError as e:
        text = str(e).removeprefix(f"{path}: ")
        raise UsageError(f"{what}cannot read {path}: {text}") from None


def read_vocab(out: Path, what: str = "") -> list[str]:
    """The characters saved in ``out/vocab.json`` (`UsageError` naming the file and
    the problem if it is missing, not JSON or not a list of distinct single characters)."""
    path = out / "vocab.json"
    try:
        chars = read_json(path)
    except FileNotFoundError:
        raise UsageError(f"{what}{path} is missing") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"{what}cannot read {path}: {' '.join(str(e).split())}") from None
    if not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars):
        raise UsageError(
            f"{what}cannot read {path}: expected a JSON list of single characters, got "
            f"{type(chars).__name__ if not isinstance(chars, list) else 'other entries'}"
        )
    if len(set(chars)) != len(chars):
        raise UsageError(f"{what}cannot read {path}: a character is listed twice")
    return chars


def checkpoint_steps(out: Path) -> list[int]:
    """The steps of the complete checkpoints in ``out/checkpoints`` (orbax names a finished
    checkpoint by its step; unfinished ones carry a temporary suffix)."""
    folder = out / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir())


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl (a last line cut short by a kill is skipped)."""
    rows = []
    if path.exists():
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and "step" in row:
                    rows.append(row)
    return rows


def truncate_rows(path: Path, step: int, written: int | None = None) -> int:
    """Drops the rows of a metrics.jsonl past ``step`` (atomically) and returns how many
    are kept.  Every complete row up to ``step`` is kept; a line that is not a row (a line
    cut short by a kill) is dropped, and fewer rows than ``written`` (the count the
    checkpoint of ``step`` recorded: the file was cut) are reported, all in one warning."""
    problems = []
    if path.exists():
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
        for i, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if not (isinstance(row, dict) and "step" in row) and line.strip():
                cut = "the last line, cut short" if i == len(lines) else f"line {i}"
                problems.append(f"dropping {cut} (not a metrics row): {line[:60]!r}")
    rows = [r for r in read_rows(path) if r["step"] <= step]
    if isinstance(written, int) and len(rows) < written:
        lost = written - len(rows)
        problems.append(
            f"{lost} of the {written} rows written up to step {step} "
            f"{'is' if lost == 1 else 'are'} lost (the file was cut); the {len(rows)} "
            "complete ones are kept"
        )
    if problems:
        warnings.warn(f"{path}: {'; '.join(problems)}", stacklevel=2)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)
    return len(rows)


def out_folder(out: str | None, task: str, resume: bool) -> Path:
    """``--out``, or a new ``runs/TASK-YYYYmmdd-HHMMSS`` when it is left out (refused with
    ``--resume``, which continues a given folder)."""
    if out is not None:
        return Path(out)
    if resume:
        raise UsageError("--resume needs --out DIR (the run folder to continue)")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{task}-{stamp}"
