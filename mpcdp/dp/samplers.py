"""Exact samplers for DP noise, vectorised over numpy arrays.

Every sampler here is *exact*: given uniform random words from a
:class:`~mpcdp.prg.RandomSource`, its output has exactly the stated
distribution for the exact rational parameter it is given. No floating-point
number is involved in any sampling decision, so none of the attacks on
floating-point noise (Mironov, CCS 2012) apply. Randomness is consumed in
64-bit words; loops run over the shrinking set of undecided elements. A few
draws (``SCALAR_MAX``) are made on Python ints instead, with the same
comparisons on the same words, so still exact.

Algorithms: Bernoulli(p) for rational p by lazy comparison of a uniform
binary expansion with p's; Bernoulli(exp(-gamma)), discrete Laplace and
discrete Gaussian as Algorithms 1-3 of Canonne, Kamath and Steinke, "The
Discrete Gaussian for Differential Privacy" (NeurIPS 2020); Poisson(lambda)
for rational lambda by geometric rejection (cost linear in lambda).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from fractions import Fraction
from functools import cache, lru_cache
from math import factorial, isqrt

import numpy as np

from ..prg import RandomSource

_TWO32 = np.uint64(1 << 32)
_LOW32 = np.uint64((1 << 32) - 1)
_TWO64 = 1 << 64
_SAFE_V = 1 << 10  # V < 2^10 keeps U + t V below 2^63 for t < 2^52
POISSON_EXACT_MAX = 256  # exact Poisson costs O(lambda) words per sample
SCALAR_MAX = 16  # up to this many draws, loops over Python numbers instead of numpy arrays (same law): each
# rejection round of a vector sampler makes ~10-30 array calls of 1-5 us, whatever the size; measured, the loops
# are ~10x cheaper for one draw and even at about 16 (benchmarks/dp_samplers.py --small)


def _check_size(size: object) -> int:
    if not isinstance(size, (int, np.integer)) or size < 0:
        raise ValueError(f"size must be a non-negative integer, got {size!r}")
    return int(size)


def words(rng: RandomSource, n: int) -> tuple[int, ...]:
    """The next n 64-bit words of ``rng`` as Python ints: the words ``rng.uint64(n)`` would give, in one call."""
    if n == 1:
        return (int.from_bytes(rng.bytes(8), "little"),)
    return struct.unpack(f"<{n}Q", rng.bytes(8 * n))


def _uint32(rng: RandomSource, n: int) -> np.ndarray:
    return rng.uint64((n + 1) // 2).view(np.uint32)[:n].astype(np.uint64)


def uniform_below(bound: int, size: int, rng: RandomSource) -> np.ndarray:
    """Exactly uniform int64 integers in [0, bound), for 1 <= bound <= 2^63.

    Bounds up to 2^32 use Lemire's multiply-and-reject on 32-bit halves of a
    word; larger bounds reject masked 64-bit words. Both are exact.
    """
    size = _check_size(size)
    bound = int(bound)
    if not 1 <= bound <= 1 << 63:
        raise ValueError(f"bound must be in [1, 2^63], got {bound}")
    out = np.zeros(size, dtype=np.int64)
    if bound == 1 or size == 0:
        return out
    todo = np.arange(size)
    if bound <= 1 << 32:
        m = np.uint64(bound)
        threshold = np.uint64((1 << 32) % bound)
        while todo.size:
            prod = _uint32(rng, todo.size) * m
            ok = (prod & _LOW32) >= threshold
            out[todo[ok]] = (prod[ok] >> np.uint64(32)).astype(np.int64)
            todo = todo[~ok]
        return out
    shift = np.uint64(64 - (bound - 1).bit_length())
    while todo.size:
        u = rng.uint64(todo.size) >> shift
        ok = u < np.uint64(bound)
        out[todo[ok]] = u[ok].astype(np.int64)
        todo = todo[~ok]
    return out


def bernoulli(p: Fraction | int | float | str, size: int, rng: RandomSource) -> np.ndarray:
    """Exact Bernoulli(p) for a rational p in [0, 1] (int, Fraction or float, taken exactly).

    A uniform u in [0, 1) is compared with p one 64-bit binary digit at a
    time; a digit tie (probability 2^-64) moves on to the next digit.
    """
    size = _check_size(size)
    p = Fraction(p)
    if not 0 <= p <= 1:
        raise ValueError(f"probability must be in [0, 1], got {float(p)!r}")
    if p == 1:
        return np.ones(size, dtype=bool)
    out = np.zeros(size, dtype=bool)
    rem, den = p.numerator, p.denominator
    todo = np.arange(size)
    while todo.size and rem:
        digit, rem = divmod(rem << 64, den)
        u = rng.uint64(todo.size)
        out[todo[u < np.uint64(digit)]] = True
        todo = todo[u == np.uint64(digit)]
    return out


def _bernoulli_one(numerator: int, denominator: int, rng: RandomSource) -> bool:
    """:func:`bernoulli` for one element, p = numerator / denominator in [0, 1]: the same digit-by-digit
    comparison on Python ints, the same words (one per 64-bit digit). Exact."""
    if numerator >= denominator:
        return True
    rem = numerator
    while rem:
        digit, rem = divmod(rem << 64, denominator)
        (u,) = words(rng, 1)
        if u != digit:
            return u < digit
    return False


def _bernoulli_each(numerators: np.ndarray, den: int, rng: RandomSource) -> np.ndarray:
    """Exact Bernoulli(numerators[i] / den), per-element numerators in [0, den] (object ints)."""
    out = np.zeros(numerators.size, dtype=bool)
    rems = numerators
    todo = np.arange(numerators.size)
    while todo.size:
        full = rems == den
        out[todo[full]] = True
        todo, rems = todo[~full], rems[~full]
        if not todo.size:
            break
        shifted = rems * _TWO64
        digits = (shifted // den).astype(np.uint64)
        rems = shifted % den
        u = rng.uint64(todo.size)
        out[todo[u < digits]] = True
        tie = (u == digits) & (rems != 0)
        todo, rems = todo[tie], rems[tie]
    return out


def bernoulli_float_each(p: np.ndarray, rng: RandomSource) -> np.ndarray:
    """Exact Bernoulli(p[i]) for per-element float probabilities in [0, 1).

    Each float is an exact dyadic rational; it is compared with a uniform
    binary expansion 32 bits at a time (scaling by 2^32 is exact in floats),
    so the decision never depends on floating-point rounding.
    """
    rem = np.asarray(p, dtype=np.float64).copy()
    if not np.all((rem >= 0) & (rem < 1)):
        raise ValueError("probabilities must be in [0, 1)")
    out = np.zeros(rem.size, dtype=bool)
    todo = np.flatnonzero(rem > 0)
    rem = rem[todo]
    while todo.size:
        scaled = rem * 2.0**32
        digit = np.floor(scaled)
        u = _uint32(rng, todo.size).astype(np.float64)
        out[todo[u < digit]] = True
        rem = scaled - digit
        tie = (u == digit) & (rem > 0)
        todo, rem = todo[tie], rem[tie]
    return out


def bernoulli_exp_neg(gamma: Fraction | int | float | str, size: int, rng: RandomSource) -> np.ndarray:
    """Exact Bernoulli(exp(-gamma)) for a rational gamma >= 0 (CKS 2020, Algorithm 1).

    gamma = whole + frac: ``whole`` independent Bernoulli(e^-1) must all
    succeed, then Bernoulli(e^-frac) by the alternating series: draw
    A_k ~ Bernoulli(frac / k) for k = 1, 2, ... until the first failure and
    succeed iff that k is odd.
    """
    size = _check_size(size)
    gamma = Fraction(gamma)
    if gamma < 0:
        raise ValueError(f"gamma must be non-negative, got {float(gamma)!r}")
    whole = gamma.numerator // gamma.denominator
    frac = gamma - whole
    alive = np.arange(size)
    step = 0
    while step < whole and alive.size:
        alive = alive[_bernoulli_exp_neg_unit(Fraction(1), alive.size, rng)]
        step += 1
    out = np.zeros(size, dtype=bool)
    out[alive] = _bernoulli_exp_neg_unit(frac, alive.size, rng)
    return out


def _alternating_series(size: int, bernoulli_over_k: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    """Bernoulli(exp(-gamma[i])) for gamma[i] in [0, 1] (CKS 2020, Algorithm 1).

    ``bernoulli_over_k(todo, k)`` draws Bernoulli(gamma[i] / k) for the
    elements ``todo``; the draws go on until each element's first failure,
    and an element succeeds iff that failure came at an odd k.
    """
    k_first_failure = np.zeros(size, dtype=np.int64)
    todo = np.arange(size)
    k = 1
    while todo.size:
        success = bernoulli_over_k(todo, k)
        k_first_failure[todo[~success]] = k
        todo = todo[success]
        k += 1
    odd: np.ndarray = (k_first_failure % 2) == 1
    return odd


def _bernoulli_exp_neg_unit(frac: Fraction, size: int, rng: RandomSource) -> np.ndarray:
    """Bernoulli(exp(-frac)) for a scalar rational frac in [0, 1]."""
    return _alternating_series(size, lambda todo, k: bernoulli(frac / k, todo.size, rng))


def _bernoulli_exp_neg_ratio(u: np.ndarray, t: int, rng: RandomSource) -> np.ndarray:
    """Bernoulli(exp(-u[i] / t)) for per-element integers 0 <= u[i] < t.

    Bernoulli(u / (t k)) is drawn as Bernoulli(u / t) AND Bernoulli(1 / k),
    which keeps every comparison within 64-bit integers.
    """
    return _alternating_series(
        u.size, lambda todo, k: (uniform_below(t, todo.size, rng) < u[todo]) & bernoulli(Fraction(1, k), todo.size, rng)
    )


def _geometric_exp_neg_one(size: int, rng: RandomSource) -> np.ndarray:
    """V with P(V = v) = (1 - e^-1) e^-v: count Bernoulli(e^-1) successes before a failure."""
    v = np.zeros(size, dtype=np.int64)
    todo = np.arange(size)
    while todo.size:
        success = _bernoulli_exp_neg_unit(Fraction(1), todo.size, rng)
        todo = todo[success]
        v[todo] += 1
    return v


def discrete_laplace(scale: Fraction | int | float | str, size: int, rng: RandomSource) -> np.ndarray:
    """Exact discrete Laplace: P(X = x) proportional to exp(-|x| / scale) on the integers.

    ``scale`` = t / s is an exact rational with t, s < 2^52 (see
    :func:`mpcdp.dp.rational.rational_at_least`). CKS 2020, Algorithm 2:
    U uniform on [0, t) accepted with probability exp(-U / t), V geometric,
    Y = floor((U + t V) / s), a random sign, and rejection of "-0". Returns
    int64; a sample beyond the int64 range (probability below
    exp(-2^62 / scale)) raises OverflowError.
    """
    size = _check_size(size)
    scale = Fraction(scale)
    t, s = scale.numerator, scale.denominator
    if scale <= 0 or t >= 1 << 52 or s >= 1 << 52:
        raise ValueError("scale must be a positive rational with numerator and denominator < 2^52")
    q, r = divmod(t, s)
    out = np.empty(size, dtype=np.int64)
    filled, rate = 0, 0.3
    while filled < size:
        need = size - filled
        n = int(need / rate * 1.1) + 64
        u = uniform_below(t, n, rng)
        keep = _bernoulli_exp_neg_ratio(u, t, rng)
        u = u[keep]
        v = _geometric_exp_neg_one(u.size, rng)
        y = np.empty(u.size, dtype=np.int64)
        small = v < _SAFE_V
        y[small] = v[small] * q + (v[small] * r + u[small]) // s
        for i in np.flatnonzero(~small):
            y_big = (int(u[i]) + t * int(v[i])) // s
            if y_big >= 1 << 63:
                raise OverflowError("discrete Laplace sample outside the int64 range")
            y[i] = y_big
        negative = (rng.uint64(u.size) >> np.uint64(63)).astype(bool)
        valid = ~(negative & (y == 0))
        y = np.where(negative, -y, y)[valid]
        rate = max(y.size / n, 0.01)
        take = min(need, y.size)
        out[filled : filled + take] = y[:take]
        filled += take
    return out


def discrete_laplace_variance(scale: Fraction | int | float | str) -> float:
    """Variance of the discrete Laplace of ``scale``: 2 a / (1 - a)^2, a = exp(-1 / scale)."""
    b = float(scale)
    return 2 * math.exp(-1 / b) / math.expm1(-1 / b) ** 2


def discrete_gaussian(sigma2: Fraction | int | float | str, size: int, rng: RandomSource) -> np.ndarray:
    """Exact discrete Gaussian: P(X = x) proportional to exp(-x^2 / (2 sigma2)) on the integers.

    ``sigma2`` is an exact positive rational. CKS 2020, Algorithm 3: a
    discrete Laplace proposal of integer scale floor(sigma) + 1, accepted with
    probability exp(-(|Y| - sigma2 / t)^2 / (2 sigma2)). The acceptance
    exponent is computed with exact (Python) integers.
    """
    size = _check_size(size)
    sigma2 = Fraction(sigma2)
    if sigma2 <= 0:
        raise ValueError(f"sigma2 must be positive, got {float(sigma2)!r}")
    a, b = sigma2.numerator, sigma2.denominator
    t = isqrt(a // b) + 1
    den = 2 * a * b * t * t  # gamma = (|Y| t b - a)^2 / den
    out = np.empty(size, dtype=np.int64)
    filled = 0
    while filled < size:
        need = size - filled
        y = discrete_laplace(Fraction(t), int(need * 1.5) + 64, rng)
        num = (np.abs(y).astype(object) * (t * b) - a) ** 2
        whole = num // den
        frac_num = num % den
        alive = np.arange(y.size)
        step = 0
        while alive.size:
            pending = whole[alive] > step
            if not pending.any():
                break
            survivors = _bernoulli_exp_neg_unit(Fraction(1), int(pending.sum()), rng)
            alive = np.concatenate([alive[~pending], alive[pending][survivors]])
            step += 1
        accepted = np.zeros(y.size, dtype=bool)
        accepted[alive] = _bernoulli_exp_neg_fraction_each(frac_num[alive], den, rng)
        y = y[accepted]
        take = min(need, y.size)
        out[filled : filled + take] = y[:take]
        filled += take
    return out


def _bernoulli_exp_neg_fraction_each(nums: np.ndarray, den: int, rng: RandomSource) -> np.ndarray:
    """Bernoulli(exp(-nums[i] / den)) for per-element rationals in [0, 1)."""
    return _alternating_series(
        nums.size, lambda todo, k: _bernoulli_each(nums[todo], den, rng) & bernoulli(Fraction(1, k), todo.size, rng)
    )


def poisson(lam: Fraction | int | float | str, size: int, rng: RandomSource) -> np.ndarray:
    """Exact Poisson(lam) for a rational lam in (0, POISSON_EXACT_MAX].

    lam is split into J = ceil(lam) equal parts mu <= 1 and the J Poisson(mu)
    draws are summed. Each Poisson(mu) is a geometric proposal K with
    P(K = k) proportional to (mu / 2)^k, accepted with the rational
    probability 2^(k-1) / k! (at least 0.68 for mu <= 1). Cost is linear in lam.
    """
    size = _check_size(size)
    parts, mu = _poisson_parts(Fraction(lam))
    if size * parts <= SCALAR_MAX:  # for one draw of lam <= 1, the same words as the vector path
        half_num, half_den = mu.numerator, 2 * mu.denominator
        one = [sum(_poisson_at_most_one_scalar(half_num, half_den, rng) for _ in range(parts)) for _ in range(size)]
        return np.array(one, dtype=np.int64)
    total: np.ndarray = _poisson_at_most_one(mu, size * parts, rng).reshape(size, parts).sum(axis=1)
    return total


@lru_cache(maxsize=1024)
def _poisson_parts(lam: Fraction) -> tuple[int, Fraction]:
    """J = ceil(lam) and mu = lam / J for :func:`poisson` (kept: a query shape draws with the same lam)."""
    if not 0 < lam <= POISSON_EXACT_MAX:
        raise ValueError(f"lam must be in (0, {POISSON_EXACT_MAX}] for the exact sampler")
    parts = -(-lam.numerator // lam.denominator)
    return parts, lam / parts


def _poisson_at_most_one(mu: Fraction, size: int, rng: RandomSource) -> np.ndarray:
    out = np.empty(size, dtype=np.int64)
    todo = np.arange(size)
    half = mu / 2
    while todo.size:
        k = np.zeros(todo.size, dtype=np.int64)
        going = np.arange(todo.size)
        while going.size:
            going = going[bernoulli(half, going.size, rng)]
            k[going] += 1
        accept = np.zeros(todo.size, dtype=bool)
        for value in np.unique(k):
            where = np.flatnonzero(k == value)
            prob = _acceptance(int(value))
            accept[where] = bernoulli(prob, where.size, rng)
        out[todo[accept]] = k[accept]
        todo = todo[~accept]
    return out


@cache
def _acceptance(k: int) -> Fraction:
    """The acceptance probability of a geometric proposal k in :func:`_poisson_at_most_one`: 2^(k-1) / k!."""
    return Fraction(2**k, 2 * factorial(k))


def _poisson_at_most_one_scalar(half_num: int, half_den: int, rng: RandomSource) -> int:
    """One draw of :func:`_poisson_at_most_one` with mu / 2 = half_num / half_den, on Python ints: the same
    proposals and acceptances from the same words as the vector path for one element. Exact."""
    while True:
        k = 0
        while _bernoulli_one(half_num, half_den, rng):
            k += 1
        accept = _acceptance(k)
        if _bernoulli_one(accept.numerator, accept.denominator, rng):
            return k
