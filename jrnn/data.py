"""Text data for character-level language models: corpora, vocabulary and batching.

Corpora
    [`load_corpus`][jrnn.data.load_corpus] reads text (by default the running Python's
    standard-library source, test suites excluded), splits off a held-out set (by file where there
    are several files, else by characters), builds a [`CharVocab`][jrnn.data.CharVocab] from the
    training part and encodes both parts into int32 id arrays.

Batching (all stateless: a batch is a pure function of its key or step index, so
training resumes exactly from a step count)
    * [`random_windows`][jrnn.data.random_windows] -- uniformly random windows, ``[B, T+1]``
      (jittable);
    * [`stream_windows`][jrnn.data.stream_windows] -- ``B`` contiguous streams for truncated BPTT,
      window ``index`` of each (jittable, ``index`` may be traced);
    * [`eval_windows`][jrnn.data.eval_windows] -- deterministic windows covering a held-out array
      exactly once, with per-row lengths so the held-out bits per character are exact.

    A window of ``T+1`` ids gives ``inputs = w[:, :-1]`` and ``targets = w[:, 1:]``.

The synthetic tasks (adding problem, copy memory, variable-length sequence tasks) live in
[`jrnn.seqtasks`][].
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "DEFAULT_MAX_CHARS",
    "CharVocab",
    "Corpus",
    "EvalBatch",
    "eval_windows",
    "load_corpus",
    "num_eval_batches",
    "random_windows",
    "stdlib_source_files",
    "stream_windows",
]

DEFAULT_MAX_CHARS = 8_000_000
"""Default cap on the number of characters [`load_corpus`][jrnn.data.load_corpus] reads."""

_SNIFF_BYTES = 8192
_MAX_REPLACEMENT_FRACTION = 0.01


# --------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------


def _code_points(text: str) -> np.ndarray:
    """Unicode code points of ``text`` as uint32 ``[len(text)]`` (no Python loop)."""
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)


class CharVocab:
    """A character vocabulary: id 0 is reserved for unknown characters.

    ``chars[i]`` has id ``i + 1``; ``size == len(chars) + 1``. Build one from training
    text with `from_text` (or `from_counts`), save it with `to_json`
    (a JSON-serialisable list of the characters, in id order) and restore it exactly
    with `from_json`.
    """

    UNK_ID = 0

    __slots__ = ("_chars", "_table", "_unk")

    def __init__(self, chars: Sequence[str], unk: str = "\ufffd") -> None:
        """Creates a vocabulary whose ids are ``1 + position in chars``.

        Args:
          chars: distinct single characters, in id order.
          unk: the character [`decode`][jrnn.decode] writes for id 0.
        """
        if isinstance(chars, str):
            chars = list(chars)
        chars = tuple(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"vocabulary entries must be single characters, got {c!r}")
        if len(set(chars)) != len(chars):
            raise ValueError("vocabulary characters must be distinct")
        if not isinstance(unk, str) or len(unk) != 1:
            raise ValueError(f"unk must be a single character, got {unk!r}")
        self._chars = chars
        self._unk = unk
        cps = _code_points("".join(chars)).astype(np.int64)
        table = np.zeros(int(cps.max()) + 1 if cps.size else 1, dtype=np.int32)
        table[cps] = np.arange(1, len(chars) + 1, dtype=np.int32)
        self._table = table

    @classmethod
    def from_counts(
        cls, counts: dict[str, int], min_count: int = 1, max_size: int | None = None
    ) -> CharVocab:
        """Builds a vocabulary from character counts.

        Keeps characters seen at least ``min_count`` times; with ``max_size`` keeps
        only the ``max_size - 1`` most frequent of those (ties broken by character),
        so ``size <= max_size``. The kept characters are sorted by code point.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size must be >= 1 (it includes the unknown id), got {max_size}")
        kept = [c for c, n in counts.items() if n >= min_count]
        if max_size is not None and len(kept) > max_size - 1:
            kept = sorted(kept, key=lambda c: (-counts[c], c))[: max_size - 1]
        return cls(sorted(kept))

    @classmethod
    def from_text(cls, text: str, min_count: int = 1, max_size: int | None = None) -> CharVocab:
        """Builds a vocabulary from the characters of ``text`` (see `from_counts`)."""
        return cls.from_counts(_count_chars(text), min_count=min_count, max_size=max_size)

    @property
    def chars(self) -> tuple[str, ...]:
        """The known characters in id order (id ``i + 1`` for ``chars[i]``)."""
        return self._chars

    @property
    def size(self) -> int:
        """Number of ids, including the unknown id 0."""
        return len(self._chars) + 1

    def __len__(self) -> int:
        return self.size

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CharVocab):
            return NotImplemented
        return self._chars == other._chars and self._unk == other._unk

    def __hash__(self) -> int:
        return hash((self._chars, self._unk))

    def __repr__(self) -> str:
        return f"CharVocab(size={self.size})"

    def encode(self, text: str) -> np.ndarray:
        """Maps ``text`` to int32 ids ``[len(text)]``; unknown characters become 0."""
        return self._encode_code_points(_code_points(text))

    def _encode_code_points(self, cps: np.ndarray) -> np.ndarray:
        table = self._table
        inside = cps < table.shape[0]
        ids = table[np.where(inside, cps, 0)]
        ids[~inside] = self.UNK_ID
        return ids

    def decode(self, ids: jax.typing.ArrayLike | Sequence[int]) -> str:
        """Maps ids ``[T]`` back to a string; id 0 decodes to ``unk`` ('\\ufffd')."""
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"decode expects ids of shape [T], got {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"ids must be integers, got {arr.dtype}")
        arr = arr.astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.size):
            raise ValueError(
                f"ids must lie in [0, {self.size}), got range [{arr.min()}, {arr.max()}]"
            )
        lookup = (self._unk, *self._chars)
        return "".join(lookup[i] for i in arr.tolist())

    def to_json(self) -> list[str]:
        """The characters in id order, a JSON-serialisable list (id 0 is implicit)."""
        return list(self._chars)

    @classmethod
    def from_json(cls, chars: Sequence[str]) -> CharVocab:
        """Restores exactly the vocabulary that `to_json` returned."""
        if isinstance(chars, str) or not isinstance(chars, Sequence):
            raise TypeError(f"from_json expects a list of characters, got {type(chars).__name__}")
        return cls(list(chars))


