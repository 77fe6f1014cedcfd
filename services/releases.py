"""A release on the wire and on disk: its parts, the checks made before any budget is spent, its durable copy.

The coordinator turns a :class:`mpcdp.protocol.Release` into QueryReplyParts
(:func:`parts`): a QueryReply with one typed ReleaseEntry per entry (its value,
its block's noise standard deviation and its interval), every scalar and
every vector of at most one chunk inline, then a histogram's category labels
in batches, then each larger vector as a ReleaseVector and its ~1 MiB chunks
(:mod:`services.streams`). A histogram's cells always travel as a vector
labelled by those batches, so a release of any size within the spec's bounds
fits gRPC's message limits.

:func:`check_presentation` runs the release's description (noise and
intervals) on an all-zero result before a session starts, so a presentation
option that cannot be honoured (a confidence level whose intervals cannot be
computed) is refused before any ledger is charged.

:class:`ReleaseStore` keeps each release's parts under its session id in the
coordinator's state directory (one owner-only file per session, written
atomically before the coordinator charges its ledger), so spent budget always
yields its result: :meth:`CoordinatorNode.Fetch` returns it again at no cost.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from pathlib import Path

import numpy as np

from mpcdp import ring
from mpcdp.protocol import QuerySpec, SpecError
from mpcdp.protocol.noise import describe
from mpcdp.protocol.statistics import codec_for
from services import audit, convert, streams
from services.wire.mpcdp.v1 import federation_pb2 as pb


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


def parts(spec: QuerySpec, release, confidence: float):
    """The release as QueryReplyParts (see the module docstring)."""
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
    )
    yield pb.QueryReplyPart(reply=reply)
    if any(isinstance(v, dict) for v in release.result.values()):
        for batch in streams.batches(spec.categories, _label_bytes):
            yield pb.QueryReplyPart(labels=pb.ReleaseLabels(categories=batch))
    for name, part_of, packed in large:
        for offset, piece in streams.chunks(packed, convert.RING_BYTES):
            part = pb.QueryReplyPart()
            if offset == 0:
                part.vector.name, part.vector.part, part.vector.length = name, part_of, packed.size
                convert.set_chunk(part.vector.first, offset, bytes(piece))
            else:
                convert.set_chunk(part.chunk, offset, bytes(piece))
            yield part


def _label_bytes(label: str) -> int:
    return len(label.encode()) + 8  # the string and its field overhead, generously


_SESSION = re.compile(r"^[0-9a-f]{32}$")
_LENGTH = struct.Struct(">I")


class ReleaseStore:
    """Released parts by session id, one file per session in ``folder`` (created 0700, files 0600)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, session: str) -> Path:
        if not _SESSION.match(session):
            raise ValueError("a session id is 32 lower-case hex digits")
        return self.folder / f"{session}.release"

    def put(self, session: str, client: str, exact: bool, released: list) -> None:
        """Keep ``released`` (QueryReplyParts) for ``client``; durable when this returns."""
        path = self._path(session)
        tmp = path.with_suffix(".tmp")
        meta = json.dumps({"client": client, "exact": exact, "created": time.time()}).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            for blob in (meta, *(p.SerializeToString() for p in released)):
                f.write(_LENGTH.pack(len(blob)))
                f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def get(self, session: str):
        """``(meta, parts)`` kept for ``session``, or None."""
        try:
            data = self._path(session).read_bytes()
        except (FileNotFoundError, ValueError):
            return None
        blobs, at = [], 0
        while at < len(data):
            (n,) = _LENGTH.unpack_from(data, at)
            blobs.append(data[at + 4 : at + 4 + n])
            at += 4 + n
        return json.loads(blobs[0]), [pb.QueryReplyPart.FromString(b) for b in blobs[1:]]

    def discard(self, session: str) -> None:
        self._path(session).unlink(missing_ok=True)
