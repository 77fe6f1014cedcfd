"""Floating-point samplers for distributed noise pieces: NOT exact.

These samplers are used only where no practical exact sampler exists: the
Polya (negative binomial with non-integer shape) pieces of distributed
discrete Laplace noise, and Poisson pieces with a mean too large for the
exact O(lambda) sampler of :mod:`mpcdp.dp.samplers`. Their uniform inputs
come from a CSPRNG (:class:`~mpcdp.prg.RandomSource`), and the input data
never enters them, so floating-point error can only perturb the noise
distribution by about 1e-12 in relative terms; it cannot reveal an input
the way a float Laplace added to the data can (Mironov, CCS 2012).

Pieces of at most ``SCALAR_MAX`` elements (a scalar statistic's) are drawn element by element on Python
floats by the same algorithms: for one element, from the same words of the stream, the same draws as the
numpy path (the tests compare them); numpy's per-call setup dominated there (~1 ms per scalar piece).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..prg import RandomSource
from .samplers import POISSON_EXACT_MAX, SCALAR_MAX, uniform_below, words
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


def _open_floats(rng: RandomSource, n: int) -> tuple[float, ...]:
    """The next n doubles of :func:`uniform_open`, as Python floats: the same words of the stream (one call
    for all n), the same arithmetic (the word's top 53 bits, plus one half, times 2^-53; each step rounds as
    numpy's does), so the same values."""
    return tuple((float(w >> 11) + 0.5) * 2.0**-53 for w in words(rng, n))


def poisson_large(lam: float, size: int, rng: RandomSource) -> np.ndarray:
    """Poisson(lam) for lam >= 10 by Hormann's transformed rejection (PTRS, 1993). Approximate.

    Exact up to the floating-point evaluation of the acceptance test.
    """
    lam = float(lam)
    if not (PTRS_MIN_MEAN <= lam <= PTRS_MAX_MEAN):
        raise ValueError(f"lam must be in [{PTRS_MIN_MEAN}, 2^50], got {lam!r}")
    if size <= SCALAR_MAX:
        return np.array([_poisson_one(lam, rng) for _ in range(size)], dtype=np.int64)
    return _ptrs(np.full(int(size), lam), rng)


def poisson_each(means: np.ndarray, rng: RandomSource) -> np.ndarray:
    """One Poisson(means[i]) draw per element, each mean in [0, 2^50]. Approximate.

    Means below 10 by inversion (sequential search of the cumulative pmf), the others by PTRS (Hormann 1993);
    both exact up to floating-point evaluation.
    """
    means = np.asarray(means, dtype=np.float64)
    if means.size and not (means.min() >= 0 and means.max() <= PTRS_MAX_MEAN):  # NaN fails both comparisons
        raise ValueError("every mean must be in [0, 2^50]")
    out = np.zeros(means.size, dtype=np.int64)
    small = np.flatnonzero(means < PTRS_MIN_MEAN)
    if small.size:
        out[small] = _inversion(means[small], rng)
    big = np.flatnonzero(means >= PTRS_MIN_MEAN)
    if big.size:
        out[big] = _ptrs(means[big], rng)
    return out


def _inversion(means: np.ndarray, rng: RandomSource) -> np.ndarray:
    """Poisson draws for means below 10: the first k whose cumulative pmf reaches a uniform."""
    u = uniform_open(rng, means.size)
    pk = np.exp(-means)
    cdf = pk.copy()
    k = np.zeros(means.size, dtype=np.int64)
    todo = np.flatnonzero(u > cdf)
    while todo.size:  # a few dozen rounds at most: the pmf underflows to 0 past k ~ 200 for means below 10
        k[todo] += 1
        pk[todo] *= means[todo] / k[todo]
        cdf[todo] += pk[todo]
        todo = todo[(u[todo] > cdf[todo]) & (pk[todo] > 0)]
    return k


def _ptrs(means: np.ndarray, rng: RandomSource) -> np.ndarray:
    """Poisson draws for means in [10, 2^50] by PTRS, one mean per element. The quick acceptance region
    takes most draws; the log-pmf is evaluated only for the rest."""
    out = np.empty(means.size, dtype=np.int64)
    todo = np.arange(means.size)
    while todo.size:
        lam = means[todo]
        b = 0.931 + 2.53 * np.sqrt(lam)
        a = -0.059 + 0.02483 * b
        vr = 0.9277 - 3.6224 / (b - 2)
        u = uniform_open(rng, todo.size) - 0.5
        v = uniform_open(rng, todo.size)
        us = 0.5 - np.abs(u)
        k = np.floor((2 * a / us + b) * u + lam + 0.43)
        ok = (us >= 0.07) & (v <= vr)
        rest = np.flatnonzero(~ok & (k >= 0) & ~((us < 0.013) & (v > us)))
        if rest.size:
            br, ur, lr = b[rest], us[rest], lam[rest]
            log_inv_alpha = np.log(1.1239 + 1.1328 / (br - 3.4))
            bound = np.log(v[rest]) + log_inv_alpha - np.log(a[rest] / (ur * ur) + br)
            ok[rest] = bound <= _poisson_log_pmf(k[rest], lr, np.log(lr))
        out[todo[ok]] = k[ok].astype(np.int64)
        todo = todo[~ok]
    return out


def _poisson_one(mean: float, rng: RandomSource) -> int:
    """One Poisson(mean) draw, mean in [0, 2^50]: :func:`poisson_each`'s algorithms (inversion below 10, PTRS of
    Hormann 1993 above) on Python floats, consuming the stream as it does for one element. Approximate, as they
    are (exact up to the floating-point evaluation)."""
    if not 0 <= mean <= PTRS_MAX_MEAN:  # NaN fails it
        raise ValueError("every mean must be in [0, 2^50]")
    if mean < PTRS_MIN_MEAN:
        (u,) = _open_floats(rng, 1)
        pk = math.exp(-mean)
        cdf, k = pk, 0
        while u > cdf and (k == 0 or pk > 0):
            k += 1
            pk *= mean / k
            cdf += pk
        return k
    b = 0.931 + 2.53 * math.sqrt(mean)
    a = -0.059 + 0.02483 * b
    vr = 0.9277 - 3.6224 / (b - 2)
    log_inv_alpha = math.log(1.1239 + 1.1328 / (b - 3.4))
    log_mean = math.log(mean)
    while True:
        u, v = _open_floats(rng, 2)
        u -= 0.5
        us = 0.5 - abs(u)
        if us == 0.0:  # u was 1.0 (probability 2^-53): the vector path's k is infinite and rejected too
            continue
        k = math.floor((2 * a / us + b) * u + mean + 0.43)
        if us >= 0.07 and v <= vr:
            return k
        if k < 0 or (us < 0.013 and v > us):
            continue
        if math.log(v) + log_inv_alpha - math.log(a / (us * us) + b) <= _log_pmf_one(float(k), mean, log_mean):
            return k


def _log_pmf_one(k: float, lam: float, loglam: float) -> float:
    """:func:`_poisson_log_pmf` for one k, in Python floats."""
    if k < 10:
        return -lam + k * loglam - math.lgamma(k + 1)
    d = k - lam
    bd0 = k * math.log1p(d / lam) - d
    stirlerr = 1 / (12 * k) - 1 / (360 * k**3) + 1 / (1260 * k**5)
    return -bd0 - 0.5 * math.log(2 * math.pi * k) - stirlerr


def normal(size: int, rng: RandomSource) -> np.ndarray:
    """``size`` standard normal draws by the Box-Muller transform (1958). Approximate."""
    radius = np.sqrt(-2.0 * np.log(uniform_open(rng, size)))
    out: np.ndarray = radius * np.cos(2.0 * math.pi * uniform_open(rng, size))
    return out


def gamma(shape: float, size: int, rng: RandomSource) -> np.ndarray:
    """``size`` Gamma(shape, 1) draws by Marsaglia and Tsang's squeeze-free rejection ("A simple method for
    generating gamma variables", ACM TOMS 2000); below shape 1, Gamma(shape + 1) U^(1/shape) (their
    section 6). Approximate (floating point)."""
    if not shape > 0:
        raise ValueError(f"shape must be positive, got {shape!r}")
    boosted = shape + 1.0 if shape < 1 else float(shape)
    d = boosted - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = np.empty(int(size))
    todo = np.arange(out.size)
    while todo.size:
        x = normal(todo.size, rng)
        v = 1.0 + c * x
        ok = v > 0
        v = np.where(ok, v * v * v, 1.0)
        log_u = np.log(uniform_open(rng, todo.size))
        ok &= log_u < 0.5 * x * x + d - d * v + d * np.log(v)
        out[todo[ok]] = d * v[ok]
        todo = todo[~ok]
    if shape < 1:
        out *= uniform_open(rng, out.size) ** (1.0 / shape)
    return out


def _gamma_one(shape: float, rng: RandomSource) -> float:
    """One Gamma(shape, 1) draw: :func:`gamma`'s algorithm (Marsaglia and Tsang 2000, Box-Muller normals) on
    Python floats, consuming the stream as it does for one element. Approximate, as it is."""
    boosted = shape + 1.0 if shape < 1 else float(shape)
    d = boosted - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        u_radius, u_angle, u_accept = _open_floats(rng, 3)  # gamma's normal (two uniforms), then its log_u
        x = math.sqrt(-2.0 * math.log(u_radius)) * math.cos(2.0 * math.pi * u_angle)
        v = 1.0 + c * x
        if v > 0:
            v = v * v * v
            if math.log(u_accept) < 0.5 * x * x + d - d * v + d * math.log(v):
                break
    out = d * v
    if shape < 1:
        out *= _open_floats(rng, 1)[0] ** (1.0 / shape)
    return out


def _poisson_log_pmf(k: np.ndarray, lam: np.ndarray, loglam: np.ndarray) -> np.ndarray:
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
    out: np.ndarray = np.where(small, direct, saddle)
    return out


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
    if size <= SCALAR_MAX:
        return np.array([_logarithmic_one(alpha, log1m_alpha, rng) for _ in range(size)], dtype=np.int64)
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


def _logarithmic_one(alpha: float, log1m_alpha: float, rng: RandomSource) -> int:
    """One draw of :func:`logarithmic` (Kemp's algorithm LK, 1981) on Python floats, consuming the stream as it
    does for one element. Approximate, as it is."""
    (v,) = _open_floats(rng, 1)
    if not v < alpha:
        return 1
    q = -math.expm1(_open_floats(rng, 1)[0] * log1m_alpha)
    if v < q * q:
        return math.floor(1 + math.log(v) / math.log(q))
    return 2 if v < q else 1


GAMMA_POISSON_MIN_EVENTS = 2.5  # Polya: above this many Poisson events per element, the gamma mixture is faster


def polya(shape: float, scale: float, size: int, rng: RandomSource) -> np.ndarray:
    """Polya / negative binomial NB(shape, alpha), alpha = exp(-1/scale). Approximate.

    P(X = k) = Gamma(k + shape) / (k! Gamma(shape)) (1 - alpha)^shape alpha^k. Drawn by whichever of two exact
    identities is cheaper for the parameters: the cost of :func:`polya_compound` grows with its Poisson events
    per element (about shape ln(scale)), that of :func:`polya_mixture` does not; measured side by side
    (benchmarks/dp_samplers.py --polya-only) they cross near ``GAMMA_POISSON_MIN_EVENTS`` events per element,
    a scale of ~150 at shape 1/2, and at scale 10^6 the mixture is ~4x faster.
    """
    _check_polya(shape, scale)
    if _polya_events(shape, scale) > GAMMA_POISSON_MIN_EVENTS:
        return polya_mixture(shape, scale, size, rng)
    return polya_compound(shape, scale, size, rng)


def polya_compound(shape: float, scale: float, size: int, rng: RandomSource) -> np.ndarray:
    """NB(shape, alpha) as a compound Poisson: N ~ Poisson(lam), lam = -shape ln(1 - alpha), logarithmic(alpha)
    variables summed (the pgf identity ((1 - alpha) / (1 - alpha z))^shape = exp(lam (G_L(z) - 1))). The
    ``size`` Poisson counts are drawn at once: their total is Poisson(size lam) and, given the total, each event
    falls on a uniformly chosen element (independent Poissons conditioned on their sum are multinomial)."""
    _check_polya(shape, scale)
    lam = _polya_events(shape, scale)
    out = np.zeros(int(size), dtype=np.int64)
    if lam == 0.0 or out.size == 0:  # alpha = exp(-1/scale) underflows: NB(shape, alpha) is 0 to float precision
        return out
    events = int(poisson(lam * out.size, 1, rng)[0])
    if out.size == 1:  # every event falls on the one element
        out[0] = logarithmic(scale, events, rng).sum()
    else:
        np.add.at(out, uniform_below(out.size, events, rng), logarithmic(scale, events, rng))
    return out


def polya_mixture(shape: float, scale: float, size: int, rng: RandomSource) -> np.ndarray:
    """NB(shape, alpha) as a gamma mixture of Poissons: Poisson(G alpha / (1 - alpha)), G ~ Gamma(shape, 1)
    (Greenwood and Yule 1920)."""
    _check_polya(shape, scale)
    if 1.0 / scale > 700.0:  # alpha = exp(-1/scale) underflows: NB(shape, alpha) is 0 to float precision
        return np.zeros(int(size), dtype=np.int64)
    if size <= SCALAR_MAX:  # element by element: for one element, the same draws from the same words
        odds = math.expm1(1.0 / scale)
        return np.array([_poisson_one(_gamma_one(shape, rng) / odds, rng) for _ in range(size)], dtype=np.int64)
    return poisson_each(gamma(shape, size, rng) / math.expm1(1.0 / scale), rng)


def _check_polya(shape: float, scale: float) -> None:
    if not (shape > 0 and scale > 0):
        raise ValueError("shape and scale must be positive")


def _polya_events(shape: float, scale: float) -> float:
    """The mean number of logarithmic variables per element of :func:`polya_compound`."""
    return -shape * math.log(-math.expm1(-1.0 / scale))
