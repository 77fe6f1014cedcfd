"""Attacks from the services and protocol security review: each test mounts one and fails without its defence.

Budget: about 2 s (in-process gRPC servers on loopback, no sleeps).
"""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest

from mpcdp.prg import Prg
from mpcdp.protocol import PartialSum, PartyPolicy, PartySession, QuerySpec, ShareMessage
from mpcdp.sharing import share_seeded
from mpcdp.survey.respondent import SurveyClient
from services.analyst import _ReleaseStream
from services.survey.transport import ref
from services.tls import init_certs
from services.wire.mpcdp.v1 import federation_pb2 as pb
from services.wire.mpcdp.v1 import survey_pb2, survey_pb2_grpc
from tests.support.federation import RAISES, Speaker, assert_idle, ledgers_applied, make_cluster
from tests.support.survey_grpc import Federation, deliver, sheets

# -- nothing secret in a repr (a logged object or a traceback) ---------------------------------


def test_share_carrying_objects_keep_their_secrets_out_of_repr():
    seed = bytes(range(32))
    vector = np.array([987654321012345], dtype=np.uint64)
    seeded = share_seeded(vector, 3, b"s" * 16, ["a", "b"], rng=Prg.from_int(1))
    shown = " ".join(
        repr(o)
        for o in (
            ShareMessage(b"s" * 16, "alice", "bob", seed=seed),
            ShareMessage(b"s" * 16, "alice", "bob", vector=vector),
            PartialSum(b"s" * 16, "alice", vector),
            seeded,
        )
    )
    assert "alice" in shown  # names and ids stay, for diagnostics
    for secret in (repr(seed), seed.hex(), "987654321012345", repr(seeded.seeds[0]), str(seeded.correction[0])):
        assert secret not in shown


def test_a_prepared_submission_keeps_its_shares_out_of_repr():
    from mpcdp.survey.definition import parse_survey
    from tests.support.survey_grpc import TEXT

    survey = parse_survey(TEXT)
    answers, _ = sheets(1, 3)
    prepared = SurveyClient(survey, rng=Prg.from_int(4)).prepare(answers[0])
    shown = repr(prepared)
    assert survey.id in shown
    for blob in prepared.shares.values():
        assert repr(blob)[2:40] not in shown and blob.hex()[:32] not in shown


# -- a party's record count is not put in its refusal ---------------------------------------------


@pytest.mark.parametrize("records", [np.ones((37, 1)), np.ones((37, 2))])
def test_refusals_do_not_tell_how_many_records_a_party_holds(records):
    spec = QuerySpec("sum", parties=("alice", "bob"), bounds=(0, 1), max_records=3)
    session = PartySession("alice", spec, records, PartyPolicy(allow_exact=True))
    with pytest.raises(ValueError) as info:
        session.accept()
    assert "37" not in str(info.value)
    assert "max_records=3" in str(info.value) or "dimension 1" in str(info.value)
    assert session.state == "proposed"


# -- the federation: a party's own budget and party list -----------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    out = tmp_path_factory.mktemp("certs")
    init_certs(["coordinator", "analyst", "mallory", *RAISES], out)
    return out


@pytest.fixture
async def dp_cluster(certs, tmp_path):
    from mpcdp.dp.ledger import PrivacyLedger

    ledgers = {name: PrivacyLedger(tmp_path / f"{name}.db", "raises", 1.5) for name in ["coordinator", *RAISES]}
    c = await make_cluster(certs, ledgers=ledgers, rng=lambda sid, party: Prg(b"k" * 32, sid, f"test-party/{party}"))
    c.ledgers = ledgers
    yield c
    await c.close()


async def propose(cluster, spec, party="bob"):
    """Propose a session to ``party`` as the coordinator, on the link; (the speaker, the party's answer)."""
    coordinator = Speaker(cluster)
    return coordinator, await coordinator.propose(party, spec)


async def abort(coordinator, spec, party="bob"):
    assert (await coordinator.abort(party, spec.session_id)).sender == party  # the party confirms it closed it
    await coordinator.close()


def dp_spec(sid: bytes) -> QuerySpec:
    return QuerySpec(
        "mean",
        parties=tuple(RAISES),
        column="raise",
        bounds=(0, 10_000),
        epsilon=1.0,
        session_id=sid,
        deadline=time.time() + 60,
    )