def _count_chars(text: str) -> dict[str, int]:
    values, counts = np.unique(_code_points(text), return_counts=True)
    return {chr(int(v)): int(n) for v, n in zip(values, counts, strict=True)}


# --------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------


class Corpus(NamedTuple):
    """An encoded text corpus.

    Attributes:
      train: int32 ``[N_train]`` training ids.
      val: int32 ``[N_val]`` held-out ids (may be empty when ``val_fraction == 0``).
      vocab: the [`CharVocab`][jrnn.data.CharVocab] built from the training text only.
      source: a human-readable description of where the text came from.
      train_files: the files (relative names) the training text came from.
      val_files: the files the held-out text came from.
      split: ``"file"`` (held-out files are disjoint from training files) or
        ``"chars"`` (one text, the last characters held out).
    """

    train: np.ndarray
    val: np.ndarray
    vocab: CharVocab
    source: str
    train_files: tuple[str, ...]
    val_files: tuple[str, ...]
    split: str

    @property
    def num_train_files(self) -> int:
        return len(self.train_files)

    @property
    def num_val_files(self) -> int:
        return len(self.val_files)


def _is_test_part(part: str) -> bool:
    stem = part[:-3] if part.endswith(".py") else part
    return stem in ("test", "tests") or stem.startswith("test_") or stem.endswith("_test")


