"""One storage suite, run against SQLite, PostgreSQL (when MPCDP_TEST_POSTGRES is set) and memory."""

from __future__ import annotations

import contextlib
import os
import uuid

import numpy as np
import pytest

from mpcdp.prg import Prg
from mpcdp.survey.definition import parse_survey
from mpcdp.survey.release import id_set_digest
from services.survey.store import ID_BYTES, PutStatus, SqliteStore, StoreError, fold, open_store
from tests.support.survey_text import survey_text

PG = os.environ.get("MPCDP_TEST_POSTGRES")
WIDTH = 3
DIGEST = b"d" * 32
_POLL = survey_text("""
[[question]]
id = "q"
kind = "choice"
options = ["x", "y", "z"]
""")
POLL = parse_survey(_POLL)  # no central noise: the partial sum is the exact share total
NOISY = parse_survey(_POLL + 'central = { mechanism = "discrete_laplace", epsilon = 1.0 }\n')


@pytest.fixture(params=["sqlite", "postgresql", "memory"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = open_store(f"sqlite://{tmp_path / 'agg.db'}")
    elif request.param == "memory":
        s = open_store("memory")
    else:
        if not PG:
            pytest.skip("MPCDP_TEST_POSTGRES is not set (a postgresql:// DSN; .ci/run starts a server)")
        from services.survey.store import PostgresStore

        s = PostgresStore(PG, schema=f"t_{uuid.uuid4().hex[:12]}")
    s.register("poll", DIGEST, WIDTH)
    yield s
    s.shutdown()


def items(rng, n):
    return [(rng.bytes(ID_BYTES), rng.bytes(8 * WIDTH)) for _ in range(n)]


def vec(blob):
    return np.frombuffer(blob, dtype="<u8").astype(np.uint64)


def test_put_then_release_sums_exactly_the_stored_shares(store):
    batch = items(Prg.from_int(1), 50)
    assert store.put("poll", batch) == [PutStatus.ACCEPTED] * 50
    assert store.state("poll").count == 50
    assert store.close("poll").state == "closed"
    ids = list(store.ids("poll"))
    assert ids == sorted(s for s, _ in batch)
    out = store.release(POLL, [], 50, id_set_digest(ids), Prg.from_int(1))
    assert np.array_equal(out, fold([b for _, b in batch], WIDTH))
    assert store.state("poll").state == "released"


def test_duplicates_are_acknowledged_and_conflicts_refused(store):
    batch = items(Prg.from_int(2), 4)
    store.put("poll", batch)
    sid, share = batch[0]
    other = bytes(8 * WIDTH)
    new_sid = b"n" * ID_BYTES
    statuses = store.put(
        "poll", [(sid, share), (batch[1][0], other), (new_sid, other), (new_sid, other), (new_sid, share)]
    )
    assert statuses == [
        PutStatus.DUPLICATE,
        PutStatus.CONFLICT,
        PutStatus.ACCEPTED,
        PutStatus.DUPLICATE,
        PutStatus.CONFLICT,
    ]
    store.close("poll")
    stored = list(store.ids("poll"))
    assert len(stored) == 5
    out = store.release(POLL, [], 5, id_set_digest(stored))
    assert np.array_equal(out, fold([b for _, b in batch] + [other], WIDTH))


def test_malformed_batch_changes_nothing(store):
    good = items(Prg.from_int(3), 2)
    with pytest.raises(ValueError, match="shares 24 bytes"):
        store.put("poll", good + [(b"x" * ID_BYTES, b"short")])
    with pytest.raises(ValueError, match="ids are 16 bytes"):
        store.put("poll", [(b"short", bytes(8 * WIDTH))])
    assert store.state("poll").count == 0


@contextlib.contextmanager
def refused(reason: str):
    """The block must raise StoreError with ``reason``."""
    with pytest.raises(StoreError) as err:
        yield
    assert err.value.reason == reason


def test_unknown_survey_and_definition_mismatch(store):
    with refused(StoreError.UNKNOWN_SURVEY):
        store.put("other", items(Prg.from_int(4), 1))
    with refused(StoreError.MISMATCH):
        store.register("poll", b"e" * 32, WIDTH)
    store.register("poll", DIGEST, WIDTH)  # idempotent


def test_closed_survey_refuses_submissions_and_replays(store):
    batch = items(Prg.from_int(5), 3)
    store.put("poll", batch)
    store.close("poll")
    for attempt in (batch[:1], items(Prg.from_int(6), 1)):
        with refused(StoreError.CLOSED):
            store.put("poll", attempt)
    assert store.state("poll").count == 3


def test_ids_and_release_need_a_closed_survey(store):
    store.put("poll", items(Prg.from_int(7), 2))
    with refused(StoreError.NOT_CLOSED):
        list(store.ids("poll"))
    with refused(StoreError.NOT_CLOSED):
        store.release(POLL, [], 2, b"")


def test_release_is_once_per_survey_and_bound_to_its_id_set(store):
    batch = items(Prg.from_int(8), 6)
    store.put("poll", batch)
    store.close("poll")
    ids = list(store.ids("poll"))
    kept = ids[1:]
    first = store.release(NOISY, ids[:1], 5, id_set_digest(kept), Prg.from_int(1))
    again = store.release(NOISY, ids[:1], 5, id_set_digest(kept), Prg.from_int(2))
    assert np.array_equal(first, again)  # same set: same vector, no fresh noise
    with refused(StoreError.RELEASED):
        store.release(NOISY, [], 6, id_set_digest(ids), Prg.from_int(3))


def test_release_refuses_a_set_it_does_not_hold(store):
    batch = items(Prg.from_int(9), 3)
    store.put("poll", batch)
    store.close("poll")
    ids = list(store.ids("poll"))
    with refused(StoreError.MISMATCH):
        store.release(POLL, [], 4, id_set_digest(ids + [b"z" * ID_BYTES]))
    assert store.state("poll").state == "closed"  # nothing released


def test_sqlite_is_wal_with_synchronous_full_and_survives_reopen(tmp_path):
    path = str(tmp_path / "agg.db")
    s = SqliteStore(path)
    assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    s.register("poll", DIGEST, WIDTH)
    s.put("poll", items(Prg.from_int(10), 7))
    s.shutdown()
    again = SqliteStore(path)
    assert again.state("poll").count == 7
    again.shutdown()
