"""Shared test helpers."""

from __future__ import annotations

from pathlib import Path

from mpcdp.prg import Prg
from mpcdp.survey.synthetic import synthetic_answers

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "election_poll.toml"


TEXT = EXAMPLE.read_text().replace("min_respondents = 1000", "min_respondents = 10")


def respondents(survey, n, seed):
    rng = Prg.from_int(seed)
    sheets, truth = synthetic_answers(survey, n, rng)
    rows = [q.randomize([s[q.id] for s in sheets], rng) for q in survey.questions]
    sids = [rng.bytes(16) for _ in range(n)]
    return sids, [[r[i] for r in rows] for i in range(n)], rows, truth
