"""Private SQLite files: created owner-only (0600), opened for explicit transactions; the one opener.

The privacy ledger, the token state, the survey stores and the coordinator's release store open their SQLite
files with :func:`open_private`. A foundation: it imports nothing of the library.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

PRIVATE = 0o600
MEMORY = ":memory:"
SIDE_FILES = ("-wal", "-shm", "-journal")


def create_private(path: str | os.PathLike[str]) -> None:
    """Create ``path`` empty and 0600 if it does not exist (``os.open``, never a chmod after the fact); tighten
    it and SQLite's side files if an earlier version left them readable by others."""
    path = Path(path)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE))
        return
    for p in [path, *(path.with_name(path.name + s) for s in SIDE_FILES)]:
        try:
            if stat.S_IMODE(p.stat().st_mode) & 0o077:
                os.chmod(p, PRIVATE)
        except FileNotFoundError:  # no such side file, or SQLite removed it meanwhile (another process closed)
            continue
        except PermissionError:
            raise PermissionError(
                f"{p} is readable by others and not ours to make private (chmod 600 it, as its owner)"
            ) from None


def open_private(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A connection to ``path`` (or to a new in-memory database for ``":memory:"``), the file made private
    first (:func:`create_private`).

    SQLite gives its journal files the database file's mode, so they stay owner-only too. WAL mode with
    ``synchronous=FULL``: a transaction is on disk when ``COMMIT`` returns. Autocommit mode
    (``isolation_level=None``): callers write ``BEGIN IMMEDIATE`` ... ``COMMIT`` themselves, so a check and
    its update are one transaction holding the write lock. The connection may move between threads; its
    owner keeps one per thread or serialises its use.
    """
    if os.fspath(path) != MEMORY:
        create_private(path)
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
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
