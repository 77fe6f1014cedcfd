"""Privacy ledger: composition, relations, fail-closed charges, reservations, persistence, concurrent processes."""

import multiprocessing as mp

import pytest

from mpcdp.dp.ledger import BudgetExceeded, PrivacyLedger
from mpcdp.dp.loss import PrivacyLoss, Relation, RelationMismatch


def test_sequential_composition_and_refusal_message(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.db", "salaries", 1.0, 1e-6)
    ledger.charge(PrivacyLoss.pure(0.25), label="rr")
    ledger.charge(PrivacyLoss.approx(0.5, 5e-7), label="sum")
    assert ledger.spent().epsilon == 0.75 and ledger.spent().delta == 5e-7
    assert [str(c.loss) for c in ledger.history()] == [
        "epsilon=0.25 (pure DP, per added or removed record)",
        "epsilon=0.5 delta=5e-07 (approximate DP, per added or removed record)",
    ]
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


def test_zcdp_is_charged_once_converted(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.db", "d", 5.0, 1e-5)
    with pytest.raises(ValueError, match="to_approx"):
        ledger.charge(PrivacyLoss.zcdp(0.1))
    entry = ledger.charge(PrivacyLoss.zcdp(0.1).to_approx(1e-6))
    assert entry.epsilon >= 0.1 + 2 * (0.1 * 13.815510557964274) ** 0.5 and entry.delta == 1e-6


def test_a_loss_of_another_relation_is_refused_not_added(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.db", "d", 5.0)
    with pytest.raises(RelationMismatch, match="per replaced respondent"):
        ledger.charge(PrivacyLoss.pure(0.1, Relation.RESPONDENT))
    with pytest.raises(RelationMismatch):
        ledger.reserve(b"s" * 16, PrivacyLoss.pure(0.1, Relation.METRIC), until=1e12)
    assert ledger.history() == [] and ledger.reserved() == {}
    survey = PrivacyLedger(tmp_path / "l.db", "survey-1", 2.0, relation=Relation.RESPONDENT)
    survey.charge(PrivacyLoss.pure(0.5, Relation.RESPONDENT))
    survey.charge(0.5)  # a number is a loss of the ledger's own relation
    assert survey.spent().epsilon == 1.0
    with pytest.raises(RelationMismatch):  # a dataset keeps the relation it was created with
        PrivacyLedger(tmp_path / "l.db", "survey-1", 2.0)


def test_huge_amounts_are_reported_without_decimal_overflow(tmp_path):
    """Rounding to 6 decimals must not run out of decimal precision (28 digits by default)."""
    ledger = PrivacyLedger(tmp_path / "l.db", "d", 1e30)
    ledger.charge(1e25)
    assert ledger.spent().epsilon == 1e25 and ledger.remaining().epsilon <= 1e30 - 1e25
    with pytest.raises(BudgetExceeded):
        ledger.charge(1e30)
    assert PrivacyLoss.zcdp(1e25).epsilon_delta(1e-6)[0] >= 1e25


@pytest.mark.parametrize(
    "call",
    [
        lambda p: PrivacyLedger(p, "", 1.0),
        lambda p: PrivacyLedger(p, "d", 0.0),
        lambda p: PrivacyLedger(p, "d", 1.0, 1.0),
        lambda p: PrivacyLedger(p, "d", 1.0).charge(0.0),
        lambda p: PrivacyLedger(p, "d", 1.0).charge(float("nan")),
        lambda p: PrivacyLedger(p, "d", 1.0).charge(0.1, 1.0),
        lambda p: PrivacyLedger(p, "d", 1.0).reserve("", PrivacyLoss.pure(0.1), until=1.0),
        lambda p: PrivacyLedger(p, "d", 1.0).reserve("s", PrivacyLoss.pure(0.1), until=float("nan")),
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


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_reservations_hold_budget_until_charged_freed_or_lapsed(tmp_path):
    clock = Clock()
    ledger = PrivacyLedger(tmp_path / "l.db", "d", 1.0, clock=clock)
    loss = PrivacyLoss.pure(0.4)
    ledger.reserve(b"a" * 16, loss, until=1010.0)
    ledger.reserve(b"b" * 16, loss, until=1010.0)
    with pytest.raises(BudgetExceeded, match="held for 2 session"):  # 0.8 held: 0.4 more would overspend
        ledger.reserve(b"c" * 16, loss, until=1010.0)
    assert ledger.remaining().epsilon == pytest.approx(0.2) and ledger.spent().epsilon == 0.0
    ledger.reserve(b"a" * 16, loss, until=1010.0)  # reserving the same session again replaces it
    charged = ledger.charge_reserved(b"a" * 16)
    assert charged.label == (b"a" * 16).hex() and ledger.spent().epsilon == 0.4
    ledger.free(b"b" * 16)  # an aborted session spends nothing
    ledger.reserve(b"c" * 16, loss, until=1010.0)
    with pytest.raises(KeyError):
        ledger.charge_reserved(b"b" * 16)
    # a crashed node never frees: its reservation lapses at the deadline
    ledger.reserve(b"d" * 16, PrivacyLoss.pure(0.2), until=1010.0)
    with pytest.raises(BudgetExceeded):
        ledger.check(0.1)
    clock.now = 1011.0
    ledger.check(0.6)
    assert set(ledger.reserved()) == set()


def test_a_lapsed_reservation_is_charged_only_if_the_budget_still_allows(tmp_path):
    clock = Clock()
    ledger = PrivacyLedger(tmp_path / "l.db", "d", 1.0, clock=clock)
    ledger.reserve("late", PrivacyLoss.pure(0.6), until=1010.0)
    clock.now = 1020.0
    ledger.reserve("other", PrivacyLoss.pure(0.6), until=1030.0)  # the lapsed hold no longer counts
    with pytest.raises(BudgetExceeded):
        ledger.charge_reserved("late")
    assert ledger.spent().epsilon == 0.0
    ledger.charge_reserved("other")
    assert ledger.spent().epsilon == 0.6


def test_reservations_are_seen_by_another_process_and_survive_a_restart(tmp_path):
    path = tmp_path / "l.db"
    PrivacyLedger(path, "d", 1.0).reserve(b"s" * 16, PrivacyLoss.pure(0.7), until=2e9)
    again = PrivacyLedger(path, "d", 1.0)  # a new process, or the node restarted
    assert again.reserved() == {(b"s" * 16).hex(): PrivacyLoss.pure(0.7)}
    with pytest.raises(BudgetExceeded):
        again.charge(0.5)
    again.charge_reserved(b"s" * 16)
    assert again.spent().epsilon == 0.7 and again.reserved() == {}


def test_a_ledger_file_of_the_first_version_gains_relations(tmp_path):
    import sqlite3

    path = tmp_path / "l.db"
    with sqlite3.connect(path) as db:  # the first version's schema, with one charge
        db.executescript(
            "CREATE TABLE budgets (dataset TEXT PRIMARY KEY, epsilon_budget TEXT NOT NULL, delta_budget TEXT NOT NULL);"
            "CREATE TABLE charges (id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL, scope TEXT NOT NULL"
            " CHECK (scope IN ('central', 'local')), epsilon TEXT NOT NULL, delta TEXT NOT NULL, label TEXT NOT NULL,"
            " created REAL NOT NULL);"
            "INSERT INTO budgets VALUES ('d', '1', '0');"
            "INSERT INTO charges (dataset, scope, epsilon, delta, label, created)"
            " VALUES ('d', 'central', '1/4', '0', 'x', 0);"
        )
    ledger = PrivacyLedger(path, "d", 1.0)
    assert ledger.spent().epsilon == 0.25 and ledger.history()[0].loss == PrivacyLoss.pure("0.25")
    ledger.charge(0.5)
    assert ledger.remaining().epsilon == 0.25
