"""A party's durable session ids (services.ledgers.SessionLog.durable): one writing task per group of ids, not a
task per id, and every waiter told how its write went."""

from __future__ import annotations

import asyncio
import errno
import os

import pytest

from services import ledgers


async def test_ids_added_at_once_share_one_writing_task_and_one_fsync(tmp_path, monkeypatch):
    log = ledgers.SessionLog(tmp_path / "p.sessions")
    syncs = []
    real = os.fsync
    monkeypatch.setattr(ledgers.os, "fsync", lambda fd: (syncs.append(fd), real(fd)))
    before = asyncio.all_tasks()
    waiters = [log.durable(bytes([i]) * 16, 1e12) for i in range(30)]
    assert len(asyncio.all_tasks() - before) == 1  # the group's writer; no task per id
    assert not any(w.done() for w in waiters)  # none acknowledged before its line is on disk
    await asyncio.gather(*waiters)
    assert len(syncs) == 1
    later = log.durable(b"\xff" * 16, 1e12)  # a later id: a write of its own, begun after it
    await later
    assert len(syncs) == 2
    log.close()
    again = ledgers.SessionLog(tmp_path / "p.sessions")
    assert all(bytes([i]) * 16 in again for i in range(30)) and b"\xff" * 16 in again
    again.close()


async def test_a_failed_write_fails_every_waiter_and_its_ids_are_written_with_the_next(tmp_path, monkeypatch):
    log = ledgers.SessionLog(tmp_path / "p.sessions")
    real = os.fsync

    def full(fd):
        monkeypatch.setattr(ledgers.os, "fsync", real)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ledgers.os, "fsync", full)
    first = log.durable(b"\x01" * 16, 1e12)
    await asyncio.sleep(0)  # its write under way: the next id waits for the next group
    second = log.durable(b"\x02" * 16, 1e12)
    for waiter in (first, second):
        with pytest.raises(OSError):
            await waiter
    await log.durable(b"\x03" * 16, 1e12)  # room again: this group writes the failed lines too
    log.close()
    again = ledgers.SessionLog(tmp_path / "p.sessions")
    assert all(bytes([i]) * 16 in again for i in (1, 2, 3))
    again.close()
