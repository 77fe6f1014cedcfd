"""Epsilon written as a decimal is charged, and calibrated, as exactly that decimal.

Before, 0.1 was charged as the binary float 0.1000000000000000055..., so a budget
of 1.0 took only nine charges of 0.1 and a budget of 0.3 refused 0.1 then 0.2.
"""

from __future__ import annotations

import time
from fractions import Fraction

import pytest

from mpcdp.dp.distributed import DistributedDiscreteLaplace
from mpcdp.dp.ledger import BudgetExceeded, PrivacyLedger
from mpcdp.dp.rational import exact
from mpcdp.prg import Prg
from mpcdp.protocol import PartyPolicy, PartySession, QuerySpec
from mpcdp.protocol.noise import mechanisms
from services.commands import epsilon as cli_epsilon
from services.federation import load
from services.ledgers import ledger_for


def spec(epsilon) -> QuerySpec:
    return QuerySpec("count", parties=("alice", "bob"), epsilon=epsilon, max_records=5)


def accept_and_charge(s: QuerySpec, ledger) -> None:
    """A party's ledger over one session, as its node does it: reserve the session's loss (what its accepted
    session says it costs) at accept, charge the reservation as its partial sum leaves."""
    party = PartySession("alice", s, [1, 2], PartyPolicy(), rng=Prg.from_int(1))
    party.accept()
    assert party.batch.loss is not None
    ledger.reserve(s.session_id, party.batch.loss, until=time.time() + 60)
    ledger.charge_reserved(s.session_id)


@pytest.mark.parametrize("epsilon", [0.1, "0.1", Fraction(1, 10)])
def test_a_budget_of_one_holds_ten_queries_of_a_tenth(tmp_path, epsilon):
    ledger = PrivacyLedger(tmp_path / "alice.db", "d", 1.0)
    for _ in range(10):
        accept_and_charge(spec(epsilon), ledger)
    assert ledger.spent().epsilon == 1.0
    with pytest.raises(BudgetExceeded):
        accept_and_charge(spec(epsilon), ledger)


def test_a_budget_of_three_tenths_holds_a_tenth_then_two_tenths(tmp_path):
    ledger = PrivacyLedger(tmp_path / "alice.db", "d", "0.3")
    accept_and_charge(spec("0.1"), ledger)
    accept_and_charge(spec(0.2), ledger)
    with pytest.raises(BudgetExceeded):
        ledger.charge(1e-9)


def test_noise_is_calibrated_on_the_value_charged():
    ((_, mech),) = mechanisms(spec("0.1"))
    assert mech.scale == 10  # sensitivity 1 / (1/10), exactly: not 1 / 0.1000000000000000055
    assert DistributedDiscreteLaplace(0.3, 3, 2, 1).scale == 10
    assert mech._b >= 10  # the float sampler's scale never below the exact one


def test_federation_file_budgets_are_decimal(tmp_path):
    (tmp_path / "fed.toml").write_text("""
[federation]
name = "f"
[policy]
epsilon_budget = 0.3
[[node]]
name = "alice"
address = "127.0.0.1:1"
roles = ["party"]
ledger = "alice.db"
[[node]]
name = "bob"
address = "127.0.0.1:2"
roles = ["party"]
""")
    ledger = ledger_for(load(tmp_path / "fed.toml"), "alice", "d")
    ledger.charge(0.1)
    ledger.charge(0.2)
    with pytest.raises(BudgetExceeded):
        ledger.charge(1e-9)


def test_cli_epsilon_is_read_as_decimal():
    # --epsilon 0.1 reaches the spec as the float 0.1, which ledger and calibration read as 1/10
    assert exact(cli_epsilon("0.1"), "epsilon") == Fraction(1, 10)
    assert exact(cli_epsilon("0.30000000000000004"), "epsilon") == Fraction("0.30000000000000004")


@pytest.mark.parametrize("epsilon", ["0.1", "0.7", "1.3"])
def test_the_blocks_of_a_query_never_spend_more_than_its_epsilon_exactly(epsilon):
    s = QuerySpec("variance", parties=("alice", "bob", "carol"), bounds=(0, 1), epsilon=epsilon)
    blocks = mechanisms(s)
    assert len(blocks) == 3  # epsilon / 3 does not round-trip through a float
    assert sum(Fraction(m.sensitivity) / m.scale for _, m in blocks) <= Fraction(epsilon)


def test_concurrent_reservations_add_up_exactly(tmp_path):
    # a node holding 0.1 for one session in progress must still accept 0.2 against a budget of 0.3
    ledger = PrivacyLedger(tmp_path / "alice.db", "d", 0.3)
    ledger.reserve(b"a" * 16, spec(0.1).loss, until=float("inf"))
    with pytest.raises(BudgetExceeded, match="held for 1 session"):
        ledger.reserve(b"b" * 16, spec(0.21).loss, until=float("inf"))
    ledger.reserve(b"b" * 16, spec(0.2).loss, until=float("inf"))
    assert ledger.remaining().epsilon == 0.0
