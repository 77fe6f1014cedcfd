"""The coordinator node: the Coordinator gRPC service over :class:`mpcdp.protocol.CoordinatorSession`.

For each analyst query it builds a spec with a fresh session id and a
deadline, refuses it (before any share moves) if its policy or its own ledger
says no, opens one Session stream per party, proposes, starts the sharing
once every party accepted, collects the partial sums, releases and charges
its ledger. Any failure (a party down, refusing, slow past the deadline or
dropping mid-round) aborts the session on every node with a diagnostic naming
the party, and charges nothing. Queries run one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import grpc
import numpy as np
from google.protobuf import struct_pb2

from mpcdp.protocol import CoordinatorSession, PartialSum, ProtocolError, QuerySpec, Response, SpecError, Status
from mpcdp.protocol.noise import describe
from services import convert
from services.federation import Federation
from services.tls import Identity, caller
from services.wire.mpcdp.v1 import federation_pb2 as pb
from services.wire.mpcdp.v1 import federation_pb2_grpc as pb_grpc

log = logging.getLogger("mpcdp.coordinator")
DEFAULT_TIMEOUT = 30.0
DEFAULT_CONFIDENCE = 0.95
ABORT_GRACE = 2.0  # seconds to wait for each party to confirm an abort


class SessionFailed(Exception):
    """A session aborted; ``status`` is the gRPC code to return, the text names the culprit."""

    def __init__(self, status: grpc.StatusCode, message: str, culprit: str = ""):
        super().__init__(message)
        self.status = status
        self.culprit = culprit


@dataclass
class _Call:
    party: str
    call: grpc.aio.StreamStreamCall
    writing: asyncio.Lock = field(default_factory=asyncio.Lock)  # one write at a time per stream

    async def write(self, msg) -> None:
        async with self.writing:
            await self.call.write(msg)


class CoordinatorNode(pb_grpc.CoordinatorServicer):
    """The federation's coordinator; it never sees an input, a share or an exact aggregate."""

    def __init__(self, federation: Federation, identity: Identity, ledger=None,
                 default_timeout: float = DEFAULT_TIMEOUT, clock: Callable[[], float] = time.time):
        self.federation = federation
        self.identity = identity
        self.ledger = ledger
        self.default_timeout = default_timeout
        self._clock = clock
        self._lock = asyncio.Lock()
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, pb_grpc.PartyStub] = {}

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._stubs.clear()

    def _stub(self, party: str) -> pb_grpc.PartyStub:
        """The stub on the one long-lived channel to ``party`` (one TLS handshake, then reused)."""
        if party not in self._stubs:
            self._channels[party] = self.identity.channel(self.federation.node(party).address, party)
            self._stubs[party] = pb_grpc.PartyStub(self._channels[party])
        return self._stubs[party]

    def _forget(self, party: str) -> None:
        """Drop the channel to an unreachable party, so the next session reconnects without backoff."""
        self._stubs.pop(party, None)
        channel = self._channels.pop(party, None)
        if channel is not None:
            asyncio.ensure_future(channel.close())

    # -- the analyst's entry point ------------------------------------------------

    async def Query(self, request: pb.QueryRequest, context):
        clients = self.federation.names("client")
        who = caller(context, clients[0] if clients else "", self.identity.insecure)
        if who not in clients:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{who!r} is not a client of this federation")
        try:
            spec, confidence = self.spec_for(request)
            self.admit(spec)
        except SpecError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except ProtocolError as exc:
            await context.abort(convert.GRPC_CODES[exc.status], str(exc))
        async with self._lock:
            try:
                self._check_budget(spec)
                release = await self.run(spec)
            except ProtocolError as exc:
                await context.abort(convert.GRPC_CODES[exc.status], str(exc))
            except SessionFailed as exc:
                await context.abort(exc.status, str(exc))
            if self.ledger is not None and not spec.is_exact:
                self.ledger.charge(spec.epsilon, spec.delta, label=spec.session_id.hex())
        log.info("released session %s (%s over %d parties)", spec.session_id.hex()[:8], spec.statistic,
                 spec.n_parties)
        for part in self.reply(spec, release, confidence):
            await context.write(part)

    def spec_for(self, request: pb.QueryRequest) -> tuple[QuerySpec, float]:
        """The spec to propose: fresh session id, the deadline, every party unless named."""
        if request.spec.session_id:
            raise SpecError("session_id", "is chosen by the coordinator; leave it empty")
        timeout = request.timeout_seconds or self.default_timeout
        if not math.isfinite(timeout) or timeout <= 0:
            raise SpecError("timeout_seconds", f"must be a positive number of seconds, got {timeout!r}")
        confidence = request.confidence or DEFAULT_CONFIDENCE
        if not 0 < confidence < 1:
            raise SpecError("confidence", f"must be in (0, 1), got {confidence!r}")
        fields = convert.spec_fields(request.spec)
        parties = fields["parties"] or tuple(self.federation.names("party"))
        unknown = [p for p in parties if p not in self.federation.names("party")]
        if unknown:
            raise SpecError("parties", f"not parties of this federation: {', '.join(unknown)}")
        if not request.spec.max_records:
            fields["max_records"] = int(self.federation.policy.get("max_records", 1))
        fields.update(parties=parties, deadline=self._clock() + timeout)
        del fields["session_id"]
        return QuerySpec(**fields), confidence

    def admit(self, spec: QuerySpec) -> None:
        """The federation-wide policy: exact releases only where it says so."""
        if spec.is_exact and not self.federation.policy.get("allow_exact", False):
            raise ProtocolError(Status.PERMISSION_DENIED,
                                "this federation does not allow exact (non-DP) releases; set an epsilon")

    def _check_budget(self, spec: QuerySpec) -> None:
        if self.ledger is not None and not spec.is_exact:
            try:
                self.ledger.check(spec.epsilon, spec.delta)
            except Exception as exc:  # the ledger's message states spent, requested and remaining
                raise ProtocolError(Status.RESOURCE_EXHAUSTED, f"coordinator: {exc}") from None

    # -- one session ----------------------------------------------------------------

    async def run(self, spec: QuerySpec):
        """Drive one session to its release, or abort it everywhere and raise SessionFailed."""
        session = CoordinatorSession(spec)
        calls = {p: _Call(p, self._stub(p).Session(timeout=max(spec.deadline - self._clock(), 0.001)))
                 for p in spec.parties}
        inflight: dict[str, asyncio.Future] = {}
        try:
            propose = pb.CoordinatorToParty(propose=pb.Propose(spec=convert.spec_to_proto(spec)))
            await self._phase(spec, {p: self._propose(c, propose, session) for p, c in calls.items()},
                              "answer", inflight)
            start = pb.CoordinatorToParty(start_sharing=pb.StartSharing(session_id=spec.session_id))
            await self._phase(spec, {p: self._collect(c, start, session) for p, c in calls.items()},
                              "send its partial sum", inflight)
            return session.release()
        except (SessionFailed, ProtocolError) as exc:
            reason = str(exc)
            if session.state != "aborted":
                session.abort(reason, getattr(exc, "culprit", ""))
            await self._abort_all(spec, calls, reason, inflight)
            log.info("aborted session %s: %s", spec.session_id.hex()[:8], reason)
            if isinstance(exc, ProtocolError):
                raise SessionFailed(convert.GRPC_CODES[exc.status], reason) from None
            raise
        finally:
            for c in calls.values():
                c.call.cancel()

    async def _phase(self, spec: QuerySpec, steps: dict, doing: str, inflight: dict) -> None:
        """Run one step per party until all finish, one fails or the deadline passes.

        On failure the unfinished steps are left in ``inflight``: they are still
        reading their party's stream, and the abort lets them finish.
        """
        tasks = {asyncio.ensure_future(coro): p for p, coro in steps.items()}
        done, pending = await asyncio.wait(tasks, timeout=max(spec.deadline - self._clock(), 0.0),
                                           return_when=asyncio.FIRST_EXCEPTION)
        failures = [t for t in done if t.exception() is not None]
        inflight.update({tasks[t]: t for t in pending})
        if failures:
            exc = failures[0].exception()
            if isinstance(exc, (SessionFailed, ProtocolError)):
                raise exc
            raise SessionFailed(grpc.StatusCode.INTERNAL, f"{tasks[failures[0]]}: {type(exc).__name__}")
        if pending:
            late = sorted(tasks[t] for t in pending)
            raise SessionFailed(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"{', '.join(late)} did not {doing} before the deadline; session aborted, "
                                f"no result released", late[0])

    async def _read(self, c: _Call, what: str):
        try:
            msg = await c.call.read()
        except grpc.aio.AioRpcError as exc:
            raise self._rpc_failure(c.party, exc, what) from None
        if msg is grpc.aio.EOF:
            raise SessionFailed(grpc.StatusCode.ABORTED,
                                f"{c.party} dropped out of the session while we waited for its {what}; "
                                f"session aborted, no result released", c.party)
        if msg.WhichOneof("phase") == "abort":
            culprit = msg.abort.culprit or c.party
            raise SessionFailed(grpc.StatusCode.ABORTED,
                                f"{c.party} aborted the session: {msg.abort.reason}; no result released", culprit)
        return msg

    def _rpc_failure(self, party: str, exc: grpc.aio.AioRpcError, what: str) -> SessionFailed:
        code = exc.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            self._forget(party)
            return SessionFailed(code, f"party {party} is unreachable at {self.federation.node(party).address} "
                                       f"({exc.details()}); session aborted, no result released", party)
        if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
            return SessionFailed(grpc.StatusCode.DEADLINE_EXCEEDED,
                                 f"{party} did not send its {what} before the deadline", party)
        return SessionFailed(code, f"{party} refused the session: {exc.details()}", party)

    async def _propose(self, c: _Call, propose, session: CoordinatorSession) -> None:
        try:
            await c.write(propose)
        except grpc.aio.AioRpcError as exc:
            raise self._rpc_failure(c.party, exc, "answer") from None
        msg = await self._read(c, "answer")
        if msg.WhichOneof("phase") != "response":
            raise SessionFailed(grpc.StatusCode.INTERNAL, f"{c.party} answered out of turn", c.party)
        r = msg.response
        if r.party != c.party:
            raise SessionFailed(grpc.StatusCode.PERMISSION_DENIED,
                                f"an answer on {c.party}'s channel claims to come from {r.party!r}", c.party)
        if not r.accepted:
            code = getattr(grpc.StatusCode, r.status, None) if r.status else None
            raise SessionFailed(code or grpc.StatusCode.ABORTED, f"{c.party} refused: {r.reason}", c.party)
        session.record_response(Response(r.session_id, r.party, True))

    async def _collect(self, c: _Call, start, session: CoordinatorSession) -> None:
        try:
            await c.write(start)
        except grpc.aio.AioRpcError as exc:
            raise self._rpc_failure(c.party, exc, "partial sum") from None
        msg = await self._read(c, "partial sum")
        if msg.WhichOneof("phase") != "partial_sum" or msg.partial_sum.sender != c.party:
            raise SessionFailed(grpc.StatusCode.INVALID_ARGUMENT,
                                f"{c.party} sent something other than its own partial sum", c.party)
        head = msg.partial_sum
        try:
            assembler = convert.Assembler(head.length, session.length)
            assembler.add(head.first)
            while not assembler.done:
                chunk = await self._read(c, "partial sum")
                if chunk.WhichOneof("phase") != "chunk":
                    raise ProtocolError(Status.INVALID_ARGUMENT, "partial sum ended early")
                assembler.add(chunk.chunk)
            session.receive_partial(PartialSum(head.session_id, c.party, assembler.vector), self._clock())
        except ProtocolError as exc:
            raise SessionFailed(convert.GRPC_CODES[exc.status], f"{c.party}'s partial sum: {exc}", c.party) from None

    async def _abort_all(self, spec: QuerySpec, calls: dict, reason: str, inflight: dict) -> None:
        msg = pb.CoordinatorToParty(abort=convert.abort_message(spec.session_id, "coordinator", reason))

        async def tell(c: _Call):
            # the party closes its session on the abort and then ends the stream; waiting for
            # that end means every node is ready for the next query when this one returns
            try:
                async with c.writing:
                    await c.call.write(msg)
                    await c.call.done_writing()
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                pass
            step = inflight.get(c.party)
            if step is not None:  # it owns the stream's reads until it sees the end
                await asyncio.gather(step, return_exceptions=True)
            try:
                while await c.call.read() is not grpc.aio.EOF:
                    pass
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                pass

        async def tell_briefly(c: _Call):
            try:
                await asyncio.wait_for(tell(c), ABORT_GRACE)
            except asyncio.TimeoutError:
                pass

        await asyncio.gather(*(tell_briefly(c) for c in calls.values()))

    # -- the answer -------------------------------------------------------------------

    def reply(self, spec: QuerySpec, release, confidence: float):
        """The release as QueryReplyParts: one QueryReply holding every scalar and each vector of at
        most one chunk, then each larger vector as a ReleaseVector and its ~1 MiB float64 chunks."""
        result, noise, intervals = struct_pb2.Struct(), struct_pb2.Struct(), struct_pb2.Struct()
        vectors = {(k, ""): v for k, v in release.result.items() if isinstance(v, (list, np.ndarray))}
        result.update({k: v for k, v in release.result.items() if (k, "") not in vectors})
        if not spec.is_exact:
            described = describe(spec, release.result, confidence)
            noise.update(described.noise_std)
            for key, interval in described.intervals.items():
                if isinstance(interval, dict) and isinstance(interval.get("lower"), (list, np.ndarray)):
                    vectors.update({(key, "lower"): interval["lower"], (key, "upper"): interval["upper"]})
                else:
                    intervals[key] = interval
        reply = pb.QueryReply(
            session_id=spec.session_id, statistic=spec.statistic, result=result, parties=spec.parties,
            exact=spec.is_exact, epsilon=0.0 if spec.is_exact else spec.epsilon, delta=spec.delta,
            mechanism="" if spec.is_exact else spec.mechanism, noise=noise, intervals=intervals,
            confidence=confidence if not spec.is_exact else 0.0)
        inline = {"": reply.vectors, "lower": reply.interval_lower, "upper": reply.interval_upper}
        large = []
        for (key, end), values in vectors.items():
            packed = np.asarray(values, dtype="<f8").reshape(-1)
            if packed.size <= convert.CHUNK_ELEMENTS:
                inline[end][key] = packed.tobytes()
            else:
                large.append((key, end, packed))
        yield pb.QueryReplyPart(reply=reply)
        for key, end, packed in large:
            chunks = (pb.VectorChunk(offset=i, data=packed[i:i + convert.CHUNK_ELEMENTS].tobytes())
                      for i in range(0, packed.size, convert.CHUNK_ELEMENTS))
            yield pb.QueryReplyPart(vector=pb.ReleaseVector(name=key, interval_end=end, length=packed.size,
                                                            first=next(chunks)))
            for chunk in chunks:
                yield pb.QueryReplyPart(chunk=chunk)
