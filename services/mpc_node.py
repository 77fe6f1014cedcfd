"""Comparison statistics among real party nodes: :mod:`mpcdp.mpc` driven over the party links.

The coordinator's ``Compare`` call names a statistic ("max", "min",
"argmax", "threshold"); it asks every party at once, each party runs one
:class:`mpcdp.mpc.session.PartyRun` with its peers over its long-lived links
(:mod:`services.link`, messages tagged with the session id, the engine's
round number and kind ``"mpc"``) and answers with the release only. Every
round a party sends one encoded Round to each peer, then waits for one from
each peer (until the session's deadline) before it steps; a peer that fails,
stalls or sends garbage aborts the run, and an aborted run releases nothing
(:class:`PartyRun` keeps no partial result). The coordinator passes a release
on only when every party computed the same one.

What is released (exact, no differential privacy, so a party takes part only
if its policy sets ``allow_exact_nonlinear``; it charges no epsilon):
``max``/``min`` — the largest/smallest of all the parties' values, which is
one party's value; ``argmax`` — the name of the party holding the largest
value (lowest position on ties); ``threshold`` — YES if the column's sum over
all parties is at least ``num/den`` of its record count, else NO (one bit).
Semi-honest, honest majority: n >= 3 parties, up to (n - 1) // 2 colluding
learn nothing beyond the release (the engine's guarantee, see
:mod:`mpcdp.mpc.engine`).
"""

from __future__ import annotations

import asyncio
import secrets
from fractions import Fraction

import grpc
import numpy as np

from mpcdp.mpc.engine import Engine
from mpcdp.mpc.messages import Round
from mpcdp.mpc.session import PartyRun
from mpcdp.mpc.statistics import Extremum, Threshold
from mpcdp.prg import system_random
from services import audit
from services.link import LinkError
from services.wire.mpcdp.v1 import federation_pb2 as pb

STATISTICS = ("max", "min", "argmax", "threshold")
KIND = "mpc"
SESSION_ID_BYTES = 16
CLOCK_SLACK = 5.0


class CompareRefused(Exception):
    """A comparison request a node will not run: ``code`` is the gRPC status to answer with."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def statistic_for(request: pb.CompareRequest):
    """The :mod:`mpcdp.mpc.statistics` object a request names."""
    if request.statistic not in STATISTICS:
        raise CompareRefused(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"unknown comparison statistic {request.statistic!r}; choose one of {', '.join(STATISTICS)}",
        )
    if request.statistic == "threshold":
        if request.fraction_den == 0 or request.fraction_num > request.fraction_den:
            raise CompareRefused(grpc.StatusCode.INVALID_ARGUMENT, "a threshold is a fraction in [0, 1]")
        return Threshold(fraction=Fraction(request.fraction_num, request.fraction_den))
    return Extremum(smallest=request.statistic == "min", reveal="index" if request.statistic == "argmax" else "value")


def _integers(values, column: str) -> list[int]:
    out = []
    for v in values:
        f = float(v)
        if not np.isfinite(f) or not f.is_integer():
            raise CompareRefused(
                grpc.StatusCode.INVALID_ARGUMENT, f"column {column!r} must hold whole numbers to be compared"
            )
        out.append(int(f))
    return out


def prepare(statistic, request: pb.CompareRequest, position: int, values: list[int]) -> np.ndarray:
    """This party's additive input: its best value in its own slot (zeros elsewhere), or (sum, count)."""
    if isinstance(statistic, Threshold):
        return statistic.prepare(position, sum(values), len(values))
    if not values:
        raise CompareRefused(grpc.StatusCode.FAILED_PRECONDITION, "this party holds no records to compare")
    slots = [0] * len(request.parties)
    slots[position] = min(values) if request.statistic == "min" else max(values)
    return statistic.prepare(position, np.array(slots, dtype=object))


def release_text(statistic, request: pb.CompareRequest, opened) -> str:
    out = statistic.release(opened)
    if isinstance(statistic, Threshold):
        return "YES" if out else "NO"
    if request.statistic == "argmax":
        return request.parties[int(out)]
    return str(int(out))


async def drive(link, parties: list[str], run: PartyRun, session_id: bytes, deadline) -> None:
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


