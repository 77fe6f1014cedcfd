"""A party node: the Party gRPC service over :class:`mpcdp.protocol.PartySession`.

For each session the coordinator opens a stream and proposes a spec; the node
checks it against its own policy and ledger (never the coordinator's
accounting), answers, and encodes its clipped records plus its noise piece,
sends one share to each peer over its long-lived link to that peer
(:mod:`services.link`: one authenticated stream per pair, carrying every
session), waits for the peers' shares and streams back only its partial sum.
It starts sharing as soon as it accepts when the coordinator asks for one
round trip and its policy's ``one_round`` (default true) allows it: a share
is uniformly random on its own and no partial sum leaves before every peer's
share arrived, so a peer that refuses only stops the session (a refusing
peer that shares anyway, with the coordinator, learns what a peer that
accepts and then deviates learns in two rounds: the others' noisy sum, their
budgets charged; the noise pieces are sized for ``colluders`` withheld);
otherwise it waits for StartSharing, sent once every party accepted. The identity of every
caller is its certificate's name. A session id is used once: replays and late
messages for a closed session are refused, and with a state directory the
ids are kept on disk (:class:`services.ledgers.SessionLog`), so a restart
does not forget them. A proposed deadline must be set and at most the
policy's ``max_timeout`` away. Refusals sent back name the reason in words
that carry no local detail (no file path, no dataset name, no record count);
the audit log (:mod:`services.audit`) records refusals, aborts, partial sums
sent and permission denials. Logs and errors carry names, lengths and states
only.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import numpy as np

from mpcdp.prg import RandomSource
from mpcdp.protocol import PartySession, ProtocolError, ShareMessage, SpecError, Status
from mpcdp.protocol.spec import Sharing
from services import audit, convert, server
from services.data import DataError, Table
from services.federation import Federation
from services.ledgers import SessionLog
from services.link import Hub, LinkError
from services.tls import Identity, caller
from services.wire.mpcdp.v1 import federation_pb2 as pb
from services.wire.mpcdp.v1 import federation_pb2_grpc as pb_grpc

CLOSED_REMEMBERED = 100_000
SHARE = "share"  # the link message kind of a party's share for a peer (round 0)
SHARE_MARGIN_FRACTION = 0.2
SHARE_MARGIN_MAX = 2.0  # seconds
CLOCK_SLACK = 5.0  # seconds a proposed deadline may exceed max_timeout by (clocks differ)


@dataclass
class _Live:
    session: PartySession
    at_once: bool = False  # share on accepting (one round trip), not on StartSharing
    complete: asyncio.Event = field(default_factory=asyncio.Event)


class PartyNode(pb_grpc.PartyServicer):
    """One party of a federation, holding its own data and ledger."""

    def __init__(
        self,
        federation: Federation,
        name: str,
        table: Table,
        identity: Identity,
        ledger=None,
        rng: Callable[[bytes], RandomSource] | None = None,
        clock: Callable[[], float] = time.time,
        sessions: SessionLog | None = None,
    ):
        self.federation = federation
        self.me = name
        self.table = table
        self.identity = identity
        self.ledger = ledger
        self.policy = federation.policy_for(name).party()
        self.one_round = self.policy.one_round
        self.max_timeout = self.policy.max_timeout
        self.sessions = sessions  # durable used session ids (None: only those since start)
        self._rng = rng
        self._clock = clock
        self._live: dict[bytes, _Live] = {}
        self._closed: OrderedDict[bytes, None] = OrderedDict()
        self.link = Hub(
            identity,
            lambda peer: self.federation.address(peer),  # read at call time: the federation may be replaced
            self._may_link,
        )

    def _may_link(self, who: str) -> bool:
        """Who may open a link to this party: the other parties and the coordinator."""
        return who != self.me and (who in self.federation.names("party") or who in self.federation.names("coordinator"))

    def services(self) -> list:
        """What a server must offer for this node: the Party service and its links to peers."""
        return [
            (pb_grpc.add_PartyServicer_to_server, self, "mpcdp.v1.Party"),
            (pb_grpc.add_LinkServicer_to_server, self.link, "mpcdp.v1.Link"),
        ]

    # -- bookkeeping ----------------------------------------------------------

    def _caller(self, context, claimed: str = "") -> str:
        return caller(context, claimed, self.identity.insecure)

    def _close(self, sid: bytes) -> None:
        self.link.close_session(sid)
        self._live.pop(sid, None)
        self._closed[sid] = None
        while len(self._closed) > CLOSED_REMEMBERED:
            self._closed.popitem(last=False)

    def _remaining(self, spec) -> float:
        return max(spec.deadline - self._clock(), 0.0)

    async def close(self) -> None:
        await self.link.close()
        if self.sessions is not None:
            self.sessions.close()

    def _used(self, sid: bytes) -> bool:
        return sid in self._live or sid in self._closed or (self.sessions is not None and sid in self.sessions)

    async def _deny(self, context, message: str, **fields) -> None:
        audit.record("denied", message=message, **fields)
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)

    async def _refuse(self, context, sid: bytes, public: str, status: Status, local: str = "") -> None:
        """Answer a proposal with a refusal: ``public`` goes to the coordinator, ``local`` only to the audit log."""
        self._close(sid)
        audit.record(
            "refused", session=sid.hex(), status=status.value, reason=public, detail=local if local != public else None
        )
        await context.write(self._answer(sid, False, public, status))

    # -- coordinator stream -----------------------------------------------------

    async def Session(self, request_iterator, context):
        who = self._caller(context, self.federation.names("coordinator")[0] if self.identity.insecure else "")
        if who not in self.federation.names("coordinator"):
            await self._deny(context, f"{who!r} is not a coordinator of this federation", caller=who)
        first = await context.read()
        if first is grpc.aio.EOF or first.WhichOneof("phase") != "propose":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a session starts with a Propose")
        try:
            spec = convert.spec_from_proto(first.propose.spec, require_deadline=True)
        except SpecError as exc:
            audit.record("refused", status="INVALID_ARGUMENT", reason=str(exc))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        sid = spec.session_id
        if self._used(sid):
            audit.record("refused", session=sid.hex(), status="ALREADY_EXISTS", reason="session id replayed")
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS, "this session id was already used; every session needs a fresh id"
            )
        if self.me not in spec.parties:
            await self._deny(context, f"{self.me!r} is not on this session's party list", session=sid.hex())
        outsiders = [p for p in spec.parties if p not in self.federation.names("party")]
        if outsiders:  # e.g. the coordinator listing itself, to receive a share and then this party's partial sum
            await self._deny(
                context,
                f"not parties of this federation: {', '.join(outsiders)}; refusing to share with them",
                session=sid.hex(),
            )
        if self.sessions is not None:
            await self.sessions.add_durably(sid, spec.deadline)  # on disk before anything else happens here
        now = self._clock()
        try:
            if spec.deadline > now:  # a passed deadline is refused by accept, as DEADLINE_EXCEEDED
                spec.check_deadline(now, self.max_timeout + CLOCK_SLACK)
        except SpecError as exc:
            return await self._refuse(context, sid, str(exc), Status.INVALID_ARGUMENT)
        try:
            records = self.table.records(spec)
        except DataError as exc:
            return await self._refuse(context, sid, exc.public, Status.PERMISSION_DENIED, str(exc))
        rng = self._rng(sid) if self._rng else None
        # the ledger holds the session's loss from accept (durably, until the deadline) to its charge or abort
        session = PartySession(self.me, spec, records, self.policy, rng=rng, budget=self.ledger)
        try:
            session.accept(self._clock())
        except ProtocolError as exc:
            return await self._refuse(context, sid, str(exc), exc.status)
        except ValueError as exc:  # local records unusable (NaN, too many): say so without the detail
            return await self._refuse(
                context,
                sid,
                "its records cannot answer this query (non-finite values, "
                "or more records than the query's max_records)",
                Status.INVALID_ARGUMENT,
                str(exc),
            )
        live = self._live[sid] = _Live(session, at_once=first.propose.start and self.one_round)
        try:
            await context.write(self._answer(sid, True))
            await self._run(live, context)
        finally:
            if session.state != "done":
                session.abort()
            self._close(sid)

    def _answer(self, sid: bytes, accepted: bool, reason: str = "", status: Status | None = None):
        return pb.PartyToCoordinator(
            response=pb.ProposeResponse(
                session_id=sid, party=self.me, accepted=accepted, reason=reason, status=convert.status_wire(status)
            )
        )

    async def _abort(self, context, session: PartySession, reason: str, culprit: str = "") -> None:
        session.abort()
        audit.record("aborted", session=session.spec.session_id.hex(), reason=reason, culprit=culprit)
        await context.write(
            pb.PartyToCoordinator(abort=convert.abort_message(session.spec.session_id, self.me, reason, culprit))
        )

    async def _run(self, live: _Live, context) -> None:
        session, spec = live.session, live.session.spec
        # shares are made while the other parties answer; unless at_once none moves before StartSharing
        outbox = session.make_shares()  # the session draws its own noise piece from its rng
        receiving = asyncio.ensure_future(self._receive_all(live))
        waiter = asyncio.ensure_future(live.complete.wait())
        reader: asyncio.Future
        if live.at_once:
            reader = asyncio.ensure_future(self._start_sharing(context, spec))
        else:
            try:
                await self._start_sharing(context, spec)
            except ProtocolError as exc:
                receiving.cancel()
                waiter.cancel()
                if exc.status == Status.ABORTED:
                    session.abort()
                    return
                return await self._abort(context, session, str(exc))
            reader = asyncio.ensure_future(context.read())
        try:
            failures = await asyncio.gather(*(self._send(m, spec) for m in outbox))
            failed = [f for f in failures if f]
            if failed:
                return await self._abort(context, session, "; ".join(r for _, r in failed), failed[0][0])
            done, _ = await asyncio.wait(
                {reader, receiving, waiter}, timeout=self._share_wait(spec), return_when=asyncio.FIRST_COMPLETED
            )
            if reader in done and live.at_once and reader.exception() is None:  # StartSharing: a confirmation
                reader = asyncio.ensure_future(context.read())
                done, _ = await asyncio.wait(
                    {reader, receiving, waiter}, timeout=self._share_wait(spec), return_when=asyncio.FIRST_COMPLETED
                )
            if waiter in done:  # every share in, some perhaps by the Exchange/DeliverSeed calls
                pass
            elif receiving not in done:
                if reader in done:  # the coordinator aborted or hung up
                    session.abort()
                    return
                missing = session.missing
                return await self._abort(
                    context, session, f"no share from {', '.join(missing)} before the deadline", missing[0]
                )
            elif (failure := receiving.result()) is not None:
                culprit, reason = failure
                return await self._abort(context, session, reason, culprit)
        finally:
            for task in (receiving, waiter) if live.at_once and not reader.done() else (receiving, waiter, reader):
                task.cancel()
        partial = session.partial_sum(self._clock())
        audit.record(
            "released",
            session=spec.session_id.hex(),
            statistic=spec.statistic,
            parties=",".join(spec.parties),
            epsilon=None if spec.is_exact else spec.epsilon,
            delta=spec.delta or None,
            what="partial sum sent to the coordinator",
        )
        for offset, data in convert.pieces(partial.vector):
            msg = pb.PartyToCoordinator()
            if offset == 0:
                head = msg.partial_sum
                head.session_id, head.sender, head.length = spec.session_id, self.me, partial.vector.size
                convert.set_chunk(head.first, offset, data)
            else:
                convert.set_chunk(msg.chunk, offset, data)
            await context.write(msg)
        del partial
        if not reader.done():  # sharing at once: the stream stays open for the coordinator's StartSharing
            await asyncio.wait({reader}, timeout=self._remaining(spec))
            reader.cancel()

    async def _start_sharing(self, context, spec) -> None:
        """Read StartSharing; ProtocolError ABORTED if the coordinator aborted or hung up, FAILED_PRECONDITION
        if it sent something else or nothing before the deadline."""
        try:
            msg = await asyncio.wait_for(context.read(), self._remaining(spec))
        except TimeoutError:
            raise ProtocolError(Status.FAILED_PRECONDITION, "no StartSharing before the deadline") from None
        if msg is grpc.aio.EOF or msg.WhichOneof("phase") == "abort":
            raise ProtocolError(Status.ABORTED, "the coordinator ended the session")
        if msg.WhichOneof("phase") != "start_sharing" or msg.start_sharing.session_id != spec.session_id:
            raise ProtocolError(Status.FAILED_PRECONDITION, "expected StartSharing for this session")

    def _share_wait(self, spec) -> float:
        """How long to wait for peers' shares: until shortly before the deadline, so that this
        party's abort naming the missing peer reaches the coordinator while it is still listening."""
        remaining = self._remaining(spec)
        return remaining - min(SHARE_MARGIN_FRACTION * remaining, SHARE_MARGIN_MAX)

    async def _send(self, msg: ShareMessage, spec) -> tuple[str, str] | None:
        """Deliver one share over the link to its recipient; on failure return (peer, diagnostic)."""
        try:
            await asyncio.wait_for(
                self.link.send(
                    msg.recipient, msg.session_id, 0, SHARE, msg.seed if msg.seed is not None else msg.vector
                ),
                max(self._remaining(spec), 0.001),
            )
        except LinkError as exc:
            return msg.recipient, f"could not deliver a share to {msg.recipient}: {exc}"
        except TimeoutError:
            return msg.recipient, f"could not deliver a share to {msg.recipient} before the deadline"
        return None

    async def _receive_all(self, live: _Live) -> tuple[str, str] | None:
        """Fold in every peer's share as it arrives over the links; on failure (peer, diagnostic)."""
        session = live.session
        spec = session.spec

        async def one(peer: str):
            data = await self.link.receive(peer, spec.session_id, 0, SHARE)
            if spec.sharing is Sharing.SEEDED:
                msg = ShareMessage(spec.session_id, peer, self.me, seed=bytes(data))
            else:
                if len(data) % 8:
                    raise ProtocolError(Status.INVALID_ARGUMENT, "a share vector is whole uint64 words")
                msg = ShareMessage(spec.session_id, peer, self.me, vector=np.frombuffer(data, dtype="<u8"))
            session.receive_share(msg, self._clock())

        tasks = {asyncio.ensure_future(one(p)): p for p in session.missing}
        try:
            for done in asyncio.as_completed(tasks):
                try:
                    await done
                except LinkError as exc:
                    return exc.peer, f"the link to {exc.peer} failed: {str(exc).split(': ', 1)[-1]}"
                except ProtocolError as exc:
                    culprit = next(
                        (p for t, p in tasks.items() if t.done() and not t.cancelled() and t.exception() is exc), ""
                    )
                    audit.record(
                        "refused",
                        session=spec.session_id.hex(),
                        status=exc.status.value,
                        reason=str(exc),
                        culprit=culprit or None,
                    )
                    return culprit, f"a share was refused: {exc}"
        finally:
            for t in tasks:
                t.cancel()
        live.complete.set()
        return None

    # -- peer shares ------------------------------------------------------------

    async def Compare(self, request: pb.CompareRequest, context) -> pb.CompareReply:
        """A comparison statistic under MPC with the other parties (:mod:`services.mpc_node`)."""
        from services import mpc_node

        return await mpc_node.party_compare(self, request, context)

    async def Exchange(self, request_iterator, context):
        first = await context.read()
        if first is grpc.aio.EOF or first.WhichOneof("phase") != "share":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "an exchange starts with a ShareHeader")
        return await self._receive(first.share, context)

    async def DeliverSeed(self, request: pb.ShareHeader, context):
        if request.WhichOneof("payload") != "seed":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "DeliverSeed carries a seed; full-vector shares go by Exchange"
            )
        return await self._receive(request, context)

    async def _receive(self, head: pb.ShareHeader, context) -> pb.ShareAck:
        """Check who sent a share for which live session, and fold it in."""
        who = self._caller(context, head.sender)
        if head.sender != who:
            await self._deny(
                context,
                f"share claims to come from {head.sender!r} but the caller is {who!r}",
                caller=who,
                session=head.session_id.hex(),
            )
        live = self._live.get(head.session_id)
        if live is None:
            if head.session_id in self._closed:
                await server.abort(context, grpc.StatusCode.FAILED_PRECONDITION, "that session is closed")
            await server.abort(context, grpc.StatusCode.NOT_FOUND, "unknown session")
        session = live.session
        try:
            if head.WhichOneof("payload") == "seed":
                msg = ShareMessage(head.session_id, head.sender, head.recipient, seed=head.seed)
            elif head.WhichOneof("payload") == "vector_length":
                msg = ShareMessage(
                    head.session_id,
                    head.sender,
                    head.recipient,
                    vector=await self._read_vector(context, head.vector_length, session),
                )
            else:
                raise ProtocolError(Status.INVALID_ARGUMENT, "a share carries a seed or a vector")
            session.receive_share(msg, self._clock())
        except ProtocolError as exc:
            await context.abort(convert.GRPC_CODES[exc.status], str(exc))
        except TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the share did not arrive before the deadline")
        if not session.missing:
            live.complete.set()
        return pb.ShareAck(session_id=head.session_id)

    async def _read_vector(self, context, length: int, session: PartySession) -> np.ndarray:
        if session.spec.sharing is not Sharing.FULL:
            raise ProtocolError(Status.INVALID_ARGUMENT, "this session uses seeded shares, not vectors")
        assembler = convert.RingVector(length, session.length)
        while not assembler.done:
            msg = await asyncio.wait_for(context.read(), self._remaining(session.spec))
            if msg is grpc.aio.EOF or msg.WhichOneof("phase") != "chunk":
                raise ProtocolError(Status.INVALID_ARGUMENT, "the share's vector ended early")
            assembler.add(msg.chunk)
        return assembler.vector
