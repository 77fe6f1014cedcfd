"""A long vector's stages overlap across the nodes: a party's session log is written while it reads and encodes,
and its keyed partial sum leaves slice by slice as it is masked (services/party_node.py, services/link.py's
``prepare``, mpcdp.protocol.party.MaskedStream); the sum is still exact."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import numpy as np
import pytest
import pytest_asyncio

from mpcdp.protocol import PartySession
from services import sessions
from services.data import Table
from services.ledgers import SessionLog
from services.party_node import READ_OFF_LOOP, PartyNode
from services.tls import init_certs
from tests.support.federation import make_cluster

pytestmark = pytest.mark.asyncio(loop_scope="module")
LENGTH = 300_000  # 2.4 MB: three frames of at most 1 MiB
PARTIES = ("alice", "bob", "carol")
POLICY = {"allow_exact": True, "max_records": 10}


class LoggedFirst(Table):
    """A party's records, read only once the session's id is on disk in ``log`` (waits up to 5 s for it):
    a party that read on its event loop would not start that write before the read ends."""

    def __init__(self, columns, log: SessionLog):
        super().__init__(columns)
        self.log = log
        self.logged_first: list[bool] = []

    def records(self, spec):
        until = time.monotonic() + 5.0
        while spec.session_id.hex() not in self.log.path.read_text() and time.monotonic() < until:
            time.sleep(0.002)
        self.logged_first.append(spec.session_id.hex() in self.log.path.read_text())
        return super().records(spec)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory):
    certs = tmp_path_factory.mktemp("certs")
    init_certs(["coordinator", "analyst", *PARTIES], certs)
    state = tmp_path_factory.mktemp("state")
    values = {
        p: (np.arange(LENGTH) * (i + 1) % 1000).astype(np.float64).reshape(1, LENGTH) for i, p in enumerate(PARTIES)
    }

    def party(f, name, table, identity, **kw):
        log = SessionLog(state / f"{name}.sessions")
        return PartyNode(f, name, LoggedFirst(table.columns, log), identity, sessions=log, **kw)

    c = await make_cluster(certs, data={p: {"value": v} for p, v in values.items()}, policy=POLICY, party_cls=party)
    c.expected = sum(v[0] for v in values.values())
    yield c
    await c.close()


async def ask(cluster):
    return await cluster.query("sum", column="value", bounds=(0, 1000), dimension=LENGTH, frac_bits=0, max_records=1)


async def test_a_long_vectors_session_log_is_written_while_the_party_reads_it(cluster):
    assert LENGTH >= READ_OFF_LOOP
    result = await ask(cluster)
    np.testing.assert_array_equal(np.asarray(result.value), cluster.expected)
    assert all(cluster.nodes[p].table.logged_first == [True] for p in PARTIES)


async def test_long_vectors_are_read_on_threads_of_their_own_not_the_ones_writing_the_session_log(cluster):
    """review-vecpipe F1: the reads ran on asyncio's default threads, which also write the session logs and commit the
    ledgers, so a durable write waited behind long reads. With one default thread, each read waits for its session
    id's write: on those threads the read held the only one and the write never ran (logged_first: False, 5 s)."""
    loop = asyncio.get_running_loop()
    one = concurrent.futures.ThreadPoolExecutor(1)
    loop.set_default_executor(one)
    try:
        for p in PARTIES:
            cluster.nodes[p].table.logged_first.clear()
        result = await ask(cluster)
    finally:
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor())
        one.shutdown(wait=False)
    np.testing.assert_array_equal(np.asarray(result.value), cluster.expected)
    assert all(cluster.nodes[p].table.logged_first == [True] for p in PARTIES)


async def test_a_long_keyed_partial_sum_leaves_slice_by_slice_as_it_is_masked(cluster, monkeypatch):
    """Each party's PARTIAL is posted with the stream's ``prepare``: the link asks for each frame's slice as it
    comes to write it (first the first megabyte, with nothing beyond masked yet), and the sum is exact."""
    asked: dict[str, list[tuple[int, int]]] = {p: [] for p in PARTIES}
    for p in PARTIES:
        hub = cluster.nodes[p].link
        real = hub.post

        def post(peer, session, round, kind, payload, droppable=False, prepare=None, _p=p, _real=real):
            if kind == sessions.PARTIAL:
                assert prepare is not None
                masked = streams[_p]

                def watched(end, _inner=prepare):
                    asked[_p].append((end, masked[-1].masked))  # the elements masked before this frame's turn
                    return _inner(end)

                return _real(peer, session, round, kind, payload, droppable, watched)
            return _real(peer, session, round, kind, payload, droppable, prepare)

        monkeypatch.setattr(hub, "post", post)
    streams: dict[str, list] = {p: [] for p in PARTIES}
    real_stream = PartySession.masked_stream

    def masked_stream(self, keys, now=float("-inf")):
        stream = real_stream(self, keys, now)
        streams[self.me].append(stream)
        return stream

    monkeypatch.setattr(PartySession, "masked_stream", masked_stream)
    result = await ask(cluster)
    np.testing.assert_array_equal(np.asarray(result.value), cluster.expected)
    for p in PARTIES:
        ends = [end for end, _ in asked[p]]
        assert ends == [1 << 20, 2 << 20, 8 * LENGTH, 8 * LENGTH + 8 * 2], ends  # three frames, then the key ids
        assert [before for _, before in asked[p]] == [0, (1 << 20) // 8, (2 << 20) // 8, LENGTH]
        assert streams[p][-1].masked == LENGTH
