"""The manifest of a checkpoint step: the size and SHA-256 of every file in its folder.

[`jrnn.checkpoint.Checkpointer`][] writes ``<step>/jrnn_manifest.json`` once Orbax has
finished writing the step, and checks it before Orbax opens the step on restore: a file that
is missing, of another size or another SHA-256 marks the step as damaged with plain Python
reads, so no TensorStore read of a damaged file is ever started (those fail asynchronously
and print tracebacks of their own).  Files added to the folder later are ignored: only what
Orbax wrote is read on restore.

The manifest is written atomically (a temporary file, ``fsync``, ``os.replace``, ``fsync``
of the folder): a step either has a whole manifest or none.  A step without one (written
before manifests existed, or by a process killed between Orbax's rename and the manifest)
is left to Orbax, as before.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath

__all__ = ["MANIFEST", "DamagedStep", "verify_manifest", "write_manifest"]

MANIFEST = "jrnn_manifest.json"
_VERSION = 1
_CHUNK = 1 << 20


class DamagedStep(ValueError):
    """A checkpoint step's files do not match its manifest, or the manifest is unreadable.

    Examples:
      >>> issubclass(DamagedStep, ValueError)
      True
    """


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _files(step_dir: Path) -> list[str]:
    """Relative POSIX paths of the files under ``step_dir`` (the manifest and its temporary
    file excluded), sorted."""
    return sorted(
        p.relative_to(step_dir).as_posix()
        for p in step_dir.rglob("*")
        if p.is_file() and not p.name.startswith(MANIFEST)
    )


def write_manifest(step_dir: str | Path) -> Path:
    """Writes ``step_dir/jrnn_manifest.json`` (size and SHA-256 of every file) atomically.

    Args:
      step_dir: a finished checkpoint step folder.

    Returns:
      The manifest's path.

    Examples:
      >>> import tempfile
      >>> step = Path(tempfile.mkdtemp())
      >>> _ = (step / "a").write_bytes(b"abc")
      >>> json.loads(write_manifest(step).read_text())["files"]["a"]["size"]
      3
    """
    step_dir = Path(step_dir)
    files = {
        name: {"size": (step_dir / name).stat().st_size, "sha256": _sha256(step_dir / name)}
        for name in _files(step_dir)
    }
    target = step_dir / MANIFEST
    tmp = step_dir / f"{MANIFEST}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"version": _VERSION, "files": files}, f, indent=0, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    fd = os.open(step_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


def _read_manifest(path: Path) -> dict[str, dict[str, object]]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DamagedStep(f"its manifest {MANIFEST} cannot be read ({type(e).__name__})") from e
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(v, dict)
        and isinstance(v.get("size"), int)
        and isinstance(v.get("sha256"), str)
        and not PurePosixPath(k).is_absolute()
        and ".." not in PurePosixPath(k).parts
        for k, v in files.items()
    ):
        raise DamagedStep(f"its manifest {MANIFEST} is not a jrnn manifest")
    return files


def verify_manifest(step_dir: str | Path) -> bool:
    """Checks every file listed in ``step_dir``'s manifest: present, same size, same SHA-256.

    Sizes are checked for all files before any is hashed (a truncated file is found without
    reading the others).

    Args:
      step_dir: a checkpoint step folder.

    Returns:
      ``True`` when the files match the manifest, ``False`` when the step has no manifest.

    Raises:
      DamagedStep: a listed file is missing, has another size or SHA-256, or the manifest
        itself is unreadable; the message names the file.

    Examples:
      >>> import tempfile
      >>> step = Path(tempfile.mkdtemp())
      >>> _ = (step / "a").write_bytes(b"abc")
      >>> verify_manifest(step)
      False
      >>> _ = write_manifest(step)
      >>> verify_manifest(step)
      True
      >>> _ = (step / "a").write_bytes(b"ab")
      >>> verify_manifest(step)
      Traceback (most recent call last):
      ...
      jrnn.checkpoint_manifest.DamagedStep: a has 2 bytes, its manifest says 3 ...
    """
    step_dir = Path(step_dir)
    path = step_dir / MANIFEST
    if not path.exists():
        return False
    files = _read_manifest(path)
    for name, entry in files.items():
        try:
            size = (step_dir / name).stat().st_size
        except FileNotFoundError:
            raise DamagedStep(f"{name} is missing (listed in its manifest)") from None
        if size != entry["size"]:
            raise DamagedStep(
                f"{name} has {size} bytes, its manifest says {entry['size']} (truncated or damaged)"
            )
    for name, entry in files.items():
        if _sha256(step_dir / name) != entry["sha256"]:
            raise DamagedStep(f"{name} fails its SHA-256 (damaged)")
    return True
