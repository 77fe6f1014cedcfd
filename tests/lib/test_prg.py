"""The AES-CTR PRG: determinism, domain separation, stream continuity, uniformity."""

import numpy as np
import pytest
from scipy import stats

from mpcdp.prg import Prg, fold_streams, new_seed, system_random


def test_same_inputs_same_stream_and_domain_separation():
    seed = bytes(range(32))
    a = Prg(seed, b"session-1", "share/a/b").uint64(64)
    assert np.array_equal(a, Prg(seed, b"session-1", "share/a/b").uint64(64))
    for other in (
        Prg(seed, b"session-2", "share/a/b"),
        Prg(seed, b"session-1", "share/b/a"),
        Prg(bytes(32), b"session-1", "share/a/b"),
    ):
        assert not np.array_equal(a, other.uint64(64))


def test_stream_continues_across_calls():
    whole = Prg.from_int(7).uint64(1000)
    p = Prg.from_int(7)
    parts = np.concatenate([p.uint64(1), p.uint64(333), p.uint64(666)])
    assert np.array_equal(whole, parts)
    q = Prg.from_int(7)
    assert q.bytes(8) + q.bytes(8) == whole[:2].tobytes()


def test_large_request_spans_chunks():
    n = (1 << 15) * 2 + 5  # more than two cipher chunks
    whole = Prg.from_int(3).uint64(n)
    p = Prg.from_int(3)
    assert np.array_equal(whole, np.concatenate([p.uint64(10), p.uint64(n - 10)]))


def test_bytes_are_uniform():
    counts = np.bincount(np.frombuffer(Prg.from_int(11).bytes(1 << 20), dtype=np.uint8), minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-4


def test_seed_validation_and_fresh_seeds():
    with pytest.raises(ValueError, match="32 bytes"):
        Prg(b"short")
    assert new_seed() != new_seed()
    assert not np.array_equal(system_random().uint64(4), system_random().uint64(4))


@pytest.mark.parametrize("n", [1, 1000, (1 << 15) * 2 + 5])
def test_folding_streams_into_a_vector_equals_adding_their_plain_expansions(n):
    base = Prg.from_int(99).uint64(n)
    expected = base.copy()
    for i in (1, 2, 3):
        expected += Prg.from_int(i).uint64(n)
    for i in (4, 5):
        expected -= Prg.from_int(i).uint64(n)
    out = base.copy()
    assert (
        fold_streams(out, add=[Prg.from_int(i) for i in (1, 2, 3)], subtract=[Prg.from_int(4), Prg.from_int(5)]) is out
    )
    assert np.array_equal(out, expected)
    # a generator folded in continues its stream where uint64 would; add_into is the one-stream case
    p, q = Prg.from_int(1), Prg.from_int(1)
    p.add_into(np.zeros(7, np.uint64))
    q.uint64(7)
    assert np.array_equal(p.add_into(np.zeros(n, np.uint64), subtract=True), np.uint64(0) - q.uint64(n))


def test_folding_needs_a_writable_contiguous_uint64_array():
    for bad in (np.zeros(4, np.int64), np.zeros(8, np.uint64)[::2], np.frombuffer(bytes(32), np.uint64)):
        with pytest.raises(TypeError):
            fold_streams(bad, add=[Prg.from_int(1)])


def test_folding_an_empty_array_draws_nothing_like_uint64_of_zero():
    p, q = Prg.from_int(1), Prg.from_int(1)
    empty = np.zeros(0, np.uint64)
    assert fold_streams(empty, add=[p], subtract=[Prg.from_int(2)]) is empty and empty.size == 0
    q.uint64(0)
    assert np.array_equal(p.uint64(5), q.uint64(5))  # the stream did not move
