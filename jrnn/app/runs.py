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

Nothing here imports JAX: ``jrnn sample/eval/decode`` refuse a wrong folder with these
functions before any model is built.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from jrnn.app.config import Config
from jrnn.app.errors import UsageError

__all__ = [
    "CONFIG_VERSION",
    "RUN_FILES",
    "TIMING_KEYS",
    "checkpoint_steps",
    "clear",
    "has_run",
    "read_config",
    "read_json",
    "read_rows",
    "truncate_rows",
    "write_json_atomic",
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


def has_run(out: Path) -> bool:
    """Whether ``out`` holds any of a run's files."""
    return any((out / name).exists() for name in RUN_FILES)


def clear(out: Path) -> None:
    """Removes a run's files from ``out`` (nothing else there)."""
    for name in RUN_FILES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def read_config(out: Path, what: str = "") -> Config:
    """The :class:`Config` saved in ``out/config.json`` (:class:`UsageError` if there is none
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
        raise UsageError(f"{what}cannot read {path}: {e}") from None


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
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and "step" in row:
                    rows.append(row)
    return rows


def truncate_rows(path: Path, step: int) -> None:
    """Drops the rows of a metrics.jsonl past ``step`` (atomically)."""
    rows = [r for r in read_rows(path) if r["step"] <= step]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)
