"""Central noise of a survey release: each aggregator's piece, its variance, what it guarantees.

Per question with central noise, every aggregator adds an integer piece to
each coordinate of the question's block, sized so that the pieces of the
m - t honest aggregators alone give the promised guarantee (t = the survey's
``colluders``). The mechanism is one of :data:`mpcdp.dp.mechanisms.CENTRAL_MECHANISMS`
(discrete Laplace: pure epsilon-DP, L1 sensitivity; Skellam: zCDP within the
declared (epsilon, delta), L2 sensitivity with the L1 bound).

Neighbours: one respondent's report replaced (:attr:`Relation.RESPONDENT`; the
number of respondents is public). Sensitivities are the question kind's
``sensitivity`` (L1) and ``l2_sensitivity``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .. import ring
from ..dp.distributed import DistributedNoise
from ..dp.loss import PrivacyLoss, Relation
from ..dp.mechanisms import CENTRAL_MECHANISMS
from ..prg import RandomSource, system_random
from .definition import Survey
from .questions import Question


def declared_loss(q: Question) -> PrivacyLoss | None:
    """The loss question ``q`` declares for its release (replace-one-respondent); None without central noise."""
    if not q.central.enabled:
        return None
    return PrivacyLoss.of(q.central.epsilon, q.central.delta, Relation.RESPONDENT)


def mechanism(survey: Survey, q: Question) -> DistributedNoise | None:
    """The distributed noise of question ``q``, or None without central noise."""
    return _mechanism(q, len(survey.aggregators), survey.colluders)


@lru_cache(maxsize=256)
def _mechanism(q: Question, m: int, t: int) -> DistributedNoise | None:
    loss = declared_loss(q)
    if loss is None:
        return None
    mech = CENTRAL_MECHANISMS.get(q.central.mechanism)
    return mech.calibrate(mech.share(loss, 1), l1=q.sensitivity, l2=q.l2_sensitivity, n_nodes=m, colluders=t)


def noise_piece(survey: Survey, rng: RandomSource) -> np.ndarray:
    """One aggregator's noise vector over the whole answer sheet (ring elements)."""
    parts = []
    for q in survey.questions:
        mech = mechanism(survey, q)
        parts.append(mech.piece(q.width, rng) if mech else np.zeros(q.width, dtype=np.int64))
    return ring.as_ring(np.concatenate(parts))


def noisy_partial(survey: Survey, share_total: np.ndarray, rng: RandomSource | None = None) -> np.ndarray:
    """An aggregator's partial sum: its share total plus its own noise piece, drawn here.

    Fail closed: the piece is always drawn (from ``rng``, the CSPRNG by
    default) for every question with central noise; no caller can supply it.
    """
    piece = noise_piece(survey, rng or system_random("survey-noise"))
    out: np.ndarray = np.add(ring.as_ring(share_total), piece, dtype=np.uint64)
    return out


def variance(survey: Survey, q: Question) -> float:
    """Variance of the total central noise on each coordinate of q's block (all pieces)."""
    mech = mechanism(survey, q)
    return mech.variance(len(survey.aggregators)) if mech else 0.0


def guarantee(survey: Survey, q: Question) -> PrivacyLoss | None:
    """The loss the release of q promises with only the honest pieces (replace-one-respondent); None
    without central noise."""
    mech = mechanism(survey, q)
    return mech.guarantee(len(survey.aggregators), Relation.RESPONDENT) if mech else None


def release_loss(survey: Survey) -> PrivacyLoss | None:
    """What one release of the survey costs, all questions composed (replace-one-respondent, in each
    question's declared measure: pure epsilon, or (epsilon, delta)); None if no question has central noise."""
    total: PrivacyLoss | None = None
    for q in survey.questions:
        loss = declared_loss(q)
        if loss is not None:
            total = loss if total is None else total + loss
    return total


def check_headroom(survey: Survey, count: int) -> None:
    """Refuse (HeadroomError) a release whose totals plus noise could wrap around the ring."""
    for q in survey.questions:
        mech = mechanism(survey, q)
        ring.check_fits(count, q.magnitude, mech.tail_bound() if mech else 0, what=f"totals of {q.id!r}")
