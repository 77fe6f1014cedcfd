"""The coordinator node: the Coordinator gRPC service over :class:`mpcdp.protocol.CoordinatorSession`.

For each analyst query it builds a spec with a fresh session id and a
deadline, refuses it (before any share moves) if its policy or its own ledger
says no, and runs the session over its long-lived link to each party
(:mod:`services.link`, the kinds of :mod:`services.sessions`). A keyed session
(asked for by default, run where every party's policy allows ``one_round``)
is one message each way: it proposes, and each party's partial sum is its
acceptance, checked for matching pair key ids pair by pair (a mismatch aborts
naming the pair). Otherwise it proposes (asking each party to share at once on
accepting: one round trip), sends START to the parties whose answer says they
wait for it once every party accepted, folds in the partial sums as they
arrive, releases and charges its ledger. Who answered is the link's certificate name. Any failure (a party
down, refusing, slow past the deadline or dropping mid-round: a broken link
fails its sessions at once) aborts the session on every node with a
diagnostic naming the party, and charges nothing.

Queries run concurrently: every session shares the same links, and the
coordinator's ledger reserves what accepted, uncharged sessions will spend
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
import concurrent.futures
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf.message import DecodeError

from mpcdp.dp.loss import PrivacyLoss
from mpcdp.protocol import (
    CoordinatorSession,
    PartyPolicy,
    ProtocolError,
    QuerySpec,
    Release,
    Response,
    SpecError,
    Status,
)
from mpcdp.protocol.coordinator import KeptTotals
from mpcdp.protocol.spec import MAX_BATCH, MAX_KEYED_PARTIES, Batch, Sharing, new_session_id
from services import audit, convert, releases, server
from services.channels import Channels
from services.deadlines import COALESCED_SESSIONS, DEFAULT_TIMEOUT, SEND_TIMEOUT
from services.federation import Federation
from services.ledgers import SETTLE_SECONDS, group_commit, public_refusal, settled
from services.link import Hub, LinkError
from services.query_link import LinkContext, QueryService
from services.sessions import ABORT, ANSWER, PARTIAL, PROPOSE, START, KeyedPartial
from services.tls import Identity, caller
from services.wire.mpcdp.v1 import federation_pb2 as pb
from services.wire.mpcdp.v1 import federation_pb2_grpc as pb_grpc

log = logging.getLogger("mpcdp.coordinator")
DEFAULT_CONFIDENCE = 0.95
ABORT_GRACE = 2.0  # seconds to wait for each party to confirm an abort
KEEP_GRACE = 90.0  # seconds close waits for releases being kept (a commit waits up to 30 s for another's lock)
RELEASE_READERS = 2  # kept releases Fetch reads at once (each on a thread of its own; more Fetches wait their turn)
SESSION_HEADER = "mpcdp-session-id"
MAX_REASON = 500  # characters of a party's abort reason passed on
SESSIONS_PER_PARTY = 64  # sessions in flight to one party at once; more queries wait (party_node.MAX_SESSIONS)
REFUSED_SECONDS = 60.0  # after a party refused a keyed session, its sessions run seeded for this long
COALESCE_LENGTH = 1024  # ring elements: a single query at most this long may run together with others
SEEDED_WHY = "so that no party is charged unless every party accepted (a keyed partial sum is charged as it leaves)"
COALESCED = f"run together with other DP queries in one seeded session, {SEEDED_WHY}"

EXPIRED_WAITING = "the query's deadline passed while it waited for a session; nothing was proposed"
CHARGED_TOGETHER = (
    "the session this query ran in together with other DP queries aborted after every party accepted (the "
    "parties may have charged it), so it is not run again"
)


class SessionFailed(Exception):
    """A session aborted; ``status`` is the gRPC code to return, the text names the culprit. ``accepted``: it
    failed after every party accepted, so a party may have charged its ledger for it."""

    def __init__(self, status: grpc.StatusCode, message: str, culprit: str = "", accepted: bool = True):
        super().__init__(message)
        self.status = status
        self.culprit = culprit
        self.accepted = accepted


@dataclasses.dataclass
class _Waiting:
    """A single query waiting to run (together with others of its group, :meth:`CoordinatorNode._released`):
    ``result`` gets its release, the spec it ran with and why it ran another sharing ("": as asked)."""

    spec: QuerySpec
    result: asyncio.Future


@dataclasses.dataclass
class _Group:
    """The single queries asking the same parties, colluders and sharing, exact or not alike: ``running`` sessions
    in flight, the queries ``waiting`` for one of them to end."""

    waiting: list[_Waiting] = dataclasses.field(default_factory=list)
    running: int = 0


class _Run:
    """One session in flight: ``outcome`` is done once every partial sum is folded in, or failed with the
    SessionFailed that ends the session. The link handlers feed it (:meth:`CoordinatorNode._answered`, ...)."""

    def __init__(self, batch: Batch, totals: KeptTotals):
        self.spec = batch.spec
        self.session = CoordinatorSession(batch.spec, batch.specs[1:], totals)
        self.outcome: asyncio.Future = asyncio.get_running_loop().create_future()
        self.waiting: list[str] = []  # accepted, waiting for START
        self.closed: set[str] = set()  # parties that closed the session themselves (refused, aborted)
        self.confirming: dict[str, asyncio.Future] = {}  # while aborting: each told party's confirmation

    def fail(self, error: SessionFailed) -> None:
        if not self.outcome.done():
            self.outcome.set_exception(error)
            self.outcome.exception()  # retrieved: the session reads it, unless it already left

    def confirmed(self, party: str) -> None:
        self.closed.add(party)
        waiter = self.confirming.get(party)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _unconfirmable(run: _Run, party: str, sent: asyncio.Future) -> None:
    """An abort that could not be written: nobody there to confirm it."""
    if sent.cancelled() or sent.exception() is not None:
        run.confirmed(party)


def _printable(text: str) -> str:
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text if len(text) <= MAX_REASON else text[:MAX_REASON] + "..."


def claimed_abort(party: str, reason: str, culprit: str = "") -> str:
    """A party's abort as what it is: that party's report, unverified, naming who made it."""
    text = f"{party} aborted the session, reporting: {_printable(reason) or 'no reason given'}"
    if culprit and culprit != party:
        text += f" ({party} blames {_printable(culprit)}; the coordinator cannot verify this claim)"
    return text + "; no result released"


def _failure_status(exc: Exception) -> tuple[grpc.StatusCode, str] | None:
    """An additive session's failure as the analyst hears it."""
    if isinstance(exc, ProtocolError):
        return convert.GRPC_CODES[exc.status], str(exc)
    if isinstance(exc, SessionFailed):
        return exc.status, str(exc)
    return None


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
        coalesce: int = COALESCED_SESSIONS,
    ):
        """``coalesce``: sessions in flight per group of small single queries asking the same parties, the
        queries arriving meanwhile run together in one batch session (0: every query its own session)."""
        if coalesce < 0:
            raise ValueError(f"coalesce must be 0 or more sessions, got {coalesce}")
        self.federation = federation
        self.coalesce = coalesce
        self.identity = identity
        self.ledger = ledger
        self.store = store
        self.send_timeout = send_timeout
        self.max_timeout = float(max_timeout or federation.policy.party().max_timeout)
        self.default_timeout = min(default_timeout, self.max_timeout)
        self._clock = clock
        self._sessions: set[asyncio.Task] = set()  # running to their end even if their analyst left
        self._runs: dict[bytes, _Run] = {}  # sessions in flight, by id
        self.totals = KeptTotals()  # closed sessions' totals, for the next session of their length (this node's)
        self._slots: dict[str, asyncio.Semaphore] = {}  # per party: SESSIONS_PER_PARTY sessions at once
        self._keeping: dict[str, asyncio.Task] = {}  # releases being written to the store, by session id
        # Fetch's reads of kept releases: threads of their own, at most RELEASE_READERS at once, so an analyst's
        # fetches never queue the ledger's commits and the session logs' fsyncs (asyncio's default threads)
        self._release_reads = concurrent.futures.ThreadPoolExecutor(RELEASE_READERS, "release-read")
        self._policies: tuple[Federation, dict] | None = None  # the federation file's policy of each party
        self._refused: dict[str, float] = {}  # party -> until when its sessions run seeded (it refused keyed)
        self._groups: dict[tuple, _Group] = {}  # single queries that may run together, by what they share
        self.channels = Channels(identity, lambda party: self.federation.address(party))
        self.link = Hub(  # one long-lived authenticated stream to each party, carrying every session
            identity,
            lambda party: self.federation.address(party),  # read at call time: the federation may be replaced
            lambda who: who in self.federation.names("party"),
        )
        self.link.on(ANSWER, self._answered)
        self.link.on(ABORT, self._party_aborted)
        self.link.on_drop(self._dropped)
        self.queries = QueryService(self, self.link)  # the clients' Query and Fetch on a link hub of their own
        self.link.listen_port, self.queries.hub.listen_port = federation.link_ports(identity.name)  # 0: a free one
        self.queries.hub.listener_name = "clients' query link listener"  # in its audit records
        # a many-party release with dropouts restates its loss with scipy (mpcdp.dp.distributed): loaded with
        # the node, not on the event loop in the middle of the first such session (0.4-1.7 s)
        import scipy.special  # noqa: F401

    def services(self) -> list:
        """What a server must offer for this node: the Coordinator service and its links to the parties."""
        return [
            (releases.add_coordinator_to_server, self, "mpcdp.v1.Coordinator"),
            *self.queries.services(),  # Link/Port: the parties' hub, and the clients' (services.query_link)
        ]

    async def close(self) -> None:
        """Give running sessions ABORT_GRACE to end (their analysts still hear), close the clients' link (no new
        query), then the parties' link, failing the sessions left as if it dropped, and wait for every session
        and every release being kept: only then close the store, so no charged release is left unkept."""
        if self._sessions:
            await asyncio.wait(self._sessions, timeout=ABORT_GRACE)
        await self.queries.close()
        await self.link.close()
        for party in self.federation.names("party"):
            self._dropped(party, LinkError(party, "the coordinator is shutting down"))
        if self._sessions:  # each ends by its deadline at the latest
            await asyncio.wait(self._sessions, timeout=self.max_timeout)
        if self._keeping:
            _, late = await asyncio.wait(list(self._keeping.values()), timeout=KEEP_GRACE)
            if late:  # a store that does not answer: close anyway, not wait for ever
                log.error("closing with %d release(s) still being kept after %.0f s", len(late), KEEP_GRACE)
        if not await settled(self.ledger):  # the frees the sessions queued as they ended
            log.error("closing with ledger changes still being committed after %.0f s", SETTLE_SECONDS)
        if self.store is not None:
            self.store.close()
        self._release_reads.shutdown(wait=False, cancel_futures=True)
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

        if request.batch and mpc_node.comparison_of(request.spec) is not None:
            who = await self._client(context)
            reason = "a batch asks secure sums; a comparison runs under MPC on its own"
            audit.record("refused", client=who, status="INVALID_ARGUMENT", reason=reason)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, reason)
        if mpc_node.comparison_of(request.spec) is not None:  # computed by the parties under MPC
            return await mpc_node.coordinate(self, request, context)
        if request.HasField("quorum"):  # the many-party protocol: completes when the quorum finishes
            from services import many_party

            return await many_party.coordinate(self, request, context)
        who = await self._client(context)
        try:
            specs, confidence, note = self.spec_for(request)
            batch = Batch(specs)
            for spec in specs:
                self.admit(spec)
            budget = await self.hold(batch.spec.session_id, batch.loss, batch.spec.deadline)
        except (SpecError, ProtocolError) as exc:
            await self.refuse(context, who, exc)
        await self.answer(
            context,
            batch.spec.session_id,
            budget,
            lambda: self._session(batch, confidence, who, budget, note),
            _failure_status,
        )

    async def refuse(self, context, client: str, exc: SpecError | ProtocolError) -> None:
        """Refuse a query before it starts (audited); the analyst hears the status and the reason."""
        code = convert.GRPC_CODES[exc.status] if isinstance(exc, ProtocolError) else grpc.StatusCode.INVALID_ARGUMENT
        audit.record("refused", client=client, status=code.name, reason=str(exc))
        await context.abort(code, str(exc))

    async def answer(
        self,
        context,
        sid: bytes,
        held: bool,
        start: Callable[[], Awaitable[list]],
        status_of: Callable[[Exception], tuple[grpc.StatusCode, str] | None],
    ) -> None:
        """Every query's reply: tell the analyst the session id, run the session ``start()`` begins to its end
        even if the analyst leaves (a charged release is kept for Fetch), then write its parts. ``held``: the
        coordinator's reservation, freed if the analyst is gone before the session starts. ``status_of``: the
        status and words of a failure the session raises (None: not one of its failures, raised on)."""
        try:
            await context.send_initial_metadata(((SESSION_HEADER, sid.hex()),))
        except BaseException:
            if held:
                group_commit(self.ledger).free(sid)
            raise
        task = asyncio.ensure_future(start())
        self._sessions.add(task)
        task.add_done_callback(self._finished)
        try:
            parts = await asyncio.shield(task)  # the analyst leaving does not cancel a charged release
        except Exception as exc:
            failure = status_of(exc)
            if failure is None:
                raise
            await context.abort(*failure)
        await self._send(context, parts, sid.hex())

    async def _send(self, context, parts: list, sid: str) -> None:
        """Write the parts; an analyst who stops reading does not hold the call (and the parts) forever."""
        for part in parts:
            try:
                if isinstance(context, LinkContext):  # its write may be cancelled where it waits: no task per part
                    async with asyncio.timeout(self.send_timeout):
                        await context.write(part)
                else:  # gRPC's write, cancelled inside, loses the call's status: it waits in a task of its own
                    await asyncio.wait_for(context.write(part), self.send_timeout)
            except TimeoutError:
                audit.record("aborted", session=sid, reason="the analyst did not read the release")
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"the release was not read within {self.send_timeout:g} s; it is kept: "
                    f"`mpcdp query --fetch {sid}` gets it at no further cost",
                )

    async def hold(self, session_id: bytes, loss: PrivacyLoss | None, until: float) -> bool:
        """Reserve a session's loss on the coordinator's ledger until ``until`` (ProtocolError RESOURCE_EXHAUSTED
        if it would overspend, counting the sessions still running), group-committed off the event loop; whether
        anything is held."""
        if self.ledger is None or loss is None:
            return False
        try:
            await group_commit(self.ledger).reserve(session_id, loss, until=until)
        except Exception as exc:
            raise ProtocolError(Status.RESOURCE_EXHAUSTED, f"coordinator: {public_refusal(exc)}") from None
        except asyncio.CancelledError:  # the analyst left while reserving: free what the reservation holds
            group_commit(self.ledger).free(session_id)  # (queued after it)
            raise
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
        if sid in self._keeping:  # released a moment ago, still being written
            await asyncio.wait({self._keeping[sid]})
        loop = asyncio.get_running_loop()
        kept = await loop.run_in_executor(self._release_reads, self.store.get, sid) if self.store is not None else None
        if kept is None or kept[0]["client"] != who or not await self._charged(sid, kept[0]):
            await server.abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"no release of session {sid} for {who!r} is kept here"
                if self.store is not None
                else "this coordinator keeps no releases (it has no state directory)",
            )
        audit.record("fetched", session=sid, client=who)
        await self._send(context, kept[1], sid)

    async def _charged(self, sid: str, meta: dict) -> bool:
        """Whether a kept release was paid for (a crash between keeping and charging leaves it unpaid). Read off the
        loop: the ledger's connection may be held by a group waiting for another process's write lock (up to the
        busy timeout)."""
        if meta.get("exact") or self.ledger is None:
            return True
        return await asyncio.to_thread(self.ledger.has_charge, sid)

    async def _session(self, batch: Batch, confidence: float, client: str, budget: bool, note: str = "") -> list:
        """Run the session, keep its releases (one per statistic of the batch), charge the held budget (their
        losses composed); the releases' parts (``note``: why it ran another sharing than the analyst asked,
        :meth:`spec_for`)."""
        sid = batch.spec.session_id
        held = budget
        try:
            released, batch, note = await self._released(batch, note)
            parts = releases.batch_parts(batch.specs, released, confidence, note)
            if self.store is not None:
                key = sid.hex()
                keeping = self._keeping[key] = asyncio.ensure_future(self._keep(key, client, batch.is_exact, parts))
                keeping.add_done_callback(functools.partial(self._kept, key))
                if not batch.is_exact:  # budgets were spent on it: on disk before it is charged and sent
                    await keeping
            if budget:  # on disk before the release is sent (group-committed, off the loop)
                await group_commit(self.ledger).charge_reserved(sid)  # drops the reservation in the same transaction
                held = False
        finally:
            if held:  # not charged: freed (in order after the reservation) before the analyst hears it failed
                await group_commit(self.ledger).freed(sid)
        releases.audit_batch(sid, client, batch.specs, releases.composed(batch.specs, released))
        return parts

    async def _slotted(self, batch: Batch) -> list[Release]:
        """Run a session once a slot is free at each of its parties."""
        held: list[asyncio.Semaphore] = []
        try:
            for party in sorted(batch.spec.parties):  # in name order: two sessions never wait on each other
                slot = self._slots.setdefault(party, asyncio.Semaphore(SESSIONS_PER_PARTY))
                await slot.acquire()
                held.append(slot)
            return await self.run(batch)
        finally:
            for slot in held:
                slot.release()

    async def _released(self, batch: Batch, note: str) -> tuple[list[Release], Batch, str]:
        """The releases of ``batch``, the batch as it ran and why it ran another sharing than asked.

        Coalescing: a small single query joins the group of queries asking the same parties, colluders and
        sharing (exact or DP alike); while ``coalesce`` sessions of its group are in flight it waits, and the
        queries that waited meanwhile run together as one batch session at the parties (:meth:`_together`): one
        proposal and one partial sum per party for all of them, each query keeping its own session id, release,
        ledger hold and charge here. When few queries are in flight, each runs at once, alone. The parties check
        and charge each query as in its own session (their losses composed); DP queries run together are seeded
        (:data:`COALESCED`)."""
        if not self.coalesce or len(batch) > 1 or batch.length > COALESCE_LENGTH:
            return await self._slotted(batch), batch, note
        spec = batch.spec
        key = (spec.parties, spec.colluders, spec.sharing, spec.is_exact)
        waiting = _Waiting(spec, asyncio.get_running_loop().create_future())
        self._groups.setdefault(key, _Group()).waiting.append(waiting)
        self._dispatch(key)
        release, ran, why = await waiting.result
        return [release], Batch((ran,)), why or note

    def _dispatch(self, key: tuple) -> None:
        """Start sessions for the waiting queries of a group, up to ``coalesce`` in flight, each for as many of
        them as one batch takes: at most ``MAX_BATCH``, and vectors no longer together than the smallest
        ``max_length`` of the parties' policies in the federation file (a party would refuse a longer batch)."""
        group = self._groups[key]
        allowed = min(self._policy(p).max_length for p in key[0])
        while group.waiting and group.running < self.coalesce:
            taken, length = 0, 0
            for waiting in group.waiting[:MAX_BATCH]:
                length += waiting.spec.codec.length
                if taken and length > allowed:
                    break
                taken += 1
            members, group.waiting = group.waiting[:taken], group.waiting[taken:]
            group.running += 1
            task = asyncio.ensure_future(self._together(key, members))
            self._sessions.add(task)
            task.add_done_callback(self._finished)

    async def _together(self, key: tuple, members: list[_Waiting]) -> None:
        """Run ``members`` in one batch session (a fresh session id at the parties, the latest of their deadlines,
        so that one query's short deadline cannot end the others' session; DP queries seeded). A member whose
        deadline passed while it waited fails at once, alone. If the session fails before every party accepted (a
        party refusing one query, say), nobody was charged and each runs again alone, so that one query cannot
        fail the others; if it fails later (a party dropping, the deadline), a DP batch's parties may have
        charged it, and its queries fail rather than be charged twice (an exact one charged nothing: run again)."""
        try:
            now = self._clock()
            for m in members:
                if m.spec.deadline <= now:
                    m.result.set_exception(SessionFailed(grpc.StatusCode.DEADLINE_EXCEEDED, EXPIRED_WAITING))
            members = [m for m in members if not m.result.done()]
            if len(members) > 1:
                specs = [m.spec for m in members]
                sharing = specs[0].sharing if specs[0].is_exact else Sharing.SEEDED
                sid, deadline = new_session_id(), max(s.deadline for s in specs)
                batch = Batch(
                    tuple(dataclasses.replace(s, session_id=sid, deadline=deadline, sharing=sharing) for s in specs)
                )
                try:
                    released = await self._slotted(batch)
                except SessionFailed as exc:
                    if exc.accepted and not batch.spec.is_exact:
                        failed = SessionFailed(exc.status, f"{CHARGED_TOGETHER}: {exc}", exc.culprit)
                        for m in members:
                            m.result.set_exception(failed)
                        return
                    log.info("%d queries run together failed (%s); each runs alone", len(members), exc)
                else:
                    why = "" if sharing is specs[0].sharing else COALESCED
                    for m, release in zip(members, released, strict=True):
                        ran = m.spec if not why else dataclasses.replace(m.spec, sharing=sharing)
                        m.result.set_result((release, ran, why))
                    return
            if len(members) == 1:  # the usual case when few queries are in flight: no task to gather
                await self._alone(members[0])
            else:
                await asyncio.gather(*(self._alone(m) for m in members))
        finally:
            for m in members:  # a bug above: nobody waits forever
                if not m.result.done():
                    m.result.set_exception(SessionFailed(grpc.StatusCode.INTERNAL, "the session ended unexpectedly"))
            group = self._groups[key]
            group.running -= 1
            if group.waiting:
                self._dispatch(key)
            elif not group.running:
                del self._groups[key]

    async def _alone(self, member: _Waiting) -> None:
        try:
            (release,) = await self._slotted(Batch((member.spec,)))
        except Exception as exc:  # the member's own session's failure, passed on as it is
            member.result.set_exception(exc)
        else:
            member.result.set_result((release, member.spec, ""))

    async def _keep(self, sid: str, client: str, exact: bool, parts: list) -> None:
        """Keep a release durably (off the loop, releases kept at once sharing one write and fsync). An exact
        release charged nothing, so it is sent without waiting for the disk; until it is kept, Fetch waits for it
        (``_keeping``)."""
        assert self.store is not None
        try:
            await self.store.keep(sid, client, exact, parts)
        except OSError as exc:  # the release still goes to the analyst; it cannot be fetched again
            log.error("could not keep the release of session %s: %s", sid, exc)

    def _kept(self, key: str, _: asyncio.Future) -> None:
        self._keeping.pop(key, None)

    def spec_for(self, request: pb.QueryRequest) -> tuple[tuple[QuerySpec, ...], float, str]:
        """The specs to propose (the request's spec, then its batch's: fresh session id, the deadline, every party
        unless named), the confidence, and why a keyed query runs seeded instead ("" if it runs as asked): the
        release says so."""
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
        members = self.federation.names("party")
        parties = fields["parties"] or tuple(members)
        unknown = [p for p in parties if p not in members]
        if unknown:
            raise SpecError("parties", f"not parties of this federation: {', '.join(unknown)}")
        if not request.spec.max_records:
            fields["max_records"] = self.federation.policy.max_records
        fields.update(parties=parties, deadline=self._clock() + timeout)
        del fields["session_id"]
        note = ""
        if fields["sharing"] == Sharing.KEYED and len(parties) > MAX_KEYED_PARTIES:
            fields["sharing"] = Sharing.SEEDED  # keyed costs grow with n^2; many parties: the quorum protocol
            note = f"more than {MAX_KEYED_PARTIES} parties"
        spec = convert.build_spec(fields)
        specs = (spec, *self._batch_specs(request, spec))
        length = Batch(specs).length  # SpecError: longer together than a link carries
        allowed = min(self._policy(p).max_length for p in spec.parties)
        if len(specs) > 1 and length > allowed:
            raise SpecError(
                "batch",
                f"its statistics need vectors of {length} elements together; the parties allow at most {allowed}",
            )
        if specs[0].sharing is Sharing.KEYED:
            note = self.keyed_refusal(specs) or ""
            if note:  # every party answers before sharing
                specs = tuple(dataclasses.replace(s, sharing=Sharing.SEEDED) for s in specs)
        for spec in specs:
            releases.check_presentation(spec, confidence)
        return specs, confidence, note

    def _batch_specs(self, request: pb.QueryRequest, session: QuerySpec) -> list[QuerySpec]:
        """The further statistics of a batch request (``QueryRequest.batch``), in the session of ``session``: its
        parties and colluders where unset, its sharing, session id and deadline; SpecError for one naming other
        parties or colluders, or setting a session id or deadline (the coordinator sets them, once for the whole
        batch), and for a batch longer than ``MAX_BATCH``. Shared by the full-mesh and many-party batches."""
        from services import mpc_node

        if len(request.batch) >= MAX_BATCH:
            raise SpecError("batch", f"at most {MAX_BATCH} statistics in one session, got {len(request.batch) + 1}")
        out = []
        for i, msg in enumerate(request.batch, 1):
            if mpc_node.comparison_of(msg) is not None:
                raise SpecError(f"batch[{i}]", "a batch asks secure sums; a comparison runs under MPC on its own")
            if msg.session_id or msg.deadline:
                raise SpecError(f"batch[{i}]", "leave session_id and deadline unset: the batch shares the session's")
            fields = convert.spec_fields(msg)
            if fields["parties"] and fields["parties"] != session.parties:
                raise SpecError(f"batch[{i}]", "names other parties: the statistics of a batch ask the same parties")
            if msg.colluders and msg.colluders != session.colluders:
                raise SpecError(f"batch[{i}]", f"has colluders {msg.colluders}, the session {session.colluders}")
            if not msg.max_records:
                fields["max_records"] = self.federation.policy.max_records
            shared = ("parties", "colluders", "sharing", "session_id", "deadline")
            fields.update({name: getattr(session, name) for name in shared})
            out.append(convert.build_spec(fields))
        return out

    def keyed_refusal(self, specs: tuple[QuerySpec, ...]) -> str | None:
        """Why a keyed session (one message each way) is not worth proposing for ``specs`` (a batch; None: it is):
        it is one statistic or an exact batch, every party's policy in the federation file sends its partial sum
        without waiting for the others (``one_round``) and accepts every statistic as far as the file tells
        (statistic, column, epsilon, ...), no party refused a keyed session in the last ``REFUSED_SECONDS`` (and
        at most ``MAX_KEYED_PARTIES`` take part). A keyed partial sum is charged as it leaves, so a party that
        refuses a keyed session costs the others that query's loss with nothing released: the seeded session,
        whose partial sums wait for every share, costs them nothing; the party's own ledger (and a policy file
        that differs from the federation's) can still refuse the first keyed session. A DP batch of several
        statistics therefore always runs seeded: one party's refusal (its budget, say) must not cost the others
        a whole batch's loss, and each party's budget is then the whole batch or nothing. The reason names the
        first party in the way."""
        if len(specs) > 1 and any(not s.is_exact for s in specs):
            return f"a batch of DP statistics runs seeded, {SEEDED_WHY}"
        now = self._clock()
        for p in specs[0].parties:
            policy = self._policy(p)
            if not policy.one_round:
                return f"{p}'s policy sends no partial sum before every party accepted (one_round = false)"
            for spec in specs:
                refusal = policy.refusal(spec)
                if refusal is not None:
                    return f"{p}'s policy refuses this query ({refusal})"
            if self._refused.get(p, 0.0) > now:
                return f"{p} refused a keyed session in the last {REFUSED_SECONDS:g} s"
        return None

    def _policy(self, party: str) -> PartyPolicy:
        """The federation file's policy of ``party`` (read once per federation)."""
        if self._policies is None or self._policies[0] is not self.federation:
            names = self.federation.names("party")
            self._policies = (self.federation, {p: self.federation.policy_for(p).party() for p in names})
        return self._policies[1][party]

    def _keyed_refused(self, party: str) -> None:
        """``party`` refused a keyed session: its sessions run seeded for ``REFUSED_SECONDS``."""
        now = self._clock()
        self._refused = {p: t for p, t in self._refused.items() if t > now}
        self._refused[party] = now + REFUSED_SECONDS

    def admit(self, spec: QuerySpec) -> None:
        """The federation-wide policy: exact releases only where it says so."""
        if spec.is_exact and not self.federation.policy.allow_exact:
            raise ProtocolError(
                Status.PERMISSION_DENIED, "this federation does not allow exact (non-DP) releases; set an epsilon"
            )

    # -- one session ----------------------------------------------------------------

    async def run(self, batch: Batch) -> list[Release]:
        """Drive one session to its releases (one per statistic of the batch), or abort it everywhere and raise
        SessionFailed."""
        spec = batch.spec
        sid = spec.session_id
        run = self._runs[sid] = _Run(batch, self.totals)
        session = run.session
        collecting: list[asyncio.Task] = []
        try:
            propose = pb.Propose(
                spec=convert.spec_to_proto(spec), start=True, batch=[convert.spec_to_proto(s) for s in batch.specs[1:]]
            ).SerializeToString()
            for p in spec.parties:
                self.link.post(p, sid, 0, PROPOSE, propose).add_done_callback(functools.partial(self._unsent, run, p))
            collecting = [asyncio.ensure_future(self._collect(run, p)) for p in spec.parties]
            try:
                async with asyncio.timeout(max(spec.deadline - self._clock(), 0.0)):
                    await asyncio.shield(run.outcome)
            except TimeoutError:
                late = session.missing
                doing = "answer" if session.state == "collecting-responses" else "send its partial sum"
                raise SessionFailed(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"{', '.join(late)} did not {doing} before the deadline; session aborted, no result released",
                    late[0],
                ) from None
            return session.releases(arrays=True)  # vectors stay arrays: packed again without Python floats
        except (SessionFailed, ProtocolError) as exc:
            reason, accepted = str(exc), session.all_accepted
            if session.state != "aborted":
                session.abort(reason, getattr(exc, "culprit", ""))
            await self._abort_all(run, reason)
            audit.record("aborted", session=sid.hex(), reason=reason, culprit=getattr(exc, "culprit", "") or None)
            if isinstance(exc, ProtocolError):
                raise SessionFailed(convert.GRPC_CODES[exc.status], reason, accepted=accepted) from None
            exc.accepted = accepted
            raise
        finally:
            for task in collecting:
                task.cancel()
            del self._runs[sid]
            self.link.close_session(sid)

    def _unsent(self, run: _Run, party: str, sent: asyncio.Future) -> None:
        """A message to ``party`` that could not be written: the session fails, naming it."""
        error = None if sent.cancelled() else sent.exception()
        if isinstance(error, LinkError):
            self._lost(run, party, error)

    def _lost(self, run: _Run, party: str, error: LinkError) -> None:
        run.confirmed(party)  # nobody there to confirm an abort
        if error.unreachable:
            message = f"party {party} is unreachable at {self.federation.node(party).address} ({error.reason})"
            code = grpc.StatusCode.UNAVAILABLE
        else:
            doing = "answer" if run.session.state == "collecting-responses" else "partial sum"
            message = f"{party} dropped out of the session while we waited for its {doing} ({error.reason})"
            code = grpc.StatusCode.ABORTED
        run.fail(SessionFailed(code, message + "; session aborted, no result released", party))

    def _run_of(self, peer: str, sid: bytes) -> _Run | None:
        """The session in flight a party's message is for (None: closed, or not one of its parties)."""
        run = self._runs.get(sid)
        if run is None:
            return None
        if peer not in run.spec.parties:
            audit.record("denied", caller=peer, session=sid.hex(), message="not a party of this session")
            return None
        return run

    def _answered(self, peer: str, sid: bytes, _round: int, payload: memoryview) -> None:
        run = self._run_of(peer, sid)
        if run is None or run.outcome.done():
            return
        try:
            r = pb.ProposeResponse.FromString(bytes(payload))
        except DecodeError:
            return run.fail(SessionFailed(grpc.StatusCode.INVALID_ARGUMENT, f"{peer}'s answer does not decode", peer))
        if r.party and r.party != peer:
            return run.fail(
                SessionFailed(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"an answer on {peer}'s link claims to come from {r.party!r}",
                    peer,
                )
            )
        if not r.accepted:
            run.closed.add(peer)
            if run.spec.sharing is Sharing.KEYED:
                self._keyed_refused(peer)
            status = convert.status_name(r.status)
            code = convert.GRPC_CODES[status] if status is not None else grpc.StatusCode.ABORTED
            return run.fail(SessionFailed(code, f"{peer} refused: {_printable(r.reason)}", peer))
        try:
            run.session.record_response(Response(sid, peer, True))
        except ProtocolError:
            return run.fail(SessionFailed(grpc.StatusCode.INVALID_ARGUMENT, f"{peer} answered out of turn", peer))
        if r.waits:
            run.waiting.append(peer)
        if run.session.state == "collecting-sums":  # every party accepted
            for p in run.waiting:
                self.link.post(p, sid, 0, START, b"").add_done_callback(functools.partial(self._unsent, run, p))

    async def _collect(self, run: _Run, party: str) -> None:
        """Fold ``party``'s partial sum into the session's total frame by frame as it arrives (no assembly);
        the outcome is done once every partial sum is in."""
        sid, session = run.spec.session_id, run.session
        sink = convert.RingPieces(lambda offset, piece: session.receive_piece(sid, party, offset, piece, self._clock()))
        peers = [p for p in run.spec.parties if p != party]
        keyed = KeyedPartial(sink, session.length, len(peers)) if session.keyed else None
        try:
            await self.link.expect(party, sid, 0, PARTIAL, keyed or sink)
            sink.finish()
            session.end_partial(sid, party, self._clock())
            if keyed is not None:  # both ends of each pair masked with the same key, or abort naming the pair
                session.record_key_ids(party, keyed.ids(peers))
        except ProtocolError as exc:
            return run.fail(SessionFailed(convert.GRPC_CODES[exc.status], f"{party}'s partial sum: {exc}", party))
        except LinkError:
            return  # the link broke: _dropped fails the session, naming the party
        if not session.missing and not run.outcome.done():
            run.outcome.set_result(None)

    def _party_aborted(self, peer: str, sid: bytes, _round: int, payload: memoryview) -> None:
        """A party gave up on a session (its claim, naming it), or confirms it closed it on our abort."""
        run = self._run_of(peer, sid)
        if run is None:
            return
        run.confirmed(peer)
        if run.outcome.done():
            return
        try:
            abort = pb.Abort.FromString(bytes(payload))
        except DecodeError:
            abort = pb.Abort()
        run.fail(SessionFailed(grpc.StatusCode.ABORTED, claimed_abort(peer, abort.reason, abort.culprit), peer))

    def _dropped(self, party: str, error: LinkError) -> None:
        """The link to a party broke: every session it is in fails at once, naming it."""
        for run in [r for r in self._runs.values() if party in r.spec.parties]:
            self._lost(run, party, error)

    async def _abort_all(self, run: _Run, reason: str) -> None:
        """Tell every party that has not closed the session itself; wait (briefly) until each confirms, so that
        every node is ready for the next query when this one returns."""
        sid = run.spec.session_id
        abort = convert.abort_message(sid, "coordinator", reason).SerializeToString()
        for p in run.spec.parties:
            if p not in run.closed:
                run.confirming[p] = asyncio.get_running_loop().create_future()
                self.link.post(p, sid, 0, ABORT, abort).add_done_callback(functools.partial(_unconfirmable, run, p))
        if run.confirming:
            await asyncio.wait(run.confirming.values(), timeout=ABORT_GRACE)
