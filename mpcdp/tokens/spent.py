"""The spent-token set: verify a token, record it as spent, refuse it ever after.

``spend`` checks the token against the issuer public key and the expected challenge (for a survey,
``TokenChallenge.bound(survey, aggregators, report_id)``, so the token is only spendable with that
one report), then records SHA-256(token_input) — the nonce makes it unique — with the report id.
A second spend of the same token raises :class:`TokenReused`, whatever report it comes with.

The SQLite form is built to share a transaction with the caller's own writes:
``SpentTokenTable.spend_in(conn, ...)`` runs inside the caller's open transaction and never commits,
so an aggregator stores the report and spends its token atomically (a crash keeps both or neither).
The primary key makes two concurrent spends of one token conflict: exactly one commits.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from mpcdp.tokens.errors import TokenReused
from mpcdp.tokens.privacy_pass import IssuerPublicKey, Token, verify_token
from mpcdp.tokens.sqlite_files import PrivateDB

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS spent_tokens "
    "(token_hash BLOB PRIMARY KEY, report_id BLOB NOT NULL, spent_at REAL NOT NULL)"
)


class SQLConnection(Protocol):
    """The part of :class:`sqlite3.Connection` the spent table uses (a unique-key violation raises
    :class:`sqlite3.IntegrityError`); a caller's PostgreSQL adapter can offer the same."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...


def token_hash(token: Token) -> bytes:
    """What identifies a token in the spent set: SHA-256 of its signed input."""
    return hashlib.sha256(token.token_input).digest()


def record_in(conn: SQLConnection, spent: list[tuple[bytes, bytes]]) -> None:
    """Record already verified tokens (token hash, report id) inside the caller's open transaction.

    Raises TokenReused if any was spent before (or twice in ``spent``): the caller rolls back."""
    try:
        conn.executemany("INSERT INTO spent_tokens VALUES (?, ?, julianday('now'))", spent)
    except sqlite3.IntegrityError:
        raise TokenReused("this token was already used") from None


def spent_among(conn: SQLConnection, hashes: list[bytes]) -> set[bytes]:
    """Which of these token hashes are already spent."""
    found: set[bytes] = set()
    for start in range(0, len(hashes), 500):
        part = hashes[start : start + 500]
        rows = conn.execute(
            f"SELECT token_hash FROM spent_tokens WHERE token_hash IN ({','.join('?' * len(part))})", part
        )
        found.update(bytes(r[0]) for r in rows)
    return found


class MemorySpentTokens:
    """In-process spent set (tests and single-process tools), thread-safe."""

    def __init__(self, issuer: IssuerPublicKey):
        self.issuer = issuer
        self._spent: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def spend(self, token: bytes, challenge: bytes, report_id: bytes) -> Token:
        decoded = verify_token(self.issuer, token, challenge)
        key = token_hash(decoded)
        with self._lock:
            if key in self._spent:
                raise TokenReused("this token was already used")
            self._spent[key] = bytes(report_id)
        return decoded

    def __len__(self) -> int:
        return len(self._spent)


class SpentTokenTable:
    """Spent tokens as a table in a caller's SQLite database."""

    def __init__(self, issuer: IssuerPublicKey):
        self.issuer = issuer

    @staticmethod
    def create(conn: SQLConnection) -> None:
        """Create the table (idempotent); call from the caller's schema setup."""
        conn.execute(SCHEMA)

    def spend_in(self, conn: SQLConnection, token: bytes, challenge: bytes, report_id: bytes) -> Token:
        """Verify and record inside the caller's open transaction (no commit here).

        Raises InvalidToken (bad token: nothing written) or TokenReused (the caller must roll back
        whatever else it wrote in this transaction)."""
        decoded = verify_token(self.issuer, token, challenge)
        record_in(conn, [(token_hash(decoded), bytes(report_id))])
        return decoded

    def is_spent(self, conn: SQLConnection, token: Token) -> bool:
        row = conn.execute("SELECT 1 FROM spent_tokens WHERE token_hash = ?", (token_hash(token),)).fetchone()
        return row is not None


class SQLiteSpentTokens:
    """A standalone owner-only SQLite spent set; each spend is its own IMMEDIATE transaction."""

    def __init__(self, path: str | os.PathLike[str], issuer: IssuerPublicKey):
        self.db = PrivateDB(path)
        self.table = SpentTokenTable(issuer)
        self.db.transaction(SpentTokenTable.create)

    def spend(self, token: bytes, challenge: bytes, report_id: bytes) -> Token:
        return self.db.transaction(lambda conn: self.table.spend_in(conn, token, challenge, report_id))

    def __len__(self) -> int:
        return int(self.db.conn().execute("SELECT COUNT(*) FROM spent_tokens").fetchone()[0])
