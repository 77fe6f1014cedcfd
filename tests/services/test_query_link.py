"""The analyst's queries over a link to the coordinator (services/query_link.py): the same releases and errors as
over gRPC, and the clients' hub kept apart from the parties' one (each attack tried)."""

from __future__ import annotations

import asyncio
import functools

import grpc
import numpy as np
import pytest
import pytest_asyncio

from services import analyst as analyst_module
from services import coordinator_node as cn
from services import query_link, releases, sessions
from services.analyst import Analyst, QueryError
from services.link import Hub, LinkError
from services.node_limits import MAX_MESSAGE
from services.tls import Identity, init_certs
from services.wire.mpcdp.v1 import federation_pb2 as pb
from tests.support.federation import MEAN, RAISES, make_cluster, until

pytestmark = pytest.mark.asyncio(loop_scope="module")
POLICY = {"allow_exact": True, "allow_exact_nonlinear": True, "max_records": 100}
KW = dict(column="raise", bounds=(0, 10_000))
MEAN_REQUEST = pb.QueryRequest(spec=analyst_module._spec("mean", **KW), timeout_seconds=10.0, confidence=0.95)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory):
    """Four parties, a coordinator keeping releases, and two clients: analyst and mallory."""
    certs = tmp_path_factory.mktemp("certs")
    init_certs(["coordinator", "analyst", "mallory", "eve", *RAISES], certs)
    data = {p: {"raise": [v], "bonus": [i], "team": ["ab"[i % 2]]} for i, (p, v) in enumerate(RAISES.items())}
    c = await make_cluster(certs, data=data, policy=POLICY)
    coordinator = c.nodes["coordinator"]
    coordinator.store = releases.ReleaseStore(tmp_path_factory.mktemp("releases"))
    mallory = c.federation.node("analyst").model_copy(update={"name": "mallory"})
    c.federation = c.federation.model_copy(update={"nodes": (*c.federation.nodes, mallory)})
    for node in c.nodes.values():
        node.federation = c.federation
    yield c
    await c.close()


def analyst(cluster, transport, name="analyst") -> Analyst:
    return Analyst(cluster.federation, name, transport=transport)


async def both(cluster, ask):
    """``ask(analyst)`` over gRPC and over the link: the two outcomes (a result or a QueryError each)."""
    out = []
    for transport in ("grpc", "link"):
        async with analyst(cluster, transport) as a:
            try:
                out.append(await ask(a))
            except QueryError as exc:
                out.append(exc)
    return out


def same_release(one, other, exact=True):
    """The two releases agree on everything but their session (and, for a DP one, its noise)."""
    assert one.session_id != other.session_id
    assert (one.statistic, one.parties, one.epsilon, one.delta, one.mechanism, one.quorum, one.dropped) == (
        other.statistic,
        other.parties,
        other.epsilon,
        other.delta,
        other.mechanism,
        other.quorum,
        other.dropped,
    )
    assert one.noise_std == other.noise_std and one.sharing == other.sharing
    if exact:
        for key, value in one.result.items():
            np.testing.assert_array_equal(value, other.result[key])


@pytest.mark.parametrize(
    "ask, exact",
    [
        (dict(statistic="mean"), True),
        (dict(statistic="sum", epsilon=1.0), False),
        (dict(statistic="sum", dimension=2, column="raise,bonus"), True),
        (dict(statistic="histogram", categories=["a", "b"], column="team"), True),
        (dict(statistic="sum", quorum=3), True),
        (dict(statistic="max", parties=["alice", "bob", "carol"]), True),
    ],
    ids=["mean", "dp-sum", "vector", "histogram", "quorum", "max"],
)
async def test_a_query_releases_the_same_over_grpc_and_over_the_link(cluster, ask, exact):
    ask = {**KW, **ask}
    statistic = ask.pop("statistic")
    if statistic == "histogram":
        ask["bounds"] = (0, 1)
    grpc_, link = await both(cluster, lambda a: a.query(statistic, **ask))
    assert not isinstance(grpc_, QueryError) and not isinstance(link, QueryError), (grpc_, link)
    same_release(grpc_, link, exact)
    if statistic == "mean":
        assert link.value == MEAN


