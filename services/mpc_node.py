"""Comparison queries among real party nodes: :mod:`mpcdp.mpc` driven over the party links.

A comparison statistic (:data:`mpcdp.mpc.queries.COMPARISONS`: max, min,
argmax, threshold, second-price, noisy-argmax, quantile, median) is asked
like any other query, with ``Coordinator.Query``, and kept like any other
release, so ``Coordinator.Fetch`` returns it again at no cost. The
coordinator (:func:`coordinate`) builds the spec (fresh session id, deadline,
every party unless named), refuses it before any party hears of it if the
federation's policy or its own ledger says no, holds the query's epsilon in
reserve, and asks every party at once with ``Party.Compare``.

A party (:func:`party_compare`) checks the spec against its own policy
(:class:`mpcdp.protocol.PartyPolicy` by :func:`mpcdp.mpc.queries.refusal`: exact
releases only with ``allow_exact_nonlinear``) and its own ledger (counting what its other
accepted sessions hold in reserve), reserves the epsilon, prepares its input
from its own column (adding its noise piece for a DP statistic), and runs one
:class:`mpcdp.mpc.session.PartyRun` with its peers over its long-lived links
(:mod:`services.link`, messages tagged with the session id, the engine's
round number and kind ``"mpc"``). Every round a party sends one encoded
Round to each peer, then waits for one from each peer (until the deadline)
before it steps. It charges its ledger when the run ends with the release;
a run that aborts (a peer failed, stalled or sent garbage, the deadline
passed) releases nothing and frees the reservation -- unless the party had
already sent its part of the opening round, after which a peer may know the
release: then it charges all the same (as a party of a secure sum that has
sent its partial sum does).

The coordinator passes a release on only when every party computed the same
one; it keeps it durably, charges its own ledger, and replies. Semi-honest,
honest majority: n >= 3 parties, up to (n - 1) // 2 colluding learn nothing
beyond the release (the engine's guarantee, :mod:`mpcdp.mpc.engine`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Callable

import grpc

from mpcdp.dp.ledger import BudgetExceeded
from mpcdp.mpc import queries
from mpcdp.mpc.engine import Engine
from mpcdp.mpc.messages import Round
from mpcdp.mpc.queries import COMPARISONS, Comparison, ComparisonRefused, ComparisonSpec
from mpcdp.mpc.session import PartyRun
from mpcdp.prg import system_random
from mpcdp.protocol import ProtocolError
from mpcdp.registry import UnknownName
from services import audit, convert, releases
from services.ledgers import group_commit
from services.link import LinkError
from services.wire.mpcdp.v1 import federation_pb2 as pb

log = logging.getLogger("mpcdp.mpc")
KIND = "mpc"
SESSION_ID_BYTES = 16
CLOCK_SLACK = 5.0
MECHANISM = "discrete_laplace"  # the noise pieces of the DP comparisons
PASSED_ON = (
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
)  # a party's refusal keeps its class; anything else aborts the session


class CompareRefused(Exception):
    """A comparison a node will not run: ``code`` is the gRPC status to answer with."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def comparison_of(spec: pb.QuerySpec) -> Comparison | None:
    """The comparison statistic a query names, or None for a secure-sum statistic."""
    try:
        return COMPARISONS.by_wire(spec.statistic)
    except UnknownName:
        return None


def spec_from_proto(msg: pb.QuerySpec) -> ComparisonSpec:
    """The library's spec from the wire; a refusal names the field (INVALID_ARGUMENT)."""
    kind = comparison_of(msg)
    if kind is None:
        raise CompareRefused(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"statistic: not a comparison statistic; choose one of {', '.join(COMPARISONS.names())}",
        )
    if msg.delta:
        raise CompareRefused(grpc.StatusCode.INVALID_ARGUMENT, "delta: comparisons are pure epsilon-DP; leave it 0")
    try:
        return ComparisonSpec(
            statistic=kind.name,
            column=msg.column,
            parties=tuple(msg.parties),
            session_id=bytes(msg.session_id),
            deadline=msg.deadline,
            epsilon=msg.epsilon if msg.HasField("epsilon") else None,  # absent: an exact release
            colluders=msg.colluders or 1,
            fraction=msg.fraction if msg.HasField("fraction") else None,
            quantile=msg.quantile if msg.HasField("quantile") else None,
            edges=tuple(msg.edges),
            categories=tuple(msg.categories),
        )
    except ComparisonRefused as exc:
        raise CompareRefused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None


