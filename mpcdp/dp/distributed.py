"""Distributed DP noise for sums computed under MPC: each node adds an integer piece.

n nodes each add one piece (in ring units) to their share of the sum; the
pieces are sized so that the pieces of the n - t *honest* nodes alone already
give the promised guarantee, where t >= 1 is the assumed number of colluders
(a node always knows its own piece, so t = 1 is the minimum). All n pieces
together carry n / (n - t) times the noise variance that is strictly needed:
the price of not trusting t nodes.

Neighbouring relation: any two datasets whose integer-valued sums differ by
at most ``sensitivity`` (L1 for discrete Laplace; L2, with the L1 bound given
separately, for Skellam).

* :class:`DistributedDiscreteLaplace` (pure epsilon-DP): each piece is
  Polya(1/(n-t), a) - Polya(1/(n-t), a), a = exp(-1/scale); n - t pieces sum
  to a discrete Laplace (two-sided geometric) of the given scale, because
  the negative binomial is infinitely divisible (Goryczka and Xiong,
  "A comprehensive comparison of multiparty secure additions with
  differential privacy", IEEE TDSC 2017; Balle et al., CRYPTO 2019).
  The Polya pieces are NOT exact samplers (floating point, see
  :mod:`mpcdp.dp.approximate`).
* :class:`DistributedSkellam` (rho-zCDP): each piece is Poisson(mu_p) -
  Poisson(mu_p); the sum of n - t pieces is Skellam(mu, mu), mu = (n-t) mu_p
  (Agarwal, Kairouz and Liu, "The Skellam Mechanism for Differentially
  Private Federated Learning", NeurIPS 2021). Pieces are exact when
  mu_p <= POISSON_EXACT_MAX (see ``exact``), approximate (PTRS) above.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Protocol

import numpy as np

from ..prg import RandomSource
from . import approximate
from .loss import PrivacyLoss, Relation
from .rational import float_at_least, positive_rational, rational_at_least
from .samplers import POISSON_EXACT_MAX, discrete_laplace_variance, poisson

DEFAULT_BETA = 2.0**-40


class DistributedNoise(Protocol):
    """What both distributed mechanisms offer: a node's piece, the guarantee, the variance, a tail bound."""

    def piece(self, size: int, rng: RandomSource) -> np.ndarray: ...
    def guarantee(self, pieces_added: int, relation: Relation = Relation.RECORD) -> PrivacyLoss | None: ...
    def variance(self, pieces_added: int) -> float: ...
    def tail_bound(self, beta: float = DEFAULT_BETA) -> int: ...


def _check_nodes(sensitivity: object, n_nodes: object, colluders: object) -> None:
    if not isinstance(sensitivity, (int, np.integer)) or sensitivity < 1:
        raise ValueError(f"sensitivity must be a positive integer (ring units), got {sensitivity!r}")
    if not isinstance(n_nodes, (int, np.integer)) or n_nodes < 2:
        raise ValueError(f"n_nodes must be an integer >= 2, got {n_nodes!r}")
    if not isinstance(colluders, (int, np.integer)) or not 1 <= colluders < n_nodes:
        raise ValueError(f"colluders must be an integer in [1, n_nodes - 1], got {colluders!r}")


def _check_pieces(pieces_added: object, n_nodes: int) -> int:
    if not isinstance(pieces_added, (int, np.integer)) or not 0 <= pieces_added <= n_nodes:
        raise ValueError(f"pieces_added must be an integer in [0, {n_nodes}], got {pieces_added!r}")
    return int(pieces_added)


def _check_beta(beta: float) -> float:
    if not 0 < beta < 1:
        raise ValueError(f"beta must be in (0, 1), got {beta!r}")
    return float(beta)


