"""Vectorised samplers driven by an explicit :class:`~mpcdp.prg.RandomSource`.

Every sampler turns uniforms on (0, 1) (the one uniform sampler,
:func:`mpcdp.dp.approximate.uniform_open`) into the target distribution by an
exact transform (inverse CDF, Box-Muller, sums of exponentials), so the only
randomness in the text mechanisms is the injected source: a CSPRNG in
production, ``Prg.from_int(seed)`` in tests.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ..dp.approximate import uniform_open
from ..prg import RandomSource


class TruncatedPoisson:
    """Poisson(lam) conditioned on lo <= k <= hi, sampled by inverse CDF over its exact table."""

    def __init__(self, lam: float, lo: int, hi: int):
        if not lam > 0:
            raise ValueError(f"Poisson rate lam must be positive, got {lam!r}")
        if not 0 <= lo <= hi:
            raise ValueError(f"need 0 <= lo <= hi, got lo={lo!r}, hi={hi!r}")
        self.lam, self.lo, self.hi = float(lam), int(lo), int(hi)
        # Beyond lam + 40 sqrt(lam) + 60 the remaining mass is far below 2^-53: it cannot
        # change a double-precision inverse CDF, so the table stops there.
        stop = min(self.hi, int(lam + 40 * np.sqrt(lam) + 60))
        # log P(K = k) = k ln(lam) - lam - ln(k!), up to the normalisation that follows.
        log_pmf = np.array([k * math.log(self.lam) - math.lgamma(k + 1) for k in range(self.lo, stop + 1)])
        pmf = np.exp(log_pmf - log_pmf.max())
        self._cdf = np.cumsum(pmf) / pmf.sum()
        self._cdf[-1] = 1.0

    def sample(self, rng: RandomSource, n: int) -> np.ndarray:
        u = uniform_open(rng, n)
        return self.lo + np.searchsorted(self._cdf, u, side="left").astype(np.int64)


def truncated_gumbel(rng: RandomSource, n: int, scale: float, bound: float) -> np.ndarray:
    """n iid Gumbel(0, scale) variates conditioned on [-bound, bound], by inverse CDF.

    The Gumbel CDF is F(x) = exp(-exp(-x / scale)); a uniform on (F(-bound), F(bound))
    is mapped through F^-1(u) = -scale ln(-ln u).
    """
    if not scale > 0 or not bound > 0:
        raise ValueError(f"Gumbel scale and bound must be positive, got scale={scale!r}, bound={bound!r}")
    f_lo = math.exp(-math.exp(bound / scale))
    f_hi = math.exp(-math.exp(-bound / scale))
    x = uniform_open(rng, n)  # transformed in place: one array, no temporaries
    x *= f_hi - f_lo
    x += f_lo
    with np.errstate(divide="ignore"):  # u rounding to 1.0 maps to +inf, clipped to bound
        np.log(x, out=x)
        np.negative(x, out=x)
        np.log(x, out=x)
    x *= -scale
    return np.clip(x, -bound, bound, out=x)


def truncated_gumbel_cdf(x: np.ndarray, scale: float, bound: float) -> np.ndarray:
    """The CDF of :func:`truncated_gumbel` (for tests and diagnostics)."""

    def f(t: npt.ArrayLike) -> np.ndarray:
        return np.exp(-np.exp(-np.asarray(t, dtype=np.float64) / scale))

    cdf: np.ndarray = np.clip((f(x) - f(-bound)) / (f(bound) - f(-bound)), 0.0, 1.0)
    return cdf


def standard_normal(rng: RandomSource, shape: tuple[int, ...]) -> np.ndarray:
    """iid N(0, 1) variates by the Box-Muller transform."""
    size = int(np.prod(shape))
    half = (size + 1) // 2
    radius = uniform_open(rng, half)  # sqrt(-2 ln u), in place
    np.log(radius, out=radius)
    radius *= -2.0
    np.sqrt(radius, out=radius)
    angle = uniform_open(rng, half)
    angle *= 2.0 * np.pi
    out = np.empty(2 * half)
    np.cos(angle, out=out[:half])
    out[:half] *= radius
    np.sin(angle, out=out[half:])
    out[half:] *= radius
    return out[:size].reshape(shape)


def gamma_integer_shape(rng: RandomSource, n: int, shape: int, scale: float) -> np.ndarray:
    """n iid Gamma(shape, scale) variates for an integer shape: scale times a sum of Exp(1).

    The sum of -ln(u) over ``shape`` uniforms is taken as -ln of their products, 16 uniforms at a time
    (each at least 2^-54, so a product of 16 stays far above the smallest double): the same variates as
    summing the logarithms, with 16 times fewer of them.
    """
    if int(shape) != shape or shape < 1:
        raise ValueError(f"Gamma shape must be a positive integer here, got {shape!r}")
    if not scale > 0:
        raise ValueError(f"Gamma scale must be positive, got {scale!r}")
    groups = -(-int(shape) // _GROUP)
    u = np.ones((n, groups * _GROUP))
    u[:, : int(shape)] = uniform_open(rng, n * int(shape)).reshape(n, int(shape))
    products = u.reshape(n, groups, _GROUP).prod(axis=2)
    radius: np.ndarray = np.log(products).sum(axis=1)
    radius *= -scale
    return radius


_GROUP = 16


def uniform_direction(rng: RandomSource, n: int, dim: int) -> np.ndarray:
    """n unit vectors uniform on the sphere S^(dim-1): normalised Gaussian vectors."""
    g = standard_normal(rng, (n, dim))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return g
