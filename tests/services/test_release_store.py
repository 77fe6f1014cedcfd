"""The coordinator's release store (services.releases.ReleaseStore): an SQLite database, each release committed
before it counts as kept, the releases kept at once in one transaction. The attacks of the review of the
append-only log it replaced: two writers on one folder, a reader during a write, a corrupted record, a failed
commit, memory growing with the releases kept, a group copied whole, the folder never fsynced."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
import tracemalloc

import pytest

from services import releases
from services.releases import ReleaseStore, StoreError

PARTS = [b"\x0a\x03abc", b"\x12\x02xy"]  # two parts in their wire form (kept and returned as they are)


def sid(i: int) -> str:
    return f"{i:032x}"


def gated(store: ReleaseStore) -> tuple[threading.Event, list]:
    """Hold the store's next transaction on its writer thread until the returned event is set; the sessions of
    each transaction are listed."""
    gate, groups = threading.Event(), []
    commit = store._commit

    def held(items):
        groups.append([item[0].hex() for item in items])
        if len(groups) == 1:
            gate.wait(30)
        return commit(items)

    store._commit = held  # type: ignore[method-assign]
    return gate, groups


def full(store: ReleaseStore, room: int = 4) -> None:
    """Give the store's database ``room`` more pages at most (the writer's connection: one put made it)."""
    pages = store._writer.submit(lambda: store._db.execute("PRAGMA page_count").fetchone()[0]).result()
    store._writer.submit(lambda: store._db.execute(f"PRAGMA max_page_count = {pages + room}")).result()


def test_a_release_put_is_found_again_by_a_store_opened_on_the_same_folder(tmp_path):
    store = ReleaseStore(tmp_path)
    store.put(sid(1), "analyst", True, PARTS)
    store.put(sid(2), "other", False, PARTS[:1])
    store.close()
    again = ReleaseStore(tmp_path)
    meta, parts = again.get(sid(1))
    assert meta["client"] == "analyst" and meta["exact"] and parts == PARTS
    meta, parts = again.get(sid(2))
    assert meta["client"] == "other" and not meta["exact"] and parts == PARTS[:1]
    assert again.get(sid(3)) is None and again.get("not a session") is None
    assert oct(os.stat(again.path).st_mode & 0o777) == "0o600"
    with pytest.raises(ValueError):
        again.put("../escape", "analyst", True, PARTS)
    with pytest.raises(StoreError, match="kept already"):  # a release is kept once
        again.put(sid(1), "other", True, PARTS[:1])
    assert again.get(sid(1))[1] == PARTS


async def test_releases_kept_at_once_share_one_transaction(tmp_path):
    store = ReleaseStore(tmp_path)
    gate, groups = gated(store)
    first = asyncio.ensure_future(store.keep(sid(0), "analyst", True, PARTS))
    await asyncio.sleep(0.05)  # its transaction began (held)
    later = [asyncio.ensure_future(store.keep(sid(i), "analyst", True, PARTS)) for i in range(1, 20)]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(first, *later)
    assert groups == [[sid(0)], [sid(i) for i in range(1, 20)]]  # the keeps meanwhile: one transaction
    assert all(store.get(sid(i))[1] == PARTS for i in range(20))
    store.close()
    assert all(ReleaseStore(tmp_path).get(sid(i))[1] == PARTS for i in range(20))


async def test_a_failed_commit_fails_exactly_its_keeps_and_keeps_none_of_them(tmp_path):
    """Review finding 5: a keep queued after the failing transaction began is not failed with it."""
    store = ReleaseStore(tmp_path)
    store.put(sid(0), "analyst", True, PARTS)
    full(store)
    gate, groups = gated(store)
    big = [os.urandom(60_000)]  # 15 pages, kept in the database: the disk is full for this one
    failing = [asyncio.ensure_future(store.keep(sid(i), "analyst", False, big if i == 1 else PARTS)) for i in (1, 2)]
    await asyncio.sleep(0.05)  # their transaction began (held)
    after = asyncio.ensure_future(store.keep(sid(3), "analyst", False, PARTS))  # queued meanwhile: not in it
    await asyncio.sleep(0)
    gate.set()
    outcomes = await asyncio.gather(*failing, after, return_exceptions=True)
    assert groups == [[sid(1), sid(2)], [sid(3)]]
    assert all(isinstance(o, StoreError) and o.errno == errno.ENOSPC for o in outcomes[:2]), outcomes
    assert outcomes[2] is None
    assert store.get(sid(1)) is None and store.get(sid(2)) is None and store.get(sid(3))[1] == PARTS
    store.put(sid(4), "analyst", False, PARTS)  # the store goes on after a failure
    store.close()
    again = ReleaseStore(tmp_path)
    assert again.get(sid(1)) is None and again.get(sid(2)) is None  # rolled back: not found after a restart either
    assert all(again.get(sid(i))[1] == PARTS for i in (0, 3, 4))


WRITER = """
import sys
from services.releases import ReleaseStore
folder, first = sys.argv[1], int(sys.argv[2])
for i in range(first, first + 60):
    store = ReleaseStore(folder)  # opened and closed again and again, as a restarting coordinator would
    store.put(f"{i:032x}", "analyst", False, [b"from %d" % i])
    store.close()
