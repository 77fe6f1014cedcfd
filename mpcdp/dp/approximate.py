"""Floating-point samplers for distributed noise pieces: NOT exact.

These samplers are used only where no practical exact sampler exists: the
Polya (negative binomial with non-integer shape) pieces of distributed
discrete Laplace noise, and Poisson pieces with a mean too large for the
exact O(lambda) sampler of :mod:`mpcdp.dp.samplers`. Their uniform inputs
come from a CSPRNG (:class:`~mpcdp.prg.RandomSource`), and the input data
never enters them, so floating-point error can only perturb the noise
distribution by about 1e-12 in relative terms; it cannot reveal an input
the way a float Laplace added to the data can (Mironov, CCS 2012).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..prg import RandomSource
from .samplers import POISSON_EXACT_MAX, uniform_below
from .samplers import poisson as exact_poisson

PTRS_MIN_MEAN = 10.0
PTRS_MAX_MEAN = 2.0**50  # counts must stay exact in float64


def uniform_open(rng: RandomSource, n: int) -> np.ndarray:
    """n doubles uniform on the open interval (0, 1): 53 random bits plus a half-ulp offset.

    The one uniform sampler of the library (the text mechanisms use it too); never 0 or 1, so logarithms
    of it and of 1 - it are finite.
    """
    words = rng.uint64(n) >> np.uint64(11)
    out: np.ndarray = (words.astype(np.float64) + 0.5) * 2.0**-53
    return out


def poisson_large(lam: float, size: int, rng: RandomSource) -> np.ndarray:
    """Poisson(lam) for lam >= 10 by Hormann's transformed rejection (PTRS, 1993). Approximate.

    Exact up to the floating-point evaluation of the acceptance test.
    """
    lam = float(lam)
    if not (PTRS_MIN_MEAN <= lam <= PTRS_MAX_MEAN):
        raise ValueError(f"lam must be in [{PTRS_MIN_MEAN}, 2^50], got {lam!r}")
    slam, loglam = math.sqrt(lam), math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    log_inv_alpha = math.log(1.1239 + 1.1328 / (b - 3.4))
    vr = 0.9277 - 3.6224 / (b - 2)
    out = np.empty(size, dtype=np.int64)
    todo = np.arange(size)
    while todo.size:
        u = uniform_open(rng, todo.size) - 0.5
        v = uniform_open(rng, todo.size)
        us = 0.5 - np.abs(u)
        k = np.floor((2 * a / us + b) * u + lam + 0.43)
        quick = (us >= 0.07) & (v <= vr)
        possible = (k >= 0) & ~((us < 0.013) & (v > us))
        log_ratio = _poisson_log_pmf(np.maximum(k, 0), lam, loglam)
        slow = possible & (np.log(v) + log_inv_alpha - np.log(a / (us * us) + b) <= log_ratio)
        ok = quick | slow
        out[todo[ok]] = k[ok].astype(np.int64)
        todo = todo[~ok]
    return out


def _poisson_log_pmf(k: np.ndarray, lam: float, loglam: float) -> np.ndarray:
    """ln P(K = k) for Poisson(lam), without the cancellation of -lam + k ln lam - ln k!.

    For k >= 10 the saddle-point form of Loader (2000) is used:
    -(k log1p((k - lam) / lam) - (k - lam)) - ln(2 pi k) / 2 - stirlerr(k),
    stirlerr(k) = 1/(12k) - 1/(360k^3) + 1/(1260k^5).
    """
    from scipy.special import gammaln  # here, not at import: the text node uses uniform_open and starts fast

    small = k < 10
    ks = np.where(small, 10.0, k)
    d = ks - lam
    bd0 = ks * np.log1p(d / lam) - d
    stirlerr = 1 / (12 * ks) - 1 / (360 * ks**3) + 1 / (1260 * ks**5)
    saddle = -bd0 - 0.5 * np.log(2 * math.pi * ks) - stirlerr
    direct = -lam + k * loglam - gammaln(k + 1)
    return np.where(small, direct, saddle)


def poisson(lam: float, size: int, rng: RandomSource) -> np.ndarray:
    """Poisson(lam): the exact sampler up to POISSON_EXACT_MAX (lam taken as the exact
    rational value of the float), PTRS above it."""
    if lam <= POISSON_EXACT_MAX:
        return exact_poisson(Fraction(lam), size, rng)
    return poisson_large(lam, size, rng)


def logarithmic(scale: float, size: int, rng: RandomSource) -> np.ndarray:
    """Logarithmic(alpha), alpha = exp(-1/scale): P(L = k) = -alpha^k / (k ln(1 - alpha)), k >= 1.

    Kemp's algorithm LK (1981; Devroye 1986, X.5). Approximate.
    """
    alpha = math.exp(-1.0 / scale)
    log1m_alpha = math.log(-math.expm1(-1.0 / scale))
    v = uniform_open(rng, size)
    out = np.ones(size, dtype=np.int64)
    big = np.flatnonzero(v < alpha)
    if big.size:
        vb = v[big]
        q = -np.expm1(uniform_open(rng, big.size) * log1m_alpha)
        with np.errstate(divide="ignore"):
            tail = np.floor(1 + np.log(vb) / np.log(q))
        out[big] = np.where(vb < q * q, tail, np.where(vb < q, 2, 1)).astype(np.int64)
    return out


def polya(shape: float, scale: float, size: int, rng: RandomSource) -> np.ndarray:
    """Polya / negative binomial NB(shape, alpha), alpha = exp(-1/scale). Approximate.

    P(X = k) = Gamma(k + shape) / (k! Gamma(shape)) (1 - alpha)^shape alpha^k.
    Sampled as a compound Poisson: N ~ Poisson(-shape ln(1 - alpha))
    logarithmic(alpha) variables summed (the pgf identity
    ((1 - alpha) / (1 - alpha z))^shape = exp(lam (G_L(z) - 1))). The ``size`` Poisson counts are drawn at once:
    their total is Poisson(size lam) and, given the total, each event falls on a uniformly chosen element
    (independent Poissons conditioned on their sum are multinomial), so a 262,149-element piece costs one
    Poisson draw and one uniform index per event instead of ``size`` Poisson draws (3x faster).
    """
    size = int(size)
    if not (shape > 0 and scale > 0):
        raise ValueError("shape and scale must be positive")
    lam = -shape * math.log(-math.expm1(-1.0 / scale))
    out = np.zeros(size, dtype=np.int64)
    if lam == 0.0 or size == 0:  # alpha = exp(-1/scale) underflows: NB(shape, alpha) is 0 to float precision
        return out
    events = int(poisson(lam * size, 1, rng)[0])
    np.add.at(out, uniform_below(size, events, rng), logarithmic(scale, events, rng))
    return out
