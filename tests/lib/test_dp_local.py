"""Local DP estimators: bias, interval coverage over 2000 simulated surveys, and the two-coin variance."""

import math
from statistics import NormalDist

import numpy as np
import pytest

from mpcdp.dp import local
from mpcdp.dp.estimate import Estimate
from mpcdp.prg import Prg

SURVEYS = 2000
LEVEL = 0.95


def fixed_dataset(n: int, share: float) -> np.ndarray:
    truth = np.zeros(n, dtype=bool)
    truth[: round(share * n)] = True
    return truth


def check_bias_and_coverage(values, variances, lows, highs, truth) -> None:
    """Mean of the estimates within 3 standard errors of the truth; CI coverage within 1.5 points.

    For a vector of k estimates the 3-SE band is widened to the same family-wise
    false-alarm rate (Bonferroni: two-sided 0.27% / k).
    """
    values, truth = np.asarray(values), np.asarray(truth)
    k = values[0].size
    z = NormalDist().inv_cdf(1 - (1 - NormalDist().cdf(3)) / k)
    se_of_mean = np.sqrt(np.mean(variances, axis=0) / len(values))
    assert np.all(np.abs(values.mean(axis=0) - truth) <= z * se_of_mean)
    covered = (np.asarray(lows) <= truth) & (truth <= np.asarray(highs))
    assert np.all(np.abs(covered.mean(axis=0) - LEVEL) <= 0.015)


def run_surveys(randomize, estimate, data, seed):
    rng = Prg.from_int(seed)
    vals, vars_, lows, highs = [], [], [], []
    for _ in range(SURVEYS):
        est = estimate(randomize(data, rng))
        lo, hi = est.ci(LEVEL)
        vals.append(est.value), vars_.append(est.variance), lows.append(lo), highs.append(hi)
    return vals, vars_, lows, highs


def test_two_coin_reproduces_variance_three_over_four_n():
    n = 1000
    truth = fixed_dataset(n, 0.3)
    vals, vars_, lows, highs = run_surveys(local.two_coin_randomize, local.two_coin_estimate, truth, 1)
    assert vars_[0] == 3 / (4 * n)
    empirical = np.var(vals, ddof=1)
    # sample variance of 2000 draws: relative standard error sqrt(2 / 1999) ~ 3.2%
    assert abs(empirical / (3 / (4 * n)) - 1) < 0.1
    check_bias_and_coverage(vals, vars_, lows, highs, 0.3)


def test_two_coin_report_probabilities():
    rng = Prg.from_int(2)
    yes = local.two_coin_randomize(np.ones(200_000, dtype=bool), rng).mean()
    no = local.two_coin_randomize(np.zeros(200_000, dtype=bool), rng).mean()
    assert abs(yes - 0.75) < 0.005 and abs(no - 0.25) < 0.005
    assert math.isclose(local.TWO_COIN_EPSILON, math.log(3))


@pytest.mark.parametrize("epsilon", [0.5, 2.0])
def test_binary_rr_unbiased_with_calibrated_intervals(epsilon):
    mech = local.BinaryRR(epsilon)
    assert mech.epsilon_actual <= epsilon
    truth = fixed_dataset(1000, 0.2)
    check_bias_and_coverage(*run_surveys(mech.randomize, mech.estimate, truth, 3), 0.2)


def test_kary_rr_unbiased_with_calibrated_intervals():
    mech = local.KaryRR(1.5, 5)
    assert mech.epsilon_actual <= 1.5
    data = np.repeat(np.arange(5), [500, 250, 150, 100, 0])
    truth = np.array([0.5, 0.25, 0.15, 0.1, 0.0])
    check_bias_and_coverage(*run_surveys(mech.randomize, mech.estimate, data, 4), truth)


def test_unary_encoding_multiselect_unbiased_with_calibrated_intervals():
    mech = local.UnaryEncoding(2.0, 6, max_selections=2)
    assert mech.epsilon_actual <= 2.0
    sel = np.zeros((1000, 6), dtype=bool)
    sel[:600, 0] = True
    sel[300:700, 1] = True
    sel[900:, 5] = True
    truth = sel.mean(axis=0)
    check_bias_and_coverage(*run_surveys(mech.randomize, mech.estimate, sel, 5), truth)


def test_bounded_laplace_unbiased_for_clipped_mean():
    mech = local.BoundedLaplace(1.0, 0.0, 10.0)
    data = np.linspace(-3.0, 12.0, 500)
    truth = np.clip(data, 0.0, 10.0).mean()
    check_bias_and_coverage(*run_surveys(mech.randomize, mech.estimate, data, 6), truth)


def test_post_processing_clips_and_normalises():
    est = Estimate(np.array([0.7, -0.1, 0.5]), np.full(3, 0.01), 100)
    assert np.array_equal(local.clip_proportions(est), [0.7, 0.0, 0.5])
    simplex = local.normalize_frequencies(est)
    assert np.all(simplex >= 0) and math.isclose(simplex.sum(), 1.0)
    assert np.allclose(simplex, [0.6, 0.0, 0.4])


@pytest.mark.parametrize(
    "make", [lambda e: local.BinaryRR(e), lambda e: local.KaryRR(e, 3), lambda e: local.UnaryEncoding(e, 4)]
)
def test_epsilon_too_small_to_represent_is_refused(make):
    """Keep probabilities are rounded to 2^-64 towards privacy; below that resolution the reports
    carry no information and the estimator would divide by zero (or report a negative epsilon)."""
    with pytest.raises(ValueError, match="too small"):
        make(1e-19)
    assert make(1e-12).epsilon_actual > 0  # reported rounded up to 9 decimals


@pytest.mark.parametrize(
    "call",
    [
        lambda: local.BinaryRR(0.0),
        lambda: local.BinaryRR(float("nan")),
        lambda: local.KaryRR(1.0, 1),
        lambda: local.KaryRR(1.0, 3).randomize([0, 3]),
        lambda: local.UnaryEncoding(1.0, 3, max_selections=4),
        lambda: local.UnaryEncoding(1.0, 3).randomize(np.ones((2, 3), dtype=bool)),
        lambda: local.BoundedLaplace(1.0, 2.0, 1.0),
        lambda: local.BoundedLaplace(1.0, 0.0, 1.0).randomize([float("inf")]),
        lambda: local.two_coin_estimate([]),
        lambda: local.two_coin_randomize([2]),
    ],
)
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()