"""


def test_two_writers_on_one_folder_lose_none_of_each_others_releases(tmp_path):
    """Review finding 1: with the log, a second opener cut off releases the first had acknowledged."""
    other = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "1000"])
    mine = ReleaseStore(tmp_path)
    for i in range(60):
        mine.put(sid(i), "analyst", False, [b"from %d" % i])
        if i % 20 == 0:  # one more store opened on the folder, in this process, keeping releases too
            extra = ReleaseStore(tmp_path)
            extra.put(sid(500 + i), "analyst", False, [b"extra"])
            extra.close()
    assert other.wait(60) == 0
    mine.close()
    again = ReleaseStore(tmp_path)
    assert all(again.get(sid(i))[1] == [b"from %d" % i] for i in (*range(60), *range(1000, 1060)))
    assert all(again.get(sid(500 + i))[1] == [b"extra"] for i in (0, 20, 40))


def test_a_reader_during_a_write_changes_nothing(tmp_path):
    store = ReleaseStore(tmp_path)
    store.put(sid(1), "analyst", True, PARTS)
    writer = sqlite3.connect(store.path, isolation_level=None)  # a write in progress, holding the write lock
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO releases VALUES (?, 'analyst', 1, 0, 0, 0, 0)", (bytes.fromhex(sid(2)),))
    reader = ReleaseStore(tmp_path)  # opened during the write: reads what was committed, writes nothing
    assert reader.get(sid(1))[1] == PARTS and reader.get(sid(2)) is None
    with pytest.raises(sqlite3.OperationalError):
        sqlite3.connect(reader._uri, uri=True).execute("DELETE FROM releases")  # readers cannot write
    writer.execute("COMMIT")
    writer.close()
    assert reader.get(sid(2)) == ({"client": "analyst", "exact": True, "created": 0.0}, [])
    assert store.get(sid(1))[1] == PARTS


def test_a_corrupted_release_is_not_served_and_every_other_release_is(tmp_path, caplog):
    """Review finding 2: one bad byte in the log lost every later release, or served a truncated part."""
    store = ReleaseStore(tmp_path)
    parts = {i: [b"part %04d " % i * 30, b"second %04d" % i] for i in range(100)}
    for i in range(100):
        store.put(sid(i), "analyst", False, parts[i])
    store.close()  # the last connection closed: everything is in the database file
    data = bytearray(store.path.read_bytes())
    at = data.index(b"part 0010 ")
    data[at + 3] ^= 0x01
    store.path.write_bytes(bytes(data))
    again = ReleaseStore(tmp_path)
    with caplog.at_level(logging.ERROR, "mpcdp.releases"):
        assert again.get(sid(10)) is None
    assert "damaged" in caplog.text
    assert all(again.get(sid(i))[1] == parts[i] for i in range(100) if i != 10)


def test_an_operator_forgets_old_releases_with_one_delete_while_the_store_is_open(tmp_path):
    store = ReleaseStore(tmp_path)
    store.put(sid(1), "analyst", True, PARTS)
    store.put(sid(2), "analyst", True, PARTS)
    db = sqlite3.connect(store.path)  # as `sqlite3 releases.db "DELETE FROM releases WHERE created < ..."` would
    with db:
        db.execute("DELETE FROM releases WHERE session = ?", (bytes.fromhex(sid(1)),))
    assert db.execute("SELECT DISTINCT session FROM parts").fetchall() == [(bytes.fromhex(sid(2)),)]
    db.close()
    assert store.get(sid(1)) is None and store.get(sid(2))[1] == PARTS
    store.put(sid(3), "analyst", True, PARTS)


def test_a_release_kept_as_a_file_of_its_own_before_the_database_is_still_found(tmp_path, caplog):
    blobs = [b'{"client": "analyst", "exact": true, "created": 0}', *PARTS]
    data = b"".join(releases._LENGTH.pack(len(b)) + b for b in blobs)
    (tmp_path / f"{sid(9)}.release").write_bytes(data)
    (tmp_path / f"{sid(8)}.release").write_bytes(data[:-1])  # its last part cut short
    assert ReleaseStore(tmp_path).get(sid(9)) == ({"client": "analyst", "exact": True, "created": 0}, PARTS)
    with caplog.at_level(logging.ERROR, "mpcdp.releases"):
        assert ReleaseStore(tmp_path).get(sid(8)) is None
    assert "damaged" in caplog.text


async def test_the_stores_memory_does_not_grow_with_the_releases_kept(tmp_path):
    """Review finding 3: the log's index kept ~150 bytes in memory per release ever kept."""
    store = ReleaseStore(tmp_path)

    async def keep(first: int, n: int) -> None:
        for at in range(first, first + n, 500):
            await asyncio.gather(*(store.keep(sid(i), "analyst", True, PARTS) for i in range(at, at + 500)))

    tracemalloc.start()
    try:
        await keep(0, 1_000)  # the event loop's own buffers grown to their size
        before = tracemalloc.get_traced_memory()[0]
        await keep(1_000, 2_000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 100_000, grown  # the log's index: ~0.22 MB for these 2000 releases
    assert store.get(sid(2_999))[1] == PARTS


async def test_a_group_of_large_releases_is_not_copied_into_one_buffer(tmp_path):
    """Review finding 8: the log joined every pending release into one bytes (~0.5 GB for 64 vector releases)."""
    store = ReleaseStore(tmp_path)
    large = [[os.urandom(1 << 20) for _ in range(4)] for _ in range(8)]  # 8 releases of 4 MiB, in 1 MiB parts
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        await asyncio.gather(*(store.keep(sid(i), "analyst", False, large[i]) for i in range(8)))
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak  # the log: 32 MiB at once
    assert store.get(sid(7))[1] == large[7]


def test_a_large_release_is_kept_in_a_file_of_its_own_checked_by_its_row(tmp_path, caplog):
    store = ReleaseStore(tmp_path)
    large = [os.urandom(1 << 20), os.urandom(100)]
    store.put(sid(1), "analyst", False, large)
    store.put(sid(2), "analyst", False, [os.urandom(1 << 17)])
    assert sorted(p.name for p in tmp_path.glob("*.parts")) == [f"{sid(1)}.parts", f"{sid(2)}.parts"]
    assert oct(os.stat(tmp_path / f"{sid(1)}.parts").st_mode & 0o777) == "0o600"
    assert ReleaseStore(tmp_path).get(sid(1)) == (store.get(sid(1))[0], large)
    with pytest.raises(StoreError, match="kept already"):  # its file is not replaced
        store.put(sid(1), "other", False, [os.urandom(1 << 20)])
    assert store.get(sid(1))[1] == large
    damaged = bytearray((tmp_path / f"{sid(1)}.parts").read_bytes())
    damaged[1000] ^= 0x01
    (tmp_path / f"{sid(1)}.parts").write_bytes(bytes(damaged))
    (tmp_path / f"{sid(2)}.parts").unlink()
    with caplog.at_level(logging.ERROR, "mpcdp.releases"):
        assert store.get(sid(1)) is None and store.get(sid(2)) is None
    assert "damaged" in caplog.text and "cannot be read" in caplog.text


def test_a_failed_transaction_removes_the_parts_files_it_wrote(tmp_path):
    store = ReleaseStore(tmp_path)
    store.put(sid(0), "analyst", True, PARTS)
    full(store)
    with pytest.raises(StoreError, match="full"):  # one transaction: a large release, then one too big for the room
        store._writer.submit(
            store._commit,
            [
                (bytes.fromhex(sid(i)), "a", 0, 0.0, p)
                for i, p in ((1, [os.urandom(1 << 20)]), (2, [os.urandom(60_000)]))
            ],
        ).result()
    assert not list(tmp_path.glob("*.parts*"))
    assert store.get(sid(1)) is None and store.get(sid(2)) is None


def test_a_new_database_and_folder_are_fsynced_into_their_folders(tmp_path, monkeypatch):
    """Review finding 7: the log's new name was never fsynced into its folder."""
    synced = []
    fsync = os.fsync
    monkeypatch.setattr(releases.os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_ino), fsync(fd)))
    folder = tmp_path / "state" / "coordinator.releases"
    (tmp_path / "state").mkdir()
    ReleaseStore(folder)
    assert {folder.stat().st_ino, folder.parent.stat().st_ino} <= set(synced)


