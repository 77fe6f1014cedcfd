"""Verified surveys in the library: circuits per question, forged reports rejected by all, binding, lifecycle."""

from __future__ import annotations

import numpy as np
import pytest

from mpcdp.prg import Prg
from mpcdp.survey import proved
from mpcdp.survey.definition import parse_survey
from mpcdp.survey.forged import forged_reports
from mpcdp.survey.lifecycle import Lifecycle, Refusal
from mpcdp.survey.release import estimate
from mpcdp.vdaf import VerifyError
from tests.support.survey_proved import TEXT, respondents

if 'proofs = "prio3"' not in TEXT:
    TEXT = TEXT.replace("colluders = 1", 'colluders = 1\nproofs = "prio3"')
SURVEY = parse_survey(TEXT)
OTHER = parse_survey(
    TEXT.replace('mechanism = "krr"', 'mechanism = "unary"').replace('id = "election-poll-2026"', 'id = "other-poll"')
)
KEY = bytes(range(16))


def verify(survey, sids, reports, key=KEY):
    """Every aggregator's prep_init, the leader's decision, every aggregator's aggregate share."""
    m = len(survey.aggregators)
    inits = [proved.prep_init(survey, j, key, sids, [r[j] for r in reports]) for j in range(m)]
    verdicts, messages = proved.decide(survey, [i.shares for i in inits])
    shares = [proved.finish(survey, i, verdicts, messages) for i in inits]
    return verdicts, proved.add_aggregates(survey, shares), shares


@pytest.mark.parametrize("survey", [SURVEY, OTHER], ids=["example", "unary-choice"])
def test_question_kinds_map_to_circuits_and_honest_sheets_sum_exactly(survey):
    names = [proved.circuit(survey, q).name for q in survey.questions]
    choice = "Prio3Histogram" if survey is SURVEY else "Prio3SumVec"
    assert names == ["Prio3Count", choice, "Prio3SumVec", "Prio3Sum"]
    sids, rows, columns, _ = respondents(survey, 60, 1)
    rng = Prg.from_int(2)
    reports = [proved.shard_sheet(survey, sid, row, rng) for sid, row in zip(sids, rows)]
    assert [len(r) for r in reports[0]] == [proved.report_size(survey, j) for j in range(3)]
    verdicts, merged, _ = verify(survey, sids, reports)
    assert verdicts == [proved.ACCEPTED] * 60
    assert proved.totals_vector(survey, merged, 60).tolist() == np.concatenate(columns, axis=1).sum(axis=0).tolist()


def test_every_forgery_is_rejected_by_all_and_the_release_is_the_honest_one():
    sids, rows, columns, _ = respondents(SURVEY, 200, 3)
    rng = Prg.from_int(4)
    honest = [proved.shard_sheet(SURVEY, sid, row, rng) for sid, row in zip(sids, rows)]
    menu = sum(len(q.attacks()) for q in SURVEY.questions)
    assert menu == 7
    bad_ids = [Prg.from_int(100 + a).bytes(16) for a in range(menu)]
    forged = [forged_reports(SURVEY, sid, rows[0], a, rng)[1] for a, sid in enumerate(bad_ids)]
    verdicts, merged, _ = verify(SURVEY, sids + bad_ids, honest + forged)
    assert verdicts == [proved.ACCEPTED] * 200 + [proved.REJECTED] * menu
    assert proved.totals_vector(SURVEY, merged, 200).tolist() == np.concatenate(columns, axis=1).sum(axis=0).tolist()


def test_a_report_for_another_survey_or_id_is_rejected_and_a_wrong_length_is_malformed():
    sids, rows, _, _ = respondents(SURVEY, 3, 5)
    rng = Prg.from_int(6)
    other = parse_survey(TEXT.replace('id = "election-poll-2026"', 'id = "another-poll"'))
    made_for_other = proved.shard_sheet(other, sids[0], rows[0], rng)  # same layout, other digest in the nonce
    swapped_id = proved.shard_sheet(SURVEY, sids[2], rows[1], rng)  # replayed under another id
    short = proved.shard_sheet(SURVEY, sids[2], rows[2], rng)
    short = [short[0], short[1][:-1], short[2]]
    verdicts, _, _ = verify(SURVEY, sids, [made_for_other, swapped_id, short])
    assert verdicts == [proved.REJECTED, proved.REJECTED, proved.MALFORMED]


