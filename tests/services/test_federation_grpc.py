"""The federation over real gRPC with mutual TLS, in one process: the exact path and every failure."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

import grpc
import pytest

from services import link, sessions
from services.analyst import QueryError
from services.ledgers import settled
from services.link import LinkError
from services.party_node import PartyNode
from services.tls import Identity, init_certs
from services.wire.mpcdp.v1 import federation_pb2 as pb
from services.wire.mpcdp.v1 import federation_pb2_grpc as pb_grpc
from tests.support.federation import (
    MEAN,
    RAISES,
    Speaker,
    assert_idle,
    expect_error,
    make_cluster,
    open_session,
    session_spec,
    until,
)


async def test_four_engineers_mean_over_grpc(cluster):
    r = await cluster.query()
    assert r.value == pytest.approx(MEAN, abs=1e-3)
    assert r.exact and r.parties == tuple(RAISES)
    assert r.result["count"] == 4


async def test_full_sharing_and_other_statistics(cluster):
    assert (await cluster.query(sharing="full")).value == pytest.approx(MEAN, abs=1e-3)
    assert (await cluster.query("sum")).value == pytest.approx(sum(RAISES.values()), abs=1e-3)
    var = await cluster.query("variance")
    xs = list(RAISES.values())
    m = sum(xs) / 4
    assert var.value == pytest.approx(sum((x - m) ** 2 for x in xs) / 3, rel=1e-6)


async def test_node_ready_for_next_query_after_each(cluster):
    for _ in range(3):
        assert (await cluster.query()).value == pytest.approx(MEAN, abs=1e-3)


async def test_party_down_aborts_naming_it_and_others_stay_ready(cluster):
    await cluster.stop("carol")
    await expect_error(cluster, grpc.StatusCode.UNAVAILABLE, "carol", "no result released")
    r = await cluster.query(parties=["alice", "bob", "dave"])
    assert r.value == pytest.approx((3800 + 2514 + 3390) / 3, abs=1e-3)


class Stalling(PartyNode):
    """Accepts, then never shares (nor sends its keyed partial sum): slow past any deadline."""

    async def _run(self, live):
        await asyncio.Event().wait()


class Dropping(PartyNode):
    """Accepts, then drops its links mid-round and forgets its pair keys (as a crashed process would)."""

    async def _run(self, live):
        self.pair_keys.forget()
        await self.link.close()


@pytest.mark.parametrize(
    "cls, sharing, code, words, timeout",
    [
        (Stalling, "seeded", grpc.StatusCode.ABORTED, ["no share from bob before the deadline"], 3.0),
        (Stalling, "keyed", grpc.StatusCode.DEADLINE_EXCEEDED, ["bob did not send its partial sum"], 3.0),
        (Dropping, "seeded", grpc.StatusCode.ABORTED, ["dropped out"], 30.0),  # at once, not at the deadline
        (Dropping, "keyed", grpc.StatusCode.ABORTED, ["dropped out"], 30.0),
    ],
)
async def test_faulty_party_aborts_the_session_naming_it(certs, cls, sharing, code, words, timeout):
    faulty = "bob"

    class OnlyBob(cls):
        async def _run(self, live):
            if self.me == faulty:
                return await cls._run(self, live)
            return await PartyNode._run(self, live)

    c = await make_cluster(certs, party_cls=OnlyBob)
    try:
        began = time.monotonic()
        err = await expect_error(c, code, faulty, *words, faulty=[faulty], timeout=timeout, sharing=sharing)
        assert time.monotonic() - began < 10
        assert "3800" not in str(err) and "2514" not in str(err)
        c.nodes[faulty].__class__ = PartyNode  # repaired: the same nodes answer the next query
        assert (await c.query()).value == pytest.approx(MEAN, abs=1e-3)
    finally:
        await c.close()


async def test_bad_queries_get_clear_status_codes(cluster):
    await expect_error(cluster, grpc.StatusCode.INVALID_ARGUMENT, "epsilon", epsilon=0.0)
    await expect_error(cluster, grpc.StatusCode.INVALID_ARGUMENT, "epsilon", epsilon=-1.0)
    await expect_error(cluster, grpc.StatusCode.INVALID_ARGUMENT, "bounds", bounds=(0, math.inf))
    await expect_error(cluster, grpc.StatusCode.INVALID_ARGUMENT, "bounds", bounds=(0, 1e13), max_records=1000)
    await expect_error(cluster, grpc.StatusCode.INVALID_ARGUMENT, "parties", parties=["alice", "zed"])
    await expect_error(cluster, grpc.StatusCode.PERMISSION_DENIED, "column", column="salary")
    assert (await cluster.query()).value == pytest.approx(MEAN, abs=1e-3)


async def test_nan_input_is_refused_by_its_party(certs):
    data = {p: {"raise": [v]} for p, v in RAISES.items()}
    data["dave"] = {"raise": ["nan"]}
    c = await make_cluster(certs, data=data)
    try:
        await expect_error(c, grpc.StatusCode.INVALID_ARGUMENT, "dave", "non-finite")
    finally:
        await c.close()


async def test_exact_release_needs_the_federation_to_allow_it(certs):
    c = await make_cluster(certs, policy={"allow_exact": False, "max_records": 10})
    try:
        await expect_error(c, grpc.StatusCode.PERMISSION_DENIED, "exact")
    finally:
        await c.close()


async def test_client_must_be_a_federation_client(cluster):
    async with cluster.client("mallory") as c:
        with pytest.raises(QueryError) as info:
            await c.query("mean", column="raise", bounds=(0, 10_000))
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED and "mallory" in info.value.details


async def test_certificate_from_another_ca_is_refused(cluster, tmp_path):
    init_certs(["analyst"], tmp_path)
    async with cluster.client(certs=tmp_path) as c:
        with pytest.raises(QueryError) as info:
            await c.query("mean", column="raise", bounds=(0, 10_000), timeout=2.0)
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


async def test_malformed_peer_traffic_is_refused_and_changes_nothing(cluster, certs):
    """Shares on the links: who sent one is the link's certificate, a forged sender closes the link, an
    outsider cannot link, a duplicate or a share for a closed session is never folded in, a replay is refused."""
    import numpy as np

    coordinator, spec = await open_session(cluster)
    sid = spec.session_id
    bob = cluster.nodes["bob"]
    alice, mallory = Speaker(cluster, "alice"), Speaker(cluster, "mallory")
    try:
        await coordinator.hub.send("bob", sid, 0, sessions.START, b"")  # bob shares, then waits for his peers'
        good = np.arange(2, dtype=np.uint64)
        await alice.share("bob", sid, good)
        for _ in range(100):  # folded in once bob takes it from the link
            if bob._live[sid].session.missing == ["carol", "dave"]:
                break
            await asyncio.sleep(0.02)
        assert bob._live[sid].session.missing == ["carol", "dave"]
        await alice.share("bob", sid, good)  # a duplicate: held on the link, never folded in
        with contextlib.suppress(LinkError):  # a frame naming carol on alice's link closes that link
            await alice.hub.send("bob", sid, 0, "probe", b"")
            stream = alice.hub._streams["bob"][-1]
            await stream.write(link.encode("carol", [link.Frame(sid, 0, sessions.SHARE, 0, 16, good.tobytes())]))
        with contextlib.suppress(LinkError):  # mallory's certificate is valid, but she is no node of this federation
            await mallory.share("bob", sid, good)
        await asyncio.sleep(0.2)
        assert bob._live[sid].session.missing == ["carol", "dave"]
        assert not bob.link._streams.get("mallory")
        assert ("mallory", sid, 0, sessions.SHARE) not in bob.link._inbox

        confirmation = await coordinator.abort("bob", sid)
        assert confirmation.sender == "bob"
        await Speaker(cluster, "carol").share("bob", sid, good)  # late: the session is closed
        await asyncio.sleep(0.1)
        assert not any(k[1] == sid for k in bob.link._inbox)

        replay = await coordinator.propose("bob", spec)
        assert not replay.accepted and replay.status == pb.REFUSAL_STATUS_ALREADY_EXISTS
        assert "already used" in replay.reason
    finally:
        for speaker in (coordinator, alice, mallory):
            await speaker.close()
    assert_idle(cluster)


async def bob_aborts_on(cluster, sharing, payload, session_id):
    """Open a session on bob, send him ``payload`` as alice's share: bob's abort (naming the culprit)."""
    coordinator, spec = await open_session(cluster, sharing=sharing, session_id=session_id)
    alice = Speaker(cluster, "alice")
    try:
        await coordinator.hub.send("bob", spec.session_id, 0, sessions.START, b"")  # bob shares and waits
        await alice.share("bob", spec.session_id, payload)
        return await coordinator.aborted("bob", spec.session_id)
    finally:
        await alice.close()
        await coordinator.close()


@pytest.mark.parametrize(
    "sharing, payload, words",
    [
        ("full", bytes(5 * 8), "a share of 40 bytes, more than the 16 expected"),  # at its first frame
        ("full", bytes(8), "share vectors have length 2"),
        ("full", bytes(7), "whole uint64 words"),
        ("seeded", bytes(2 * 8), "32-byte seeds"),
        ("seeded", b"k" * 31, "32-byte seeds"),
    ],
)
async def test_a_malformed_share_aborts_the_session_naming_its_sender(cluster, sharing, payload, words):
    abort = await bob_aborts_on(cluster, sharing, payload, bytes([len(payload)]) * 16)
    assert abort.culprit == "alice" and words in abort.reason, abort
    assert_idle(cluster)


async def test_only_the_coordinator_may_open_sessions(cluster):
    alice = Speaker(cluster, "alice")  # a party of the federation, proposing over its own link
    try:
        answer = await alice.propose("bob", session_spec())
    finally:
        await alice.close()
    assert not answer.accepted and answer.status == pb.REFUSAL_STATUS_PERMISSION_DENIED
    assert "'alice' is not a coordinator" in answer.reason
    assert_idle(cluster)


async def test_health_and_reflection_are_served(cluster):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    node = cluster.federation.node("alice")
    async with Identity("analyst", cluster.federation.certs).channel(node.address, "alice") as ch:
        health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="mpcdp.v1.Party"))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stream = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = [s.name async for r in stream for s in r.list_services_response.service]
    assert "mpcdp.v1.Party" in names and "grpc.health.v1.Health" in names


@pytest.fixture
async def dp_cluster(certs, tmp_path):
    from mpcdp.dp.ledger import PrivacyLedger
    from mpcdp.prg import Prg

    ledgers = {
        name: PrivacyLedger(tmp_path / f"{name}.db", "raises", 2.5 if name == "dave" else 1.5)
        for name in ["coordinator", *RAISES]
    }
    c = await make_cluster(certs, ledgers=ledgers, rng=lambda sid, party: Prg(b"k" * 32, sid, f"test-party/{party}"))
    c.ledgers = ledgers
    yield c
    await c.close()


def spent(cluster):
    return {name: float(ledger.spent().epsilon) for name, ledger in cluster.ledgers.items()}


async def test_dp_release_reports_noise_interval_and_charges_every_ledger(dp_cluster):
    r = await dp_cluster.query(epsilon=1.0)
    assert not r.exact and r.epsilon == 1.0 and r.mechanism == "discrete_laplace"
    for key, truth in (("sum", 4 * MEAN), ("count", 4)):
        lo, hi = r.intervals[key]
        assert lo <= truth <= hi
    mean = r.intervals["mean"]  # None when the count's interval reaches 0
    assert mean is None or mean[0] <= MEAN <= mean[1]
    assert r.noise_std["sum"] > 0 and r.noise_std["count"] > 0
    assert spent(dp_cluster) == {name: 1.0 for name in dp_cluster.ledgers}


@pytest.mark.parametrize("sharing", ["seeded", "keyed"])
async def test_over_budget_query_is_refused_before_any_share_moves(dp_cluster, sharing):
    await dp_cluster.query(epsilon=1.0, sharing=sharing)
    err = await expect_error(dp_cluster, grpc.StatusCode.RESOURCE_EXHAUSTED, "coordinator", epsilon=1.0)
    assert spent(dp_cluster) == {name: 1.0 for name in dp_cluster.ledgers}
    dp_cluster.nodes["coordinator"].ledger = None  # a coordinator that ignores its budget:
    err = await expect_error(dp_cluster, grpc.StatusCode.RESOURCE_EXHAUSTED, "refused", epsilon=1.0, sharing=sharing)
    assert any(p in err.details for p in ("alice", "bob", "carol"))  # the parties' own ledgers still refuse
    # seeded: dave's partial sum waits for every share, so it never left; keyed: it is dave's answer, charged (on
    # disk) before it leaves although nothing was released (conservative), unless the coordinator's abort (the others
    # refused) reached dave first (it charges off its loop, and the others' refusals may come first)
    dave = dp_cluster.nodes["dave"]
    await until(lambda: not dave._live)  # its session ended: its charge (keyed) or free (seeded) is queued by now
    assert await settled(dave.ledger, 10.0)  # and applied
    assert dp_cluster.ledgers["dave"].reserved() == {}
    assert spent(dp_cluster)["dave"] in ((1.0, 2.0) if sharing == "keyed" else (1.0,))


@pytest.mark.parametrize("sharing", ["seeded", "keyed"])
async def test_aborted_dp_session_charges_nothing(dp_cluster, sharing):
    """Nothing is released; under keyed sharing a party whose partial sum had left before the abort is charged
    for it (conservative), the others and the coordinator are not, and nothing stays reserved."""
    await dp_cluster.stop("carol")
    await expect_error(dp_cluster, grpc.StatusCode.UNAVAILABLE, "carol", epsilon=1.0, sharing=sharing)
    charged = spent(dp_cluster)
    if sharing == "seeded":
        assert charged == {name: 0.0 for name in dp_cluster.ledgers}
    else:
        assert charged["coordinator"] == charged["carol"] == 0.0
        assert all(charged[p] in (0.0, 1.0) for p in ("alice", "bob", "dave"))
    await until(lambda: not any(ledger.reserved() for ledger in dp_cluster.ledgers.values()))


async def test_large_vector_release_streams_in_chunks_and_small_ones_stay_one_message(certs):
    import numpy as np

    from services.streams import CHUNK_BYTES

    length = CHUNK_BYTES // 8 + 5  # two chunks per vector (the first rides in the ReleaseVector)
    data = {
        p: {"value": ((np.arange(4 * length) * (i + 1)) % 1000).astype(float).reshape(4, length)}
        for i, p in enumerate(["alice", "bob", "carol"])
    }
    c = await make_cluster(certs, data=data)
    try:
        coordinator = c.federation.coordinator()

        async def parts(**spec):
            request = pb.QueryRequest(
                spec=pb.QuerySpec(column="value", upper=1000, max_records=4, sharing=pb.SHARING_SEEDED, **spec),
                timeout_seconds=30,
            )
            async with Identity("analyst", certs).channel(coordinator.address, coordinator.name) as ch:
                return [p async for p in pb_grpc.CoordinatorStub(ch).Query(request)]

        big = await parts(statistic=pb.STATISTIC_MEAN, dimension=length, frac_bits=0)
        assert big[0].WhichOneof("part") == "reply"
        streamed = {e.name: e.value.streamed for e in big[0].reply.entries if e.value.HasField("streamed")}
        assert streamed == {"sum": length, "mean": length}
        assert [p.WhichOneof("part") for p in big[1:]] == ["vector", "chunk"] * 2
        assert {p.vector.name for p in big if p.WhichOneof("part") == "vector"} == {"sum", "mean"}
        assert max(p.ByteSize() for p in big) < CHUNK_BYTES + 1024  # no message beyond ~1 MiB
        assert len(await parts(statistic=pb.STATISTIC_COUNT)) == 1

        query = dict(column="value", bounds=(0, 1000), dimension=length, frac_bits=0, max_records=4)
        r = await c.query("mean", **query)
        total = sum(d["value"].sum(axis=0) for d in data.values())
        np.testing.assert_array_equal(r.result["sum"], total)
        np.testing.assert_allclose(r.value, total / 12)
        assert r.result["count"] == 12

        dp = await c.query("mean", epsilon=10.0, **query)  # per-coordinate interval ends stream too
        lo, hi = dp.intervals["mean"]["lower"], dp.intervals["mean"]["upper"]
        assert lo.shape == hi.shape == (length,) and np.all((lo >= 0) & (lo <= dp.value) & (dp.value <= hi))
        assert set(dp.intervals["sum"]) == {"half_width"}
    finally:
        await c.close()


def test_client_refuses_a_malformed_release_stream():
    import numpy as np

    from services.analyst import _ReleaseStream

    def vector(n, first):
        return pb.QueryReplyPart(
            vector=pb.ReleaseVector(name="sum", part=pb.ReleaseVector.PART_VALUE, length=n, first=first)
        )

    def chunk(offset, values):
        return pb.VectorChunk(offset=offset, data=np.asarray(values, dtype="<f8").tobytes())

    ok = _ReleaseStream()
    ok.add(vector(3, chunk(0, [1, 2])))
    ok.add(pb.QueryReplyPart(chunk=chunk(2, [3])))
    np.testing.assert_array_equal(ok.finish()[("sum", pb.ReleaseVector.PART_VALUE)], [1, 2, 3])
    for bad in (
        [vector(3, chunk(0, [1])), pb.QueryReplyPart(chunk=chunk(2, [3]))],  # a gap
        [vector(2, chunk(0, [1, 2, 3]))],  # overrun
        [pb.QueryReplyPart(chunk=chunk(0, [1]))],  # a chunk with no vector
        [vector(1, chunk(0, [1])), vector(1, chunk(0, [1]))],  # announced twice
        [pb.QueryReplyPart(vector=pb.ReleaseVector(name="sum", length=1, first=chunk(0, [1])))],  # no part
    ):
        stream = _ReleaseStream()
        with pytest.raises(ValueError):
            for part in bad:
                stream.add(part)
    truncated = _ReleaseStream()
    truncated.add(vector(3, chunk(0, [1])))
    with pytest.raises(ValueError, match="1 of 3"):
        truncated.finish()
