"""Privacy ledger: composition, fail-closed charges, scopes, persistence, concurrent processes."""

import multiprocessing as mp

import pytest

from mpcdp.dp.guarantee import Guarantee
from mpcdp.dp.ledger import BudgetExceeded, PrivacyLedger


def test_sequential_composition_and_refusal_message(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.db", "salaries", 1.0, 1e-6)
    ledger.charge(0.25, scope="local", label="rr")
    ledger.charge(0.5, 5e-7, label="sum")
    assert ledger.spent().epsilon == 0.75 and ledger.spent("local").epsilon == 0.25
    assert ledger.spent("central").delta == 5e-7
    with pytest.raises(BudgetExceeded) as err:
        ledger.charge(0.5)
    message = str(err.value)
    assert "spent epsilon=0.75" in message and "requested epsilon=0.5" in message
    assert "remaining epsilon=0.25" in message
    assert ledger.spent().epsilon == 0.75  # nothing charged
    with pytest.raises(BudgetExceeded):
        ledger.charge(0.1, 6e-7)


def test_check_refuses_without_charging(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.db", "d", 1.0)
    ledger.check(1.0)
    with pytest.raises(BudgetExceeded):
        ledger.check(1.5)
    assert ledger.spent().epsilon == 0.0 and ledger.history() == []


def test_persistence_and_fixed_budget(tmp_path):
    path = tmp_path / "l.db"
    PrivacyLedger(path, "a", 2.0).charge(1.5, label="first")
    again = PrivacyLedger(path, "a", 2.0)
    assert again.remaining().epsilon == 0.5
    assert [c.label for c in again.history()] == ["first"]
    assert PrivacyLedger(path, "b", 2.0).spent().epsilon == 0.0  # datasets are separate
    with pytest.raises(ValueError):
        PrivacyLedger(path, "a", 3.0)


def test_amounts_are_exact_and_rounded_up(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.db", "d", 1.0)
    for _ in range(10):  # 0.1 is read as 1/10, not as the binary float just above it
        ledger.charge(0.1)
    assert ledger.spent().epsilon == 1.0 and ledger.remaining().epsilon == 0.0
    with pytest.raises(BudgetExceeded):
        ledger.charge(1e-12)
    ledger2 = PrivacyLedger(tmp_path / "l.db", "z", 1.0)
    ledger2.charge(1 / 3)
    assert ledger2.spent().epsilon == 0.333334 and ledger2.remaining().epsilon == 0.666666


@pytest.mark.parametrize("budget", [0.3, "0.3"])
def test_decimal_epsilon_is_charged_exactly(tmp_path, budget):
    ledger = PrivacyLedger(tmp_path / "l.db", "d", budget)
    ledger.charge(0.1)
    ledger.charge("0.2")  # decimal text, as from a command line
    assert ledger.spent().epsilon == 0.3
    with pytest.raises(BudgetExceeded):
        ledger.charge(1e-15)


def test_a_budget_stored_as_a_binary_float_is_read_as_its_decimal(tmp_path):
    import sqlite3
    from fractions import Fraction

    PrivacyLedger(tmp_path / "l.db", "d", 1.0)
    with sqlite3.connect(tmp_path / "l.db") as db:  # what an earlier version wrote for 0.3
        db.execute("UPDATE budgets SET epsilon_budget = ?", (str(Fraction(0.3)),))
    ledger = PrivacyLedger(tmp_path / "l.db", "d", 0.3)
    ledger.charge(0.1)
    ledger.charge(0.2)
    with pytest.raises(ValueError, match="refusing to change"):
        PrivacyLedger(tmp_path / "l.db", "d", 0.4)


def test_zcdp_charge_is_converted(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.db", "d", 5.0, 1e-5)
    entry = ledger.charge_guarantee(Guarantee.zcdp(0.1), 1e-6)
    assert entry.epsilon >= 0.1 + 2 * (0.1 * 13.815510557964274) ** 0.5 and entry.delta == 1e-6
    with pytest.raises(ValueError):
        ledger.charge_guarantee(Guarantee.none())


def test_huge_amounts_are_reported_without_decimal_overflow(tmp_path):
    """Rounding to 6 decimals must not run out of decimal precision (28 digits by default)."""
    ledger = PrivacyLedger(tmp_path / "l.db", "d", 1e30)
    ledger.charge(1e25)
    assert ledger.spent().epsilon == 1e25 and ledger.remaining().epsilon <= 1e30 - 1e25
    with pytest.raises(BudgetExceeded):
        ledger.charge(1e30)
    assert Guarantee.zcdp(1e25).epsilon_delta(1e-6)[0] >= 1e25


@pytest.mark.parametrize(
    "call",
    [
        lambda p: PrivacyLedger(p, "", 1.0),
        lambda p: PrivacyLedger(p, "d", 0.0),
        lambda p: PrivacyLedger(p, "d", 1.0, 1.0),
        lambda p: PrivacyLedger(p, "d", 1.0).charge(0.0),
        lambda p: PrivacyLedger(p, "d", 1.0).charge(float("nan")),
        lambda p: PrivacyLedger(p, "d", 1.0).charge(0.1, scope="global"),
        lambda p: PrivacyLedger(p, "d", 1.0).charge(0.1, -1e-9),
    ],
)
def test_bad_input_raises_value_error(tmp_path, call):
    with pytest.raises(ValueError):
        call(tmp_path / "l.db")


def _charge_repeatedly(path, results):
    ledger = PrivacyLedger(path, "shared", 1.0)
    accepted = 0
    for _ in range(12):
        try:
            ledger.charge(0.125)
            accepted += 1
        except BudgetExceeded:
            pass
    results.put(accepted)


def test_concurrent_processes_never_overspend(tmp_path):
    path = tmp_path / "l.db"
    PrivacyLedger(path, "shared", 1.0)
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_charge_repeatedly, args=(path, results)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sum(results.get(timeout=5) for _ in procs) == 8
    assert PrivacyLedger(path, "shared", 1.0).spent().epsilon == 1.0


def test_a_new_ledger_file_is_owner_only(tmp_path):
    """The ledger holds every charge of a dataset: other local users must not read it."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        PrivacyLedger(tmp_path / "ledger.db", "raises", 1.0).charge(0.5, label="s1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "ledger.db").stat().st_mode) == 0o600
