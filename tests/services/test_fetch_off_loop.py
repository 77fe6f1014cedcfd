"""Fetch reads a kept release off the event loop: a slow read (an 8 MB release, a busy disk) does not stop the
coordinator serving other queries meanwhile."""

from __future__ import annotations

import asyncio
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