class DistributedDiscreteLaplace:
    """Pure epsilon-DP for an integer sum, as differences of Polya pieces (approximate sampler).

    ``scale`` = sensitivity / epsilon rounded up to a rational, so the
    guarantee with n - t honest pieces is epsilon' = sensitivity / scale <= epsilon.
    """

    exact = False

    def __init__(self, epsilon: float | Fraction | str, sensitivity: int, n_nodes: int, colluders: int):
        eps = positive_rational(epsilon, "epsilon")
        _check_nodes(sensitivity, n_nodes, colluders)
        self.epsilon = float(epsilon)
        self.sensitivity = int(sensitivity)
        self.n_nodes = int(n_nodes)
        self.colluders = int(colluders)
        self.scale = rational_at_least(self.sensitivity / eps, "sensitivity / epsilon")
        self.shape = Fraction(1, self.n_nodes - self.colluders)
        self._b = float_at_least(self.scale)  # the float sampler's scale: never below the exact one
        self._alpha = math.exp(-1.0 / self._b)

    def piece(self, size: int, rng: RandomSource) -> np.ndarray:
        """This node's int64 noise piece: Polya(1/(n-t), a) - Polya(1/(n-t), a)."""
        shape = float(self.shape)
        piece: np.ndarray = approximate.polya(shape, self._b, size, rng) - approximate.polya(shape, self._b, size, rng)
        return piece

    def guarantee(self, pieces_added: int, relation: Relation = Relation.RECORD) -> PrivacyLoss | None:
        """Pure DP loss when ``pieces_added`` pieces reached the sum, ``colluders`` of them known (None: no
        protection), for the neighboring ``relation`` the sensitivity was computed for.

        With h = pieces_added - t honest pieces the hidden noise is
        NB(r) - NB(r), r = h / (n - t). For r <= 1 its pmf ratio over one
        step from k >= 0 is at most a^-1 (k + 1) / (k + r), so
        epsilon = sensitivity / scale + sum_{k < sensitivity} ln((k + 1) / (k + r));
        for r = 1 this is sensitivity / scale. No honest piece: no guarantee.
        """
        honest = _check_pieces(pieces_added, self.n_nodes) - self.colluders
        if honest <= 0:
            return None
        r = honest / (self.n_nodes - self.colluders)
        d = self.sensitivity
        if r >= 1:
            return PrivacyLoss.pure(Fraction(d / self._b), relation)
        from scipy.special import gammaln  # only here: importing scipy costs a command line 0.4 s

        extra = float(gammaln(d + 1) + gammaln(r) - gammaln(d + r))
        return PrivacyLoss.pure(Fraction(d / self._b + extra), relation)

    def variance(self, pieces_added: int) -> float:
        """Variance of the total noise of ``pieces_added`` pieces: 2 R a / (1 - a)^2, R = m / (n - t)."""
        m = _check_pieces(pieces_added, self.n_nodes)
        return m * float(self.shape) * discrete_laplace_variance(self._b)

    def tail_bound(self, beta: float = DEFAULT_BETA) -> int:
        """T with P(|total of all n pieces| > T) <= beta (Chernoff at s = 1 / (2 scale))."""
        beta = _check_beta(beta)
        big_r = self.n_nodes / (self.n_nodes - self.colluders)
        t = 2 * self._b * (math.log(2 / beta) + big_r * math.log1p(math.sqrt(self._alpha)))
        return math.ceil(t) + 1


def rho_of_skellam(mu: float, l2_sensitivity: int, l1_sensitivity: int) -> float:
    """rho such that Skellam(mu, mu) noise is rho-zCDP for the given sensitivities.

    Agarwal, Kairouz and Liu (2021, Thm 3.5): Renyi DP of order a at most
    a D2^2 / (4 mu) + ((2a - 1) D2^2 + 6 D1) / (16 mu^2). The constant part,
    when positive, is absorbed into the linear one (a > 1), giving
    rho = D2^2 / (4 mu) + D2^2 / (8 mu^2) + max(0, 6 D1 - D2^2) / (16 mu^2).
    """
    d2, d1 = float(l2_sensitivity), float(l1_sensitivity)
    return d2**2 / (4 * mu) + d2**2 / (8 * mu**2) + max(0.0, 6 * d1 - d2**2) / (16 * mu**2)


