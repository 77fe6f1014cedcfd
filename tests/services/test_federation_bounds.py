"""Bounds on what one party or one slow peer can make a node hold (the links review's R1, R2, R9): each test
mounts the flood or the fault and checks the bound holds and the rest keeps working."""

from __future__ import annotations

import asyncio

import pytest

from services import coordinator_node, link, sessions
from services.analyst import QueryError
from services.wire.mpcdp.v1 import federation_pb2 as pb
from tests.support.federation import Speaker, make_cluster, session_spec, until


@pytest.fixture
async def cluster(certs):
    c = await make_cluster(certs)
    yield c
    await c.close()


async def test_a_party_refuses_sessions_beyond_its_cap_without_holding_anything(cluster):
    bob = cluster.nodes["bob"]
    bob.max_sessions = 3
    speaker = Speaker(cluster)
    try:
        specs = [session_spec(session_id=bytes([i + 1]) * 16) for i in range(4)]
        for spec in specs[:3]:  # held open: each waits for a START that never comes
            assert (await speaker.propose("bob", spec)).accepted
        refused = await speaker.propose("bob", specs[3])
        assert not refused.accepted and refused.status == pb.REFUSAL_STATUS_RESOURCE_EXHAUSTED, refused
        assert "too many sessions" in refused.reason
        assert specs[3].session_id not in bob._live and len(bob._live) == 3
        await speaker.abort("bob", specs[0].session_id)
        await until(lambda: len(bob._live) == 2)
        again = await speaker.propose("bob", specs[3])  # nothing was reserved or marked used by the refusal
        assert again.accepted, again
        for spec in specs[1:]:
            await speaker.abort("bob", spec.session_id)
    finally:
        await speaker.close()


async def test_many_party_sessions_count_against_the_same_cap(cluster):
    bob = cluster.nodes["bob"]
    bob.max_sessions = 1
    speaker = Speaker(cluster)
    try:
        spec = session_spec(session_id=b"h" * 16)
        assert (await speaker.propose("bob", spec)).accepted  # bob's one slot, held
        with pytest.raises(QueryError) as info:
            await cluster.query("sum", quorum=4, timeout=8)
        assert "too many sessions" in info.value.details, info.value.details
        assert bob.many_in_flight == 0
        # the abort's confirmation may go out on the real coordinator's link (same name): not waited for
        abort = pb.Abort(session_id=spec.session_id, sender="coordinator", reason="test")
        await speaker.hub.send("bob", spec.session_id, 0, sessions.ABORT, abort.SerializeToString())
        await until(lambda: not bob._live)
        assert (await cluster.query("sum", quorum=4, timeout=8)).value == pytest.approx(3800 + 2514 + 2982 + 3390)
    finally:
        await speaker.close()


async def test_the_coordinator_runs_at_most_its_cap_of_sessions_per_party_and_queues_the_rest(cluster, monkeypatch):
    monkeypatch.setattr(coordinator_node, "SESSIONS_PER_PARTY", 1)
    coord = cluster.nodes["coordinator"]
    running, peak = 0, 0
    run = coord.run

    async def counted(spec):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.05)  # long enough for the other queries to start, were they allowed to
            return await run(spec)
        finally:
            running -= 1

    coord.run = counted
    results = await asyncio.gather(*(cluster.query(timeout=20) for _ in range(3)))
    assert peak == 1
    assert all(r.value == pytest.approx(3171.5) for r in results)


async def test_a_proposal_the_link_refuses_to_carry_leaves_no_session_behind(cluster):
    """R6: ``post`` raising at once (a message over the link's limit) ends the run cleanly: its clean-up ran."""
    coord = cluster.nodes["coordinator"]
    coord.link.max_message_bytes = 10  # every proposal is longer
    with pytest.raises(QueryError):
        await cluster.query(timeout=8)
    assert not coord._runs


async def test_an_oversized_share_is_refused_at_its_first_frame_naming_its_sender(cluster):
    """R8: a peer announcing a share far longer than 8 L bytes makes the party abort at once, naming it, before
    the rest arrives (it is never assembled)."""
    coordinator, alice = Speaker(cluster), Speaker(cluster, name="alice")
    try:
        spec = session_spec(session_id=b"o" * 16)
        assert (await coordinator.propose("bob", spec, start=True)).accepted
        stream = await alice.hub._stream("bob")
        first = link.Frame(spec.session_id, 0, sessions.SHARE, 0, 1 << 26, bytes(8))
        await stream.write(link.encode("alice", [first]))  # the rest of its 64 MiB never comes
        abort = await coordinator.aborted("bob", spec.session_id, timeout=20)
        assert abort.culprit == "alice" and "a share of 67108864 bytes, more than the 16 expected" in abort.reason, (
            abort
        )
        await until(lambda: not cluster.nodes["bob"]._live)
    finally:
        await alice.close()
        await coordinator.close()
