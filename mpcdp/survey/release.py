"""Closing a survey: which submissions count, and the debiased estimates of the noisy totals.

A submission counts only if *every* aggregator holds its share
(:func:`intersect`); each aggregator then sums over exactly that set and adds
its noise piece, and the coordinator adds the partial sums. :func:`estimate`
turns the total into per-question estimates.

Frequencies (yes/no, choice, multi-select): with a local mechanism that
reports a coordinate as 1 with probability p if it is truly 1 and q if truly
0, the unbiased estimate of the population share is (c/n - q) / (p - q) (Wang
et al., USENIX Security 2017; Warner 1965 for the two-coin case). Its variance
for respondents drawn at random is lambda (1 - lambda) / (n (p - q)^2), lambda the
reported share (its maximum 1/4 where noise pushed lambda outside [0, 1]),
plus the central noise's variance / (n (p - q))^2. Estimates are never
clipped: one outside [0, 1] (or a numeric question's bounds) is flagged.

Numeric: the mean of the reports, unbiased (zero-mean local noise, unbiased
rounding). Its variance is an upper bound: (Popoviciu's (hi - lo)^2 / 4 for
the answers + the local noise + the rounding's step^2 / 4) / n, plus the
central noise's variance * step^2 / n^2.

Variances here are for respondents drawn at random from a population
(sampling plus randomisation), so intervals cover the population value.
Intervals are normal approximations (:class:`mpcdp.dp.estimate.Estimate`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from .. import ring
from ..dp.estimate import Estimate
from . import central
from .definition import Survey
from .local import rates, report_variance


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

    def as_dict(self, level: float = 0.95) -> dict:
        """Estimates are reported as computed, never clipped: one outside the possible range is
        flagged ``outside_range`` and keeps its full (unclipped) interval."""
        low, high = self.estimate.ci(level)
        return {
            "question": self.question,
            "kind": self.kind,
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
                    self.labels, self.estimate.value, self.estimate.variance, low, high, self.outside_range
                )
            ],
        }


def estimate(survey: Survey, total, respondents: int) -> list[QuestionResult]:
    """Debiased per-question estimates from the summed (noisy) ring vector over ``respondents``."""
    check_minimum(survey, respondents)
    values = ring.to_signed(ring.as_ring(total)).astype(np.float64)
    if values.shape != (survey.width,):
        raise ValueError(f"total: expected {survey.width} ring elements, got {values.size}")
    n = float(respondents)
    out = []
    for q, block in survey.offsets():
        sigma2 = central.variance(survey, q)
        charged = central.guarantee(survey, q)
        if q.kind == "numeric":
            lo, hi = q.bounds
            var = ((hi - lo) ** 2 / 4 + report_variance(q) + q.step**2 / 4) / n + sigma2 * q.step**2 / n**2
            est = Estimate(values[block] * q.step / n, np.array([var]), respondents)
        else:
            p, qq = rates(q)
            lam = values[block] / n
            # the plug-in lambda (1 - lambda) where lambda is a possible share; where noise pushed it
            # outside [0, 1] the plug-in says nothing (clipping made it 0), so use its maximum 1/4
            share_var = np.where((lam >= 0) & (lam <= 1), lam * (1 - lam), 0.25)
            var = (share_var / n + sigma2 / n**2) / (p - qq) ** 2
            est = Estimate((lam - qq) / (p - qq), var, respondents)
        out.append(
            QuestionResult(
                q.id,
                q.kind,
                q.labels,
                est,
                respondents,
                q.local.epsilon if q.local.enabled else None,
                charged[0] if charged else None,
                charged[1] if charged else 0.0,
                q.bounds if q.kind == "numeric" else (0.0, 1.0),
            )
        )
    return out
