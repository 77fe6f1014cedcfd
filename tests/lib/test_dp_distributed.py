"""Distributed noise pieces: sums against the target pmf, honest-only guarantees checked numerically."""

import math

import numpy as np
import pytest
from scipy import stats

from mpcdp.dp import approximate
from mpcdp.dp.distributed import DistributedDiscreteLaplace, DistributedSkellam, rho_of_skellam
from mpcdp.prg import Prg
from tests.support.stats import P_MIN, chi_square_pvalue, nb_difference_pmf

N = 100_000


@pytest.mark.parametrize("epsilon,sensitivity", [(1.0, 1), (0.1, 3)])
def test_honest_polya_pieces_sum_to_discrete_laplace(epsilon, sensitivity):
    mech = DistributedDiscreteLaplace(epsilon, sensitivity, n_nodes=5, colluders=2)
    rng = Prg.from_int(21)
    honest = sum(mech.piece(N, rng) for _ in range(3))
    scale = float(mech.scale)
    support = np.arange(-int(30 * scale) - 5, int(30 * scale) + 6)
    assert chi_square_pvalue(honest, support, np.exp(-np.abs(support) / scale)) > P_MIN


@pytest.mark.parametrize("draw", [approximate.polya_compound, approximate.polya_mixture])
@pytest.mark.parametrize("shape,scale", [(0.25, 10.0), (1 / 3, 0.7), (0.5, 50.0), (1 / 3, 400.0)])
def test_both_polya_identities_match_the_negative_binomial(draw, shape, scale):
    draws = draw(shape, scale, N, Prg.from_int(22))
    support = np.arange(0, int(40 * scale) + 20)
    pmf = stats.nbinom.pmf(support, shape, -math.expm1(-1 / scale))
    assert chi_square_pvalue(draws, support, pmf) > P_MIN


def test_polya_draws_by_the_cheaper_identity():
    """The gamma mixture where the compound Poisson would draw more than GAMMA_POISSON_MIN_EVENTS per element."""
    for shape, scale, cheaper in [(0.5, 50.0, "compound"), (0.5, 1000.0, "mixture"), (1 / 99, 1e6, "compound")]:
        events = -shape * math.log(-math.expm1(-1 / scale))
        assert (events > approximate.GAMMA_POISSON_MIN_EVENTS) == (cheaper == "mixture")
        draw = getattr(approximate, f"polya_{cheaper}")
        assert np.array_equal(
            approximate.polya(shape, scale, 1000, Prg.from_int(9)), draw(shape, scale, 1000, Prg.from_int(9))
        )
    for draw in (approximate.polya, approximate.polya_compound, approximate.polya_mixture):  # exp(-1/scale) is 0
        assert not draw(0.5, 1e-3, 100, Prg.from_int(9)).any()


@pytest.mark.parametrize("shape", [0.05, 0.5, 1.0, 7.5])
def test_gamma_matches_its_distribution(shape):
    draws = approximate.gamma(shape, N, Prg.from_int(28))
    assert stats.kstest(draws, stats.gamma(shape).cdf).pvalue > P_MIN


def test_normal_matches_its_distribution():
    assert stats.kstest(approximate.normal(N, Prg.from_int(29)), stats.norm.cdf).pvalue > P_MIN


def test_poisson_each_draws_each_element_from_its_own_mean():
    means = np.repeat([0.0, 0.3, 4.0, 9.99, 10.0, 60.0], N // 6)
    draws = approximate.poisson_each(means, Prg.from_int(30))
    assert not draws[means == 0.0].any()
    for mean in (0.3, 4.0, 9.99, 10.0, 60.0):  # inversion below 10, PTRS from 10
        support = np.arange(0, int(mean + 10 * math.sqrt(mean)) + 15)
        assert chi_square_pvalue(draws[means == mean], support, stats.poisson.pmf(support, mean)) > P_MIN


@pytest.mark.parametrize("bad", [-1.0, math.nan, 2.0**51])
def test_poisson_each_refuses_a_mean_it_cannot_draw(bad):
    with pytest.raises(ValueError, match="mean"):
        approximate.poisson_each(np.array([1.0, bad]), Prg.from_int(31))


@pytest.mark.parametrize("lam", [60.0, 1e6])
def test_large_poisson_matches_pmf(lam):
    draws = approximate.poisson_large(lam, N, Prg.from_int(23))
    width = int(8 * math.sqrt(lam)) + 10
    support = np.arange(max(0, int(lam) - width), int(lam) + width)
    assert chi_square_pvalue(draws, support, stats.poisson.pmf(support, lam)) > P_MIN


@pytest.mark.parametrize("rho,sensitivity", [(0.5, 1), (0.05, 4)])
def test_honest_skellam_pieces_sum_to_skellam(rho, sensitivity):
    mech = DistributedSkellam(rho, sensitivity, n_nodes=4, colluders=1)
    assert mech.exact
    rng = Prg.from_int(24)
    honest = sum(mech.piece(N, rng) for _ in range(3))
    mu = 3 * float(mech.piece_mean)
    width = int(10 * math.sqrt(2 * mu)) + 10
    support = np.arange(-width, width + 1)
    assert chi_square_pvalue(honest, support, stats.skellam.pmf(support, mu, mu)) > P_MIN


def test_large_skellam_pieces_use_the_approximate_sampler():
    mech = DistributedSkellam(1e-6, 1 << 16, n_nodes=3, colluders=1)
    assert not mech.exact
    pieces = mech.piece(50_000, Prg.from_int(25))
    assert abs(pieces.var() / (2 * float(mech.piece_mean)) - 1) < 0.03


def test_discrete_laplace_pieces_for_a_tiny_scale():
    """epsilon / sensitivity > 745: a = exp(-1/scale) underflows and the Polya pieces are 0."""
    mech = DistributedDiscreteLaplace(1000.0, 1, n_nodes=3, colluders=1)
    assert np.array_equal(mech.piece(1000, Prg.from_int(27)), np.zeros(1000, dtype=np.int64))
    assert mech.variance(3) == 0.0 and mech.guarantee(3).epsilon <= 1000.0


@pytest.mark.parametrize("rho,sensitivity", [(0.1, 1 << 24), (1e-12, 1)])
def test_skellam_mean_is_the_smallest_that_meets_rho(rho, sensitivity):
    """The root of a x^2 + c x = rho must not cancel when 4 a rho << c^2 (large ring sensitivities)."""
    mech = DistributedSkellam(rho, sensitivity, n_nodes=3, colluders=1)
    mu = 2 * float(mech.piece_mean)
    assert (
        rho_of_skellam(mu, sensitivity, sensitivity) <= rho < rho_of_skellam(mu * (1 - 1e-8), sensitivity, sensitivity)
    )


def test_skellam_rho_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match="rho is too small"):
        DistributedSkellam(1e-17, 1, n_nodes=3, colluders=1)


