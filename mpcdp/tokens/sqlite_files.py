"""Private SQLite files for token state: created owner-only (0600) and opened for explicit transactions."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def open_private(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A connection to ``path``, creating the file with mode 0600 first if it does not exist.

    SQLite gives its journal files the database file's mode, so they stay owner-only too.
    Autocommit mode (``isolation_level=None``): callers write ``BEGIN IMMEDIATE`` ... ``COMMIT``
    themselves, so a check and its update are one transaction holding the write lock.
    """
    path = Path(path)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class PrivateDB:
    """One owner-only SQLite file with one connection per thread (opened on first use and kept:
    opening a connection costs more than a small transaction)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._local = threading.local()

    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = open_private(self.path)
        return conn

    def transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work(conn)`` inside BEGIN IMMEDIATE ... COMMIT (ROLLBACK if it raises)."""
        conn = self.conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result
