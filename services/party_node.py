"""A party node: :class:`mpcdp.protocol.PartySession` over its long-lived links.

Every message of a session travels on the node's mutually authenticated links (:mod:`services.link`, the kinds
of :mod:`services.sessions`): the coordinator's proposal arrives pushed on the coordinator's link, and who
proposed is that link's certificate name (only a coordinator of the federation may). The node checks the spec
against its own policy and ledger (never the coordinator's accounting). In a keyed session (the default, where
every party's policy allows ``one_round``) it sends nothing to its peers: its partial sum, sent as its answer,
is its encoded clipped records plus its noise piece plus one mask per peer expanded from their pair key
(:mod:`services.pair_keys`, agreed once per link) and the digest of the session's specs
(:attr:`mpcdp.protocol.spec.Batch.digest`); with it go the ids of the keys it used (see
:meth:`PartyNode._keyed` for what sending it before the others accept reveals: nothing more than a refusing
peer colluding with the coordinator learns). Otherwise it answers, encodes its clipped records plus its noise
piece, sends one share to each peer over its link to that peer, folds in the peers' shares as they arrive and
sends back only its partial sum. It starts sharing as soon as it accepts when the coordinator asks for one
round trip and its policy's ``one_round`` (default true) allows it: a share is uniformly random on its own and
no partial sum leaves before every peer's share arrived, so a peer that refuses only stops the session (a
refusing peer that shares anyway, with the coordinator, learns what a peer that accepts and then deviates
learns in two rounds: the others' noisy sum, their budgets charged; the noise pieces are sized for
``colluders`` withheld); otherwise its answer says it waits, and it shares on the coordinator's START, sent
once every party accepted. A session id is used once: replays and late messages for a closed session are
refused, and with a state directory the ids are kept on disk (:class:`services.ledgers.SessionLog`, group-
committed), so a restart does not forget them: the write starts when the proposal arrives and the partial sum
(the only message a replay could obtain twice) leaves only once it is on disk. A proposed deadline must be set
and at most the policy's ``max_timeout`` away. At most ``max_sessions`` sessions (additive and many-party) are
live at once; a proposal beyond that is refused as RESOURCE_EXHAUSTED before anything is reserved. Refusals
sent back name the reason in words that carry no local detail (no file path, no dataset name, no record
count); the audit log (:mod:`services.audit`) records refusals, aborts, partial sums sent and permission
denials. The coordinator's abort ends a session at once (the node answers with its own abort: the
confirmation), and so does the link to the coordinator breaking. Logs and errors carry names, lengths and
states only."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from mpcdp.dp.ledger import BudgetExceeded
from mpcdp.prg import SEED_BYTES, RandomSource, system_random
from mpcdp.protocol import PartySession, ProtocolError, QuerySpec, ShareMessage, SpecError, Status
from mpcdp.protocol.spec import MAX_BATCH, Batch, Sharing
from services import audit, convert
from services.data import DataError, Table
from services.federation import Federation
from services.futures import retrieved
from services.ledgers import SETTLE_SECONDS, SessionLog, group_commit, public_refusal, settled
from services.link import Hub, LinkError, TooLong
from services.pair_keys import PairKeyError, PairKeys
from services.sessions import ABORT, ANSWER, PARTIAL, PROPOSE, SHARE, START, keyed_partial
from services.tls import Identity, caller
from services.wire.mpcdp.v1 import federation_pb2 as pb
from services.wire.mpcdp.v1 import federation_pb2_grpc as pb_grpc

log = logging.getLogger("mpcdp.party")
CLOSED_REMEMBERED = 100_000  # closed ids of sessions without a deadline here (many-party, comparisons), newest kept
MAX_REMEMBERED = 400_000  # closed additive session ids whose deadline is still ahead (all kept; more: busy)
SHARE_MARGIN_FRACTION = 0.2
SHARE_MARGIN_MAX = 2.0  # seconds
CLOCK_SLACK = 5.0  # seconds a proposed deadline may exceed max_timeout by (clocks differ)
READ_OFF_LOOP = 1 << 18  # ring elements: a longer vector is read and encoded off the event loop (a millisecond or more)
VECTOR_READERS = 2  # long vectors read at once (threads of their own; more wait their turn)
# sessions (additive and many-party) live at once at a party: each holds vectors of up to the policy's max_length,
# so this bounds its memory whatever its coordinators send; above the coordinator's SESSIONS_PER_PARTY, since a
# coordinator frees its slot a moment before the party closes its session
MAX_SESSIONS = 100
ABORT_WAIT = 5.0  # seconds close waits for its cancelled sessions to end (each queues the free of what it held)
BUSY = "too many sessions in flight at this party; retry later"
REMEMBERING = "this party remembers too many sessions whose deadlines are still ahead; retry later"


@dataclass
class _Live:
    """A session this node has taken up: who proposed it, its spec, its state once accepted, its task."""

    coordinator: str
    spec: QuerySpec
    start: bool  # the coordinator asked to share at once
    batch: tuple[QuerySpec, ...] = ()  # more statistics in the session (the proposal's batch)
    session: PartySession | None = None
    task: asyncio.Task | None = None
    durable: asyncio.Future | None = None  # the session id on disk (SessionLog), awaited before the partial sum
    held: bool = False  # its loss is (being) reserved on the ledger, neither charged nor freed yet


class _Unreadable(Exception):
    """Statistic ``index`` of a session's batch cannot be read from the table (its DataError)."""

    def __init__(self, index: int, error: DataError):
        super().__init__(str(error))
        self.index, self.error = index, error

    @classmethod
    def guard(cls, index: int, read: Callable[[QuerySpec], object], spec: QuerySpec) -> object:
        try:
            return read(spec)
        except DataError as exc:
            raise cls(index, exc) from None


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
        max_sessions: int = MAX_SESSIONS,
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
        self.max_sessions = max_sessions
        self.many_in_flight = 0  # many-party sessions running (services/many_party.py counts them)
        self._rng = rng
        self._random = system_random("party")  # one CSPRNG stream for every session (no key set-up each)
        self._clock = clock
        self._live: dict[bytes, _Live] = {}
        self._closed: OrderedDict[bytes, None] = OrderedDict()  # closed ids of other session kinds
        self._dated: dict[bytes, float] = {}  # closed additive session ids -> deadline, kept until it passed
        self._expiry: list[tuple[float, bytes]] = []  # heap of (deadline, id) over _dated
        # long vectors' reads and encodes: threads of their own, not asyncio's default ones, which write the session
        # log and commit the ledger (an fsync queued behind a few 80 ms reads waited 150 ms for its thread)
        self._vector_reads = concurrent.futures.ThreadPoolExecutor(VECTOR_READERS, "vector-read")
        self.link = Hub(
            identity,
            lambda peer: self.federation.address(peer),  # read at call time: the federation may be replaced
            self._may_link,
        )
        from services import many_party

        many_party.serve_party(self)  # many-party proposals on the links (services/many_party.py)
        # pair keys with the other parties, agreed once per link (keyed sessions: no message between parties)
        self.pair_keys = PairKeys(self.link, lambda who: who != self.me and who in self.federation.names("party"))
        self.link.on(PROPOSE, self._proposed)
        self.link.on(ABORT, self._aborted)
        self.link.on_drop(self._dropped)
        self.link.listen_port = federation.link_ports(name)[0]  # the federation file's link_port (0: a free one)

    def _may_link(self, who: str) -> bool:
        """Who may open a link to this party: the other parties and the coordinator."""
        return who != self.me and (who in self.federation.names("party") or who in self.federation.names("coordinator"))

    def services(self) -> list:
        """What a server must offer for this node: the Party service (comparisons) and its links."""
        return [
            (pb_grpc.add_PartyServicer_to_server, self, "mpcdp.v1.Party"),
            self.link.service(),
        ]

    # -- bookkeeping ----------------------------------------------------------

    def _caller(self, context, claimed: str = "") -> str:
        """Who made a gRPC call (a comparison's Compare): its certificate's name."""
        return caller(context, claimed, self.identity.insecure)

    async def _deny(self, context, message: str, **fields) -> None:
        audit.record("denied", message=message, **fields)
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)

    def _close(self, sid: bytes) -> asyncio.Future | None:
        """Forget a session; the free of its uncharged reservation (queued after it), if it held one."""
        live = self._live.pop(sid, None)
        self.link.close_session(sid)
        freed = None
        if live is not None and live.held:  # not charged: free its reservation (queued after it)
            live.held = False
            freed = group_commit(self.ledger).free(sid)
        if live is not None:  # kept while its deadline is ahead (see _forget_expired)
            self._dated[sid] = live.spec.deadline
            heapq.heappush(self._expiry, (live.spec.deadline, sid))
            self._forget_expired()
            return freed
        self._closed[sid] = None
        while len(self._closed) > CLOSED_REMEMBERED:
            self._closed.popitem(last=False)
        return freed

    def _forget_expired(self) -> None:
        """Forget the closed sessions whose deadline (plus ``CLOCK_SLACK``) has passed on this party's clock, and
        only those: until then a replay of the id must be refused here, since a keyed session's masks come from
        pair keys that outlive it. After it, a replay fails its own deadline check, and a replay with a new
        deadline is another spec, masked with unrelated streams (:attr:`mpcdp.protocol.QuerySpec.digest`). At
        most ``MAX_REMEMBERED`` are kept: beyond that new proposals are refused as busy."""
        now = self._clock()
        while self._expiry and self._expiry[0][0] + CLOCK_SLACK < now:
            _, sid = heapq.heappop(self._expiry)
            self._dated.pop(sid, None)

    def remembers_too_many(self) -> bool:
        """Whether ``MAX_REMEMBERED`` closed sessions with deadlines still ahead are kept: refuse new ones."""
        self._forget_expired()
        return len(self._dated) >= MAX_REMEMBERED

    def _remaining(self, spec) -> float:
        return max(spec.deadline - self._clock(), 0.0)

    async def close(self) -> None:
        """Cancel the live sessions and close the links; the reservations the sessions held are freed (queued as each
        ends, then awaited: :func:`services.ledgers.settled`) before the loop may stop."""
        tasks = [live.task for live in self._live.values() if live.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=ABORT_WAIT)
        self.pair_keys.forget()
        await self.link.close()
        if not await settled(self.ledger):
            log.error("closing with ledger changes still being committed after %.0f s", SETTLE_SECONDS)
        self._vector_reads.shutdown(wait=False, cancel_futures=True)
        if self.sessions is not None:
            self.sessions.close()

    def full(self) -> bool:
        """Whether ``max_sessions`` sessions (additive and many-party) are live: a new one is refused."""
        return len(self._live) + self.many_in_flight >= self.max_sessions

    def _used(self, sid: bytes) -> bool:
        return (
            sid in self._live
            or sid in self._dated
            or sid in self._closed
            or (self.sessions is not None and sid in self.sessions)
        )

    def _answer(self, coordinator: str, sid: bytes, accepted: bool, reason="", status=None, waits=False) -> None:
        response = pb.ProposeResponse(
            session_id=sid,
            party=self.me,
            accepted=accepted,
            reason=reason,
            status=convert.status_wire(status),
            waits=waits,
        )
        self.link.post(coordinator, sid, 0, ANSWER, response.SerializeToString())

    def _refuse(self, coordinator: str, sid: bytes, public: str, status: Status, local: str = "", **fields) -> None:
        """Answer a proposal with a refusal: ``public`` goes to the coordinator, ``local`` only to the audit log."""
        event = "denied" if status is Status.PERMISSION_DENIED and fields.get("caller") else "refused"
        audit.record(
            event,
            session=sid.hex(),
            status=status.value,
            reason=public,
            detail=local if local != public else None,
            **fields,
        )
        self._answer(coordinator, sid, False, public, status)

    # -- a proposal, pushed on the coordinator's link -----------------------------

    def _proposed(self, peer: str, sid: bytes, _round: int, payload: memoryview) -> None:
        """Check a proposal and take the session up (its task does the rest), or refuse it."""
        if peer not in self.federation.names("coordinator"):
            return self._refuse(
                peer, sid, f"{peer!r} is not a coordinator of this federation", Status.PERMISSION_DENIED, caller=peer
            )
        try:
            propose = pb.Propose.FromString(bytes(payload))
            if len(propose.batch) >= MAX_BATCH:
                raise SpecError("batch", f"at most {MAX_BATCH} statistics in one session")
            spec = convert.spec_from_proto(propose.spec, require_deadline=True)
            if spec.session_id != sid:
                raise SpecError("session_id", "differs from the session the proposal was sent for")
            batch = Batch((spec, *(convert.spec_from_proto(s, require_deadline=True) for s in propose.batch)))
        except DecodeError:
            return self._refuse(peer, sid, "the proposal does not decode", Status.INVALID_ARGUMENT)
        except SpecError as exc:
            return self._refuse(peer, sid, str(exc), Status.INVALID_ARGUMENT)
        if self._used(sid):
            return self._refuse(
                peer,
                sid,
                "this session id was already used; every session needs a fresh id",
                Status.ALREADY_EXISTS,
                "session id replayed",
            )
        if self.full():  # before anything is reserved or held
            return self._refuse(peer, sid, BUSY, Status.RESOURCE_EXHAUSTED)
        if self.remembers_too_many():
            return self._refuse(peer, sid, REMEMBERING, Status.RESOURCE_EXHAUSTED)
        if self.me not in spec.parties:
            return self._refuse(
                peer, sid, f"{self.me!r} is not on this session's party list", Status.PERMISSION_DENIED, caller=peer
            )
        outsiders = [p for p in spec.parties if p not in self.federation.names("party")]
        if outsiders:  # e.g. the coordinator listing itself, to receive a share and then this party's partial sum
            return self._refuse(
                peer,
                sid,
                f"not parties of this federation: {', '.join(outsiders)}; refusing to share with them",
                Status.PERMISSION_DENIED,
                caller=peer,
            )
        live = self._live[sid] = _Live(peer, spec, propose.start, batch.specs[1:])  # from now on a replay is refused
        live.task = asyncio.ensure_future(self._session(live))

    async def _session(self, live: _Live) -> None:
        spec, sid, coordinator = live.spec, live.spec.session_id, live.coordinator
        try:
            if self.sessions is not None:  # written now, on disk (group-committed) before the partial sum leaves
                live.durable = self.sessions.durable(sid, spec.deadline)
                live.durable.add_done_callback(retrieved)
            session = await self._accept(live)
            if session is None:
                return
            live.session = session
            if spec.sharing is not Sharing.KEYED:  # keyed: pre-approved, the partial sum is the answer
                waits = not (live.start and self.one_round)
                self._answer(coordinator, sid, True, waits=waits)
                if waits and not await self._started(live):
                    return
            await self._run(live)
        except Exception:  # a bug: the coordinator hears that the session ended, never the detail
            log.exception("session %s failed", sid.hex())
            self._abort(live, "an internal error ended the session at this party")
        finally:
            if live.session is not None and live.session.state != "done":
                live.session.abort()
            self._close(sid)

    async def _accept(self, live: _Live) -> PartySession | None:
        """The session, accepted; None once refused (the refusal sent). Every statistic is checked against the
        policy before any record is read; then the records are read and encoded one statistic at a time (a
        batch's, or a vector of ``READ_OFF_LOOP`` elements or more, off the event loop on the node's own
        ``VECTOR_READERS`` threads), and the loss is reserved (:meth:`_reserve`) before the session
        is accepted: a refusal comes before any share moves."""
        spec, sid, coordinator = live.spec, live.spec.session_id, live.coordinator
        now = self._clock()
        try:
            if spec.deadline > now:  # a passed deadline is refused by accept, as DEADLINE_EXCEEDED
                spec.check_deadline(now, self.max_timeout + CLOCK_SLACK)
        except SpecError as exc:
            self._refuse(coordinator, sid, str(exc), Status.INVALID_ARGUMENT)
            return None
        specs = (spec, *live.batch)
        rng = self._rng(sid) if self._rng else self._random
        # the ledger holds the session's loss (a batch's composed) from accept (durably, until the deadline) to its
        # charge or abort: this node reserves, charges and frees it (group-committed, off the loop), not the session
        session = PartySession(
            self.me,
            spec,
            None,
            self.policy,
            rng=rng,
            batch=live.batch,
            read=lambda i: _Unreadable.guard(i, self.table.records, specs[i]),
        )
        try:
            session.check(now)  # the policy for every statistic, the batch's length: no record read yet
            if live.batch or session.length >= READ_OFF_LOOP:  # the session log's write starts meanwhile
                await asyncio.get_running_loop().run_in_executor(self._vector_reads, session.read)
            else:
                session.read()
            if spec.sharing is not Sharing.KEYED:  # keyed: charged as its answer leaves, with nothing in between
                await self._reserve(live, session)
            session.accept(self._clock())
        except ProtocolError as exc:
            self._refuse(coordinator, sid, str(exc), exc.status)
            return None
        except _Unreadable as exc:
            named = f"statistic {exc.index} of the batch ({specs[exc.index].statistic}): " if live.batch else ""
            self._refuse(coordinator, sid, named + exc.error.public, Status.PERMISSION_DENIED, str(exc.error))
            return None
        except ValueError as exc:  # local records unusable (NaN, too many): say so without the detail
            self._refuse(
                coordinator,
                sid,
                "its records cannot answer this query (non-finite values, "
                "or more records than the query's max_records)",
                Status.INVALID_ARGUMENT,
                str(exc),
            )
            return None
        return session

    async def _reserve(self, live: _Live, session: PartySession) -> None:
        """Reserve the session's loss (a batch's composed) on this party's own ledger until its deadline, counting
        the other sessions held (ProtocolError RESOURCE_EXHAUSTED, in the ledger's words, if it would overspend)."""
        loss = session.batch.loss
        if self.ledger is None or loss is None:
            return
        live.held = True  # from now on: freed when the session closes uncharged, even if this wait is cancelled
        try:
            await group_commit(self.ledger).reserve(live.spec.session_id, loss, until=live.spec.deadline)
        except Exception as exc:  # the ledger's own error says spent/requested/remaining
            live.held = False
            raise ProtocolError(Status.RESOURCE_EXHAUSTED, public_refusal(exc)) from None

    async def _charge(self, live: _Live) -> bool:
        """Charge the session's loss before its partial sum leaves (on disk first): its reservation, or (a keyed
        session, which reserves nothing: its partial sum is its answer, made at once) the loss itself, refused then
        as it would have been at accept if it would overspend, counting the sessions held. Whether the partial sum
        may leave (if not, the session is refused or aborted)."""
        loss = live.session.batch.loss if live.session is not None else None
        if self.ledger is None or loss is None:
            return True
        sid = live.spec.session_id
        try:
            if live.held:
                await group_commit(self.ledger).charge_reserved(sid)
            else:
                await group_commit(self.ledger).charge_now(loss, label=sid.hex())  # the label charge_reserved gives
        except BudgetExceeded as exc:
            if not live.held:
                self._refuse(live.coordinator, sid, public_refusal(exc), Status.RESOURCE_EXHAUSTED)
                return False
            self._abort(live, f"this party's reservation lapsed and the budget no longer allows it: {exc}")
            return False
        except Exception as exc:
            log.error("session %s: the ledger could not charge it: %s", sid.hex(), type(exc).__name__)
            self._abort(live, "this party's privacy ledger could not record the charge; nothing was sent")
            return False
        live.held = False
        return True

    async def _started(self, live: _Live) -> bool:
        """Wait for the coordinator's START; whether it came (if not, the session is aborted)."""
        spec = live.spec
        try:
            await self.link.receive(live.coordinator, spec.session_id, 0, START, timeout=self._remaining(spec))
        except TimeoutError:
            self._abort(live, "no start from the coordinator before the deadline")
            return False
        except LinkError:  # the coordinator's link broke: nobody to tell
            return False
        return True

    def _abort(self, live: _Live, reason: str, culprit: str = "") -> None:
        """Give up on a session, telling the coordinator why (naming the culprit, if known)."""
        if live.session is not None:
            live.session.abort()
        sid = live.spec.session_id
        audit.record("aborted", session=sid.hex(), reason=reason, culprit=culprit)
        abort = convert.abort_message(sid, self.me, reason, culprit)
        self.link.post(live.coordinator, sid, 0, ABORT, abort.SerializeToString())

    async def _run(self, live: _Live) -> None:
        """Share, fold in the peers' shares, send the partial sum (or abort naming the culprit); in a keyed
        session, mask and send the partial sum (:meth:`_keyed`)."""
        session = live.session
        assert session is not None
        if session.spec.sharing is Sharing.KEYED:
            return await self._keyed(live)
        sent = {self._post_share(m): m.recipient for m in session.make_shares()}  # draws its own noise piece
        failure = await self._exchange(session, sent)
        if failure is not None:
            return self._abort(live, failure[1], failure[0])
        try:
            partial = session.partial_sum(self._clock())
        except ProtocolError as exc:  # the deadline passed meanwhile
            return self._abort(live, str(exc))
        if await self._charge(live):
            await self._send_partial(live, partial.vector)
        del partial

    async def _keyed(self, live: _Live) -> None:
        """A keyed session: mask with the pair keys (agreed once per link), send the partial sum as the answer.

        The partial sum leaves before this party knows whether its peers accepted. That reveals nothing more
        than a refusing peer colluding with the coordinator learns today: the coordinator can remove a pair's
        mask only with that pair's key, so without every key crossing a set's boundary the partial sums of the
        set are uniformly random; with the keys of the refusing (colluding) peers it learns the noisy sum of
        the parties that answered, which the noise pieces are sized for (``colluders`` withheld). The loss is
        charged (on disk) before the partial sum leaves, and stays charged if the session then aborts. So the party
        may be charged for a partial sum never sent (conservative, never an overspend): by an abort that comes while
        the charge commits, a failed write of the session id to the session log (awaited after the charge, before
        the post), a post the link refuses at once (its queue full, the message too long), or a deadline that fires
        before the first frame is written. The session id is on disk before anything leaves."""
        session, spec = live.session, live.spec
        assert session is not None
        peers = session.peers
        try:
            keys = await self.pair_keys.keys(peers, self._share_wait(spec))
        except PairKeyError as exc:
            return self._abort(live, f"no pair key with {exc.peer}: {exc.reason}", exc.peer)
        try:  # masked slice by slice as the link writes it (the next slice while this one is on the wire)
            partial = session.masked_stream({p: k.secret for p, k in keys.items()}, self._clock())
        except ProtocolError as exc:  # the deadline passed meanwhile
            return self._abort(live, str(exc))
        if sys.byteorder != "little":  # the link sends a little-endian copy, taken at post: masked whole first
            partial.upto(partial.length)
        if await self._charge(live):
            payload = keyed_partial(partial.vector, [keys[p].id for p in peers])
            await self._send_partial(live, payload, lambda end: partial.upto(-(-end // convert.RING_BYTES)))

    async def _send_partial(self, live: _Live, payload, prepare: Callable[[int], object] | None = None) -> None:
        """Audit, wait until the session id is on disk (a replay after a restart must find it: nothing leaves
        twice), then send the partial sum to the coordinator (``prepare``: the link's, :meth:`Hub.post`)."""
        spec = live.spec
        specs = (spec, *live.batch)
        loss = live.session.batch.loss if live.session is not None else spec.loss
        epsilon, delta = loss.epsilon_delta(sum(s.delta for s in specs)) if loss is not None else (None, 0.0)
        audit.record(
            "released",
            session=spec.session_id.hex(),
            statistic=",".join(s.statistic for s in specs),
            parties=",".join(spec.parties),
            epsilon=epsilon,  # a batch's losses composed
            delta=delta or None,
            what="partial sum sent to the coordinator",
        )
        if live.durable is not None:
            await live.durable
        with contextlib.suppress(LinkError, TimeoutError):  # the coordinator is gone or late: it aborts itself
            await asyncio.wait_for(
                self.link.post(live.coordinator, spec.session_id, 0, PARTIAL, payload, droppable=True, prepare=prepare),
                max(self._remaining(spec), 0.001),
            )

    def _post_share(self, msg: ShareMessage) -> asyncio.Future:
        payload = msg.seed if msg.seed is not None else msg.vector
        return self.link.post(msg.recipient, msg.session_id, 0, SHARE, payload, droppable=True)

    def _share_wait(self, spec) -> float:
        """How long to wait for peers' shares: until shortly before the deadline, so that this
        party's abort naming the missing peer reaches the coordinator while it is still listening."""
        remaining = self._remaining(spec)
        return remaining - min(SHARE_MARGIN_FRACTION * remaining, SHARE_MARGIN_MAX)

    async def _exchange(self, session: PartySession, sent: dict) -> tuple[str, str] | None:
        """Wait until this party's shares are written and every peer's share is folded in; on failure
        (culprit, diagnostic)."""
        spec = session.spec
        receiving = {asyncio.ensure_future(self._receive_share(session, p)): p for p in session.missing}
        steps = {**sent, **receiving}
        try:
            done, _ = await asyncio.wait(steps, timeout=self._share_wait(spec), return_when=asyncio.FIRST_EXCEPTION)
            failed = next((t for t in steps if t in done and t.exception() is not None), None)
            if failed is not None:
                peer, exc = steps[failed], failed.exception()
                if failed in sent:
                    return peer, f"could not deliver a share to {peer}: {exc}"
                if isinstance(exc, LinkError):
                    return peer, f"the link to {peer} failed: {str(exc).split(': ', 1)[-1]}"
                if isinstance(exc, ProtocolError):
                    audit.record(
                        "refused", session=spec.session_id.hex(), status=exc.status.value, reason=str(exc), culprit=peer
                    )
                    return peer, f"a share was refused: {exc}"
                raise exc
            unsent = [p for t, p in sent.items() if t not in done]
            if unsent:
                return unsent[0], f"could not deliver a share to {unsent[0]} before the deadline"
            missing = session.missing
            if missing:
                return missing[0], f"no share from {', '.join(missing)} before the deadline"
            return None
        finally:
            for t in receiving:
                t.cancel()

    async def _receive_share(self, session: PartySession, peer: str) -> None:
        spec = session.spec
        size = SEED_BYTES if spec.sharing is Sharing.SEEDED else 8 * session.length
        try:  # a longer share is refused at its first frame, never assembled
            data = await self.link.receive(peer, spec.session_id, 0, SHARE, max_bytes=size)
        except TooLong as exc:
            raise ProtocolError(
                Status.INVALID_ARGUMENT, f"a share of {exc.total} bytes, more than the {size} expected"
            ) from None
        if spec.sharing is Sharing.SEEDED:
            msg = ShareMessage(spec.session_id, peer, self.me, seed=bytes(data))
        else:
            if len(data) % 8:
                raise ProtocolError(Status.INVALID_ARGUMENT, "a share vector is whole uint64 words")
            msg = ShareMessage(spec.session_id, peer, self.me, vector=np.frombuffer(data, dtype="<u8"))
        session.receive_share(msg, self._clock())

    # -- the coordinator ends a session ---------------------------------------------

    def _aborted(self, peer: str, sid: bytes, _round: int, payload: memoryview) -> None:
        """The coordinator's abort: close the session at once and confirm (also for a session already closed), once
        the reservation it held is freed (the coordinator waits for the confirmations before its analyst hears: this
        party's budget is free by then)."""
        live = self._live.get(sid)
        if peer not in self.federation.names("coordinator") or (live is not None and live.coordinator != peer):
            audit.record("denied", caller=peer, session=sid.hex(), message="an abort from a node that did not propose")
            return
        freed = self._end(live) if live is not None else None
        confirm = convert.abort_message(sid, self.me, "the session is closed").SerializeToString()
        if freed is None or freed.done():
            self.link.post(peer, sid, 0, ABORT, confirm)
        else:
            freed.add_done_callback(lambda _: self.link.post(peer, sid, 0, ABORT, confirm))

    def _dropped(self, peer: str, error: LinkError) -> None:
        """The link to a coordinator broke: its sessions here can make no progress."""
        for live in [live for live in self._live.values() if live.coordinator == peer]:
            self._end(live)

    def _end(self, live: _Live) -> asyncio.Future | None:
        """End a session at once (its task cancelled); the free of its reservation, if it held one (:meth:`_close`)."""
        if live.session is not None and live.session.state != "done":
            live.session.abort()
        freed = self._close(live.spec.session_id)
        if live.task is not None:
            live.task.cancel()
        return freed

    async def Compare(self, request: pb.CompareRequest, context) -> pb.CompareReply:
        """A comparison statistic under MPC with the other parties (:mod:`services.mpc_node`)."""
        from services import mpc_node

        return await mpc_node.party_compare(self, request, context)
