"""Nonlinear statistics under MPC against the same computation in plaintext, for n = 3, 5 and 7."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpcdp import ring
from mpcdp.mpc import compare
from mpcdp.mpc.memory import seeded_rngs
from mpcdp.mpc.statistics import DPQuantile, Extremum, NoisyArgmax, SecondPrice, Threshold, simulate
from mpcdp.prg import Prg
from mpcdp.sharing import share

PARTIES = (3, 5, 7)
FAST = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
bids = st.one_of(
    st.integers(compare.VALUE_MIN, compare.VALUE_MAX),
    st.sampled_from([compare.VALUE_MIN, compare.VALUE_MAX, 0, -1]),
    st.integers(-2, 2),
)


def slots(values, n):
    """Bid j belongs to party j % n: each party enters its own bids and zeros elsewhere."""
    out = [[0] * len(values) for _ in range(n)]
    for j, v in enumerate(values):
        out[j % n][j] = v
    return out


@pytest.mark.parametrize("n", PARTIES)
@FAST
@given(data=st.data())
def test_threshold_is_the_plaintext_comparison(n, data):
    counts = data.draw(st.lists(st.integers(0, 50), min_size=n, max_size=n))
    yes = [data.draw(st.integers(0, c)) for c in counts]
    frac = data.draw(st.sampled_from([Fraction(1, 2), Fraction(2, 3), Fraction(0), Fraction(1), Fraction(1, 7)]))
    got, _ = simulate(Threshold(fraction=frac), list(zip(yes, counts)), seed=sum(yes))
    assert got == (sum(yes) >= frac * sum(counts))  # exactly half is YES at 1/2
    value = data.draw(st.integers(-5, 60))
    got, _ = simulate(Threshold(at_least=value), list(zip(yes, counts)), seed=value + 5)
    assert got == (sum(yes) >= value)


@pytest.mark.parametrize("n", PARTIES)
def test_threshold_enters_from_additive_shares_of_the_sums(n):
    """The parties hold only mpcdp.sharing shares of the totals (as after a secure sum), never the totals."""
    for total, count, expected in ((5, 10, True), (4, 10, False), (0, 0, True)):
        t_shares = share(ring.as_ring([total]), n, Prg.from_int(total))
        c_shares = share(ring.as_ring([count]), n, Prg.from_int(count + 100))
        got, _ = simulate(Threshold(fraction=0.5), [(t_shares[p], c_shares[p]) for p in range(n)], seed=3)
        assert got is expected


def test_the_unanimous_referendum_releases_yes_and_one_bit_only():
    got, trace = simulate(Threshold(fraction=0.5), [(1, 1)] * 5, seed=1)
    assert got is True
    assert trace.rounds == 1 + (1 + 3 + 1 + 6) + 1


@pytest.mark.parametrize("n", PARTIES)
@FAST
@given(data=st.data())
def test_max_min_argmax_and_second_price_are_the_plaintext_ones(n, data):
    m = data.draw(st.integers(1, 9))
    values = data.draw(st.lists(bids, min_size=m, max_size=m))
    parts = slots(values, n)
    x = np.array(values, dtype=np.int64)
    assert simulate(Extremum(), parts, seed=m)[0] == x.max()
    assert simulate(Extremum(smallest=True, reveal="both"), parts, seed=m)[0] == (x.min(), int(np.argmin(x)))
    assert simulate(Extremum(reveal="index"), parts, seed=m)[0] == int(np.argmax(x))
    winner, price = simulate(SecondPrice(), parts, seed=m)[0]
    assert winner == int(np.argmax(x))
    assert price == (None if m == 1 else int(np.sort(x)[-2]))


def test_the_auction_prints_the_winning_bid_only():
    raises = [3800, 2514, 2982, 3390]
    assert simulate(Extremum(), slots(raises, 4), seed=2)[0] == 3800
    assert simulate(SecondPrice(), slots(raises, 4), seed=2)[0] == (0, 3390)


def noisy_plaintext(stat, data, seed):
    """The same noise pieces, drawn in plaintext from the same seeded party streams, summed in the clear."""
    rngs = seeded_rngs(len(data), seed + 1)
    return sum(stat.prepare(p, d, rng=rngs[p]) for p, d in enumerate(data))


@pytest.mark.parametrize("n", PARTIES)
@FAST
@given(data=st.data())
def test_noisy_argmax_is_the_argmax_of_the_counts_plus_every_party_noise_piece(n, data):
    m = data.draw(st.integers(1, 12))
    counts = [data.draw(st.lists(st.integers(0, 30), min_size=m, max_size=m)) for _ in range(n)]
    stat = NoisyArgmax(epsilon=0.5, n_parties=n)
    seed = data.draw(st.integers(0, 1000))
    noisy = ring.to_signed(noisy_plaintext(stat, counts, seed))
    assert simulate(stat, counts, seed=seed)[0] == int(np.argmax(noisy))


def test_noisy_argmax_finds_a_clear_winner_and_states_its_guarantee():
    counts = [[10, 400, 30], [5, 380, 60], [0, 420, 10]]
    stat = NoisyArgmax(epsilon=1.0, n_parties=3)
    assert simulate(stat, counts, seed=5)[0] == 1
    assert float(stat.guarantee().epsilon) == pytest.approx(1.0)
    assert stat.noise.scale == 1  # monotone counts (one ballot): scale sensitivity / epsilon
    assert NoisyArgmax(epsilon=1.0, n_parties=3, monotone=False).noise.scale == 2
    assert stat.guarantee(pieces_added=1) is None  # only the colluder's own piece: no guarantee


@pytest.mark.parametrize("n", PARTIES)
@FAST
@given(data=st.data())
def test_dp_quantile_is_the_noisy_argmax_of_minus_the_absolute_rank_gap(n, data):
    q = data.draw(st.sampled_from([0.5, 0.25, 0.9]))
    records = [data.draw(st.lists(st.integers(-20, 20), max_size=12)) for _ in range(n)]
    stat = DPQuantile(q, edges=np.arange(-10, 11, 4), epsilon=1.0, n_parties=n)
    seed = data.draw(st.integers(0, 1000))
    rngs = seeded_rngs(n, seed + 1)
    noise = sum(ring.to_signed(stat.prepare(p, r, rng=rngs[p])[1]) for p, r in enumerate(records))
    gap = sum(stat.gaps(r) for r in records)
    assert simulate(stat, records, seed=seed)[0] == stat.edges[int(np.argmax(-np.abs(gap) + noise))]


def test_dp_quantile_lands_near_the_median_with_a_large_sample():
    rng = np.random.default_rng(4)  # test data only
    records = [rng.normal(3.0, 1.0, 2000) for _ in range(3)]
    stat = DPQuantile(0.5, edges=np.linspace(0, 6, 25), epsilon=1.0, n_parties=3)
    got, _ = simulate(stat, records, seed=9)
    assert abs(got - 3.0) <= 0.25 + 1e-9
    assert stat.sensitivity == 1 and stat.noise.scale == 2
    assert float(stat.guarantee().epsilon) == pytest.approx(1.0)


def test_batches_of_instances_release_one_answer_each():
    counts = np.array([[[5, 1, 0], [0, 0, 9]]] * 3)  # two instances, three parties
    got, _ = simulate(Extremum(reveal="index"), list(counts), seed=1)
    assert list(got) == [0, 2]


def test_statistics_refuse_bad_parameters_and_out_of_range_values():
    with pytest.raises(ValueError, match="exactly one"):
        Threshold()
    with pytest.raises(ValueError, match="exactly one"):
        Threshold(at_least=1, fraction=0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Threshold(fraction=1.5)
    with pytest.raises(ValueError, match="must lie in"):
        Extremum().prepare(0, [compare.VALUE_MAX + 1])
    with pytest.raises(ValueError, match="integers"):
        Extremum().prepare(0, [1.5])
    with pytest.raises(ValueError, match="non-empty"):
        SecondPrice().prepare(0, [])
    with pytest.raises(ValueError, match="strictly between"):
        DPQuantile(1.0, [0, 1], 1.0, 3)
    with pytest.raises(ValueError, match="increasing"):
        DPQuantile(0.5, [1, 1], 1.0, 3)
    with pytest.raises(ValueError, match="reveal"):
        Extremum(reveal="everything")
