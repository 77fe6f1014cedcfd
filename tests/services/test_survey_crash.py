"""Kill -9 an aggregator process in the middle of ingestion, restart it, and lose or double nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from mpcdp.prg import Prg
from mpcdp.survey.definition import parse_survey
from mpcdp.survey.respondent import SurveyClient
from mpcdp.survey.synthetic import synthetic_answers
from services.survey.simulation import LocalSurvey

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "election_poll.toml"
N = 3000
NOISE_SEED = 7


def survey_file(tmp: Path, proofs: bool) -> Path:
    """The example poll with ring shares, or with Prio3 reports (fewer respondents: each is proved)."""
    path = tmp / "poll.toml"
    text = EXAMPLE.read_text()
    path.write_text(
        text.replace("min_respondents = 1000", "min_respondents = 100")
        if proofs
        else text.replace('proofs = "prio3"', "")
    )
    return path


def prepared(survey, n):
    sheets, _ = synthetic_answers(survey, n, Prg.from_int(1, "truth"))
    return SurveyClient(survey, rng=Prg.from_int(2)).prepare_many(sheets)


async def ingest_and_close(run: LocalSurvey, submissions, on_ack=None):
    transport, coordinator = run.transport(), run.coordinator()
    try:
        await SurveyClient(run.survey, transport).deliver(submissions, batch_size=100, on_ack=on_ack)
        counts = {n: s.submissions for n, s in (await coordinator.status()).items()}
        return counts, await coordinator.close_and_release()
    finally:
        await transport.close()
        await coordinator.close()


@pytest.mark.parametrize("proofs", [False, True], ids=["ring-shares", "prio3-reports"])
def test_kill_9_mid_ingestion_loses_nothing_and_counts_nothing_twice(tmp_path, proofs):
    path = survey_file(tmp_path, proofs)
    survey = parse_survey(path.read_text())
    n = 600 if proofs else N
    submissions = prepared(survey, n)
    victim = survey.aggregator_names[1]

    (tmp_path / "calm").mkdir()
    with LocalSurvey(survey, path, tmp_path / "calm", noise_seed=NOISE_SEED, insecure=True) as run:
        _, calm = asyncio.run(ingest_and_close(run, submissions))

    (tmp_path / "crash").mkdir()
    acked = {"at_kill": None, "total": 0}
    with LocalSurvey(survey, path, tmp_path / "crash", noise_seed=NOISE_SEED, insecure=True) as run:

        def on_ack(name, k):
            if name != victim:
                return
            acked["total"] += k
            if acked["at_kill"] is None and acked["total"] >= n // 3:
                acked["at_kill"] = acked["total"]
                run.kill(victim)  # SIGKILL: no flush, no goodbye
                run.launch(victim)  # same port, same store; the client's retry waits for it

        counts, crashed = asyncio.run(ingest_and_close(run, submissions, on_ack))
        assert "aggregator" in run.log(victim)

    assert acked["at_kill"] is not None and acked["at_kill"] < n
    # The client never re-sends an acknowledged batch, so a full count proves every acknowledged
    # share survived the SIGKILL; a count of exactly N proves the retries doubled nothing.
    assert counts == {name: n for name in survey.aggregator_names}
    for a, b in zip(calm, crashed):
        assert a.respondents == b.respondents == n
        assert np.array_equal(a.estimate.value, b.estimate.value)  # the very same release
