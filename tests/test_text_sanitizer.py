"""The sanitiser: layout kept, OOV never passed silently, costs reported; the on-disk neighbour cache."""

import numpy as np
import pytest

from mpcdp.prg import Prg
from mpcdp.text import neighbours as nb
from mpcdp.text.embeddings import Embedding
from mpcdp.text.mechanisms import EpsilonTooSmallError
from mpcdp.text.sanitizer import Sanitizer, load_sanitizer

WORDS = ("the", "movie", "was", "good", "bad", "film", "great", "awful", "it", "'s", "do", "n't")


@pytest.fixture(scope="module")
def emb():
    rows = np.arange(len(WORDS) * 4, dtype=np.float32).reshape(len(WORDS), 4) ** 1.3 / 10
    return Embedding(WORDS, rows)


@pytest.fixture(scope="module")
def sanitizer(emb):
    return Sanitizer(emb, nb.build_neighbour_table(emb, 5))


def test_layout_case_and_placeholder(sanitizer):
    text = "The MOVIE was Zorblax, it's good!\n"
    [out] = sanitizer.sanitize([text], "multivariate-laplace", 1e7, Prg.from_int(1))
    assert out.text == "The MOVIE was <unk>, it's good!\n"
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
        keep = Sanitizer(emb, nb.build_neighbour_table(emb, 5), oov="keep")
    [out] = keep.sanitize(["good Zorblax"], "multivariate-laplace", 1e7, Prg.from_int(3))
    assert out.text == "good Zorblax" and out.cost.oov_released == 1
    with pytest.raises(ValueError, match="oov"):
        Sanitizer(emb, None, oov="drop")


def test_clitic_replacement_does_not_glue(sanitizer):
    outs = sanitizer.sanitize(["don't"] * 200, "truncated-gumbel", 400, Prg.from_int(4))
    for o in outs:
        head, _, tail = o.text.partition(" ")
        assert not tail or tail[0].isalnum() or tail[0] == "'"
        assert all(p.lower() in WORDS for p in o.text.replace("n't", " n't").replace("'s", " 's").split())


def test_errors(sanitizer):
    with pytest.raises(EpsilonTooSmallError, match="needs epsilon >"):
        sanitizer.sanitize(["good"], "truncated-gumbel", 1.0, Prg.from_int(5))
    with pytest.raises(ValueError, match="unknown mechanism"):
        sanitizer.sanitize(["good"], "gaussian", 1.0, Prg.from_int(5))


def test_neighbour_cache_is_keyed_by_embedding_and_reused(tmp_path, emb, monkeypatch):
    first = nb.load_or_build(emb, 5, tmp_path)
    files = list((tmp_path / "text").glob("*.npz"))
    assert len(files) == 1 and emb.fingerprint()[:32] in files[0].name

    def no_build(*_args, **_kw):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(nb, "build_neighbour_table", no_build)
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
    s = load_sanitizer(cache_dir=tmp_path, neighbours=4, embedding=emb)
    assert s.table.k == 4 and s.embedding is emb