async def test_after_close_a_keep_is_refused_clearly_and_get_still_reads(tmp_path):
    """Review finding 6 (the store's part): get after close raised EBADF, an internal error at Fetch."""
    store = ReleaseStore(tmp_path)
    await store.keep(sid(1), "analyst", False, PARTS)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.keep(sid(2), "analyst", False, PARTS)
    with pytest.raises(StoreError, match="closed"):
        store.put(sid(2), "analyst", False, PARTS)
    assert store.get(sid(1))[1] == PARTS and store.get(sid(2)) is None


async def test_a_keep_queued_before_close_is_kept_or_refused_never_lost_in_between(tmp_path):
    store = ReleaseStore(tmp_path)
    gate, _ = gated(store)
    first = asyncio.ensure_future(store.keep(sid(1), "analyst", False, PARTS))
    await asyncio.sleep(0.05)  # its transaction began (held)
    queued = asyncio.ensure_future(store.keep(sid(2), "analyst", False, PARTS))
    await asyncio.sleep(0)
    threading.Timer(0.1, gate.set).start()
    store.close()  # waits for the transaction in progress
    outcomes = await asyncio.gather(first, queued, return_exceptions=True)
    assert outcomes[0] is None and store.get(sid(1))[1] == PARTS
    assert isinstance(outcomes[1], StoreError) and store.get(sid(2)) is None


