"""The aggregator service and coordinator over real gRPC (in-process servers): failures and bad input."""

from __future__ import annotations

import dataclasses

import grpc
import numpy as np
import pytest

from mpcdp.dp.loss import Relation
from mpcdp.prg import Prg
from mpcdp.survey.definition import parse_survey
from mpcdp.survey.noise import release_loss
from mpcdp.survey.release import BelowMinimum
from mpcdp.survey.respondent import Conflict, Refused, SurveyClient
from mpcdp.survey.sheet import AnswerError
from services.survey.budget import SurveyLedger
from services.survey.transport import CoordinatorClient, GrpcTransport, ref
from services.wire.mpcdp.v1 import survey_pb2, survey_pb2_grpc
from tests.support.survey_grpc import TEXT, Federation, deliver, sheets

# unverified ring shares: this file tests that path (verified reports: test_survey_verified, test_survey_reports)


async def close(fed, name="coordinator"):
    coordinator = CoordinatorClient(fed.identity(name), fed.survey, timeout=10)
    try:
        return await coordinator.close_and_release()
    finally:
        await coordinator.close()


async def status(fed):
    coordinator = CoordinatorClient(fed.identity("coordinator"), fed.survey, timeout=10)
    try:
        return {
            n: (survey_pb2.SurveyState.Name(s.state).removeprefix("SURVEY_STATE_").lower(), s.submissions)
            for n, s in (await coordinator.status()).items()
        }
    finally:
        await coordinator.close()


async def test_retries_and_duplicates_are_counted_once(fed):
    answers, _ = sheets(120, 1)
    prepared = SurveyClient(fed.survey, rng=Prg.from_int(2)).prepare_many(answers)
    await deliver(fed, prepared[:80], batch_size=25)
    await deliver(fed, prepared, batch_size=33)  # a retry of everything, plus 40 new
    await deliver(fed, prepared[:10] + prepared[:10], batch_size=7)  # duplicates inside one batch
    assert all(count == 120 for _, count in (await status(fed)).values())
    results = await close(fed)
    assert all(r.respondents == 120 for r in results)
    await close(fed)  # the coordinator asks again (after a crash, say): the same release, charged once
    for name in fed.survey.aggregator_names:  # ring-share releases charge the ledger like verified ones
        [charge] = SurveyLedger(fed.tmp / f"{name}.ledger.db").ledger(fed.survey).history()
        assert charge.loss == release_loss(fed.survey) and charge.loss.relation is Relation.RESPONDENT


async def test_same_id_with_different_answers_is_refused_and_changes_nothing(fed):
    answers, _ = sheets(60, 3)
    client = SurveyClient(fed.survey, rng=Prg.from_int(4))
    prepared = client.prepare_many(answers)
    await deliver(fed, prepared)
    other = client.prepare(answers[0])
    forged = dataclasses.replace(other, submission_id=prepared[0].submission_id)
    with pytest.raises(Conflict, match="different share"):
        await deliver(fed, [forged])
    assert all(count == 60 for _, count in (await status(fed)).values())


async def test_half_delivered_submission_is_not_counted(fed):
    answers, _ = sheets(60, 5)
    prepared = SurveyClient(fed.survey, rng=Prg.from_int(6)).prepare_many(answers)
    await deliver(fed, prepared)
    extra = SurveyClient(fed.survey, rng=Prg.from_int(7)).prepare(answers[0])
    name = fed.survey.aggregator_names[0]
    fed.stores[0].put(fed.survey.id, [(extra.submission_id, extra.shares[name])])
    results = await close(fed)
    assert results[0].respondents == 60


async def test_replay_after_close_is_refused(fed):
    answers, _ = sheets(60, 8)
    prepared = SurveyClient(fed.survey, rng=Prg.from_int(9)).prepare_many(answers)
    await deliver(fed, prepared)
    first = await close(fed)
    with pytest.raises(Refused, match=r"FAILED_PRECONDITION.*released: no more submissions"):
        await deliver(fed, prepared[:1])
    again = await close(fed)  # a coordinator that lost its answer gets the same release
    assert np.array_equal(first[1].estimate.value, again[1].estimate.value)


