"""The federation over real gRPC with mutual TLS, in one process: the exact path and every failure."""

from __future__ import annotations

import asyncio
import math

import grpc
import pytest

from services.analyst import QueryError
from services.party_node import PartyNode
from services.tls import Identity, init_certs
from services.wire.mpcdp.v1 import federation_pb2 as pb
from services.wire.mpcdp.v1 import federation_pb2_grpc as pb_grpc
from tests.support.federation import (
    MEAN,
    RAISES,
    Handle,
    assert_idle,
    expect_error,
    make_cluster,
    open_session,
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
    """Accepts, then never shares: slow past any deadline."""

    async def _run(self, live, context):
        await asyncio.Event().wait()


class Dropping(PartyNode):
    """Accepts, then hangs up when told to share: drops mid-round."""

    async def _run(self, live, context):
        await context.read()


@pytest.mark.parametrize(
    "cls, code, words",
    [
        (Stalling, grpc.StatusCode.ABORTED, ["no share from bob before the deadline"]),
        (Dropping, grpc.StatusCode.ABORTED, ["dropped out"]),
    ],
)
async def test_faulty_party_aborts_the_session_naming_it(certs, cls, code, words):
    faulty = "bob"

    class OnlyBob(cls):
        async def _run(self, live, context):
            if self.me == faulty:
                return await cls._run(self, live, context)
            return await PartyNode._run(self, live, context)

    c = await make_cluster(certs, party_cls=OnlyBob)
    try:
        err = await expect_error(c, code, faulty, *words, faulty=[faulty], timeout=1.0)
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


async def send_share(cluster, sender, header, chunks=(), as_name=None, party="bob"):
    h = Handle(cluster, party, as_name or sender)

    def stream():
        yield pb.PeerToPeer(share=header)
        for c in chunks:
            yield pb.PeerToPeer(chunk=c)

    try:
        await h.stub.Exchange(stream(), timeout=5)
        return grpc.StatusCode.OK, ""
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details()
    finally:
        await h.channel.close()


async def test_malformed_peer_traffic_is_refused_and_changes_nothing(cluster):
    import numpy as np

    from services import convert

    h, call, spec = await open_session(cluster)
    sid = spec.session_id

    def head(sender="alice", length=2, **kw):
        return pb.ShareHeader(session_id=kw.get("sid", sid), sender=sender, recipient="bob", vector_length=length)

    good = list(convert.chunks(np.arange(2, dtype=np.uint64)))
    wrong = await send_share(cluster, "alice", head(length=5), convert.chunks(np.arange(5, dtype=np.uint64)))
    assert wrong[0] == grpc.StatusCode.INVALID_ARGUMENT and "2" in wrong[1]
    spoof = await send_share(cluster, "alice", head(sender="carol"), good)
    assert spoof[0] == grpc.StatusCode.PERMISSION_DENIED and "carol" in spoof[1]
    outsider = await send_share(cluster, "mallory", head(sender="mallory"), good)
    assert outsider[0] == grpc.StatusCode.PERMISSION_DENIED and "mallory" in outsider[1]
    unknown = await send_share(cluster, "alice", head(sid=b"u" * 16), good)
    assert unknown[0] == grpc.StatusCode.NOT_FOUND
    assert (await send_share(cluster, "alice", head(), good))[0] == grpc.StatusCode.OK
    dup = await send_share(cluster, "alice", head(), good)
    assert dup[0] == grpc.StatusCode.ALREADY_EXISTS and "alice" in dup[1]
    session = cluster.nodes["bob"]._live[sid].session
    assert session.missing == ["carol", "dave"]

    await call.write(pb.CoordinatorToParty(abort=pb.Abort(session_id=sid, sender="coordinator", reason="test")))
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF
    late = await send_share(cluster, "carol", head(sender="carol"), good)
    assert late[0] == grpc.StatusCode.FAILED_PRECONDITION and "closed" in late[1]
    await h.channel.close()

    h2 = Handle(cluster, "bob", "coordinator")
    replay = h2.stub.Session()
    from services import convert as cv

    await replay.write(pb.CoordinatorToParty(propose=pb.Propose(spec=cv.spec_to_proto(spec))))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await replay.read()
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    await h2.channel.close()
    assert_idle(cluster)


async def test_seeded_shares_are_checked_like_vectors(cluster):
    h, call, spec = await open_session(cluster, sharing="seeded", session_id=b"d" * 16)

    async def deliver(header, as_name):
        peer = Handle(cluster, "bob", as_name)
        try:
            await peer.stub.DeliverSeed(header, timeout=5)
            return grpc.StatusCode.OK, ""
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details()
        finally:
            await peer.channel.close()

    def head(sender="alice", **payload):
        return pb.ShareHeader(session_id=spec.session_id, sender=sender, recipient="bob", **payload)

    vector = await deliver(head(vector_length=2), "alice")
    assert vector[0] == grpc.StatusCode.INVALID_ARGUMENT and "Exchange" in vector[1]
    spoof = await deliver(head(sender="carol", seed=b"k" * 32), "alice")
    assert spoof[0] == grpc.StatusCode.PERMISSION_DENIED and "carol" in spoof[1]
    short = await deliver(head(seed=b"k" * 31), "alice")
    assert short[0] == grpc.StatusCode.INVALID_ARGUMENT and "32" in short[1]
    assert (await deliver(head(seed=b"k" * 32), "alice"))[0] == grpc.StatusCode.OK
    assert (await deliver(head(seed=b"k" * 32), "alice"))[0] == grpc.StatusCode.ALREADY_EXISTS
    assert cluster.nodes["bob"]._live[spec.session_id].session.missing == ["carol", "dave"]
    await call.write(
        pb.CoordinatorToParty(abort=pb.Abort(session_id=spec.session_id, sender="coordinator", reason="test"))
    )
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF
    await h.channel.close()
    assert_idle(cluster)


async def test_only_the_coordinator_may_open_sessions(cluster):
    h = Handle(cluster, "bob", "alice")
    call = h.stub.Session()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.write(pb.CoordinatorToParty(propose=pb.Propose()))
        await call.read()
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await h.channel.close()


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


async def test_over_budget_query_is_refused_before_any_share_moves(dp_cluster):
    await dp_cluster.query(epsilon=1.0)
    err = await expect_error(dp_cluster, grpc.StatusCode.RESOURCE_EXHAUSTED, "coordinator", epsilon=1.0)
    assert spent(dp_cluster) == {name: 1.0 for name in dp_cluster.ledgers}
    dp_cluster.nodes["coordinator"].ledger = None  # a coordinator that ignores its budget:
    err = await expect_error(dp_cluster, grpc.StatusCode.RESOURCE_EXHAUSTED, "refused", epsilon=1.0)
    assert any(p in err.details for p in ("alice", "bob", "carol"))  # the parties' own ledgers still refuse
    assert spent(dp_cluster)["dave"] == 1.0


async def test_aborted_dp_session_charges_nothing(dp_cluster):
    await dp_cluster.stop("carol")
    await expect_error(dp_cluster, grpc.StatusCode.UNAVAILABLE, "carol", epsilon=1.0)
    assert spent(dp_cluster) == {name: 0.0 for name in dp_cluster.ledgers}


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
