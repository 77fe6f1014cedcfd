"""How the ledger stores: one connection per ledger object (not one per transaction), WAL with synchronous=FULL,
several processes and threads on one file never overspending, and what other openers (a new ledger object, a
read-only reader, a forked child) see."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import stat
import threading
import time
from fractions import Fraction

import pytest

from mpcdp.dp import ledger as ledger_module
from mpcdp.dp.ledger import BudgetExceeded, PrivacyLedger
from mpcdp.dp.loss import PrivacyLoss, Relation
from tests.support.ledgers import run_forked

BUDGET = "2"


def loss(eps: str) -> PrivacyLoss:
    return PrivacyLoss.of(Fraction(eps), Fraction(0), Relation.RECORD)


@pytest.fixture
def opened(monkeypatch):
    """Every connection sqlite3.connect makes from now on."""
    made: list[sqlite3.Connection] = []
    connect = sqlite3.connect

    def counted(*args, **kwargs):
        made.append(connect(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ledger_module.sqlite3, "connect", counted)
    return made


def test_one_connection_serves_every_transaction(tmp_path, opened):
    ledger = PrivacyLedger(tmp_path / "l.db", "ds", 100.0)
    for i in range(20):
        ledger.reserve(f"s{i}", loss("0.01"), until=time.time() + 60)
        ledger.charge_reserved(f"s{i}")
        ledger.charge(loss("0.01"), label=f"c{i}")
        ledger.free(f"s{i}")
    with pytest.raises(BudgetExceeded):  # a refused charge rolls back; the connection stays usable
        ledger.charge(loss("1000"))
    assert ledger.spent().epsilon == pytest.approx(0.4) and ledger.has_charge("c3") and len(ledger.history()) == 40
    assert len(opened) == 1


def test_wal_with_full_sync(tmp_path, opened):
    path = tmp_path / "l.db"
    PrivacyLedger(path, "ds", 1.0).charge(loss("0.5"))
    [db] = opened
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: the -wal file is synced at every commit
    again = PrivacyLedger(path, "ds", 1.0)  # idempotent on a file already in WAL mode
    assert again.spent().epsilon == 0.5
    assert opened[1].execute("PRAGMA synchronous").fetchone()[0] == 2


def test_the_wal_files_are_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        ledger = PrivacyLedger(tmp_path / "l.db", "ds", 1.0)
        ledger.charge(loss("0.5"))
    finally:
        os.umask(old)
    for name in ("l.db", "l.db-wal", "l.db-shm"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


def test_a_closed_and_reopened_ledger_sees_every_charge(tmp_path):
    path = tmp_path / "l.db"
    ledger = PrivacyLedger(path, "ds", 1.0)
    for i in range(5):
        ledger.charge(loss("0.1"), label=f"c{i}")
    ledger.reserve("held", loss("0.2"), until=2e9)
    ledger.close()
    assert not (tmp_path / "l.db-wal").exists()  # the last connection's close checkpoints into the file
    assert [c.label for c in PrivacyLedger(path, "ds", 1.0).history()] == [f"c{i}" for i in range(5)]
    assert ledger.spent().epsilon == pytest.approx(0.5) and set(ledger.reserved()) == {"held"}  # reopened on use
    with pytest.raises(BudgetExceeded):
        ledger.charge(loss("0.4"))


def test_a_read_only_opener_sees_committed_charges(tmp_path):
    path = tmp_path / "l.db"
    ledger = PrivacyLedger(path, "ds", 1.0)
    ledger.charge(loss("0.25"), label="a")

    def read_only() -> list[tuple[str, str]]:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return db.execute("SELECT label, epsilon FROM charges ORDER BY id").fetchall()
        finally:
            db.close()

    assert read_only() == [("a", "1/4")]  # while the ledger is open: the charge is in the -wal file
    ledger.charge(loss("0.5"), label="b")
    assert read_only() == [("a", "1/4"), ("b", "1/2")]
    ledger.close()
    assert read_only() == [("a", "1/4"), ("b", "1/2")]  # after its close (no -wal, no -shm beside the file)


def _hammer(path: str, inherited: PrivacyLedger | None, seed: int, done, results) -> None:
    """Two threads on one ledger object: reserve and charge, reserve and free, charge, lapse; once every process is
    done, report the outcome (a process's sum read before the others finished could rightly be lower)."""
    ledger = inherited or PrivacyLedger(path, "ds", BUDGET)  # a forked child's object opens its own connection
    accepted = refused = 0
    count = threading.Lock()

    def run(thread: int) -> None:
        nonlocal accepted, refused
        rnd = random.Random(seed * 10 + thread)
        for k in range(40):
            sid, request = f"{seed}-{thread}-{k}", loss(f"{rnd.choice([1, 3, 7])}/100")
            op = rnd.random()
            try:
                if op < 0.4:
                    ledger.reserve(sid, request, time.time() + 30)
                    ledger.charge_reserved(sid) if rnd.random() < 0.7 else ledger.free(sid)
                elif op < 0.8:
                    ledger.charge(request, label=sid)
                else:
                    ledger.reserve(sid, request, time.time() - 1)  # lapsed at once: charged only if it still fits
                    ledger.charge_reserved(sid)
                with count:
                    accepted += 1
            except BudgetExceeded:
                with count:
                    refused += 1
            ledger.spent()

    threads = [threading.Thread(target=run, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.wait(60)
    results.put((accepted, refused, ledger.spent(), ledger.remaining()))


def test_processes_and_threads_on_one_file_never_overspend(tmp_path):
    path = str(tmp_path / "l.db")
    parent = PrivacyLedger(path, "ds", BUDGET)
    parent.charge(loss("0.01"), label="before")  # its connection is open when the children fork
    outcomes = run_forked(_hammer, [(path, parent if s == 0 else None, s) for s in range(3)])
    db = sqlite3.connect(path)
    total = sum((Fraction(e) for (e,) in db.execute("SELECT epsilon FROM charges WHERE dataset = 'ds'")), Fraction(0))
    db.close()
    assert total <= Fraction(BUDGET)
    assert sum(refused for _, refused, _, _ in outcomes) > 0, "the budget was never reached: the test tests nothing"
    fresh = PrivacyLedger(path, "ds", BUDGET)
    assert fresh.spent().epsilon == pytest.approx(float(total))
    assert all(spent == fresh.spent() for _, _, spent, _ in outcomes)  # each process's incremental sum
    assert parent.spent() == fresh.spent()  # the parent's connection still works after its children used theirs


def _fork(child) -> int:
    """Run ``child()`` in a forked process; its exit status (0: returned, 1: raised, -14: hung for 10 s)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        signal.alarm(10)
        try:
            child()
            code = 0
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_forked_child_loses_no_charge_when_the_parent_closes_or_exits_meanwhile(tmp_path):
    """The attack of review-ledgerfast F1: a parent that kept its connection forks; the child charges while the
    parent closes its ledger. SQLite took the parent for the file's last connection, checkpointed and deleted the
    -wal the child still committed to: 200 charges committed, 21 in the file. Every connection is now closed
    before a fork."""
    path = tmp_path / "l.db"
    ledger = PrivacyLedger(path, "ds", 100.0)
    ledger.charge(loss("0.5"), label="parent")
    started = tmp_path / "started"

    def child() -> None:
        for i in range(200):
            ledger.charge(loss("0.01"), label=f"c{i}")
            if i == 20:
                started.touch()

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            child()
        finally:
            os._exit(0)
    while not started.exists():
        time.sleep(0.005)
    ledger.close()  # while the child charges
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM charges WHERE label LIKE 'c%'").fetchone()[0] == 200
    assert ledger.spent().epsilon == pytest.approx(2.5)  # the parent reopens and sees them all


def test_a_transaction_an_interrupt_left_open_is_rolled_back_by_the_next(tmp_path):
    """review-ledgerfast F2: a KeyboardInterrupt between BEGIN IMMEDIATE and the rollback's try left the kept
    connection in a write transaction: every later charge failed, and other processes found the file locked."""
    path = tmp_path / "l.db"
    ledger = PrivacyLedger(path, "ds", 1.0)
    ledger.charge(loss("0.1"), label="ok")
    with ledger._connection() as db:  # what the interrupt left: a write transaction open on the kept connection
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT INTO charges (dataset, scope, epsilon, delta, label, created) "
            "VALUES ('ds', 'central', '0.5', '0', 'x', 0)"
        )
    ledger.charge(loss("0.1"), label="after")
    assert [c.label for c in ledger.history()] == ["ok", "after"]
    other = sqlite3.connect(path, timeout=2, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the write lock is free
    other.execute("ROLLBACK")


def test_a_fork_while_another_thread_is_in_the_ledger_leaves_it_unusable_in_the_child(tmp_path, monkeypatch):
    """review-ledgerfast F3: the child inherited the ledger's lock held, and hung on its first call. The fork now
    waits for the ledger (up to the busy timeout); a ledger still busy then refuses clearly in the child, and the
    parent goes on."""
    monkeypatch.setattr(ledger_module, "_TIMEOUT_S", 0.3)
    ledger = PrivacyLedger(tmp_path / "l.db", "ds", 1.0)
    inside, go = threading.Event(), threading.Event()

    def busy() -> None:
        with ledger._transaction():
            inside.set()
            go.wait(10)

    thread = threading.Thread(target=busy)
    thread.start()
    inside.wait(10)
    refused = tmp_path / "refused"

    def child() -> None:
        try:
            ledger.charge(loss("0.1"), label="child")
        except RuntimeError as error:
            refused.write_text(str(error))

    try:
        assert _fork(child) == 0
    finally:
        go.set()
        thread.join()
    assert "forked" in refused.read_text()
    assert ledger.charge(loss("0.1"), label="parent").label == "parent"
    assert _fork(lambda: ledger.charge(loss("0.1"), label="child")) == 0  # a fork with the ledger idle: usable
    assert [c.label for c in ledger.history()] == ["parent", "child"]
