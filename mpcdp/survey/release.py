"""Closing a survey: which submissions count, and the debiased estimates of the noisy totals.

A submission counts only if *every* aggregator holds its share
(:func:`intersect`); each aggregator then sums over exactly that set and adds
its noise piece, and the coordinator adds the partial sums. :func:`estimate`
turns the total into per-question estimates.

Each question kind debiases its own block
(:meth:`mpcdp.survey.questions.Question.estimate`); estimates are never
clipped: one outside [0, 1] (or a numeric question's bounds) is flagged.
Intervals are normal approximations (:class:`mpcdp.dp.estimate.Estimate`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import ring
from ..dp.estimate import Estimate
from . import noise
from .definition import Survey


class BelowMinimum(ValueError):
    """Fewer counted respondents than the survey's minimum: nothing is released."""


def id_set_digest(ids: Iterable[bytes]) -> bytes:
    """SHA-256 of a set of submission ids (order-independent)."""
    h = hashlib.sha256()
    for sid in sorted(ids):
        h.update(sid)
    return h.digest()


@dataclass(frozen=True)
class Intersection:
    """The submissions that count, and per aggregator the ids it holds that do not."""

    count: int
    digest: bytes  # SHA-256 of the sorted counted ids: each aggregator checks its sum covers exactly them
    exclude: dict[str, list[bytes]]


def intersect(held: Mapping[str, Iterable[bytes]]) -> Intersection:
    """Intersect each aggregator's submission ids (aggregator name -> ids it stores)."""
    if len(held) < 2:
        raise ValueError("held: need the id sets of at least two aggregators")
    sets = {name: set(ids) for name, ids in held.items()}
    common = set.intersection(*sets.values())
    return Intersection(len(common), id_set_digest(common), {name: sorted(s - common) for name, s in sets.items()})


def check_minimum(survey: Survey, count: int) -> None:
    """Refuse a release over fewer respondents than declared, or more than the headroom allows."""
    if count < survey.min_respondents:
        raise BelowMinimum(
            f"survey {survey.id!r} has {count} complete submissions, below its minimum of "
            f"{survey.min_respondents}: nothing is released and the survey stays as it is"
        )
    if count > survey.max_respondents:
        raise ValueError(
            f"survey {survey.id!r} has {count} complete submissions, above its max_respondents of "
            f"{survey.max_respondents} that sized the ring headroom"
        )


@dataclass(frozen=True)
class QuestionResult:
    question: str
    kind: str
    unit: str  # what each estimate is: "share of respondents", "mean"
    labels: tuple[str, ...]
    estimate: Estimate  # one value per label: population shares, or the mean
    respondents: int
    local_epsilon: float | None  # per respondent, spent on their device
    central_epsilon: float | None  # per release, for replace-one-respondent neighbours
    central_delta: float
    value_range: tuple[float, float] = (0.0, 1.0)  # where the true value lies: [0, 1] for shares, the bounds

    @property
    def outside_range(self) -> np.ndarray:
        """Per estimate: did the noise push it outside the range the true value lies in?"""
        lo, hi = self.value_range
        return (self.estimate.value < lo) | (self.estimate.value > hi)

    def as_dict(self, level: float = 0.95) -> dict[str, Any]:
        """Estimates are reported as computed, never clipped: one outside the possible range is
        flagged ``outside_range`` and keeps its full (unclipped) interval."""
        low, high = self.estimate.ci(level)
        return {
            "question": self.question,
            "kind": self.kind,
            "unit": self.unit,
            "respondents": self.respondents,
            "local_epsilon": self.local_epsilon,
            "central_epsilon": self.central_epsilon,
            "central_delta": self.central_delta,
            "ci_level": level,
            "range": list(self.value_range),
            "estimates": [
                {
                    "label": lab,
                    "value": float(v),
                    "variance": float(var),
                    "ci": [float(lo), float(hi)],
                    "outside_range": bool(out),
                }
                for lab, v, var, lo, hi, out in zip(
                    self.labels, self.estimate.value, self.estimate.variance, low, high, self.outside_range, strict=True
                )
            ],
        }


def estimate(survey: Survey, total: np.ndarray, respondents: int) -> list[QuestionResult]:
    """Debiased per-question estimates from the summed (noisy) ring vector over ``respondents``."""
    check_minimum(survey, respondents)
    values = ring.to_signed(ring.as_ring(total)).astype(np.float64)
    if values.shape != (survey.width,):
        raise ValueError(f"total: expected {survey.width} ring elements, got {values.size}")
    out = []
    for q, block in survey.offsets():
        loss = noise.guarantee(survey, q)
        charged = loss.epsilon_delta(q.central.delta) if loss is not None else None
        est = q.estimate(values[block], respondents, noise.variance(survey, q))
        out.append(
            QuestionResult(
                q.id,
                q.kind,
                q.unit,
                q.labels,
                est,
                respondents,
                q.local.epsilon if q.local.enabled else None,
                charged[0] if charged else None,
                charged[1] if charged else 0.0,
                q.value_range,
            )
        )
    return out
