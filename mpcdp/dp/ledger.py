"""A persistent privacy-budget ledger per dataset, in an SQLite file, with durable reservations.

A ledger's budget is a :class:`~mpcdp.dp.loss.PrivacyLoss` of one neighboring relation (a party's dataset:
one added or removed record; a survey: one replaced respondent). Every charge must have that relation: a loss
of another relation is refused (:class:`~mpcdp.dp.loss.RelationMismatch`), never added. Charges compose by
basic sequential composition: (eps_i, delta_i) together satisfy (sum eps_i, sum delta_i)-DP (Dwork,
Kenthapadi, McSherry, Mironov and Naor, EUROCRYPT 2006); a zCDP loss must be converted to (epsilon, delta)
first (:meth:`~mpcdp.dp.loss.PrivacyLoss.to_approx`). Amounts are stored as exact rationals, read as the
decimal numbers they denote (:func:`mpcdp.dp.rational.exact`: "0.1" and the float 0.1 are 1/10, so a budget
of 1.0 holds exactly ten charges of 0.1), and sums never round.

Reservations: a node that accepts a session *reserves* its loss (:meth:`PrivacyLedger.reserve`), until the
session's deadline; the reservation counts against the budget for every other check, so concurrent sessions
can never together overspend. The node charges it when the release leaves (:meth:`~PrivacyLedger.
charge_reserved`) or frees it on abort (:meth:`~PrivacyLedger.free`). Reservations are rows of the same
SQLite file, so other processes see them, and they lapse at their deadline: a node that crashes holds no
budget for ever. Every change runs in one ``BEGIN IMMEDIATE`` transaction: two processes at once are
serialised by SQLite and can never overspend together. Any error refuses the charge (fail closed).

Groups: :meth:`PrivacyLedger.apply` runs a list of operations (:class:`Reserve`, :class:`ChargeReserved`,
:class:`Free`, :class:`ChargeNow`) in one transaction, so one commit (one sync) serves them all. Each runs in a
savepoint of its own and has its own outcome, in order: a refused one changes nothing and the others see the ledger
as the ones before them left it (exactly as if they ran one transaction each, in that order); a failure of the
transaction itself (its commit) fails all of them and keeps none.

Storage: one SQLite connection per ledger object (:func:`mpcdp.sqlite_files.open_private`: the file and its side
files owner-only), opened once (a connection per transaction cost ~0.3 ms) and shared by its threads under a lock,
in WAL mode with ``synchronous=FULL``: a commit appends to the -wal file and
syncs it (a committed charge survives a power loss) instead of creating, syncing and deleting a rollback journal.
WAL keeps several processes on one file working (``BEGIN IMMEDIATE`` still serialises writers) and lets readers
read while a writer writes. A copy of a live ledger is taken with ``sqlite3 ledger.db ".backup copy.db"``.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

from ..sqlite_files import open_private
from .loss import Measure, PrivacyLoss, Relation, RelationMismatch
from .rational import exact, round_down, round_up

T = TypeVar("T")
_TIMEOUT_S = 30.0
LAPSED_KEPT_SECONDS = 3600.0  # a lapsed reservation no longer holds budget, but can still be charged this long
_SCHEMA = """
CREATE TABLE IF NOT EXISTS budgets (
    dataset TEXT PRIMARY KEY,
    epsilon_budget TEXT NOT NULL,
    delta_budget TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS charges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL REFERENCES budgets(dataset),
    scope TEXT NOT NULL CHECK (scope IN ('central', 'local')),
    epsilon TEXT NOT NULL,
    delta TEXT NOT NULL,
    label TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS charges_by_dataset ON charges(dataset);
CREATE INDEX IF NOT EXISTS charges_by_label ON charges(dataset, label);
CREATE TABLE IF NOT EXISTS reservations (
    dataset TEXT NOT NULL REFERENCES budgets(dataset),
    session TEXT NOT NULL,
    epsilon TEXT NOT NULL,
    delta TEXT NOT NULL,
    until REAL NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (dataset, session)
);
"""
# columns added after the first version; files written by it get them (default: the only relation it had)
_ADDED_COLUMNS = (
    ("budgets", "relation", "TEXT NOT NULL DEFAULT 'record'"),
    ("charges", "relation", "TEXT NOT NULL DEFAULT 'record'"),
)

__all__ = [
    "BudgetExceeded",
    "Charge",
    "ChargeNow",
    "ChargeReserved",
    "Free",
    "Operation",
    "Outcome",
    "PrivacyLedger",
    "Reserve",
    "Spend",
]
_INHERITED: list[sqlite3.Connection] = []  # connections a forked child inherited: never used, never closed
_LEDGERS: weakref.WeakSet[PrivacyLedger] = weakref.WeakSet()  # every ledger of this process, closed at each fork
_HELD_AT_FORK: list[PrivacyLedger] = []  # the ledgers whose lock the forking thread holds until the fork is done


def _before_fork() -> None:
    """Close every ledger's connection before ``os.fork``: SQLite forbids carrying an open connection into a child,
    and a child that opened its own beside an inherited one lost its commits when the parent closed or exited
    (the parent, seeing itself as the file's last connection, checkpointed and deleted the ``-wal`` the child still
    wrote to). A ledger busy in another thread for longer than the busy timeout is left open, unusable in the child.
    """
    for ledger in list(_LEDGERS):
        if ledger._lock.acquire(timeout=_TIMEOUT_S):
            _HELD_AT_FORK.append(ledger)
            if ledger._db is not None and ledger._pid == os.getpid():
                ledger._db.close()
            ledger._db = None
        else:
            ledger._busy_at_fork = True


def _after_fork_in_parent() -> None:
    for ledger in _LEDGERS:
        ledger._busy_at_fork = False
    while _HELD_AT_FORK:
        _HELD_AT_FORK.pop()._lock.release()


def _after_fork_in_child() -> None:
    _HELD_AT_FORK.clear()
    for ledger in _LEDGERS:
        ledger._lock = threading.Lock()  # a lock another thread held at the fork is never released here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


@dataclass(frozen=True)
class Spend:
    """An (epsilon, delta) amount; epsilon and delta as reported (rounded in the safe direction)."""

    epsilon: float
    delta: float


@dataclass(frozen=True)
class Charge:
    """One recorded release."""

    id: int
    dataset: str
    loss: PrivacyLoss
    label: str
    created: float

    @property
    def epsilon(self) -> float:
        return float(self.loss.epsilon)

    @property
    def delta(self) -> float:
        return float(self.loss.delta)


class BudgetExceeded(Exception):
    """A charge or reservation that would overspend the dataset's budget; shows spent, requested, remaining
    and, when other sessions hold budget, how much (``held``, ``holders``)."""

    def __init__(
        self,
        dataset: str,
        spent: Spend,
        requested: Spend,
        remaining: Spend,
        held: Spend | None = None,
        holders: int = 0,
    ):
        self.dataset, self.spent, self.requested, self.remaining = dataset, spent, requested, remaining
        self.held, self.holders = held, holders
        super().__init__(f"privacy budget exceeded: {self.amounts()}")  # not the dataset: a local file path

    def amounts(self) -> str:
        """The amounts in words."""
        text = (
            f"spent epsilon={self.spent.epsilon:g} delta={self.spent.delta:g}; requested "
            f"epsilon={self.requested.epsilon:g} delta={self.requested.delta:g}; remaining "
            f"epsilon={self.remaining.epsilon:g} delta={self.remaining.delta:g}"
        )
        if self.holders and self.held is not None:
            text += (
                f" (epsilon={self.held.epsilon:g} delta={self.held.delta:g} held for {self.holders} "
                "session(s) still in progress)"
            )
        return text


LossLike = PrivacyLoss | float | int | str | Fraction


def _spend(eps: Fraction, delta: Fraction, up: bool) -> Spend:
    rnd = round_up if up else round_down
    return Spend(rnd(eps), rnd(delta, 20))  # the exact fractions, rounded once


def _as_written(stored: str) -> Fraction:
    """A stored amount read as the float it came from, through its decimal representation."""
    return exact(float(Fraction(stored)), "stored amount")


def _session_key(session: bytes | str) -> str:
    if isinstance(session, bytes):
        return session.hex()
    if not isinstance(session, str) or not session:
        raise ValueError("a reservation needs a session id (bytes or a non-empty string)")
    return session


@dataclass(frozen=True)
class ChargeNow:
    """:meth:`PrivacyLedger.charge` as an operation of a group (no reservation: refused if it would overspend,
    counting what sessions hold); outcome the :class:`Charge` made."""

    loss: PrivacyLoss
    label: str = ""

    def run(self, ledger: PrivacyLedger, db: sqlite3.Connection) -> Charge:
        return ledger._charge_now(db, self.loss, self.label)


@dataclass(frozen=True)
class Reserve:
    """:meth:`PrivacyLedger.reserve` as an operation of a group (:meth:`PrivacyLedger.apply`); outcome None."""

    session: bytes | str
    loss: PrivacyLoss
    until: float

    def run(self, ledger: PrivacyLedger, db: sqlite3.Connection) -> None:
        ledger._reserve(db, self.session, self.loss, self.until)


@dataclass(frozen=True)
class ChargeReserved:
    """:meth:`PrivacyLedger.charge_reserved` as an operation of a group; outcome the :class:`Charge` made."""

    session: bytes | str
    label: str | None = None

    def run(self, ledger: PrivacyLedger, db: sqlite3.Connection) -> Charge:
        return ledger._charge_reserved(db, self.session, self.label)


@dataclass(frozen=True)
class Free:
    """:meth:`PrivacyLedger.free` as an operation of a group; outcome None."""

    session: bytes | str

    def run(self, ledger: PrivacyLedger, db: sqlite3.Connection) -> None:
        ledger._free(db, self.session)


Operation = Reserve | ChargeReserved | Free | ChargeNow
Outcome = Charge | None | Exception  # an operation's result, or the exception that refused it


class PrivacyLedger:
    """The budget, charges and reservations of one dataset, stored in the SQLite file at ``path``.

    ``budget`` is a :class:`PrivacyLoss` (pure or (epsilon, delta)), or an epsilon (number or decimal text)
    with ``delta_budget`` and ``relation``. The first ledger opened for a dataset fixes its budget and
    relation; reopening with a different one is refused rather than silently changing it. Amounts given to
    :meth:`check`/:meth:`charge` as numbers are read as losses of the ledger's relation. ``clock`` (UNIX
    seconds) decides when reservations lapse.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        dataset: str,
        budget: LossLike,
        delta_budget: float | str | Fraction = 0.0,
        *,
        relation: Relation = Relation.RECORD,
        clock: Callable[[], float] = time.time,
    ):
        if not isinstance(dataset, str) or not dataset:
            raise ValueError("dataset must be a non-empty string")
        if isinstance(budget, PrivacyLoss):
            loss = budget
        else:
            loss = PrivacyLoss.of(_positive(budget, "epsilon_budget"), _amount(delta_budget, "delta_budget"), relation)
        if loss.measure is Measure.ZCDP or loss.epsilon <= 0:
            raise ValueError("a ledger's budget is a positive epsilon (pure) or (epsilon, delta)")
        self.path = Path(path)
        self.dataset = dataset
        self.budget = loss
        self._clock = clock
        self._lock = threading.Lock()  # one transaction or read at a time on the shared connection
        self._db: sqlite3.Connection | None = None
        self._pid = 0  # the process that opened _db
        self._summed: tuple[int, Fraction, Fraction] = (0, Fraction(0), Fraction(0))  # charges summed: last id, sums
        self._busy_at_fork = False  # in a forked child: the parent's connection was in use at the fork
        _LEDGERS.add(self)
        eps, delta = loss.epsilon, loss.delta
        with self._transaction() as db:
            row = db.execute(
                "SELECT epsilon_budget, delta_budget, relation FROM budgets WHERE dataset = ?", (dataset,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO budgets (dataset, epsilon_budget, delta_budget, relation) VALUES (?, ?, ?, ?)",
                    (dataset, str(eps), str(delta), loss.relation.value),
                )
            elif row[2] != loss.relation.value:
                raise RelationMismatch(
                    f"dataset {dataset!r} has a budget {Relation(row[2]).describe}, not {loss.relation.describe}"
                )
            elif (_as_written(row[0]), _as_written(row[1])) == (eps, delta) != (Fraction(row[0]), Fraction(row[1])):
                # written by a version that stored a float budget's binary value: keep the decimal one
                db.execute(
                    "UPDATE budgets SET epsilon_budget = ?, delta_budget = ? WHERE dataset = ?",
                    (str(eps), str(delta), dataset),
                )
            elif (Fraction(row[0]), Fraction(row[1])) != (eps, delta):
                raise ValueError(
                    f"dataset {dataset!r} already has budget epsilon={float(Fraction(row[0])):g} "
                    f"delta={float(Fraction(row[1])):g}; refusing to change it"
                )

    @property
    def relation(self) -> Relation:
        return self.budget.relation

    # -- storage ------------------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        db = open_private(self.path)  # owner-only (its side files too), WAL, synchronous=FULL
        try:
            db.executescript(_SCHEMA)
            for table, column, declaration in _ADDED_COLUMNS:
                if column not in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
                    with contextlib.suppress(sqlite3.OperationalError):  # another process added it in between
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        except BaseException:
            db.close()
            raise
        return db

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """The ledger's connection, opened on first use (and in a forked child: SQLite forbids using a parent's
        connection there; it is left open, not closed, as closing it could act on the parent's locks), held
        under the lock."""
        with self._lock:
            if self._busy_at_fork:
                raise RuntimeError("this ledger was in use by another thread when the process forked: open it anew")
            if self._db is None or self._pid != os.getpid():
                if self._db is not None:
                    _INHERITED.append(self._db)
                self._db, self._pid = self._open(), os.getpid()
            yield self._db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any exception, also one that lands right after BEGIN; a
        transaction an interrupt left open on the connection is rolled back first). The charges summed so far
        (:meth:`_charged`) are put back as they were on a rollback: a group may have summed its own uncommitted
        charges, whose ids another process may then commit with other amounts."""
        with self._connection() as db:
            summed = self._summed
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except BaseException:
                self._summed = summed
                try:
                    if db.in_transaction:  # SQLite rolls some errors back itself
                        db.execute("ROLLBACK")
                except sqlite3.Error:
                    self._db = None  # never reuse a connection left in a transaction: closing it rolls back
                    db.close()
                raise

    def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        with self._connection() as db:
            return query(db)

    def close(self) -> None:
        """Close the connection (every charge is already committed); a later call opens a new one."""
        with self._lock:
            if self._db is not None and self._pid == os.getpid():
                self._db.close()
            self._db = None

    def _charged(self, db: sqlite3.Connection) -> tuple[Fraction, Fraction]:
        """Everything charged to the dataset, summed exactly. Charges are only ever appended, with ids that only grow
        (AUTOINCREMENT: a committed id is never reused), so the sum of those up to an id is kept and only later ones
        are read: a query's cost does not grow with the ledger's history (it summed every charge each time). Within a
        group (:meth:`apply`) it may sum the group's own charges, not yet committed: :meth:`_transaction` puts the
        sums back if the group rolls back."""
        last, eps, delta = self._summed
        for i, e, d in db.execute(
            "SELECT id, epsilon, delta FROM charges WHERE dataset = ? AND id > ? ORDER BY id", (self.dataset, last)
        ):
            last, eps, delta = i, eps + Fraction(e), delta + Fraction(d)
        self._summed = (last, eps, delta)  # one consistent tuple: another thread at worst reads some rows again
        return eps, delta

    def _held(self, db: sqlite3.Connection, but: str | None) -> tuple[Fraction, Fraction, int]:
        """What live reservations of other sessions than ``but`` hold: counted per distinct amount by SQLite, so the
        exact sum costs a few additions (concurrent queries mostly ask the same loss), not one per session held."""
        eps, delta, n = Fraction(0), Fraction(0), 0
        rows = db.execute(
            "SELECT epsilon, delta, COUNT(*) FROM reservations WHERE dataset = ? AND until > ? AND session IS NOT ? "
            "GROUP BY epsilon, delta",
            (self.dataset, self._clock(), but),
        )
        for e, d, count in rows:
            eps, delta, n = eps + count * Fraction(e), delta + count * Fraction(d), n + count
        return eps, delta, n

    def _request(self, loss: LossLike, delta: float | str | Fraction) -> PrivacyLoss:
        if not isinstance(loss, PrivacyLoss):
            loss = PrivacyLoss.of(_positive(loss, "epsilon"), _amount(delta, "delta"), self.relation)
        elif loss.relation is not self.relation:
            raise RelationMismatch(
                f"dataset {self.dataset!r} keeps a budget {self.relation.describe}; "
                f"a loss {loss.relation.describe} cannot be charged to it"
            )
        if loss.measure is Measure.ZCDP:
            raise ValueError("convert a zCDP loss to (epsilon, delta) before charging it (PrivacyLoss.to_approx)")
        if loss.epsilon <= 0:
            raise ValueError(f"epsilon must be positive, got {float(loss.epsilon):g}")
        return loss

    def _refuse_if_over(self, db: sqlite3.Connection, loss: PrivacyLoss, but: str | None = None) -> None:
        spent_eps, spent_delta = self._charged(db)
        held_eps, held_delta, holders = self._held(db, but)
        used_eps, used_delta = spent_eps + held_eps, spent_delta + held_delta
        if used_eps + loss.epsilon > self.budget.epsilon or used_delta + loss.delta > self.budget.delta:
            raise BudgetExceeded(
                self.dataset,
                _spend(spent_eps, spent_delta, up=True),
                _spend(loss.epsilon, loss.delta, up=True),
                _spend(
                    max(self.budget.epsilon - used_eps, Fraction(0)),
                    max(self.budget.delta - used_delta, Fraction(0)),
                    up=False,
                ),
                _spend(held_eps, held_delta, up=True),
                holders,
            )

    def _insert_charge(self, db: sqlite3.Connection, loss: PrivacyLoss, label: str) -> Charge:
        created = self._clock()
        scope = "local" if loss.relation is Relation.LOCAL else "central"  # the first version's column
        cur = db.execute(
            "INSERT INTO charges (dataset, scope, epsilon, delta, label, created, relation) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (self.dataset, scope, str(loss.epsilon), str(loss.delta), label, created, loss.relation.value),
        )
        assert cur.lastrowid is not None
        return Charge(cur.lastrowid, self.dataset, loss, label, created)

    # -- direct charges -----------------------------------------------------------------------------------

    def check(self, loss: LossLike, delta: float | str | Fraction = 0.0) -> None:
        """Raise :class:`BudgetExceeded` if charging ``loss`` now would overspend (counting reservations)."""
        request = self._request(loss, delta)
        self._read(lambda db: self._refuse_if_over(db, request))

    def charge(self, loss: LossLike, delta: float | str | Fraction = 0.0, *, label: str = "") -> Charge:
        """Atomically record a release of ``loss``, or raise :class:`BudgetExceeded`."""
        charge = self._one(ChargeNow(self._request(loss, delta), label))
        assert isinstance(charge, Charge)
        return charge

    def _charge_now(self, db: sqlite3.Connection, loss: PrivacyLoss, label: str) -> Charge:
        request = self._request(loss, 0)
        if not isinstance(label, str):
            raise TypeError("label must be a string")
        self._refuse_if_over(db, request)
        return self._insert_charge(db, request, label)

    # -- reservations -------------------------------------------------------------------------------------

    def reserve(self, session: bytes | str, loss: PrivacyLoss, until: float) -> None:
        """Hold ``loss`` for ``session`` until the UNIX time ``until`` (its deadline), or raise
        :class:`BudgetExceeded` counting what is charged and what other sessions hold. Reserving a session
        again replaces its reservation."""
        self._one(Reserve(session, loss, until))

    def charge_reserved(self, session: bytes | str, label: str | None = None) -> Charge:
        """Charge what ``session`` reserved (label: its id) and drop the reservation. A reservation that
        lapsed is charged only if the budget still allows it; none at all is an error (``KeyError``)."""
        charge = self._one(ChargeReserved(session, label))
        assert isinstance(charge, Charge)
        return charge

    def free(self, session: bytes | str) -> None:
        """Drop ``session``'s reservation, if any (an aborted session spends nothing)."""
        self._one(Free(session))

    def apply(self, operations: Sequence[Operation]) -> list[Outcome]:
        """Run ``operations`` in order in one transaction (one commit, one sync, for all): the outcome of each, in
        order, is what its method returns, or the exception it raises (:class:`BudgetExceeded`, ``KeyError``,
        ``ValueError``...), in which case nothing it did is kept (a savepoint each) and the next ones run on the
        ledger as the earlier ones left it. Raises, keeping none of them, if the transaction itself fails (its
        commit: a full disk, an I/O error) or is interrupted."""
        outcomes: list[Outcome] = []
        with self._transaction() as db:
            for operation in operations:
                db.execute("SAVEPOINT operation")
                try:
                    outcomes.append(operation.run(self, db))
                except Exception as exc:
                    db.execute("ROLLBACK TO operation")
                    outcomes.append(exc)
                db.execute("RELEASE operation")
        return outcomes

    def _one(self, operation: Operation) -> Charge | None:
        [outcome] = self.apply([operation])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _reserve(self, db: sqlite3.Connection, session: bytes | str, loss: PrivacyLoss, until: float) -> None:
        key = _session_key(session)
        request = self._request(loss, 0)
        if not isinstance(until, (int, float)) or math.isnan(until):
            raise ValueError(f"until must be a UNIX time, got {until!r}")
        cutoff = self._clock() - LAPSED_KEPT_SECONDS
        db.execute("DELETE FROM reservations WHERE dataset = ? AND until <= ?", (self.dataset, cutoff))
        self._refuse_if_over(db, request, but=key)
        db.execute(
            "INSERT OR REPLACE INTO reservations (dataset, session, epsilon, delta, until, created) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (self.dataset, key, str(request.epsilon), str(request.delta), float(until), self._clock()),
        )

    def _charge_reserved(self, db: sqlite3.Connection, session: bytes | str, label: str | None) -> Charge:
        key = _session_key(session)
        row = db.execute(
            "SELECT epsilon, delta, until FROM reservations WHERE dataset = ? AND session = ?",
            (self.dataset, key),
        ).fetchone()
        if row is None:
            raise KeyError(f"session {key} holds no reservation on dataset {self.dataset!r}")
        loss = PrivacyLoss.of(Fraction(row[0]), Fraction(row[1]), self.relation)
        db.execute("DELETE FROM reservations WHERE dataset = ? AND session = ?", (self.dataset, key))
        if row[2] <= self._clock():  # lapsed: its budget may have gone to others since
            self._refuse_if_over(db, loss, but=key)
        return self._insert_charge(db, loss, key if label is None else label)

    def _free(self, db: sqlite3.Connection, session: bytes | str) -> None:
        key = _session_key(session)
        db.execute("DELETE FROM reservations WHERE dataset = ? AND session = ?", (self.dataset, key))

    def reserved(self) -> dict[str, PrivacyLoss]:
        """Live reservations: session id -> loss held."""
        rows = self._read(
            lambda db: db.execute(
                "SELECT session, epsilon, delta FROM reservations WHERE dataset = ? AND until > ?",
                (self.dataset, self._clock()),
            ).fetchall()
        )
        return {s: PrivacyLoss.of(Fraction(e), Fraction(d), self.relation) for s, e, d in rows}

    # -- reports ------------------------------------------------------------------------------------------

    def spent(self) -> Spend:
        """Total charged; epsilon rounded up."""
        eps, delta = self._read(self._charged)
        return _spend(eps, delta, up=True)

    def remaining(self) -> Spend:
        """Budget left after charges and live reservations; rounded down."""

        def used(db: sqlite3.Connection) -> tuple[Fraction, Fraction]:
            (e, d), (he, hd, _) = self._charged(db), self._held(db, None)
            return e + he, d + hd

        eps, delta = self._read(used)
        return _spend(max(self.budget.epsilon - eps, Fraction(0)), max(self.budget.delta - delta, Fraction(0)), False)

    def has_charge(self, label: str) -> bool:
        """Whether a charge labelled ``label`` (a session's id) was made: one lookup in an index, whatever the
        length of the history."""
        query = "SELECT 1 FROM charges WHERE dataset = ? AND label = ? LIMIT 1"
        return self._read(lambda db: db.execute(query, (self.dataset, label)).fetchone()) is not None

    def history(self) -> list[Charge]:
        """Every charge of this dataset, oldest first."""
        rows = self._read(
            lambda db: db.execute(
                "SELECT id, epsilon, delta, relation, label, created FROM charges WHERE dataset = ? ORDER BY id",
                (self.dataset,),
            ).fetchall()
        )
        return [
            Charge(i, self.dataset, PrivacyLoss.of(Fraction(e), Fraction(d), Relation(rel)), lb, cr)
            for i, e, d, rel, lb, cr in rows
        ]


def _amount(x: object, name: str) -> Fraction:
    value = exact(x, name)  # decimal text and floats as the decimal numbers they denote
    if value < 0:
        raise ValueError(f"{name} must be non-negative, got {x!r}")
    if name.startswith("delta") and value >= 1:
        raise ValueError(f"{name} must be below 1, got {x!r}")
    return value


def _positive(x: object, name: str) -> Fraction:
    value = _amount(x, name)
    if value == 0:
        raise ValueError(f"{name} must be positive, got {x!r}")
    return value