async def test_a_batch_and_a_fetch_are_the_same_over_the_link(cluster):
    questions = [dict(statistic="sum", **KW), dict(statistic="count", column="raise")]
    grpc_, link = await both(cluster, lambda a: a.query_batch(questions, quorum=3))
    assert not isinstance(grpc_, QueryError) and not isinstance(link, QueryError), (grpc_, link)
    for one, other in zip(grpc_, link, strict=True):
        same_release(one, other)
    async with analyst(cluster, "link") as a:
        again = await a.fetch_batch(link[0].session_id)
        assert [r.result for r in again] == [r.result for r in link]
        assert again[0].session_id == link[0].session_id


@pytest.mark.parametrize(
    "ask",
    [
        dict(parties=["alice", "zed"]),  # not a party: INVALID_ARGUMENT naming it
        dict(timeout=1e9),  # beyond the coordinator's max_timeout
        dict(statistic="max", epsilon=1.0),  # a comparison whose epsilon is refused
        dict(frac_bits=99),  # the library refuses the spec, naming the field
    ],
    ids=["unknown-party", "timeout", "comparison-epsilon", "spec"],
)
async def test_a_refusal_is_the_same_error_over_grpc_and_over_the_link(cluster, ask):
    ask = {**KW, **ask}
    statistic = ask.pop("statistic", "mean")
    grpc_, link = await both(cluster, lambda a: a.query(statistic, **ask))
    assert isinstance(grpc_, QueryError) and isinstance(link, QueryError), (grpc_, link)
    assert (grpc_.code, grpc_.details, grpc_.session_id) == (link.code, link.details, link.session_id)


async def test_a_fetch_of_another_clients_release_is_refused_over_the_link(cluster):
    async with analyst(cluster, "link", "mallory") as m:
        theirs = await m.query("mean", **KW)
        assert (await m.fetch(theirs.session_id)).value == MEAN  # the owner gets it again
    grpc_, link = await both(cluster, lambda a: a.fetch(theirs.session_id))
    assert isinstance(link, QueryError) and link.code == grpc.StatusCode.NOT_FOUND, link
    assert (grpc_.code, grpc_.details) == (link.code, link.details)
    assert "'analyst'" in link.details


async def test_the_link_is_used_and_shared_by_a_process_analysts(cluster):
    served = cluster.nodes["coordinator"].queries
    async with analyst(cluster, "auto") as a, analyst(cluster, "auto") as b:
        first, second = await asyncio.gather(a.query("mean", **KW), b.query("mean", **KW))
        assert first.value == second.value == MEAN
        assert a._link is b._link and a._link is not None and await a._link.serves() is None
        assert "analyst" in served.hub._streams  # asked over the clients' hub, not over gRPC
    await until(lambda: "analyst" not in served.hub._streams, 10.0)  # closed with its last analyst


async def test_a_short_reply_is_posted_in_one_step_so_it_goes_in_one_write(cluster):
    """Its part and its end are posted by the call's task in one step (its header with them, unless the session
    took longer than the header's timer), so they join one write and the analyst wakes once per query (the end was
    posted by the task's done callback, a loop turn later: between processes it missed the write of the rest and
    went in a write of its own)."""
    hub = cluster.nodes["coordinator"].queries.hub
    posted = []
    post = hub.post

    def spy(peer, session, round, kind, payload, droppable=False):
        posted.append((kind, asyncio.current_task()))
        return post(peer, session, round, kind, payload, droppable)

    async with analyst(cluster, "link") as a:
        await a.query("mean", **KW)  # the link up, the probe answered
        hub.post = spy
        try:
            assert (await a.query("mean", **KW)).value == MEAN
        finally:
            del hub.post
    assert [kind for kind, _ in posted] == [query_link.HEAD, query_link.PART, query_link.END]
    (_, part), (_, end) = posted[1:]  # the header may go by its timer first, if the session took over 50 ms
    assert part is not None and end is part  # the end in the same task as the part, not in a done callback