async def test_below_minimum_is_refused_and_changes_nothing(fed):
    answers, _ = sheets(49, 10)
    await deliver(fed, SurveyClient(fed.survey, rng=Prg.from_int(11)).prepare_many(answers))
    with pytest.raises(BelowMinimum, match="below the minimum of 50"):
        await close(fed)
    assert all(state == ("open", 49) for state in (await status(fed)).values())


async def test_malformed_batches_get_clear_statuses(fed):
    stub_channel = grpc.aio.insecure_channel(fed.survey.aggregators[0].address)
    stub = survey_pb2_grpc.SurveyAggregatorStub(stub_channel)

    async def submit(batch):
        return [a async for a in stub.Submit(iter([batch]), timeout=10)]

    good_ref = ref(fed.survey)
    cases = [
        (
            survey_pb2.SubmitBatch(
                survey=good_ref, submissions=[survey_pb2.Submission(submission_id=b"i" * 16, share=b"s" * 7)]
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "shares 88 bytes",
        ),
        (
            survey_pb2.SubmitBatch(
                survey=good_ref, submissions=[survey_pb2.Submission(submission_id=b"i" * 3, share=b"s" * 88)]
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ids are 16 bytes",
        ),
        (
            survey_pb2.SubmitBatch(survey=survey_pb2.SurveyRef(survey_id="other", digest=fed.survey.digest)),
            grpc.StatusCode.NOT_FOUND,
            "runs no survey 'other'",
        ),
        (
            survey_pb2.SubmitBatch(survey=survey_pb2.SurveyRef(survey_id=fed.survey.id, digest=b"x" * 32)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "digest mismatch",
        ),
    ]
    try:
        for batch, code, words in cases:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await submit(batch)
            assert err.value.code() == code and words in err.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Release(survey_pb2.ReleaseRequest(survey=good_ref, count=1), timeout=10)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # below the minimum
    finally:
        await stub_channel.close()
    assert all(count == 0 for _, count in (await status(fed)).values())


def test_unknown_question_is_refused_before_anything_is_sent():
    survey = parse_survey(TEXT)
    answers, _ = sheets(1, 12)
    with pytest.raises(AnswerError, match="no such question"):
        SurveyClient(survey).prepare({**answers[0], "q99": 1})


async def test_only_the_coordinator_may_close_under_mutual_tls(tmp_path):
    fed = await Federation(tmp_path, insecure=False).start()
    try:
        answers, _ = sheets(60, 13)
        await deliver(fed, SurveyClient(fed.survey, rng=Prg.from_int(14)).prepare_many(answers))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await close(fed, name="mallory")
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert all(state == ("open", 60) for state in (await status(fed)).values())
        results = await close(fed)
        assert results[0].respondents == 60
    finally:
        await fed.stop()


async def test_refusals_denials_close_and_release_are_audited_without_shares(tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="mpcdp.audit")
    fed = await Federation(tmp_path, insecure=False).start()
    try:
        answers, _ = sheets(60, 21)
        prepared = SurveyClient(fed.survey, rng=Prg.from_int(22)).prepare_many(answers)
        await deliver(fed, prepared)
        with pytest.raises(grpc.aio.AioRpcError):
            await close(fed, name="mallory")
        stale = dataclasses.replace(fed.survey, digest=b"x" * 32)
        transport = GrpcTransport(fed.identity("respondents"), stale, timeout=10)
        with pytest.raises(Refused):
            await SurveyClient(stale, transport).deliver(prepared[:1])
        await transport.close()
        await close(fed)
    finally:
        await fed.stop()
    events = [r.audit for r in caplog.records if hasattr(r, "audit")]
    kinds = [e["event"] for e in events]
    assert {"denied", "refused", "closed", "released"} <= set(kinds)
    denied = next(e for e in events if e["event"] == "denied")
    assert denied["caller"] == "mallory"
    refused = next(e for e in events if e["event"] == "refused")
    assert refused["status"] == "FAILED_PRECONDITION" and "digest mismatch" in refused["reason"]
    released = [e for e in events if e["event"] == "released"]
    assert len(released) == 4 and all(e["respondents"] == 60 for e in released)  # 3 aggregators, the coordinator
    assert sum("aggregators" in e for e in released) == 1
    logged = caplog.text
    for p in prepared[:5]:  # no share and no submission id reaches the log
        assert not any(share.hex()[:16] in logged for share in p.shares.values())
        assert p.submission_id.hex() not in logged
