"""Group commit in the ledger (:meth:`PrivacyLedger.apply`): many operations in one transaction, each with its own
outcome, in order, exactly as one transaction each would give; a failed commit keeps none of them; a process killed
mid-group and two processes grouping on one file never overspend and never lose an acknowledged charge."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from fractions import Fraction

import pytest

from mpcdp.dp.ledger import BudgetExceeded, Charge, ChargeReserved, Free, Operation, PrivacyLedger, Reserve
from mpcdp.dp.loss import PrivacyLoss, Relation
from tests.support.ledgers import run_forked


def loss(eps: str) -> PrivacyLoss:
    return PrivacyLoss.of(Fraction(eps), Fraction(0), Relation.RECORD)


def sql_total(path) -> Fraction:
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT epsilon FROM charges WHERE dataset = 'ds'").fetchall()
    finally:
        db.close()
    return sum((Fraction(e) for (e,) in rows), Fraction(0))


def labels(ledger: PrivacyLedger) -> list[str]:
    return [c.label for c in ledger.history()]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_refused_reservation_in_a_group_leaves_the_others_as_the_budget_implies(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.db", "ds", "1")
    until = time.time() + 60
    amounts = ["0.5", "0.7", "0.3", "0.3", "0.1", "0.1"]  # 0.7 and the second 0.3 do not fit after those before
    outcomes = ledger.apply([Reserve(f"s{i}", loss(a), until) for i, a in enumerate(amounts)])
    refused = [i for i, o in enumerate(outcomes) if isinstance(o, BudgetExceeded)]
    assert refused == [1, 3] and [o for i, o in enumerate(outcomes) if i not in refused] == [None] * 4
    assert outcomes[1].remaining.epsilon == pytest.approx(0.5)  # its words: what was left at its turn
    assert set(ledger.reserved()) == {"s0", "s2", "s4", "s5"}
    assert ledger.remaining().epsilon == 0


def test_each_operation_has_its_own_outcome_and_a_failed_one_keeps_nothing(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.db", "ds", "1")
    until = time.time() + 60
    ledger.reserve("a", loss("0.25"), until)
    outcomes = ledger.apply(
        [
            ChargeReserved("a"),
            ChargeReserved("a"),  # its reservation was just charged: KeyError, nothing kept
            Reserve("b", loss("0.5"), float("nan")),  # ValueError
            Reserve("c", loss("0.5"), until),
            Free("c"),
            Reserve("d", PrivacyLoss.of(Fraction(1, 10), Fraction(0), Relation.LOCAL), until),  # another relation
            Reserve("e", loss("0.75"), until),  # fits: c was freed
        ]
    )
    assert isinstance(outcomes[0], Charge) and outcomes[0].label == "a" and outcomes[0].loss == loss("0.25")
    assert isinstance(outcomes[1], KeyError) and isinstance(outcomes[2], ValueError)
    assert outcomes[3] is None and outcomes[4] is None and isinstance(outcomes[5], ValueError)
    assert outcomes[6] is None
    assert labels(ledger) == ["a"] and set(ledger.reserved()) == {"e"}


def _random_operations(rnd: random.Random, n: int) -> list[Operation]:
    sessions = [f"s{i}" for i in range(12)]
    ops: list[Operation] = []
    for _ in range(n):
        sid, r = rnd.choice(sessions), rnd.random()
        if r < 0.5:
            ops.append(Reserve(sid, loss(f"{rnd.choice([1, 2, 5, 9])}/20"), 1_000_000.0 + rnd.choice([-5, 30])))
        elif r < 0.85:
            ops.append(ChargeReserved(sid))
        else:
            ops.append(Free(sid))
    return ops


def rows(ledger: PrivacyLedger) -> tuple[list, list]:
    """Every reservation (lapsed ones too) and every charge, as stored."""
    db = ledger._db
    assert db is not None
    return (
        db.execute("SELECT * FROM reservations ORDER BY session").fetchall(),
        db.execute("SELECT * FROM charges ORDER BY id").fetchall(),
    )


def _kind(outcome) -> object:
    return (outcome.label, outcome.loss) if isinstance(outcome, Charge) else type(outcome)


@pytest.mark.parametrize("seed", range(6))
def test_a_group_gives_what_one_transaction_each_gives(tmp_path, seed):
    """Random reserve/charge/free sequences (reservations that lapse, charges of none, refusals): applied in groups
    of random sizes and one at a time on two ledgers, the same outcome for each and the same ledger after."""
    rnd = random.Random(seed)
    ops = _random_operations(rnd, 120)
    grouped = PrivacyLedger(tmp_path / "g.db", "ds", "2", clock=Clock())
    single = PrivacyLedger(tmp_path / "s.db", "ds", "2", clock=Clock())
    together, i = [], 0
    while i < len(ops):
        size = rnd.choice([1, 3, 8, 40])
        together += grouped.apply(ops[i : i + size])
        i += size
    one_by_one = []
    for op in ops:
        before = rows(single)
        [outcome] = single.apply([op])
        if isinstance(outcome, Exception):  # a refused operation changes nothing
            assert rows(single) == before, (op, outcome)
        one_by_one.append(outcome)
    assert [_kind(o) for o in together] == [_kind(o) for o in one_by_one]
    assert any(isinstance(o, BudgetExceeded) for o in together), "the budget was never reached"
    assert [(c.label, c.loss) for c in grouped.history()] == [(c.label, c.loss) for c in single.history()]
    assert grouped.reserved() == single.reserved() and grouped.spent() == single.spent()


class _FailingCommit:
    """A ledger's connection whose COMMIT fails (as a full disk or an I/O error makes it fail)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def execute(self, sql: str, *args):
        if sql == "COMMIT":
            raise sqlite3.OperationalError("disk I/O error")
        return self.db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.db, name)