def coordinator_address(cluster) -> str:
    return cluster.federation.address("coordinator")


def raw_link(cluster, name, port_of=None) -> Hub:
    """A hub speaking as ``name`` to the coordinator; ``port_of``: dial that hub's listener directly."""
    hub = Hub(Identity(name, cluster.federation.certs), cluster.federation.address, lambda who: True)
    if port_of is not None:
        hub._ports["coordinator"] = port_of.port
    return hub


def denied(caplog, name) -> bool:
    return any("denied" in r.getMessage() and repr(name) in r.getMessage() for r in caplog.records)


async def test_a_party_or_an_outsider_cannot_query_over_the_clients_hub(cluster, caplog):
    coordinator = cluster.nodes["coordinator"]
    request = pb.QueryRequest(spec=pb.QuerySpec(column="raise", statistic=1)).SerializeToString()
    for name in ("alice", "eve"):  # a party; a certificate of the CA that is no node of this federation
        hub = raw_link(cluster, name, port_of=coordinator.queries.hub)
        try:
            with pytest.raises(LinkError):  # refused at its hello, before the request is read
                await hub.send("coordinator", b"q" * 16, 0, query_link.QUERY, request)
                await hub.receive("coordinator", b"q" * 16, 0, query_link.HEAD, timeout=10.0)
            assert denied(caplog, name) and not coordinator.queries._calls
        finally:
            await hub.close()
    # asked the ordinary way, a party is sent to the parties' hub, where a query is no kind anyone handles
    hub = raw_link(cluster, "alice")
    try:
        await hub.send("coordinator", b"r" * 16, 0, query_link.QUERY, request)
        with pytest.raises(TimeoutError):
            await hub.receive("coordinator", b"r" * 16, 0, query_link.HEAD, timeout=0.5)
        assert "alice" not in coordinator.queries.hub._streams and not coordinator.queries._calls
    finally:
        await hub.close()
    # and an analyst's link, as a party: its call gets no answer, only its own deadline
    link = query_link.shared(Identity("alice", cluster.federation.certs), "coordinator", coordinator_address(cluster))
    try:
        error = await call(link, "Query", MEAN_REQUEST.SerializeToString(), timeout=0.5)
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error
        assert len(link.calls) == 1  # its slot stays taken until an end comes, or the link goes
    finally:
        await query_link.release(link)
    assert not link.calls and link.slots._value == query_link.MAX_IN_FLIGHT


async def test_a_client_cannot_speak_the_party_protocol_to_the_coordinator(cluster, caplog):
    coordinator = cluster.nodes["coordinator"]
    spoken = pb.Abort(session_id=b"s" * 16, sender="alice", reason="forged").SerializeToString()
    # the parties' hub refuses a client outright
    hub = raw_link(cluster, "analyst", port_of=coordinator.link)
    try:
        with pytest.raises(LinkError):
            await hub.send("coordinator", b"s" * 16, 0, sessions.ABORT, spoken)
            await hub.receive("coordinator", b"s" * 16, 0, sessions.ABORT, timeout=10.0)
        assert denied(caplog, "analyst") and "analyst" not in coordinator.link._streams
    finally:
        await hub.close()
    # on the clients' hub a party kind reaches no handler: it is held, charged, and the flood closes the link
    # (mallory's: what it sent stays charged to it until it expires, HELD_SECONDS)
    hub = raw_link(cluster, "mallory")
    dropped = asyncio.get_running_loop().create_future()
    hub.on_drop(lambda peer, error: dropped.done() or dropped.set_result(error))
    try:
        for kind in (sessions.PROPOSE, sessions.ANSWER, sessions.ABORT, sessions.PARTIAL, sessions.START):
            await hub.send("coordinator", b"s" * 16, 0, kind, spoken)
        await until(lambda: len(coordinator.queries.hub._held.get("mallory", {})) == 5, 10.0)
        assert not coordinator._runs and "mallory" not in coordinator.link._streams
        for i in range(coordinator.queries.hub.max_held_messages):
            hub.post("coordinator", i.to_bytes(16, "little"), 0, sessions.ANSWER, spoken)
        error = await asyncio.wait_for(dropped, 10.0)
        assert "ahead of their sessions" in str(error)
    finally:
        await hub.close()
    assert (await cluster.query("mean")).value == MEAN  # and the coordinator serves on


