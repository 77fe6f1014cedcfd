"""Synthetic respondents with a known truth, for simulations and tests (never for real surveys).

Each question kind draws from its fixed population shape
(:meth:`mpcdp.survey.questions.Question.synthetic`). The truth returned is that
of the generated sample, which is what a release estimates.
"""

from __future__ import annotations

from ..prg import RandomSource
from .definition import Survey


def synthetic_answers(
    survey: Survey, n: int, rng: RandomSource
) -> tuple[list[dict[str, object]], dict[str, list[float]]]:
    """``n`` answer sheets and, per question, the sample's true value of each label."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n!r}")
    columns: dict[str, list[object]] = {}
    truth: dict[str, list[float]] = {}
    for q in survey.questions:
        columns[q.id], truth[q.id] = q.synthetic(n, rng)
    sheets = [{qid: col[i] for qid, col in columns.items()} for i in range(n)]
    return sheets, truth
