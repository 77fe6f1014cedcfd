"""The ledger sums its charges incrementally (PrivacyLedger._charged): the same totals as summing every charge,
seen across ledger objects and processes sharing the file, at a cost that does not grow with the history."""

from __future__ import annotations

import os
import time
from fractions import Fraction

import pytest

from mpcdp.dp import ledger as ledger_module
from mpcdp.dp.ledger import BudgetExceeded, PrivacyLedger
from mpcdp.dp.loss import PrivacyLoss, Relation


def loss(eps: str, delta: str = "0") -> PrivacyLoss:
    return PrivacyLoss.of(Fraction(eps), Fraction(delta), Relation.RECORD)


def test_a_sum_reads_only_the_charges_added_since_the_last(tmp_path, monkeypatch):
    ledger = PrivacyLedger(tmp_path / "l.db", "ds", 1000.0, 0.5)
    for _ in range(500):
        ledger.charge(loss("0.001", "0.0001"), label="x")
    assert ledger.spent().epsilon == pytest.approx(0.5)
    made = []

    class Counted(Fraction):
        def __new__(cls, *args):
            made.append(args)
            return Fraction(*args)

    monkeypatch.setattr(ledger_module, "Fraction", Counted)
    sid = os.urandom(16)
    ledger.reserve(sid, loss("0.001"), until=time.time() + 60)
    ledger.charge_reserved(sid)
    ledger.spent()
    assert len(made) < 20  # summing every charge read 1,000 amounts here


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
