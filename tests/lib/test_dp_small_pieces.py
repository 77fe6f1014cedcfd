"""Small noise pieces (a scalar statistic's): the element-by-element path has the vector path's law.

``SCALAR_MAX`` set to 0 forces the numpy path, so each test draws the same thing both ways: for one element
the two must agree draw for draw (same algorithm, same words of the stream); a few elements (drawn in another
order of the words) are tested against the exact pmf, as many size-1 draws are.
"""

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from mpcdp.dp import approximate, samplers
from mpcdp.dp.distributed import DistributedDiscreteLaplace
from mpcdp.prg import Prg
from tests.support.stats import P_MIN, chi_square_pvalue

SEEDS = 400
N = 20_000


@pytest.fixture
def vector_path(monkeypatch):
    """A context in which every sampler takes its numpy path, whatever the size."""

    def force():
        monkeypatch.setattr(samplers, "SCALAR_MAX", 0)
        monkeypatch.setattr(approximate, "SCALAR_MAX", 0)

    return force


def both_ways(draw, vector_path):
    """``draw(rng)`` for SEEDS seeds, by the small path and then by the vector path."""
    small = [draw(Prg.from_int(seed, "small")) for seed in range(SEEDS)]
    vector_path()
    vector = [draw(Prg.from_int(seed, "small")) for seed in range(SEEDS)]
    return np.array(small), np.array(vector)


@pytest.mark.parametrize(
    "shape, scale",
    [(0.5, 1e6), (0.5, 1e3), (2.0, 1e3), (1 / 3, 5.0), (2.0, 3.0)],  # the last two: Poisson means below 10
)
def test_one_polya_mixture_element_is_the_vector_draw(shape, scale, vector_path):
    small, vector = both_ways(lambda rng: approximate.polya_mixture(shape, scale, 1, rng), vector_path)
    # Floats: numpy's log may differ from libm's in the last bit, which could flip a draw with probability
    # ~1e-10; any other difference (a word used in another role) changes nearly every draw.
    assert np.mean(small == vector) >= 0.995
    assert len(set(small.ravel())) > 3  # the draws vary


@pytest.mark.parametrize("lam", [10.0, 60.0, 1e6])
def test_one_large_poisson_element_is_the_vector_draw(lam, vector_path):
    small, vector = both_ways(lambda rng: approximate.poisson_large(lam, 1, rng), vector_path)
    assert np.mean(small == vector) >= 0.995


@pytest.mark.parametrize("lam", [Fraction(1, 3), Fraction(3, 4), 1])
def test_one_exact_poisson_element_is_the_vector_draw(lam, vector_path):
    """Exact samplers on integers: no rounding anywhere, so every draw is the same."""
    small, vector = both_ways(lambda rng: samplers.poisson(lam, 1, rng), vector_path)
    assert np.array_equal(small, vector)
    assert small.max() >= 3


@pytest.mark.parametrize("scale", [0.7, 30.0])
def test_one_logarithmic_element_is_the_vector_draw(scale, vector_path):
    small, vector = both_ways(lambda rng: approximate.logarithmic(scale, 1, rng), vector_path)
    assert np.mean(small == vector) >= 0.995


class Calls:
    """A Prg that counts which of its two methods were called: the small path reads ``bytes``, numpy ``uint64``."""

    def __init__(self, seed):
        self.prg, self.calls = Prg.from_int(seed, "small"), {"bytes": 0, "uint64": 0}

    def bytes(self, n):
        self.calls["bytes"] += 1
        return self.prg.bytes(n)

    def uint64(self, n):
        self.calls["uint64"] += 1
        return self.prg.uint64(n)


