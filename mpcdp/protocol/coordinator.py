"""The coordinator's side of the peer protocol, as a state machine with no I/O.

    collecting-responses --all accepted--> collecting-sums --all in--> released
             any state --abort (naming the culprit)--> aborted

A keyed session (:attr:`mpcdp.protocol.spec.Sharing.KEYED`) starts in collecting-sums: a party's partial
sum is its acceptance, and with it the party reports the id of the pair key it masked with for each peer
(:meth:`CoordinatorSession.record_key_ids`); both ends of every pair must report the same id, or the masks
do not cancel and the session aborts naming the pair.

The coordinator never sees an input or a share: only the parties' answers and
their partial sums, each uniformly random on its own. Their total is the
(noisy, under DP) aggregate, which it decodes and post-processes. Partial sums
are added into one running total as they arrive, whole or piece by piece as
they come off the wire (:meth:`CoordinatorSession.receive_piece`), so the
release only decodes; a party that accepted may send its partial sum while
others are still answering (one round trip).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import ring
from ..dp.loss import PrivacyLoss
from .errors import ProtocolError, Status
from .messages import PartialSum, Response
from .spec import Batch, QuerySpec, Sharing

KEPT_BYTES = 64 << 20  # totals of closed sessions a coordinator keeps for the next session of their length, at most
SMALLEST_KEPT_BYTES = 64 << 10  # a smaller total is not kept: a fresh array that small costs no page faults to speak of


class KeptTotals:
    """The totals of a coordinator's closed sessions, kept for its next session of the same length: a fresh array of
    megabytes costs a page fault per page (or per huge page) at its first touch, paid again by every session, where
    a kept one's pages are mapped already.

    One per coordinator (:class:`CoordinatorSession`'s ``totals``): coordinators in one process share nothing, and
    the memory goes with the coordinator. At most ``limit`` bytes are kept, only totals of at least ``smallest``
    bytes (so at most ``limit // smallest`` of them), by length, with a running byte count: :meth:`take` and
    :meth:`keep` cost the same however many are kept. When a total does not fit, the ones kept longest ago go
    first (lengths nobody asks for any more do not hold the memory for good). Thread-safe: sessions may close on
    several threads.

    A total is handed back (:meth:`keep`) only once nothing reads it any more: see
    :meth:`CoordinatorSession.releases`."""

    def __init__(self, limit: int = KEPT_BYTES, smallest: int = SMALLEST_KEPT_BYTES) -> None:
        self.limit = limit
        self.smallest = smallest
        self.nbytes = 0  # of the totals kept
        self._by_length: dict[int, deque[np.ndarray]] = {}  # each length's, oldest first
        self._order: OrderedDict[int, np.ndarray] = OrderedDict()  # every kept total by id, oldest first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._order)

    def take(self, length: int) -> np.ndarray:
        """An uninitialised total of ``length`` ring elements (the one of that length kept last, if any)."""
        with self._lock:
            same = self._by_length.get(length)
            if same:
                total = same.pop()
                if not same:
                    del self._by_length[length]
                del self._order[id(total)]
                self.nbytes -= total.nbytes
                return total
        return np.empty(length, dtype=ring.DTYPE)

    def keep(self, total: np.ndarray) -> None:
        """Keep ``total`` (nothing reads it any more) for the next :meth:`take` of its length, if it is large
        enough, making room by forgetting the totals kept longest ago."""
        if not self.smallest <= total.nbytes <= self.limit:
            return
        with self._lock:
            if id(total) in self._order:  # kept already (not reachable by the sessions' own bookkeeping)
                return
            while self.nbytes + total.nbytes > self.limit:
                _, old = self._order.popitem(last=False)
                same = self._by_length[old.size]
                same.popleft()  # the oldest of its length is the oldest kept of them
                if not same:
                    del self._by_length[old.size]
                self.nbytes -= old.nbytes
            self._by_length.setdefault(total.size, deque()).append(total)
            self._order[id(total)] = total
            self.nbytes += total.nbytes


_NOT_KEPT = KeptTotals(limit=0)  # a session given no totals: a new one each time, nothing kept (shared: it is empty)


@dataclass(frozen=True)
class Release:
    """What a query returns: the answer and what it cost (``loss``; None for an exact release, whose
    ``epsilon`` is None too: the floats are the loss's wire and display form)."""

    statistic: str
    result: dict[str, Any]
    parties: tuple[str, ...]
    epsilon: float | None
    delta: float
    mechanism: str | None
    extras: dict[str, Any] = field(default_factory=dict)
    loss: PrivacyLoss | None = None

    @property
    def value(self) -> Any:
        """The headline number: the requested statistic itself."""
        return self.result[self.statistic]


class CoordinatorSession:
    """The coordinator's state in one session."""

    def __init__(self, spec: QuerySpec, batch: tuple[QuerySpec, ...] = (), totals: KeptTotals | None = None):
        """``batch``: more statistics asked in the same session (:class:`mpcdp.protocol.spec.Batch`): the partial
        sums are their concatenation, and :meth:`releases` gives one release per statistic. ``totals``: the
        coordinator's kept totals, where this session's total comes from and goes back to once closed (None: a new
        array, not kept)."""
        self.spec = spec
        self.batch = Batch((spec, *batch))
        self.keyed = spec.sharing is Sharing.KEYED  # pre-approved: a partial sum is the acceptance
        self.state = "collecting-sums" if self.keyed else "collecting-responses"
        self._accepted: set[str] = set(spec.parties) if self.keyed else set()
        self._key_ids: dict[str, dict[str, bytes]] = {}  # keyed: per party, the pair key id it used per peer
        self._summed: set[str] = set()  # parties whose whole partial sum is in the total
        self._filled: dict[str, int] = {}  # elements folded in so far, per party sending its partial in pieces
        self._total: np.ndarray | None = None  # the running total of the partial sums
        self._own_total = False  # whether _total is this session's array (else a caller's vector, read only)
        self._totals = _NOT_KEPT if totals is None else totals
        self._written = 0  # elements of an own _total written so far (beyond them it is uninitialised memory)
        self.abort_reason = ""

    @property
    def length(self) -> int:
        return self.batch.length

    def _require(self, state: str) -> None:
        if self.state != state:
            raise ProtocolError(Status.FAILED_PRECONDITION, f"session is {self.state}, not {state}")

    def _check_sender(self, session_id: bytes, party: str) -> None:
        if session_id != self.spec.session_id:
            raise ProtocolError(Status.NOT_FOUND, "message for another session")
        if party not in self.spec.parties:
            raise ProtocolError(Status.PERMISSION_DENIED, f"{party!r} is not a party of this session")

    def record_response(self, response: Response) -> None:
        """Note a party's accept/refuse. A refusal aborts the session, naming the party (in a keyed session,
        where a partial sum is the acceptance, a refusal is the only answer)."""
        if not (self.keyed and not response.accepted and self.state == "collecting-sums"):
            self._require("collecting-responses")
        self._check_sender(response.session_id, response.party)
        if not response.accepted:
            self.abort(f"{response.party} refused: {response.reason}", response.party)
            raise ProtocolError(Status.ABORTED, self.abort_reason)
        self._accepted.add(response.party)
        if self._accepted == set(self.spec.parties):
            self.state = "collecting-sums"

    @property
    def all_accepted(self) -> bool:
        """Whether every party has accepted (a keyed session: from the start, a partial sum being the acceptance).
        Until then no honest party has sent its partial sum, so none has charged its ledger for this session."""
        return self._accepted == set(self.spec.parties)

    @property
    def missing(self) -> list[str]:
        """Parties whose current-phase message has not arrived."""
        if self.state == "collecting-responses":
            return [p for p in self.spec.parties if p not in self._accepted]
        return [p for p in self.spec.parties if p not in self._summed or (self.keyed and p not in self._key_ids)]

    def record_key_ids(self, party: str, ids: dict[str, bytes]) -> None:
        """Keyed sharing: the ids of the pair keys ``party`` masked its partial sum with, by peer. Both ends of a
        pair must have used the same key (a link re-established during the session gives its ends different
        keys, and masks that do not cancel): otherwise the session aborts naming the pair in its reason, with no
        culprit (either end may be the one that re-agreed; ProtocolError)."""
        if not self.keyed:
            raise ProtocolError(Status.FAILED_PRECONDITION, "only a keyed session reports pair keys")
        self._require("collecting-sums")
        self._check_sender(self.spec.session_id, party)
        if party in self._key_ids:
            raise ProtocolError(Status.ALREADY_EXISTS, f"duplicate pair key ids from {party!r}")
        if set(ids) != {p for p in self.spec.parties if p != party}:
            raise ProtocolError(Status.INVALID_ARGUMENT, f"{party} must report one pair key id per peer")
        for peer, key_id in ids.items():
            theirs = self._key_ids.get(peer)
            if theirs is not None and theirs[party] != key_id:
                first, second = sorted((party, peer))
                self.abort(  # no culprit: the fault is the pair's (either end may have re-agreed), both are named
                    f"{first} and {second} masked with different pair keys (their link was re-established during "
                    "the session); session aborted, no result released"
                )
                raise ProtocolError(Status.ABORTED, self.abort_reason)
        self._key_ids[party] = dict(ids)

    def _check_partial(self, session_id: bytes, sender: str, now: float) -> None:
        """A partial sum may come from a party that accepted while others still answer (one round trip)."""
        if self.state not in ("collecting-responses", "collecting-sums"):
            raise ProtocolError(Status.FAILED_PRECONDITION, f"session is {self.state}, not collecting-sums")
        self._check_sender(session_id, sender)
        if sender not in self._accepted:
            raise ProtocolError(Status.FAILED_PRECONDITION, f"{sender} sent a partial sum before accepting")
        if now > self.spec.deadline:
            raise ProtocolError(Status.DEADLINE_EXCEEDED, "the session's deadline has passed")
        if sender in self._summed:
            raise ProtocolError(Status.ALREADY_EXISTS, f"duplicate partial sum from {sender!r}")

    def receive_partial(self, msg: PartialSum, now: float = -math.inf) -> None:
        """Add a party's whole partial sum into the running total (the vector is only read)."""
        self._check_partial(msg.session_id, msg.sender, now)
        if msg.sender in self._filled:
            raise ProtocolError(Status.ALREADY_EXISTS, f"{msg.sender!r} is already sending its partial sum in pieces")
        vec = np.asarray(msg.vector)
        if vec.size != self.length or vec.dtype.kind not in "iu":
            raise ProtocolError(Status.INVALID_ARGUMENT, f"partial sums are {self.length} ring elements")
        vec = ring.as_ring(vec.reshape(-1))
        if self._total is None:
            self._total = vec  # kept as it is until a second one comes: then one new array holds the sum
        elif self._own_total:
            self._fold(0, vec)
        else:
            total = self._totals.take(self.length)
            self._total, self._own_total, self._written = np.add(self._total, vec, out=total), True, self.length
        self._summed.add(msg.sender)

    def receive_piece(
        self, session_id: bytes, sender: str, offset: int, piece: np.ndarray, now: float = -math.inf
    ) -> None:
        """Add the next ``piece`` (ring elements from ``offset`` on) of ``sender``'s partial sum into the total as
        it arrives, so the coordinator never holds a party's vector; :meth:`end_partial` completes it."""
        self._check_partial(session_id, sender, now)
        filled = self._filled.get(sender, 0)
        if offset != filled or piece.dtype != ring.DTYPE or piece.ndim != 1 or filled + piece.size > self.length:
            raise ProtocolError(
                Status.INVALID_ARGUMENT,
                f"a piece of {sender}'s partial sum at element {offset} (expected {filled}) of {piece.size} "
                f"elements: partial sums are {self.length} ring elements, in order",
            )
        if not self._own_total:  # not zeroed: the first piece to reach an element is copied there
            total = self._totals.take(self.length)
            if self._total is None:
                self._written = 0
            else:
                total[:] = self._total
                self._written = self.length
            self._total, self._own_total = total, True
        self._fold(offset, piece)
        self._filled[sender] = filled + piece.size

    def _fold(self, offset: int, piece: np.ndarray) -> None:
        """Add ``piece`` into the own total from ``offset``; the part beyond what was written so far is copied.
        Every sender's pieces come in order from 0, so whatever a piece covers below ``_written`` holds a sum
        already and whatever it covers beyond holds nothing yet."""
        assert self._total is not None
        end = offset + piece.size
        split = min(max(self._written, offset), end)
        if split > offset:
            part = self._total[offset:split]
            np.add(part, piece[: split - offset], out=part)
        if end > split:
            self._total[split:end] = piece[split - offset :]
        self._written = max(self._written, end)

    def end_partial(self, session_id: bytes, sender: str, now: float = -math.inf) -> None:
        """``sender``'s partial sum came in full by :meth:`receive_piece`."""
        self._check_partial(session_id, sender, now)
        if self._filled.get(sender) != self.length:
            raise ProtocolError(
                Status.INVALID_ARGUMENT,
                f"{sender}'s partial sum ended after {self._filled.get(sender, 0)} of {self.length} elements",
            )
        self._summed.add(sender)

    def release(self, extras: dict[str, Any] | None = None, arrays: bool = False) -> Release:
        """Combine all partial sums, decode and post-process. Closes the session (of one statistic: a batch's
        are :meth:`releases`).

        ``arrays``: vector entries of the result as float64 arrays rather than lists."""
        if len(self.batch) != 1:
            raise ProtocolError(Status.FAILED_PRECONDITION, f"a batch of {len(self.batch)} statistics: see releases")
        return self.releases(extras, arrays)[0]

    def releases(self, extras: dict[str, Any] | None = None, arrays: bool = False) -> list[Release]:
        """One release per statistic of the batch, in order, each decoded from its segment of the total. Closes
        the session.

        The total goes back to the kept totals only if no release views it (the next session of its length writes
        over it). No release does: every codec decodes through :meth:`QueryCodec.split
        <mpcdp.protocol.statistics.QueryCodec.split>`, whose ``astype(float64)`` copies the total, and the result,
        its parts and the extras are built from that copy. The check below, on the arrays at the top level of
        each result, guards only the one easy way to break this (a decode returning a view of the total as
        an entry); a codec that hid a view deeper (a nested dict or list, the extras) would not be seen, so a
        decode must never return a view of its total."""
        self._require("collecting-sums")
        if self.missing:
            raise ProtocolError(Status.FAILED_PRECONDITION, f"still waiting for {', '.join(self.missing)}")
        total, own, self._total, self._own_total = self._total, self._own_total, None, False
        assert total is not None  # every party's partial sum is in it
        self.state = "released"
        released = [
            Release(
                statistic=spec.statistic,
                result=spec.codec.decode(total if len(self.batch) == 1 else total[part], arrays=arrays),
                parties=spec.parties,
                epsilon=spec.epsilon,
                delta=spec.delta,
                mechanism=None if spec.is_exact else spec.mechanism,
                extras=dict(extras or {}),
                loss=spec.loss,
            )
            for spec, part in zip(self.batch.specs, self.batch.slices, strict=True)
        ]
        views = [v for r in released for v in r.result.values() if isinstance(v, np.ndarray)]
        if own and not any(np.may_share_memory(v, total) for v in views):
            self._totals.keep(total)  # no release reads it: the next session of its length writes over it
        return released

    def abort(self, reason: str, culprit: str = "") -> None:
        """Abort the session; ``culprit`` names the one party at fault, "" where none or a pair is (the reason
        names them)."""
        if self._own_total and self._total is not None:
            self._totals.keep(self._total)
        self._total, self._own_total = None, False
        self.abort_reason = reason
        self.culprit = culprit
        self.state = "aborted"
