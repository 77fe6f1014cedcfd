"""The coordinator's release store: one log, fsynced before a release counts as kept, many releases to one
write and fsync when kept at once (services.releases.ReleaseStore)."""

from __future__ import annotations

import asyncio
import os

import pytest

from services import releases
from services.releases import ReleaseStore

PARTS = [b"\x0a\x03abc", b"\x12\x02xy"]  # two parts in their wire form (kept and returned as they are)


def sid(i: int) -> str:
    return f"{i:032x}"


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


async def test_releases_kept_at_once_share_one_write_and_fsync(tmp_path, monkeypatch):
    store = ReleaseStore(tmp_path)
    synced = []
    fsync = os.fsync
    monkeypatch.setattr(releases.os, "fsync", lambda fd: (synced.append(fd), fsync(fd)))
    await asyncio.gather(*(store.keep(sid(i), "analyst", True, PARTS) for i in range(20)))
    assert 1 <= len(synced) <= 2  # the first keep's write, then at most one for all that came meanwhile
    assert all(store.get(sid(i))[1] == PARTS for i in range(20))
    assert all(ReleaseStore(tmp_path).get(sid(i))[1] == PARTS for i in range(20))


async def test_a_failed_write_fails_only_its_keeps(tmp_path, monkeypatch):
    store = ReleaseStore(tmp_path)
    write = os.write

    def torn(fd, data):  # writes part of the group, then the disk is full
        write(fd, bytes(data[:7]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(releases.os, "write", torn)
    with pytest.raises(OSError):
        await store.keep(sid(1), "analyst", True, PARTS)
    monkeypatch.setattr(releases.os, "write", write)
    await store.keep(sid(2), "analyst", True, PARTS)  # the torn piece is cut off first
    assert store.get(sid(1)) is None and store.get(sid(2))[1] == PARTS
    store.close()
    again = ReleaseStore(tmp_path)
    assert again.get(sid(1)) is None and again.get(sid(2))[1] == PARTS


def test_a_record_torn_by_a_crash_is_cut_off_and_the_others_kept(tmp_path):
    store = ReleaseStore(tmp_path)
    store.put(sid(1), "analyst", True, PARTS)
    store.close()
    whole = os.path.getsize(store.path)
    with open(store.path, "ab") as f:  # a crash in the middle of the next record
        f.write(releases._RECORD.pack(bytes.fromhex(sid(2)), 1000) + b"partial")
    again = ReleaseStore(tmp_path)
    assert os.path.getsize(again.path) == whole
    assert again.get(sid(1))[1] == PARTS and again.get(sid(2)) is None
    again.put(sid(3), "analyst", True, PARTS)
    again.close()
    assert ReleaseStore(tmp_path).get(sid(3))[1] == PARTS


def test_a_release_kept_as_a_file_of_its_own_before_the_log_is_still_found(tmp_path):
    blobs = [b'{"client": "analyst", "exact": true, "created": 0}', *PARTS]
    (tmp_path / f"{sid(9)}.release").write_bytes(b"".join(releases._LENGTH.pack(len(b)) + b for b in blobs))
    meta, parts = ReleaseStore(tmp_path).get(sid(9))
    assert meta["client"] == "analyst" and parts == PARTS
