"""Tests for jrnn.data: corpora, vocabulary and stateless batching."""

from __future__ import annotations

import functools
import json
import math
import sysconfig
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jrnn import data, losses

SMALL = 300_000


@pytest.fixture(scope="module")
def stdlib_corpus() -> data.Corpus:
    return data.load_corpus(max_chars=SMALL)


# ------------------------------------------------------------------ standard-library corpus


def test_stdlib_files_exclude_tests_and_site_packages():
    files = data.stdlib_source_files()
    root = Path(sysconfig.get_paths()["stdlib"])
    rel = [f.relative_to(root).as_posix() for f in files]
    assert rel == sorted(rel)
    assert "os.py" in rel and "json/__init__.py" in rel
    for r in rel:
        parts = r.split("/")
        assert r.endswith(".py")
        assert not any(p in ("test", "tests", "idle_test", "site-packages") for p in parts), r
        assert not any(p.startswith("test_") for p in parts), r


def test_stdlib_corpus_is_deterministic(stdlib_corpus):
    again = data.load_corpus(max_chars=SMALL)
    np.testing.assert_array_equal(stdlib_corpus.train, again.train)
    np.testing.assert_array_equal(stdlib_corpus.val, again.val)
    assert stdlib_corpus.vocab == again.vocab
    assert stdlib_corpus.val_files == again.val_files


def test_stdlib_corpus_split_and_size(stdlib_corpus):
    c = stdlib_corpus
    assert c.split == "file"
    assert c.train.dtype == np.int32 and c.val.dtype == np.int32
    assert c.train.ndim == 1 and c.val.ndim == 1
    assert len(c.train) + len(c.val) == SMALL  # capped exactly
    assert c.num_val_files >= 1 and c.num_train_files > c.num_val_files
    assert not set(c.train_files) & set(c.val_files)
    assert "standard library" in c.source
    assert c.train.min() >= 1  # every training char is in the vocabulary
    assert c.train.max() < c.vocab.size and c.val.max() < c.vocab.size


def test_stdlib_corpus_decodes_to_file_text(stdlib_corpus):
    root = Path(sysconfig.get_paths()["stdlib"])
    first = (root / stdlib_corpus.train_files[0]).read_bytes().decode("utf-8", "replace")
    assert stdlib_corpus.vocab.decode(stdlib_corpus.train[: len(first)]) == first


# ------------------------------------------------------------------ file and folder corpora


def test_single_file_split_by_characters(tmp_path):
    text = "hello world, the quick brown fox.\n" * 30
    path = tmp_path / "a.txt"
    path.write_text(text, encoding="utf-8")
    c = data.load_corpus(path, val_fraction=0.1)
    assert c.split == "chars"
    assert len(c.val) == round(len(text) * 0.1)
    assert c.vocab.decode(c.train) + c.vocab.decode(c.val) == text
    assert c.train_files == ("a.txt",)
    c0 = data.load_corpus(str(path), val_fraction=0.0)
    assert len(c0.val) == 0 and len(c0.train) == len(text)
    capped = data.load_corpus(path, max_chars=100)
    assert len(capped.train) + len(capped.val) == 100


