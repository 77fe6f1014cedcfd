"""The sanitiser: layout kept, OOV never passed silently, costs reported; the on-disk neighbour cache."""

import numpy as np
import pytest

from mpcdp.prg import Prg
from mpcdp.text import neighbors as nb
from mpcdp.text.embeddings import Embedding
from mpcdp.text.mechanisms import EpsilonTooSmallError
from mpcdp.text.sanitizer import Sanitizer, load_sanitizer

WORDS = ("the", "movie", "was", "good", "bad", "film", "great", "awful", "it", "is", "do", "not")


@pytest.fixture(scope="module")
def emb():
    rows = np.arange(len(WORDS) * 4, dtype=np.float32).reshape(len(WORDS), 4) ** 1.3 / 10
    return Embedding(WORDS, rows)


@pytest.fixture(scope="module")
def sanitizer(emb):
    return Sanitizer(emb, nb.build_neighbor_table(emb, 5))


def test_layout_case_and_placeholder(sanitizer):
    text = "The MOVIE was Zorblax, it's good!\n"
    [out] = sanitizer.sanitize([text], "multivariate-laplace", 1e7, Prg.from_int(1))
    assert out.text == "The MOVIE was <unk>, it is good!\n"  # a contraction is perturbed as its words
    assert (out.cost.words_perturbed, out.cost.oov_words, out.cost.oov_released) == (6, 1, 0)
    assert out.cost.epsilon_text_bound == pytest.approx(1e7 * 6 * sanitizer.table.delta_max)


def test_words_are_replaced_by_vocabulary_words_wearing_the_case(sanitizer):
    texts = ["GOOD film. Bad movie; the end"] * 50
    outs = sanitizer.sanitize(texts, "multivariate-laplace", 0.05, Prg.from_int(2))
    first = {o.text.split(" ")[0] for o in outs}
    assert len(first) > 3 and all(w.isupper() or not w.isalpha() for w in first)
    assert all(o.text.endswith(" <unk>") for o in outs)  # "end" is out of vocabulary
    assert all(". " in o.text and "; " in o.text for o in outs)


def test_keep_oov_is_explicit_and_warned(emb):
    with pytest.warns(UserWarning, match="unperturbed"):
        keep = Sanitizer(emb, nb.build_neighbor_table(emb, 5), oov="keep")
    [out] = keep.sanitize(["good Zorblax"], "multivariate-laplace", 1e7, Prg.from_int(3))
    assert out.text == "good Zorblax" and out.cost.oov_released == 1
    with pytest.raises(ValueError, match="oov"):
        Sanitizer(emb, None, oov="drop")


def test_contractions_become_words_straight_or_curly(sanitizer):
    for text in ("don't", "don\u2019t", "DON'T"):
        outs = sanitizer.sanitize([text] * 200, "truncated-gumbel", 400, Prg.from_int(4))
        for o in outs:
            pieces = o.text.split(" ")
            assert len(pieces) == 2 and all(p.lower() in WORDS for p in pieces), o.text
        assert {o.text.lower() for o in outs} >= {"do not"}


def test_substitutes_are_never_punctuation_or_fragments(tmp_path):
    from mpcdp.text.embeddings import load_glove_text
    from mpcdp.text.tokenize import tokenize

    entries = ["the", ",", ".", "n't", "'s", "ca", "wo", "--", "movie", "good", "bad", "film", "not", "is", "it"]
    rows = np.arange(len(entries) * 3, dtype=np.float32).reshape(-1, 3) ** 1.1 / 9
    path = tmp_path / "e.txt"
    path.write_text("".join(f"{w} {' '.join(map(str, r))}\n" for w, r in zip(entries, rows)))
    words_only = Sanitizer(load_glove_text(path), None)
    outs = words_only.sanitize(["It can't be, it's a good movie."] * 300, "multivariate-laplace", 0.3, Prg.from_int(9))
    substitutes = {t.text.lower() for o in outs for t in tokenize(o.text.replace("<unk>", "")) if t.is_word}
    assert len(substitutes) > 3 and substitutes <= {"the", "movie", "good", "bad", "film", "not", "is", "it"}
    assert all(o.text.endswith(".") and o.text.count(",") == 1 for o in outs)
    everything = Sanitizer(load_glove_text(path, words_only=False), None)
    outs = everything.sanitize(["movie"] * 300, "multivariate-laplace", 0.3, Prg.from_int(9))
    assert any(not o.text[:1].isalnum() for o in outs)  # the old behaviour, now only on request