async def call(link: query_link.AnalystLink, method: str, request: bytes, timeout: float = 10.0):
    """The parts of one call (raw bytes in), or the AioRpcError it ends with."""
    c = link.call(method, request, timeout)
    try:
        return [part async for part in c]
    except grpc.aio.AioRpcError as exc:
        return exc


async def test_a_malformed_or_oversized_request_is_refused_not_a_crash(cluster):
    coordinator = cluster.nodes["coordinator"]
    link = query_link.shared(Identity("analyst", cluster.federation.certs), "coordinator", coordinator_address(cluster))
    try:
        for method in ("Query", "Fetch"):
            error = await call(link, method, b"\xff\xff\xff")
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a valid" in error.details(), error
        unfinished = pb.QueryRequest(spec=pb.QuerySpec(column="raise")).SerializeToString()[:-1]
        assert (await call(link, "Query", unfinished)).code() == grpc.StatusCode.INVALID_ARGUMENT
        # longer than the coordinator takes: refused here, as gRPC does, and the shared link lives on
        assert link.hub.max_message_bytes == coordinator.queries.hub.max_message_bytes == MAX_MESSAGE
        link.hub.max_message_bytes = 1 << 12
        try:
            error = await call(link, "Query", bytes(1 << 13))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "exceeds" in error.details(), error
        finally:
            link.hub.max_message_bytes = MAX_MESSAGE
        assert (await call(link, "Fetch", b"\xff")).code() == grpc.StatusCode.INVALID_ARGUMENT  # the same link
        # a client whose bound is not the coordinator's: the coordinator closes its link
        coordinator.queries.hub.max_message_bytes = 1 << 12
        try:
            error = await call(link, "Query", bytes(1 << 13))
            assert error.code() == grpc.StatusCode.UNAVAILABLE and "exceeds" in error.details(), error
        finally:
            coordinator.queries.hub.max_message_bytes = MAX_MESSAGE
    finally:
        await query_link.release(link)
    assert (await cluster.query("mean")).value == MEAN


def replies_to(hub) -> tuple[dict, dict]:
    """What the coordinator answers on ``hub``: the reply kinds per request id, and each end's status number."""
    kinds, codes = {}, {}

    def reply(kind, peer, rid, round, payload):
        kinds.setdefault(rid, []).append(kind)
        if kind == query_link.END:
            codes[rid] = payload[0]

    for kind in (query_link.HEAD, query_link.PART, query_link.END, query_link.WELCOME):
        hub.on(kind, functools.partial(reply, kind))
    return kinds, codes


def dropped(hub) -> asyncio.Future:
    """Done with the LinkError when ``hub``'s link to the coordinator closes."""
    done = asyncio.get_running_loop().create_future()
    hub.on_drop(lambda peer, error: done.done() or done.set_result(error))
    return done