async def test_a_writer_that_cannot_open_its_connection_fails_its_keeps_and_the_next_keep_works(tmp_path, monkeypatch):
    """Review-3 finding 1: the writer's sqlite3.connect (EMFILE, a locked file) failing left its keeps hanging."""
    store = ReleaseStore(tmp_path)
    connect, calls = sqlite3.connect, []

    def failing_once(path, *args, **kwargs):
        if not kwargs.get("uri"):  # the writer's connection, not a reader's
            calls.append(path)
            if len(calls) == 1:
                raise sqlite3.OperationalError("unable to open database file")
        return connect(path, *args, **kwargs)

    monkeypatch.setattr(releases.sqlite3, "connect", failing_once)
    with pytest.raises(StoreError, match="unable to open"):
        await asyncio.wait_for(store.keep(sid(1), "analyst", False, PARTS), 10)
    await asyncio.wait_for(store.keep(sid(2), "analyst", False, PARTS), 10)
    assert store.get(sid(1)) is None and store.get(sid(2))[1] == PARTS
    store.close()


async def test_any_failure_of_a_commit_fails_each_keep_of_its_group_and_removes_its_files(tmp_path, caplog):
    """Review-3 finding 1: an exception other than sqlite3.Error or OSError (here out of wire_form) was never
    passed to the keeps."""
    store = ReleaseStore(tmp_path)
    gate, _ = gated(store)
    first = asyncio.ensure_future(store.keep(sid(0), "analyst", False, PARTS))
    await asyncio.sleep(0.05)  # its transaction began (held): the next two share one
    group = [
        asyncio.ensure_future(store.keep(sid(1), "analyst", False, [os.urandom(1 << 17)])),  # a parts file
        asyncio.ensure_future(store.keep(sid(2), "analyst", False, [object()])),  # no wire form: TypeError
    ]
    await asyncio.sleep(0)
    gate.set()
    outcomes = await asyncio.wait_for(asyncio.gather(first, *group, return_exceptions=True), 10)
    assert outcomes[0] is None
    assert all(isinstance(o, StoreError) for o in outcomes[1:]), outcomes
    assert "keeping 2 release(s) failed" in caplog.text
    assert not list(tmp_path.glob("*.parts*")) and store.get(sid(1)) is None
    await store.keep(sid(3), "analyst", False, PARTS)  # the store goes on
    store.close()


