"""Central noise of a survey release: each aggregator's piece, its variance, what it guarantees.

Per question with central noise, every aggregator adds an integer piece to
each coordinate of the question's block (:mod:`mpcdp.dp.distributed`), sized
so that the pieces of the m - t honest aggregators alone give the promised
guarantee (t = the survey's ``colluders``):

* discrete Laplace: pure epsilon-DP, scale = L1 sensitivity / epsilon;
* Skellam: rho-zCDP with rho the largest value that converts back to
  (epsilon, delta)-DP (:func:`mpcdp.dp.guarantee.zcdp_rho`; Bun and Steinke, TCC 2016).

Neighbours: one respondent's report replaced (the number of respondents is
public). Sensitivities are the question kind's ``sensitivity`` (L1) and
``l2_sensitivity`` (for Skellam: ceil(sqrt(L1)) for 0/1 blocks, the range for numeric ones).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .. import ring
from ..dp.distributed import DistributedDiscreteLaplace, DistributedSkellam
from ..dp.guarantee import zcdp_rho
from ..prg import RandomSource, system_random
from .definition import Survey
from .questions import Question


def mechanism(survey: Survey, q: Question) -> DistributedDiscreteLaplace | DistributedSkellam | None:
    """The distributed mechanism of question ``q``, or None without central noise."""
    return _mechanism(q, len(survey.aggregators), survey.colluders)


@lru_cache(maxsize=256)
def _mechanism(q: Question, m: int, t: int):
    if q.central.mechanism == "discrete_laplace":
        return DistributedDiscreteLaplace(q.central.epsilon, q.sensitivity, m, t)
    if q.central.mechanism == "skellam":
        return DistributedSkellam(
            zcdp_rho(q.central.epsilon, q.central.delta), q.l2_sensitivity, m, t, l1_sensitivity=q.sensitivity
        )
    return None


def noise_piece(survey: Survey, rng: RandomSource) -> np.ndarray:
    """One aggregator's noise vector over the whole answer sheet (ring elements)."""
    parts = []
    for q in survey.questions:
        mech = mechanism(survey, q)
        parts.append(mech.piece(q.width, rng) if mech else np.zeros(q.width, dtype=np.int64))
    return ring.as_ring(np.concatenate(parts))


def noisy_partial(survey: Survey, share_total, rng: RandomSource | None = None) -> np.ndarray:
    """An aggregator's partial sum: its share total plus its own noise piece, drawn here.

    Fail closed: the piece is always drawn (from ``rng``, the CSPRNG by
    default) for every question with central noise; no caller can supply it.
    """
    piece = noise_piece(survey, rng or system_random("survey-noise"))
    return np.add(ring.as_ring(share_total), piece, dtype=np.uint64)


def variance(survey: Survey, q: Question) -> float:
    """Variance of the total central noise on each coordinate of q's block (all pieces)."""
    mech = mechanism(survey, q)
    return mech.variance(len(survey.aggregators)) if mech else 0.0


def guarantee(survey: Survey, q: Question) -> tuple[float, float] | None:
    """(epsilon, delta) the release of q promises with only the honest pieces; None without noise."""
    mech = mechanism(survey, q)
    if mech is None:
        return None
    return mech.guarantee(len(survey.aggregators)).epsilon_delta(q.central.delta)


def check_headroom(survey: Survey, count: int) -> None:
    """Refuse (HeadroomError) a release whose totals plus noise could wrap around the ring."""
    for q in survey.questions:
        mech = mechanism(survey, q)
        ring.check_fits(count, q.magnitude, mech.tail_bound() if mech else 0, what=f"totals of {q.id!r}")
