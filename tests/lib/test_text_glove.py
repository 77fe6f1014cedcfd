"""Integration: the built-in GloVe 6B 50d default, 50,000 most frequent words (builds its table once)."""

import numpy as np
import pytest

from mpcdp.prg import Prg
from mpcdp.text import mechanisms as m
from mpcdp.text import neighbors as nb
from mpcdp.text.sanitizer import load_sanitizer


@pytest.fixture(scope="module")
def sanitizer(tmp_path_factory):
    return load_sanitizer(cache_dir=tmp_path_factory.mktemp("glove-cache"))


def test_default_vocabulary_and_extremes(sanitizer):
    emb, table = sanitizer.embedding, sanitizer.table
    assert emb.size == 50_000 and emb.dim == 50 and emb.words[:3] == ("the", "of", "to")  # words only
    assert table.k == 64
    # DESIGN section 5: Delta0 about 0.35, so epsilon must exceed about 76.
    assert table.delta_min == pytest.approx(0.3514, abs=1e-3)
    assert m.truncated_gumbel_min_epsilon(emb.size, table.delta_min) == pytest.approx(75.8, abs=0.1)
    assert 15 < table.delta_max < 30
    for w in (0, 1234, 49_999):
        ids, _ = nb.exact_neighbors(emb, w, 64)
        np.testing.assert_array_equal(ids, table.ids[w])


def test_sanitizes_real_text(sanitizer):
    texts = ["The film is a charming, funny and moving story about Zxqwv."] * 20
    outs = sanitizer.sanitize(texts, "truncated-gumbel", 200.0, Prg.from_int(1))
    assert all(o.text.endswith("<unk>.") and o.cost.words_perturbed == 10 for o in outs)
    assert len({o.text for o in outs}) == len(outs)
    with pytest.raises(m.EpsilonTooSmallError, match=r"75\.8"):
        sanitizer.sanitize(texts, "truncated-gumbel", 75.0)


def test_keep_probability_stays_low_for_truncated_gumbel(sanitizer):
    words = m.vocabulary_sample(sanitizer.embedding.size, 200, Prg.from_int(2))
    low = m.privacy_statistics(sanitizer.mechanism("truncated-gumbel", 100.0), words, 50, Prg.from_int(3))
    high = m.privacy_statistics(sanitizer.mechanism("truncated-gumbel", 1e6), words, 50, Prg.from_int(3))
    assert 0.1 < low.n_w < 0.3 and low.n_w < high.n_w < 0.5
    lap = m.privacy_statistics(sanitizer.mechanism("multivariate-laplace", 50.0), words, 50, Prg.from_int(4))
    assert lap.n_w > 0.95