async def test_concurrent_sessions_cannot_together_overspend_a_partys_budget(dp_cluster):
    # Bob's budget is 1.5: one session of epsilon 1 fits, two at once do not. A plain check at each
    # Propose passes both, and the second would be refused only at its charge, after its shares moved.
    first = dp_spec(b"A" * 16)
    c1, answer = await propose(dp_cluster, first)
    assert answer.accepted
    second = dp_spec(b"B" * 16)
    c2, answer = await propose(dp_cluster, second)
    assert not answer.accepted and answer.status == pb.REFUSAL_STATUS_RESOURCE_EXHAUSTED
    assert "in progress" in answer.reason
    await c2.close()
    await abort(c1, first)  # an aborted session frees what it held, and charged nothing
    third = dp_spec(b"C" * 16)
    c3, answer = await propose(dp_cluster, third)
    assert answer.accepted
    await abort(c3, third)
    await ledgers_applied(dp_cluster, ["bob"])  # its confirmation may come before the free it queued is applied
    assert float(dp_cluster.ledgers["bob"].spent().epsilon) == 0.0
    assert not dp_cluster.ledgers["bob"].reserved()  # nothing held any more, in the ledger's own file
    assert_idle(dp_cluster)


async def test_a_whole_query_still_charges_once_and_frees_its_reservation(dp_cluster):
    async with dp_cluster.client() as c:
        await c.query("mean", column="raise", bounds=(0, 10_000), epsilon=1.0)
    assert {float(ledger.spent().epsilon) for ledger in dp_cluster.ledgers.values()} == {1.0}
    assert all(not ledger.reserved() for ledger in dp_cluster.ledgers.values())


async def test_a_spec_listing_a_node_that_is_not_a_party_is_refused(dp_cluster):
    # A coordinator naming itself a party would get bob's share and then bob's partial sum.
    spec = QuerySpec(
        "mean",
        parties=("bob", "coordinator"),
        column="raise",
        bounds=(0, 10_000),
        session_id=b"M" * 16,
        deadline=time.time() + 60,
        epsilon=1.0,
    )
    coordinator, answer = await propose(dp_cluster, spec)
    await coordinator.close()
    assert not answer.accepted and answer.status == pb.REFUSAL_STATUS_PERMISSION_DENIED
    assert "coordinator" in answer.reason
    assert_idle(dp_cluster)


# -- the release stream: a declared length is checked before anything is allocated ---------------


def test_client_refuses_a_release_vector_longer_than_the_query_asked_for():
    stream = _ReleaseStream(max_length=10)
    chunk = pb.VectorChunk(offset=0, data=np.zeros(1, dtype="<f8").tobytes())
    with pytest.raises(ValueError, match="at most 10"):
        stream.add(
            pb.QueryReplyPart(
                vector=pb.ReleaseVector(name="sum", part=pb.ReleaseVector.PART_VALUE, length=1 << 40, first=chunk)
            )
        )


# -- surveys: state, ids, close and release are the coordinator's alone ----------------------------


async def test_only_the_coordinator_may_see_list_close_or_release_a_survey(tmp_path):
    fed = await Federation(tmp_path, insecure=False).start()
    try:
        answers, _ = sheets(60, 13)
        await deliver(fed, SurveyClient(fed.survey, rng=Prg.from_int(14)).prepare_many(answers))
        target = fed.survey.aggregators[0]
        survey_ref = ref(fed.survey)

        async def as_(name, method, request):
            async with fed.identity(name).channel(target.address, target.name) as channel:
                stub = survey_pb2_grpc.SurveyAggregatorStub(channel)
                try:
                    result = getattr(stub, method)(request, timeout=5)
                    if method == "ListIds":
                        return [c async for c in result]
                    return await result
                except grpc.aio.AioRpcError as exc:
                    return exc.code()

        release = survey_pb2.ReleaseRequest(survey=survey_ref, count=60)
        for name in ("mallory", "respondents"):
            for method, request in (
                ("Status", survey_ref),
                ("Close", survey_ref),
                ("ListIds", survey_ref),
                ("Release", release),
            ):
                assert await as_(name, method, request) == grpc.StatusCode.PERMISSION_DENIED, (name, method)
        state = await as_("coordinator", "Status", survey_ref)
        assert (state.state, state.submissions) == (survey_pb2.SURVEY_STATE_OPEN, 60)
    finally:
        await fed.stop()


# -- certificates: private keys are never readable by others --------------------------------------


def test_private_keys_are_created_owner_only(tmp_path, monkeypatch):
    import os
    import stat

    old = os.umask(0o022)
    try:
        monkeypatch.setattr(os, "chmod", lambda *a, **k: None)  # no fixing the mode after the fact
        (tmp_path / "alice.key").write_bytes(b"old")  # 0644: a key file replaced by --force
        init_certs(["alice"], tmp_path)
    finally:
        os.umask(old)
    for name in ("ca.key", "alice.key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((tmp_path / "alice.pem").stat().st_mode) == 0o644
