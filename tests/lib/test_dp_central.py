"""Central mechanisms: calibration, noise distribution, exact exponential mechanism."""

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from mpcdp.dp import central
from mpcdp.dp.loss import Measure, Relation
from mpcdp.prg import Prg


def test_discrete_laplace_mechanism_calibration_and_noise():
    mech = central.DiscreteLaplaceMechanism(0.3, sensitivity=3)
    assert mech.guarantee.measure is Measure.PURE and mech.guarantee.epsilon <= Fraction("0.3")
    out = mech.release(np.full(100_000, 7), Prg.from_int(51)) - 7
    assert abs(out.var() / mech.variance - 1) < 0.03
    assert abs(out.mean()) < 4 * math.sqrt(mech.variance / out.size)


def test_discrete_gaussian_mechanism_calibration_and_noise():
    mech = central.DiscreteGaussianMechanism(0.125, sensitivity=2)
    assert mech.sigma2 == 16 and mech.guarantee.rho == 0.125
    out = mech.release(np.zeros((50_000, 2), dtype=np.int64), Prg.from_int(52))
    assert out.shape == (50_000, 2)
    assert abs(out.var() / 16 - 1) < 0.03


def test_histogram_and_sum_sensitivity():
    assert np.array_equal(central.histogram([0, 2, 2, 3], 5), [1, 0, 2, 1, 0])
    assert central.sum_sensitivity(-3, 10) == 10
    assert central.sum_sensitivity(-3, 10, Relation.RESPONDENT) == 13


@pytest.mark.parametrize("monotone", [False, True])
def test_exponential_mechanism_matches_its_distribution(monotone):
    scores = np.array([0, 3, 5, 5, 9])
    eps, d = 0.8, 2
    draws = central.exponential_mechanism(scores, eps, d, Prg.from_int(53), monotone=monotone, size=60_000)
    weights = np.exp(eps * scores / (d if monotone else 2 * d))
    expected = weights / weights.sum() * draws.size
    assert stats.chisquare(np.bincount(draws, minlength=5), expected).pvalue > 1e-3


def test_approval_winner_picks_the_clear_favourite():
    ballots = np.zeros((300, 4), dtype=int)
    ballots[:250, 2] = 1
    ballots[:100, 0] = 1
    wins = [central.approval_winner(ballots, 0.5, Prg.from_int(s)) for s in range(20)]
    assert wins.count(2) == 20


@pytest.mark.parametrize(
    "call",
    [
        lambda: central.DiscreteLaplaceMechanism(0.0),
        lambda: central.DiscreteLaplaceMechanism(1.0, sensitivity=0),
        lambda: central.DiscreteLaplaceMechanism(1.0).release([0.5]),
        lambda: central.DiscreteGaussianMechanism(float("inf")),
        lambda: central.exponential_mechanism([], 1.0),
        lambda: central.approval_winner([[2, 0]], 1.0),
        lambda: central.histogram([5], 3),
        lambda: central.sum_sensitivity(1, 0),
        lambda: central.sum_sensitivity(0, 1, Relation.METRIC),
    ],
)
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()