async def party_compare(node, request: pb.CompareRequest, context) -> pb.CompareReply:
    """The party side of ``Party.Compare`` (``node`` is a :class:`services.party_node.PartyNode`)."""
    who = node._caller(context, node.federation.names("coordinator")[0])
    if who not in node.federation.names("coordinator"):
        await node._deny(context, f"{who!r} is not a coordinator of this federation", caller=who)
    sid = bytes(request.session_id)
    try:
        if len(sid) != SESSION_ID_BYTES:
            raise CompareRefused(grpc.StatusCode.INVALID_ARGUMENT, f"a session id is {SESSION_ID_BYTES} bytes")
        if node._used(sid):
            raise CompareRefused(grpc.StatusCode.ALREADY_EXISTS, "this session id was already used")
        if not node.federation.policy_for(node.me).get("allow_exact_nonlinear", False):
            raise CompareRefused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{node.me}'s policy does not allow exact nonlinear releases (allow_exact_nonlinear)",
            )
        parties = list(request.parties)
        if (
            node.me not in parties
            or len(set(parties)) != len(parties)
            or any(p not in node.federation.names("party") for p in parties)
        ):
            raise CompareRefused(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the party list must name distinct parties of this federation, this one among them",
            )
        if len(parties) < 3:
            raise CompareRefused(
                grpc.StatusCode.INVALID_ARGUMENT, "comparisons under MPC need at least 3 parties (honest majority)"
            )
        now = node._clock()
        if not now < request.deadline <= now + node.max_timeout + CLOCK_SLACK:
            raise CompareRefused(grpc.StatusCode.INVALID_ARGUMENT, "the deadline is past or too far ahead")
        statistic = statistic_for(request)
        if request.column not in node.table.columns:
            raise CompareRefused(grpc.StatusCode.NOT_FOUND, f"column {request.column!r} is not offered by this party")
        position = parties.index(node.me)
        part = prepare(statistic, request, position, _integers(node.table.columns[request.column], request.column))
    except CompareRefused as exc:
        audit.record("refused", session=sid.hex(), status=exc.code.name, reason=str(exc))
        await context.abort(exc.code, str(exc))
    if node.sessions is not None:
        await node.sessions.add_durably(sid, request.deadline)
    engine = Engine(len(parties), position, sid, node._rng(sid) if node._rng else system_random("mpc"))
    run = PartyRun(engine, statistic.program(part))
    node._closed[sid] = None  # used from now on, whatever happens
    try:
        await drive(node.link, parties, run, sid, lambda: request.deadline - node._clock())
        text = release_text(statistic, request, run.result)
    except Exception as exc:  # a link, a deadline, a peer's garbage: abort, release nothing
        reason = (
            str(exc)
            if isinstance(exc, LinkError)
            else "a peer did not answer in time"
            if isinstance(exc, asyncio.TimeoutError)
            else f"the comparison failed: {run.aborted or exc}"
        )
        audit.record("aborted", session=sid.hex(), reason=reason)
        await context.abort(grpc.StatusCode.ABORTED, reason)
    finally:
        node.link.close_session(sid)
    audit.record(
        "released", session=sid.hex(), statistic=request.statistic, parties=",".join(parties), what="comparison release"
    )
    return pb.CompareReply(session_id=sid, statistic=request.statistic, release=text)


async def coordinate(coord, request: pb.CompareRequest, context) -> pb.CompareReply:
    """The coordinator side of ``Coordinator.Compare``: ask every party at once, pass on one agreed release."""
    who = await coord._client(context)
    try:
        statistic_for(request)
    except CompareRefused as exc:
        audit.record("refused", client=who, status=exc.code.name, reason=str(exc))
        await context.abort(exc.code, str(exc))
    timeout = min(request.timeout_seconds or coord.default_timeout, coord.max_timeout)
    parties = list(coord.federation.names("party"))
    sid = secrets.token_bytes(SESSION_ID_BYTES)
    ask = pb.CompareRequest(
        session_id=sid,
        statistic=request.statistic,
        column=request.column,
        parties=parties,
        fraction_num=request.fraction_num,
        fraction_den=request.fraction_den,
        deadline=coord._clock() + timeout,
    )
    calls = {p: asyncio.ensure_future(coord._stub(p).Compare(ask, timeout=timeout + 1.0)) for p in parties}
    done, _ = await asyncio.wait(calls.values(), return_when=asyncio.FIRST_EXCEPTION)
    failures = [(p, c.exception()) for p, c in calls.items() if c.done() and c.exception() is not None]
    if failures:
        for c in calls.values():
            c.cancel()
        for p, exc in failures:
            if isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE:
                coord._forget(p)  # reconnect at once next time, not after the channel's backoff
        party, exc = failures[0]
        detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
        audit.record("aborted", session=sid.hex(), reason=f"{party}: {detail}")
        code = (
            exc.code()
            if isinstance(exc, grpc.aio.AioRpcError)
            and exc.code()
            in (
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.FAILED_PRECONDITION,
            )
            else grpc.StatusCode.ABORTED
        )
        await context.abort(code, f"{party}: {detail}")
    releases = {c.result().release for c in calls.values()}
    if len(releases) != 1:
        audit.record("aborted", session=sid.hex(), reason="the parties computed different releases")
        await context.abort(grpc.StatusCode.ABORTED, "the parties computed different releases; nothing released")
    audit.record("released", session=sid.hex(), client=who, statistic=request.statistic, what="comparison")
    return pb.CompareReply(session_id=sid, statistic=request.statistic, release=releases.pop())
