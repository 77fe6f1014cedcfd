"""Files that hold shares are owner-only (0600) from the moment they exist.

All shares of one respondent (the outbox) or every respondent's share for one
aggregator (its SQLite store) are created with mode 0600 by ``os.open``, never
chmod-ed after the fact, so there is no window in which another local user can
read them. SQLite gives its ``-wal`` and ``-shm`` files the mode of the
database file, so creating that file 0600 is enough for all three.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def create_private(path) -> None:
    """Create ``path`` empty and 0600 if it does not exist; tighten it (and SQLite's side files) if it
    was left readable by others (a store made by an earlier version)."""
    path = Path(path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE))
        return
    except FileExistsError:
        pass
    for p in [path, *(path.with_name(path.name + s) for s in SQLITE_SIDE_FILES)]:
        if p.exists() and stat.S_IMODE(p.stat().st_mode) & 0o077:
            os.chmod(p, PRIVATE)


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