def exact_pure_epsilon(support, pmf, sensitivity):
    """max over shifts d <= sensitivity of |ln P(Z = k) / P(Z = k + d)| on the central part of the support."""
    logp = np.log(pmf)
    inner = slice(sensitivity, len(pmf) - sensitivity)
    worst = 0.0
    for d in range(1, sensitivity + 1):
        worst = max(worst, np.max(np.abs(logp[d:] - logp[:-d])[inner]))
    return worst


@pytest.mark.parametrize("n_nodes,colluders,sensitivity", [(5, 1, 1), (5, 2, 2), (7, 3, 3)])
def test_discrete_laplace_guarantee_formula_bounds_the_exact_epsilon(n_nodes, colluders, sensitivity):
    mech = DistributedDiscreteLaplace(0.5, sensitivity, n_nodes, colluders)
    alpha = math.exp(-1 / float(mech.scale))
    for added in range(colluders + 1, n_nodes + 1):
        r = (added - colluders) / (n_nodes - colluders)
        support, pmf = nb_difference_pmf(r, alpha, 150)
        exact = exact_pure_epsilon(support, pmf, sensitivity)
        claimed = mech.guarantee(added).epsilon
        assert exact <= claimed + 1e-9
        if added == n_nodes:  # all honest pieces: exactly the promised discrete Laplace
            assert math.isclose(exact, claimed, rel_tol=1e-6) and claimed <= 0.5
    assert mech.guarantee(colluders) is None  # only the colluders' own pieces: no protection


def renyi(p, q, order):
    ok = (p > 1e-300) & (q > 1e-300)
    return math.log(np.sum(np.exp(order * np.log(p[ok]) + (1 - order) * np.log(q[ok])))) / (order - 1)


@pytest.mark.parametrize("mu,sensitivity", [(0.5, 1), (3.0, 2), (40.0, 5)])
def test_rho_of_skellam_bounds_the_exact_renyi_divergence(mu, sensitivity):
    width = int(30 * math.sqrt(mu)) + 40
    k = np.arange(-width, width + 1)
    p = stats.skellam.pmf(k, mu, mu)
    q = stats.skellam.pmf(k - sensitivity, mu, mu)
    rho = rho_of_skellam(mu, sensitivity, sensitivity)
    for order in (1.25, 2.0, 4.0, 16.0):
        assert renyi(p, q, order) <= rho * order


def test_skellam_guarantee_with_dropouts_and_colluders():
    mech = DistributedSkellam(0.5, 1, n_nodes=5, colluders=2)
    assert mech.guarantee(5).rho <= 0.5
    assert mech.guarantee(4).rho > mech.guarantee(5).rho
    assert mech.guarantee(2) is None
    eps, delta = mech.guarantee(5).epsilon_delta(1e-6)
    assert delta == 1e-6 and eps >= 0.5 + 2 * math.sqrt(0.5 * math.log(1e6)) - 1e-3


@pytest.mark.parametrize("mech", [DistributedDiscreteLaplace(0.7, 2, 4, 1), DistributedSkellam(0.3, 2, 4, 1)])
def test_variance_and_tail_bound_of_the_total(mech):
    rng = Prg.from_int(26)
    total = sum(mech.piece(N, rng) for _ in range(4))
    assert abs(total.var() / mech.variance(4) - 1) < 0.03
    bound = mech.tail_bound()
    assert np.abs(total).max() <= bound
    assert mech.tail_bound(0.01) < bound
    assert np.mean(np.abs(total) > mech.tail_bound(0.01)) <= 0.01


@pytest.mark.parametrize(
    "call",
    [
        lambda: DistributedDiscreteLaplace(0.0, 1, 3, 1),
        lambda: DistributedDiscreteLaplace(1.0, 0, 3, 1),
        lambda: DistributedDiscreteLaplace(1.0, 1, 3, 3),
        lambda: DistributedDiscreteLaplace(1.0, 1, 3, 0),
        lambda: DistributedSkellam(-1.0, 1, 3, 1),
        lambda: DistributedSkellam(1.0, 2, 3, 1, l1_sensitivity=1),
        lambda: DistributedSkellam(1.0, 1, 3, 1).guarantee(4),
        lambda: DistributedSkellam(1.0, 1, 3, 1).tail_bound(0.0),
    ],
)
def test_bad_parameters_raise_value_error(call):
    with pytest.raises(ValueError):
        call()