def test_a_group_whose_commit_fails_keeps_nothing_and_forgets_what_it_summed(tmp_path):
    """Every request of a group whose commit fails fails, nothing of it is kept; the charges the group summed while
    it ran (its own, never committed) are forgotten: another process then commits other charges under the same ids,
    and this ledger's sum must be theirs (a kept sum would count the group's charges instead)."""
    path = tmp_path / "l.db"
    ledger = PrivacyLedger(path, "ds", "1")
    until = time.time() + 60
    ledger.apply([Reserve("a", loss("0.1"), until), Reserve("b", loss("0.1"), until)])
    ledger.spent()
    kept = ledger._db
    ledger._db = _FailingCommit(kept)  # type: ignore[assignment]
    with pytest.raises(sqlite3.OperationalError):
        ledger.apply([ChargeReserved("a"), ChargeReserved("b"), Reserve("c", loss("0.1"), until)])
    ledger._db = kept
    assert labels(ledger) == [] and set(ledger.reserved()) == {"a", "b"}
    other = PrivacyLedger(path, "ds", "1")  # another process: its charges take the ids the failed group had
    other.charge(loss("0.5"), label="x")
    other.charge(loss("0.25"), label="y")
    assert ledger.spent().epsilon == pytest.approx(0.75) == float(sql_total(path))
    with pytest.raises(BudgetExceeded):  # a and b still hold 0.2: 0.75 + 0.2 + 0.1 > 1
        ledger.reserve("d", loss("0.1"), until)
    assert [type(o) for o in ledger.apply([ChargeReserved("a"), ChargeReserved("b")])] == [Charge, Charge]


