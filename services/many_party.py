"""The many-party query between nodes: its messages, their byte form, the party and coordinator drivers, and
the query on a federation's real ``mpcdp party`` / ``mpcdp coordinator`` nodes.

The protocol is :mod:`mpcdp.protocol.masked` (SecAgg+-style masks over a sparse graph, a quorum, dropouts
survived); this module moves its messages. The drivers (:class:`PartyDriver`, :class:`CoordinatorDriver`)
run one session over any :class:`Network` (``send`` a message, wait for the ``next`` one with an idle timer):
:mod:`services.swarm` runs many parties per process on an in-process or batched-link network (a
simulation); :class:`HubNetwork` carries one session between real nodes over their long-lived mutually
authenticated links (:class:`services.link.Hub`), each message type a pushed link kind (``many/keys``,
``many/report``, ...: each goes at most once per sender, recipient and session). Who sent a message is the
link's certificate name, never a field: a message whose field names someone else is dropped (and audited),
as is a coordinator's message from anyone but the coordinator.

Rounds close on timers, so a party that drops after accepting only makes a round wait: a party reports once
its neighbours' keys are in or none came for one round timer; the coordinator closes a round when everyone
it waits for answered or nothing came for a round timer (twice that for the key round). On real nodes the
timer is an eighth of the time left to the query's deadline (:func:`round_timer`), so the four rounds fit
inside the deadline even when every one of them waits for a dropped party.

On real nodes (:func:`coordinate`, :func:`serve_party`): a query naming a quorum (``QueryRequest.quorum``,
``mpcdp query --quorum K``) is proposed to every party over the link (``many/propose``: the spec and the
quorum). A party checks it as it checks an additive query (its policy, the deadline, its data, a fresh
session id recorded durably in its SessionLog) and reserves the worst-case loss on its ledger (the loss if
only the quorum is counted, :mod:`mpcdp.protocol.quorum`), charges it when its masked input leaves, and
frees it if the session ends before that. The coordinator reserves the same on its own ledger, keeps the
release durably, charges, and replies; the release's ``parties`` are the counted ones, ``dropped`` the
others, and its epsilon (and delta) is restated for the counted parties. A query that aborts says why
(below the quorum: how many of how many did what). The coordinator and every live party that had not sent
its masked input free their reservations; a party whose masked input had left when the session aborted
(at the unmask cut or later: too few masked inputs, counted parties not linked by their masks, too few
shares) stays charged, its input having left under masks. Security (honest-but-curious,
:mod:`mpcdp.protocol.graph`): the coordinator and up to the spec's colluders learn only the sum of the
counted honest inputs with their noise; a dropped party's late masked input is refused and stays under its
self mask.

A batch (``QueryRequest.batch``, checked by :meth:`services.coordinator_node.CoordinatorNode.spec_for`) asks
several statistics in one session: the proposal carries every spec, each party reads its records and checks
its policy per statistic (refusing one refuses the session), reserves and is charged their worst-case losses
composed (:attr:`MaskedQuery.charge`) once, and masks their concatenation; the coordinator replies (and keeps,
for Fetch) one release per statistic, in order, each reply naming its ``index``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from mpcdp.protocol import ProtocolError, QuerySpec, Release, SpecError, Status
from mpcdp.protocol.masked import (
    KEY_BYTES,
    KeyShares,
    MaskedCoordinator,
    MaskedInput,
    MaskedParty,
    MaskedQuery,
    Report,
    Reveal,
    Roster,
    Unmask,
)
from mpcdp.protocol.shamir import SHARE_BYTES
from mpcdp.protocol.spec import SESSION_ID_BYTES

log = logging.getLogger("mpcdp.many")
COORDINATOR = "coordinator"  # the coordinator's name where no federation names it (a simulation)
ROUND_FRACTION = 8  # a round timer on real nodes: this fraction of the time left to the deadline
MIN_ROUND_TIMER = 0.05  # seconds
EARLY_MESSAGES = 4096  # key messages (< 500 bytes each) held for sessions not opened yet (a neighbour was faster)
EARLY_PER_PEER = EARLY_MESSAGES // 8  # of which from any one peer
EARLY_SECONDS = 30.0
MAX_NAME_BYTES = 256  # a node's name in a message
PER_KIND = 2  # messages of one type from one peer a session takes (each is sent once; a duplicate is refused)


# -- messages and their byte form -------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """Party to coordinator: whether it accepted the query (a refusal counts against the quorum)."""

    party: str
    accepted: bool
    reason: str = ""


@dataclass(frozen=True)
class Abort:
    """Coordinator to party: the session ended without a release."""

    reason: str


@dataclass(frozen=True)
class Lost:
    """Not sent by anyone: a network's notice to its driver that the link to the (reported) sender broke or
    the sender cannot be reached; the driver stops waiting for it."""

    reason: str


_TYPES: tuple[type, ...] = (KeyShares, Report, Roster, MaskedInput, Unmask, Reveal, Answer, Abort)
KINDS: dict[type, str] = {
    KeyShares: "many/keys",
    Report: "many/report",
    Roster: "many/roster",
    MaskedInput: "many/masked",
    Unmask: "many/unmask",
    Reveal: "many/reveal",
    Answer: "many/answer",
    Abort: "many/abort",
}
PROPOSE = "many/propose"  # the link kind of a proposal: the spec (its protobuf), the quorum, the batch's specs


def payload_bytes(msg: object) -> int:
    """What a message would carry on a wire: its keys, shares, vectors and names (not framing)."""
    if isinstance(msg, KeyShares):
        return len(msg.session_id) + len(msg.half) + len(msg.key_share) + len(msg.seed_share) + 16
    if isinstance(msg, Report):
        fixed = len(msg.session_id) + len(msg.key_commitment) + len(msg.seed_commitment) + len(msg.pads)
        return fixed + sum(len(p) for p in msg.heard) + 8
    if isinstance(msg, Roster):
        return len(msg.session_id) + sum(len(p) for p in msg.neighbours) + 8
    if isinstance(msg, MaskedInput):
        return len(msg.session_id) + int(msg.vector.nbytes) + 8
    if isinstance(msg, Unmask):
        return len(msg.session_id) + len(msg.party) + sum(len(p) for p in (*msg.counted, *msg.dropped)) + 8
    if isinstance(msg, Reveal):
        shares = list(msg.seed_shares.items()) + list(msg.key_shares.items())
        return len(msg.session_id) + sum(len(p) + len(s) for p, s in shares) + 8
    return 16


def pack(*fields: bytes) -> bytes:
    """Length-prefixed fields (4 bytes little-endian each)."""
    return b"".join(len(f).to_bytes(4, "little") + f for f in fields)


def unpack(data: bytes | memoryview) -> list[bytes]:
    view, out, at = memoryview(data), [], 0
    while at < len(view):
        n = int.from_bytes(view[at : at + 4], "little")
        out.append(bytes(view[at + 4 : at + 4 + n]))
        at += 4 + n
        if at > len(view):
            raise ValueError("a truncated field")
    return out


def _names(names: tuple[str, ...] | list[str]) -> bytes:
    return "\n".join(names).encode()


def _split(data: bytes) -> tuple[str, ...]:
    return tuple(data.decode().split("\n")) if data else ()


def _shares(shares: dict[str, bytes]) -> bytes:
    return pack(*(x for p, s in shares.items() for x in (p.encode(), s)))


def _unshares(data: bytes) -> dict[str, bytes]:
    fields = unpack(data)
    if len(fields) % 2:
        raise ValueError("shares come in (party, share) pairs")
    return {fields[i].decode(): fields[i + 1] for i in range(0, len(fields), 2)}


def encode(msg: object) -> bytes:
    """A many-party message as bytes: a type byte, then length-prefixed fields."""
    kind = _TYPES.index(type(msg)) + 1
    if isinstance(msg, KeyShares):
        f = [msg.session_id, msg.sender.encode(), msg.recipient.encode(), msg.half, msg.key_share, msg.seed_share]
    elif isinstance(msg, Report):
        f = [msg.session_id, msg.party.encode(), msg.key_commitment, msg.seed_commitment, _names(msg.heard), msg.pads]
    elif isinstance(msg, Roster):
        f = [msg.session_id, msg.party.encode(), _names(msg.neighbours)]
    elif isinstance(msg, MaskedInput):
        f = [msg.session_id, msg.party.encode(), msg.vector.astype("<u8", copy=False).tobytes()]
    elif isinstance(msg, Unmask):
        f = [
            msg.session_id,
            msg.party.encode(),
            _names(msg.counted),
            msg.total.to_bytes(4, "little"),
            _names(msg.dropped),
        ]
    elif isinstance(msg, Reveal):
        f = [msg.session_id, msg.party.encode(), _shares(msg.seed_shares), _shares(msg.key_shares)]
    elif isinstance(msg, Answer):
        f = [msg.party.encode(), b"1" if msg.accepted else b"", msg.reason.encode()]
    else:
        assert isinstance(msg, Abort)
        f = [msg.reason.encode()]
    return bytes([kind]) + pack(*f)


def decode(data: bytes | memoryview) -> object:
    """The message :func:`encode` made (ValueError on anything else)."""
    import numpy as np

    if not data:
        raise ValueError("an empty message")
    kind, f = data[0], unpack(data[1:])
    if 1 <= kind <= 6 and f and len(f[0]) != SESSION_ID_BYTES:
        raise ValueError(f"a session id is {SESSION_ID_BYTES} bytes")
    if any(len(name) > MAX_NAME_BYTES for name in f[1 : 3 if kind == 1 else 2]):
        raise ValueError(f"a party's name is at most {MAX_NAME_BYTES} bytes")
    if kind == 1 and len(f) == 6 and (len(f[3]), len(f[4]), len(f[5])) != (KEY_BYTES, SHARE_BYTES, SHARE_BYTES):
        raise ValueError(f"a key message is a {KEY_BYTES}-byte half seed and two {SHARE_BYTES}-byte shares")
    try:
        if kind == 1:
            return KeyShares(f[0], f[1].decode(), f[2].decode(), f[3], f[4], f[5])
        if kind == 2:
            heard = _split(f[4])
            if (len(f[2]), len(f[3]), len(f[5])) != (KEY_BYTES, KEY_BYTES, KEY_BYTES * len(heard)):
                raise ValueError(f"a report is two {KEY_BYTES}-byte commitments and a {KEY_BYTES}-byte pad per name")
            return Report(f[0], f[1].decode(), f[2], f[3], heard, f[5])
        if kind == 3:
            return Roster(f[0], f[1].decode(), _split(f[2]))
        if kind == 4:
            if len(f[2]) % 8:
                raise ValueError("a masked input is whole uint64 words")
            return MaskedInput(f[0], f[1].decode(), np.frombuffer(f[2], dtype="<u8").astype(np.uint64))
        if kind == 5:
            return Unmask(f[0], f[1].decode(), _split(f[2]), int.from_bytes(f[3], "little"), _split(f[4]))
        if kind == 6:
            return Reveal(f[0], f[1].decode(), _unshares(f[2]), _unshares(f[3]))
        if kind == 7:
            return Answer(f[0].decode(), bool(f[1]), f[2].decode())
        if kind == 8:
            return Abort(f[0].decode())
    except IndexError:
        raise ValueError(f"a many-party message of type {kind} with too few fields") from None
    raise ValueError(f"unknown many-party message type {kind}")


# -- the drivers --------------------------------------------------------------------------------------------


class Network(Protocol):
    """How a driver's messages move: ``send`` (never blocks; a node in ``gone`` neither sends nor gets
    anything) and ``next`` (the next (sender, message) for ``me``, None after ``idle`` seconds without one;
    ``idle`` None waits for ever). The sender a network reports is who really sent the message."""

    gone: set[str]

    def send(self, sender: str, recipient: str, msg: object) -> None: ...

    async def next(self, me: str, idle: float | None) -> tuple[str, object] | None: ...


PHASES = ("accept", "keys", "report", "mask", "reveal", "late")
"""Where a simulated party can be made to stop (see :data:`mpcdp.protocol.masked.PHASES`)."""


def _left(deadline: float, clock: Callable[[], float]) -> float:
    return deadline - clock() if math.isfinite(deadline) else math.inf


class PartyDriver:
    """One party's side of a session: accept (unless the node already did), send its keys, report when its
    neighbours' keys are in or a round timer passed, mask on its roster, reveal once on the unmask request.
    Gives up at the spec's deadline, or at once when its link to the coordinator breaks. Messages not from whom
    they must come are dropped into ``ignored``. ``charge``: awaited once the masked input is made, before it
    leaves (the node's ledger charge, on disk first); if it says no, the input is not sent (the party still helps
    unmask the others)."""

    def __init__(
        self,
        session: MaskedParty,
        net: Network,
        round_timeout: float,
        coordinator: str = COORDINATOR,
        stop: str | None = None,
        clock: Callable[[], float] = time.time,
        charge: Callable[[], Awaitable[bool]] | None = None,
    ):
        self.session = session
        self.charge = charge
        self.net = net
        self.round_timeout = round_timeout
        self.coordinator = coordinator
        self.stop = stop
        self.clock = clock
        self.me = session.me
        self.ignored: list[str] = []
        self.lost: set[str] = set()  # neighbours whose link broke: not waited for

    def _gone(self, phase: str) -> bool:
        if self.stop == phase:
            self.net.gone.add(self.me)
            return True
        return False

    def _wait(self, idle: float | None) -> float | None:
        """An idle timer no longer than the time left to the deadline."""
        left = _left(self.session.spec.deadline, self.clock)
        if math.isinf(left):
            return idle
        return max(min(left, math.inf if idle is None else idle), 0.0)

    async def run(self) -> None:
        s, net, me, coordinator = self.session, self.net, self.me, self.coordinator
        if s.state == "proposed":
            try:
                s.accept(self.clock())
            except (ProtocolError, ValueError) as exc:  # policy, budget, or local records that cannot answer
                net.send(me, coordinator, Answer(me, False, str(exc)))
                return
        net.send(me, coordinator, Answer(me, True))
        if self._gone("accept"):
            return
        outbox = s.key_shares()
        if self.stop == "keys":
            outbox = outbox[: len(outbox) // 2]
        for keys in outbox:
            net.send(me, keys.recipient, keys)
        await asyncio.sleep(0)  # let the messages go while other parties compute
        if self._gone("keys"):
            return
        held: MaskedInput | None = None
        reported = False
        while True:
            if reported:
                got = await net.next(me, self._wait(None))
                if got is None:  # the deadline passed: the coordinator is gone
                    s.abort()
                    return
            else:  # report when every neighbour's keys are in, or none came for a while
                waiting = s.keys_missing and (not self.lost or any(p not in self.lost for p in s.missing))
                got = await net.next(me, self._wait(self.round_timeout)) if waiting else None
                if got is None:
                    if self._gone("report"):
                        return
                    if _left(s.spec.deadline, self.clock) <= 0:
                        s.abort()
                        return
                    net.send(me, coordinator, s.report())
                    reported = True
                    continue
            sender, msg = got
            if isinstance(msg, Lost):
                if sender == coordinator:  # nothing it sends can reach the coordinator: the session is over here
                    s.abort()  # its node frees its reservation unless its masked input was charged
                    return
                self.lost.add(sender)
                continue
            if isinstance(msg, KeyShares):
                if msg.sender != sender:
                    self.ignored.append(f"keys from {sender} claiming to come from {msg.sender}")
                    continue
                try:
                    s.receive_keys(msg)
                except ProtocolError as exc:  # not a neighbour, a duplicate, malformed: dropped
                    self.ignored.append(f"keys from {sender}: {exc}")
                continue
            if sender != coordinator:
                self.ignored.append(f"a {type(msg).__name__} from {sender}, not the coordinator")
                continue
            if isinstance(msg, Roster):
                if self._gone("mask"):
                    return
                try:
                    masked = s.masked_input(msg, self.clock())
                except ProtocolError as exc:
                    self.ignored.append(f"a roster: {exc}")
                    if exc.status == Status.DEADLINE_EXCEEDED:
                        s.abort()
                        return
                    continue
                if self.charge is not None and not await self.charge():
                    self.ignored.append("a roster: this party's ledger could not charge its masked input, not sent")
                    continue
                if self.stop == "late":
                    held = masked
                else:
                    net.send(me, coordinator, masked)
                await asyncio.sleep(0)
            elif isinstance(msg, Unmask):
                if held is not None:  # a slow party: its masked input arrives after the cut
                    net.send(me, coordinator, held)
                if self._gone("reveal"):
                    return
                try:
                    net.send(me, coordinator, s.reveal(msg))
                except ProtocolError as exc:
                    self.ignored.append(f"an unmask request: {exc}")
                    continue
                return
            elif isinstance(msg, Abort):
                s.abort()
                return


class CoordinatorDriver:
    """The coordinator's side: close each round when everyone it waits for answered or nothing came for a
    round timer; a message a party may not send (a field naming someone else, a duplicate, a malformed
    one) is dropped into ``rejected`` and its party treated as if it had dropped. Masked inputs that come
    after the counted set was fixed are refused and named in ``late``. Past the deadline it aborts."""

    def __init__(
        self,
        query: MaskedQuery,
        net: Network,
        round_timeout: float,
        first_timeout: float | None = None,
        name: str = COORDINATOR,
        clock: Callable[[], float] = time.time,
    ):
        self.session = MaskedCoordinator(query)
        self.first_timeout = first_timeout or round_timeout  # the first answer may wait for processes to start
        self.query = query
        self.net = net
        self.round_timeout = round_timeout
        self.name = name
        self.clock = clock
        self.late: list[str] = []
        self.rejected: list[tuple[str, str]] = []  # (sender, why its message was dropped)
        self.lost: dict[str, str] = {}  # parties whose link broke (not waited for) -> why

    def _waiting(self, count: Callable[[], int], names: Callable[[], list[str]]) -> bool:
        """Whether a round still waits for someone: ``count()`` in O(1) after each message; the names only
        when some party was lost (a lost party is not waited for)."""
        return count() > 0 and (not self.lost or any(p not in self.lost for p in names()))

    async def _round(
        self,
        count: Callable[[], int],
        names: Callable[[], list[str]],
        handle: Callable[[str, object], None],
        idle: float,
        hold: Callable[[], bool] = lambda: False,
        hold_until: float = -math.inf,
    ) -> None:
        """Handle messages until nobody is waited for (see :meth:`_waiting`) or none came for ``idle`` seconds;
        while ``hold()`` an idle timer does not close the round before the clock reads ``hold_until``."""
        while self._waiting(count, names):
            left = _left(self.query.spec.deadline, self.clock)
            if left <= 0:
                raise ProtocolError(
                    Status.DEADLINE_EXCEEDED,
                    f"{', '.join(names()[:5])} did not answer before the deadline; session aborted, no result released",
                )
            got = await self.net.next(self.name, min(idle, left))
            if got is None:
                if left > idle and not (hold() and self.clock() < hold_until):
                    return
                continue  # held, or the deadline: the check above says so
            sender, msg = got
            if isinstance(msg, Lost):
                self.lost.setdefault(sender, msg.reason)
                continue
            if isinstance(msg, MaskedInput) and self.session.state != "collecting-inputs":
                self.late.append(sender)  # after the cut: refused, never added
                continue
            try:
                if not isinstance(msg, (Answer, Report, MaskedInput, Reveal)):
                    raise ProtocolError(Status.INVALID_ARGUMENT, f"a {type(msg).__name__} is not a party's message")
                claimed = msg.party
                if sender != claimed:
                    raise ProtocolError(
                        Status.PERMISSION_DENIED, f"a message from {sender} claims to come from {claimed}"
                    )
                handle(sender, msg)
            except ProtocolError as exc:
                self.rejected.append((sender, str(exc)))

    async def run(self) -> Release:
        c, net = self.session, self.net
        parties = self.query.spec.parties
        answered: set[str] = set()

        def on_answer(sender: str, msg: object) -> None:
            if isinstance(msg, Answer):
                if sender in answered:
                    raise ProtocolError(Status.ALREADY_EXISTS, f"a second answer from {sender}")
                c.record_response(msg.party, msg.accepted, msg.reason)
                answered.add(sender)
            elif isinstance(msg, Report):
                c.record_report(msg)

        # rounds 1-2: answers and key reports; parties wait up to round_timeout for their neighbours' keys
        def unanswered() -> list[str]:
            return [p for p in parties if p not in answered]

        def short() -> bool:
            """Fewer than the quorum accepted, and enough parties not heard from (nor lost) could still make it."""
            accepted = len(answered) - len(c.refused)
            if accepted >= self.query.quorum.size:
                return False
            return accepted + sum(p not in self.lost for p in unanswered()) >= self.query.quorum.size

        # round 1 waits past an idle timer while short of the quorum (slow first dials, a loaded host), up to
        # the time the later rounds need (keys 2 timers, masks 1, reveals 1); no deadline: one idle timer
        deadline = self.query.spec.deadline
        hold_until = deadline - 4 * self.round_timeout if math.isfinite(deadline) else -math.inf
        await self._round(
            lambda: len(parties) - len(answered), unanswered, on_answer, self.first_timeout, short, hold_until
        )
        await self._round(lambda: c.waiting_count, lambda: c.waiting_for, on_answer, 2 * self.round_timeout)
        for roster in c.rosters():
            net.send(self.name, roster.party, roster)

        def on_masked(sender: str, msg: object) -> None:
            if isinstance(msg, MaskedInput):
                c.receive_masked(msg)

        await self._round(lambda: c.waiting_count, lambda: c.waiting_for, on_masked, self.round_timeout)
        for unmask in c.unmask():
            net.send(self.name, unmask.party, unmask)

        def on_reveal(sender: str, msg: object) -> None:
            if isinstance(msg, Reveal):
                c.receive_reveal(msg)

        # until every secret to rebuild has its t shares, or every party not lost revealed
        await self._round(
            lambda: min(c.waiting_count, c.unrevealed_count), lambda: c.unrevealed, on_reveal, self.round_timeout
        )
        release = c.release()
        await asyncio.sleep(0)  # let parties still answering get their messages out
        while (got := await net.next(self.name, 0)) is not None:  # only to report late inputs
            if isinstance(got[1], MaskedInput):
                self.late.append(got[0])
        return release

    def abort(self, reason: str) -> None:
        """Abort the session and tell every party."""
        self.session.abort(reason)
        for p in self.query.spec.parties:
            self.net.send(self.name, p, Abort(reason))

    def why(self) -> str:
        """Refusals and dropped messages, for an abort's message."""
        notes = [f"{p} refused: {r}" for p, r in sorted(self.session.refused.items())[:5]]
        notes += [f"{p}: {r}" for p, r in self.rejected[:5]]
        notes += [f"lost {p}: {r}" for p, r in sorted(self.lost.items())[:5]]
        return f" ({'; '.join(notes)})" if notes else ""


