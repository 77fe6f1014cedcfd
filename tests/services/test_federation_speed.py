"""The fast paths of the federation: one round trip, the two-round fallback, and what a refusal leaves behind."""

from __future__ import annotations

import grpc
import pytest

from services import audit, sessions
from tests.support.federation import MEAN, RAISES, assert_idle, expect_error, make_cluster, until


class Counting:
    """A party that counts the START messages it waited for before sharing."""

    waited = 0

    async def _started(self, live):
        from services.party_node import PartyNode

        type(self).waited += 1
        return await PartyNode._started(self, live)


async def test_one_round_by_default_and_two_rounds_where_a_party_policy_says_so(certs):
    from services.party_node import PartyNode

    for one_round, rounds in ((True, 0), (False, 4)):
        cls = type("Counted", (Counting, PartyNode), {"waited": 0})
        policy = {"allow_exact": True, "max_records": 100, "one_round": one_round}
        c = await make_cluster(certs, policy=policy, party_cls=cls)
        try:
            for sharing in ("seeded", "keyed"):  # keyed falls back to seeded where a policy waits
                cls.waited = 0
                assert (await c.query(sharing=sharing)).value == pytest.approx(MEAN, abs=1e-3)
                assert cls.waited == rounds  # each of the 4 parties waited for START only without one_round
        finally:
            await c.close()


async def test_a_refusal_after_others_shared_releases_nothing_and_charges_nothing(certs, tmp_path):
    """In one seeded round, alice, bob and dave share before carol refuses (a keyed session sends partial sums
    instead, charged as they leave: tests/services/test_keyed_sessions.py): the shares they sent are random on
    their own, carol drops the ones she got, nobody's partial sum leaves (each waits for carol's share),
    and no ledger is charged."""
    from mpcdp.dp.ledger import PrivacyLedger

    ledgers = {
        name: PrivacyLedger(tmp_path / f"{name}.db", "raises", 0.5 if name == "carol" else 5.0)
        for name in ["coordinator", *RAISES]
    }
    events = []
    real = audit.record
    audit.record = lambda event, **fields: (events.append((event, fields)), real(event, **fields))
    c = await make_cluster(certs, ledgers=ledgers)
    try:
        err = await expect_error(c, grpc.StatusCode.RESOURCE_EXHAUSTED, "carol", epsilon=1.0, sharing="seeded")
        assert "budget" in err.details
        assert {n: float(ledger.spent().epsilon) for n, ledger in ledgers.items()} == {n: 0.0 for n in ledgers}
        assert not [f for e, f in events if e == "released"]  # no partial sum sent, no release
        for name in RAISES:
            assert not c.nodes[name]._live and not any(k[1] for k in c.nodes[name].link._inbox)
        r = await c.query(epsilon=1.0, parties=["alice", "bob", "dave"])  # the same nodes answer the next
        assert r.parties == ("alice", "bob", "dave")
    finally:
        audit.record = real
        await c.close()


async def test_concurrent_queries_share_the_links_and_each_gets_its_own_sum(certs):
    """Forty queries at once over one link per pair: every release right, every party idle after, no stream
    opened per session."""
    import asyncio

    data = {p: {"raise": [v, i]} for i, (p, v) in enumerate(RAISES.items())}
    c = await make_cluster(certs, data=data)
    try:
        async with c.client() as analyst:
            results = await asyncio.gather(
                *(
                    analyst.query("sum", column="raise", bounds=(0, 10_000), parties=list(RAISES)[: 2 + k % 3])
                    for k in range(40)
                )
            )
        for k, r in enumerate(results):
            counted = list(RAISES)[: 2 + k % 3]
            assert r.parties == tuple(counted)
            assert r.value == pytest.approx(sum(RAISES[p] + i for i, p in enumerate(counted)), abs=1e-3)
        assert_idle(c)
        for name, node in c.nodes.items():
            assert all(len(streams) <= 2 for streams in node.link._streams.values()), name
    finally:
        await c.close()


@pytest.mark.parametrize("sharing", ["keyed", "seeded"])
async def test_the_partial_sum_leaves_only_once_the_session_id_is_on_disk(certs, tmp_path, monkeypatch, sharing):
    """With a state directory a party writes the session id when the proposal arrives and shares (or masks)
    meanwhile, but holds its partial sum until the id is durable: a replay after a crash finds it."""
    import asyncio
    import os
    import threading

    from services import ledgers
    from services.party_node import PartyNode

    disk = threading.Event()
    real = os.fsync
    monkeypatch.setattr(ledgers.os, "fsync", lambda fd: (disk.wait(60), real(fd)))

    def durable(f, name, table, identity, **kw):
        return PartyNode(f, name, table, identity, sessions=ledgers.SessionLog(tmp_path / f"{name}.s"), **kw)

    disk.set()  # the logs compact themselves on start
    c = await make_cluster(certs, party_cls=durable)
    disk.clear()
    parties = [node for name, node in c.nodes.items() if name in RAISES]
    posted = []
    for node in parties:
        node.link.post = lambda *a, _post=node.link.post, **kw: (posted.append(a[3]), _post(*a, **kw))[1]
    try:
        query = asyncio.ensure_future(c.query(timeout=30, sharing=sharing))

        def ready(live):  # its partial sum made: masked (keyed), or every peer's share folded in (seeded)
            return live.session and (live.session.state == "done" if sharing == "keyed" else not live.session.missing)

        def folded():  # every party's partial sum is ready (or, wrongly, the query ended)
            lives = [live for n in parties for live in n._live.values()]
            return (len(lives) == len(parties) and all(ready(live) for live in lives)) or query.done()

        await until(folded)
        assert all(node.sessions.ids for node in parties)
        assert sessions.PARTIAL not in posted and not query.done()  # none sent its partial sum: the disk waits
        disk.set()
        assert (await query).value == pytest.approx(MEAN, abs=1e-3)
    finally:
        disk.set()
        await c.close()


async def test_an_exact_release_is_sent_before_it_is_kept_and_fetch_waits_for_it(certs, tmp_path, monkeypatch):
    """An exact release charged nothing: the analyst gets it without waiting for the disk; a Fetch meanwhile
    waits until it is kept, then returns it."""
    import asyncio
    import threading

    from services import releases

    c = await make_cluster(certs)
    store = c.nodes["coordinator"].store = releases.ReleaseStore(tmp_path / "releases")
    disk = threading.Event()
    commit = store._commit  # the store's writer thread: held until the disk is "ready"
    monkeypatch.setattr(store, "_commit", lambda items: (disk.wait(60), commit(items))[1])
    try:
        async with c.client() as analyst:
            r = await asyncio.wait_for(analyst.query("mean", column="raise", bounds=(0, 10_000), timeout=30), 40)
            assert r.value == pytest.approx(MEAN, abs=1e-3) and store.get(r.session_id) is None
            fetching = asyncio.ensure_future(analyst.fetch(r.session_id))
            await asyncio.sleep(0.2)
            assert not fetching.done()
            disk.set()
            assert (await fetching).value == r.value
    finally:
        disk.set()
        await c.close()