def test_single_file_unknown_chars_in_val(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("ab" * 50 + "zz", encoding="utf-8")
    c = data.load_corpus(path, val_fraction=0.02)
    assert c.vocab.chars == ("a", "b")
    np.testing.assert_array_equal(c.val, [0, 0])


def test_folder_split_by_file_skips_binary_and_hidden(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".git").mkdir()
    texts = {f"f{i}.txt": f"file {i} text\n" * (i + 1) for i in range(4)}
    texts["sub/g.md"] = "# nested ünïcode\n"
    for name, t in texts.items():
        (tmp_path / name).write_text(t, encoding="utf-8")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "img.dat").write_bytes(bytes(range(128, 256)) * 4)
    (tmp_path / ".hidden").write_text("secret", encoding="utf-8")
    (tmp_path / ".git" / "config").write_text("[core]", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")

    c = data.load_corpus(tmp_path, val_fraction=0.2)
    assert c.split == "file"
    assert sorted(c.train_files + c.val_files) == sorted(texts)
    assert len(c.val_files) == 1 and not set(c.train_files) & set(c.val_files)
    decoded_val = c.vocab.decode(c.val).replace("\ufffd", "?")
    val_text = "".join(texts[n] for n in c.val_files)
    assert len(decoded_val) == len(val_text)
    assert len(c.train) == sum(len(texts[n]) for n in c.train_files)
    assert data.load_corpus(tmp_path, val_fraction=0.2).val_files == c.val_files


def test_folder_with_one_file_splits_by_characters(tmp_path):
    (tmp_path / "only.txt").write_text("abcdefghij" * 10, encoding="utf-8")
    c = data.load_corpus(tmp_path)
    assert c.split == "chars" and len(c.val) == 5


def test_file_split_holds_out_about_val_fraction_of_files(tmp_path):
    for i in range(40):
        (tmp_path / f"{i:02d}.txt").write_text(f"text {i}\n", encoding="utf-8")
    c = data.load_corpus(tmp_path, val_fraction=0.1)
    assert c.num_val_files == 4 and c.num_train_files == 36


# ------------------------------------------------------------------ corpus errors


def test_missing_path_raises_file_not_found(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        data.load_corpus(missing)


def test_empty_file_and_folders_raise(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="corpus .* is empty"):
        data.load_corpus(empty)
    folder = tmp_path / "dir"
    folder.mkdir()
    with pytest.raises(ValueError, match="corpus .* is empty"):
        data.load_corpus(folder)
    (folder / "x.bin").write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="corpus .* is empty"):
        data.load_corpus(folder)


def test_bad_corpus_arguments(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("abc", encoding="utf-8")
    with pytest.raises(ValueError, match="val_fraction"):
        data.load_corpus(path, val_fraction=1.0)
    with pytest.raises(ValueError, match="max_chars"):
        data.load_corpus(path, max_chars=0)
    path.write_text("a", encoding="utf-8")
    with pytest.raises(ValueError, match="too few"):
        data.load_corpus(path)


# ------------------------------------------------------------------ vocabulary


def test_vocab_round_trip_and_unknown():
    v = data.CharVocab.from_text("hello world")
    assert v.chars == tuple(sorted(set("hello world")))
    assert v.size == len(set("hello world")) + 1
    ids = v.encode("hello world")
    assert ids.dtype == np.int32 and ids.min() >= 1
    assert v.decode(ids) == "hello world"
    np.testing.assert_array_equal(v.encode("hex€😀"), [v.encode("h")[0], v.encode("e")[0], 0, 0, 0])
    assert v.decode([0]) == "\ufffd"
    assert v.encode("").shape == (0,) and v.decode([]) == ""


def test_vocab_json_round_trip_is_exact():
    v = data.CharVocab.from_text("zebra\n\tÅ😀 quick\x00")
    restored = data.CharVocab.from_json(json.loads(json.dumps(v.to_json())))
    assert restored == v
    s = "the zebra 😀 Å\x00?"
    np.testing.assert_array_equal(restored.encode(s), v.encode(s))


def test_vocab_min_count_and_max_size():
    text = "aaaabbbcc d"
    v = data.CharVocab.from_text(text, min_count=2)
    assert v.chars == ("a", "b", "c")
    v2 = data.CharVocab.from_text(text, max_size=3)
    assert v2.chars == ("a", "b") and v2.size == 3


def test_vocab_errors():
    v = data.CharVocab.from_text("abc")
    with pytest.raises(ValueError, match="ids must lie"):
        v.decode([4])
    with pytest.raises(ValueError, match="shape"):
        v.decode(np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match="distinct"):
        data.CharVocab.from_json(["a", "a"])
    with pytest.raises(ValueError, match="single characters"):
        data.CharVocab.from_json(["ab"])
    with pytest.raises(TypeError):
        data.CharVocab.from_json("abc")
    with pytest.raises(ValueError, match="min_count"):
        data.CharVocab.from_text("abc", min_count=0)


# ------------------------------------------------------------------ random windows


def test_random_windows_deterministic_and_in_bounds():
    n, b, t = 50, 64, 7
    ids = jnp.arange(n, dtype=jnp.int32)
    key = jax.random.key(0)
    w = data.random_windows(ids, key, b, t)
    assert w.shape == (b, t + 1) and w.dtype == jnp.int32
    np.testing.assert_array_equal(w, data.random_windows(ids, key, b, t))
    assert not np.array_equal(w, data.random_windows(ids, jax.random.key(1), b, t))
    w = np.asarray(w)
    # A window is ids[s : s + T + 1]: consecutive, so targets are inputs shifted by one.
    np.testing.assert_array_equal(w[:, 1:], w[:, :-1] + 1)
    assert w.min() >= 0 and w.max() <= n - 1


def test_random_windows_jit_and_uniform_starts():
    n, t = 12, 4
    ids = np.arange(n, dtype=np.int32)
    f = jax.jit(data.random_windows, static_argnums=(2, 3))
    w = np.asarray(f(ids, jax.random.key(3), 2000, t))
    np.testing.assert_array_equal(w, data.random_windows(ids, jax.random.key(3), 2000, t))
    starts = np.bincount(w[:, 0], minlength=n)
    assert set(np.nonzero(starts)[0]) == set(range(n - t))  # every start 0..N-T-1
    assert starts.min(initial=10**9, where=starts > 0) > 2000 / (n - t) / 2


# ------------------------------------------------------------------ stream windows


def test_stream_windows_consecutive_overlap_and_wrap():
    n, b, t = 103, 4, 6
    seg = n // b
    ids = jnp.arange(n, dtype=jnp.int32)
    prev = None
    for k in range(12):  # 12 * 6 = 72 > seg = 25: wraps several times
        w = np.asarray(data.stream_windows(ids, b, t, k))
        assert w.shape == (b, t + 1)
        expect = np.arange(b)[:, None] * seg + (k * t + np.arange(t + 1))[None, :] % seg
        np.testing.assert_array_equal(w, expect)
        if prev is not None:
            np.testing.assert_array_equal(prev[:, -1], w[:, 0])  # overlap by one token
        prev = w
    assert np.asarray(data.stream_windows(ids, b, t, 0)).max() < b * seg  # tail unused


def test_stream_windows_traced_index_matches_and_no_overflow():
    n, b, t = 1000, 3, 97
    ids = jnp.arange(n, dtype=jnp.int32)
    f = jax.jit(data.stream_windows, static_argnums=(1, 2))
    for k in (0, 1, 5, 123, 2**31 - 1):
        got = f(ids, b, t, jnp.int32(k))
        np.testing.assert_array_equal(got, data.stream_windows(ids, b, t, k))
        seg = n // b
        want = np.arange(b)[:, None] * seg + ((k * t) % seg + np.arange(t + 1))[None, :] % seg
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------ eval windows


@pytest.mark.parametrize(
    ("n", "b", "t"), [(101, 4, 8), (50, 3, 7), (33, 8, 4), (5, 3, 10), (2, 1, 1)]
)
def test_eval_windows_cover_each_target_exactly_once(n, b, t):
    ids = np.arange(n, dtype=np.int32) + 1000
    batches = list(data.eval_windows(ids, b, t))
    assert len(batches) == data.num_eval_batches(n, b, t)
    seen = []
    for k, batch in enumerate(batches):
        w, lengths = batch.windows, batch.lengths
        assert w.shape == (b, t + 1) and w.dtype == np.int32 and lengths.shape == (b,)
        for row in range(b):
            valid = lengths[row]
            if valid:
                np.testing.assert_array_equal(w[row, 1 : valid + 1], w[row, :valid] + 1)
                seen.extend(w[row, 1 : valid + 1].tolist())
                if k + 1 < len(batches) and batches[k + 1].lengths[row]:
                    assert batches[k + 1].windows[row, 0] == w[row, t]  # rows continue
            assert np.all(w[row, valid + 1 :] == 0)
    assert sorted(seen) == list(range(1001, 1000 + n))
    assert sum(int(bt.lengths.sum()) for bt in batches) == n - 1


def test_eval_windows_max_batches_and_exact_mean_loss():
    n, b, t, k = 90, 4, 8, 5
    ids = np.random.default_rng(0).integers(0, k, n).astype(np.int32)
    assert len(list(data.eval_windows(ids, b, t, max_batches=1))) == 1
    total, count = 0.0, 0
    xent_sum = jax.jit(functools.partial(losses.sequence_softmax_cross_entropy, reduction="sum"))
    for w, lengths in data.eval_windows(ids, b, t):
        logits = jnp.zeros((b, t, k), jnp.float32)  # uniform predictor: ln k per token
        total += float(xent_sum(logits, w[:, 1:], lengths).sum())
        count += int(lengths.sum())
    assert count == n - 1
    assert total / count == pytest.approx(math.log(k), rel=1e-6)


# ------------------------------------------------------------------ batching errors


def test_batching_errors():
    ids = jnp.arange(20, dtype=jnp.int32)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"seq_len=19.*length 20"):
        data.random_windows(ids, key, 2, 19)
    with pytest.raises(ValueError, match=r"seq_len=30.*length 20"):
        data.stream_windows(ids, 2, 30, 0)
    with pytest.raises(ValueError, match=r"seq_len=10.*batch_size 2"):
        data.stream_windows(ids, 2, 10, 0)
    for fn in (
        lambda b, t: data.random_windows(ids, key, b, t),
        lambda b, t: data.stream_windows(ids, b, t, 0),
        lambda b, t: data.eval_windows(ids, b, t),
    ):
        with pytest.raises(ValueError, match="batch_size must be positive"):
            fn(0, 4)
        with pytest.raises(ValueError, match="seq_len must be positive"):
            fn(2, -1)
    with pytest.raises(ValueError, match="max_batches"):
        data.eval_windows(ids, 2, 4, max_batches=0)
    with pytest.raises(ValueError, match="at least 2"):
        data.eval_windows(ids[:1], 2, 4)
    with pytest.raises(ValueError, match="shape"):
        data.random_windows(ids.reshape(4, 5), key, 2, 2)
    with pytest.raises(TypeError, match="integer"):
        data.random_windows(ids.astype(jnp.float32), key, 2, 2)
