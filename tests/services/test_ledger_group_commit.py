"""A node's ledger changes by group commit (:class:`services.ledgers.GroupCommit`): off the event loop, one group at
a time, each request its own outcome in order; a hammer of concurrent reservations never overspends."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from fractions import Fraction
from types import SimpleNamespace

import pytest

from mpcdp.dp.ledger import BudgetExceeded, Charge, ChargeNow, PrivacyLedger, Reserve
from mpcdp.dp.loss import PrivacyLoss, Relation
from services.analyst import QueryError
from services.ledgers import group_commit
from tests.support.federation import RAISES, Speaker, ledgered_cluster, session_spec, until


def loss(eps: str) -> PrivacyLoss:
    return PrivacyLoss.of(Fraction(eps), Fraction(0), Relation.RECORD)


class Spy:
    """Every group a ledger applies: its size, the thread it ran on, how many ran at once."""

    def __init__(self, ledger: PrivacyLedger, monkeypatch, delay: float = 0.0):
        self.sizes: list[int] = []
        self.threads: set[int] = set()
        self.running = self.most = 0
        apply = ledger.apply

        def spied(ops):
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.get_ident())
            self.sizes.append(len(ops))
            try:
                time.sleep(delay)
                return apply(ops)
            finally:
                self.running -= 1

        monkeypatch.setattr(ledger, "apply", spied)


async def test_a_hammer_of_concurrent_reservations_never_overspends(tmp_path, monkeypatch):
    ledger = PrivacyLedger(tmp_path / "l.db", "ds", "1")
    spy = Spy(ledger, monkeypatch)
    group = group_commit(ledger)
    until = time.time() + 60
    outcomes = await asyncio.gather(
        *(group.reserve(f"s{i}".encode(), loss("0.01"), until) for i in range(300)), return_exceptions=True
    )
    granted = [i for i, o in enumerate(outcomes) if o is None]
    assert len(granted) == 100 and all(isinstance(o, BudgetExceeded) for o in outcomes if o is not None)
    assert granted == list(range(100))  # in the order they were asked
    assert len(spy.sizes) < 30 and max(spy.sizes) > 10  # grouped: far fewer transactions than requests
    assert spy.threads and threading.get_ident() not in spy.threads and spy.most == 1  # off the loop, one at a time
    charges = await asyncio.gather(*(group.charge_reserved(f"s{i}".encode()) for i in granted))
    assert all(isinstance(c, Charge) for c in charges)
    fresh = PrivacyLedger(tmp_path / "l.db", "ds", "1")
    assert fresh.spent().epsilon == 1 and fresh.reserved() == {} and len(fresh.history()) == 100
    with pytest.raises(BudgetExceeded):
        await group.reserve(b"late", loss("0.01"), until)


async def test_requests_are_applied_in_the_order_they_were_made(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.db", "ds", "1")
    group = group_commit(ledger)
    until = time.time() + 60
    reserved = asyncio.ensure_future(group.reserve(b"a", loss("0.5"), until))
    await asyncio.sleep(0)
    group.free(b"a")  # queued behind the reservation: it frees it
    charged = asyncio.ensure_future(group.charge_reserved(b"a"))  # nothing left to charge
    await reserved
    with pytest.raises(KeyError):
        await charged
    assert ledger.reserved() == {} and ledger.history() == []


async def test_a_failed_commit_fails_every_request_of_its_group_and_the_next_group_commits(tmp_path, monkeypatch):
    ledger = PrivacyLedger(tmp_path / "l.db", "ds", "1")
    until = time.time() + 60
    ledger.reserve(b"held", loss("0.5"), until)
    apply = ledger.apply
    failures = [sqlite3.OperationalError("disk I/O error")]

    def failing_once(ops):
        if failures:
            time.sleep(0.05)  # long enough for the next requests to queue behind this group
            raise failures.pop()
        return apply(ops)

    monkeypatch.setattr(ledger, "apply", failing_once)
    group = group_commit(ledger)
    first = [
        asyncio.ensure_future(group.charge_reserved(b"held")),
        asyncio.ensure_future(group.reserve(b"x", loss("0.25"), until)),
    ]
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(group.charge_reserved(b"held"))
    for f in first:
        with pytest.raises(sqlite3.OperationalError):
            await f
    assert isinstance(await second, Charge)
    assert [c.label for c in ledger.history()] == [b"held".hex()]  # the failed group kept nothing
    assert ledger.reserved() == {}


async def test_the_event_loop_runs_while_a_group_commits(tmp_path, monkeypatch):
    ledger = PrivacyLedger(tmp_path / "l.db", "ds", "1")
    Spy(ledger, monkeypatch, delay=0.3)  # a slow disk
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.ensure_future(ticker())
    try:
        await group_commit(ledger).reserve(b"a", loss("0.5"), time.time() + 60)
    finally:
        task.cancel()
    assert ticks >= 10


async def test_each_node_group_commits_its_ledger_changes_and_a_keyed_party_charges_once(tmp_path_factory, monkeypatch):
    """Over real nodes: concurrent DP queries cost the coordinator a reservation and a charge each, and a party in a
    keyed session one charge (its partial sum is its answer, made at once: nothing to hold budget for), each as an
    operation of a group applied off the loop. Over p1's smaller budget p1 refuses, in the ledger's words, and
    sends nothing: its spend is exactly the queries answered."""
    data = {p: {"value": [1.0, 2.0]} for p in ("p1", "p2", "p3")}
    policy = {"max_records": 10, "max_epsilon": 8.0}
    cluster, ledgers, state = await ledgered_cluster(tmp_path_factory, data, policy, budget=1.0)
    ledgers["p1"] = cluster.nodes["p1"].ledger = PrivacyLedger(state / "p1-small.db", "values", 0.5)
    applied: dict[str, list[str]] = {name: [] for name in ledgers}
    for name, ledger in ledgers.items():
        apply = ledger.apply

        def spied(ops, _apply=apply, _name=name):
            assert threading.current_thread() is not threading.main_thread()
            applied[_name].extend(type(op).__name__ for op in ops)
            return _apply(ops)

        monkeypatch.setattr(ledger, "apply", spied)
    cluster.nodes["coordinator"].coalesce = 0  # every query its own keyed session
    try:
        async with cluster.client() as client:
            outcomes = await asyncio.gather(
                *(client.query("sum", column="value", bounds=(0, 10), epsilon=0.25, timeout=10.0) for _ in range(6)),
                return_exceptions=True,
            )
        await until(lambda: all(ledger.reserved() == {} for ledger in ledgers.values()))
    finally:
        await cluster.close()
    answered = [o for o in outcomes if not isinstance(o, Exception)]
    refused = [o.details for o in outcomes if isinstance(o, QueryError)]
    assert len(answered) == 2 and len(refused) == 4, outcomes
    assert sum("coordinator: privacy budget exceeded" in e for e in refused) == 2, refused
    assert sum("p1 refused: privacy budget exceeded" in e for e in refused) == 2, refused
    assert applied["coordinator"].count("Reserve") == 6 and applied["coordinator"].count("ChargeReserved") == 2
    for party in data:
        assert set(applied[party]) == {"ChargeNow"}, applied[party]
    assert {c.label for c in ledgers["p1"].history()} == {r.session_id for r in answered}
    assert ledgers["p1"].spent().epsilon == 0.5
    for party in ("p2", "p3"):  # charged for every partial sum sent (those p1 refused too, if sent before the abort)
        assert {r.session_id for r in answered} <= {c.label for c in ledgers[party].history()}
        assert ledgers[party].spent().epsilon <= 1


def test_a_loop_closed_while_its_group_commits_does_not_stop_the_next_loops_requests(tmp_path, monkeypatch):
    """A node's loop closed mid-commit (its requests' callers gone): the next loop's requests are answered, and it
    applies none of those the closed loop left queued (each loop has its own GroupCommit: applied later, a charge
    nobody waits for any more would count; a free left so is fail-closed, the reservation lapses at its deadline)."""
    ledger = PrivacyLedger(tmp_path / "l.db", "ds", "1")
    Spy(ledger, monkeypatch, delay=0.2)
    until = time.time() + 60

    async def leave() -> None:
        group = group_commit(ledger)
        group.queue(Reserve(b"a", loss("0.25"), until))  # its group starts committing
        await asyncio.sleep(0.01)
        group.free(b"a")  # queued behind it, with a done callback on this loop
        group.queue(ChargeNow(loss("0.25"), "stale"))  # its caller gone with the loop

    first = asyncio.new_event_loop()
    first.run_until_complete(leave())
    first.close()
    time.sleep(0.3)  # the closed loop's group has committed in its thread

    async def next_loop() -> None:
        await asyncio.wait_for(group_commit(ledger).reserve(b"b", loss("0.5"), until), 5.0)

    asyncio.run(next_loop())
    assert set(ledger.reserved()) == {b"a".hex(), b"b".hex()}
    assert ledger.history() == []  # the stale charge was never applied


def test_a_forked_child_applies_none_of_its_parents_queued_requests(tmp_path, monkeypatch):
    """A fork while a group commits and another request waits behind it: the child's own request is applied, the
    parent's queued one only by the parent (applied by both, it was charged twice)."""
    path = tmp_path / "l.db"
    ledger = PrivacyLedger(path, "ds", "1")
    Spy(ledger, monkeypatch, delay=0.3)

    async def parent() -> int:
        group = group_commit(ledger)
        first = asyncio.ensure_future(group.charge_now(loss("0.1"), "x"))
        await asyncio.sleep(0.05)  # x's group is committing
        second = asyncio.ensure_future(group.charge_now(loss("0.1"), "y"))  # queued behind it
        await asyncio.sleep(0)
        pid = os.fork()  # waits for x's group (the ledger's lock) to finish
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:

                async def child() -> None:
                    await asyncio.wait_for(group_commit(ledger).charge_now(loss("0.1"), "child"), 5)

                asyncio.run(child())
                code = 0
            finally:
                os._exit(code)
        await first
        await second
        return os.waitpid(pid, 0)[1]

    assert asyncio.run(parent()) == 0
    assert sorted(c.label for c in PrivacyLedger(path, "ds", "1").history()) == ["child", "x", "y"]