def release_parts(spec: ComparisonSpec, entries: list[pb.ReleaseEntry]) -> list[pb.QueryReplyPart]:
    """The release as the parts of a query reply: one QueryReply holding the entries."""
    reply = pb.QueryReply(
        session_id=spec.session_id,
        statistic=convert.statistic_wire(spec.statistic),
        entries=entries,
        parties=spec.parties,
        epsilon=spec.epsilon,  # None: absent, an exact release
    )
    if not spec.is_exact:
        reply.mechanism = convert.mechanism_wire(MECHANISM)
    return [pb.QueryReplyPart(reply=reply)]


async def drive(link, parties: list[str], run: PartyRun, session_id: bytes, deadline: Callable[[], float]) -> None:
    """Run ``run`` to its end over ``link``: send this round's Rounds, wait for one from each peer, step.

    ``deadline()`` is the seconds left. Raises (LinkError, TimeoutError, ProtocolError) after aborting
    the run, so it holds no result."""
    me = run.engine.me
    peers = [p for i, p in enumerate(parties) if i != me]
    out = run.start()
    try:
        while not run.done:
            await asyncio.wait_for(
                asyncio.gather(*(link.send(parties[r.recipient], session_id, r.round, KIND, r.encode()) for r in out)),
                max(deadline(), 0.001),
            )
            got = await asyncio.wait_for(
                asyncio.gather(*(link.receive(p, session_id, run.round, KIND) for p in peers)), max(deadline(), 0.001)
            )
            out = run.step([Round.decode(bytes(m)) for m in got])
    except BaseException as exc:
        if not run.done:
            run.abort(str(exc) or "the run was stopped")
        raise


def _abort_reason(exc: BaseException, run: PartyRun) -> str:
    if isinstance(exc, LinkError):
        return str(exc)
    if isinstance(exc, asyncio.TimeoutError):
        return "a peer did not answer in time"
    return f"the comparison failed: {run.aborted or exc}"


