"""CoordinatorNode.close on real TLS nodes: a DP session still running when the coordinator closes is charged
and kept before the release store closes (review-hotpath finding 6: the store was closed after ABORT_GRACE while
sessions ran, so a late charged release was never kept and could not be fetched again)."""

from __future__ import annotations

import asyncio

from services import coordinator_node
from services.releases import ReleaseStore
from tests.support.federation import ledgered_cluster, until

NAMES = ["p1", "p2", "p3"]
POLICY = {"allow_exact": True, "max_records": 10, "max_epsilon": 8.0}
DATA = {p: {"value": [1.0, 2.0]} for p in NAMES}


async def test_a_session_ending_after_the_grace_is_kept_before_the_store_closes(tmp_path_factory, monkeypatch):
    cluster, ledgers, state = await ledgered_cluster(tmp_path_factory, DATA, POLICY)
    coordinator = cluster.nodes["coordinator"]
    folder = state / "releases"
    coordinator.store = ReleaseStore(folder)
    monkeypatch.setattr(coordinator_node, "ABORT_GRACE", 0.1)
    late, made = asyncio.Event(), []
    released = coordinator._released

    async def slow(batch, note):  # the parties are done; the coordinator finishes after the grace
        out = await released(batch, note)
        made.append(batch.spec.session_id.hex())
        await late.wait()
        return out

    monkeypatch.setattr(coordinator, "_released", slow)
    client = cluster.client()
    asking = asyncio.ensure_future(client.query("sum", column="value", bounds=(0, 10), epsilon=0.5, timeout=10.0))
    try:
        await until(lambda: made)
        for server in cluster.servers.values():
            await server.stop(None)
        closing = asyncio.ensure_future(coordinator.close())
        await asyncio.sleep(0.5)  # past the grace: the old close had closed the store by now
        late.set()
        await asyncio.wait_for(closing, 20)
    finally:
        late.set()
        asking.cancel()
        await asyncio.gather(asking, return_exceptions=True)
        await client.close()
        for node in cluster.nodes.values():
            if node is not coordinator:
                await node.close()
    (sid,) = made
    kept = ReleaseStore(folder).get(sid)
    assert kept is not None and kept[0]["client"] == "analyst" and not kept[0]["exact"]
    assert [c.label for c in ledgers["coordinator"].history()] == [sid]  # charged, and kept for Fetch


async def test_close_does_not_wait_for_ever_on_a_store_that_never_answers(tmp_path_factory, monkeypatch, caplog):
    """Review-3 finding 1: close waited for every release being kept with no bound."""
    cluster, _, state = await ledgered_cluster(tmp_path_factory, DATA, POLICY)
    coordinator = cluster.nodes["coordinator"]
    coordinator.store = ReleaseStore(state / "releases")
    monkeypatch.setattr(coordinator_node, "KEEP_GRACE", 0.2, raising=False)
    never = asyncio.Event()
    coordinator._keeping["ab" * 16] = asyncio.ensure_future(never.wait())  # a keep that never returns
    try:
        for server in cluster.servers.values():
            await server.stop(None)
        await asyncio.wait_for(coordinator.close(), 20)
        assert "still being kept" in caplog.text
    finally:
        never.set()
        for node in cluster.nodes.values():
            if node is not coordinator:
                await node.close()
