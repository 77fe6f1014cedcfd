"""DP noise under MPC: calibration per block, the noise in releases, honest intervals (fixed seeds)."""

import math

import numpy as np
import pytest

from mpcdp.dp.loss import Measure, PrivacyLoss
from mpcdp.prg import Prg
from mpcdp.protocol import QuerySpec, SpecError, run_in_memory
from mpcdp.protocol.noise import describe, mechanisms, noise_piece

PARTIES = ("alice", "bob", "carol", "dave")
DATA = {"alice": [3800], "bob": [2514], "carol": [2982], "dave": [3390]}


def spec(**kw):
    kw.setdefault("bounds", (0, 10_000))
    kw.setdefault("epsilon", 1.0)
    return QuerySpec(kw.pop("statistic", "mean"), parties=kw.pop("parties", PARTIES), **kw)


def test_budget_is_split_over_blocks_and_guarantee_holds():
    s = spec()
    mechs = mechanisms(s)
    assert [b.name for b, _ in mechs] == ["sum", "count"]
    d = describe(s, {"sum": 12686.0, "count": 4.0, "mean": 3171.5})
    total = d.guarantee["sum"] + d.guarantee["count"]  # sequential composition within the query's epsilon
    assert total.measure is Measure.PURE and total.epsilon <= 1
    sk = spec(mechanism="skellam", delta=1e-6, bounds=(0, 1), frac_bits=8)
    rho = float(PrivacyLoss.approx(1.0, 1e-6).to_zcdp().rho)
    assert rho + 2 * math.sqrt(rho * math.log(1e6)) == pytest.approx(1.0)
    blocks = describe(sk, {"sum": 0.0, "count": 4.0, "mean": 0.0}).guarantee
    assert float(blocks["sum"].compose(blocks["count"]).rho) <= rho * (1 + 1e-9)


@pytest.mark.parametrize("mechanism, delta", [("discrete_laplace", 0.0), ("skellam", 1e-6)])
def test_release_noise_matches_its_reported_scale_and_intervals_cover(mechanism, delta):
    data = {p: [v[0] / 10_000] for p, v in DATA.items()}
    s0 = spec(mechanism=mechanism, delta=delta, epsilon=0.5, bounds=(0, 1), frac_bits=8)
    d0 = describe(s0, {"sum": 0.0, "count": 4.0, "mean": 0.0})
    rng = Prg.from_int(7, "noise-test")
    errors, covered = [], 0
    for _ in range(300):
        s = spec(mechanism=mechanism, delta=delta, epsilon=0.5, bounds=(0, 1), frac_bits=8)
        r = run_in_memory(s, data, rng=rng).release.result
        errors.append(r["count"] - 4)
        lo, hi = describe(s, r).intervals["count"]
        covered += lo <= 4 <= hi
    ratio = np.var(errors) / d0.noise_std["count"] ** 2
    assert 0.7 < ratio < 1.4, ratio
    assert covered / 300 >= 0.93


def test_mean_interval_is_clipped_to_the_bounds_and_needs_a_positive_count():
    s = spec()
    d = describe(s, {"sum": 12686.0, "count": 4.0, "mean": 3171.5})
    lo, hi = d.intervals["mean"] or (0, 10_000)
    assert 0 <= lo <= hi <= 10_000
    assert describe(s, {"sum": 10.0, "count": 0.5, "mean": 20.0}).intervals["mean"] is None


def test_noise_piece_has_the_vector_length_and_varies_with_the_seed():
    s = spec(statistic="variance", dimension=3, bounds=(-1, 1))
    a = noise_piece(s, Prg.from_int(1))
    assert a.shape == (7,) and a.dtype == np.int64
    assert not np.array_equal(a, noise_piece(s, Prg.from_int(2)))


def test_noise_tail_is_part_of_the_headroom_check():
    with pytest.raises(SpecError, match="overflow"):
        QuerySpec("sum", parties=PARTIES, bounds=(0, 2.0**34), max_records=2047, epsilon=1.0)
    with pytest.raises(SpecError):
        spec(epsilon=0.0)


