"""The spent-token set: record verified tokens as spent, refuse them ever after.

A caller verifies a token against the issuer public key and the expected challenge (for a survey,
:class:`~mpcdp.tokens.admission.SurveyAdmission`, which binds it to one report), then records
:func:`token_hash` — SHA-256(token_input), unique by its nonce — with the report id, by
:func:`record_in` inside its own open transaction (never committing), so an aggregator stores a report
and spends its token atomically (a crash keeps both or neither). The primary key makes a second spend
of the same token, whatever report it comes with, raise :class:`TokenReused`; of two concurrent spends
exactly one commits. :func:`spent_among` asks which tokens are spent before a batch is written.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from mpcdp.tokens.errors import TokenReused
from mpcdp.tokens.privacy_pass import Token

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


def create_table(conn: SQLConnection) -> None:
    """Create the spent-token table (idempotent); call from the caller's schema setup."""
    conn.execute(SCHEMA)
