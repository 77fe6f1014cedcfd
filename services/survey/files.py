"""Files that hold shares are owner-only (0600) from the moment they exist.

All shares of one respondent (the outbox) are written with mode 0600 by ``os.open``, never chmod-ed after
the fact, so there is no window in which another local user can read them. An aggregator's SQLite store
is created the same way by :func:`mpcdp.sqlite_files.open_private` (SQLite gives its ``-wal`` and
``-shm`` files the mode of the database file).
"""

from __future__ import annotations

import os
from pathlib import Path

from mpcdp.sqlite_files import PRIVATE


def write_private(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file, fsync, rename), the file 0600 throughout."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