async def test_keeps_waiting_when_the_commit_task_is_cancelled_hear_it(tmp_path):
    """The loop closing (its tasks cancelled) leaves no keep waiting, neither the group nor those queued."""
    store = ReleaseStore(tmp_path)
    gate, _ = gated(store)
    first = asyncio.ensure_future(store.keep(sid(1), "analyst", False, PARTS))
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(store.keep(sid(2), "analyst", False, PARTS))
    await asyncio.sleep(0)
    store._committing.cancel()
    outcomes = await asyncio.wait_for(asyncio.gather(first, queued, return_exceptions=True), 10)
    assert all(isinstance(o, StoreError) for o in outcomes), outcomes
    gate.set()
    store.close()


def aged(path, hours: float = 2.0) -> None:
    then = time.time() - hours * 3600
    os.utime(path, (then, then))


def test_parts_files_left_without_their_row_are_removed_at_open_once_an_hour_old(tmp_path):
    """Review-3 finding 4: a crash between a parts file and its commit, or an operator's DELETE of the row, left
    the file (up to ~8 MiB) for ever; a younger one may be another writer's, not yet committed: it stays."""
    store = ReleaseStore(tmp_path)
    for i in (1, 2):
        store.put(sid(i), "analyst", False, [os.urandom(1 << 17)])
    kept = store.get(sid(1))
    db = sqlite3.connect(store.path)  # the operator forgets release 2 (its parts file stays)
    with db:
        db.execute("DELETE FROM releases WHERE session = ?", (bytes.fromhex(sid(2)),))
    db.close()
    store.close()
    for name in (f"{sid(3)}.parts", f"{sid(4)}.parts.tmp", f"{sid(5)}.parts", f"{sid(6)}.parts.tmp"):
        (tmp_path / name).write_bytes(b"\0" * 100)  # 3, 4: a crash's leftovers; 5, 6: being written by another
    for name in (f"{sid(1)}.parts", f"{sid(2)}.parts", f"{sid(3)}.parts", f"{sid(4)}.parts.tmp"):
        aged(tmp_path / name)
    again = ReleaseStore(tmp_path)
    left = sorted(p.name for p in tmp_path.glob("*.parts*"))
    assert left == [f"{sid(1)}.parts", f"{sid(5)}.parts", f"{sid(6)}.parts.tmp"]
    assert again.get(sid(1)) == kept and again.get(sid(2)) is None


def test_a_keep_replaces_a_parts_file_left_by_a_crash_and_refuses_a_young_one(tmp_path):
    """Review-3 finding 4: an orphan parts file made its session read as kept already, though it was not."""
    (tmp_path / f"{sid(1)}.parts").write_bytes(b"\0" * 100)
    store = ReleaseStore(tmp_path)  # opened while the file is young: it stays
    aged(tmp_path / f"{sid(1)}.parts")
    large = [os.urandom(1 << 17)]
    store.put(sid(1), "analyst", False, large)
    assert store.get(sid(1))[1] == large
    (tmp_path / f"{sid(2)}.parts").write_bytes(b"\0" * 100)  # perhaps another writer's, not yet committed
    with pytest.raises(StoreError, match="without its release"):
        store.put(sid(2), "analyst", False, large)
    assert (tmp_path / f"{sid(2)}.parts").read_bytes() == b"\0" * 100
    with pytest.raises(StoreError, match="kept already"):
        store.put(sid(1), "analyst", False, [os.urandom(1 << 17)])
    assert store.get(sid(1))[1] == large
    store.close()
