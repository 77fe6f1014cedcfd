"""A persistent privacy-budget ledger per dataset, in an SQLite file.

Basic sequential composition: releases of (eps_i, delta_i) together satisfy
(sum eps_i, sum delta_i)-DP (Dwork, Kenthapadi, McSherry, Mironov and Naor,
EUROCRYPT 2006). zCDP releases are converted to (epsilon, delta) when
charged (:meth:`PrivacyLedger.charge_guarantee`, Bun and Steinke 2016). Local and
central releases are recorded under separate scopes and reported apart; both
count against the one budget of the dataset, since they concern the same
people. Amounts are stored as exact rationals, read as the decimal numbers
they denote (:func:`mpcdp.dp.rational.exact`: "0.1" and the float 0.1 are
1/10, so a budget of 1.0 holds exactly ten charges of 0.1), and sums never
round. :meth:`PrivacyLedger.charge` runs in one
``BEGIN IMMEDIATE`` transaction: two processes charging at once are
serialised by SQLite and can never overspend together. Any error refuses
the charge (fail closed).
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .guarantee import Guarantee
from .rational import exact, round_down, round_up

SCOPES = ("central", "local")
_TIMEOUT_S = 30.0
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
"""


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
    scope: str
    epsilon: float
    delta: float
    label: str
    created: float


class BudgetExceeded(Exception):
    """A charge that would overspend the dataset's budget; shows spent, requested and remaining."""

    def __init__(self, dataset: str, spent: Spend, requested: Spend, remaining: Spend):
        self.dataset, self.spent, self.requested, self.remaining = dataset, spent, requested, remaining
        super().__init__(
            f"privacy budget of dataset {dataset!r} exceeded: spent epsilon={spent.epsilon:g} "
            f"delta={spent.delta:g}; requested epsilon={requested.epsilon:g} delta={requested.delta:g}; "
            f"remaining epsilon={remaining.epsilon:g} delta={remaining.delta:g}"
        )


def _amount(x, name: str, allow_zero: bool) -> Fraction:
    value = exact(x, name)  # decimal text and floats as the decimal numbers they denote
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {x!r}")
    return value


def _amounts(epsilon, delta, suffix: str = "") -> tuple[Fraction, Fraction]:
    """(epsilon, delta) as exact rationals: epsilon > 0, 0 <= delta < 1."""
    eps = _amount(epsilon, f"epsilon{suffix}", allow_zero=False)
    d = _amount(delta, f"delta{suffix}", allow_zero=True)
    if d >= 1:
        raise ValueError(f"delta{suffix} must be below 1, got {delta!r}")
    return eps, d


def _as_written(stored: str) -> Fraction:
    """A stored amount read as the float it came from, through its decimal representation."""
    return exact(float(Fraction(stored)), "stored amount")


def _spend(eps: Fraction, delta: Fraction, up: bool) -> Spend:
    rnd = round_up if up else round_down
    return Spend(rnd(eps), rnd(delta, 20))  # the exact fractions, rounded once