async def test_a_cancel_ends_the_call_cancelled_and_a_session_given_up_still_counts(cluster):
    served = cluster.nodes["coordinator"].queries
    hub = raw_link(cluster, "analyst")
    kinds, codes = replies_to(hub)
    try:
        # cancelled as it starts (in the same write): its handler is cancelled before any session, the end says so
        first = b"a" * 16
        hub.post("coordinator", first, 0, query_link.QUERY, MEAN_REQUEST.SerializeToString())
        await hub.send("coordinator", first, 0, query_link.CANCEL, b"")
        await until(lambda: first in codes, 10.0)
        assert kinds[first] == [query_link.END] and codes[first] == grpc.StatusCode.CANCELLED.value[0]
        # cancelled once its session started (held waiting for alice's session slots): the session runs on and
        # its call still counts against the client until it ends; nothing is sent but the end
        coordinator = cluster.nodes["coordinator"]
        slots = coordinator._slots.setdefault("alice", asyncio.Semaphore(cn.SESSIONS_PER_PARTY))
        for _ in range(cn.SESSIONS_PER_PARTY):
            await slots.acquire()
        second = b"b" * 16
        try:
            hub.post("coordinator", second, 0, query_link.QUERY, MEAN_REQUEST.SerializeToString())
            await until(lambda: query_link.HEAD in kinds.get(second, []), 10.0)
            await hub.send("coordinator", second, 0, query_link.CANCEL, b"")
            await asyncio.sleep(0.2)
            assert served._in_flight == {"analyst": 1} and kinds[second] == [query_link.HEAD]
        finally:
            for _ in range(cn.SESSIONS_PER_PARTY):
                slots.release()
        await until(lambda: second in codes, 10.0)
        assert kinds[second] == [query_link.HEAD, query_link.END], kinds[second]
        assert codes[second] == grpc.StatusCode.CANCELLED.value[0]
        assert not served._calls and not served._in_flight
    finally:
        await hub.close()


async def test_a_client_breaking_the_bounds_loses_its_link_and_only_it(cluster, caplog):
    served = cluster.nodes["coordinator"].queries
    served.max_in_flight = 1
    try:
        for attack, reason in (("requests", "calls in flight"), ("hellos", "second hello")):
            hub = raw_link(cluster, "analyst")
            kinds, _ = replies_to(hub)
            closed = dropped(hub)
            try:
                for i in range(1000):  # one write: the first is served, the next breaks the bound
                    kind, payload = (query_link.QUERY, b"") if attack == "requests" else (query_link.HELLO, b"")
                    hub.post("coordinator", i.to_bytes(16, "little"), 0, kind, payload)
                error = await asyncio.wait_for(closed, 10.0)
                assert reason in str(error), error
                assert len(kinds) <= 1  # one answer at most: the rest of the write was never served
                assert sum("invalid" in r.getMessage() and reason in r.getMessage() for r in caplog.records) == 1
            finally:
                await hub.close()
            await until(lambda: not served._calls and "analyst" not in served.hub._streams, 10.0)
            caplog.clear()
    finally:
        served.max_in_flight = query_link.MAX_IN_FLIGHT
    assert (await cluster.query("mean")).value == MEAN


async def test_a_dropped_link_fails_the_call_as_unavailable_and_the_release_is_kept(cluster):
    async with analyst(cluster, "link") as a:
        assert (await a.query("mean", **KW)).value == MEAN
        served = cluster.nodes["coordinator"].queries
        slots = cluster.nodes["coordinator"]._slots.setdefault("alice", asyncio.Semaphore(cn.SESSIONS_PER_PARTY))
        for _ in range(cn.SESSIONS_PER_PARTY):  # the session waits for alice's slots: in flight when the link goes
            await slots.acquire()
        try:
            c = a._link.call("Query", MEAN_REQUEST.SerializeToString(), 10.0)
            sid = dict(await c.initial_metadata())["mpcdp-session-id"]  # the session has started
            ((_, context),) = served._calls.values()
            for connection in list(served.hub._connections):
                connection.close()  # the coordinator's end of the link goes, as a process exit would
            assert context.given_up  # at once: nothing more is sent for it; its session runs on
        finally:
            for _ in range(cn.SESSIONS_PER_PARTY):
                slots.release()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in c:
                pass
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
        await until(lambda: "coordinator" not in a._link.hub._streams, 10.0)
        again = await a.fetch(sid)  # the session ran to its end without its analyst; the next call dials again
        assert (again.session_id, again.value) == (sid, MEAN)


