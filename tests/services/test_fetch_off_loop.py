"""Fetch reads a kept release off the event loop: a slow read (an 8 MB release, a busy disk) does not stop the
coordinator serving other queries meanwhile."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import pytest

from services.releases import ReleaseStore
from tests.support.federation import MEAN, certs, make_cluster  # noqa: F401  (certs: a fixture)


async def test_another_query_is_served_while_a_slow_fetch_reads_its_release(certs, tmp_path):  # noqa: F811
    cluster = await make_cluster(certs)
    try:
        coordinator = cluster.nodes["coordinator"]
        store = coordinator.store = ReleaseStore(tmp_path / "releases")
        first = await cluster.query()
        reading = asyncio.Event()
        read_ended: list[float] = []
        real = store.get

        def slow_get(session: str):
            reading.set()  # (from the reading thread: the loop sees it once it runs again)
            time.sleep(1.5)  # a long read, blocking whichever thread runs it
            read_ended.append(time.monotonic())
            return real(session)

        store.get = slow_get
        async with cluster.client() as c:
            fetching = asyncio.ensure_future(c.fetch(first.session_id))
            while not reading.is_set():
                await asyncio.sleep(0.01)
            second = await cluster.query()
            served = time.monotonic()
            again = await fetching
        assert second.value == pytest.approx(MEAN)
        assert served < read_ended[0], "the other query waited for the fetch's read"
        assert again.value == pytest.approx(first.value)
    finally:
        await cluster.close()


async def test_fetches_read_on_threads_of_their_own_at_most_two_at_once(certs, tmp_path):  # noqa: F811
    """review-tidy F4: Fetch's read ran on asyncio's default threads, shared with the ledger's group commits and the
    session logs' fsyncs: an analyst's many Fetches could queue those. Now its own few: with the default threads
    all busy, five Fetches are still served, at most RELEASE_READERS reading at once."""
    from services.coordinator_node import RELEASE_READERS

    cluster = await make_cluster(certs)
    loop = asyncio.get_running_loop()
    busy = threading.Event()
    stuck: asyncio.Future | None = None
    try:
        coordinator = cluster.nodes["coordinator"]
        store = coordinator.store = ReleaseStore(tmp_path / "releases")
        first = await cluster.query()
        real, lock, reading, most = store.get, threading.Lock(), [0], [0]

        def counted_get(session: str):
            with lock:
                reading[0] += 1
                most[0] = max(most[0], reading[0])
            time.sleep(0.2)
            with lock:
                reading[0] -= 1
            return real(session)

        store.get = counted_get
        async with cluster.client() as c:
            await c.fetch(first.session_id)  # the client's link is up (its dial may use the default threads)
            loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(1))
            stuck = loop.run_in_executor(None, busy.wait, 20)  # every default thread busy (a long fsync, say)
            fetched = await asyncio.wait_for(asyncio.gather(*(c.fetch(first.session_id) for _ in range(5))), 10)
        assert [f.value for f in fetched] == [pytest.approx(first.value)] * 5
        assert most[0] == RELEASE_READERS
    finally:
        busy.set()
        await cluster.close()
    if stuck is not None:
        await stuck