def test_symbols_placeholder_drop_or_keep(emb):
    text = "good 😀😀 film 👨‍👩‍👧 © $5 + 2"
    table = nb.build_neighbor_table(emb, 5)
    expected = {
        "placeholder": ("good <unk> film <unk> <unk> $<unk> + <unk>", 0),
        "drop": ("good  film   $<unk> + <unk>", 0),
    }
    for policy, (want, released) in expected.items():
        [out] = Sanitizer(emb, table, symbols=policy).sanitize([text], "multivariate-laplace", 1e7, Prg.from_int(1))
        assert (out.text, out.cost.symbols_released) == (want, released)
    with pytest.warns(UserWarning, match="symbols"):
        keep = Sanitizer(emb, table, symbols="keep")
    [out] = keep.sanitize([text], "multivariate-laplace", 1e7, Prg.from_int(1))
    assert out.text == text.replace("5", "<unk>").replace("2", "<unk>") and out.cost.symbols_released == 3


def test_errors(sanitizer):
    with pytest.raises(EpsilonTooSmallError, match="needs epsilon >"):
        sanitizer.sanitize(["good"], "truncated-gumbel", 1.0, Prg.from_int(5))
    with pytest.raises(ValueError, match="unknown text mechanism"):
        sanitizer.sanitize(["good"], "gaussian", 1.0, Prg.from_int(5))


def test_neighbor_cache_is_keyed_by_embedding_and_reused(tmp_path, emb, monkeypatch):
    first = nb.load_or_build(emb, 5, tmp_path)
    files = list((tmp_path / "text").glob("*.npz"))
    assert len(files) == 1 and emb.fingerprint()[:32] in files[0].name

    def no_build(*_args, **_kw):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(nb, "build_neighbor_table", no_build)
    again = nb.load_or_build(emb, 5, tmp_path)
    np.testing.assert_array_equal(first.ids, again.ids)
    assert (again.delta_max, again.delta_min) == (first.delta_max, first.delta_min)
    other = Embedding(WORDS, emb.vectors + 1.0)
    with pytest.raises(AssertionError, match="cache was not used"):
        nb.load_or_build(other, 5, tmp_path)


def test_cache_dir_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MPCDP_CACHE", str(tmp_path / "c"))
    assert nb.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MPCDP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert nb.default_cache_dir() == tmp_path / "x" / "mpcdp"


def test_load_sanitizer_with_a_given_embedding(tmp_path, emb):
    s = load_sanitizer(cache_dir=tmp_path, neighbors=4, embedding=emb)
    assert s.table.k == 4 and s.embedding is emb


def test_every_epsilon_decodes_with_the_sanitizers_one_search():
    # Sixty words, so the inverted lists have something to split.
    words = tuple(f"w{i}" for i in range(60))
    emb = Embedding(words, (np.arange(60 * 3, dtype=np.float32).reshape(60, 3) ** 1.1) % 17)
    sanitizer = Sanitizer(emb, approximate_nn=True)
    first = sanitizer.mechanism("multivariate-laplace", 1.0)
    second = sanitizer.mechanism("multivariate-laplace", 2.0)
    assert first is not second and first._lists is second._lists is sanitizer.searches.lists()
    assert first._exact is sanitizer.searches.exact()
