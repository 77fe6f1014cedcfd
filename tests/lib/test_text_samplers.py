"""Samplers of the text mechanisms against their exact distributions, at fixed seeds."""

import math

import numpy as np
import pytest
from scipy import stats

from mpcdp.dp.approximate import uniform_open
from mpcdp.prg import Prg
from mpcdp.text import samplers
from mpcdp.text.embeddings import Embedding
from mpcdp.text.mechanisms import MultivariateLaplace


def test_uniform_open_is_inside_the_open_interval_and_uniform():
    u = uniform_open(Prg.from_int(1), 100_000)  # the one uniform sampler, which the text samplers use
    assert u.min() > 0 and u.max() < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("lam,lo,hi", [(math.log(50_000), 1, 50_000), (math.log(5), 1, 5), (3.0, 1, 2)])
def test_truncated_poisson_matches_its_pmf(lam, lo, hi):
    sampler = samplers.TruncatedPoisson(lam, lo, hi)
    k = sampler.sample(Prg.from_int(2), 200_000)
    assert k.min() >= lo and k.max() <= hi
    support = np.arange(lo, min(hi, int(lam + 8 * math.sqrt(lam) + 10)) + 1)
    mass = stats.poisson.cdf(hi, lam) - stats.poisson.cdf(lo - 1, lam)
    expected = stats.poisson.pmf(support, lam) / mass * k.size
    observed = np.array([(k == s).sum() for s in support])
    keep = expected >= 5  # chi-square validity; the rest is pooled
    obs = np.append(observed[keep], k.size - observed[keep].sum())
    exp = np.append(expected[keep], k.size - expected[keep].sum())
    assert stats.chisquare(obs, exp).pvalue > 1e-3


def test_truncated_poisson_rejects_bad_parameters():
    with pytest.raises(ValueError, match="lam"):
        samplers.TruncatedPoisson(0.0, 1, 5)
    with pytest.raises(ValueError, match="lo"):
        samplers.TruncatedPoisson(1.0, 6, 5)


@pytest.mark.parametrize("scale,bound", [(1.0, 2.0), (31.4, 21.1), (0.5, 10.0)])
def test_truncated_gumbel_matches_its_cdf(scale, bound):
    x = samplers.truncated_gumbel(Prg.from_int(3), 100_000, scale, bound)
    assert x.min() >= -bound and x.max() <= bound
    result = stats.kstest(x, lambda t: samplers.truncated_gumbel_cdf(t, scale, bound))
    assert result.pvalue > 1e-3


def test_truncated_gumbel_differs_from_the_untruncated_law():
    x = samplers.truncated_gumbel(Prg.from_int(4), 50_000, 1.0, 1.0)
    assert stats.kstest(x, stats.gumbel_r(scale=1.0).cdf).pvalue < 1e-6


def test_gamma_integer_shape_matches_gamma():
    g = samplers.gamma_integer_shape(Prg.from_int(5), 50_000, 7, 0.25)
    assert stats.kstest(g, stats.gamma(a=7, scale=0.25).cdf).pvalue > 1e-3
    with pytest.raises(ValueError, match="shape"):
        samplers.gamma_integer_shape(Prg.from_int(5), 3, 2.5, 1.0)


def test_standard_normal_and_directions():
    z = samplers.standard_normal(Prg.from_int(6), (50_001,))
    assert stats.kstest(z, "norm").pvalue > 1e-3
    d = samplers.uniform_direction(Prg.from_int(7), 20_000, 5)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, rtol=1e-12)
    # Each coordinate of a uniform unit vector in R^5 has mean 0 and variance 1/5.
    assert np.abs(d.mean(axis=0)).max() < 0.02
    np.testing.assert_allclose(d.var(axis=0), 0.2, atol=0.01)


@pytest.mark.parametrize("dim,epsilon", [(50, 5.0), (3, 0.7)])
def test_multivariate_laplace_noise_norm_is_gamma(dim, epsilon):
    vectors = np.eye(dim, dtype=np.float32)[: max(2, min(dim, 4))]
    mech = MultivariateLaplace(Embedding(tuple(f"w{i}" for i in range(len(vectors))), vectors), epsilon)
    z = mech.noise(40_000, Prg.from_int(8))
    norms = np.linalg.norm(z, axis=1)
    assert stats.kstest(norms, stats.gamma(a=dim, scale=1 / epsilon).cdf).pvalue > 1e-3
    # and a direction with no preferred axis
    assert np.abs((z / norms[:, None]).mean(axis=0)).max() < 0.03
