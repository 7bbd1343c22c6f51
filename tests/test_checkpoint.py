"""Tests of jrnn.checkpoint: SHA-256 verification on restore with real corruption of the files
(truncated, deleted, flipped bytes, missing or garbage metadata, an empty step folder),
fallback to the newest good checkpoint, and a clear CheckpointError when none is good.
A step with a manifest (jrnn.checkpoint_manifest) is refused before Orbax opens it; one
without (older checkpoints) is still refused by Orbax or the digest."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jrnn.checkpoint import Checkpointer, CheckpointError, tree_digest
from jrnn.checkpoint_manifest import MANIFEST, verify_manifest


def _tree(step: int):
    return {
        "w": jnp.arange(600, dtype=jnp.float32).reshape(20, 30) * step,
        "n": jnp.asarray(step, jnp.int32),
        "key": jax.random.key(step),
    }


TEMPLATE = {"w": jnp.zeros((20, 30), jnp.float32), "n": jnp.int32(0), "key": jax.random.key(0)}


def _write(folder: Path, steps=(1, 2, 3)) -> None:
    with Checkpointer(folder) as ck:
        for s in steps:
            ck.save(s, _tree(s), {"step": s})


def _data_files(step_dir: Path) -> list[Path]:
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert files, f"no data files under {step_dir}"
    return sorted(files, key=lambda p: p.stat().st_size, reverse=True)


def _truncate(d: Path) -> None:
    f = _data_files(d)[0]
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _delete(d: Path) -> None:
    for f in _data_files(d):
        f.unlink()


def _flip(d: Path) -> None:
    """Flips one byte in every data file: decoding fails or the values change."""
    for f in _data_files(d):
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))


def _no_metadata(d: Path) -> None:
    (d / "state" / "_METADATA").unlink()


def _garbage_metadata(d: Path) -> None:
    (d / "state" / "_METADATA").write_text("{{{ not json")


def _garbage_json_item(d: Path) -> None:
    (d / "meta" / "metadata").write_text("garbage")


def _edited_json_item(d: Path) -> None:
    """Valid JSON with another value: only the digest can tell."""
    path = d / "meta" / "metadata"
    meta = json.loads(path.read_text())
    meta["step"] = 99
    path.write_text(json.dumps(meta))


def _empty_folder(d: Path) -> None:
    for p in sorted(d.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()


CORRUPTIONS = {
    "truncated": _truncate,
    "deleted": _delete,
    "flipped": _flip,
    "no_metadata": _no_metadata,
    "garbage_metadata": _garbage_metadata,
    "garbage_json": _garbage_json_item,
    "edited_json": _edited_json_item,
    "empty_folder": _empty_folder,
}


def _restore_warns(ck, template=TEMPLATE):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tree, meta = ck.restore(template)
    return tree, meta, [str(w.message) for w in caught]


# Without a manifest Orbax opens the damaged step itself; its TensorStore reads may then
# report an unraisable "Event loop is closed" -- what the manifest check exists to prevent.
OLDER = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.mark.parametrize(
    "manifest",
    [pytest.param(True, id="manifest"), pytest.param(False, id="no_manifest", marks=OLDER)],
)
@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, corruption, manifest):
    _write(tmp_path)
    if not manifest:  # as written before manifests existed: Orbax and the digest find it
        (tmp_path / "3" / MANIFEST).unlink()
    CORRUPTIONS[corruption](tmp_path / "3")
    with Checkpointer(tmp_path) as ck:
        tree, meta, messages = _restore_warns(ck)
        assert meta == {"step": 2}
        np.testing.assert_array_equal(tree["w"], _tree(2)["w"])
        np.testing.assert_array_equal(
            jax.random.key_data(tree["key"]), jax.random.key_data(_tree(2)["key"])
        )
        assert len(messages) == 1 and "\n" not in messages[0]
        assert "skipping checkpoint 3" in messages[0]
        # the bad one is moved aside, so the run can save step 3 again
        assert ck.all_steps() == [1, 2]
        assert (tmp_path / "corrupt" / "3").is_dir()
        ck.save(3, _tree(3), {"step": 3})
    with Checkpointer(tmp_path, create=False) as ck:
        tree, meta, messages = _restore_warns(ck)
    assert meta == {"step": 3} and messages == []
    np.testing.assert_array_equal(tree["w"], _tree(3)["w"])


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_damaged_step_with_a_manifest_never_reaches_orbax(tmp_path, monkeypatch, corruption):
    """The files are checked against the manifest first: no TensorStore read of a damaged
    file is started (those fail asynchronously and print tracebacks of their own)."""
    _write(tmp_path)
    CORRUPTIONS[corruption](tmp_path / "3")
    with Checkpointer(tmp_path, create=False) as ck:
        opened = []
        restore = ck._manager.restore
        monkeypatch.setattr(
            ck._manager, "restore", lambda step, **kw: opened.append(step) or restore(step, **kw)
        )
        _, meta, messages = _restore_warns(ck)
    assert meta == {"step": 2} and opened == [2]
    assert len(messages) == 1 and "skipping checkpoint 3" in messages[0]


def test_every_saved_step_gets_a_manifest_of_all_its_files(tmp_path):
    with Checkpointer(tmp_path, max_to_keep=2) as ck:
        ck.save(1, _tree(1), {"step": 1})
        ck.save(2, _tree(2), {"step": 2})  # the manifest of step 1 is written here
        assert (tmp_path / "1" / MANIFEST).is_file()
        ck.wait()
        assert (tmp_path / "2" / MANIFEST).is_file()
        ck.save(3, _tree(3), {"step": 3})  # step 1 is deleted
    assert sorted(os.listdir(tmp_path)) == ["2", "3"]
    for step in (2, 3):
        listed = json.loads((tmp_path / str(step) / MANIFEST).read_text())["files"]
        on_disk = {
            p.relative_to(tmp_path / str(step)).as_posix()
            for p in (tmp_path / str(step)).rglob("*")
            if p.is_file() and p.name != MANIFEST
        }
        assert set(listed) == on_disk and any(name.startswith("state/") for name in listed)
        assert verify_manifest(tmp_path / str(step))
    with Checkpointer(tmp_path / "sync", async_save=False) as ck:
        ck.save(1, _tree(1), {"step": 1})
        assert verify_manifest(tmp_path / "sync" / "1")


@pytest.mark.parametrize("text", ["{{{ not json", "[1, 2]", '{"files": {"../x": {}}}'])
def test_a_garbage_manifest_is_a_damaged_step(tmp_path, text):
    _write(tmp_path)
    (tmp_path / "3" / MANIFEST).write_text(text)
    with Checkpointer(tmp_path, create=False) as ck:
        _, meta, messages = _restore_warns(ck)
    assert meta == {"step": 2}
    assert len(messages) == 1 and MANIFEST in messages[0]


def test_an_empty_newer_step_folder_is_skipped(tmp_path):
    _write(tmp_path)
    (tmp_path / "7").mkdir()
    with Checkpointer(tmp_path, create=False) as ck:
        _, meta, messages = _restore_warns(ck)
    assert meta == {"step": 3}
    assert len(messages) == 1 and "checkpoint 7" in messages[0]
    assert (tmp_path / "7").is_dir()  # read-only: nothing is moved


def test_no_good_checkpoint_raises_checkpoint_error_naming_every_step(tmp_path):
    _write(tmp_path)
    _flip(tmp_path / "3")
    _no_metadata(tmp_path / "2")
    _truncate(tmp_path / "1")
    with Checkpointer(tmp_path, create=False) as ck:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            with pytest.raises(CheckpointError, match=r"no good checkpoint") as info:
                ck.restore(TEMPLATE)
    message = str(info.value)
    assert all(f"step {s}:" in message for s in (1, 2, 3))
    assert "_METADATA" in message
    assert isinstance(info.value, ValueError)


def test_an_explicit_bad_or_missing_step_raises_without_fallback(tmp_path):
    _write(tmp_path)
    _flip(tmp_path / "2")
    with Checkpointer(tmp_path, create=False) as ck:
        with pytest.raises(CheckpointError, match=r"checkpoint 2 .*cannot be restored"):
            ck.restore(TEMPLATE, 2)
        with pytest.raises(CheckpointError, match=r"`step`=5.*\[1, 2, 3\]"):
            ck.restore(TEMPLATE, 5)
        tree, meta = ck.restore(TEMPLATE, 3)
    assert meta == {"step": 3} and int(tree["n"]) == 3


def test_no_checkpoint_at_all_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        Checkpointer(tmp_path / "empty").restore(TEMPLATE)


def test_the_digest_is_stored_atomically_with_the_checkpoint(tmp_path):
    _write(tmp_path, steps=(4,))
    stored = json.loads((tmp_path / "4" / "meta" / "metadata").read_text())
    host = jax.tree.map(np.asarray, {**_tree(4), "key": jax.random.key_data(_tree(4)["key"])})
    assert stored["__jrnn_sha256__"] == tree_digest(host, {"step": 4})
    # no temporary folder is left behind: the step folder is complete
    assert sorted(os.listdir(tmp_path)) == ["4"]


def test_checkpoints_without_a_digest_restore_unverified(tmp_path):
    """Checkpoints written by the plain Orbax layout of earlier jrnn versions still load."""
    host = jax.tree.map(np.asarray, {**_tree(1), "key": jax.random.key_data(_tree(1)["key"])})
    manager = ocp.CheckpointManager(tmp_path, options=ocp.CheckpointManagerOptions(create=True))
    manager.save(
        1,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(host), meta=ocp.args.JsonSave({"step": 1})
        ),
    )
    manager.wait_until_finished()
    manager.close()
    with Checkpointer(tmp_path, create=False) as ck:
        tree, meta, messages = _restore_warns(ck)
    assert meta == {"step": 1} and messages == []
    np.testing.assert_array_equal(tree["w"], _tree(1)["w"])


def test_save_checks_its_arguments(tmp_path):
    with Checkpointer(tmp_path) as ck:
        with pytest.raises(ValueError, match="`step`"):
            ck.save(-1, _tree(1), {})
        with pytest.raises(TypeError, match="`metadata`"):
            ck.save(1, _tree(1), [("step", 1)])
        with pytest.raises(TypeError, match="`metadata` must be JSON"):
            ck.save(1, _tree(1), {"f": object()})
        with pytest.raises(ValueError, match="__jrnn_sha256__"):
            ck.save(1, _tree(1), {"__jrnn_sha256__": "x"})
    with pytest.raises(ValueError, match="`max_to_keep`"):
        Checkpointer(tmp_path, max_to_keep=0)
