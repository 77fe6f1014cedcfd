"""Nearest-word search: the inverted lists searched in full find what the full scan finds; one vocabulary's
searches are built once and shared."""

import pickle

import numpy as np
import pytest

from mpcdp.prg import Prg
from mpcdp.text import samplers
from mpcdp.text.nearest import ExactSearch, ListSearch, VocabularySearch


@pytest.fixture(scope="module")
def vectors():
    return (samplers.standard_normal(Prg.from_int(1, "vectors"), (2000, 6)) * 2).astype(np.float32)


def test_all_lists_probed_is_exact(vectors):
    points = samplers.standard_normal(Prg.from_int(2, "points"), (3000, 6)) * 2.5
    exact = ExactSearch(vectors).nearest(points)
    lists = ListSearch(vectors, lists=20)
    assert (lists.nearest(points, nprobe=1000) == exact).mean() > 0.999  # above the list count: every list
    few = lists.nearest(points, nprobe=1)
    assert 0.5 < (few == exact).mean() < 0.99  # one list of twenty misses some


def test_a_word_is_its_own_nearest(vectors):
    words = np.arange(vectors.shape[0])
    for search in (ExactSearch(vectors), ListSearch(vectors)):
        assert (search.nearest(vectors[words].astype(np.float64)) == words).all()
    assert (ListSearch(vectors).nearest(vectors.astype(np.float64), nprobe=2) == words).all()


def test_bad_nprobe(vectors):
    with pytest.raises(ValueError, match="nprobe"):
        ListSearch(vectors, lists=4).nearest(vectors[:3].astype(np.float64), nprobe=0)


def test_vocabulary_search_builds_each_search_once_and_pickles_without_them(vectors):
    searches = VocabularySearch(vectors)
    exact, lists = searches.exact(), searches.lists()
    assert searches.exact() is exact and searches.lists() is lists
    assert lists.exact is exact  # the lists' fallback is the one exact search: one float64 copy of the vectors
    copy = pickle.loads(pickle.dumps(searches))
    assert copy._exact is None and copy._lists is None  # faiss indexes are not shipped; built again on use
    points = vectors[:50].astype(np.float64)
    assert (copy.lists().nearest(points) == lists.nearest(points)).all()
