"""Malicious respondents, for simulations and tests: reports encoding out-of-range answers, proved honestly.

Each forgery replaces one question's encoded measurement with an invalid vector and
proves it as well as a client can (:meth:`mpcdp.vdaf.Prio3.shard_encoded`); the other
questions are valid. Each question kind lists its attacks
(:meth:`mpcdp.survey.questions.Question.attacks`). Without proofs such a report moved a vote share from 0.33 to 178.6
(issue 11); with them the aggregators must reject it. The attacks, by question kind:

* yes/no: a count of -1 or of 10^6;
* choice: one option counted 10^6 times, or two options in a single choice;
* multi-select: an option counted twice;
* numeric: an answer of -10^12 (far below the range), or 10^6 times the top of the range.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..prg import RandomSource
from .definition import Survey
from .proved import shard_sheet
from .respondent import PreparedSubmission
from .synthetic import synthetic_answers


def forged_reports(
    survey: Survey, sid: bytes, rows: Sequence[np.ndarray], attack: int, rng: RandomSource
) -> tuple[str, list[bytes]]:
    """Respondent ``sid``'s reports with attack number ``attack`` (cycling over all questions' attacks)."""
    menu = [(i, name, vec) for i, q in enumerate(survey.questions) for name, vec in q.attacks()]
    i, name, vec = menu[attack % len(menu)]
    return name, shard_sheet(survey, sid, rows, rng, encoded={i: vec})


def forged_submissions(survey: Survey, n: int, rng: RandomSource) -> list[PreparedSubmission]:
    """``n`` malicious respondents' submissions, cycling over the attacks; their other answers are
    randomized honestly from synthetic respondents."""
    if n == 0:
        return []
    sheets, _ = synthetic_answers(survey, n, rng)
    rows = [q.randomize([s[q.id] for s in sheets], rng) for q in survey.questions]
    out = []
    for a in range(n):
        sid = rng.bytes(16)
        _, reports = forged_reports(survey, sid, [r[a] for r in rows], a, rng)
        out.append(PreparedSubmission(survey.id, sid, dict(zip(survey.aggregator_names, reports, strict=True))))
    return out
