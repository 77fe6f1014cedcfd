"""An answer sheet's validation; its encoding is one integer block per question, in survey order.

Blocks (built by :func:`.local.randomise`, which applies the local mechanism):

    yesno        [1 if yes else 0]
    choice       one-hot over the options (unary encoding: a noisy bit vector)
    multiselect  one bit per option
    numeric      the answer clamped to [lo, hi], randomly rounded (unbiased) to a
                 multiple of ``step``, in steps

Summed over respondents, block coordinates are counts (or a sum in steps),
which is what the release debiases. A bad answer raises :class:`AnswerError`
naming the question, never echoing the answer itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .definition import Question, Survey


class AnswerError(ValueError):
    """An answer sheet that does not fit the survey; ``question`` names the culprit."""

    def __init__(self, question: str, message: str):
        super().__init__(f"answer to {question!r}: {message}")
        self.question = question


def check_answers(survey: Survey, answers: Mapping[str, object]) -> None:
    """Refuse unknown questions, missing answers and answers of the wrong shape."""
    if not isinstance(answers, Mapping):
        raise AnswerError("*", "an answer sheet maps question ids to answers")
    known = {q.id for q in survey.questions}
    for qid in answers:
        if qid not in known:
            raise AnswerError(str(qid), f"no such question in survey {survey.id!r}")
    for q in survey.questions:
        if q.id not in answers:
            raise AnswerError(q.id, "missing (every question must be answered)")
        _check(q, answers[q.id])


def _check(q: Question, a) -> None:
    if q.kind == "yesno" and not isinstance(a, bool):
        raise AnswerError(q.id, "must be true or false")
    if q.kind == "choice" and a not in q.options:
        raise AnswerError(q.id, f"must be one of the {len(q.options)} declared options")
    if q.kind == "multiselect":
        if not isinstance(a, (list, tuple)) or not all(x in q.options for x in a) or len(set(a)) != len(a):
            raise AnswerError(q.id, "must be a list of distinct declared options")
    if q.kind == "numeric":
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a):
            raise AnswerError(q.id, "must be a finite number")