def stdlib_source_files(stdlib: str | Path | None = None) -> list[Path]:
    """The standard library's ``*.py`` files, test code and site-packages excluded.

    Args:
      stdlib: the standard-library folder; default ``sysconfig.get_paths()["stdlib"]``.

    Returns:
      Paths sorted by their relative POSIX path. A file is excluded when any part of
      its relative path is ``test``/``tests``, starts with ``test_`` or ends with
      ``_test`` (``test/``, ``idlelib/idle_test/``, ``lib2to3/tests/``, ...), or lies
      under ``site-packages``/``dist-packages`` or ``__pycache__``.
    """
    root = Path(sysconfig.get_paths()["stdlib"] if stdlib is None else stdlib)
    skip_dirs = {"site-packages", "dist-packages", "__pycache__"}
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip_dirs and not _is_test_part(d)]
        for name in filenames:
            if name.endswith(".py") and not _is_test_part(name):
                path = Path(dirpath, name)
                found.append((path.relative_to(root).as_posix(), path))
    found.sort()
    return [p for _, p in found]


def read_text(path: Path, limit: int | None, skip_binary: bool) -> str | None:
    """Reads UTF-8 text (errors replaced), up to ``limit`` characters.

    With ``skip_binary``, returns None for files that look binary: a NUL byte in the
    first 8 KiB, or more than 1% of characters undecodable as UTF-8.
    """
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
        if skip_binary and b"\x00" in head:
            return None
        data = head + f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        if skip_binary:
            bad = text.count("\ufffd") - data.count("\ufffd".encode())
            if bad > _MAX_REPLACEMENT_FRACTION * max(len(text), 1):
                return None
    return text if limit is None else text[:limit]


def _folder_files(root: Path) -> list[Path]:
    """Regular files under ``root`` (recursive, hidden entries skipped), sorted."""
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        for name in filenames:
            path = Path(dirpath, name)
            if not name.startswith(".") and path.is_file():
                found.append((path.relative_to(root).as_posix(), path))
    found.sort()
    return [p for _, p in found]


def _val_file_indices(num_files: int, val_fraction: float) -> set[int]:
    """Evenly spaced held-out file indices: ``max(1, round(n * val_fraction))`` of them."""
    if val_fraction == 0 or num_files < 2:
        return set()
    num_val = min(max(1, round(num_files * val_fraction)), num_files - 1)
    return {int((j + 0.5) * num_files / num_val) for j in range(num_val)}


def _encode_into(vocab: CharVocab, cps_list: list[np.ndarray]) -> np.ndarray:
    """Encodes per-file code points into one preallocated int32 array, freeing as it goes."""
    out = np.empty(sum(c.shape[0] for c in cps_list), dtype=np.int32)
    pos = 0
    while cps_list:
        cps = cps_list.pop(0)
        out[pos : pos + cps.shape[0]] = vocab._encode_code_points(cps)
        pos += cps.shape[0]
    return out


def _corpus_files(path: str | Path | None) -> tuple[list[Path], Path, str, bool]:
    """``(files, base, source, skip_binary)`` of a corpus source (see
    [`load_corpus`][jrnn.data.load_corpus])."""
    if path is None:
        root = Path(sysconfig.get_paths()["stdlib"])
        source = f"Python {sys.version.split()[0]} standard library source at {root}"
        return stdlib_source_files(root), root, source, False
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"corpus path does not exist: {str(path)!r}")
    if root.is_dir():
        return _folder_files(root), root, f"text files under {root}", True
    return [root], root.parent, f"file {root}", False


def _read_code_points(files, base: Path, max_chars: int | None, skip_binary: bool):
    """``(names, code points per file, total characters)``, file by file until
    ``max_chars`` (each text is dropped once converted to code points)."""
    names: list[str] = []
    cps_list: list[np.ndarray] = []
    total = 0
    for file in files:
        remaining = None if max_chars is None else max_chars - total
        if remaining is not None and remaining <= 0:
            break
        text = read_text(file, remaining, skip_binary)
        if not text:
            continue
        cps_list.append(_code_points(text))
        names.append(file.relative_to(base).as_posix())
        total += len(text)
        del text
    return names, cps_list, total


