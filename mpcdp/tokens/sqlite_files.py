"""Private SQLite files for token state: created owner-only (0600) and opened for explicit transactions."""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path


def open_private(path: str | os.PathLike) -> sqlite3.Connection:
    """A connection to ``path``, creating the file with mode 0600 first if it does not exist.

    SQLite gives its journal files the database file's mode, so they stay owner-only too.
    Autocommit mode (``isolation_level=None``): callers write ``BEGIN IMMEDIATE`` ... ``COMMIT``
    themselves, so a check and its update are one transaction holding the write lock.
    """
    path = Path(path)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


@contextmanager
def private_db(path: str | os.PathLike):
    """``with private_db(path) as conn``: :func:`open_private`, closed on exit."""
    conn = open_private(path)
    try:
        yield conn
    finally:
        conn.close()
