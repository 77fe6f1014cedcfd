"""The ledger sums its charges incrementally (PrivacyLedger._charged): the same totals as summing every charge,
seen across ledger objects and processes sharing the file, at a cost that does not grow with the history; and the
reservations held per distinct amount (PrivacyLedger._held), at a cost that does not grow with the sessions held."""

from __future__ import annotations

import os
import sqlite3
import time
from fractions import Fraction

import pytest

from mpcdp.dp import ledger as ledger_module
from mpcdp.dp.ledger import BudgetExceeded, PrivacyLedger
from mpcdp.dp.loss import PrivacyLoss, Relation


def loss(eps: str, delta: str = "0") -> PrivacyLoss:
    return PrivacyLoss.of(Fraction(eps), Fraction(delta), Relation.RECORD)


def fractions_made(monkeypatch) -> list:
    """Every Fraction the ledger module makes from now on (their arguments)."""
    made = []

    class Counted(Fraction):
        def __new__(cls, *args):
            made.append(args)
            return Fraction(*args)

    monkeypatch.setattr(ledger_module, "Fraction", Counted)
    return made


def test_a_sum_reads_only_the_charges_added_since_the_last(tmp_path, monkeypatch):
    ledger = PrivacyLedger(tmp_path / "l.db", "ds", 1000.0, 0.5)
    for _ in range(500):
        ledger.charge(loss("0.001", "0.0001"), label="x")
    assert ledger.spent().epsilon == pytest.approx(0.5)
    made = fractions_made(monkeypatch)
    sid = os.urandom(16)
    ledger.reserve(sid, loss("0.001"), until=time.time() + 60)
    ledger.charge_reserved(sid)
    ledger.spent()
    assert len(made) < 20  # summing every charge read 1,000 amounts here


def test_a_reservation_sums_what_is_held_per_distinct_amount(tmp_path, monkeypatch):
    ledger = PrivacyLedger(tmp_path / "l.db", "ds", "1", "0.001")
    until = time.time() + 60
    for i in range(300):  # 300 sessions in flight, of three amounts
        ledger.reserve(f"s{i}", loss(["1/1000", "1/2000", "1/3000"][i % 3], "1/1000000"), until)
    held = Fraction(100, 1000) + Fraction(100, 2000) + Fraction(100, 3000)
    assert ledger.remaining() == ledger_module._spend(1 - held, Fraction(1, 1000) - Fraction(300, 10**6), up=False)
    made = fractions_made(monkeypatch)
    with pytest.raises(BudgetExceeded) as refused:  # counts all 300 others, exactly (s0 itself is replaced)
        ledger.reserve("s0", loss(str(1 - held + Fraction(1, 1000) + Fraction(1, 10**9))), until)
    assert refused.value.holders == 299
    ledger.reserve("s0", loss(str(1 - held + Fraction(1, 1000))), until)  # fits exactly
    assert len(made) < 40  # one per session held: over 600


def test_two_ledgers_on_one_file_see_each_others_charges_and_refuse_alike(tmp_path):
    one = PrivacyLedger(tmp_path / "l.db", "ds", "1")
    other = PrivacyLedger(tmp_path / "l.db", "ds", "1")
    one.charge(loss("0.3"), label="a")
    assert other.spent().epsilon == pytest.approx(0.3)
    other.charge(loss("0.3"), label="b")
    one.charge(loss("0.3"), label="c")  # one's sum is read on from where it was: b counts
    assert one.spent().epsilon == other.spent().epsilon == pytest.approx(0.9)
    with pytest.raises(BudgetExceeded):
        one.charge(loss("0.2"), label="d")
    with pytest.raises(BudgetExceeded):
        other.reserve(b"s" * 16, loss("0.2"), until=time.time() + 60)
    assert PrivacyLedger(tmp_path / "l.db", "ds", "1").spent().epsilon == pytest.approx(0.9)


def test_a_refused_charge_adds_nothing_to_the_sum(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.db", "ds", "1")
    ledger.charge(loss("0.6"), label="a")
    with pytest.raises(BudgetExceeded):
        ledger.charge(loss("0.5"), label="b")  # rolled back
    ledger.charge(loss("0.4"), label="c")
    assert [c.label for c in ledger.history()] == ["a", "c"]
    assert ledger.remaining().epsilon == 0 and ledger.spent().epsilon == pytest.approx(1.0)


def test_a_lookup_by_label_costs_the_same_at_100_and_5000_charges(tmp_path, monkeypatch):
    """Review-3 finding 2: a Fetch's check that its release was charged read the whole history. has_charge is one
    lookup in an index on (dataset, label), created when a ledger file made before it is opened."""
    path = tmp_path / "l.db"
    old = sqlite3.connect(path)  # a ledger file of the version before the index
    old.executescript(ledger_module._SCHEMA.replace("CREATE INDEX IF NOT EXISTS charges_by_label", "-- "))
    old.close()
    steps: list[int] = []
    connect = sqlite3.connect

    def counted(*args, **kwargs):  # counts the SQLite VM steps of every statement the ledger runs
        db = connect(*args, **kwargs)
        db.set_progress_handler(lambda: steps.append(1), 1)
        return db

    with monkeypatch.context() as m:
        m.setattr(ledger_module.sqlite3, "connect", counted)
        ledger = PrivacyLedger(path, "ds", 100000.0)  # its connection, kept for every later call, is counted

    def cost(label: str) -> tuple[bool, int]:
        steps.clear()
        found = ledger.has_charge(label)
        assert steps, "the ledger's statements were not counted"
        return found, len(steps)

    def charges_up_to(n: int) -> None:
        db = connect(path)
        have = db.execute("SELECT count(*) FROM charges").fetchone()[0]
        db.executemany(
            "INSERT INTO charges (dataset, scope, epsilon, delta, label, created) "
            "VALUES ('ds', 'central', '1/10', '0', ?, 0)",
            ((f"{i:032x}",) for i in range(have, n)),
        )
        db.commit()
        db.close()

    charges_up_to(100)
    small = cost(f"{50:032x}"), cost("f" * 32)
    charges_up_to(5000)
    large = cost(f"{4000:032x}"), cost("f" * 32)
    assert [found for found, _ in small + large] == [True, False, True, False]
    assert all(steps_large <= steps_small + 5 for (_, steps_small), (_, steps_large) in zip(small, large)), (
        small,
        large,
    )
    ledger.charge(loss("1/10"), label="e" * 32)  # a charge of another dataset with the label does not count
    other = PrivacyLedger(path, "other", 1.0)
    assert ledger.has_charge("e" * 32) and not other.has_charge("e" * 32)
