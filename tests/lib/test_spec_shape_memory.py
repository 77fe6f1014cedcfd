"""The spec shape cache (QuerySpec._shape) is bounded in bytes, not only in entries: an analyst sending valid
specs with many categories or long names (exact queries cost no budget) cannot make a node keep them (review
of hotpath, finding 4: 8 histogram specs of 2^18 categories kept 311 MB)."""

import gc
import tracemalloc

import pytest

from mpcdp.protocol import spec as spec_module
from mpcdp.protocol.spec import _VALID_SHAPES, QuerySpec

PARTIES = ("alice", "bob", "carol")


def histogram(i: int, categories: int, column: str = "city") -> QuerySpec:
    cats = [f"{i}-{j}" for j in range(categories)]
    return QuerySpec("histogram", PARTIES, column=column, categories=cats, frac_bits=0, deadline=2e9)


def retained(make) -> int:
    """Bytes still allocated after ``make()`` returns, its own result dropped (a spec and its codec refer to each
    other: collected)."""
    _VALID_SHAPES.clear()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        make()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        _VALID_SHAPES.clear()


def test_specs_with_many_categories_or_long_names_are_not_remembered():
    def many():
        for i in range(3):
            histogram(i, 100_000)  # ~15 MB each remembered before
        for i in range(3):
            histogram(i, 3, column="c" * (1 << 20) + str(i))  # a 1 MiB column name

    assert retained(many) < 100_000
    assert not _VALID_SHAPES


def test_the_remembered_shapes_stay_under_their_byte_cap(monkeypatch):
    monkeypatch.setattr(spec_module, "_MAX_VALID_BYTES", 200_000)
    monkeypatch.setattr(spec_module, "_valid_bytes", 0)
    kept = retained(lambda: [histogram(i, 64) for i in range(500)])  # 500 shapes at their largest: ~5 MB
    assert kept < 400_000, kept


def test_a_large_spec_is_validated_whole_every_time(monkeypatch):
    histogram(0, 65)
    validated = []
    real = QuerySpec._validate
    monkeypatch.setattr(QuerySpec, "_validate", lambda s: (validated.append(s), real(s)))
    histogram(0, 65)
    histogram(0, 64)
    histogram(0, 64)  # small enough: remembered
    assert len(validated) == 2
    with pytest.raises(spec_module.SpecError):
        QuerySpec("histogram", PARTIES, column="city", categories=["a"] * 65, frac_bits=0, deadline=2e9)