@pytest.mark.parametrize(
    "draw",
    [
        lambda size, rng: approximate.polya_mixture(0.5, 1e6, size, rng),
        lambda size, rng: approximate.poisson_large(60.0, size, rng),
        lambda size, rng: samplers.poisson(Fraction(1, 2), size, rng),
        lambda size, rng: approximate.logarithmic(30.0, size, rng),
    ],
)
def test_the_small_path_is_taken_up_to_scalar_max(draw, vector_path):
    """The comparisons above are not vacuous: each size up to SCALAR_MAX takes the small path, one more does
    not, and the forced vector path never does. (A compound Polya piece of one element draws its Poisson count
    and logarithmics by these.)"""
    for size, small in [(1, True), (samplers.SCALAR_MAX, True), (samplers.SCALAR_MAX + 1, False)]:
        rng = Calls(size)
        assert draw(size, rng).shape == (size,)
        assert (rng.calls["uint64"] == 0) == small, (size, rng.calls)
    vector_path()
    rng = Calls(1)
    draw(1, rng)
    assert rng.calls["bytes"] == 0 and rng.calls["uint64"] > 0


@pytest.mark.parametrize("draw", [approximate.polya_compound, approximate.polya_mixture])
@pytest.mark.parametrize("shape, scale, size", [(0.5, 100.0, 1), (1 / 3, 20.0, 1), (0.5, 300.0, 16), (0.25, 5.0, 7)])
def test_small_polya_pieces_match_the_negative_binomial(draw, shape, scale, size):
    rng = Prg.from_int(40)
    draws = np.concatenate([draw(shape, scale, size, rng) for _ in range(N // size)])
    support = np.arange(0, int(40 * scale) + 20)
    pmf = stats.nbinom.pmf(support, shape, -math.expm1(-1 / scale))
    assert chi_square_pvalue(draws, support, pmf) > P_MIN


def test_scalar_discrete_laplace_pieces_sum_to_discrete_laplace():
    """The DP query's case: three honest size-1 pieces (5 nodes, 2 colluders) sum to a discrete Laplace (scale
    5000: the gamma mixture; the compound identity's small pieces are tested against the negative binomial)."""
    mech = DistributedDiscreteLaplace(0.0002, 1, n_nodes=5, colluders=2)
    rng = Prg.from_int(41)
    honest = np.array([sum(int(mech.piece(1, rng)[0]) for _ in range(3)) for _ in range(N // 2)])
    scale = float(mech.scale)
    support = np.arange(-int(30 * scale) - 5, int(30 * scale) + 6)
    assert chi_square_pvalue(honest, support, np.exp(-np.abs(support) / scale)) > P_MIN


@pytest.mark.parametrize("lam, size", [(Fraction(3, 4), 1), (Fraction(5, 2), 1), (Fraction(1, 2), 16), (6.5, 1)])
def test_small_exact_poisson_matches_pmf(lam, size):
    rng = Prg.from_int(42)
    draws = np.concatenate([samplers.poisson(lam, size, rng) for _ in range(N // size)])
    support = np.arange(0, 60)
    assert chi_square_pvalue(draws, support, stats.poisson.pmf(support, float(lam))) > P_MIN


@pytest.mark.parametrize("lam", [10.0, 1e6])
def test_small_large_poisson_matches_pmf(lam):
    rng = Prg.from_int(43)
    draws = np.concatenate([approximate.poisson_large(lam, 1, rng) for _ in range(N)])
    width = int(8 * math.sqrt(lam)) + 10
    support = np.arange(max(0, int(lam) - width), int(lam) + width)
    assert chi_square_pvalue(draws, support, stats.poisson.pmf(support, lam)) > P_MIN


@pytest.mark.parametrize("scale", [0.7, 30.0])
def test_small_logarithmic_matches_pmf(scale):
    rng = Prg.from_int(44)
    draws = np.concatenate([approximate.logarithmic(scale, 1, rng) for _ in range(N)])
    support = np.arange(1, int(60 * scale) + 40)
    assert chi_square_pvalue(draws, support, stats.logser.pmf(support, math.exp(-1 / scale))) > P_MIN
