"""Central DP mechanisms for integer counts, sums and histograms, and exact selection.

* :class:`DiscreteLaplaceMechanism`: pure epsilon-DP for an integer query
  with L1 sensitivity D, noise scale D / epsilon (Ghosh, Roughgarden and
  Sundararajan, STOC 2009, geometric mechanism).
* :class:`DiscreteGaussianMechanism`: rho-zCDP for an integer query with
  L2 sensitivity D, sigma^2 = D^2 / (2 rho) (Canonne, Kamath and Steinke,
  NeurIPS 2020, Thm 4).
* :func:`exponential_mechanism`: pure epsilon-DP selection (McSherry and
  Talwar, FOCS 2007), sampled exactly by rejection, e.g. for approval voting
  (:func:`approval_winner`).

Sensitivities under add/remove-one-record neighbours: a count has 1, a
histogram has L1 = L2 = 1 (one bin moves by 1), a sum of integers in
[lo, hi] has max(|lo|, |hi|) (:func:`sum_sensitivity`). Real-valued sums use
:class:`mpcdp.dp.laplace.GridLaplace`. Noise scales are rounded up to exact
rationals, so the guarantee reported is at least as strong as requested.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from numpy.typing import ArrayLike

from ..prg import RandomSource, system_random
from .loss import PrivacyLoss, Relation
from .rational import positive_rational, rational_at_least
from .samplers import bernoulli_exp_neg, discrete_gaussian, discrete_laplace, discrete_laplace_variance, uniform_below


def _int_sensitivity(sensitivity: object, name: str = "sensitivity") -> int:
    if not isinstance(sensitivity, (int, np.integer)) or sensitivity < 1:
        raise ValueError(f"{name} must be a positive integer, got {sensitivity!r}")
    return int(sensitivity)


def _int_values(values: ArrayLike) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise ValueError("values must be integers")
    return arr.astype(np.int64)


def sum_sensitivity(lo: int, hi: int, relation: Relation = Relation.RECORD) -> int:
    """L1 sensitivity of a sum of integers in [lo, hi]: max(|lo|, |hi|) when one record is added or removed
    (``RECORD``), hi - lo when one is replaced by another (``RESPONDENT``)."""
    if relation not in (Relation.RECORD, Relation.RESPONDENT):
        raise ValueError(f"a sum's sensitivity is for added/removed or replaced records, not {relation!r}")
    if not (isinstance(lo, (int, np.integer)) and isinstance(hi, (int, np.integer)) and lo <= hi):
        raise ValueError("lo and hi must be integers with lo <= hi")
    if relation is Relation.RESPONDENT:
        return max(int(hi - lo), 1)
    return max(abs(int(lo)), abs(int(hi)), 1)


def histogram(values: ArrayLike, k: int) -> np.ndarray:
    """Counts of the categories 0..k-1 (the exact statistic; add noise with a mechanism)."""
    arr = _int_values(values).reshape(-1)
    if arr.size and (arr.min() < 0 or arr.max() >= k):
        raise ValueError(f"values must be in [0, {k})")
    return np.bincount(arr, minlength=k).astype(np.int64)


class DiscreteLaplaceMechanism:
    """x + discrete Laplace(scale): pure epsilon-DP for L1 sensitivity ``sensitivity``."""

    def __init__(self, epsilon: float, sensitivity: int = 1):
        eps = positive_rational(epsilon, "epsilon")
        self.sensitivity = _int_sensitivity(sensitivity)
        self.epsilon = float(epsilon)
        self.scale = rational_at_least(self.sensitivity / eps, "sensitivity / epsilon")

    @property
    def guarantee(self) -> PrivacyLoss:
        """Pure epsilon = sensitivity / scale (exact), for neighbors at L1 distance ``sensitivity``."""
        return PrivacyLoss.pure(self.sensitivity / self.scale)

    @property
    def variance(self) -> float:
        """2 a / (1 - a)^2 with a = exp(-1 / scale)."""
        return discrete_laplace_variance(self.scale)

    def release(self, values: ArrayLike, rng: RandomSource | None = None) -> np.ndarray:
        arr = _int_values(values)
        rng = rng or system_random("dp/discrete-laplace")
        noisy: np.ndarray = arr + discrete_laplace(self.scale, arr.size, rng).reshape(arr.shape)
        return noisy


class DiscreteGaussianMechanism:
    """x + discrete Gaussian(sigma^2): rho-zCDP for L2 sensitivity ``sensitivity``."""

    def __init__(self, rho: float, sensitivity: int = 1):
        r = positive_rational(rho, "rho")
        self.sensitivity = _int_sensitivity(sensitivity)
        self.rho = float(rho)
        self.sigma2 = rational_at_least(Fraction(self.sensitivity**2) / (2 * r), "sigma^2")

    @property
    def guarantee(self) -> PrivacyLoss:
        """rho = sensitivity^2 / (2 sigma^2) (exact), for neighbors at L2 distance ``sensitivity``."""
        return PrivacyLoss.zcdp(Fraction(self.sensitivity**2) / (2 * self.sigma2))

    @property
    def variance(self) -> float:
        """At most sigma^2 (CKS 2020, Cor. 9); returned as sigma^2."""
        return float(self.sigma2)

    def release(self, values: ArrayLike, rng: RandomSource | None = None) -> np.ndarray:
        arr = _int_values(values)
        rng = rng or system_random("dp/discrete-gaussian")
        noisy: np.ndarray = arr + discrete_gaussian(self.sigma2, arr.size, rng).reshape(arr.shape)
        return noisy


def exponential_mechanism(
    scores: ArrayLike,
    epsilon: float,
    sensitivity: int = 1,
    rng: RandomSource | None = None,
    *,
    monotone: bool = False,
    size: int = 1,
) -> np.ndarray:
    """Indices chosen with probability proportional to exp(epsilon u_i / (2 D)), exactly.

    Pure epsilon-DP per draw when every integer score u_i changes by at most
    D = ``sensitivity`` between neighbours; if all scores move in the same
    direction (``monotone``, e.g. counts under add/remove) the exponent is
    epsilon u_i / D (McSherry and Talwar 2007). Sampling: propose i uniformly,
    accept with probability exp(-c (max u - u_i)), an exact Bernoulli (epsilon is
    used as its exact rational value). Equivalent to report-noisy-max with
    Gumbel noise, without floats. ``size`` > 1 returns independent draws,
    each a separate epsilon-DP release.
    """
    eps = positive_rational(epsilon, "epsilon")
    d = _int_sensitivity(sensitivity)
    u = _int_values(scores).reshape(-1)
    if u.size == 0:
        raise ValueError("scores is empty")
    rng = rng or system_random("dp/exponential")
    factor = eps / d if monotone else eps / (2 * d)
    gaps = int(u.max()) - u
    out = np.empty(size, dtype=np.int64)
    filled = 0
    while filled < size:
        proposals = uniform_below(u.size, 2 * (size - filled) + 8, rng)
        accepted = np.zeros(proposals.size, dtype=bool)
        for i in np.unique(proposals):
            where = np.flatnonzero(proposals == i)
            accepted[where] = bernoulli_exp_neg(factor * int(gaps[i]), where.size, rng)
        chosen = proposals[accepted][: size - filled]
        out[filled : filled + chosen.size] = chosen
        filled += chosen.size
    return out


def approval_winner(ballots: ArrayLike, epsilon: float, rng: RandomSource | None = None) -> int:
    """epsilon-DP winner of an approval vote: ballots is an (n, k) 0/1 matrix, one row per voter.

    Scores are approval counts; adding or removing one voter moves every
    count by 0 or +1 in the same direction (monotone, sensitivity 1).
    """
    b = np.asarray(ballots)
    if b.ndim != 2 or b.shape[1] == 0 or (b.size and not np.isin(b, (0, 1)).all()):
        raise ValueError("ballots must be an (n, k) matrix of 0/1 with k >= 1")
    scores = b.astype(np.int64).sum(axis=0)
    return int(exponential_mechanism(scores, epsilon, 1, rng, monotone=True)[0])
