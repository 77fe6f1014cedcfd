"""Central (distributed) noise mechanisms, one class each in the registry :data:`CENTRAL_MECHANISMS`.

A release's noise is drawn in pieces by n nodes (:mod:`mpcdp.dp.distributed`), sized so that the n - t
honest pieces alone give the guarantee. A mechanism turns a privacy loss and a block's sensitivities into
that noise:

* :class:`DiscreteLaplace` (``discrete_laplace``): pure epsilon-DP, L1 sensitivity; a loss split over k blocks
  gives each epsilon / k (sequential composition; Dwork and Roth 2014, Thm 3.16).
* :class:`Skellam` (``skellam``): rho-zCDP, L2 sensitivity with the L1 bound; the query's (epsilon, delta) is
  converted to the largest rho within it (:meth:`mpcdp.dp.loss.PrivacyLoss.to_zcdp`; Bun and Steinke 2016,
  Prop. 1.3) and each of k blocks gets rho / k (Lemma 2.3).

The neighboring relation is the caller's: a query's blocks protect one added or removed record, a survey
question's one replaced respondent. A new mechanism is one :class:`CentralMechanism` subclass and one
``CENTRAL_MECHANISMS.register`` call.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

from ..registry import Registry
from .distributed import DistributedDiscreteLaplace, DistributedNoise, DistributedSkellam
from .loss import Measure, PrivacyLoss

__all__ = ["CENTRAL_MECHANISMS", "CentralMechanism", "DiscreteLaplace", "Skellam"]


class CentralMechanism(ABC):
    """Distributed noise for an integer sum: how a loss is shared over blocks and each block calibrated."""

    name: ClassVar[str]
    wire: ClassVar[int]
    measure: ClassVar[Measure]  # what its guarantee is stated in
    summary: ClassVar[str] = ""

    def check(self, loss: PrivacyLoss) -> None:  # noqa: B027 - most mechanisms take any loss
        """Raise ``ValueError`` (for the user) if this mechanism cannot give ``loss``."""

    @abstractmethod
    def share(self, loss: PrivacyLoss, parts: int) -> PrivacyLoss:
        """Each block's share when ``loss`` is spent on ``parts`` blocks; the shares compose to at most ``loss``."""

    @abstractmethod
    def calibrate(self, share: PrivacyLoss, l1: int, l2: int, n_nodes: int, colluders: int) -> DistributedNoise:
        """The noise of one block with L1/L2 sensitivities ``l1``/``l2`` (ring units) giving ``share``."""

    def __repr__(self) -> str:
        return f"<central mechanism {self.name}>"


class DiscreteLaplace(CentralMechanism):
    """Pure epsilon-DP from distributed discrete Laplace noise (L1 sensitivity)."""

    name, wire, measure = "discrete_laplace", 1, Measure.PURE
    summary = "pure epsilon-DP (L1 sensitivity)"

    def share(self, loss: PrivacyLoss, parts: int) -> PrivacyLoss:
        return PrivacyLoss.pure(loss.epsilon, loss.relation).split(parts)  # exact split of epsilon

    def calibrate(self, share: PrivacyLoss, l1: int, l2: int, n_nodes: int, colluders: int) -> DistributedNoise:
        return DistributedDiscreteLaplace(share.epsilon, max(l1, 1), n_nodes, colluders)


class Skellam(CentralMechanism):
    """rho-zCDP from distributed Skellam noise (L2 sensitivity, L1 bound), within a given (epsilon, delta)."""

    name, wire, measure = "skellam", 2, Measure.ZCDP
    summary = "zCDP within (epsilon, delta) (L2 sensitivity)"

    def check(self, loss: PrivacyLoss) -> None:
        if loss.measure is Measure.PURE:
            raise ValueError("skellam noise gives approximate DP: set delta > 0")

    def share(self, loss: PrivacyLoss, parts: int) -> PrivacyLoss:
        self.check(loss)
        return loss.to_zcdp().split(parts)

    def calibrate(self, share: PrivacyLoss, l1: int, l2: int, n_nodes: int, colluders: int) -> DistributedNoise:
        rho = math.nextafter(float(share.to_zcdp().rho), 0.0)  # never above the exact share
        return DistributedSkellam(rho, max(l2, 1), n_nodes, colluders, l1_sensitivity=max(l1, l2, 1))


CENTRAL_MECHANISMS: Registry[CentralMechanism] = Registry("central mechanism")
for _mechanism in (DiscreteLaplace(), Skellam()):
    CENTRAL_MECHANISMS.register(_mechanism)
