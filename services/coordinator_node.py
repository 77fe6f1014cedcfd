"""The coordinator node: the Coordinator gRPC service over :class:`mpcdp.protocol.CoordinatorSession`.

For each analyst query it builds a spec with a fresh session id and a
deadline, refuses it (before any share moves) if its policy or its own ledger
says no, opens one Session stream per party, proposes (asking each party to
share at once on accepting: one round trip), sends StartSharing once every
party accepted (a party whose policy does not share at once waits for it),
collects the partial sums, releases and charges its ledger. Any failure (a
party down, refusing, slow past the deadline or dropping mid-round) aborts
the session on every node with a diagnostic naming the party, and charges
nothing.

Queries run concurrently: each has its own streams, and the coordinator's
ledger reserves what accepted, uncharged sessions will spend
(:meth:`mpcdp.dp.ledger.PrivacyLedger.reserve`), so a stalled party delays only the
queries that include it. Every option is checked before a session starts
(the deadline at most ``max_timeout`` seconds away, the confidence level
usable), so no budget is spent on a query whose release could not be made.
The session id is sent to the analyst as initial metadata before the
session starts; the session then runs to its end even if the analyst goes
away, its release is kept durably in the state directory before the ledger
is charged (:class:`services.releases.ReleaseStore`), and Fetch returns it
again to the same client at no further cost. An abort a party reports is
passed on as that party's claim, naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from mpcdp.protocol import CoordinatorSession, PartialSum, ProtocolError, QuerySpec, Response, SpecError, Status
from services import audit, convert, releases, server
from services.channels import Channels
from services.federation import Federation
from services.ledgers import public_refusal
from services.link import Hub
from services.tls import Identity, caller
from services.wire.mpcdp.v1 import federation_pb2 as pb
from services.wire.mpcdp.v1 import federation_pb2_grpc as pb_grpc

log = logging.getLogger("mpcdp.coordinator")
DEFAULT_TIMEOUT = 30.0
DEFAULT_CONFIDENCE = 0.95
ABORT_GRACE = 2.0  # seconds to wait for each party to confirm an abort
SESSION_HEADER = "mpcdp-session-id"
SEND_TIMEOUT = 60.0  # seconds an analyst may leave a release part unread before the call is closed
MAX_REASON = 500  # characters of a party's abort reason passed on
SESSIONS_PER_PARTY = 64  # concurrent session streams to one party (its servers allow 100 per connection)


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


def _printable(text: str) -> str:
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text if len(text) <= MAX_REASON else text[:MAX_REASON] + "..."


def claimed_abort(party: str, reason: str, culprit: str = "") -> str:
    """A party's abort as what it is: that party's report, unverified, naming who made it."""
    text = f"{party} aborted the session, reporting: {_printable(reason) or 'no reason given'}"
    if culprit and culprit != party:
        text += f" ({party} blames {_printable(culprit)}; the coordinator cannot verify this claim)"
    return text + "; no result released"


class CoordinatorNode(pb_grpc.CoordinatorServicer):
    """The federation's coordinator; it never sees an input, a share or an exact aggregate."""

    def __init__(
        self,
        federation: Federation,
        identity: Identity,
        ledger=None,
        default_timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
        max_timeout: float | None = None,
        store: releases.ReleaseStore | None = None,
        send_timeout: float = SEND_TIMEOUT,
    ):
        self.federation = federation
        self.identity = identity
        self.ledger = ledger
        self.store = store
        self.send_timeout = send_timeout
        self.max_timeout = float(max_timeout or federation.policy.party().max_timeout)
        self.default_timeout = min(default_timeout, self.max_timeout)
        self._clock = clock
        self._sessions: set[asyncio.Task] = set()  # running to their end even if their analyst left
        self._slots: dict[str, asyncio.Semaphore] = {}  # per party: its streams in use
        self.channels = Channels(identity, lambda party: self.federation.address(party))
        self.link = Hub(  # one long-lived authenticated stream to each party, carrying every session
            identity,
            lambda party: self.federation.address(party),  # read at call time: the federation may be replaced
            lambda who: who in self.federation.names("party"),
        )

    def services(self) -> list:
        """What a server must offer for this node: the Coordinator service and its links to the parties."""
        return [
            (pb_grpc.add_CoordinatorServicer_to_server, self, "mpcdp.v1.Coordinator"),
            (pb_grpc.add_LinkServicer_to_server, self.link, "mpcdp.v1.Link"),
        ]

    async def close(self) -> None:
        if self._sessions:
            await asyncio.wait(self._sessions, timeout=ABORT_GRACE)
        await self.link.close()
        await self.channels.close()

    def _stub(self, party: str) -> pb_grpc.PartyStub:
        """The stub on the one long-lived channel to ``party`` (one TLS handshake, then reused)."""
        return self.channels.stub(party, pb_grpc.PartyStub)

    def _forget(self, party: str) -> None:
        """Drop the channel to an unreachable party, so the next session reconnects without backoff."""
        self.channels.forget(party)

    # -- the analyst's entry point ------------------------------------------------

    async def _client(self, context) -> str:
        clients = self.federation.names("client")
        who = caller(context, clients[0] if clients else "", self.identity.insecure)
        if who not in clients:
            audit.record("denied", caller=who, message="not a client of this federation")
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{who!r} is not a client of this federation")
        return who

    async def Query(self, request: pb.QueryRequest, context):
        from services import mpc_node

        if mpc_node.comparison_of(request.spec) is not None:  # computed by the parties under MPC
            return await mpc_node.coordinate(self, request, context)
        who = await self._client(context)
        try:
            spec, confidence = self.spec_for(request)
            self.admit(spec)
            budget = self._hold(spec)
        except (SpecError, ProtocolError) as exc:
            code = (
                convert.GRPC_CODES[exc.status] if isinstance(exc, ProtocolError) else grpc.StatusCode.INVALID_ARGUMENT
            )
            audit.record("refused", client=who, status=code.name, reason=str(exc))
            await context.abort(code, str(exc))
        sid = spec.session_id
        try:
            await context.send_initial_metadata(((SESSION_HEADER, sid.hex()),))
        except BaseException:
            if budget:
                self.ledger.free(sid)
            raise
        task = asyncio.ensure_future(self._session(spec, confidence, who, budget))
        self._sessions.add(task)
        task.add_done_callback(self._finished)
        try:
            parts = await asyncio.shield(task)  # the analyst leaving does not cancel a charged release
        except ProtocolError as exc:
            await context.abort(convert.GRPC_CODES[exc.status], str(exc))
        except SessionFailed as exc:
            await context.abort(exc.status, str(exc))
        await self._send(context, parts, sid.hex())

    async def _send(self, context, parts: list, sid: str) -> None:
        """Write the parts; an analyst who stops reading does not hold the call (and the parts) forever."""
        for part in parts:
            try:
                await asyncio.wait_for(context.write(part), self.send_timeout)
            except TimeoutError:
                audit.record("aborted", session=sid, reason="the analyst did not read the release")
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"the release was not read within {self.send_timeout:g} s; it is kept: "
                    f"`mpcdp query --fetch {sid}` gets it at no further cost",
                )

    def _hold(self, spec: QuerySpec) -> bool:
        """Reserve the session's loss on the coordinator's ledger until its deadline (refused if it would
        overspend, counting the sessions still running); whether anything is held."""
        if self.ledger is None or spec.loss is None:
            return False
        try:
            self.ledger.reserve(spec.session_id, spec.loss, until=spec.deadline)
        except Exception as exc:
            raise ProtocolError(Status.RESOURCE_EXHAUSTED, f"coordinator: {public_refusal(exc)}") from None
        return True

    def _finished(self, task: asyncio.Task) -> None:
        """A session ended; its outcome was audited, and an analyst who left is not there to hear it."""
        self._sessions.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not report it as lost

    async def Fetch(self, request: pb.FetchRequest, context):
        """A release already made for this client, again, at no cost."""
        who = await self._client(context)
        sid = request.session_id.hex()
        kept = self.store.get(sid) if self.store is not None else None
        if kept is None or kept[0]["client"] != who or not self._charged(sid, kept[0]):
            await server.abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"no release of session {sid} for {who!r} is kept here"
                if self.store is not None
                else "this coordinator keeps no releases (it has no state directory)",
            )
        audit.record("fetched", session=sid, client=who)
        await self._send(context, kept[1], sid)

    def _charged(self, sid: str, meta: dict) -> bool:
        """Whether a kept release was paid for (a crash between keeping and charging leaves it unpaid)."""
        if meta.get("exact") or self.ledger is None:
            return True
        return any(c.label == sid for c in self.ledger.history())

    async def _session(self, spec: QuerySpec, confidence: float, client: str, budget: bool) -> list:
        """Run the session, keep its release, charge the held budget; the release's parts."""
        sid = spec.session_id
        try:
            release = await self.run(spec)
            parts = list(releases.parts(spec, release, confidence))
            if self.store is not None:
                try:
                    await asyncio.to_thread(self.store.put, sid.hex(), client, spec.is_exact, parts)  # off the loop
                except OSError as exc:  # the release still goes to the analyst; it cannot be fetched again
                    log.error("could not keep the release of session %s: %s", sid.hex(), exc)
            if budget:
                self.ledger.charge_reserved(sid)
        finally:
            if budget:
                self.ledger.free(sid)  # nothing left to free once charged
        releases.audit_released(sid, client, spec, spec.delta)
        return parts

    def spec_for(self, request: pb.QueryRequest) -> tuple[QuerySpec, float]:
        """The spec to propose: fresh session id, the deadline, every party unless named."""
        if request.spec.session_id:
            raise SpecError("session_id", "is chosen by the coordinator; leave it empty")
        timeout = request.timeout_seconds or self.default_timeout
        if not math.isfinite(timeout) or not 0 < timeout <= self.max_timeout:
            raise SpecError(
                "timeout_seconds",
                f"must be in (0, {self.max_timeout:g}] seconds (this coordinator's max_timeout), got {timeout!r}",
            )
        confidence = request.confidence or DEFAULT_CONFIDENCE
        fields = convert.spec_fields(request.spec)
        parties = fields["parties"] or tuple(self.federation.names("party"))
        unknown = [p for p in parties if p not in self.federation.names("party")]
        if unknown:
            raise SpecError("parties", f"not parties of this federation: {', '.join(unknown)}")
        if not request.spec.max_records:
            fields["max_records"] = self.federation.policy.max_records
        fields.update(parties=parties, deadline=self._clock() + timeout)
        del fields["session_id"]
        spec = convert.build_spec(fields)
        releases.check_presentation(spec, confidence)
        return spec, confidence

    def admit(self, spec: QuerySpec) -> None:
        """The federation-wide policy: exact releases only where it says so."""
        if spec.is_exact and not self.federation.policy.allow_exact:
            raise ProtocolError(
                Status.PERMISSION_DENIED, "this federation does not allow exact (non-DP) releases; set an epsilon"
            )

    # -- one session ----------------------------------------------------------------

    async def run(self, spec: QuerySpec):
        """Drive one session to its release, or abort it everywhere and raise SessionFailed.

        At most ``SESSIONS_PER_PARTY`` sessions hold a stream to one party at a time (a party
        serves a bounded number of streams per connection); later ones wait for a slot, in
        party-name order so that no two sessions wait on each other."""
        async with contextlib.AsyncExitStack() as slots:
            for p in sorted(spec.parties):
                await slots.enter_async_context(self._slots.setdefault(p, asyncio.Semaphore(SESSIONS_PER_PARTY)))
            return await self._run(spec)

    async def _run(self, spec: QuerySpec):
        session = CoordinatorSession(spec)
        calls = {
            p: _Call(p, self._stub(p).Session(timeout=max(spec.deadline - self._clock(), 0.001))) for p in spec.parties
        }
        inflight: dict[str, asyncio.Future] = {}
        try:
            propose = pb.CoordinatorToParty(propose=pb.Propose(spec=convert.spec_to_proto(spec), start=True))
            await self._phase(
                spec, {p: self._propose(c, propose, session) for p, c in calls.items()}, "answer", inflight
            )
            start = pb.CoordinatorToParty(start_sharing=pb.StartSharing(session_id=spec.session_id))
            await self._phase(
                spec, {p: self._collect(c, start, session) for p, c in calls.items()}, "send its partial sum", inflight
            )
            return session.release(arrays=True)  # vectors stay arrays: packed again without Python floats
        except (SessionFailed, ProtocolError) as exc:
            reason = str(exc)
            if session.state != "aborted":
                session.abort(reason, getattr(exc, "culprit", ""))
            await self._abort_all(spec, calls, reason, inflight)
            audit.record(
                "aborted", session=spec.session_id.hex(), reason=reason, culprit=getattr(exc, "culprit", "") or None
            )
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
        done, pending = await asyncio.wait(
            tasks, timeout=max(spec.deadline - self._clock(), 0.0), return_when=asyncio.FIRST_EXCEPTION
        )
        failures = [t for t in done if t.exception() is not None]
        inflight.update({tasks[t]: t for t in pending})
        if failures:
            exc = failures[0].exception()
            if isinstance(exc, (SessionFailed, ProtocolError)):
                raise exc
            raise SessionFailed(grpc.StatusCode.INTERNAL, f"{tasks[failures[0]]}: {type(exc).__name__}")
        if pending:
            late = sorted(tasks[t] for t in pending)
            raise SessionFailed(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"{', '.join(late)} did not {doing} before the deadline; session aborted, no result released",
                late[0],
            )

    async def _read(self, c: _Call, what: str):
        try:
            msg = await c.call.read()
        except grpc.aio.AioRpcError as exc:
            raise self._rpc_failure(c.party, exc, what) from None
        if msg is grpc.aio.EOF:
            raise SessionFailed(
                grpc.StatusCode.ABORTED,
                f"{c.party} dropped out of the session while we waited for its {what}; "
                f"session aborted, no result released",
                c.party,
            )
        if msg.WhichOneof("phase") == "abort":
            raise SessionFailed(
                grpc.StatusCode.ABORTED, claimed_abort(c.party, msg.abort.reason, msg.abort.culprit), c.party
            )
        return msg

    def _rpc_failure(self, party: str, exc: grpc.aio.AioRpcError, what: str) -> SessionFailed:
        code = exc.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            self._forget(party)
            return SessionFailed(
                code,
                f"party {party} is unreachable at {self.federation.node(party).address} "
                f"({exc.details()}); session aborted, no result released",
                party,
            )
        if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
            return SessionFailed(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"{party} did not send its {what} before the deadline", party
            )
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
            raise SessionFailed(
                grpc.StatusCode.PERMISSION_DENIED,
                f"an answer on {c.party}'s channel claims to come from {r.party!r}",
                c.party,
            )
        if not r.accepted:
            status = convert.status_name(r.status)
            code = convert.GRPC_CODES[status] if status is not None else grpc.StatusCode.ABORTED
            raise SessionFailed(code, f"{c.party} refused: {r.reason}", c.party)
        session.record_response(Response(r.session_id, r.party, True))

    async def _collect(self, c: _Call, start, session: CoordinatorSession) -> None:
        # a party sharing at once may have sent its partial sum and closed: the reads below tell
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await c.write(start)
        msg = await self._read(c, "partial sum")
        if msg.WhichOneof("phase") != "partial_sum" or msg.partial_sum.sender != c.party:
            raise SessionFailed(
                grpc.StatusCode.INVALID_ARGUMENT, f"{c.party} sent something other than its own partial sum", c.party
            )
        head = msg.partial_sum
        try:
            assembler = convert.RingVector(head.length, session.length)
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tell(c), ABORT_GRACE)

        await asyncio.gather(*(tell_briefly(c) for c in calls.values()))