@pytest.mark.parametrize("mechanism, delta", [("discrete_laplace", 0.0), ("skellam", 1e-6)])
def test_vector_mean_and_variance_intervals_cover_per_coordinate(mechanism, delta):
    records = 2000  # per party; enough that the intervals are informative, not just the bounds
    data = {
        p: ((Prg.from_int(k, "data").uint64(3 * records) % 1001) / 1000).reshape(records, 3) ** (k + 1)
        for k, p in enumerate(PARTIES)
    }
    pooled = np.concatenate(list(data.values()))
    truth = {"mean": pooled.mean(axis=0), "variance": pooled.var(axis=0, ddof=1)}
    rng = Prg.from_int(11, "interval-test")
    covered = {"mean": 0, "variance": 0}
    widths = {"mean": [], "variance": []}
    runs = 150
    for _ in range(runs):
        s = spec(
            statistic="variance",
            dimension=3,
            bounds=(0, 1),
            frac_bits=12,
            max_records=records,
            mechanism=mechanism,
            delta=delta,
        )
        r = run_in_memory(s, data, rng=rng).release.result
        intervals = describe(s, r).intervals
        for key in covered:
            lo, hi = intervals[key]["lower"], intervals[key]["upper"]
            assert lo.shape == hi.shape == (3,) and np.all(lo <= hi)
            released = np.asarray(r[key])
            assert np.all((lo <= released) & (released <= hi))  # the released point is inside its box
            covered[key] += bool(np.all((lo <= truth[key]) & (truth[key] <= hi)))  # all coordinates at once
            widths[key].append(np.mean(hi - lo))
    for key in covered:
        assert covered[key] / runs >= 0.93, (key, covered[key])
        assert np.median(widths[key]) < 0.1, (key, np.median(widths[key]))  # far inside [0, 1] and [0, 1/4]


def test_variance_interval_is_clipped_and_needs_two_records():
    s = spec(statistic="variance", bounds=(0, 10))
    d = describe(s, {"sum": 20.0, "sum_sq": 100.0, "count": 4.0, "mean": 5.0, "variance": 0.0})
    lo, hi = d.intervals["variance"]
    n_min = max(d.intervals["count"][0], 2.0)
    assert 0 <= lo <= hi <= 25 * n_min / (n_min - 1) + 1e-9  # Popoviciu: ((10 - 0) / 2)^2 n / (n - 1)
    assert (
        describe(s, {"sum": 1.0, "sum_sq": 1.0, "count": -50.0, "mean": None, "variance": None}).intervals["variance"]
        is None
    )


def test_calibration_is_kept_per_noise_shape_and_never_shared_across_shapes():
    """A spec's mechanisms and description are computed once per noise shape: other party names of the same
    number share them; another epsilon, colluder count, mechanism or bound type gets its own."""
    first, same = spec(), QuerySpec("mean", parties=("w", "x", "y", "z"), bounds=(0, 10_000), epsilon=1.0)
    assert [m for _, m in mechanisms(first)] == [m for _, m in mechanisms(same)]  # the same objects
    assert all(a is b for (_, a), (_, b) in zip(mechanisms(first), mechanisms(same), strict=True))
    others = [spec(epsilon=0.5), spec(colluders=2), spec(bounds=(0.0, 10_000.0)), spec(parties=PARTIES[:3])]
    others.append(spec(mechanism="skellam", delta=1e-6, bounds=(0, 1)))
    for other in others:
        assert all(a is not b for (_, a), (_, b) in zip(mechanisms(first), mechanisms(other), strict=True))
    assert mechanisms(spec(epsilon=0.5))[0][1].scale == 2 * mechanisms(first)[0][1].scale
    three = mechanisms(spec(parties=PARTIES[:3]))[0][1]
    assert three.n_nodes == 3 and three.shape == 1 / 2  # not the four-party calibration
    d = describe(first, {"sum": 12686.0, "count": 4.0, "mean": 3171.5})
    d.noise_std["sum"], d.guarantee["sum"] = -1.0, None  # a caller's changes stay its own
    again = describe(same, {"sum": 12686.0, "count": 4.0, "mean": 3171.5})
    assert again.noise_std["sum"] > 0 and again.guarantee["sum"] is not None
    assert describe(first, {"sum": 1.0, "count": 4.0, "mean": 0.25}).intervals["sum"] != d.intervals["sum"]
    half = describe(first, {"sum": 12686.0, "count": 4.0, "mean": 3171.5}, confidence=0.5)
    assert half.intervals["sum"][1] - half.intervals["sum"][0] < d.intervals["sum"][1] - d.intervals["sum"][0]


def test_a_spec_of_many_categories_is_calibrated_afresh():
    many = spec(statistic="histogram", categories=tuple(f"c{i}" for i in range(65)), bounds=(0, 1))
    few = spec(statistic="histogram", categories=tuple(f"c{i}" for i in range(64)), bounds=(0, 1))
    assert mechanisms(many)[0][1] is not mechanisms(many)[0][1]
    assert mechanisms(many)[0][1].scale == mechanisms(many)[0][1].scale
    assert mechanisms(few)[0][1] is mechanisms(few)[0][1]