async def test_a_reservation_whose_caller_is_cancelled_while_it_commits_is_freed(tmp_path, monkeypatch):
    """The coordinator's hold is awaited now: an analyst who leaves while it commits cancels it, and the
    reservation (already queued, so committed anyway) must not hold budget until its deadline."""
    from services.coordinator_node import CoordinatorNode

    ledger = PrivacyLedger(tmp_path / "l.db", "ds", "1")
    Spy(ledger, monkeypatch, delay=0.2)
    until = time.time() + 60
    holding = asyncio.ensure_future(CoordinatorNode.hold(SimpleNamespace(ledger=ledger), b"s", loss("0.5"), until))
    await asyncio.sleep(0.05)  # its group is committing
    holding.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holding
    await group_commit(ledger).reserve(b"t", loss("1"), until)  # the whole budget: fits once s is freed
    assert set(ledger.reserved()) == {b"t".hex()}


async def test_a_closing_node_frees_what_its_sessions_held_before_it_returns(tmp_path_factory, monkeypatch):
    """A party closed with a seeded DP session accepted (its loss reserved, waiting for START): the free its ending
    session queues is applied before close returns (queued as the loop stopped, it never ran: the reservation held
    budget across a restart until its deadline)."""
    data = {p: {"raise": [float(v)]} for p, v in RAISES.items()}
    cluster, ledgers, _ = await ledgered_cluster(tmp_path_factory, data, {"max_records": 10}, budget=1.0)
    speaker = Speaker(cluster)
    try:
        spec = session_spec("seeded", session_id=b"c" * 16, epsilon=0.5, max_records=10)
        assert (await speaker.propose("bob", spec)).accepted
        assert set(ledgers["bob"].reserved()) == {spec.session_id.hex()}
        Spy(ledgers["bob"], monkeypatch, delay=0.5)  # a slow disk: the free is not done unless close waits for it
        await cluster.nodes["bob"].close()
        assert ledgers["bob"].reserved() == {}
    finally:
        await speaker.close()
        await cluster.close()


async def test_fetch_checks_the_charge_off_the_loop_while_a_group_waits_for_another_writer(tmp_path):
    """Another process holds the file's write lock; a group waits for it in its thread, holding the ledger's
    connection: Fetch's check that the release was charged waits too, but not on the event loop (it blocked the loop
    for as long as the other writer held the lock, up to the busy timeout)."""
    from services.coordinator_node import CoordinatorNode

    path = tmp_path / "l.db"
    ledger = PrivacyLedger(path, "ds", "1")
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)  # another process's writer
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(1.0, lambda: other.execute("COMMIT"))
    release.start()
    gaps: list[float] = []

    async def ticker():
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    task = asyncio.ensure_future(ticker())
    try:
        charging = asyncio.ensure_future(group_commit(ledger).charge_now(loss("0.1"), "x"))
        await asyncio.sleep(0.1)  # x's group waits for the write lock
        assert await CoordinatorNode._charged(SimpleNamespace(ledger=ledger), "x", {})  # once x's group committed
        await charging
    finally:
        task.cancel()
        release.join()
        other.close()
    assert max(gaps) < 0.5, max(gaps)
