"""Additive and seeded secret sharing: correctness and secrecy."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mpcdp import ring
from mpcdp.prg import Prg
from mpcdp.sharing import reconstruct, share, share_seeded

secrets_ = st.lists(st.integers(0, ring.MODULUS - 1), min_size=1, max_size=20).map(
    lambda v: ring.as_ring(np.array(v, dtype=object))
)


@settings(max_examples=100)
@given(st.integers(2, 64), secrets_, st.integers(0, 2**32))
def test_reconstruct_of_share_is_the_secret(n, x, seed):
    shares = share(x, n, rng=Prg.from_int(seed))
    assert len(shares) == n
    assert np.array_equal(reconstruct(shares), x)


@settings(max_examples=100)
@given(st.integers(2, 64), secrets_, st.integers(0, 2**32))
def test_seeded_sharing_agrees_with_full(n, x, seed):
    sid = b"s" * 16
    seeded = share_seeded(x, n, sid, rng=Prg.from_int(seed))
    assert len(seeded.seeds) == n - 1 and all(len(s) == 32 for s in seeded.seeds)
    assert np.array_equal(reconstruct(seeded.expand(sid)), x)
    # a different session id expands to different masks: seeds are bound to the session
    assert not np.array_equal(reconstruct(seeded.expand(b"t" * 16)), x)


def test_fewer_than_two_parties_refused():
    with pytest.raises(ValueError, match="at least 2"):
        share(np.zeros(3, np.uint64), 1)


@pytest.mark.parametrize("drop", [0, 2])
@pytest.mark.parametrize("mode", ["full", "seeded"])
def test_any_n_minus_1_shares_look_uniform_and_independent_of_secret(mode, drop):
    """Chi-square on the top 4 bits of the first n-1 shares, for two very different secrets."""
    n, draws = 3, 4000
    rng = Prg.from_int(2024)
    sid = b"x" * 16
    tops = {}
    for secret in (0, ring.MODULUS - 1):
        x = ring.as_ring(np.full(64, secret, dtype=object))
        collected = []
        for _ in range(draws // 64):
            shares = share(x, n, rng=rng) if mode == "full" else share_seeded(x, n, sid, rng=rng).expand(sid)
            collected.append(np.concatenate(shares[:drop] + shares[drop + 1 :]) >> np.uint64(60))
        tops[secret] = np.bincount(np.concatenate(collected).astype(np.int64), minlength=16)
        assert stats.chisquare(tops[secret]).pvalue > 1e-3
    # independence of the secret: the two histograms come from the same distribution
    assert stats.chi2_contingency(np.vstack([tops[0], tops[ring.MODULUS - 1]])).pvalue > 1e-3


def test_seeded_sharing_in_place_makes_the_secret_its_correction_and_agrees_with_the_copying_form():
    sid = b"s" * 16
    x = Prg.from_int(5).uint64((1 << 15) + 3)
    copied = share_seeded(x, 4, sid, rng=Prg.from_int(6))
    given_up = x.copy()
    in_place = share_seeded(given_up, 4, sid, rng=Prg.from_int(6), in_place=True)
    assert np.shares_memory(in_place.correction, given_up)  # no copy of the vector
    assert in_place.seeds == copied.seeds and np.array_equal(in_place.correction, copied.correction)
    assert np.array_equal(in_place.reconstruct(sid), x) and np.array_equal(reconstruct(in_place.expand(sid)), x)
    read_only = x.copy()
    read_only.flags.writeable = False  # what cannot be written is copied, as without in_place
    assert np.array_equal(
        share_seeded(read_only, 4, sid, rng=Prg.from_int(6), in_place=True).correction, copied.correction
    )
    assert np.array_equal(read_only, x)
