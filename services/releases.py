"""A release on the wire and on disk: its parts, the checks made before any budget is spent, its durable copy.

The coordinator turns a :class:`mpcdp.protocol.Release` into QueryReplyParts
(:func:`parts`): a QueryReply with one typed ReleaseEntry per entry (its value,
its block's noise standard deviation and its interval), every scalar and
every vector of at most one chunk inline, then a histogram's category labels
in batches, then each larger vector as a ReleaseVector and its ~1 MiB chunks
(:mod:`services.streams`). A histogram's cells always travel as a vector
labelled by those batches, so a release of any size within the spec's bounds
fits gRPC's message limits. The parts carrying a vector's bytes are made in
their wire form at once, as pieces (:func:`vector_parts`: the protobuf encoding's
few header bytes, then the float64 bytes where they lie, not copied), not built
as messages and serialized (three copies); :func:`wire_pieces` gives any part
as such pieces, which the query link sends and the release store writes as they
are, and :func:`wire_form` (their join: one copy, for gRPC) is the Coordinator
service's serializer (:func:`add_coordinator_to_server`), so every kind of part
goes out the same, and the release store keeps and returns the same bytes.

:func:`check_presentation` runs the release's description (noise and
intervals) on an all-zero result before a session starts, so a presentation
option that cannot be honoured (a confidence level whose intervals cannot be
computed) is refused before any ledger is charged.

:class:`ReleaseStore` keeps each release's parts under its session id in the
coordinator's state directory (an owner-only SQLite database, committed before
the coordinator charges its ledger, the releases kept meanwhile in one
transaction), so spent budget always yields its result: :meth:`CoordinatorNode.Fetch` returns it
again at no cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import re
import sqlite3
import struct
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import grpc
import numpy as np

from mpcdp import ring
from mpcdp.protocol import QuerySpec, SpecError
from mpcdp.protocol.noise import describe
from mpcdp.protocol.statistics import codec_for
from mpcdp.sqlite_files import open_private
from services import audit, convert, streams
from services.wire.mpcdp.v1 import federation_pb2 as pb

log = logging.getLogger("mpcdp.releases")


def audit_released(session: bytes, client: str, spec, delta: float = 0.0) -> None:
    """Record a release in the audit log: the session, the analyst, the statistic, the parties and the loss
    (no epsilon for an exact query). ``spec`` is a sum's QuerySpec or a comparison's spec."""
    audit.record(
        "released",
        session=session.hex(),
        client=client,
        statistic=spec.statistic,
        parties=",".join(spec.parties),
        epsilon=None if spec.is_exact else spec.epsilon,
        delta=delta or None,
        exact=spec.is_exact,
    )


def audit_batch(
    session: bytes, client: str, specs, spent: tuple[float, float] | None, parties=None, what: str | None = None
) -> None:
    """Record a batch's releases (full mesh or many-party) in the audit log: its statistics, the parties
    (``parties``: those counted, default the specs'), and ``spent``, their losses composed (None: all exact)."""
    audit.record(
        "released",
        session=session.hex(),
        client=client,
        statistic=",".join(s.statistic for s in specs),
        parties=",".join(parties if parties is not None else specs[0].parties),
        epsilon=spent[0] if spent else None,
        delta=(spent[1] if spent else 0.0) or None,
        exact=spent is None,
        what=what,
    )


def composed(specs, released) -> tuple[float, float] | None:
    """Epsilon and delta of a batch's releases together: their losses (``Release.loss``: a many-party release's
    restated for the counted parties) composed, as every ledger was charged; None: every one exact."""
    total = None
    for r in released:
        if r.loss is not None:
            total = r.loss if total is None else total + r.loss
    return None if total is None else total.epsilon_delta(sum(s.delta for s in specs))


def batch_parts(specs, released, confidence: float, sharing_note: str = "", parts_of=None) -> list:
    """The reply parts of a batch's releases (full mesh or many-party), one release after the other: each
    reply names its ``index``, and in a batch of more than one the batch's size and composed loss.
    ``parts_of(spec, release, confidence)``: one release's parts (default :func:`parts`)."""
    spent = composed(specs, released) if len(specs) > 1 else None
    out: list = []
    for index, (spec, release) in enumerate(zip(specs, released, strict=True)):
        mine = list(parts_of(spec, release, confidence) if parts_of else parts(spec, release, confidence, sharing_note))
        reply = mine[0].reply
        reply.index = index
        if len(specs) > 1:
            reply.batch_size = len(specs)
            if spent is not None:
                reply.batch_epsilon, reply.batch_delta = spent
        out.extend(mine)
    return out


def check_presentation(spec: QuerySpec, confidence: float) -> None:
    """Refuse (SpecError) a confidence level this query's release could not be described with."""
    if not 0 < confidence < 1:
        raise SpecError("confidence", f"must be strictly between 0 and 1, got {confidence!r}")
    if spec.is_exact:
        return
    codec = codec_for(spec)
    try:
        describe(spec, codec.decode(ring.zeros(codec.length)), confidence)
    except (ValueError, ArithmeticError) as exc:
        raise SpecError(
            "confidence",
            f"{confidence!r} gives no usable intervals for this query ({exc}); choose a level such as 0.95",
        ) from None


Large = list[
    tuple[str, "pb.ReleaseVector.Part", np.ndarray]
]  # (entry, ReleaseVector.Part, float64 values) streamed after the reply


def fill(values: pb.Values, value, name: str, part: pb.ReleaseVector.Part, large: Large) -> None:
    """Set ``values`` to ``value``: None (unset), a label, a whole number (exactly), a number, or a float64
    vector (packed, or streamed after the reply when larger than a chunk: appended to ``large``)."""
    if value is None:
        return
    if isinstance(value, str):
        values.label = value
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        values.integer = int(value)
    elif isinstance(value, (list, tuple, np.ndarray)):
        packed = np.asarray(value, dtype="<f8").reshape(-1)
        if packed.nbytes <= streams.CHUNK_BYTES:
            values.packed = packed.tobytes()
        else:
            values.streamed = packed.size
            large.append((name, part, packed))
    else:
        values.scalar = float(value)


def _interval(msg: pb.Interval, interval, name: str, categories, large: Large) -> None:
    """An interval of :func:`mpcdp.protocol.noise.describe`: None, [lower, upper], {half_width},
    {lower: array, upper: array}, or per category {category: [lower, upper]}."""
    if interval is None:
        msg.unavailable = True
    elif isinstance(interval, (list, tuple)):
        msg.ends.lower.scalar, msg.ends.upper.scalar = map(float, interval)
    elif "half_width" in interval:
        msg.half_width = float(interval["half_width"])
    else:
        if categories:  # labelled cells, in the query's order
            cells = [interval[c] for c in categories]
            interval = {"lower": [c[0] for c in cells], "upper": [c[1] for c in cells]}
        fill(msg.ends.lower, interval["lower"], name, pb.ReleaseVector.PART_LOWER, large)
        fill(msg.ends.upper, interval["upper"], name, pb.ReleaseVector.PART_UPPER, large)


def entries(result: dict, categories=(), noise_std=None, intervals=None, large: Large | None = None) -> list:
    """ReleaseEntries of a release's ``result``: a dict-valued entry is a vector of cells in ``categories``'
    order (labelled by the ReleaseLabels that follow the reply); vectors larger than a chunk go to ``large``."""
    large = [] if large is None else large
    noise_std, intervals = noise_std or {}, intervals or {}
    out = []
    for name in [*result, *(n for n in noise_std if n not in result)]:
        entry = pb.ReleaseEntry(name=name)
        value = result.get(name)
        labelled = isinstance(value, dict)
        if isinstance(value, dict):
            value = [value[c] for c in categories]
        fill(entry.value, value, name, pb.ReleaseVector.PART_VALUE, large)
        if name in noise_std:
            entry.noise_std = float(noise_std[name])
        if name in intervals:
            _interval(entry.interval, intervals[name], name, categories if labelled else (), large)
        out.append(entry)
    return out


def parts(spec: QuerySpec, release, confidence: float, sharing_note: str = ""):
    """The release as QueryReplyParts (see the module docstring); ``sharing_note``: why the coordinator ran
    another sharing than the analyst asked."""
    described = None if spec.is_exact else describe(spec, release.result, confidence)
    large: Large = []
    reply = pb.QueryReply(
        session_id=spec.session_id,
        statistic=convert.statistic_wire(spec.statistic),
        entries=entries(
            release.result,
            spec.categories,
            described.noise_std if described else None,
            described.intervals if described else None,
            large,
        ),
        parties=spec.parties,
        epsilon=spec.epsilon,  # None: absent, an exact release
        delta=spec.delta,
        mechanism=pb.MECHANISM_UNSPECIFIED if spec.is_exact else convert.mechanism_wire(spec.mechanism),
        confidence=0.0 if spec.is_exact else confidence,
        sharing=convert.sharing_wire(spec.sharing),
        sharing_note=sharing_note,
    )
    yield pb.QueryReplyPart(reply=reply)
    if any(isinstance(v, dict) for v in release.result.values()):
        for batch in streams.batches(spec.categories, _label_bytes):
            yield pb.QueryReplyPart(labels=pb.ReleaseLabels(categories=batch))
    for name, part_of, packed in large:
        yield from vector_parts(name, part_of, packed)


Pieces = tuple[bytes | memoryview, ...]  # a part's wire form as consecutive pieces (its header, its data in place)
Part = pb.QueryReplyPart | bytes | Pieces  # a part as a message, or already in its wire form (whole, or as pieces)


def vector_parts(name: str, part_of: pb.ReleaseVector.Part, packed: np.ndarray) -> Iterator[Pieces]:
    """The wire form of the QueryReplyParts streaming ``packed`` (float64): a ReleaseVector holding its first
    chunk, then a VectorChunk part per further chunk. Each is the protobuf encoding of that message as two
    pieces: its header bytes, then the chunk's bytes, a view of ``packed`` (never copied here; ``packed`` must
    not change while the part is in use). ``pb.QueryReplyPart.FromString`` of their join reads back the
    message."""
    for offset, piece in streams.chunks(packed, convert.RING_BYTES):
        chunk = _chunk(offset, piece)
        if offset == 0:
            head = pb.ReleaseVector(name=name, part=part_of, length=packed.size).SerializeToString()
            vector = [head, _key(_FIRST, _length(chunk)), *chunk]
            encoded = [_key(_VECTOR, _length(vector)), *vector]
        else:
            encoded = [_key(_CHUNK, _length(chunk)), *chunk]
        yield b"".join(encoded[:-1]), encoded[-1]


_VECTOR = pb.QueryReplyPart.DESCRIPTOR.fields_by_name["vector"].number
_CHUNK = pb.QueryReplyPart.DESCRIPTOR.fields_by_name["chunk"].number
_FIRST = pb.ReleaseVector.DESCRIPTOR.fields_by_name["first"].number
_OFFSET = pb.VectorChunk.DESCRIPTOR.fields_by_name["offset"].number
_DATA = pb.VectorChunk.DESCRIPTOR.fields_by_name["data"].number
_VARINT, _BYTES = 0, 2  # protobuf wire types


def _chunk(offset: int, data: memoryview) -> list:
    """A VectorChunk's encoding, in pieces (``data`` not copied)."""
    return [_varint(_OFFSET << 3 | _VARINT), _varint(offset), _key(_DATA, len(data)), data]


def _key(field: int, length: int) -> bytes:
    """The key and length of a length-delimited field."""
    return _varint(field << 3 | _BYTES) + _varint(length)


def _length(pieces: list) -> int:
    return sum(len(p) for p in pieces)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class Chunk(NamedTuple):
    """A VectorChunk part as :func:`read_part` takes it off the wire: ``data`` is a view of the received bytes."""

    offset: int
    data: memoryview


def read_part(data: bytes) -> pb.QueryReplyPart | Chunk:
    """A QueryReplyPart from its bytes (the analyst's deserializer): a VectorChunk part encoded as
    :func:`vector_parts` writes it is a :class:`Chunk` over ``data`` (no copy; protobuf would copy its megabyte
    twice), anything else is parsed by protobuf (DecodeError if it is no QueryReplyPart)."""
    view = memoryview(data)
    try:
        at, key = _read_varint(view, 0)
        at, length = _read_varint(view, at)
        if key == _CHUNK << 3 | _BYTES and at + length == len(view):
            at, key = _read_varint(view, at)
            at, offset = _read_varint(view, at)
            if key == _OFFSET << 3 | _VARINT:
                at, key = _read_varint(view, at)
                at, length = _read_varint(view, at)
                if key == _DATA << 3 | _BYTES and at + length == len(view):
                    return Chunk(offset, view[at:])
    except IndexError:  # truncated: protobuf says what is wrong
        pass
    return pb.QueryReplyPart.FromString(data)


def _read_varint(view: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = view[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80 or shift > 63:
            return at, value
        shift += 7


def wire_pieces(part: Part) -> Pieces:
    """A part's bytes on the wire and in the store, as the pieces they are made of (concatenated, the wire form):
    a message serialized, a part made in its wire form (bytes, or pieces) as it is."""
    if isinstance(part, tuple):
        return part
    return (part if isinstance(part, bytes) else part.SerializeToString(),)


def wire_form(part: Part) -> bytes:
    """A part's wire form as one buffer (gRPC's serializer; the store returns parts so): its pieces joined."""
    if isinstance(part, tuple):
        return b"".join(part)
    return part if isinstance(part, bytes) else part.SerializeToString()


class CoordinatorStub:
    """The Coordinator service's stub (as ``pb_grpc.CoordinatorStub``) with :func:`read_part` as the deserializer
    of its QueryReplyParts."""

    def __init__(self, channel: grpc.aio.Channel):
        service = "/mpcdp.v1.Coordinator"
        self.Query = channel.unary_stream(
            f"{service}/Query",
            request_serializer=pb.QueryRequest.SerializeToString,
            response_deserializer=read_part,
            _registered_method=True,
        )
        self.Fetch = channel.unary_stream(
            f"{service}/Fetch",
            request_serializer=pb.FetchRequest.SerializeToString,
            response_deserializer=read_part,
            _registered_method=True,
        )


def add_coordinator_to_server(servicer, server: grpc.aio.Server) -> None:
    """Serve the Coordinator service (every method of its proto) with :func:`wire_form` as the serializer of
    its QueryReplyParts, so parts made in their wire form go out as they are."""
    service = pb.DESCRIPTOR.services_by_name["Coordinator"]
    handlers = {}
    for method in service.methods:
        kind = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(method.client_streaming, method.server_streaming)]
        reply = getattr(pb, method.output_type.name)
        handlers[method.name] = kind(
            getattr(servicer, method.name),
            request_deserializer=getattr(pb, method.input_type.name).FromString,
            response_serializer=wire_form if reply is pb.QueryReplyPart else reply.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)  # as generated code does


def _label_bytes(label: str) -> int:
    return len(label.encode()) + 8  # the string and its field overhead, generously


_SESSION = re.compile(r"^[0-9a-f]{32}$")
_LENGTH = struct.Struct(">I")  # a blob's length in a file of parts (and in a release file of the old form)
_INLINE_BYTES = 64 << 10  # a release with more bytes of parts has them in a file of its own, <session>.parts
_SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
    session BLOB PRIMARY KEY,  -- 16 bytes
    client TEXT NOT NULL,      -- who may fetch it
    exact INTEGER NOT NULL,    -- 1: charged no budget
    created REAL NOT NULL,     -- seconds since the epoch
    parts INTEGER NOT NULL,    -- how many parts it has
    crc INTEGER NOT NULL,      -- zlib.crc32 of its parts, one after the other
    in_file INTEGER NOT NULL   -- 1: its parts are in <session>.parts, not in the table parts
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parts (
    session BLOB NOT NULL,
    idx INTEGER NOT NULL,
    data BLOB NOT NULL,        -- a QueryReplyPart in its wire form
    PRIMARY KEY (session, idx)
);
CREATE TRIGGER IF NOT EXISTS forget_parts AFTER DELETE ON releases BEGIN  -- an operator deletes releases only
    DELETE FROM parts WHERE session = old.session;
END;
"""
_BUSY_S = 30.0  # how long a connection waits for another's lock (another coordinator on the folder)
_ORPHAN_S = 3600.0  # a parts file this old without its row is a crash's leftover, never another writer's in flight
_PARTS_FILE = re.compile(r"^([0-9a-f]{32})\.parts(\.tmp)?$")


class StoreError(OSError):
    """A release could not be kept (its transaction was rolled back), or the store is closed."""


class ReleaseStore:
    """Released parts by session id, in an SQLite database, ``releases.db`` in ``folder`` (created 0700, the
    database 0600).

    A release is a row (who may fetch it, whether it was exact, when, a CRC-32 of its parts) and one row per
    part in its wire form. A release of more than 64 KiB of parts (a vector's ~1 MiB parts) has them in a file of
    its own instead, ``<session>.parts``, each part length-prefixed and written from where it lies (never joined),
    fsynced and linked into the folder (and the folder fsynced) before its row's transaction begins: SQLite
    would write them twice (its log, then the database) at ~5x the CPU. It is kept once the transaction holding
    its row has committed (WAL, ``synchronous=FULL``: the log is fsynced at each commit).
    :meth:`keep`, on an event loop, commits the releases kept meanwhile in one transaction (group commit) on the
    store's one writer thread, off the loop: a keep returns once its own transaction committed, and a failed
    commit fails exactly the keeps in it (rolled back, so none of them is found later). :meth:`put` is the
    blocking form. :meth:`get` reads on a read-only connection of its own, so a reader (Fetch, another process,
    a test) never changes the database, and still works after :meth:`close`. SQLite's locks let two writers (say
    a coordinator started twice) share a folder without losing each other's releases; the index lives on disk,
    so the store's memory and opening time do not grow with the releases kept. A parts file left without its row
    (a crash between the file and its commit, or an operator's DELETE of the row) is removed by the next store
    opened on the folder once it is an hour old (a younger one may be another writer's, not yet committed), and
    replaced by a keep of its session. Releases kept as one file each
    (``<session>.release``, by versions before the database) are still found."""

    DATABASE = "releases.db"

    def __init__(self, folder):
        self.folder = Path(folder)
        made = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.folder / self.DATABASE
        self._uri = f"{self.path.resolve().as_uri()}?mode=ro"
        try:  # owner-only from the start (SQLite gives its -wal and -shm files the database's mode)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        else:  # the new names durable: the database's in the folder, the folder's in its parent
            _fsync_folder(self.folder)
            if made:
                _fsync_folder(self.folder.parent)
        db = open_private(self.path)  # WAL, synchronous=FULL
        try:
            db.executescript(_SCHEMA)
            self._remove_orphans(db)
        finally:
            db.close()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="release-store")  # its thread started at first use
        self._db: sqlite3.Connection | None = None  # the writer's connection, used on its thread only
        self._queue: list[tuple[tuple, asyncio.Future]] = []  # releases waiting for the next transaction
        self._committing: asyncio.Task | None = None
        self._closed = False

    def _remove_orphans(self, db: sqlite3.Connection) -> None:
        """Remove the parts files left without their row, older than _ORPHAN_S: a crash between a file and its
        commit (``.parts.tmp``: during its write), or an operator's DELETE of the row. A younger one may be
        another writer's on this folder, written and not yet committed: left for a later open. The rows are
        read in a write transaction, so no other writer commits one meanwhile."""
        cutoff = time.time() - _ORPHAN_S
        old = []
        for path in self.folder.iterdir():
            named = _PARTS_FILE.match(path.name)
            with contextlib.suppress(FileNotFoundError):
                if named and path.stat().st_mtime < cutoff:
                    old.append((path, bytes.fromhex(named[1]), bool(named[2])))
        if not old:
            return
        removed = 0
        try:  # a cleanup: its failure does not stop the store from opening
            db.execute("BEGIN IMMEDIATE")
            try:
                for path, sid, tmp in old:
                    if tmp or not db.execute("SELECT 1 FROM releases WHERE session = ? AND in_file", (sid,)).fetchone():
                        path.unlink(missing_ok=True)
                        removed += 1
            finally:
                db.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            log.warning("could not remove the parts files without their release from %s: %s", self.folder, exc)
        if removed:
            log.warning("removed %d parts file(s) without their release from %s", removed, self.folder)

    def _in_the_way(self, db: sqlite3.Connection, sid: bytes) -> StoreError | None:
        """Why ``sid``'s parts file, there already, stays; None if it was an orphan (no row, older than
        _ORPHAN_S), now removed."""
        if db.execute("SELECT 1 FROM releases WHERE session = ?", (sid,)).fetchone():
            return StoreError(errno.EEXIST, f"a release of session {sid.hex()} is kept already")
        path = self.folder / f"{sid.hex()}.parts"
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime >= time.time() - _ORPHAN_S:
                return StoreError(
                    errno.EEXIST,
                    f"a parts file of session {sid.hex()} is there without its release (another writer's not yet"
                    " committed, or a crash's: replaced once an hour old)",
                )
        path.unlink(missing_ok=True)
        return None

    def _item(self, session: str, client: str, exact: bool, released: list) -> tuple:
        if not _SESSION.match(session):
            raise ValueError("a session id is 32 lower-case hex digits")
        if self._closed:
            raise StoreError(errno.EBADF, "the release store is closed")
        return bytes.fromhex(session), client, exact, time.time(), released

    def put(self, session: str, client: str, exact: bool, released: list) -> None:
        """Keep ``released`` (QueryReplyParts, as messages or in their wire form) for ``client``; committed when
        this returns (StoreError if not)."""
        item = self._item(session, client, exact, released)
        try:
            (outcome,) = self._writer.submit(self._commit, [item]).result()
        except RuntimeError:  # the writer was shut down meanwhile
            raise StoreError(errno.EBADF, "the release store is closed") from None
        if outcome is not None:
            raise outcome

    async def keep(self, session: str, client: str, exact: bool, released: list) -> None:
        """:meth:`put` for an event loop, by group commit: returns once the transaction holding this release has
        committed; the releases kept meanwhile share it (StoreError for each of them if it failed)."""
        item = self._item(session, client, exact, released)
        done = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._committing is None or self._committing.done():
            self._committing = asyncio.ensure_future(self._commit_queued())
        await done  # cancelled: the release is still kept

    async def _commit_queued(self) -> None:
        """Commit what is queued, one transaction at a time, until nothing is; settle each keep with its own
        transaction's outcome."""
        loop = asyncio.get_running_loop()
        while self._queue:
            group, self._queue = self._queue, []
            outcomes: list[StoreError | None]
            try:
                outcomes = await loop.run_in_executor(self._writer, self._commit, [item for item, _ in group])
            except RuntimeError:  # the writer was shut down: close() came first
                outcomes = [StoreError(errno.EBADF, "the release store is closed")] * len(group)
            except StoreError as exc:
                outcomes = [exc] * len(group)
            except BaseException as exc:  # anything else: never a keep left waiting, each hears it
                failed = StoreError(errno.EIO, f"could not keep {len(group)} release(s): {exc!r}")
                if not isinstance(exc, Exception):  # cancelled (the loop is closing): the queued keeps hear it too
                    _settle(group + self._queue, [failed] * (len(group) + len(self._queue)))
                    self._queue = []
                    raise
                log.error("keeping %d release(s) failed", len(group), exc_info=exc)
                outcomes = [failed] * len(group)
            _settle(group, outcomes)

    def _commit(self, items: list[tuple]) -> list[StoreError | None]:
        """Keep ``items`` in one transaction (on the writer thread; a large release's parts file first); their
        outcomes (a session kept before: an error for that one only). StoreError if the transaction failed:
        rolled back (and the parts files of this group removed), none of them kept."""
        db = self._db
        rows: list[tuple | StoreError] = []
        files: list[Path] = []  # written for this group: removed if its transaction fails
        try:
            if db is None:  # opened here, so a failure to open (EMFILE, a locked file) fails the group too
                db = self._db = open_private(self.path)
            for sid, client, exact, created, released in items:
                blobs = [wire_pieces(p) for p in released]  # each part's pieces: written as they lie (no join)
                crc = 0
                for blob in blobs:
                    for piece in blob:
                        crc = zlib.crc32(piece, crc)
                in_file = sum(len(piece) for blob in blobs for piece in blob) > _INLINE_BYTES
                if in_file:
                    try:
                        files.append(self._write_parts(sid.hex(), blobs))
                    except FileExistsError:
                        refused = self._in_the_way(db, sid)  # None: a crash's leftover, removed
                        if refused is not None:
                            rows.append(refused)
                            continue
                        files.append(self._write_parts(sid.hex(), blobs))
                rows.append((sid, client, int(exact), created, len(blobs), crc, int(in_file), blobs))
            if files:
                _fsync_folder(self.folder)
            outcomes: list[StoreError | None] = []
            db.execute("BEGIN IMMEDIATE")
            for row in rows:
                if isinstance(row, StoreError):
                    outcomes.append(row)
                    continue
                *head, blobs = row
                if not db.execute("INSERT OR IGNORE INTO releases VALUES (?, ?, ?, ?, ?, ?, ?)", head).rowcount:
                    outcomes.append(StoreError(errno.EEXIST, f"a release of session {row[0].hex()} is kept already"))
                elif not row[6]:
                    parts = ((row[0], i, b"".join(b)) for i, b in enumerate(blobs))  # short: joined
                    db.executemany("INSERT INTO parts VALUES (?, ?, ?)", parts)
                    outcomes.append(None)
                else:
                    outcomes.append(None)
            db.execute("COMMIT")
        except BaseException as exc:  # rolled back and its files removed, whatever failed
            if db is not None and db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            for path in files:
                path.unlink(missing_ok=True)
            if not isinstance(exc, (sqlite3.Error, OSError)):
                raise  # a bug, not the disk: _commit_queued fails the group with it
            full = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            code = errno.ENOSPC if full else getattr(exc, "errno", None) or errno.EIO
            raise StoreError(code, f"could not keep {len(items)} release(s): {exc}") from None
        return outcomes

    def _write_parts(self, session: str, blobs: list[Pieces]) -> Path:
        """Write ``blobs`` (each length-prefixed, its pieces from where they lie) to ``<session>.parts``, fsynced;
        linked in only if no such file is there (FileExistsError: a release of this session was kept)."""
        path = self.folder / f"{session}.parts"
        tmp = self.folder / f"{session}.parts.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for blob in blobs:
                _write_all(fd, _LENGTH.pack(sum(map(len, blob))))
                for piece in blob:
                    _write_all(fd, piece)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # never replaces a file there
        finally:
            tmp.unlink()
        return path

    def get(self, session: str):
        """``(meta, parts)`` kept for ``session`` (the parts in their wire form), or None: not kept, or damaged
        (logged as an error: never served in part)."""
        if not _SESSION.match(session):
            return None
        sid = bytes.fromhex(session)
        try:
            db = sqlite3.connect(self._uri, uri=True, timeout=_BUSY_S)
        except sqlite3.OperationalError:  # no database (yet): only releases kept as files
            return self._get_file(session)
        try:
            row = db.execute(
                "SELECT client, exact, created, parts, crc, in_file FROM releases WHERE session = ?", (sid,)
            )
            found = row.fetchone()
            if found is None:
                return self._get_file(session)
            client, exact, created, count, crc, in_file = found
            if in_file:
                blobs = _blobs((self.folder / f"{session}.parts").read_bytes()) or []
            else:
                blobs = [b for (b,) in db.execute("SELECT data FROM parts WHERE session = ? ORDER BY idx", (sid,))]
        except (sqlite3.DatabaseError, OSError) as exc:
            log.error("the release of session %s in %s cannot be read: %s", session, self.folder, exc)
            return None
        finally:
            db.close()
        actual = 0
        for blob in blobs:
            actual = zlib.crc32(blob, actual)
        if len(blobs) != count or actual != crc:
            log.error(
                "the release of session %s in %s is damaged (its checksum differs): not served", session, self.path
            )
            return None
        return {"client": client, "exact": bool(exact), "created": created}, blobs

    def _get_file(self, session: str):
        """A release kept as a file of its own: the meta, then each part, each blob length-prefixed."""
        try:
            blobs = _blobs((self.folder / f"{session}.release").read_bytes())
        except FileNotFoundError:
            return None
        if not blobs:
            log.error("the release file of session %s in %s is damaged: not served", session, self.folder)
            return None
        return json.loads(blobs[0]), blobs[1:]

    def close(self) -> None:
        """Refuse further keeps, let the transaction in progress finish, and close the writer's connection
        (:meth:`get` still reads)."""
        self._closed = True
        self._writer.submit(self._close_writer)
        self._writer.shutdown(wait=True)

    def _close_writer(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _settle(group: list[tuple[tuple, asyncio.Future]], outcomes: list[StoreError | None]) -> None:
    """Each keep of ``group`` done with its outcome (None: kept)."""
    for (_, done), outcome in zip(group, outcomes, strict=True):
        if done.done():
            continue
        if outcome is None:
            done.set_result(None)
        else:
            done.set_exception(outcome)


def _blobs(data: bytes) -> list[bytes] | None:
    """The length-prefixed blobs ``data`` holds, or None if their lengths do not add up to it."""
    blobs, at = [], 0
    while at + _LENGTH.size <= len(data):
        (n,) = _LENGTH.unpack_from(data, at)
        blobs.append(data[at + _LENGTH.size : at + _LENGTH.size + n])
        at += _LENGTH.size + n
    return blobs if at == len(data) else None


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