class PrivacyLedger:
    """The budget and the charges of one dataset, stored in the SQLite file at ``path``.

    The first ledger opened for a dataset fixes its budget; reopening with a
    different budget is refused rather than silently changing it.
    """

    def __init__(self, path, dataset: str, epsilon_budget: float, delta_budget: float = 0.0):
        if not isinstance(dataset, str) or not dataset:
            raise ValueError("dataset must be a non-empty string")
        eps, delta = _amounts(epsilon_budget, delta_budget, "_budget")
        self.path = Path(path)
        self.dataset = dataset
        if str(self.path) != ":memory:":
            try:  # owner-only from the moment it exists (SQLite's journal files take its mode)
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass
        with self._transaction() as db:
            row = db.execute(
                "SELECT epsilon_budget, delta_budget FROM budgets WHERE dataset = ?", (dataset,)
            ).fetchone()
            if row is None:
                db.execute("INSERT INTO budgets VALUES (?, ?, ?)", (dataset, str(eps), str(delta)))
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
        self._eps_budget, self._delta_budget = eps, delta

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=_TIMEOUT_S, isolation_level=None)
        db.executescript(_SCHEMA)
        return db

    def _transaction(self):
        return _Transaction(self._connect())

    def _totals(self, db, scope: str | None) -> tuple[Fraction, Fraction]:
        query = "SELECT epsilon, delta FROM charges WHERE dataset = ?"
        args: tuple = (self.dataset,)
        if scope is not None:
            query += " AND scope = ?"
            args += (scope,)
        eps, delta = Fraction(0), Fraction(0)
        for e, d in db.execute(query, args):
            eps += Fraction(e)
            delta += Fraction(d)
        return eps, delta

    def _refuse_if_over(self, db, eps: Fraction, delta: Fraction) -> None:
        spent_eps, spent_delta = self._totals(db, None)
        if spent_eps + eps > self._eps_budget or spent_delta + delta > self._delta_budget:
            raise BudgetExceeded(
                self.dataset,
                _spend(spent_eps, spent_delta, up=True),
                _spend(eps, delta, up=True),
                _spend(
                    max(self._eps_budget - spent_eps, Fraction(0)),
                    max(self._delta_budget - spent_delta, Fraction(0)),
                    up=False,
                ),
            )

    @staticmethod
    def _request(epsilon, delta, scope) -> tuple[Fraction, Fraction]:
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        return _amounts(epsilon, delta)

    def check(self, epsilon: float, delta: float = 0.0, *, scope: str = "central") -> None:
        """Raise :class:`BudgetExceeded` if charging (epsilon, delta) now would overspend; charge nothing."""
        eps, d = self._request(epsilon, delta, scope)
        db = self._connect()
        try:
            self._refuse_if_over(db, eps, d)
        finally:
            db.close()

    def charge(self, epsilon: float, delta: float = 0.0, *, scope: str = "central", label: str = "") -> Charge:
        """Atomically record a release of (epsilon, delta), or raise :class:`BudgetExceeded`."""
        eps, d = self._request(epsilon, delta, scope)
        if not isinstance(label, str):
            raise TypeError("label must be a string")
        with self._transaction() as db:
            self._refuse_if_over(db, eps, d)
            created = time.time()
            cur = db.execute(
                "INSERT INTO charges (dataset, scope, epsilon, delta, label, created) VALUES (?, ?, ?, ?, ?, ?)",
                (self.dataset, scope, str(eps), str(d), label, created),
            )
            return Charge(cur.lastrowid, self.dataset, scope, float(epsilon), float(delta), label, created)

    def charge_guarantee(
        self, guarantee: Guarantee, delta: float = 0.0, *, scope: str = "central", label: str = ""
    ) -> Charge:
        """Charge a release by its guarantee; zCDP is converted at ``delta`` (epsilon rounded up)."""
        if not guarantee.is_private:
            raise ValueError("refusing to charge a release without a DP guarantee")
        eps, d = guarantee.epsilon_delta(delta)
        return self.charge(eps, d, scope=scope, label=label)

    def spent(self, scope: str | None = None) -> Spend:
        """Total spent, over both scopes or one; epsilon rounded up."""
        if scope is not None and scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES} or None, got {scope!r}")
        db = self._connect()
        try:
            return _spend(*self._totals(db, scope), up=True)
        finally:
            db.close()

    def remaining(self) -> Spend:
        """Budget left (over both scopes); rounded down."""
        db = self._connect()
        try:
            eps, delta = self._totals(db, None)
        finally:
            db.close()
        return _spend(max(self._eps_budget - eps, Fraction(0)), max(self._delta_budget - delta, Fraction(0)), up=False)

    def history(self) -> list[Charge]:
        """Every charge of this dataset, oldest first."""
        db = self._connect()
        try:
            rows = db.execute(
                "SELECT id, dataset, scope, epsilon, delta, label, created FROM charges WHERE dataset = ? ORDER BY id",
                (self.dataset,),
            ).fetchall()
        finally:
            db.close()
        return [Charge(i, ds, sc, float(Fraction(e)), float(Fraction(d)), lb, cr) for i, ds, sc, e, d, lb, cr in rows]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any exception), then close."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.db.close()
