"""A party's durable session ids (services.ledgers.SessionLog.durable): one writing task per group of ids, not a
task per id, and every waiter told how its write went."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time

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


async def test_a_failed_write_fails_its_own_ids_only_and_those_added_meanwhile_are_written_next(tmp_path, monkeypatch):
    """Review-3 F6: an id appended while a write fails is not that write's; it gets a write of its own (here the
    disk has room again), and the failed id is written again with it (still refused after a restart)."""
    log = ledgers.SessionLog(tmp_path / "p.sessions")
    real, entered = os.fsync, threading.Event()

    def full(fd):
        monkeypatch.setattr(ledgers.os, "fsync", real)
        entered.set()
        time.sleep(0.1)  # the second id is appended during this write
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ledgers.os, "fsync", full)
    first = log.durable(b"\x01" * 16, 1e12)
    await asyncio.sleep(0)  # its write under way: the next id waits for the next group
    assert await asyncio.to_thread(entered.wait, 5)
    second = log.durable(b"\x02" * 16, 1e12)
    with pytest.raises(OSError, match="No space"):
        await first
    await asyncio.wait_for(second, 5)  # acknowledged: on disk
    log.close()
    again = ledgers.SessionLog(tmp_path / "p.sessions")
    assert all(bytes([i]) * 16 in again for i in (1, 2))
    again.close()


async def test_a_full_disk_is_not_written_to_in_a_loop(tmp_path, monkeypatch):
    """While the disk stays full, each group is tried once and its ids fail (fail-closed); with nobody waiting no
    write is tried again until a new id comes."""
    log = ledgers.SessionLog(tmp_path / "p.sessions")
    real, tries, entered = os.fsync, [], threading.Event()

    def full(fd):
        tries.append(fd)
        entered.set()
        time.sleep(0.05)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ledgers.os, "fsync", full)
    first = log.durable(b"\x01" * 16, 1e12)
    await asyncio.sleep(0)
    assert await asyncio.to_thread(entered.wait, 5)
    second = log.durable(b"\x02" * 16, 1e12)  # during the first write: tried once more, in a write of its own
    for waiter in (first, second):
        with pytest.raises(OSError, match="No space"):
            await asyncio.wait_for(waiter, 5)
    await asyncio.sleep(0.5)
    assert len(tries) == 2  # nobody waits: nothing more is tried
    assert b"\x01" * 16 in log and b"\x02" * 16 in log  # remembered: a replay is still refused
    monkeypatch.setattr(ledgers.os, "fsync", real)
    await asyncio.wait_for(log.durable(b"\x03" * 16, 1e12), 5)  # room again: the failed lines go with it
    log.close()
    again = ledgers.SessionLog(tmp_path / "p.sessions")
    assert all(bytes([i]) * 16 in again for i in (1, 2, 3))
    again.close()


async def test_close_settles_the_waiters_of_the_lines_it_writes(tmp_path):
    """Review-3 finding 3: close wrote the pending lines itself and their waiters were never settled."""
    log = ledgers.SessionLog(tmp_path / "p.sessions")
    waiter = log.durable(b"\x01" * 16, 1e12)  # its writing task scheduled, not yet run
    log.close()
    assert waiter.done() and waiter.result() is None
    assert b"\x01" * 16 in ledgers.SessionLog(tmp_path / "p.sessions")
    late = log.durable(b"\x02" * 16, 1e12)  # after close: refused, not left waiting
    with pytest.raises(OSError, match="closed"):
        await asyncio.wait_for(late, 5)


async def test_close_during_a_failing_write_acknowledges_only_what_it_wrote(tmp_path, monkeypatch):
    """The lines appended during a write in progress are close's to write and settle; the write's own waiters
    hear its outcome (here a failure), never close's."""
    log = ledgers.SessionLog(tmp_path / "p.sessions")
    real, entered = os.fsync, threading.Event()

    def slow_full(fd):
        monkeypatch.setattr(ledgers.os, "fsync", real)
        entered.set()
        time.sleep(0.2)  # close waits for this write
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ledgers.os, "fsync", slow_full)
    first = log.durable(b"\x01" * 16, 1e12)
    await asyncio.sleep(0)  # its write under way, in another thread
    assert await asyncio.to_thread(entered.wait, 5)
    second = log.durable(b"\x02" * 16, 1e12)  # appended during that write
    log.close()
    assert second.done() and second.result() is None
    with pytest.raises(OSError, match="No space"):
        await asyncio.wait_for(first, 5)
    assert b"\x02" * 16 in ledgers.SessionLog(tmp_path / "p.sessions")


async def test_close_writes_a_group_whose_write_has_not_started_yet(tmp_path, monkeypatch):
    """A group taken by its writing task whose thread has not started yet (the worker threads busy, as under load)
    when the node closes: close wrote only the lines not yet taken and closed the file, then the thread found it
    closed, so an id the party had accepted was never on disk and was accepted again after a restart."""
    loop, gate = asyncio.get_running_loop(), threading.Event()
    real = loop.run_in_executor

    def held(executor, func, *args):  # every worker thread busy until the gate opens
        return real(executor, lambda: (gate.wait(5), func(*args))[1])

    monkeypatch.setattr(loop, "run_in_executor", held)
    log = ledgers.SessionLog(tmp_path / "p.sessions")
    first = log.durable(b"\x01" * 16, 1e12)
    await asyncio.sleep(0.05)  # its task has taken the line; the write waits for a thread
    second = log.durable(b"\x02" * 16, 1e12)  # appended after that: close's own
    log.close()
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)  # both acknowledged: on disk
    again = ledgers.SessionLog(tmp_path / "p.sessions")
    assert b"\x01" * 16 in again and b"\x02" * 16 in again
    again.close()
