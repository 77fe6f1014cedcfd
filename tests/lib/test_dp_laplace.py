"""Grid Laplace: Mironov regression (identical output sets for neighbours), rounding and noise."""

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from mpcdp.dp.laplace import GridLaplace, unbiased_round
from mpcdp.prg import Prg

N = 100_000


@pytest.mark.parametrize("rounding", ["nearest", "unbiased"])
def test_mironov_neighbours_have_identical_output_sets(rounding):
    """Naive float Laplace leaks x through the low bits of x + noise; grid outputs cannot."""
    mech = GridLaplace(1.0, 1.0, grid_exponent=-2, rounding=rounding)
    rng = Prg.from_int(41)
    outs = {}
    for x in (0.0, 1e-300, 0.1 + 2.0**-40, 1.0):
        out = mech.release(np.full(N, x), rng)
        steps = out / mech.grid
        assert np.array_equal(steps, np.round(steps))  # every output is on the grid
        outs[x] = set(out[np.abs(out) <= 3.0].tolist())
    window = set((np.arange(-12, 13) * mech.grid).tolist())
    assert all(o == window for o in outs.values())


def test_sensitivity_is_widened_to_cover_rounding():
    assert GridLaplace(1.0, 1.0, grid_exponent=-2).sensitivity_steps == 5
    assert GridLaplace(1.0, 1.0, grid_exponent=-2, rounding="unbiased").sensitivity_steps == 5
    assert GridLaplace(1.0, 0.3, grid_exponent=-2).sensitivity_steps == 2
    assert GridLaplace(1.0, 0.3, grid_exponent=-2, rounding="unbiased").sensitivity_steps == 3
    mech = GridLaplace(0.7, 3.0)
    assert mech.guarantee.epsilon <= Fraction("0.7")


def test_unbiased_rounding_is_unbiased():
    mech = GridLaplace(1.0, 1.0, grid_exponent=-1, rounding="unbiased")
    steps = mech.to_grid(np.full(N, 0.3), Prg.from_int(42))
    assert set(np.unique(steps).tolist()) == {0, 1}
    assert stats.binomtest(int(steps.sum()), N, 0.6).pvalue > 1e-3


def test_unbiased_rounding_of_negative_inputs_is_exact():
    """s - floor(s) rounds to 1.0 for tiny negative s; the rounding must still be a valid Bernoulli."""
    mech = GridLaplace(1.0, 1.0, grid_exponent=-1, rounding="unbiased")
    rng = Prg.from_int(44)
    assert np.all(mech.to_grid(np.full(1000, -1e-30), rng) == 0)  # -1 has probability 2e-30
    steps = mech.to_grid(np.full(N, -0.15), rng)  # -0.3 steps: -1 w.p. 0.3, 0 w.p. 0.7
    assert set(np.unique(steps).tolist()) == {-1, 0}
    assert stats.binomtest(int((steps == -1).sum()), N, 0.3).pvalue > 1e-3
    assert np.array_equal(mech.to_grid([-2.5, 2.5, -3.0], rng), [-5, 5, -6])
    assert np.array_equal(unbiased_round(np.array([-5e-324, 0.0, 7.0, -7.0]), rng), [0, 0, 7, -7])


def test_noise_has_the_discrete_laplace_variance():
    mech = GridLaplace(0.5, 2.0)
    out = mech.release(np.full(N, 3.25), Prg.from_int(43))
    assert abs(out.mean() - 3.25) < 4 * math.sqrt(mech.variance / N)
    assert abs(out.var() / mech.variance - 1) < 0.03
    assert math.isclose(mech.variance, 2 * (2.0 / 0.5) ** 2, rel_tol=1e-4)


@pytest.mark.parametrize(
    "call",
    [
        lambda: GridLaplace(0.0, 1.0),
        lambda: GridLaplace(1.0, -1.0),
        lambda: GridLaplace(1.0, 1.0, rounding="up"),
        lambda: GridLaplace(1.0, 1.0).release([float("nan")]),
        lambda: GridLaplace(1.0, 1.0, grid_exponent=-30).release([1e30]),
    ],
)
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()
