"""Nearest-word search: the inverted lists searched in full find what the full scan finds."""

import numpy as np
import pytest

from mpcdp.prg import Prg
from mpcdp.text import samplers
from mpcdp.text.nearest import ExactSearch, ListSearch


@pytest.fixture(scope="module")
def vectors():
    return (samplers.standard_normal(Prg.from_int(1, "vectors"), (2000, 6)) * 2).astype(np.float32)


def test_all_lists_probed_is_exact(vectors):
    points = samplers.standard_normal(Prg.from_int(2, "points"), (3000, 6)) * 2.5
    exact = ExactSearch(vectors).nearest(points)
    lists = ListSearch(vectors, nprobe=1000, lists=20)  # nprobe above the list count: every list
    assert lists.nprobe == 20
    assert (lists.nearest(points) == exact).mean() > 0.999  # float32 ties aside
    few = ListSearch(vectors, nprobe=1, lists=20).nearest(points)
    assert 0.5 < (few == exact).mean() < 0.99  # one list of twenty misses some


def test_a_word_is_its_own_nearest(vectors):
    words = np.arange(vectors.shape[0])
    for search in (ExactSearch(vectors), ListSearch(vectors, nprobe=2)):
        assert (search.nearest(vectors[words].astype(np.float64)) == words).all()


def test_bad_nprobe(vectors):
    with pytest.raises(ValueError, match="nprobe"):
        ListSearch(vectors, nprobe=0)