def round_timer(deadline: float, clock: Callable[[], float] = time.time) -> float:
    """A round's timer on real nodes: an eighth of the time left, so four rounds that each wait for a dropped
    party still end before the deadline."""
    return max(_left(deadline, clock) / ROUND_FRACTION, MIN_ROUND_TIMER)


# -- one session over a node's Hub ------------------------------------------------------------------------


class HubNetwork:
    """One session's messages over a node's :class:`services.link.Hub`: a pushed kind per message type, the
    sender the link's certificate name, messages to one peer written in order (``Hub.post``). A peer whose
    link broke or who cannot be reached is reported to the driver as a :class:`Lost` notice, so a round
    stops waiting for it at once instead of at its timer. The inbox takes at most :data:`PER_KIND` messages
    of a type from a peer (so it, and the drivers' lists of dropped messages, stay O(n) per session)."""

    def __init__(self, hub: Any, session: bytes):
        self.hub = hub
        self.session = session
        self.gone: set[str] = set()
        self.inbox: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        self._delivered: Counter[tuple[str, type]] = Counter()
        self.failed: dict[str, str] = {}  # peer -> why a message to it could not be sent
        self._posted: set[asyncio.Future[None]] = set()

    def send(self, sender: str, recipient: str, msg: object) -> None:
        if sender in self.gone:
            return
        self.send_raw(recipient, KINDS[type(msg)], encode(msg))

    def send_raw(self, recipient: str, kind: str, data: bytes) -> None:
        from services.link import LinkError

        if recipient in self.failed:
            return
        try:
            posted = self.hub.post(recipient, self.session, 0, kind, data)
        except LinkError as exc:
            self.lost(recipient, str(exc))
            return
        self._posted.add(posted)
        posted.add_done_callback(lambda done: self._written(recipient, done))

    def _written(self, peer: str, done: asyncio.Future[None]) -> None:
        self._posted.discard(done)
        if not done.cancelled() and done.exception() is not None:
            self.lost(peer, str(done.exception()))

    def lost(self, peer: str, reason: str) -> None:
        """``peer`` cannot be reached or its link broke: later messages to it are dropped; the driver is told."""
        if peer not in self.failed:
            self.failed[peer] = reason
            self.deliver(peer, Lost(reason))

    def deliver(self, peer: str, msg: object) -> None:
        key = (peer, type(msg))
        if self._delivered[key] < PER_KIND:
            self._delivered[key] += 1
            self.inbox.put_nowait((peer, msg))

    async def next(self, me: str, idle: float | None) -> tuple[str, object] | None:
        if not self.inbox.empty():
            return self.inbox.get_nowait()
        if idle is None:
            return await self.inbox.get()
        try:
            return await asyncio.wait_for(self.inbox.get(), idle)
        except TimeoutError:
            return None

    async def drain(self, timeout: float) -> None:
        """Wait until every message posted was written to its link (or ``timeout``)."""
        if self._posted:
            await asyncio.wait(list(self._posted), timeout=max(timeout, 0.001))


