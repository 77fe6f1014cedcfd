"""The many-party query: masked inputs over a sparse graph, surviving dropouts (SecAgg+, no I/O).

Bonawitz et al. (CCS 2017) and Bell et al. (CCS 2020), honest-but-curious variant. The spec's parties are
laid on a sparse graph (:mod:`mpcdp.protocol.graph`, degree k = O(log n)); a party exchanges secrets only
with its k neighbours, over the authenticated links between parties, and sends the coordinator one masked
vector. Rounds:

1. **Keys** (party -> each neighbour). A party draws a recovery key m, a self-mask seed b and, for each
   neighbour j, a random half h_ij of their pair seed; it sends each neighbour its half with one Shamir
   share (threshold t) of m and one of b. The pair seed of i and j is s_ij = H(sid, i, j, h_ij, h_ji): both
   ends hold it once both halves arrived, and nobody else (the links between parties are mutually
   authenticated and encrypted, as the shares they carry already require).
2. **Report** (party -> coordinator): commitments H(m), H(b), the neighbours whose halves arrived, and for
   each a **pad** e_ij = s_ij XOR PRF(m, sid, i, j), from which m alone recovers s_ij. The coordinator keeps
   the edges whose two ends both reported and heard each other, and sends each party its **roster**.
3. **Masked input** (party -> coordinator): y = x + PRG(b) + sum over roster j of +-PRG(s_ij),
   + when the party comes before j in the party list, - after; x is its encoded records plus its noise
   piece (:meth:`mpcdp.protocol.PartySession.contribution`). The party's ledger is charged before it leaves. A party
   whose roster is shorter than the threshold t sends nothing (its input would hide behind its self mask
   alone, which is rebuilt for a counted party); it still helps unmask the others.
4. **Unmask**: the coordinator fixes the counted set C (the masked inputs that arrived; at least the
   quorum, :mod:`mpcdp.protocol.quorum`); later inputs are refused. C must be one connected group of the
   roster edges between its members, else the session aborts before any share is asked for (unmasking
   leaves only the masks between counted roster neighbours on the total, so it would reveal each group's
   sum: a counted party whose mask partners all dropped after it masked, in clear). It tells each party which of its
   neighbours are in C, which dropped ones' keys it needs (they reported and have a counted roster neighbour),
   and how large C is (a message of O(k), not O(n)). Each party answers once, for each such neighbour: the
   share of its **self-mask seed** if the neighbour is counted, the share of its **recovery key** if it is
   named as dropped, nothing for the others (never both kinds for one party: a request naming a party both
   counted and dropped is refused, an honest coordinator derives every request from the one set C, and a
   party answers one request only).
5. **Release**: from t shares the coordinator rebuilds b of every counted party and m of every dropped one
   with a counted neighbour (each checked against its commitment), recovers the dropped party's pair seeds
   with its counted neighbours from its pads, removes the self masks and the masks between counted and
   dropped neighbours (masks between counted neighbours cancel), and decodes. The release names who was
   counted and restates the loss for them.

Why pads and not a Diffie-Hellman agreement per neighbour (SecAgg's key pairs): the pair seed must be
rebuilt from either end's Shamir-shared secret alone when that end drops. With DH that costs each party one
X25519 exchange per neighbour and session (about 50 us each: most of a party's work at k = 30). Here the
halves travel on the party-to-party links, which are already mutually authenticated and encrypted (the
Shamir shares on them need that), and the pad ties s_ij to m_i with one PRF call. What the coalition sees is
what it saw with DH: an honest counted party's m is never rebuilt (its shares go out only for an uncounted
party, and fewer than t neighbours collude), so PRF(m, .) is pseudorandom to it and each pad hides its pair
seed; a dropped party's m gives exactly its pair seeds, as its DH private key did.

A dropped party's state cannot reveal its input: if its masked input arrives late (or is kept by a
curious coordinator), the coordinator can rebuild its recovery key and strip every pairwise mask, but its
self mask b stays: honest parties hand out shares of b only for counted parties, and fewer than t
neighbours collude (:mod:`mpcdp.protocol.graph`, S1). Without the masked input, shares of a dropped
party's key say nothing about its input at all.

Ledgers: a party is charged when its masked input leaves (round 3). A session that aborts after that (below
the quorum at the cut, counted parties not linked, too few shares) leaves the parties that had masked
charged (their input left, under masks); the others, and the coordinator, free their reservations.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .. import ring
from ..dp.loss import PrivacyLoss
from ..prg import SEED_BYTES, Prg, RandomSource, system_random
from ..sharing import bind_fields, bound_field, fold_masks
from . import shamir
from .coordinator import Release
from .errors import ProtocolError, Status
from .graph import DEFAULT_CORRECTNESS_BITS, DEFAULT_SECURITY_BITS, GraphPlan, SharingGraph, plan_graph
from .party import PartyPolicy, PartySession
from .quorum import Quorum, survivor_loss
from .spec import QuerySpec
from .statistics import codec_for

KEY_BYTES = 32  # a recovery key, a half of a pair seed, a pad, a commitment (a mask's AES key: its first 16 bytes)


def pair_seed(session_id: bytes, a: str, half_a: bytes, b: str, half_b: bytes) -> bytes:
    """The pair seed of parties ``a`` and ``b`` from their halves (in either order: the same seed): SHA-256 of
    the session, both names and both halves, each length-bound."""
    if a > b:
        a, half_a, b, half_b = b, half_b, a, half_a
    fields = bind_fields(b"mpcdp/v1/many/pair", session_id, a.encode(), b.encode(), half_a, half_b)
    return hashlib.sha256(fields).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    """a XOR b, byte strings of one length (many pads at once)."""
    return np.bitwise_xor(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)).tobytes()


def _recovery_pads(key: bytes, session_id: bytes, party: str, others: Sequence[str]) -> bytes:
    """PRF(key, session, party, other) for each of ``others`` (keyed BLAKE2b, RFC 7693: a PRF and MAC by design,
    a third of an HMAC-SHA256's cost here), concatenated."""
    prefix = bind_fields(b"mpcdp/v1/many/pad", session_id, party.encode())
    return b"".join(
        [hashlib.blake2b(prefix + bound_field(o.encode()), key=key, digest_size=KEY_BYTES).digest() for o in others]
    )


def commitment(secret: bytes, session_id: bytes, party: str, what: str) -> bytes:
    """What a party's report commits to for its recovery key (``what`` = "key") or self-mask seed ("seed")."""
    fields = bind_fields(b"mpcdp/v1/many/commit", what.encode(), session_id, party.encode(), secret)
    return hashlib.sha256(fields).digest()


def self_purpose(party: str) -> str:
    return f"self-mask/{party}"


@dataclass(frozen=True)
class MaskedQuery:
    """A spec, the quorum that must finish, and the graph both imply (the same on every node).

    ``batch``: more statistics asked in the same session (the batch API): same parties, colluders, session id
    and deadline. One key exchange serves them all; each party masks the concatenation of its contributions,
    and the release gives one :class:`Release` per statistic. The charge composes their losses.
    """

    spec: QuerySpec
    quorum: Quorum
    security_bits: float = DEFAULT_SECURITY_BITS
    correctness_bits: float = DEFAULT_CORRECTNESS_BITS
    batch: tuple[QuerySpec, ...] = ()

    def __post_init__(self) -> None:
        for other in self.batch:
            same = (other.parties, other.colluders, other.session_id, other.deadline)
            if same != (self.spec.parties, self.spec.colluders, self.spec.session_id, self.spec.deadline):
                raise ValueError("the statistics of a batch share parties, colluders, session id and deadline")

    @classmethod
    def of(cls, spec: QuerySpec, quorum: int | None = None, batch: tuple[QuerySpec, ...] = ()) -> MaskedQuery:
        """``quorum`` parties must finish (default: all of them); ``batch``: more statistics in the session."""
        return cls(spec, Quorum(spec, spec.n_parties if quorum is None else quorum), batch=tuple(batch))

    @property
    def specs(self) -> tuple[QuerySpec, ...]:
        return (self.spec, *self.batch)

    @cached_property
    def plan(self) -> GraphPlan:
        n = self.spec.n_parties
        return plan_graph(n, self.spec.colluders, self.quorum.dropouts, self.security_bits, self.correctness_bits)

    @cached_property
    def charge(self) -> PrivacyLoss | None:
        """What each party's ledger is charged: the loss if only the quorum is counted (composed over a batch)."""
        total: PrivacyLoss | None = None
        for spec in self.specs:
            loss = Quorum(spec, self.quorum.size).charge()
            if loss is not None:
                total = loss if total is None else total + loss
        return total

    @cached_property
    def graph(self) -> SharingGraph:
        return SharingGraph(self.spec.parties, self.plan.degree, self.spec.session_id)

    def point(self, party: str) -> int:
        """The party's Shamir evaluation point."""
        return self.graph.index(party) + 1

    def sign(self, me: str, other: str) -> bool:
        """True when ``me`` subtracts the mask it shares with ``other`` (it comes later in the party list)."""
        return self.graph.index(me) > self.graph.index(other)


# -- messages -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyShares:
    """Round 1, party to neighbour: the sender's half of their pair seed, and the recipient's shares of the
    sender's recovery key and self-mask seed."""

    session_id: bytes
    sender: str
    recipient: str
    half: bytes = field(repr=False)
    key_share: bytes = field(repr=False)
    seed_share: bytes = field(repr=False)


@dataclass(frozen=True)
class Report:
    """Round 2, party to coordinator: commitments to its recovery key and self-mask seed, the neighbours whose
    halves it holds, and per such neighbour the pad that its recovery key turns into their pair seed
    (``pads``: KEY_BYTES each, in the order of ``heard``)."""

    session_id: bytes
    party: str
    key_commitment: bytes
    seed_commitment: bytes
    heard: tuple[str, ...]
    pads: bytes = field(repr=False)

    def pad(self, other: str) -> bytes:
        i = self.heard.index(other)
        return self.pads[KEY_BYTES * i : KEY_BYTES * (i + 1)]


def pair_seed_from_key(key: bytes, report: Report, other: str) -> bytes:
    """The pair seed of ``report.party`` and ``other`` (a neighbour it heard) from its recovery key and pad."""
    return _xor(report.pad(other), _recovery_pads(key, report.session_id, report.party, (other,)))


@dataclass(frozen=True)
class Roster:
    """Coordinator to party: the neighbours to mask with (both reported, each heard the other)."""

    session_id: bytes
    party: str
    neighbours: tuple[str, ...]


@dataclass(frozen=True)
class MaskedInput:
    session_id: bytes
    party: str
    vector: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Unmask:
    """Coordinator to each rostered party: which of its neighbours are counted, which dropped ones' recovery keys
    are needed (they reported and have a counted roster neighbour), and how many parties are in all (so the party
    checks the quorum). Per party, so its size follows the degree, not n."""

    session_id: bytes
    party: str
    counted: tuple[str, ...]
    total: int
    dropped: tuple[str, ...]


@dataclass(frozen=True)
class Reveal:
    """Round 4, party to coordinator: per neighbour, a self-mask share (counted) or a key share (dropped and
    needed)."""

    session_id: bytes
    party: str
    seed_shares: dict[str, bytes] = field(repr=False)
    key_shares: dict[str, bytes] = field(repr=False)


# -- the party ------------------------------------------------------------------------------------------


class MaskedParty:
    """One party's state in one many-party session.

    proposed --accept--> accepted --key_shares--> keyed --masked_input--> masked --reveal--> revealed
        \\--refuse--> refused                      (keyed --reveal--> revealed: it helps, uncounted)
    """

    def __init__(
        self,
        me: str,
        query: MaskedQuery,
        records: Any,
        policy: PartyPolicy | None = None,
        rng: RandomSource | None = None,
        batch_records: tuple[Any, ...] = (),
    ):
        self.me = me
        self.query = query
        self.spec = query.spec
        self._rng = rng or system_random("masked-party")
        if len(batch_records) != len(query.batch):
            raise ValueError(f"a batch of {len(query.specs)} statistics needs {len(query.batch)} batch_records")
        self._policy = policy or PartyPolicy()
        self._inner = [
            PartySession(me, spec, r, self._policy, rng=self._rng)
            for spec, r in zip(query.specs, (records, *batch_records), strict=True)
        ]
        self.state = "proposed"
        self.masked = False  # its masked input was made (its node charges its ledger before it leaves)
        self._key = b""  # the recovery key m
        self._seed = b""  # the self-mask seed b
        self._halves: dict[str, bytes] = {}  # neighbour -> this party's half of their pair seed
        self._keys: dict[str, bytes] = {}  # neighbour -> its half, once its keys arrived
        self._pair_seeds: dict[str, bytes] = {}
        self._shares: dict[str, tuple[bytes, bytes]] = {}  # neighbour -> (key share, seed share) it gave us

    @property
    def neighbours(self) -> tuple[str, ...]:
        return self.query.graph.neighbours(self.me)

    @cached_property
    def _near(self) -> frozenset[str]:
        return frozenset(self.neighbours)

    def _require(self, *states: str) -> None:
        if self.state not in states:
            raise ProtocolError(
                Status.FAILED_PRECONDITION, f"session is {self.state}; this step needs it to be {' or '.join(states)}"
            )

    def accept(self, now: float = -math.inf) -> None:
        """Policy, deadline and local data (as a full-mesh party), and the worst-case charge
        (:attr:`MaskedQuery.charge`) against the policy's per-query maximum. The privacy ledger is the node's
        (``services.many_party``: it reserves that charge after this, charges it before the masked input leaves,
        frees it otherwise)."""
        self._require("proposed")
        try:
            for inner in self._inner:
                inner.accept(now)
            charge = self.query.charge
            if charge is not None and charge.epsilon > self._policy.max_epsilon:
                raise ProtocolError(
                    Status.PERMISSION_DENIED,
                    f"epsilon {float(charge.epsilon):.4g} if only the quorum of {self.query.quorum.size} "
                    f"is counted exceeds this party's per-query maximum {self._policy.max_epsilon:g}",
                )
        except ProtocolError:
            for inner in self._inner:  # nothing encoded stays behind a refusal
                if inner.state == "accepted":
                    inner.abort()
            self.state = "refused"
            raise
        self.state = "accepted"

    def key_shares(self) -> list[KeyShares]:
        """Round 1: a recovery key, a self-mask seed and a half pair seed per neighbour; the key and seed are
        shared among the neighbours (every share in one vectorised split), one message to each."""
        self._require("accepted")
        plan, sid, near = self.query.plan, self.spec.session_id, self.neighbours
        self._key = self._rng.bytes(KEY_BYTES)
        self._seed = self._rng.bytes(SEED_BYTES)
        halves = self._rng.bytes(KEY_BYTES * len(near))
        self._halves = {p: halves[KEY_BYTES * i : KEY_BYTES * (i + 1)] for i, p in enumerate(near)}
        shares = shamir.split([self._key, self._seed], [self.query.point(p) for p in near], plan.threshold, self._rng)
        keys, seeds = shamir.share_bytes(shares[0]), shamir.share_bytes(shares[1])
        self.state = "keyed"
        return [KeyShares(sid, self.me, p, self._halves[p], k, b) for p, k, b in zip(near, keys, seeds, strict=True)]

    def receive_keys(self, msg: KeyShares) -> None:
        self._require("accepted", "keyed")
        if msg.session_id != self.spec.session_id:
            raise ProtocolError(Status.NOT_FOUND, "keys for another session")
        if msg.recipient != self.me:
            raise ProtocolError(Status.INVALID_ARGUMENT, f"keys addressed to {msg.recipient!r}, not to {self.me!r}")
        if msg.sender not in self._near:
            raise ProtocolError(Status.PERMISSION_DENIED, f"{msg.sender!r} is not a neighbour in this session")
        if msg.sender in self._keys:
            raise ProtocolError(Status.ALREADY_EXISTS, f"duplicate keys from {msg.sender!r}")
        # the shares are checked now: forwarded at the reveal, a bad one would be blamed on this party
        if len(msg.half) != KEY_BYTES or not (shamir.is_share(msg.key_share) and shamir.is_share(msg.seed_share)):
            raise ProtocolError(
                Status.INVALID_ARGUMENT,
                f"{msg.sender} sent a malformed key message (a {KEY_BYTES}-byte half and two shares of "
                f"{shamir.SHARE_BYTES} bytes of field elements)",
            )
        self._keys[msg.sender] = msg.half
        self._shares[msg.sender] = (msg.key_share, msg.seed_share)

    @property
    def missing(self) -> list[str]:
        """Neighbours whose keys have not arrived."""
        return [p for p in self.neighbours if p not in self._keys] if self.keys_missing else []

    @property
    def keys_missing(self) -> int:
        """How many neighbours' keys have not arrived (without listing them)."""
        return len(self._near) - len(self._keys)

    def _pair_seed(self, other: str) -> bytes:
        seed = self._pair_seeds.get(other)
        if seed is None:
            sid = self.spec.session_id
            seed = self._pair_seeds[other] = pair_seed(sid, self.me, self._halves[other], other, self._keys[other])
        return seed

    def report(self) -> Report:
        """Round 2: commitments, the neighbours heard, and the pad of each one's pair seed under the key."""
        self._require("keyed")
        sid, me, key = self.spec.session_id, self.me, self._key
        heard = tuple(p for p in self.neighbours if p in self._keys)
        pads = _xor(b"".join([self._pair_seed(p) for p in heard]), _recovery_pads(key, sid, me, heard))
        return Report(sid, me, commitment(key, sid, me, "key"), commitment(self._seed, sid, me, "seed"), heard, pads)

    def masked_input(self, roster: Roster, now: float = -math.inf) -> MaskedInput:
        """Round 3: this party's contribution under its self mask and one mask per roster neighbour."""
        self._require("keyed")
        if roster.session_id != self.spec.session_id or roster.party != self.me:
            raise ProtocolError(Status.INVALID_ARGUMENT, "a roster for another session or party")
        unknown = [p for p in roster.neighbours if p not in self._keys]
        if unknown or len(set(roster.neighbours)) != len(roster.neighbours):
            raise ProtocolError(Status.INVALID_ARGUMENT, "the roster names neighbours whose keys this party lacks")
        if now > self.spec.deadline:
            raise ProtocolError(Status.DEADLINE_EXCEEDED, "the session's deadline has passed")
        if len(roster.neighbours) < self.query.plan.threshold:  # as SecAgg+: too few masks to hide behind
            raise ProtocolError(
                Status.FAILED_PRECONDITION,
                f"only {len(roster.neighbours)} neighbours are left to mask with, fewer than the threshold "
                f"{self.query.plan.threshold}: the input is not sent",
            )
        sid = self.spec.session_id
        y = np.concatenate([inner.contribution() for inner in self._inner])
        add: list[bytes] = []
        subtract: list[bytes] = []
        for p in roster.neighbours:
            (subtract if self.query.sign(self.me, p) else add).append(self._pair_seed(p))
        fold_masks(y, add, subtract, add_streams=[Prg(self._seed, sid, self_purpose(self.me))])
        self.masked = True
        self.state = "masked"
        return MaskedInput(sid, self.me, y)

    def reveal(self, unmask: Unmask) -> Reveal:
        """Round 4, once: a self-mask share for each counted neighbour, a key share for each dropped one whose key
        is needed (none for a party that is counted, nor for one that need not be unmasked: need to know)."""
        self._require("keyed", "masked")
        if unmask.session_id != self.spec.session_id or unmask.party != self.me:
            raise ProtocolError(Status.NOT_FOUND, "an unmask request for another session or party")
        counted, dropped = set(unmask.counted), set(unmask.dropped)
        if (
            not counted | dropped <= self._near
            or (len(counted), len(dropped)) != (len(unmask.counted), len(unmask.dropped))
            or counted & dropped
        ):
            raise ProtocolError(
                Status.INVALID_ARGUMENT, "the unmask request names non-neighbours, or a party both counted and dropped"
            )
        self.query.quorum.check(unmask.total, "are counted")
        seeds = {p: s for p, (_, s) in self._shares.items() if p in counted}
        keys = {p: k for p, (k, _) in self._shares.items() if p in dropped}
        self._shares.clear()  # answered once: a second request (another counted set) gets nothing
        self._wipe()  # nothing it holds is needed any more
        self.state = "revealed"
        return Reveal(self.spec.session_id, self.me, seeds, keys)

    def _wipe(self) -> None:
        """Forget the session's secrets (its key, seed, halves, pair seeds, the neighbours' halves and shares)."""
        self._key = self._seed = b""
        for held in (self._halves, self._keys, self._pair_seeds, self._shares):
            held.clear()

    def abort(self) -> None:
        self._wipe()
        for inner in self._inner:
            if inner.state != "aborted":
                inner.abort()
        self.state = "aborted"


# -- the coordinator ------------------------------------------------------------------------------------


class MaskedCoordinator:
    """The coordinator's state in one many-party session; it never sees an input or an unmasked vector.

    accepting --rosters--> collecting-inputs --unmask--> unmasking --release--> released (any: aborted)
    """

    def __init__(self, query: MaskedQuery):
        self.query = query
        self.spec = query.spec
        self.state = "accepting"
        self._lengths = [codec_for(spec).length for spec in query.specs]
        self._length = sum(self._lengths)
        self.releases: list[Release] = []  # one per statistic of the batch, once released
        self._accepted: set[str] = set()
        self.refused: dict[str, str] = {}
        self._reports: dict[str, Report] = {}
        self._rosters: dict[str, tuple[str, ...]] = {}
        self._maskers: set[str] = set()  # rostered parties with enough roster neighbours to mask
        self._inputs: set[str] = set()  # parties whose masked input is folded into the running total
        self._total = ring.zeros(self._length)
        self._counted: tuple[str, ...] = ()
        self._counted_set: frozenset[str] = frozenset()
        self._parties = frozenset(self.spec.parties)
        self._revealed: set[str] = set()
        self._short = 0  # secrets (counted seeds, needed keys) with fewer than t shares so far
        self._seed_shares: dict[str, dict[int, bytes]] = {}
        self._key_shares: dict[str, dict[int, bytes]] = {}
        self.abort_reason = ""

    def _require(self, *states: str) -> None:
        if self.state not in states:
            raise ProtocolError(Status.FAILED_PRECONDITION, f"session is {self.state}, not {' or '.join(states)}")

    def _check(self, session_id: bytes, party: str) -> None:
        if session_id != self.spec.session_id:
            raise ProtocolError(Status.NOT_FOUND, "message for another session")
        if party not in self._parties:
            raise ProtocolError(Status.PERMISSION_DENIED, f"{party!r} is not a party of this session")

    def record_response(self, party: str, accepted: bool, reason: str = "") -> None:
        """A party's answer; a refusal counts against the quorum like a dropout."""
        self._require("accepting")
        self._check(self.spec.session_id, party)
        if accepted:
            self._accepted.add(party)
        else:
            self.refused[party] = reason

    def record_report(self, report: Report) -> None:
        self._require("accepting")
        self._check(report.session_id, report.party)
        if report.party not in self._accepted:
            raise ProtocolError(Status.FAILED_PRECONDITION, f"{report.party} reports without having accepted")
        if report.party in self._reports:
            raise ProtocolError(Status.ALREADY_EXISTS, f"duplicate report from {report.party!r}")
        heard = set(report.heard)
        if (
            (len(report.key_commitment), len(report.seed_commitment)) != (KEY_BYTES, KEY_BYTES)
            or len(report.pads) != KEY_BYTES * len(report.heard)
            or len(heard) != len(report.heard)
            or not heard <= set(self.query.graph.neighbours(report.party))
        ):
            raise ProtocolError(Status.INVALID_ARGUMENT, f"{report.party}'s report is malformed")
        self._reports[report.party] = report

    def rosters(self) -> list[Roster]:
        """Close round 2: each reporting party's neighbours that reported and heard it (and it them)."""
        self._require("accepting")
        self.query.quorum.check(len(self._reports), "exchanged keys with their neighbours")
        heard = {p: set(r.heard) for p, r in self._reports.items()}
        for p in self.spec.parties:
            if p in heard:
                self._rosters[p] = tuple(q for q in self._reports[p].heard if q in heard and p in heard[q])
        t = self.query.plan.threshold
        self._maskers = {p for p, r in self._rosters.items() if len(r) >= t}  # the others will not mask
        self.state = "collecting-inputs"
        sid = self.spec.session_id
        return [Roster(sid, p, r) for p, r in self._rosters.items()]

    def receive_masked(self, msg: MaskedInput) -> None:
        self._require("collecting-inputs")
        self._check(msg.session_id, msg.party)
        if msg.party not in self._maskers:
            raise ProtocolError(
                Status.FAILED_PRECONDITION,
                f"{msg.party} has no roster in this session, or one too short to mask with (below the threshold)",
            )
        if msg.party in self._inputs:
            raise ProtocolError(Status.ALREADY_EXISTS, f"duplicate masked input from {msg.party!r}")
        vec = np.asarray(msg.vector)
        if vec.size != self._length or vec.dtype.kind not in "iu":
            raise ProtocolError(Status.INVALID_ARGUMENT, f"masked inputs are {self._length} ring elements")
        np.add(self._total, ring.as_ring(vec.reshape(-1)), out=self._total)  # memory stays O(length)
        self._inputs.add(msg.party)

    @property
    def waiting_for(self) -> list[str]:
        """Parties of the current round that have not answered yet (accepting: those that accepted and have not
        reported their keys; a party that has not even accepted is not waited for)."""
        if self.state == "accepting":
            return [p for p in self.spec.parties if p in self._accepted and p not in self._reports]
        if self.state == "collecting-inputs":
            return [p for p in self._maskers if p not in self._inputs]
        if self.state == "unmasking":
            return list(self.missing_shares())
        return []

    @property
    def waiting_count(self) -> int:
        """How many :attr:`waiting_for` names, counted in O(1) (a driver asks after every message)."""
        if self.state == "accepting":
            return len(self._accepted) - len(self._reports)
        if self.state == "collecting-inputs":
            return len(self._maskers) - len(self._inputs)  # inputs come only from maskers
        if self.state == "unmasking":
            return self._short
        return 0

    @property
    def unrevealed(self) -> list[str]:
        """Rostered parties that have not revealed their shares (yet)."""
        return [p for p in self._rosters if p not in self._revealed]

    @property
    def unrevealed_count(self) -> int:
        return len(self._rosters) - len(self._revealed)

    def unmask(self) -> list[Unmask]:
        """Close round 3: the masked inputs in hand are counted, later ones refused; one request per rostered
        party, naming its counted neighbours and the dropped ones whose recovery keys are needed."""
        self._require("collecting-inputs")
        self.query.quorum.check(len(self._inputs), "sent a masked input")
        self._check_linked()
        self._counted = tuple(p for p in self.spec.parties if p in self._inputs)
        self._counted_set = frozenset(self._counted)
        self._short = len(self._counted) + len(self._needed_keys)
        self.state = "unmasking"
        sid, graph, total, needed = self.spec.session_id, self.query.graph, len(self._counted), self._needed_keys
        return [
            Unmask(
                sid,
                p,
                tuple(q for q in graph.neighbours(p) if q in self._counted_set),
                total,
                tuple(q for q in graph.neighbours(p) if q in needed),
            )
            for p in self._rosters
        ]

    def _check_linked(self) -> None:
        """Refuse to unmask unless the parties whose inputs arrived are one connected group of the roster edges
        between them. Unmasking removes every self mask of a counted party and every mask it shares with a
        dropped one, so what stays on the total is the masks between counted roster neighbours: the
        coordinator would learn the sum of each connected group, and the input of a counted party whose mask
        partners all dropped after it masked (the review's H1). No share has been asked for yet, so aborting
        here reveals nothing. O(n k)."""
        inputs = self._inputs
        groups = 0
        seen: set[str] = set()
        for start in inputs:
            if start in seen:
                continue
            groups += 1
            seen.add(start)
            stack = [start]
            while stack:
                for q in self._rosters[stack.pop()]:
                    if q in inputs and q not in seen:
                        seen.add(q)
                        stack.append(q)
        if groups > 1:
            alone = sorted(p for p in inputs if not any(q in inputs for q in self._rosters[p]))
            which = f"; {', '.join(alone[:5])} masked only with parties that dropped" if alone else ""
            raise ProtocolError(
                Status.ABORTED,
                f"the counted parties' masks do not link them all (they fall into {groups} groups{which}): "
                "unmasking would reveal each group's sum; session aborted, no result released",
            )

    @property
    def counted(self) -> tuple[str, ...]:
        return self._counted

    @property
    def rostered(self) -> tuple[str, ...]:
        """The parties that got a roster (they reported): whom the unmask request goes to."""
        return tuple(self._rosters)

    @cached_property
    def _needed_keys(self) -> frozenset[str]:
        """Dropped parties (reported, not counted) with a counted roster neighbour: their keys must be rebuilt."""
        counted = set(self._counted)
        return frozenset(d for d in self._rosters if d not in counted and any(u in counted for u in self._rosters[d]))

    def receive_reveal(self, msg: Reveal) -> None:
        self._require("unmasking")
        self._check(msg.session_id, msg.party)
        if msg.party in self._revealed:
            raise ProtocolError(Status.ALREADY_EXISTS, f"a second reveal from {msg.party!r}")
        counted = self._counted_set
        graph = self.query.graph
        if not set(msg.seed_shares) <= counted or not set(msg.key_shares) <= self._needed_keys:
            raise ProtocolError(Status.INVALID_ARGUMENT, f"{msg.party} revealed the wrong kind of share")
        near = set(graph.neighbours(msg.party))
        if not (set(msg.seed_shares) | set(msg.key_shares)) <= near:
            raise ProtocolError(Status.INVALID_ARGUMENT, f"{msg.party} revealed shares of non-neighbours")
        try:
            shamir.share_values([*msg.seed_shares.values(), *msg.key_shares.values()])
        except ValueError:
            raise ProtocolError(Status.INVALID_ARGUMENT, f"{msg.party} revealed a malformed share") from None
        self._revealed.add(msg.party)
        x, t = self.query.point(msg.party), self.query.plan.threshold
        for p, s in msg.seed_shares.items():
            got = self._seed_shares.setdefault(p, {})
            got[x] = s
            if len(got) == t:
                self._short -= 1
        needed = self._needed_keys
        for p, s in msg.key_shares.items():
            got = self._key_shares.setdefault(p, {})
            got[x] = s
            if p in needed and len(got) == t:
                self._short -= 1

    def missing_shares(self) -> dict[str, int]:
        """Party -> how many more shares are needed to rebuild what must be removed for it."""
        t = self.query.plan.threshold
        out = {}
        for p in self._counted:
            have = len(self._seed_shares.get(p, {}))
            if have < t:
                out[p] = t - have
        for d in self._needed_keys:
            have = len(self._key_shares.get(d, {}))
            if have < t:
                out[d] = t - have
        return out

    def release(self, arrays: bool = False) -> Release:
        """Rebuild, unmask, decode; the release names the counted parties and their restated loss."""
        self._require("unmasking")
        missing = self.missing_shares()
        if missing:
            raise ProtocolError(
                Status.FAILED_PRECONDITION,
                f"too few shares to unmask {len(missing)} parties ({', '.join(sorted(missing)[:5])}...)",
            )
        sid = self.spec.session_id
        total, self._total = self._total, ring.zeros(0)
        add: list[bytes] = []
        subtract: list[bytes] = []
        seeds = self._rebuild(self._seed_shares, self._counted, "seed")
        self_masks = [Prg(seed, sid, self_purpose(p)) for p, seed in zip(self._counted, seeds, strict=True)]
        counted = self._counted_set
        needed = sorted(self._needed_keys)
        for d, key in zip(needed, self._rebuild(self._key_shares, needed, "key"), strict=True):
            report = self._reports[d]
            for u in self._rosters[d]:
                if u in counted:  # u added +-mask(u, d): take it out again
                    seed = pair_seed_from_key(key, report, u)
                    (add if self.query.sign(u, d) else subtract).append(seed)
        fold_masks(total, add, subtract, subtract_streams=self_masks)  # every mask removed in one pass
        self.state = "released"
        dropped = [p for p in self.spec.parties if p not in counted]
        extras = {
            "counted": len(self._counted),
            "dropped": dropped,
            "quorum": self.query.quorum.size,
            "degree": self.query.plan.degree,
            "threshold": self.query.plan.threshold,
        }
        start = 0
        for spec, length in zip(self.query.specs, self._lengths, strict=True):
            loss = survivor_loss(spec, len(self._counted))
            epsilon, delta = loss.epsilon_delta(spec.delta) if loss is not None else (None, spec.delta)
            self.releases.append(
                Release(
                    statistic=spec.statistic,
                    result=codec_for(spec).decode(total[start : start + length], arrays=arrays),
                    parties=self._counted,
                    epsilon=epsilon,
                    delta=delta,
                    mechanism=None if spec.is_exact else spec.mechanism,
                    extras=dict(extras),
                    loss=loss,  # restated for the counted parties
                )
            )
            start += length
        return self.releases[0]

    def _rebuild(self, shares: dict[str, dict[int, bytes]], parties: Sequence[str], what: str) -> list[bytes]:
        """The ``what`` ("seed" or "key") of each of ``parties`` from its first t shares, all in one vectorised
        interpolation, each checked against the commitment in its report (shares of the right form that do not
        fit together: a party sent garbage). A party whose first t shares fail and who has more in hand is tried
        again around one bad share (:meth:`_rebuild_around_one`); if that fails too, the release aborts."""
        t = self.query.plan.threshold
        secrets = self._committed(shares, parties, [sorted(shares[p])[:t] for p in parties], what)
        out = []
        for p, secret in zip(parties, secrets, strict=True):
            out.append(secret if secret is not None else self._rebuild_around_one(shares[p], p, what))
        return out

    def _rebuild_around_one(self, shares: dict[int, bytes], party: str, what: str) -> bytes:
        """``party``'s secret from t of its first t + 1 shares, each one left out in turn (t + 1 rebuilds in one
        pass): one inconsistent share does not abort a release that has more than t shares in hand."""
        t = self.query.plan.threshold
        points = sorted(shares)[: t + 1]
        if len(points) > t:
            subsets = [points[:i] + points[i + 1 :] for i in range(t + 1)]
            for secret in self._committed({party: shares}, [party] * len(subsets), subsets, what):
                if secret is not None:
                    return secret
        name = "recovery key" if what == "key" else "self-mask seed"
        raise ProtocolError(Status.INVALID_ARGUMENT, f"the shares of {party}'s {name} are inconsistent")

    def _committed(
        self, shares: Mapping[str, Mapping[int, bytes]], parties: Sequence[str], points: Sequence[list[int]], what: str
    ) -> list[bytes | None]:
        """The secret of ``parties[i]`` from its shares at ``points[i]`` (t each), all in one vectorised
        interpolation; None where it does not match the commitment in the party's report."""
        t, sid = self.query.plan.threshold, self.spec.session_id
        if not parties:
            return []
        values = shamir.share_values([shares[p][x] for p, xs in zip(parties, points, strict=True) for x in xs])
        values = values.reshape(len(parties), t, shamir.CHUNKS)
        out: list[bytes | None] = []
        for p, secret in zip(
            parties, shamir.secrets_from(shamir.rebuild_many(np.asarray(points), values)), strict=True
        ):
            report = self._reports[p]
            committed = report.key_commitment if what == "key" else report.seed_commitment
            out.append(secret if secret is not None and commitment(secret, sid, p, what) == committed else None)
        return out

    def abort(self, reason: str) -> None:
        self._total = ring.zeros(0)
        self._seed_shares.clear()
        self._key_shares.clear()
        self.abort_reason = reason
        self.state = "aborted"


# -- an in-memory driver --------------------------------------------------------------------------------

PHASES = ("accept", "keys", "report", "mask", "reveal", "late")
"""Where a party can stop in :func:`run_masked_in_memory`: after accepting (silent); half-way through
sending its keys; before reporting; before its masked input; after its masked input (no reveal); or its
masked input arrives after the counted set was fixed (it is refused; the party still reveals)."""


@dataclass
class MaskedRun:
    release: Release
    parties: dict[str, MaskedParty]
    coordinator: MaskedCoordinator
    late: dict[str, MaskedInput] = field(default_factory=dict)  # masked inputs that came after the cut


def run_masked_in_memory(
    query: MaskedQuery,
    data: Mapping[str, Any],
    drop: Mapping[str, str] | None = None,
    rng: Callable[[str], RandomSource] | None = None,
    policies: Mapping[str, PartyPolicy] | None = None,
    batch_data: Mapping[str, tuple[Any, ...]] | None = None,
) -> MaskedRun:
    """Run ``query`` over ``data`` with the parties in ``drop`` stopping at the named phase (see PHASES);
    ``batch_data``: each party's records for the batch's further statistics."""
    drop = dict(drop or {})
    bad = {p: ph for p, ph in drop.items() if ph not in PHASES or p not in query.spec.parties}
    if bad:
        raise ValueError(f"unknown parties or phases in drop: {bad}")
    spec = query.spec
    coordinator = MaskedCoordinator(query)
    parties = {
        p: MaskedParty(
            p,
            query,
            data[p],
            (policies or {}).get(p, PartyPolicy(allow_exact=True)),
            rng=rng(p) if rng else None,
            batch_records=tuple((batch_data or {}).get(p, ())),
        )
        for p in spec.parties
    }

    def alive(p: str, phase: str) -> bool:
        """Whether ``p`` still acts at ``phase``."""
        return p not in drop or PHASES.index(drop[p]) > PHASES.index(phase)

    try:
        for p, party in parties.items():
            party.accept()
            coordinator.record_response(p, True)
        for p, party in parties.items():
            if not alive(p, "accept"):
                continue
            outbox = party.key_shares()
            if drop.get(p) == "keys":
                outbox = outbox[: len(outbox) // 2]
            for msg in outbox:
                if alive(msg.recipient, "accept"):
                    parties[msg.recipient].receive_keys(msg)
        for p, party in parties.items():
            if alive(p, "report") and party.state == "keyed":
                coordinator.record_report(party.report())
        late: dict[str, MaskedInput] = {}
        for roster in coordinator.rosters():
            if alive(roster.party, "mask") and len(roster.neighbours) >= query.plan.threshold:
                masked = parties[roster.party].masked_input(roster)
                if drop.get(roster.party) == "late":
                    late[roster.party] = masked
                else:
                    coordinator.receive_masked(masked)
        for unmask in coordinator.unmask():
            party = parties[unmask.party]
            if alive(unmask.party, "reveal") and party.state in ("keyed", "masked"):
                coordinator.receive_reveal(party.reveal(unmask))
        return MaskedRun(coordinator.release(), parties, coordinator, late)
    except ProtocolError as exc:
        for party in parties.values():
            party.abort()
        coordinator.abort(str(exc))
        raise
