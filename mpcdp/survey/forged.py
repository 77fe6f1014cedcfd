"""Malicious respondents, for simulations and tests: reports encoding out-of-range answers, proved honestly.

Each forgery replaces one question's encoded measurement with an invalid vector and
proves it as well as a client can (:meth:`mpcdp.vdaf.Prio3.shard_encoded`); the other
questions are valid. Without proofs such a report moved a vote share from 0.33 to 178.6
(issue 11); with them the aggregators must reject it. The attacks, by question kind:

* yes/no: a count of -1 or of 10^6;
* choice: one option counted 10^6 times, or two options in a single choice;
* multi-select: an option counted twice;
* numeric: an answer of -10^12 (far below the range), or 10^6 times the top of the range.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..prg import RandomSource
from .definition import Question, Survey
from .proved import numeric_bits, shard_sheet


def attacks(q: Question) -> list[tuple[str, list[int]]]:
    """(description, encoded measurement) of each attack on question ``q``."""
    k = len(q.options)
    if q.kind == "yesno":
        return [("a count of -1", [-1]), ("a count of 10^6", [10**6])]
    if q.kind == "choice":
        return [
            (f"{q.options[0]!r} counted 10^6 times", [10**6] + [0] * (k - 1)),
            ("two options in a single choice", [1, 1] + [0] * (k - 2)),
        ]
    if q.kind == "multiselect":
        return [(f"{q.options[0]!r} counted twice", [2] + [0] * (k - 1))]
    bits = numeric_bits(q)
    low = -int(10**12 // q.step)  # the whole value on the lowest bit: a bit of -10^12 / step
    return [
        (f"an answer of -10^12 ({q.id})", [low] + [0] * (bits - 1)),
        (f"an answer of 10^6 x its top ({q.id})", [0] * (bits - 1) + [10**6]),
    ]


def forged_reports(
    survey: Survey, sid: bytes, rows: Sequence, attack: int, rng: RandomSource
) -> tuple[str, list[bytes]]:
    """Respondent ``sid``'s reports with attack number ``attack`` (cycling over all questions' attacks)."""
    menu = [(i, name, vec) for i, q in enumerate(survey.questions) for name, vec in attacks(q)]
    i, name, vec = menu[attack % len(menu)]
    return name, shard_sheet(survey, sid, rows, rng, encoded={i: vec})


def forged_submissions(survey: Survey, n: int, rng: RandomSource) -> list:
    """``n`` malicious respondents' submissions (:class:`mpcdp.client.PreparedSubmission`), cycling
    over the attacks; their other answers are randomised honestly from synthetic respondents."""
    from ..client import PreparedSubmission
    from .local import randomise
    from .synthetic import synthetic_answers

    if n == 0:
        return []
    sheets, _ = synthetic_answers(survey, n, rng)
    rows = [randomise(q, [s[q.id] for s in sheets], rng) for q in survey.questions]
    out = []
    for a in range(n):
        sid = rng.bytes(16)
        _, reports = forged_reports(survey, sid, [r[a] for r in rows], a, rng)
        out.append(PreparedSubmission(survey.id, sid, dict(zip(survey.aggregator_names, reports))))
    return out