class Router:
    """A node's many-party sessions on its Hub: routes each pushed message to its session's network by
    session id; holds (boundedly: :data:`EARLY_MESSAGES`, :data:`EARLY_PER_PEER` from one peer, for
    :data:`EARLY_SECONDS` once full) the key messages of a session this node has not opened yet (a neighbour
    that accepted first sends its keys before this node has read the proposal), unless the session was
    closed here; any other message for a session not open here is dropped."""

    def __init__(self, hub: Any, on_propose: Callable[[str, bytes, memoryview], None] | None = None):
        from services import audit

        self._audit = audit
        self.hub = hub
        self.live: dict[bytes, HubNetwork] = {}
        self._early: dict[bytes, list[tuple[float, str, object]]] = {}
        self._held = 0
        self._held_from: Counter[str] = Counter()
        for kind in KINDS.values():
            hub.on(kind, self._on_message)
        hub.on_drop(self._dropped)
        if on_propose is not None:
            hub.on(PROPOSE, lambda peer, sid, _round, payload: on_propose(peer, sid, payload))

    def open(self, session: bytes) -> HubNetwork:
        net = self.live[session] = HubNetwork(self.hub, session)
        for _, peer, msg in self._release(session):
            net.deliver(peer, msg)
        return net

    def close(self, session: bytes) -> None:
        self.live.pop(session, None)
        self._release(session)
        self.hub.close_session(session)  # later frames of the session are ignored

    def _release(self, session: bytes) -> list[tuple[float, str, object]]:
        held = self._early.pop(session, [])
        self._held -= len(held)
        self._held_from.subtract(peer for _, peer, _ in held)
        return held

    def _dropped(self, peer: str, error: Exception) -> None:
        for net in self.live.values():
            net.lost(peer, str(error))

    def _on_message(self, peer: str, session: bytes, _round: int, payload: memoryview) -> None:
        try:
            msg = decode(payload)
        except ValueError as exc:
            self._audit.record("invalid", caller=peer, session=session.hex(), message=f"many-party message: {exc}")
            return
        net = self.live.get(session)
        if net is not None:
            net.deliver(peer, msg)
            return
        if not isinstance(msg, KeyShares):  # nothing else can come before its session opened here
            return
        if self.hub.is_closed(session):  # finished or refused here (the Hub remembers): it never opens again
            return
        now = time.monotonic()
        if self._held >= EARLY_MESSAGES:
            for sid in [s for s, held in self._early.items() if held[0][0] < now - EARLY_SECONDS]:
                self._release(sid)
        if self._held < EARLY_MESSAGES and self._held_from[peer] < EARLY_PER_PEER:
            self._early.setdefault(session, []).append((now, peer, msg))
            self._held += 1
            self._held_from[peer] += 1


