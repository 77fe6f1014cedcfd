"""A release on the wire and on disk: its parts, the checks made before any budget is spent, its durable copy.

The coordinator turns a :class:`mpcdp.protocol.Release` into QueryReplyParts
(:func:`parts`): a QueryReply with every scalar and every vector of at most
one chunk, then a histogram's category labels in batches, then each larger
vector as a ReleaseVector and its ~1 MiB chunks. A histogram's cells always
travel as the vector "histogram" labelled by those batches, so a release of
any size within the spec's bounds fits gRPC's message limits.

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
from google.protobuf import struct_pb2

from mpcdp import ring
from mpcdp.protocol import QuerySpec, SpecError
from mpcdp.protocol.noise import describe
from mpcdp.protocol.statistics import statistic_for
from services import convert, streams
from services.wire.mpcdp.v1 import federation_pb2 as pb

HISTOGRAM = "histogram"


def check_presentation(spec: QuerySpec, confidence: float) -> None:
    """Refuse (SpecError) a confidence level this query's release could not be described with."""
    if not 0 < confidence < 1:
        raise SpecError("confidence", f"must be strictly between 0 and 1, got {confidence!r}")
    if spec.is_exact:
        return
    statistic = statistic_for(spec)
    try:
        describe(spec, statistic.decode(ring.zeros(statistic.length)), confidence)
    except (ValueError, ArithmeticError) as exc:
        raise SpecError(
            "confidence",
            f"{confidence!r} gives no usable intervals for this query ({exc}); choose a level such as 0.95",
        ) from None


def _cells(values: dict, categories) -> np.ndarray:
    return np.fromiter((values[c] for c in categories), dtype="<f8", count=len(categories))


def parts(spec: QuerySpec, release, confidence: float):
    """The release as QueryReplyParts (see the module docstring)."""
    result, noise, intervals = struct_pb2.Struct(), struct_pb2.Struct(), struct_pb2.Struct()
    values = dict(release.result)
    vectors = {(k, ""): v for k, v in values.items() if isinstance(v, (list, np.ndarray))}
    if spec.statistic == HISTOGRAM:
        vectors[(HISTOGRAM, "")] = _cells(values.pop(HISTOGRAM), spec.categories)
    result.update({k: v for k, v in values.items() if (k, "") not in vectors})
    if not spec.is_exact:
        described = describe(spec, release.result, confidence)
        noise.update(described.noise_std)
        for key, interval in described.intervals.items():
            if key == HISTOGRAM:
                cells = [interval[c] for c in spec.categories]
                vectors[(key, "lower")] = np.fromiter((c[0] for c in cells), dtype="<f8", count=len(cells))
                vectors[(key, "upper")] = np.fromiter((c[1] for c in cells), dtype="<f8", count=len(cells))
            elif isinstance(interval, dict) and isinstance(interval.get("lower"), (list, np.ndarray)):
                vectors.update({(key, "lower"): interval["lower"], (key, "upper"): interval["upper"]})
            else:
                intervals[key] = interval
    reply = pb.QueryReply(
        session_id=spec.session_id,
        statistic=spec.statistic,
        result=result,
        parties=spec.parties,
        exact=spec.is_exact,
        epsilon=0.0 if spec.is_exact else spec.epsilon,
        delta=spec.delta,
        mechanism="" if spec.is_exact else spec.mechanism,
        noise=noise,
        intervals=intervals,
        confidence=confidence if not spec.is_exact else 0.0,
    )
    inline = {"": reply.vectors, "lower": reply.interval_lower, "upper": reply.interval_upper}
    large = []
    for (key, end), v in vectors.items():
        packed = np.asarray(v, dtype="<f8").reshape(-1)
        if packed.nbytes <= streams.CHUNK_BYTES:
            inline[end][key] = packed.tobytes()
        else:
            large.append((key, end, packed))
    yield pb.QueryReplyPart(reply=reply)
    if spec.statistic == HISTOGRAM:
        for batch in streams.batches(spec.categories, _label_bytes):
            yield pb.QueryReplyPart(labels=pb.ReleaseLabels(categories=batch))
    for key, end, packed in large:
        for offset, piece in streams.chunks(packed, convert.RING_BYTES):
            part = pb.QueryReplyPart()
            if offset == 0:
                part.vector.name, part.vector.interval_end, part.vector.length = key, end, packed.size
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
