"""Exact samplers against their exact pmfs (chi-square, 10^5 draws per configuration, fixed seeds)."""

from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from mpcdp.dp import samplers
from mpcdp.prg import Prg
from tests.support.stats import P_MIN, chi_square_pvalue

N = 100_000


def discrete_laplace_pmf(scale: float, support: np.ndarray) -> np.ndarray:
    return np.exp(-np.abs(support) / scale)


@pytest.mark.parametrize("scale", [Fraction(1, 20), Fraction(1), Fraction(7, 3), Fraction(10**5), Fraction(3 * 10**9)])
def test_discrete_laplace_matches_pmf(scale):
    draws = samplers.discrete_laplace(scale, N, Prg.from_int(11))
    width = int(float(scale) * 30) + 5
    support = np.arange(-width, width + 1) if width < 2_000_000 else None
    if support is None:  # very large scale: compare |X| / scale against the continuous limit on deciles
        cdf = np.linspace(0, 1, 41)[1:-1]
        edges = np.concatenate([[-np.inf], stats.laplace.ppf(cdf, scale=float(scale)), [np.inf]])
        observed, _ = np.histogram(draws.astype(float), bins=edges)
        assert stats.chisquare(observed).pvalue > P_MIN
        return
    assert chi_square_pvalue(draws, support, discrete_laplace_pmf(float(scale), support)) > P_MIN


def test_discrete_laplace_tiny_scale_is_almost_always_zero():
    draws = samplers.discrete_laplace(Fraction(1, 20), N, Prg.from_int(12))
    a = np.exp(-20.0)
    p_nonzero = 2 * a / (1 + a)
    assert stats.binomtest(int((draws != 0).sum()), N, p_nonzero).pvalue > P_MIN


@pytest.mark.parametrize("sigma2", [Fraction(1, 8), Fraction(1), Fraction(10, 3), Fraction(10**6)])
def test_discrete_gaussian_matches_pmf(sigma2):
    draws = samplers.discrete_gaussian(sigma2, N, Prg.from_int(13))
    width = int(np.sqrt(float(sigma2)) * 12) + 4
    support = np.arange(-width, width + 1)
    pmf = np.exp(-(support.astype(float) ** 2) / (2 * float(sigma2)))
    assert chi_square_pvalue(draws, support, pmf) > P_MIN


@pytest.mark.parametrize("lam", [Fraction(1, 50), Fraction(1, 3), Fraction(5), Fraction(81, 2)])
def test_poisson_matches_pmf(lam):
    draws = samplers.poisson(lam, N, Prg.from_int(14))
    support = np.arange(0, int(float(lam) * 4) + 30)
    pmf = stats.poisson.pmf(support, float(lam))
    assert chi_square_pvalue(draws, support, pmf) > P_MIN


@pytest.mark.parametrize(
    "p", [Fraction(1, 3), Fraction(999_999, 1_000_000), Fraction(1, 2**20), Fraction(0), Fraction(1)]
)
def test_bernoulli_rational_is_exact(p):
    draws = samplers.bernoulli(p, N, Prg.from_int(15))
    hits = int(draws.sum())
    if p in (0, 1):
        assert hits == int(p) * N
    else:
        assert stats.binomtest(hits, N, float(p)).pvalue > P_MIN


@pytest.mark.parametrize("gamma", [Fraction(0), Fraction(1, 7), Fraction(1), Fraction(5, 2), Fraction(11)])
def test_bernoulli_exp_neg(gamma):
    hits = int(samplers.bernoulli_exp_neg(gamma, N, Prg.from_int(16)).sum())
    if gamma == 0:
        assert hits == N
    else:
        assert stats.binomtest(hits, N, float(np.exp(-float(gamma)))).pvalue > P_MIN


def test_bernoulli_float_each_uses_each_probability():
    p = np.tile(np.array([0.0, 0.25, 1e-300 + 0.5, 0.9, 2.0**-70]), N // 5)
    draws = samplers.bernoulli_float_each(p, Prg.from_int(17)).reshape(-1, 5)
    assert draws[:, 0].sum() == 0
    for j, prob in enumerate([0.25, 0.5, 0.9]):
        assert stats.binomtest(int(draws[:, j + 1].sum()), N // 5, prob).pvalue > P_MIN
    assert draws[:, 4].sum() == 0  # probability 2^-70 over 2e4 draws


@pytest.mark.parametrize("bound", [2, 7, 1000, 2**32, 2**40 + 3, 2**63])
def test_uniform_below_is_uniform(bound):
    draws = samplers.uniform_below(bound, N, Prg.from_int(18))
    assert draws.min() >= 0 and (bound > 2**62 or draws.max() < bound)
    bins = min(bound, 50)
    cells = (draws.astype(object) * bins // bound).astype(np.int64)
    assert stats.chisquare(np.bincount(cells, minlength=bins)).pvalue > P_MIN


def test_samplers_are_reproducible_and_seed_dependent():
    a = samplers.discrete_gaussian(Fraction(9), 1000, Prg.from_int(1))
    b = samplers.discrete_gaussian(Fraction(9), 1000, Prg.from_int(1))
    c = samplers.discrete_gaussian(Fraction(9), 1000, Prg.from_int(2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize(
    "call",
    [
        lambda r: samplers.discrete_laplace(Fraction(-1), 3, r),
        lambda r: samplers.discrete_laplace(Fraction(1, 2**60), 3, r),
        lambda r: samplers.discrete_gaussian(Fraction(0), 3, r),
        lambda r: samplers.poisson(Fraction(10**6), 3, r),
        lambda r: samplers.bernoulli(Fraction(3, 2), 3, r),
        lambda r: samplers.bernoulli_exp_neg(Fraction(-1), 3, r),
        lambda r: samplers.uniform_below(0, 3, r),
        lambda r: samplers.uniform_below(5, -1, r),
        lambda r: samplers.bernoulli_float_each(np.array([1.5]), r),
    ],
)
def test_bad_parameters_raise_value_error(call):
    with pytest.raises(ValueError):
        call(Prg.from_int(0))