_routers: weakref.WeakKeyDictionary[Any, Router] = weakref.WeakKeyDictionary()


def _router(hub: Any, on_propose: Callable[[str, bytes, memoryview], None] | None = None) -> Router:
    router = _routers.get(hub)
    if router is None:
        router = _routers[hub] = Router(hub, on_propose)
    return router


def encode_proposal(query: MaskedQuery) -> bytes:
    """The spec, the quorum, then the batch's further specs (each a QuerySpec protobuf)."""
    from services.convert import spec_to_proto

    specs = [spec_to_proto(s).SerializeToString() for s in query.specs]
    return pack(specs[0], query.quorum.size.to_bytes(4, "little"), *specs[1:])


def decode_proposal(data: bytes | memoryview) -> MaskedQuery:
    """The query :func:`encode_proposal` made (every spec with its deadline, required; a batch's specs sharing
    the first's parties, colluders, session id and deadline); SpecError or ValueError if malformed."""
    from services.convert import spec_from_proto
    from services.wire.mpcdp.v1 import federation_pb2 as pb

    fields = unpack(data)
    if len(fields) < 2 or len(fields[1]) != 4:
        raise ValueError("a many-party proposal is a spec, a quorum and the batch's further specs")
    spec, *batch = (spec_from_proto(pb.QuerySpec.FromString(f), require_deadline=True) for f in fields[:1] + fields[2:])
    return MaskedQuery.of(spec, int.from_bytes(fields[1], "little"), batch=tuple(batch))