def test_a_report_needs_every_aggregator_to_derive_the_same_joint_randomness():
    """A client giving one aggregator a different public share is rejected (by the leader, for all)."""
    sids, rows, _, _ = respondents(SURVEY, 1, 7)
    reports = proved.shard_sheet(SURVEY, sids[0], rows[0], Prg.from_int(8))
    helper = bytearray(reports[2])
    helper[0] ^= 1  # the first question is Count (no public share): flip a byte of the Histogram's public share
    vdaf = proved.circuit(SURVEY, SURVEY.questions[0])
    helper[len(helper) - proved.report_size(SURVEY, 2) + vdaf.input_share_size(2)] ^= 1
    verdicts, _, _ = verify(SURVEY, sids, [[reports[0], reports[1], bytes(helper)]])
    assert verdicts == [proved.REJECTED]


def test_a_leader_that_accepts_a_rejected_report_is_not_followed():
    sids, rows, _, _ = respondents(SURVEY, 1, 9)
    forged = forged_reports(SURVEY, sids[0], rows[0], 2, Prg.from_int(10))[1]
    inits = [proved.prep_init(SURVEY, j, KEY, sids, [forged[j]]) for j in range(3)]
    verdicts, _ = proved.decide(SURVEY, [i.shares for i in inits])
    assert verdicts == [proved.REJECTED]
    with pytest.raises(VerifyError):  # the lying leader's made-up message disagrees with the helper's state
        proved.finish(SURVEY, inits[1], [proved.ACCEPTED], [bytes(16 * 3)])


def test_released_estimates_cover_the_truth_with_forged_reports_present():
    sids, rows, _, truth = respondents(SURVEY, 400, 11)
    rng = Prg.from_int(12)
    reports = [proved.shard_sheet(SURVEY, sid, row, rng) for sid, row in zip(sids, rows)]
    bad_ids = [b"\xff" * 15 + bytes([a]) for a in range(10)]
    reports += [forged_reports(SURVEY, sid, rows[0], a, rng)[1] for a, sid in enumerate(bad_ids)]
    verdicts, _, shares = verify(SURVEY, sids + bad_ids, reports)
    assert verdicts.count(proved.REJECTED) == 10
    noisy = proved.add_aggregates(
        SURVEY, [proved.noisy_aggregate(SURVEY, share, Prg.from_int(20 + j)) for j, share in enumerate(shares)]
    )
    results = estimate(SURVEY, proved.totals_vector(SURVEY, noisy, 400), 400)
    for r in results:
        lo, hi = r.estimate.ci(0.999)
        assert np.all((lo <= np.array(truth[r.question])) & (np.array(truth[r.question]) <= hi)), r.question


def test_lifecycle_open_collecting_preparing_closed_released():
    life = Lifecycle("s").submit(0)
    assert life.state == "open"
    life = life.submit(5)
    assert life.state == "collecting"
    with pytest.raises(Refusal, match="close it first"):
        life.prepare(KEY)
    life = life.close()
    with pytest.raises(Refusal, match="no more submissions"):
        life.submit(1)
    life = life.prepare(KEY)
    with pytest.raises(Refusal) as exc:
        life.prepare(bytes(16))
    assert exc.value.reason == Refusal.KEY
    life = life.verified().release(b"d1")
    assert life.state == "released" and life.release(b"d1") == life
    with pytest.raises(Refusal, match="another set"):
        life.release(b"d2")
    with pytest.raises(Refusal):
        life.prepare(KEY)
    with pytest.raises(Refusal, match="verify every batch"):
        Lifecycle("s", "preparing", KEY).release(b"d1")
