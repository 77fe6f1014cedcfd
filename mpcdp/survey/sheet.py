"""An answer sheet's validation: every question answered, each answer valid for its kind.

Each question's block is then built by :meth:`.questions.Question.randomize`
(its kind's encoding, then its local mechanism). A bad answer raises
:class:`AnswerError` naming the question, never echoing the answer itself.
"""

from __future__ import annotations

from collections.abc import Mapping

from .definition import Survey


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
        problem = q.problem(answers[q.id])
        if problem:
            raise AnswerError(q.id, problem)
