"""Real-valued Laplace noise that is immune to floating-point attacks (Mironov, CCS 2012).

Adding a float Laplace sample to a float input leaks the input through the
low-order bits of the result. Here the input is first rounded onto the grid
g = 2^k, then an exact discrete Laplace sample is added on that grid, so
every output is an integer multiple of g and the set of possible outputs is
the same for every input. This is the construction of OpenDP's
``make_laplace`` on floats. Rounding moves an input by less than one grid
step, so the integer sensitivity is widened to cover it:
floor(D / g) + 1 steps for round-to-nearest, ceil(D / g) + 1 for unbiased
(stochastic) rounding.

Guarantee: pure epsilon-DP for each element released, under any
neighbouring relation that moves that real value by at most
``sensitivity``. Every element of an array is a separate scalar release
(e.g. one respondent's answer). It is not a mechanism for a vector query
whose coordinates change together: rounding moves every changed coordinate
by up to one extra step, so the widening would have to be one step per
coordinate.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from numpy.typing import ArrayLike

from ..prg import RandomSource, system_random
from .loss import PrivacyLoss
from .rational import positive_rational, rational_at_least
from .samplers import bernoulli_float_each, discrete_laplace, discrete_laplace_variance

GRID_STEPS_PER_SCALE = 20  # default grid: scale / 2^20
_MAX_UNITS = 2.0**62
ROUNDINGS = ("nearest", "unbiased")


def unbiased_round(x: np.ndarray, rng: RandomSource) -> np.ndarray:
    """Each float to floor or ceil, ceil with probability equal to its fractional part, exactly.

    So E[result] = x. The magnitude is rounded and the sign restored:
    |x| - floor(|x|) is exact in floats, whereas x - floor(x) is not for
    -1/2 < x < 0 (it can even round to 1). Values must fit int64.
    """
    x = np.asarray(x, dtype=np.float64)
    magnitude = np.abs(x)
    low = np.floor(magnitude)
    rounded = low.astype(np.int64) + bernoulli_float_each(magnitude - low, rng)
    signed: np.ndarray = np.where(x < 0, -rounded, rounded)
    return signed


class GridLaplace:
    """Pure epsilon-DP Laplace noise on the grid 2^grid_exponent.

    ``rounding="nearest"`` rounds half to even (deterministic);
    ``"unbiased"`` rounds up with probability equal to the fractional part
    (exact Bernoulli), so E[output] = input exactly.
    """

    def __init__(
        self,
        epsilon: float,
        sensitivity: float,
        grid_exponent: int | None = None,
        rounding: str = "nearest",
    ):
        eps = positive_rational(epsilon, "epsilon")
        sens = positive_rational(sensitivity, "sensitivity")
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
        if grid_exponent is None:
            grid_exponent = math.floor(math.log2(float(sens / eps))) - GRID_STEPS_PER_SCALE
        if not isinstance(grid_exponent, int) or not -1000 <= grid_exponent <= 1000:
            raise ValueError(f"grid_exponent must be an integer in [-1000, 1000], got {grid_exponent!r}")
        self.epsilon = float(epsilon)
        self.sensitivity = float(sensitivity)
        self.rounding = rounding
        self.grid_exponent = grid_exponent
        self.grid = 2.0**grid_exponent
        steps = sens / Fraction(2) ** grid_exponent
        if rounding == "nearest":
            self.sensitivity_steps = math.floor(steps) + 1
        else:
            self.sensitivity_steps = math.ceil(steps) + 1
        self.scale_steps = rational_at_least(self.sensitivity_steps / eps, "noise scale in grid steps")

    @property
    def guarantee(self) -> PrivacyLoss:
        """Pure epsilon = sensitivity steps / scale steps (exact)."""
        return PrivacyLoss.pure(self.sensitivity_steps / self.scale_steps)

    @property
    def variance(self) -> float:
        """Variance of the added noise in input units: g^2 2a / (1 - a)^2, a = exp(-1 / scale)."""
        return self.grid**2 * discrete_laplace_variance(self.scale_steps)

    def to_grid(self, x: ArrayLike, rng: RandomSource) -> np.ndarray:
        """The inputs as int64 grid indices (rounded as configured)."""
        arr = np.asarray(x, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(arr)):
            raise ValueError("input contains NaN or infinite values")
        scaled = arr / self.grid  # exact: division by a power of two
        if arr.size and np.max(np.abs(scaled)) >= _MAX_UNITS:
            raise ValueError(
                f"input magnitude exceeds the grid range 2^{62 + self.grid_exponent}; use a coarser grid_exponent"
            )
        if self.rounding == "nearest":
            return np.rint(scaled).astype(np.int64)
        return unbiased_round(scaled, rng)

    def release(self, x: ArrayLike, rng: RandomSource | None = None) -> np.ndarray:
        """x plus noise, as floats that are exact multiples of the grid step."""
        rng = rng or system_random("dp/grid-laplace")
        shape = np.shape(x)
        steps = self.to_grid(x, rng)
        noisy = steps + discrete_laplace(self.scale_steps, steps.size, rng)
        out: np.ndarray = (noisy.astype(np.float64) * self.grid).reshape(shape)
        return out
