"""Coalescing on real TLS nodes: concurrent single queries asking the same parties run together as one batch
session at the parties (:meth:`services.coordinator_node.CoordinatorNode._released`), and each analyst still
gets only its own release, under its own session id, charged on the coordinator's ledger per query. A query
that a party refuses fails alone; the others are answered. One cluster of 4 parties serves the module."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math

import grpc
import pytest
import pytest_asyncio

from services import coordinator_node, sessions
from services.analyst import QueryError
from services.releases import ReleaseStore
from tests.support.federation import ledgered_cluster, until

pytestmark = pytest.mark.asyncio(loop_scope="module")

NAMES = ["p1", "p2", "p3", "p4"]
VALUES = {p: [1.0 + i, 2.0] for i, p in enumerate(NAMES)}
POLICY = {"allow_exact": True, "max_records": 10, "max_epsilon": 8.0}
SUM = sum(v for p in NAMES for v in VALUES[p])
COUNT = sum(len(VALUES[p]) for p in NAMES)
QUERIES = 24


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def nodes(tmp_path_factory):
    cluster, ledgers, state = await ledgered_cluster(tmp_path_factory, {p: {"value": VALUES[p]} for p in NAMES}, POLICY)
    coordinator = cluster.nodes["coordinator"]
    coordinator.store = ReleaseStore(state / "releases")
    coordinator.coalesce = 1  # one session in flight per group: the queries arriving meanwhile run together
    yield cluster, ledgers
    await cluster.close()


def count_proposals(coordinator) -> collections.Counter:
    posted: collections.Counter = collections.Counter()
    real = coordinator.link.post

    def counting(peer, sid, rnd, kind, *a, **kw):
        if kind == sessions.PROPOSE:
            posted[sid] += 1
        return real(peer, sid, rnd, kind, *a, **kw)

    coordinator.link.post = counting
    return posted


async def ask_all(cluster, asked, analysts=4):
    """Every query of ``asked`` (keywords of Analyst.query) at once, over ``analysts`` connections: each
    outcome, a QueryResult or the QueryError."""
    clients = [cluster.client() for _ in range(analysts)]
    try:

        async def one(i, kw):
            try:
                return await clients[i % analysts].query(**{"timeout": 10.0, **kw})
            except QueryError as exc:
                return exc

        return await asyncio.gather(*(one(i, kw) for i, kw in enumerate(asked)))
    finally:
        for c in clients:
            await c.close()


async def test_concurrent_exact_queries_run_together_each_with_its_own_release(nodes):
    cluster, _ = nodes
    coordinator = cluster.nodes["coordinator"]
    posted = count_proposals(coordinator)
    try:
        asked = [dict(statistic="sum" if i % 2 else "count", column="value", bounds=(0, 10)) for i in range(QUERIES)]
        released = await ask_all(cluster, asked)
    finally:
        del coordinator.link.post
    assert [r.value for r in released] == [SUM if i % 2 else COUNT for i in range(QUERIES)]
    assert len({r.session_id for r in released}) == QUERIES  # each its own id
    assert all(r.batch_size == 1 and r.index == 0 and r.sharing == "keyed" and not r.sharing_note for r in released)
    sessions_run = len(posted)
    assert sum(posted.values()) == len(NAMES) * sessions_run  # one PROPOSE per party per session
    assert sessions_run < QUERIES / 2, sessions_run  # run together: far fewer sessions than queries
    assert not {bytes.fromhex(r.session_id) for r in released} >= set(posted)  # batch sessions have ids of their own
    async with cluster.client() as c:
        again = await c.fetch_batch(released[5].session_id)  # only that analyst's release, again
    assert [r.to_json() for r in again] == [released[5].to_json()]
    assert coordinator._groups == {}


async def test_dp_queries_run_together_seeded_and_are_charged_per_query(nodes):
    cluster, ledgers = nodes
    before = {n: float(ledgers[n].spent().epsilon) for n in [*NAMES, "coordinator"]}
    asked = [dict(statistic="sum", column="value", bounds=(0, 10), epsilon=0.125) for _ in range(QUERIES)]
    released = await ask_all(cluster, asked)
    assert all(not isinstance(r, QueryError) for r in released), released
    total = 0.125 * QUERIES
    for name in [*NAMES, "coordinator"]:
        assert math.isclose(float(ledgers[name].spent().epsilon) - before[name], total), name
        assert ledgers[name].reserved() == {}
    history = {c.label for c in ledgers["coordinator"].history()}
    assert all(r.session_id in history for r in released)  # the coordinator charged each query under its id
    together = [r for r in released if r.sharing_note]
    assert together and all(r.sharing == "seeded" and r.sharing_note == coordinator_node.COALESCED for r in together)
    assert all(r.sharing == "keyed" for r in released if not r.sharing_note)  # those that ran alone
    for r in released:  # each its own noise around the sum, not a mask left in
        assert abs(r.value - SUM) < 20 * r.noise_std["sum"]


async def test_a_charged_dp_query_costs_the_coordinator_two_ledger_transactions_and_a_failed_one_is_freed(
    nodes, monkeypatch
):
    """Reserve, then charge (which drops the reservation in its transaction): no third operation to free what is
    already gone. A query that fails after its reservation still frees it."""
    cluster, ledgers = nodes
    ledger = ledgers["coordinator"]
    applied = []
    apply = ledger.apply
    monkeypatch.setattr(ledger, "apply", lambda ops: (applied.extend(type(op).__name__ for op in ops), apply(ops))[1])
    async with cluster.client() as client:
        result = await client.query("sum", column="value", bounds=(0, 10), epsilon=0.125, timeout=10.0)
        assert result.session_id in {c.label for c in ledger.history()} and applied == ["Reserve", "ChargeReserved"]
        with pytest.raises(QueryError):  # p1's policy refuses it: the session fails after the coordinator reserved
            await client.query("sum", column="value", bounds=(0, 10), epsilon=8.5, timeout=10.0)
    await until(lambda: len(applied) == 4)  # the free is queued as the session ends, not awaited
    assert applied[2:] == ["Reserve", "Free"] and ledger.reserved() == {}


async def test_a_query_a_party_refuses_fails_alone_and_the_others_are_answered(nodes):
    cluster, _ = nodes
    p3 = cluster.nodes["p3"]
    policy = p3.policy
    p3.policy = dataclasses.replace(policy, statistics=("sum",))  # p3 answers sums only
    try:
        asked = [dict(statistic="count" if i == 7 else "sum", column="value", bounds=(0, 10)) for i in range(QUERIES)]
        released = await ask_all(cluster, asked)
    finally:
        p3.policy = policy
    refused = released[7]
    assert isinstance(refused, QueryError) and refused.code == grpc.StatusCode.PERMISSION_DENIED
    assert "p3 refused: statistic 'count' is not allowed" in refused.details  # its own session, alone
    assert [r.value for i, r in enumerate(released) if i != 7] == [SUM] * (QUERIES - 1)
    await until(lambda: not any(cluster.nodes[p]._live for p in NAMES))


async def test_queries_run_together_no_longer_than_the_parties_policies_allow(nodes, monkeypatch):
    cluster, _ = nodes
    coordinator = cluster.nodes["coordinator"]
    policy = dataclasses.replace(coordinator._policy("p1"), max_length=2)
    monkeypatch.setattr(coordinator, "_policy", lambda party: policy)
    sizes = []
    real = coordinator.run

    async def run(batch):
        sizes.append(batch.length)
        return await real(batch)

    monkeypatch.setattr(coordinator, "run", run)
    released = await ask_all(cluster, [dict(statistic="sum", column="value", bounds=(0, 10))] * QUERIES)
    assert [r.value for r in released] == [SUM] * QUERIES
    assert max(sizes) == 2 and len(sizes) < QUERIES  # run together, two at a time at most


async def slowed(cluster, party, seconds):
    """Make ``party`` hold each partial sum ``seconds`` before sending it (undo: ``del node._send_partial``)."""
    node = cluster.nodes[party]
    real = node._send_partial

    async def slow(*args, **kw):
        await asyncio.sleep(seconds)
        return await real(*args, **kw)

    node._send_partial = slow
    return node


async def test_one_short_deadline_neither_fails_nor_double_charges_the_others(nodes):
    """The review's attack: one analyst's short timeout set the coalesced session's deadline; with one party slow,
    the session failed after every party had charged it, and each query then ran (and was charged) again alone:
    the parties paid twice what the coordinator charged. Now the session takes the latest deadline, and a DP batch
    that fails after acceptance is not run again."""
    cluster, ledgers = nodes
    names = [*NAMES, "coordinator"]
    before = {n: float(ledgers[n].spent().epsilon) for n in names}
    p4 = await slowed(cluster, "p4", 1.0)
    try:
        dp = dict(statistic="sum", column="value", bounds=(0, 10), epsilon=0.125)
        occupier = asyncio.ensure_future(ask_all(cluster, [dp], analysts=1))  # holds the group's one slot
        await asyncio.sleep(0.1)
        released = await ask_all(cluster, [{**dp, "timeout": 1.6 if i == 0 else 10.0} for i in range(QUERIES)])
        await occupier
    finally:
        del p4._send_partial
    await until(lambda: all(ledgers[n].reserved() == {} for n in names))
    assert all(not isinstance(r, QueryError) for r in released), released
    spent = {n: float(ledgers[n].spent().epsilon) - before[n] for n in names}
    assert math.isclose(spent["coordinator"], 0.125 * (QUERIES + 1)), spent
    for name in NAMES:  # each party charged exactly what the coordinator charged: every query once
        assert math.isclose(spent[name], spent["coordinator"]), spent


async def test_a_query_whose_deadline_passed_while_waiting_fails_alone(nodes):
    """The review's second attack: a query with a 1 ms timeout joined a batch, which went out expired and failed,
    and every member then ran alone (26 sessions instead of 2). Now it fails by itself, before any proposal."""
    cluster, _ = nodes
    coordinator = cluster.nodes["coordinator"]
    p4 = await slowed(cluster, "p4", 0.3)
    posted = count_proposals(coordinator)
    try:
        exact = dict(statistic="sum", column="value", bounds=(0, 10))
        occupier = asyncio.ensure_future(ask_all(cluster, [exact], analysts=1))
        await asyncio.sleep(0.1)
        released = await ask_all(cluster, [{**exact, "timeout": 0.001 if i == 0 else 10.0} for i in range(QUERIES)])
        await occupier
    finally:
        del p4._send_partial
        del coordinator.link.post
    assert isinstance(released[0], QueryError) and released[0].code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert coordinator_node.EXPIRED_WAITING in released[0].details
    assert [r.value for r in released[1:]] == [SUM] * (QUERIES - 1)
    assert len(posted) <= 3, len(posted)  # the occupier's session and one or two batches, not one per query
