"""Embedding loaders: every format reads back the same vocabulary and vectors."""

import struct

import numpy as np
import pytest

from mpcdp.text import embeddings

WORDS = ("the", "movie", "café", "good")
VECTORS = np.array([[0.5, -1.25, 2.0], [1.0, 0.0, -0.5], [3.0, 2.5, 1.0], [-2.0, 0.25, 0.75]], dtype=np.float32)


def _lines(words=WORDS, vectors=VECTORS):
    return "".join(f"{w} {' '.join(repr(float(x)) for x in v)}\n" for w, v in zip(words, vectors))


def _check(emb, n=None):
    n = len(WORDS) if n is None else n
    assert emb.words == WORDS[:n]
    np.testing.assert_array_equal(emb.vectors, VECTORS[:n])
    assert emb.index["movie"] == 1 and emb.dim == 3


def test_glove_text(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text(_lines(), encoding="utf-8")
    _check(embeddings.load_glove_text(path))
    _check(embeddings.load_embedding(path, "glove", limit=2), 2)


@pytest.mark.parametrize("fmt", ["word2vec", "fasttext"])
def test_word2vec_text_and_fasttext_vec(tmp_path, fmt):
    path = tmp_path / "w.vec"
    path.write_text(f"{len(WORDS)} 3\n" + _lines(), encoding="utf-8")
    _check(embeddings.load_embedding(path, fmt))


def test_word2vec_binary(tmp_path):
    path = tmp_path / "w.bin"
    with open(path, "wb") as fh:
        fh.write(f"{len(WORDS)} 3\n".encode())
        for w, v in zip(WORDS, VECTORS):
            fh.write(w.encode() + b" " + struct.pack("<3f", *v) + b"\n")
    _check(embeddings.load_word2vec_binary(path))
    _check(embeddings.load_embedding(path, "word2vec-binary", limit=3), 3)


def test_npy_and_vocabulary(tmp_path):
    np.save(tmp_path / "v.npy", VECTORS)
    (tmp_path / "vocab.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    _check(embeddings.load_embedding(tmp_path / "v.npy", "npy", vocabulary=tmp_path / "vocab.txt"))
    (tmp_path / "short.txt").write_text("the\n", encoding="utf-8")
    with pytest.raises(ValueError, match="vocabulary_path"):
        embeddings.load_npy(tmp_path / "v.npy", tmp_path / "short.txt")


def test_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("a 1 2\nb 1 2 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="dimension 3, expected 2"):
        embeddings.load_glove_text(bad)
    with pytest.raises(ValueError, match="header"):
        embeddings.load_word2vec_text(bad)
    with pytest.raises(ValueError, match="unknown embedding format"):
        embeddings.load_embedding(bad, "elmo")
    with pytest.raises(ValueError, match="NaN"):
        embeddings.Embedding(("a", "b"), np.array([[0.0], [np.nan]]))


def test_loaders_keep_only_words_unless_asked(tmp_path):
    path = tmp_path / "w.txt"
    entries = ["the", ",", "n't", "'s", "ca", "e-mail", "u.s.", "Paris", "film", "...", "2002", "wo"]
    path.write_text("".join(f"{w} {i} {i * i}\n" for i, w in enumerate(entries)), encoding="utf-8")
    assert embeddings.load_glove_text(path).words == ("the", "film", "2002")
    assert embeddings.load_glove_text(path, limit=2).words == ("the", "film")
    assert embeddings.load_glove_text(path, words_only=False).words == tuple(entries)


def test_duplicate_words_keep_the_first_vector(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("a 1 1\nb 2 2\na 3 3\n", encoding="utf-8")
    emb = embeddings.load_glove_text(path)
    assert emb.words == ("a", "b") and emb.vectors[0].tolist() == [1, 1]


def test_fingerprint_tracks_words_and_vectors():
    base = embeddings.Embedding(WORDS, VECTORS)
    assert base.fingerprint() == embeddings.Embedding(WORDS, VECTORS.copy()).fingerprint()
    moved = VECTORS.copy()
    moved[0, 0] += 1e-3
    assert base.fingerprint() != embeddings.Embedding(WORDS, moved).fingerprint()
    assert base.fingerprint() != embeddings.Embedding(("the", "film", "café", "good"), VECTORS).fingerprint()


def test_duplicate_rows_are_found_exactly_including_signed_zeros():
    v = np.random.default_rng(0).normal(size=(1000, 7)).astype(np.float32)
    v[5] = v[2]
    v[9] = v[2]
    v[700] = v[3]
    v[701] = -0.0 * v[701]
    v[702] = np.abs(v[701])  # +0.0 and -0.0 are the same vector
    first, duplicate = embeddings._duplicate_rows(v)
    assert first.tolist() == [2, 2, 3, 701] and duplicate.tolist() == [5, 9, 700, 702]
    merged = embeddings.merge_duplicates(tuple(f"w{i}" for i in range(1000)), v)
    assert merged.size == 996 and merged.index["w9"] == merged.index["w2"] == merged.index["w5"]
