"""Local DP: client-side randomisers and the server-side estimators that undo them.

Each randomiser runs on the respondent's device with a CSPRNG and satisfies
pure epsilon-local DP: for *any* two possible answers of one respondent the
probability of every report changes by at most a factor e^epsilon (the
neighbouring relation of local DP), so even all aggregators together learn
only the noisy report. Keep/flip probabilities are dyadic rationals rounded
towards more privacy (:mod:`mpcdp.dp.rational`) and sampled exactly.

Each estimator is unbiased and returns an :class:`Estimate` whose variance
is conditional on the data. Clipping or normalising an estimate is a
separate, *biased* post-processing step (:func:`clip_proportions`,
:func:`normalize_frequencies`).

References: Warner, JASA 1965 (randomized response); Kairouz, Bonawitz and
Ramage, ICML 2016 (k-ary RR); Wang, Blocki, Li and Jha, USENIX Security 2017
(optimised unary encoding); Dwork, McSherry, Nissim and Smith 2006 (Laplace).
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from ..prg import RandomSource, system_random
from .estimate import Estimate
from .laplace import GridLaplace
from .rational import exp_decimal, log_up, positive_rational, probability_above, probability_below
from .samplers import uniform_below

TWO_COIN_EPSILON = math.log(3)
_HALF = np.uint64(1 << 63)


def _bits(reports: npt.ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(reports)
    if arr.dtype != bool:
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must be booleans or 0/1")
        arr = arr.astype(bool)
    return arr.reshape(-1)


def _nonempty(n: int, name: str) -> None:
    if n == 0:
        raise ValueError(f"{name} is empty")


def _threshold(p: Fraction) -> np.uint64:
    """T with Bernoulli(p) = [u < T] for a uniform 64-bit u; p must be a multiple of 2^-64."""
    t = p * (1 << 64)
    assert t.denominator == 1
    return np.uint64(t.numerator)


def _keep_probability(eps: Fraction, others: int) -> Fraction:
    """e^eps / (e^eps + others), rounded down to a multiple of 2^-64."""

    def exact() -> Decimal:
        e = exp_decimal(eps)
        return e / (e + others)

    return probability_below(exact, "keep probability")


def _too_small(epsilon: float) -> ValueError:
    return ValueError(
        f"epsilon={epsilon!r} is too small: at 64-bit resolution the reports would carry "
        "no information about the answer, and the estimator would be undefined"
    )


def two_coin_randomize(truth: npt.ArrayLike, rng: RandomSource | None = None) -> np.ndarray:
    """The seed's two-coin randomized response (epsilon = ln 3).

    Flip a fair coin: tails, answer truthfully; heads, flip a second coin and
    answer "yes" on heads, "no" on tails. A "yes" is reported with
    probability 3/4 by a true "yes" and 1/4 by a true "no".
    """
    truth = _bits(truth, "truth")
    rng = rng or system_random("dp/two-coin")
    coins = np.unpackbits(np.frombuffer(rng.bytes((2 * truth.size + 7) // 8), dtype=np.uint8))
    first_heads = coins[: truth.size].astype(bool)
    second_heads = coins[truth.size : 2 * truth.size].astype(bool)
    return np.where(first_heads, second_heads, truth)


def two_coin_estimate(reports: npt.ArrayLike) -> Estimate:
    """Unbiased share of true "yes": p_hat = 2 N / n - 1/2, variance exactly 3 / (4 n)."""
    reports = _bits(reports, "reports")
    n = reports.size
    _nonempty(n, "reports")
    return Estimate(np.asarray(2 * reports.sum() / n - 0.5), np.asarray(3 / (4 * n)), n)


class BinaryRR:
    """Randomized response for a yes/no answer: keep it with probability p ~ e^eps / (1 + e^eps).

    p is rounded down, so the real guarantee ``epsilon_actual`` = ln(p / (1 - p))
    is at most ``epsilon`` (reported rounded up).
    """

    def __init__(self, epsilon: float):
        eps = positive_rational(epsilon, "epsilon")
        self.epsilon = float(epsilon)
        self.keep = _keep_probability(eps, 1)
        if self.keep <= Fraction(1, 2):
            raise _too_small(epsilon)
        self.epsilon_actual = log_up(self.keep / (1 - self.keep))

    def randomize(self, truth: npt.ArrayLike, rng: RandomSource | None = None) -> np.ndarray:
        truth = _bits(truth, "truth")
        rng = rng or system_random("dp/binary-rr")
        keep = rng.uint64(truth.size) < _threshold(self.keep)
        return np.where(keep, truth, ~truth)

    def estimate(self, reports: npt.ArrayLike) -> Estimate:
        """pi_hat = (N / n - (1 - p)) / (2 p - 1); variance p (1 - p) / (n (2 p - 1)^2), exact."""
        reports = _bits(reports, "reports")
        n = reports.size
        _nonempty(n, "reports")
        p = float(self.keep)
        value = (reports.sum() / n - (1 - p)) / (2 * p - 1)
        return Estimate(np.asarray(value), np.asarray(p * (1 - p) / (n * (2 * p - 1) ** 2)), n)


def _frequency_estimate(counts: np.ndarray, n: int, p: float, q: float) -> Estimate:
    """Unbiased frequencies from per-category report counts, P(report v) = p if true else q.

    f_hat = (c / n - q) / (p - q). The conditional variance
    (f p (1 - p) + (1 - f) q (1 - q)) / (n (p - q)^2) is linear in the unknown
    f; it is estimated by plugging in f_hat clipped to [0, 1].
    """
    value = (counts / n - q) / (p - q)
    f = np.clip(value, 0.0, 1.0)
    variance = (f * p * (1 - p) + (1 - f) * q * (1 - q)) / (n * (p - q) ** 2)
    return Estimate(value, variance, n)


class KaryRR:
    """Generalised (k-ary) randomized response over answers 0..k-1.

    Keep the true answer with probability p ~ e^eps / (e^eps + k - 1), else
    report one of the other k - 1 answers uniformly. p is rounded down, so
    ``epsilon_actual`` = ln(p (k - 1) / (1 - p)) <= ``epsilon``.
    """

    def __init__(self, epsilon: float, k: int):
        eps = positive_rational(epsilon, "epsilon")
        if not isinstance(k, (int, np.integer)) or not 2 <= k <= 1 << 31:
            raise ValueError(f"k must be an integer in [2, 2^31], got {k!r}")
        self.epsilon = float(epsilon)
        self.k = int(k)
        self.keep = _keep_probability(eps, self.k - 1)
        if self.keep * self.k <= 1:  # keep <= (1 - keep) / (k - 1)
            raise _too_small(epsilon)
        self.epsilon_actual = log_up(self.keep * (self.k - 1) / (1 - self.keep))
        self._threshold = _threshold(self.keep)

    def _values(self, values: npt.ArrayLike, name: str) -> np.ndarray:
        arr = np.asarray(values).reshape(-1)
        if arr.size and (arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() >= self.k):
            raise ValueError(f"{name} must be integers in [0, {self.k})")
        return arr.astype(np.int64)

    def randomize(self, values: npt.ArrayLike, rng: RandomSource | None = None) -> np.ndarray:
        values = self._values(values, "values")
        rng = rng or system_random("dp/k-rr")
        keep = rng.uint64(values.size) < self._threshold
        other = uniform_below(self.k - 1, values.size, rng)
        other += other >= values
        return np.where(keep, values, other)

    def estimate(self, reports: npt.ArrayLike) -> Estimate:
        """Unbiased frequencies of the k answers (plug-in conditional variance)."""
        reports = self._values(reports, "reports")
        _nonempty(reports.size, "reports")
        p = float(self.keep)
        q = (1 - p) / (self.k - 1)
        counts = np.bincount(reports, minlength=self.k)
        return _frequency_estimate(counts, reports.size, p, q)


class UnaryEncoding:
    """Optimised unary encoding (OUE) for large domains and multi-select questions.

    An answer is a 0/1 vector over k options with at most ``max_selections``
    ones. Each 1 is reported as 1 with probability 1/2; each 0 is reported
    as 1 with probability q ~ 1 / (e^(eps/m) + 1), rounded up, m =
    max_selections. Two answers differ in at most m ones and m zeros, so the
    guarantee is m ln((1 - q) / q) <= epsilon (``epsilon_actual``).
    """

    def __init__(self, epsilon: float, k: int, max_selections: int = 1):
        eps = positive_rational(epsilon, "epsilon")
        if not isinstance(k, (int, np.integer)) or k < 2:
            raise ValueError(f"k must be an integer >= 2, got {k!r}")
        if not isinstance(max_selections, (int, np.integer)) or not 1 <= max_selections <= k:
            raise ValueError(f"max_selections must be an integer in [1, k], got {max_selections!r}")
        self.epsilon = float(epsilon)
        self.k = int(k)
        self.max_selections = int(max_selections)
        per_pair = eps / self.max_selections
        self.flip_on = probability_above(lambda: 1 / (exp_decimal(per_pair) + Decimal(1)), "q")
        if self.flip_on >= Fraction(1, 2):
            raise _too_small(epsilon)
        self.epsilon_actual = self.max_selections * log_up((1 - self.flip_on) / self.flip_on)
        self._threshold = _threshold(self.flip_on)

    @staticmethod
    def one_hot(values: npt.ArrayLike, k: int) -> np.ndarray:
        """Single-choice answers 0..k-1 as an (n, k) boolean matrix."""
        values = np.asarray(values).reshape(-1)
        if values.size and (values.dtype.kind not in "iu" or values.min() < 0 or values.max() >= k):
            raise ValueError(f"values must be integers in [0, {k})")
        out = np.zeros((values.size, k), dtype=bool)
        out[np.arange(values.size), values] = True
        return out

    def _matrix(self, selections: npt.ArrayLike, name: str) -> np.ndarray:
        arr = np.asarray(selections)
        if arr.ndim != 2 or arr.shape[1] != self.k:
            raise ValueError(f"{name} must be an (n, {self.k}) matrix")
        return _bits(arr, name).reshape(arr.shape)

    def randomize(self, selections: npt.ArrayLike, rng: RandomSource | None = None) -> np.ndarray:
        sel = self._matrix(selections, "selections")
        if sel.size and sel.sum(axis=1).max() > self.max_selections:
            raise ValueError(f"selections has a row with more than {self.max_selections} choices")
        rng = rng or system_random("dp/unary")
        u = rng.uint64(sel.size).reshape(sel.shape)
        return u < np.where(sel, _HALF, self._threshold)

    def estimate(self, reports: npt.ArrayLike) -> Estimate:
        """Unbiased share of respondents selecting each option (plug-in conditional variance)."""
        reports = self._matrix(reports, "reports")
        _nonempty(reports.shape[0], "reports")
        return _frequency_estimate(reports.sum(axis=0), reports.shape[0], 0.5, float(self.flip_on))


class BoundedLaplace:
    """A numeric answer in [lo, hi]: clip, then grid Laplace with unbiased rounding.

    Sensitivity hi - lo (any two answers); pure epsilon-local DP, immune to
    floating-point attacks (:class:`~mpcdp.dp.laplace.GridLaplace`). The
    estimand is the mean of the *clipped* answers.
    """

    def __init__(self, epsilon: float, lo: float, hi: float):
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError("lo and hi must be finite with lo < hi")
        self.lo, self.hi = float(lo), float(hi)
        self.mechanism = GridLaplace(epsilon, self.hi - self.lo, rounding="unbiased")
        self.epsilon = self.mechanism.epsilon

    def randomize(self, values: npt.ArrayLike, rng: RandomSource | None = None) -> np.ndarray:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(arr)):
            raise ValueError("values contain NaN or infinite entries")
        return self.mechanism.release(np.clip(arr, self.lo, self.hi), rng or system_random("dp/bounded"))

    def estimate(self, reports: npt.ArrayLike) -> Estimate:
        """Mean of the reports; variance (noise variance + g^2 / 4) / n, an upper bound
        that exceeds the exact conditional variance by at most the rounding term g^2 / (4 n)."""
        arr = np.asarray(reports, dtype=np.float64).reshape(-1)
        _nonempty(arr.size, "reports")
        m = self.mechanism
        return Estimate(np.asarray(arr.mean()), np.asarray((m.variance + m.grid**2 / 4) / arr.size), arr.size)


def clip_proportions(estimate: Estimate) -> np.ndarray:
    """Post-processing: clip estimated proportions to [0, 1]. BIASED (towards the interior)."""
    clipped: np.ndarray = np.clip(estimate.value, 0.0, 1.0)
    return clipped


def normalize_frequencies(estimate: Estimate) -> np.ndarray:
    """Post-processing: Euclidean projection of frequencies onto the probability simplex.

    Removes negative entries and makes them sum to 1; BIASED. Only for
    single-choice questions, whose true frequencies sum to 1.
    """
    v = np.asarray(estimate.value, dtype=np.float64)
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1
    idx = np.arange(1, v.size + 1)
    r = idx[u - css / idx > 0][-1]
    projected: np.ndarray = np.maximum(v - css[r - 1] / r, 0.0)
    return projected
