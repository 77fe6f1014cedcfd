"""One SQL connection for the verified-survey store, on SQLite or PostgreSQL, its SQL written once.

The report store (:mod:`services.survey.reports`) and the spent-token table it shares transactions with
(:mod:`mpcdp.tokens.spent`) speak the small portable subset of SQL both databases understand, with SQLite's
``?`` placeholders, through the part of :class:`sqlite3.Connection` they use (``execute``, ``executemany``,
``executescript``; transactions as ``BEGIN IMMEDIATE`` / ``COMMIT`` / ``ROLLBACK`` statements).
:class:`PostgresConnection` gives that interface over psycopg 3, rewriting the few SQLite-only spellings
(:func:`postgres_sql`) and raising a unique-key violation as :class:`sqlite3.IntegrityError`, so callers
catch one exception on both. Durability: SQLite runs in WAL mode with ``synchronous=FULL``; PostgreSQL with
its default synchronous commit; either way a transaction is on disk when ``COMMIT`` returns.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from mpcdp.sqlite_files import open_private


class Connection(Protocol):
    """What the report store needs of a database connection (a subset of :class:`sqlite3.Connection`)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...

    def executescript(self, script: str, /) -> Any: ...

    def close(self) -> None: ...


_REWRITES = (
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\)\s*WITHOUT ROWID"), ")"),
    (re.compile(r"julianday\('now'\)"), "(EXTRACT(EPOCH FROM now()) / 86400.0 + 2440587.5)"),
    (re.compile(r"^\s*BEGIN IMMEDIATE\s*$"), "BEGIN"),
    (re.compile(r"\?"), "%s"),
)
_INSERT_OR_IGNORE = re.compile(r"^\s*INSERT OR IGNORE INTO (.*)$", re.S)


def postgres_sql(sql: str) -> str:
    """SQLite's spelling of a statement in PostgreSQL's: placeholders, byte and float types, ``INSERT OR
    IGNORE``, ``julianday('now')``, ``WITHOUT ROWID``, ``BEGIN IMMEDIATE``."""
    for pattern, replacement in _REWRITES:
        sql = pattern.sub(replacement, sql)
    if m := _INSERT_OR_IGNORE.match(sql):
        sql = f"INSERT INTO {m.group(1).rstrip().rstrip(';')} ON CONFLICT DO NOTHING"
    return sql


class PostgresConnection:
    """psycopg 3 (autocommit, transactions by statements) behind :class:`Connection`, tables in ``schema``."""

    def __init__(self, dsn: str, schema: str = "public") -> None:
        import psycopg

        self._errors = psycopg.errors
        self._db = psycopg.connect(dsn, autocommit=True)
        self._db.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        self._db.execute(f'SET search_path TO "{schema}"')

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Any:
        if sql.lstrip().upper().startswith("PRAGMA"):
            return self._db.cursor()  # SQLite settings: nothing to do here
        try:
            return self._db.execute(postgres_sql(sql), tuple(parameters))
        except self._errors.UniqueViolation as exc:
            raise sqlite3.IntegrityError(str(exc)) from exc

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> Any:
        cursor = self._db.cursor()
        try:
            cursor.executemany(postgres_sql(sql), [tuple(p) for p in parameters])
        except self._errors.UniqueViolation as exc:
            raise sqlite3.IntegrityError(str(exc)) from exc
        return cursor

    def executescript(self, script: str) -> None:
        for statement in script.split(";"):
            if statement.strip():
                self.execute(statement)

    def close(self) -> None:
        self._db.close()


def connect(url: str, schema: str = "public") -> Connection:
    """``postgresql://...`` (tables in ``schema``), or an SQLite file (``sqlite://PATH`` or a path, ``:memory:``)."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresConnection(url, schema)
    return open_private(url.removeprefix("sqlite://"))
