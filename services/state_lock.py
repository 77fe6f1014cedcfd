"""One running node per name and state directory: an advisory lock on ``<state>/<name>.lock``, held for the node's life.

Two coordinators started on one state directory would share its release store and ledger, and two processes of one
party would share its session log: a session id written by one is not in the other's memory, so a replay sent to
the second could be accepted (the replay protection assumes one process per log). A node therefore takes
:class:`StateLock` before it opens anything in its state directory, and a second node of the same name on the same
directory is refused at start, the message naming the directory and the running node's process id.

The lock is ``flock(LOCK_EX | LOCK_NB)`` on the lock file, kept open while the node runs: the kernel drops it when
the descriptor is closed (:meth:`StateLock.release`) or the process ends in any way, ``kill -9`` included, so a crash
never leaves a stale lock behind (the file stays; its content, the holder's pid, is only for the message). Nodes of
different names may share a directory (each locks its own file). ``flock`` is per open file, so two nodes in one
process conflict as two processes do. On a network file system that does not support ``flock`` the lock may not
hold across machines: keep a node's state directory on a local disk.

The lock file is opened without following a symbolic link (``O_NOFOLLOW``) and must be a regular file of this user
with one link: a lock file that is a symlink or a hard link to another file (the session log, say) is refused, never
written to, so taking or releasing the lock cannot empty that file. Only the lock file's own bytes (the pid) are
rewritten, while the lock is held; release leaves the file as it is.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path


class StateBusy(OSError):
    """Another running node of the same name holds the state directory."""


class UnsafeLockFile(OSError):
    """The lock file is not a regular file of its own (a symlink, a hard link, another user's): not touched."""


class StateLock:
    """Node ``name``'s lock on ``folder`` (created 0700 if missing); :class:`StateBusy` if another node holds it."""

    def __init__(self, folder, name: str, role: str = "node"):
        self.folder = Path(folder)
        self.path = self.folder / f"{name}.lock"
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY, 0o600)
        except OSError as exc:  # ELOOP: a symbolic link
            raise UnsafeLockFile(f"{_unsafe(self.path)} ({exc.strerror})") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_uid != os.geteuid():
            os.close(fd)
            raise UnsafeLockFile(_unsafe(self.path))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise StateBusy(
                f"another {role} {name!r} ({holder}) is running on the state directory {self.folder}; stop it "
                f"first, or give this one another state directory (two processes on one directory would share "
                f"its files)"
            ) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        """Let another node take the directory (the process ending does the same)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _unsafe(path: Path) -> str:
    return (
        f"the lock file {path} is not a regular file of this user with one link (a symbolic or hard link to another "
        f"file?); it is left untouched: remove it and start again"
    )


def _holder(fd: int) -> str:
    """The running node's process id as its lock file says (written just after it took the lock)."""
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"