async def party_compare(node, request: pb.CompareRequest, context) -> pb.CompareReply:
    """The party side of ``Party.Compare`` (``node`` is a :class:`services.party_node.PartyNode`)."""
    coordinators = node.federation.names("coordinator")
    who = node._caller(context, coordinators[0])
    if who not in coordinators:
        await node._deny(context, f"{who!r} is not a coordinator of this federation", caller=who)
    sid = bytes(request.spec.session_id)
    try:
        if len(sid) != SESSION_ID_BYTES:
            raise CompareRefused(grpc.StatusCode.INVALID_ARGUMENT, f"a session id is {SESSION_ID_BYTES} bytes")
        if node._used(sid):
            raise CompareRefused(grpc.StatusCode.ALREADY_EXISTS, "this session id was already used")
        spec = spec_from_proto(request.spec)
        if node.me not in spec.parties or any(p not in node.federation.names("party") for p in spec.parties):
            raise CompareRefused(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the party list must name distinct parties of this federation, this one among them",
            )
        now = node._clock()
        if not now < spec.deadline <= now + node.max_timeout + CLOCK_SLACK:
            raise CompareRefused(grpc.StatusCode.INVALID_ARGUMENT, "the deadline is past or too far ahead")
        refusal = queries.refusal(node.federation.policy_for(node.me).party(), spec)
        if refusal is not None:
            raise CompareRefused(grpc.StatusCode.PERMISSION_DENIED, f"{node.me}: {refusal}")
        if spec.column not in node.table.columns:
            raise CompareRefused(grpc.StatusCode.NOT_FOUND, f"column {spec.column!r} is not offered by this party")
        if spec.charge is not None and node.ledger is None:
            raise CompareRefused(
                grpc.StatusCode.FAILED_PRECONDITION, f"{node.me} keeps no privacy ledger, so it answers no DP query"
            )
        position = spec.parties.index(node.me)
        noise = node._rng(sid + b"/noise") if node._rng else system_random("mpc-noise")
        part = spec.kind.prepare(spec, position, node.table.columns[spec.column], noise)
        if spec.charge is not None:  # held until the deadline, counted by every other session's check
            try:
                await group_commit(node.ledger).reserve(sid, spec.charge, until=spec.deadline)
            except BudgetExceeded as exc:
                raise CompareRefused(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{node.me}: {exc}") from None
            except asyncio.CancelledError:  # the call ended while reserving: free what the reservation holds
                group_commit(node.ledger).free(sid)  # (queued after it)
                raise
    except ValueError as exc:  # ComparisonRefused, or data the engine cannot take (out of its range)
        audit.record("refused", session=sid.hex(), status="INVALID_ARGUMENT", reason=str(exc))
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    except CompareRefused as exc:
        audit.record("refused", session=sid.hex(), status=exc.code.name, reason=str(exc))
        await context.abort(exc.code, str(exc))
    engine = Engine(len(spec.parties), position, sid, node._rng(sid) if node._rng else system_random("mpc"))
    run = PartyRun(engine, spec.kind.computation(spec).program(part))
    released = False
    try:
        node._closed[sid] = None  # used from now on, whatever happens
        if node.sessions is not None:
            await node.sessions.add_durably(sid, spec.deadline)
        await drive(node.link, list(spec.parties), run, sid, lambda: spec.deadline - node._clock())
        entries = spec.kind.release(spec, run.result)
        released = True
    except Exception as exc:  # a link, a deadline, a peer's garbage: abort, release nothing
        reason = _abort_reason(exc, run)
        audit.record(
            "aborted", session=sid.hex(), reason=reason, charged=spec.charge is not None and engine.openings > 0
        )
        await context.abort(grpc.StatusCode.ABORTED, reason)
    finally:  # also when the coordinator cancels the call
        node.link.close_session(sid)
        if spec.charge is not None:  # after our part of the opening left, a peer may hold the release: charge
            await settle(node.ledger, sid, charge=released or engine.openings > 0)
    audit.record(
        "released",
        session=sid.hex(),
        statistic=spec.statistic,
        parties=",".join(spec.parties),
        epsilon=spec.epsilon,
        what="comparison release",
    )
    return pb.CompareReply(session_id=sid, entries=releases.entries(entries))


def _proposal(coord, request: pb.QueryRequest) -> tuple[pb.QuerySpec, ComparisonSpec]:
    """The spec every party gets: the analyst's, with a fresh session id, the deadline and the parties."""
    if request.spec.session_id:
        raise CompareRefused(grpc.StatusCode.INVALID_ARGUMENT, "session_id: is chosen by the coordinator")
    timeout = request.timeout_seconds or coord.default_timeout
    if not math.isfinite(timeout) or not 0 < timeout <= coord.max_timeout:
        raise CompareRefused(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"timeout_seconds: must be in (0, {coord.max_timeout:g}] seconds (this coordinator's max_timeout)",
        )
    parties = list(request.spec.parties) or list(coord.federation.names("party"))
    unknown = [p for p in parties if p not in coord.federation.names("party")]
    if unknown:
        raise CompareRefused(
            grpc.StatusCode.INVALID_ARGUMENT, f"parties: not parties of this federation: {', '.join(unknown)}"
        )
    msg = pb.QuerySpec()
    msg.CopyFrom(request.spec)
    msg.session_id = secrets.token_bytes(SESSION_ID_BYTES)
    msg.deadline = coord._clock() + timeout
    del msg.parties[:]
    msg.parties.extend(parties)
    return msg, spec_from_proto(msg)


async def coordinate(coord, request: pb.QueryRequest, context) -> None:
    """The coordinator side of a comparison query (``coord`` is a :class:`services.coordinator_node.CoordinatorNode`):
    check, reserve, ask every party at once, keep and charge one agreed release, write its parts."""
    who = await coord._client(context)
    try:
        msg, spec = _proposal(coord, request)
        if spec.is_exact and not coord.federation.policy.allow_exact_nonlinear:
            raise CompareRefused(
                grpc.StatusCode.PERMISSION_DENIED,
                "this federation does not allow exact nonlinear releases (allow_exact_nonlinear)"
                + ("; noisy-argmax, quantile and median are DP" if not spec.kind.private else ""),
            )
        held = await coord.hold(spec.session_id, spec.charge, spec.deadline)
    except ProtocolError as exc:  # the coordinator's ledger would overspend
        await coord.refuse(context, who, exc)
    except CompareRefused as exc:
        audit.record("refused", client=who, status=exc.code.name, reason=str(exc))
        await context.abort(exc.code, str(exc))
    await coord.answer(
        context,
        spec.session_id,
        held,
        lambda: _session(coord, msg, spec, who, held),
        lambda exc: (exc.code, str(exc)) if isinstance(exc, CompareRefused) else None,
    )


async def settle(ledger, sid: bytes, charge: bool) -> None:
    """End a session's reservation: charge it (the release was made, or may be known) or free it, group-committed
    off the loop (:func:`services.ledgers.group_commit`; the request is queued before the first wait, so a
    cancelled caller's charge is still made)."""
    if charge:
        await group_commit(ledger).charge_reserved(sid)  # labelled with the session id, as Fetch looks it up
    else:
        group_commit(ledger).free(sid)


async def _session(coord, msg: pb.QuerySpec, spec: ComparisonSpec, client: str, held: bool) -> list:
    sid = spec.session_id
    released = False
    try:
        entries = await _ask_parties(coord, msg, spec)
        parts = release_parts(spec, entries)
        if coord.store is not None:
            try:
                await asyncio.to_thread(coord.store.put, sid.hex(), client, spec.is_exact, parts)
            except OSError as exc:  # the release still goes to the analyst; it cannot be fetched again
                log.error("could not keep the release of session %s: %s", sid.hex(), exc)
        released = True
    finally:
        if held:
            await settle(coord.ledger, sid, charge=released)
    releases.audit_released(sid, client, spec)
    return parts


async def _ask_parties(coord, msg: pb.QuerySpec, spec: ComparisonSpec) -> list[pb.ReleaseEntry]:
    """Every party's release; they must all agree. CompareRefused names the first party that failed."""
    sid, timeout = spec.session_id, max(spec.deadline - coord._clock(), 0.001)
    ask = pb.CompareRequest(spec=msg)
    calls = {p: asyncio.ensure_future(coord._stub(p).Compare(ask, timeout=timeout + 1.0)) for p in spec.parties}
    await asyncio.wait(calls.values(), return_when=asyncio.FIRST_EXCEPTION)
    failures = [(p, c.exception()) for p, c in calls.items() if c.done() and c.exception() is not None]
    if failures:
        for c in calls.values():
            c.cancel()
        for p, exc in failures:
            if isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE:
                coord._forget(p)  # reconnect at once next time, not after the channel's backoff
        party, exc = failures[0]
        rpc = exc if isinstance(exc, grpc.aio.AioRpcError) else None
        detail = rpc.details() if rpc is not None else str(exc)
        audit.record("aborted", session=sid.hex(), reason=f"{party}: {detail}")
        code = rpc.code() if rpc is not None and rpc.code() in PASSED_ON else grpc.StatusCode.ABORTED
        raise CompareRefused(code, f"{party}: {detail}; session {sid.hex()} aborted, nothing released or charged")
    answers = {tuple(e.SerializeToString(deterministic=True) for e in c.result().entries) for c in calls.values()}
    if len(answers) != 1:
        audit.record("aborted", session=sid.hex(), reason="the parties computed different releases")
        raise CompareRefused(grpc.StatusCode.ABORTED, "the parties computed different releases; nothing released")
    entries = list(next(iter(calls.values())).result().entries)
    if not any(e.name == spec.statistic for e in entries):
        raise CompareRefused(grpc.StatusCode.ABORTED, "the parties' release does not name the statistic")
    return entries