class DistributedSkellam:
    """rho-zCDP for an integer sum (or vector), as differences of Poisson pieces.

    ``sensitivity`` is the L2 sensitivity; ``l1_sensitivity`` defaults to it
    (right for a scalar sum). The total Poisson mean mu of the n - t honest
    pieces is the smallest (rounded up) with rho_of_skellam(mu) <= rho.
    """

    def __init__(
        self,
        rho: float,
        sensitivity: int,
        n_nodes: int,
        colluders: int,
        l1_sensitivity: int | None = None,
    ):
        positive_rational(rho, "rho")
        _check_nodes(sensitivity, n_nodes, colluders)
        l1 = sensitivity if l1_sensitivity is None else l1_sensitivity
        if not isinstance(l1, (int, np.integer)) or l1 < sensitivity:
            raise ValueError(f"l1_sensitivity must be an integer >= sensitivity, got {l1!r}")
        self.rho = float(rho)
        self.sensitivity = int(sensitivity)
        self.l1_sensitivity = int(l1)
        self.n_nodes = int(n_nodes)
        self.colluders = int(colluders)
        d2 = float(sensitivity)
        c = d2**2 / 4
        a = d2**2 / 8 + max(0.0, 6 * l1 - d2**2) / 16
        inv_mu = 2 * self.rho / (c + math.sqrt(c * c + 4 * a * self.rho))  # stable root of a x^2 + c x = rho
        mu = Fraction(1 / inv_mu)
        # the float evaluation of rho_of_skellam may be a few ulps low: demand a 1e-12 relative margin
        while rho_of_skellam(float(mu), self.sensitivity, self.l1_sensitivity) * (1 + 1e-12) > self.rho:
            mu *= 1 + Fraction(1, 1 << 30)
        per_piece = mu / (self.n_nodes - self.colluders)
        if per_piece >= approximate.PTRS_MAX_MEAN:
            raise ValueError("rho is too small for this sensitivity: the Poisson mean per piece exceeds 2^50")
        self.piece_mean = rational_at_least(per_piece, "mu")

    @property
    def exact(self) -> bool:
        """True when pieces come from the exact Poisson sampler."""
        return self.piece_mean <= POISSON_EXACT_MAX

    def piece(self, size: int, rng: RandomSource) -> np.ndarray:
        """This node's int64 noise piece: Poisson(mu_p) - Poisson(mu_p)."""
        piece: np.ndarray
        if self.exact:
            piece = poisson(self.piece_mean, size, rng) - poisson(self.piece_mean, size, rng)
        else:
            lam = float_at_least(self.piece_mean)
            piece = approximate.poisson_large(lam, size, rng) - approximate.poisson_large(lam, size, rng)
        return piece

    def guarantee(self, pieces_added: int, relation: Relation = Relation.RECORD) -> PrivacyLoss | None:
        """rho-zCDP of Skellam((m - t) mu_p) when m pieces were added, t of them known (None: no protection)."""
        honest = _check_pieces(pieces_added, self.n_nodes) - self.colluders
        if honest <= 0:
            return None
        mu = honest * float(self.piece_mean)
        return PrivacyLoss.zcdp(Fraction(rho_of_skellam(mu, self.sensitivity, self.l1_sensitivity)), relation)

    def variance(self, pieces_added: int) -> float:
        """Variance of the total noise of ``pieces_added`` pieces: 2 m mu_p."""
        return 2.0 * _check_pieces(pieces_added, self.n_nodes) * float(self.piece_mean)

    def tail_bound(self, beta: float = DEFAULT_BETA) -> int:
        """T with P(|total of all n pieces| > T) <= beta (Bernstein, unit jumps, variance V)."""
        beta = _check_beta(beta)
        v = self.variance(self.n_nodes)
        lg = math.log(2 / beta)
        return math.ceil(lg / 3 + math.sqrt((lg / 3) ** 2 + 2 * v * lg)) + 1