def _split(names, cps_list, val_fraction: float, source: str):
    """``(split, train_cps, val_cps, train_files, val_files)``: by file with at least two
    files (evenly spaced held-out files), else by characters (the last ones held out)."""
    if len(cps_list) >= 2:
        val_idx = _val_file_indices(len(cps_list), val_fraction)
        return (
            "file",
            [c for i, c in enumerate(cps_list) if i not in val_idx],
            [c for i, c in enumerate(cps_list) if i in val_idx],
            tuple(n for i, n in enumerate(names) if i not in val_idx),
            tuple(n for i, n in enumerate(names) if i in val_idx),
        )
    (cps,) = cps_list
    num_val = 0 if val_fraction == 0 else max(1, round(cps.shape[0] * val_fraction))
    if cps.shape[0] - num_val < 1:
        raise ValueError(
            f"corpus {source} has {cps.shape[0]} characters: too few to hold out "
            f"val_fraction={val_fraction} and keep training text"
        )
    cut = cps.shape[0] - num_val
    val_cps = [cps[cut:]] if num_val else []
    return "chars", [cps[:cut]], val_cps, tuple(names), (tuple(names) if num_val else ())


def load_corpus(
    path: str | Path | None = None,
    val_fraction: float = 0.05,
    max_chars: int | None = DEFAULT_MAX_CHARS,
    *,
    min_count: int = 1,
    max_vocab: int | None = None,
) -> Corpus:
    """Loads, splits and encodes a text corpus.

    Sources:
      * ``None``: the running Python's standard-library source
        ([`stdlib_source_files`][jrnn.data.stdlib_source_files]), files taken in sorted order until
        ``max_chars`` characters (the last file is cut), split by file.
      * a file: its UTF-8 text (undecodable bytes replaced), the last
        ``val_fraction`` of its characters held out.
      * a folder: every regular text file inside (recursive, sorted by relative path;
        hidden files/folders skipped; binary files -- a NUL byte in the first 8 KiB or
        over 1% undecodable bytes -- skipped), split by file when there are at least
        two files, else by characters.

    A file split holds out ``max(1, round(n_files * val_fraction))`` evenly spaced
    files (never all of them). Text is read as-is (no newline translation). The
    vocabulary is built from the training text only; held-out characters it lacks
    map to id 0.

    Args:
      path: the corpus (None, a file or a folder).
      val_fraction: fraction held out, in ``[0, 1)``; 0 gives an empty ``val``.
      max_chars: cap on the characters read (applies to every source); None: no cap.
      min_count: a character needs this many training occurrences to get an id.
      max_vocab: optional cap on the vocabulary size (including the unknown id).

    Returns:
      A [`Corpus`][jrnn.data.Corpus] with int32 ``train`` ``[N_train]`` and ``val`` ``[N_val]``.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: bad arguments, or no text (``"corpus ... is empty"``), or too little
        text to keep a non-empty training part.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if max_chars is not None and max_chars <= 0:
        raise ValueError(f"max_chars must be positive or None, got {max_chars}")

    files, base, source, skip_binary = _corpus_files(path)
    names, cps_list, total = _read_code_points(files, base, max_chars, skip_binary)
    if total == 0:
        raise ValueError(f"corpus {source} is empty (no text found)")
    if max_chars is not None and total >= max_chars:
        source += f" (first {max_chars:,} characters)"
    split, train_cps, val_cps, train_files, val_files = _split(
        names, cps_list, val_fraction, source
    )
    del cps_list

    char_counts: dict[str, int] = {}
    for cps in train_cps:
        values, counts = np.unique(cps, return_counts=True)
        for v, n in zip(values.tolist(), counts.tolist(), strict=True):
            c = chr(v)
            char_counts[c] = char_counts.get(c, 0) + n
    vocab = CharVocab.from_counts(char_counts, min_count=min_count, max_size=max_vocab)
    train = _encode_into(vocab, train_cps)
    val = _encode_into(vocab, val_cps)
    return Corpus(train, val, vocab, source, train_files, val_files, split)


# --------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------


def _check_ids(ids: jax.typing.ArrayLike) -> jax.Array:
    ids = jnp.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must have shape [N], got {ids.shape}")
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"ids must have an integer dtype, got {ids.dtype}")
    return ids


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int | np.integer) or isinstance(value, bool):
            raise TypeError(f"{name} must be a static Python int, got {type(value).__name__}")
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


def random_windows(
    ids: jax.typing.ArrayLike, key: jax.Array, batch_size: int, seq_len: int
) -> jax.Array:
    """Windows of ``seq_len + 1`` consecutive ids at uniformly random offsets.

    Start offsets are drawn uniformly from ``[0, N - seq_len - 1]``, so every window
    lies inside ``ids``. Jittable with ``batch_size`` and ``seq_len`` static.

    Args:
      ids: int ``[N]`` token ids.
      key: a PRNG key; the batch is a pure function of it.
      batch_size: ``B``.
      seq_len: ``T``; must satisfy ``T < N - 1``.

    Returns:
      int32 ``[B, T+1]``; inputs are ``[:, :-1]``, targets ``[:, 1:]``.
    """
    ids = _check_ids(ids)
    _check_positive(batch_size=batch_size, seq_len=seq_len)
    n = ids.shape[0]
    if seq_len >= n - 1:
        raise ValueError(
            f"seq_len={seq_len} is too long for a corpus of length {n}: need seq_len < {n - 1}"
        )
    starts = jax.random.randint(key, (batch_size,), 0, n - seq_len, dtype=jnp.int32)
    ids = ids.astype(jnp.int32)
    return jax.vmap(lambda s: jax.lax.dynamic_slice(ids, (s,), (seq_len + 1,)))(starts)


def stream_windows(
    ids: jax.typing.ArrayLike, batch_size: int, seq_len: int, index: int | jax.Array
) -> jax.Array:
    """Window ``index`` of ``B`` parallel contiguous streams, for truncated BPTT.

    ``ids`` is cut into ``B`` segments of length ``L = N // B`` (the last ``N % B``
    ids are unused); stream ``b`` reads segment ``b``, and its window ``k`` holds
    segment positions ``(k*T + j) mod L`` for ``j = 0..T``. Consecutive windows
    overlap by one id (window ``k``'s last target is window ``k+1``'s first input),
    so carrying the recurrent state from batch ``k`` to ``k+1`` continues each
    stream; after ``L`` ids a stream wraps around to its segment's start.

    Args:
      ids: int ``[N]`` token ids.
      batch_size: ``B`` (static).
      seq_len: ``T`` (static); must satisfy ``T < N // B``.
      index: the window number, a Python int or an int scalar (may be traced; any
        value is valid, computed modulo the segment length without overflow).

    Returns:
      int32 ``[B, T+1]``.
    """
    ids = _check_ids(ids)
    _check_positive(batch_size=batch_size, seq_len=seq_len)
    n = ids.shape[0]
    if seq_len >= n - 1:
        raise ValueError(
            f"seq_len={seq_len} is too long for a corpus of length {n}: need seq_len < {n - 1}"
        )
    seg = n // batch_size
    if seq_len >= seg:
        raise ValueError(
            f"seq_len={seq_len} must be shorter than each stream's segment, corpus length "
            f"{n} // batch_size {batch_size} = {seg}"
        )
    offset = _window_offset(index, seq_len, seg)
    pos = (offset + jnp.arange(seq_len + 1, dtype=jnp.uint32)) % jnp.uint32(seg)
    starts = jnp.arange(batch_size, dtype=jnp.int32) * seg
    gather = starts[:, None] + pos.astype(jnp.int32)[None, :]
    return ids.astype(jnp.int32)[gather]


def _window_offset(index: int | jax.Array, seq_len: int, seg: int) -> jax.Array:
    """``(index * seq_len) mod seg`` as a uint32 scalar, exact for any int32 ``index``."""
    if isinstance(index, int | np.integer) and not isinstance(index, bool):
        return jnp.asarray((int(index) * seq_len) % seg, jnp.uint32)
    index = jnp.asarray(index)
    if index.ndim != 0 or not jnp.issubdtype(index.dtype, jnp.integer):
        raise TypeError(f"index must be an integer scalar, got {index.dtype}{list(index.shape)}")
    k = (index % seg).astype(jnp.uint32)  # floored modulo: in [0, seg)
    # k * seq_len mod seg by binary multiplication: intermediate values stay < 2 * seg.
    m = jnp.uint32(seg)
    result = jnp.zeros((), jnp.uint32)
    for bit in bin(seq_len % seg)[2:]:
        result = (result * 2) % m
        if bit == "1":
            result = (result + k) % m
    return result


class EvalBatch(NamedTuple):
    """A batch of evaluation windows.

    Attributes:
      windows: int32 ``[B, T+1]``; inputs ``[:, :-1]``, targets ``[:, 1:]``.
      lengths: int32 ``[B]``, the number of valid target steps of each row (``T`` for
        full rows, fewer at the end of a stream, 0 for padding rows). Pass it as
        ``lengths`` to ``jrnn.unroll`` and to the losses; ``lengths.sum()`` over all
        batches is ``len(ids) - 1`` when ``max_batches`` does not cut the pass short.
    """

    windows: np.ndarray
    lengths: np.ndarray


def num_eval_batches(num_ids: int, batch_size: int, seq_len: int) -> int:
    """Number of batches [`eval_windows`][jrnn.data.eval_windows] yields for ``num_ids`` ids without
    max_batches.

    ``ceil(ceil((num_ids - 1) / batch_size) / seq_len)``.
    """
    _check_positive(batch_size=batch_size, seq_len=seq_len)
    targets = max(num_ids - 1, 0)
    per_stream = -(-targets // batch_size)
    return -(-per_stream // seq_len)


def eval_windows(
    ids: jax.typing.ArrayLike, batch_size: int, seq_len: int, max_batches: int | None = None
) -> Iterator[EvalBatch]:
    """Deterministic windows predicting every held-out id (but the first) exactly once.

    The ``N - 1`` target positions are cut into ``B`` contiguous streams of nearly
    equal size (the first ``(N-1) % B`` streams get one more); batch ``k`` holds
    window ``k`` of every stream. Windows are laid out like
    [`stream_windows`][jrnn.data.stream_windows] (consecutive batches continue each row), so an
    evaluator may either start each batch from a fresh state or carry the state across batches. Rows
    are padded with id 0 past their end and described by ``lengths``; summing the masked per-token
    losses over all batches and dividing by ``sum(lengths)`` gives the exact mean.

    Unlike the training samplers, a held-out array shorter than ``seq_len`` is fine
    (it gives one partial window); it needs at least 2 ids.

    Args:
      ids: int ``[N]`` held-out ids.
      batch_size: ``B``.
      seq_len: ``T``.
      max_batches: stop after this many batches (each stream's prefix is covered).

    Yields:
      [`EvalBatch`][jrnn.data.EvalBatch] of NumPy arrays: ``windows`` int32 ``[B, T+1]`` and
      ``lengths`` int32 ``[B]``.
    """
    _check_positive(batch_size=batch_size, seq_len=seq_len)
    if max_batches is not None:
        _check_positive(max_batches=max_batches)
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"ids must have shape [N], got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"ids must have an integer dtype, got {arr.dtype}")
    n = arr.shape[0]
    if n < 2:
        raise ValueError(f"eval_windows needs at least 2 ids (one target), got {n}")
    arr = arr.astype(np.int32)
    return _eval_batches(arr, batch_size, seq_len, max_batches)


def _eval_batches(
    arr: np.ndarray, batch_size: int, seq_len: int, max_batches: int | None
) -> Iterator[EvalBatch]:
    targets = arr.shape[0] - 1
    q, r = divmod(targets, batch_size)
    sizes = np.full(batch_size, q, dtype=np.int64)
    sizes[:r] += 1
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    num_batches = num_eval_batches(arr.shape[0], batch_size, seq_len)
    if max_batches is not None:
        num_batches = min(num_batches, max_batches)
    j = np.arange(seq_len + 1)
    for k in range(num_batches):
        lengths = np.clip(sizes - k * seq_len, 0, seq_len).astype(np.int32)
        pos = starts[:, None] + k * seq_len + j[None, :]
        # A row with l valid targets uses l + 1 ids; rows with none are all padding.
        valid = (j[None, :] <= lengths[:, None]) & (lengths[:, None] > 0)
        windows = np.where(valid, arr[np.minimum(pos, arr.shape[0] - 1)], 0).astype(np.int32)
        yield EvalBatch(windows, lengths)