def _grouping_child(path: str, write_fd: int) -> None:  # pragma: no cover - runs in a forked child
    """Groups of reservations and charges, slowly (its clock sleeps, so most of its time is inside a transaction);
    says "begin k" before group k and "ack k labels" once it is committed."""

    def slow_clock() -> float:
        time.sleep(0.002)
        return time.time()

    ledger = PrivacyLedger(path, "ds", "3", clock=slow_clock)
    out = os.fdopen(write_fd, "w", buffering=1)
    rnd = random.Random(os.getpid())
    for k in range(1000):
        ops: list[Operation] = []
        for j in range(8):
            sid = f"g{k}-{j}"
            ops += [Reserve(sid, loss(f"{rnd.choice([1, 2, 3])}/100"), time.time() + 60), ChargeReserved(sid)]
        out.write(f"begin {k}\n")
        outcomes = ledger.apply(ops)
        charged = [o.label for o in outcomes if isinstance(o, Charge)]
        out.write(f"ack {k} {' '.join(charged)}\n")


@pytest.mark.parametrize("kill_after", [1, 3, 6])
def test_a_process_killed_mid_group_loses_no_acknowledged_charge_and_keeps_no_half_group(tmp_path, kill_after):
    """kill -9 while a group is inside its transaction; the ledger reopened has every acknowledged charge, each group
    wholly or not at all, and its sums read back as SQL sums them (the budget is never reached here: that concurrent
    groups never overspend is test_two_processes_grouping_on_one_file_never_overspend's)."""
    path = str(tmp_path / "l.db")
    PrivacyLedger(path, "ds", "3")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_fd)
        try:
            _grouping_child(path, write_fd)
        finally:
            os._exit(0)
    os.close(write_fd)
    acknowledged: set[str] = set()
    begun = 0
    with os.fdopen(read_fd) as lines:
        for line in lines:
            word, k, *charged = line.split()
            if word == "ack":
                acknowledged.update(charged)
            elif int(k) >= kill_after:
                begun = int(k)
                time.sleep(random.uniform(0.005, 0.03))  # a group of 8 takes ~70 ms: inside its transaction
                os.kill(pid, signal.SIGKILL)
                break
    os.waitpid(pid, 0)
    reopened = PrivacyLedger(path, "ds", "3")
    present = labels(reopened)
    assert acknowledged <= set(present)
    by_group: dict[str, int] = {}
    for label in present:
        group = label.split("-")[0]
        by_group[group] = by_group.get(group, 0) + 1
    assert set(by_group) <= {f"g{k}" for k in range(begun + 1)}
    assert all(n == 8 for n in by_group.values()), by_group  # 8 charges per group (the budget is never reached)
    assert reopened.spent().epsilon == pytest.approx(float(sql_total(path)))


def _grouping_hammer(path: str, seed: int, done, results) -> None:  # pragma: no cover - a forked child
    """Groups of reservations over a small budget, then charges or frees of those granted, in later groups."""
    ledger = PrivacyLedger(path, "ds", "1")
    rnd = random.Random(seed)
    granted = refused = 0
    for k in range(30):
        sids = [f"p{seed}-{k}-{j}" for j in range(rnd.randint(1, 10))]
        outcomes = ledger.apply([Reserve(s, loss(f"{rnd.choice([1, 3, 7])}/100"), time.time() + 60) for s in sids])
        ok = [s for s, o in zip(sids, outcomes, strict=True) if o is None]
        refused += sum(isinstance(o, BudgetExceeded) for o in outcomes)
        settled = ledger.apply([ChargeReserved(s) if rnd.random() < 0.7 else Free(s) for s in ok])
        assert all(not isinstance(o, Exception) for o in settled), settled
        granted += len(ok)
    done.wait(60)
    results.put((granted, refused, ledger.spent()))


def test_two_processes_grouping_on_one_file_never_overspend(tmp_path):
    path = str(tmp_path / "l.db")
    PrivacyLedger(path, "ds", "1")
    outcomes = run_forked(_grouping_hammer, [(path, s) for s in range(2)])
    total = sql_total(path)
    assert total <= 1
    assert sum(refused for _, refused, _ in outcomes) > 0, "the budget was never reached: the test tests nothing"
    fresh = PrivacyLedger(path, "ds", "1")
    assert fresh.spent().epsilon == pytest.approx(float(total))
    assert all(spent == fresh.spent() for _, _, spent in outcomes)
    assert fresh.reserved() == {}