# -- a party node -------------------------------------------------------------------------------------------

CLOCK_SLACK = 5.0  # seconds a proposed deadline may exceed the policy's max_timeout by (clocks differ)


def serve_party(node: Any) -> Router:
    """Let a :class:`services.party_node.PartyNode` take many-party proposals on its links."""
    import scipy.special  # noqa: F401  (the survivor loss imports it lazily: not inside a proposal's round timer)

    tasks: set[asyncio.Task[None]] = set()

    def on_propose(peer: str, session: bytes, payload: memoryview) -> None:
        task = asyncio.ensure_future(_party_session(node, router, peer, session, bytes(payload)))
        tasks.add(task)
        task.add_done_callback(finished)

    def finished(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # a bug, not a refusal: say so, keep serving
            log.error("a many-party session failed", exc_info=task.exception())

    router = _router(node.link, on_propose)
    return router


class _Refused(Exception):
    def __init__(self, status: Status, public: str, local: str = ""):
        super().__init__(public)
        self.status = status
        self.local = local or public


def _check_proposal(node: Any, peer: str, session: bytes, payload: bytes) -> MaskedQuery:
    try:
        query = decode_proposal(payload)
    except (SpecError, ValueError) as exc:
        raise _Refused(Status.INVALID_ARGUMENT, str(exc)) from None
    spec = query.spec
    if spec.session_id != session:
        raise _Refused(Status.INVALID_ARGUMENT, "the proposal's session id is not the one it came under")
    if node.me not in spec.parties:
        raise _Refused(Status.PERMISSION_DENIED, f"{node.me!r} is not on this session's party list")
    outsiders = [p for p in spec.parties if p not in node.federation.names("party")]
    if outsiders:
        raise _Refused(Status.PERMISSION_DENIED, f"not parties of this federation: {', '.join(outsiders)}")
    return query


def _mark_used(node: Any, session: bytes) -> None:
    """``session`` is used on the party node from now on, whatever happens; the node remembers as many closed
    sessions as its additive ones (``CLOSED_REMEMBERED``, the oldest forgotten: its SessionLog still has them)."""
    from services.party_node import CLOSED_REMEMBERED

    node._closed[session] = None
    while len(node._closed) > CLOSED_REMEMBERED:
        node._closed.popitem(last=False)


async def _party_session(node: Any, router: Router, peer: str, session: bytes, payload: bytes) -> None:
    """One proposal to a party node, from its checks to its last message (see the module doc)."""
    from services import audit
    from services.data import DataError
    from services.ledgers import group_commit, public_refusal

    sid = session.hex()
    if peer not in node.federation.names("coordinator"):
        audit.record("denied", caller=peer, session=sid, message="a many-party proposal from a non-coordinator")
        return
    if node._used(session):
        audit.record("refused", session=sid, status="ALREADY_EXISTS", reason="session id replayed")
        return  # nothing is answered under a used id: its answer went out already
    _mark_used(node, session)
    net = router.open(session)
    party: MaskedParty | None = None
    counted = False
    held = False  # its worst-case loss is (being) reserved on its ledger, neither charged nor freed yet
    try:
        if node.full():  # the party's cap on live sessions, shared with its additive ones (party_node.BUSY)
            from services.party_node import BUSY

            raise _Refused(Status.RESOURCE_EXHAUSTED, BUSY)
        node.many_in_flight += 1
        counted = True
        query = _check_proposal(node, peer, session, payload)
        spec = query.spec
        if node.sessions is not None:
            await node.sessions.add_durably(session, spec.deadline)  # on disk before anything else happens here
        now = node._clock()
        try:
            if spec.deadline > now:  # a passed deadline is refused by accept, as DEADLINE_EXCEEDED
                spec.check_deadline(now, node.max_timeout + CLOCK_SLACK)
            query.plan  # noqa: B018  (refuses colluders and dropouts no graph survives)
        except (SpecError, ValueError) as exc:
            raise _Refused(Status.INVALID_ARGUMENT, str(exc)) from None
        try:
            records = [node.table.records(s) for s in query.specs]  # a batch: each statistic's own
        except DataError as exc:
            raise _Refused(Status.PERMISSION_DENIED, exc.public, str(exc)) from None
        rng = node._rng(session) if node._rng else None
        party = MaskedParty(node.me, query, records[0], node.policy, rng=rng, batch_records=tuple(records[1:]))
        try:
            party.accept(now)
        except ProtocolError as exc:
            raise _Refused(exc.status, str(exc)) from None
        except ValueError as exc:  # local records unusable: say so without the detail
            raise _Refused(
                Status.INVALID_ARGUMENT,
                "its records cannot answer this query (non-finite values, or more records than max_records)",
                str(exc),
            ) from None
        if node.ledger is not None and query.charge is not None:  # reserved off the loop, by group commit
            held = True  # from now on: freed when the session ends uncharged, even if this wait is cancelled
            try:
                await group_commit(node.ledger).reserve(session, query.charge, until=spec.deadline)
            except Exception as exc:  # the ledger's own words (spent, requested, remaining), never its path
                held = False
                raise _Refused(Status.RESOURCE_EXHAUSTED, public_refusal(exc)) from None

        async def charged() -> bool:
            """Charge the reservation before the masked input leaves (on disk first); whether it may leave."""
            nonlocal held
            if not held:
                return True
            try:
                await group_commit(node.ledger).charge_reserved(session)
            except Exception as exc:
                log.error("many-party session %s: the ledger could not charge it: %s", sid, type(exc).__name__)
                return False
            held = False
            return True

        driver = PartyDriver(
            party, net, round_timer(spec.deadline, node._clock), coordinator=peer, clock=node._clock, charge=charged
        )
        await driver.run()
        for note in driver.ignored[:10]:
            audit.record("invalid", session=sid, message=note)
        if party.state == "aborted":
            audit.record("aborted", session=sid, reason="the coordinator aborted the session or went away")
        elif party.masked:
            charge = query.charge
            audit.record(
                "released",
                session=sid,
                statistic=",".join(s.statistic for s in query.specs),
                parties=",".join(spec.parties),
                epsilon=charge.epsilon_delta(spec.delta)[0] if charge is not None else None,
                what="masked input sent to the coordinator",
            )
        await net.drain(_left(spec.deadline, node._clock))
    except _Refused as exc:
        audit.record(
            "refused",
            session=sid,
            status=exc.status.value,
            reason=str(exc),
            detail=exc.local if exc.local != str(exc) else None,
        )
        net.send(node.me, peer, Answer(node.me, False, str(exc)))
        await net.drain(5.0)
    finally:
        if counted:
            node.many_in_flight -= 1
        if party is not None and party.state in ("accepted", "keyed"):
            party.abort()  # never masked
        if held:  # not charged: free it (queued after the reservation)
            group_commit(node.ledger).free(session)
        router.close(session)


# -- the coordinator node -----------------------------------------------------------------------------------


async def coordinate(coord: Any, request: Any, context: Any) -> None:
    """The coordinator side of a query naming a quorum (``coord`` is a
    :class:`services.coordinator_node.CoordinatorNode`): check, reserve, run, keep, charge, reply."""
    from services import convert

    who = await coord._client(context)
    try:
        (spec, *batch), confidence, _ = coord.spec_for(request)
        for s in (spec, *batch):
            coord.admit(s)
        try:
            query = MaskedQuery.of(spec, request.quorum, batch=tuple(batch))
            query.plan  # noqa: B018  (refuses colluders and dropouts no graph survives)
        except ValueError as exc:
            raise SpecError("quorum", str(exc)) from None
        held = await coord.hold(spec.session_id, query.charge, spec.deadline)
    except (SpecError, ProtocolError) as exc:
        await coord.refuse(context, who, exc)
    await coord.answer(
        context,
        spec.session_id,
        held,
        lambda: _session(coord, query, confidence, who, held),
        lambda exc: (convert.GRPC_CODES[exc.status], str(exc)) if isinstance(exc, ProtocolError) else None,
    )


async def run_session(coord: Any, query: MaskedQuery) -> tuple[Release, CoordinatorDriver]:
    """Propose ``query`` to its parties over the coordinator's links and drive it to its release (ProtocolError,
    after telling every party, if it aborts or fails in any way)."""
    spec = query.spec
    router = _router(coord.link)
    net = router.open(spec.session_id)
    me = coord.identity.name
    timer = round_timer(spec.deadline, coord._clock)
    driver = CoordinatorDriver(query, net, timer, name=me, clock=coord._clock)
    proposal = encode_proposal(query)
    try:
        for p in spec.parties:
            net.send_raw(p, PROPOSE, proposal)
        try:
            return await driver.run(), driver
        except Exception as exc:  # any failure, a bug included: the parties are told, the analyst gets words
            if isinstance(exc, ProtocolError):
                status, reason = exc.status, str(exc) + driver.why()
            else:
                log.error("many-party session %s failed", spec.session_id.hex(), exc_info=exc)
                status = Status.ABORTED
                reason = "the coordinator failed while running the session (its log has the details); "
                reason += "session aborted, no result released"
            driver.abort(reason)
            await net.drain(min(_left(spec.deadline, coord._clock), 2.0))
            raise ProtocolError(status, reason) from None
    finally:
        router.close(spec.session_id)


async def _session(coord: Any, query: MaskedQuery, confidence: float, client: str, held: bool) -> list:
    from services import audit, releases
    from services.ledgers import group_commit

    spec = query.spec
    sid = spec.session_id
    try:
        try:
            release, driver = await run_session(coord, query)
        except ProtocolError as exc:
            audit.record("aborted", session=sid.hex(), reason=str(exc))
            raise
        for party in driver.late:
            audit.record("refused", session=sid.hex(), culprit=party, reason="a masked input after the cut")
        for party, why in driver.rejected[:10]:
            audit.record("invalid", caller=party, session=sid.hex(), message=why)
        parts = releases.batch_parts(
            query.specs,
            driver.session.releases,
            confidence,
            parts_of=lambda s, r, c: release_parts(s, query.quorum.size, r, c),
        )
        if coord.store is not None:
            try:
                await asyncio.to_thread(coord.store.put, sid.hex(), client, all(s.is_exact for s in query.specs), parts)
            except OSError as exc:  # the release still goes to the analyst; it cannot be fetched again
                log.error("could not keep the release of session %s: %s", sid.hex(), exc)
        if held:  # group-committed off the loop (services.ledgers.group_commit), on disk before the reply
            await group_commit(coord.ledger).charge_reserved(sid)
            held = False
    finally:
        if held:  # not charged: freed (in order after the reservation) before the analyst hears it failed
            await group_commit(coord.ledger).freed(sid)
    releases.audit_batch(
        sid,
        client,
        query.specs,
        releases.composed(query.specs, driver.session.releases),
        release.parties,
        f"many-party release: {len(release.parties)} of {spec.n_parties} parties counted",
    )
    return parts


def release_parts(spec: QuerySpec, quorum: int, release: Release, confidence: float) -> list:
    """The reply parts of a many-party release: ``parties`` the
    counted ones, ``dropped`` the others, the quorum, and epsilon and delta restated for the counted parties.
    (The intervals are those of all n noise pieces: conservative, wider, when fewer were counted.)"""
    from services import releases

    parts = list(releases.parts(spec, release, confidence))
    reply = parts[0].reply
    del reply.parties[:]
    reply.parties.extend(release.parties)
    reply.dropped.extend(release.extras["dropped"])
    reply.quorum = quorum
    if release.epsilon is not None:
        reply.epsilon = release.epsilon
        reply.delta = release.delta
    return parts