async def test_a_second_link_of_one_client_is_refused_and_its_analyst_asks_over_grpc(cluster, caplog):
    served = cluster.nodes["coordinator"].queries
    first = raw_link(cluster, "analyst")  # another process's link of the same client, say
    try:
        await first.send("coordinator", b"h" * 16, 0, query_link.HELLO, b"")
        await first.receive("coordinator", b"h" * 16, 0, query_link.WELCOME, timeout=10.0)
        async with analyst(cluster, "auto") as a:
            assert (await a.query("mean", **KW)).value == MEAN  # over gRPC: its probe was refused
            assert await a._link.serves() is not None and len(served.hub._streams["analyst"]) == 1
        async with analyst(cluster, "link") as a:
            with pytest.raises(QueryError) as info:
                await a.query("mean", **KW)
            assert info.value.code == grpc.StatusCode.UNAVAILABLE and "may not link" in info.value.details
    finally:
        await first.close()
    await until(lambda: "analyst" not in served.hub._streams, 10.0)


async def test_under_insecure_the_analyst_asks_over_grpc(tmp_path):
    """--insecure: Link/Port cannot tell a client from a party (no certificate), so it answers with the parties'
    hub, which refuses the analyst's hello: the probe fails at once and the query goes over gRPC."""
    from services import federation as fed
    from services.coordinator_node import CoordinatorNode
    from services.data import Table
    from services.party_node import PartyNode
    from services.server import start
    from tests.support.federation import federation_doc, serving_at

    names = ["alice", "bob", "carol"]
    f = fed.parse(federation_doc(names), tmp_path)
    nodes = {p: PartyNode(f, p, Table({"raise": [RAISES[p]]}), Identity(p, None, insecure=True)) for p in names}
    nodes["coordinator"] = CoordinatorNode(f, Identity("coordinator", None, insecure=True), default_timeout=10.0)
    servers, ports = {}, {}
    for name, node in nodes.items():
        servers[name], ports[name] = await start(Identity(name, None, insecure=True), "127.0.0.1:0", node.services())
    f = serving_at(f, nodes, ports)
    try:
        assert nodes["coordinator"].queries.hub.port == 0  # the clients' hub does not even listen
        async with Analyst(f, "analyst", insecure=True) as a:
            began = asyncio.get_running_loop().time()
            assert (await a.query("sum", **KW)).value == sum(RAISES[p] for p in names)
            assert asyncio.get_running_loop().time() - began < query_link.PROBE_SECONDS
            assert await a._link.serves() is not None  # refused at its hello by the parties' hub
        async with Analyst(f, "analyst", insecure=True, transport="link") as a:
            with pytest.raises(QueryError) as info:
                await a.query("sum", timeout=1.0, **KW)
            assert info.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        for server in servers.values():
            await server.stop(None)
        for node in nodes.values():
            await node.close()


async def test_a_part_made_as_pieces_is_posted_as_them_and_its_vector_is_not_copied():
    """A vector's part goes to the link as its header's bytes and its chunk where it lies in the release's array
    (no join of a megabyte per part); the bytes are the part's wire form, and the backlog counts all of them."""
    values = np.arange(3 * (1 << 20) // 8 + 5, dtype=float)
    parts = list(releases.vector_parts("sum", pb.ReleaseVector.PART_VALUE, values))
    posted: list = []
    loop = asyncio.get_running_loop()

    class Posts:
        def post(self, peer, session, round, kind, payload, droppable=False):
            posted.append((kind, payload))
            written = loop.create_future()
            written.set_result(None)
            return written

    backlog: dict[str, int] = {}
    context = query_link.LinkContext(Posts(), "analyst", b"r" * 16, releases.wire_form, lambda client: None, backlog)
    sizes = []
    for part in parts:
        await context.write(part)
        sizes.append(backlog.get("analyst", 0))
    assert [kind for kind, _ in posted] == [query_link.PART] * len(parts)
    assert [b"".join(map(bytes, payload)) for _, payload in posted] == [releases.wire_form(p) for p in parts]
    assert all(np.shares_memory(np.frombuffer(payload[-1], np.uint8), values) for _, payload in posted)
    assert max(sizes) >= len(releases.wire_form(parts[0]))  # counted whole while unwritten (here: until a turn)
