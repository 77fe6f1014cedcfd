"""An aggregator's durable share store: SQLite (embedded default) or PostgreSQL.

A survey's life in one store:  open --close--> closed --release--> released. Which step is allowed
when is :class:`mpcdp.survey.lifecycle.Lifecycle`'s rule (shares of the ring have nothing to verify,
so ``close`` goes straight to closed); each backend loads the survey's lifecycle, asks it, and saves
the outcome in the same transaction as the data. (``collecting`` is not recorded here: its rules are
open's, and not writing it keeps concurrent batches from contending for the survey's row.)

* ``put`` stores a batch of (submission id, share) pairs in one transaction and
  returns only after it is committed (SQLite WAL with ``synchronous=FULL``;
  PostgreSQL's default synchronous commit), so an acknowledged share survives
  a crash. Re-sending the same id with the same share is a harmless duplicate;
  the same id with a different share is a conflict and changes nothing.
* ``close`` stops intake, so the id set the coordinator intersects is final.
* ``release`` records the one partial sum this aggregator will ever give for
  the survey, bound to a digest of the id set it covers: asking again with the
  same set returns the same vector (a coordinator that crashed can resume);
  another set is refused, since two sums over sets differing in one id would
  reveal that respondent's share.

Shares are opaque blobs here (packed little-endian uint64); nothing is logged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np

from mpcdp.prg import RandomSource
from mpcdp.sqlite_files import open_private
from mpcdp.survey.definition import Survey
from mpcdp.survey.lifecycle import Lifecycle, Refusal
from mpcdp.survey.noise import noisy_partial
from mpcdp.survey.release import id_set_digest

ID_BYTES = 16
_FOLD_BYTES = 8 << 20  # share bytes folded into the sum at a time


class PutStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # same id, same share: already stored, acknowledged again
    CONFLICT = "conflict"  # same id, different share: refused


class StoreError(Refusal):
    """A refused store operation; ``reason`` is one of the class constants (the lifecycle's, and two of the
    store's own)."""

    UNKNOWN_SURVEY = "unknown-survey"
    MISMATCH = "mismatch"


@contextmanager
def rules() -> Iterator[None]:
    """The lifecycle's refusals as this store's errors (same reasons)."""
    try:
        yield
    except Refusal as exc:
        raise StoreError(exc.reason, str(exc)) from None


@dataclass(frozen=True)
class SurveyState:
    state: str  # a lifecycle state (mpcdp.survey.lifecycle.STATES)
    count: int
    width: int


def fold(blobs: Iterable[bytes], width: int) -> np.ndarray:
    """The sum mod 2^64 of share blobs of ``width`` little-endian uint64 each."""
    total = np.zeros(width, dtype=np.uint64)
    batch: list[bytes] = []
    per_chunk = max(1, _FOLD_BYTES // (8 * width))

    def flush():
        if batch:
            arr = np.frombuffer(b"".join(batch), dtype="<u8").reshape(-1, width)
            np.add(total, arr.sum(axis=0, dtype=np.uint64), out=total)
            batch.clear()

    for blob in blobs:
        batch.append(blob)
        if len(batch) >= per_chunk:
            flush()
    flush()
    return total


class ShareStore(Protocol):
    """What an aggregator needs of storage; :func:`open_store` picks the backend from a URL."""

    def register(self, survey: str, digest: bytes, width: int) -> None:
        """Create the survey if new; refuse if it exists with another digest or width."""

    def put(self, survey: str, items: Sequence[tuple[bytes, bytes]]) -> list[PutStatus]:
        """Store a batch durably (all or nothing) and say what became of each item."""

    def state(self, survey: str) -> SurveyState: ...

    def close(self, survey: str) -> SurveyState:
        """Stop intake (idempotent)."""

    def ids(self, survey: str) -> Iterator[bytes]:
        """The stored submission ids of a closed survey, sorted."""

    def release(
        self,
        survey: Survey,
        exclude: Iterable[bytes],
        expected: int,
        expected_digest: bytes,
        rng: RandomSource | None = None,
    ) -> np.ndarray:
        """Sum this store's shares over (all ids - exclude) plus this aggregator's noise piece, once per survey.

        The piece is drawn by :func:`mpcdp.survey.noise.noisy_partial` from ``rng`` (the CSPRNG by
        default): there is no way to release a survey with central noise declared but not added.
        """

    def shutdown(self) -> None: ...


def _check_items(items: Sequence[tuple[bytes, bytes]], width: int) -> None:
    for sid, share in items:
        if len(sid) != ID_BYTES or len(share) != 8 * width:
            raise ValueError(f"submission ids are {ID_BYTES} bytes and shares {8 * width} bytes")


def _first(items: Sequence[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The first share given for each id in a batch."""
    first: dict[bytes, bytes] = {}
    for sid, share in items:
        first.setdefault(sid, share)
    return first


def _statuses(items, existing: dict[bytes, bytes], first: dict[bytes, bytes]) -> list[PutStatus]:
    """Per item: accepted (newly stored), duplicate (same share already there) or conflict."""
    out, seen = [], set()
    for sid, share in items:
        stored = existing.get(sid, first[sid])
        if share != stored:
            out.append(PutStatus.CONFLICT)
        elif sid in existing or sid in seen:
            out.append(PutStatus.DUPLICATE)
        else:
            out.append(PutStatus.ACCEPTED)
        seen.add(sid)
    return out


class SqliteStore(ShareStore):
    """SQLite in WAL mode with synchronous=FULL: the embedded default, no set-up."""

    def __init__(self, path: str):
        self._db = open_private(path)
        self._lock = threading.Lock()
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS surveys (
                id TEXT PRIMARY KEY, digest BLOB NOT NULL, width INTEGER NOT NULL,
                state TEXT NOT NULL DEFAULT 'open', release_digest BLOB, release_vector BLOB);
            CREATE TABLE IF NOT EXISTS shares (
                survey TEXT NOT NULL, sid BLOB NOT NULL, share BLOB NOT NULL,
                PRIMARY KEY (survey, sid)) WITHOUT ROWID;
        """)

    def _survey(self, survey: str) -> tuple[str, int, bytes | None, bytes | None]:
        row = self._db.execute(
            "SELECT state, width, release_digest, release_vector FROM surveys WHERE id = ?", (survey,)
        ).fetchone()
        if row is None:
            raise StoreError(StoreError.UNKNOWN_SURVEY, f"unknown survey {survey!r}")
        return row

    def register(self, survey, digest, width):
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO surveys (id, digest, width) VALUES (?, ?, ?)", (survey, digest, width)
            )
            row = self._db.execute("SELECT digest, width FROM surveys WHERE id = ?", (survey,)).fetchone()
        if (bytes(row[0]), row[1]) != (digest, width):
            raise StoreError(StoreError.MISMATCH, f"survey {survey!r} is stored with another definition")

    def put(self, survey, items):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                state, width, _, _ = self._survey(survey)
                with rules():
                    Lifecycle(survey, state).submit(len(items))
                _check_items(items, width)
                first = _first(items)
                existing = self._existing(survey, list(first))
                new = [(survey, sid, share) for sid, share in first.items() if sid not in existing]
                self._db.executemany("INSERT INTO shares (survey, sid, share) VALUES (?, ?, ?)", new)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return _statuses(items, existing, first)

    def _existing(self, survey: str, sids: list[bytes]) -> dict[bytes, bytes]:
        found: dict[bytes, bytes] = {}
        for start in range(0, len(sids), 500):
            part = sids[start : start + 500]
            marks = ",".join("?" * len(part))
            for sid, share in self._db.execute(
                f"SELECT sid, share FROM shares WHERE survey = ? AND sid IN ({marks})", (survey, *part)
            ):
                found[bytes(sid)] = bytes(share)
        return found

    def state(self, survey):
        with self._lock:
            state, width, _, _ = self._survey(survey)
            (count,) = self._db.execute("SELECT COUNT(*) FROM shares WHERE survey = ?", (survey,)).fetchone()
        return SurveyState(state, count, width)

    def close(self, survey):
        with self._lock:
            state, _, _, _ = self._survey(survey)
            after = Lifecycle(survey, state).close(verify=False).state
            self._db.execute("UPDATE surveys SET state = ? WHERE id = ?", (after, survey))
        return self.state(survey)

    def ids(self, survey):
        with self._lock, rules():
            state, _, _, _ = self._survey(survey)
            Lifecycle(survey, state).final_ids()
            rows = self._db.execute("SELECT sid FROM shares WHERE survey = ? ORDER BY sid", (survey,)).fetchall()
        return (bytes(r[0]) for r in rows)

    def release(self, survey, exclude, expected, expected_digest, rng=None):
        exclude = set(exclude)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                state, width, done_digest, done_vector = self._survey(survey.id)
                life = _release(survey.id, state, done_digest, expected_digest)
                if state == life.state:
                    result = _vector(done_vector)
                else:
                    rows = self._db.execute("SELECT sid, share FROM shares WHERE survey = ?", (survey.id,))
                    result = _release_sum(survey, rows, exclude, expected, expected_digest, width, rng)
                    self._db.execute(
                        "UPDATE surveys SET state = ?, release_digest = ?, release_vector = ? WHERE id = ?",
                        (life.state, expected_digest, result.astype("<u8").tobytes(), survey.id),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return result

    def shutdown(self):
        with self._lock:
            self._db.close()


def _release(survey: str, state: str, done_digest: bytes | None, expected_digest: bytes) -> Lifecycle:
    """The lifecycle after releasing over ``expected_digest``: unchanged for a replay of the same set."""
    with rules():
        return Lifecycle(survey, state, None, done_digest and bytes(done_digest)).release(expected_digest)


def _vector(done_vector: bytes | None) -> np.ndarray:
    assert done_vector is not None, "a released survey keeps its vector"
    return np.frombuffer(bytes(done_vector), dtype="<u8").astype(np.uint64)


def _release_sum(survey: Survey, rows, exclude, expected, expected_digest, width, rng) -> np.ndarray:
    """The noisy partial sum over the rows not excluded; shares are folded as they stream past (memory
    stays at one fold chunk, not the whole survey), ids are kept to check the set."""
    kept: list[bytes] = []

    def shares():
        for sid, share in rows:
            sid = bytes(sid)
            if sid not in exclude:
                kept.append(sid)
                yield bytes(share)

    total = fold(shares(), width)
    if len(kept) != expected or id_set_digest(kept) != expected_digest:
        raise StoreError(
            StoreError.MISMATCH,
            f"survey {survey.id!r}: this aggregator holds {len(kept)} of the "
            f"{expected} submissions to be counted, or a different set",
        )
    if width != survey.width:
        raise StoreError(StoreError.MISMATCH, f"survey {survey.id!r} is stored with another definition")
    return noisy_partial(survey, total, rng)


class PostgresStore(ShareStore):
    """PostgreSQL via psycopg 3, for deployments: ``postgresql://user@host/db``."""

    def __init__(self, dsn: str, schema: str = "public"):
        import psycopg

        self._db = psycopg.connect(dsn, autocommit=True)
        self._lock = threading.Lock()
        self._schema = schema
        with self._db.transaction():
            self._db.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            self._db.execute(f'SET search_path TO "{schema}"')
            self._db.execute("""
                CREATE TABLE IF NOT EXISTS surveys (
                    id TEXT PRIMARY KEY, digest BYTEA NOT NULL, width INTEGER NOT NULL,
                    state TEXT NOT NULL DEFAULT 'open', release_digest BYTEA, release_vector BYTEA)""")
            self._db.execute("""
                CREATE TABLE IF NOT EXISTS shares (
                    survey TEXT NOT NULL, sid BYTEA NOT NULL, share BYTEA NOT NULL,
                    PRIMARY KEY (survey, sid))""")

    def _survey(self, survey: str, lock: str = "") -> tuple:
        row = self._db.execute(
            f"SELECT state, width, release_digest, release_vector FROM surveys WHERE id = %s {lock}", (survey,)
        ).fetchone()
        if row is None:
            raise StoreError(StoreError.UNKNOWN_SURVEY, f"unknown survey {survey!r}")
        return row

    def register(self, survey, digest, width):
        with self._lock, self._db.transaction():
            self._db.execute(
                "INSERT INTO surveys (id, digest, width) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (survey, digest, width),
            )
            row = self._db.execute("SELECT digest, width FROM surveys WHERE id = %s", (survey,)).fetchone()
        assert row is not None, "registered just above"
        if (bytes(row[0]), row[1]) != (digest, width):
            raise StoreError(StoreError.MISMATCH, f"survey {survey!r} is stored with another definition")

    def put(self, survey, items):
        with self._lock, self._db.transaction():
            state, width, _, _ = self._survey(survey, "FOR SHARE")
            with rules():
                Lifecycle(survey, state).submit(len(items))
            _check_items(items, width)
            first = _first(items)
            sids = list(first)
            inserted = {
                bytes(r[0])
                for r in self._db.execute(
                    "INSERT INTO shares (survey, sid, share) SELECT %s, s, v FROM unnest(%s::bytea[], %s::bytea[]) "
                    "AS t(s, v) ON CONFLICT DO NOTHING RETURNING sid",
                    (survey, sids, [first[s] for s in sids]),
                ).fetchall()
            }
            others = [s for s in sids if s not in inserted]
            existing = {}
            if others:
                existing = {
                    bytes(s): bytes(v)
                    for s, v in self._db.execute(
                        "SELECT sid, share FROM shares WHERE survey = %s AND sid = ANY(%s::bytea[])", (survey, others)
                    ).fetchall()
                }
        return _statuses(items, existing, first)

    def state(self, survey):
        with self._lock, self._db.transaction():
            state, width, _, _ = self._survey(survey)
            (count,) = self._db.execute("SELECT COUNT(*) FROM shares WHERE survey = %s", (survey,)).fetchone() or (0,)
        return SurveyState(state, count, width)

    def close(self, survey):
        with self._lock, self._db.transaction():
            state, _, _, _ = self._survey(survey, "FOR UPDATE")
            after = Lifecycle(survey, state).close(verify=False).state
            self._db.execute("UPDATE surveys SET state = %s WHERE id = %s", (after, survey))
        return self.state(survey)

    def ids(self, survey):
        with self._lock, self._db.transaction(), rules():
            state, _, _, _ = self._survey(survey)
            Lifecycle(survey, state).final_ids()
            rows = self._db.execute("SELECT sid FROM shares WHERE survey = %s ORDER BY sid", (survey,)).fetchall()
        return (bytes(r[0]) for r in rows)

    def release(self, survey, exclude, expected, expected_digest, rng=None):
        exclude = set(exclude)
        with self._lock, self._db.transaction():
            state, width, done_digest, done_vector = self._survey(survey.id, "FOR UPDATE")
            life = _release(survey.id, state, done_digest, expected_digest)
            if state == life.state:
                return _vector(done_vector)
            with self._db.cursor(name="release_rows") as rows:  # server-side: rows stream, not all in memory
                rows.itersize = 4096
                rows.execute("SELECT sid, share FROM shares WHERE survey = %s", (survey.id,))
                result = _release_sum(survey, rows, exclude, expected, expected_digest, width, rng)
            self._db.execute(
                "UPDATE surveys SET state = %s, release_digest = %s, release_vector = %s WHERE id = %s",
                (life.state, expected_digest, result.astype("<u8").tobytes(), survey.id),
            )
        return result

    def shutdown(self):
        with self._lock:
            self._db.close()


class MemoryStore(ShareStore):
    """No durability at all: the benchmark's baseline and ``--store memory`` for experiments."""

    def __init__(self):
        self._surveys: dict[str, dict] = {}
        self._lock = threading.Lock()

    def _survey(self, survey: str) -> dict:
        if survey not in self._surveys:
            raise StoreError(StoreError.UNKNOWN_SURVEY, f"unknown survey {survey!r}")
        return self._surveys[survey]

    def register(self, survey, digest, width):
        with self._lock:
            s = self._surveys.setdefault(
                survey, {"digest": digest, "width": width, "state": "open", "shares": {}, "release": None}
            )
        if (s["digest"], s["width"]) != (digest, width):
            raise StoreError(StoreError.MISMATCH, f"survey {survey!r} is stored with another definition")

    def put(self, survey, items):
        with self._lock:
            s = self._survey(survey)
            with rules():
                Lifecycle(survey, s["state"]).submit(len(items))
            _check_items(items, s["width"])
            first = _first(items)
            existing = {sid: s["shares"][sid] for sid in first if sid in s["shares"]}
            for sid, share in first.items():
                s["shares"].setdefault(sid, share)
        return _statuses(items, existing, first)

    def state(self, survey):
        with self._lock:
            s = self._survey(survey)
            return SurveyState(s["state"], len(s["shares"]), s["width"])

    def close(self, survey):
        with self._lock:
            s = self._survey(survey)
            s["state"] = Lifecycle(survey, s["state"]).close(verify=False).state
        return self.state(survey)

    def ids(self, survey):
        with self._lock, rules():
            s = self._survey(survey)
            Lifecycle(survey, s["state"]).final_ids()
            return iter(sorted(s["shares"]))

    def release(self, survey, exclude, expected, expected_digest, rng=None):
        exclude = set(exclude)
        with self._lock:
            s = self._survey(survey.id)
            done = s["release"] or (None, None)
            life = _release(survey.id, s["state"], done[0], expected_digest)
            if s["state"] == life.state:
                return _vector(done[1])
            result = _release_sum(survey, s["shares"].items(), exclude, expected, expected_digest, s["width"], rng)
            s["state"], s["release"] = life.state, (expected_digest, result.astype("<u8").tobytes())
        return result

    def shutdown(self):
        pass


def open_store(url: str, pg_schema: str = "public") -> ShareStore:
    """``memory``, ``postgresql://...`` (tables in ``pg_schema``), or a SQLite file:
    ``sqlite:///abs/path.db``, ``sqlite://relative.db`` or a plain path."""
    if url == "memory":
        return MemoryStore()
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url, pg_schema)
    return SqliteStore(url.removeprefix("sqlite://"))
