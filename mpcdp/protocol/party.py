"""The party's side of the peer protocol, as a state machine with no I/O.

    proposed --accept--> accepted --make_shares--> shared --partial_sum--> done
                            \\--masked_partial (keyed sharing)----------------> done
        \\--refuse--> refused          any state --abort--> aborted

A party checks the spec against its own policy (its node checks its own
privacy ledger: it never trusts the coordinator's accounting), encodes its
clipped records into one ring vector, adds its noise piece, splits the result
into n shares, and sums the shares it receives. Received shares are folded
into a running sum at once, so the session never holds another party's share
by itself, let alone its input. Under keyed sharing it sends no share at all:
its partial sum is its encoded aggregate, its noise piece and one mask per peer
expanded from their pair key (:meth:`PartySession.masked_partial`). Every
refusal raises a :class:`ProtocolError` and leaves the session unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import ring
from ..dp.rational import exact
from ..prg import SEED_BYTES, Prg, RandomSource, fold_streams, system_random
from ..sharing import mask_keys, mask_pairwise, pair_stream, share, share_seeded
from .errors import ProtocolError, Status
from .messages import PartialSum, ShareMessage
from .noise import noise_piece
from .spec import Batch, QuerySpec, Sharing

DEFAULT_MAX_TIMEOUT = 300.0  # seconds: the longest session deadline a party accepts unless its policy says


@dataclass(frozen=True)
class PartyPolicy:
    """What a party agrees to answer, and how it takes part: the one policy type (a federation file's
    ``[policy]`` table is read into it), for secure sums (:meth:`refusal`) and for comparisons under MPC
    (:func:`mpcdp.mpc.queries.refusal`). The safe default refuses exact releases."""

    statistics: tuple[str, ...] | None = None  # None: every registered statistic
    allow_exact: bool = False  # exact (non-DP) secure sums
    allow_exact_nonlinear: bool = False  # exact comparisons under MPC (max, min, argmax, threshold, second price)
    # per statistic (each query; each statistic of a batch): a batch of k costs up to k times it, at once, as k
    # concurrent queries would; the ledger's budget bounds the total either way
    max_epsilon: float = 10.0
    min_colluders: int = 1
    columns: tuple[str, ...] = field(default=())  # empty: any column
    max_length: int = 1 << 21  # ring elements per vector: bounds the memory a query may cost
    max_timeout: float = DEFAULT_MAX_TIMEOUT  # the latest session deadline accepted, in seconds from now
    one_round: bool = True  # share (or send the keyed partial sum) on accepting, without waiting for the others

    def __post_init__(self) -> None:
        if not isinstance(self.max_timeout, (int, float)) or not 0 < self.max_timeout < math.inf:
            raise ValueError(f"max_timeout must be a positive number of seconds, got {self.max_timeout!r}")
        if self.statistics is not None:
            object.__setattr__(self, "statistics", tuple(self.statistics))
        object.__setattr__(self, "columns", tuple(self.columns))

    def allows(self, statistic: str, column: str) -> bool:
        """Whether this party answers ``statistic`` on ``column`` (any query kind)."""
        return (self.statistics is None or statistic in self.statistics) and (
            not self.columns or column in self.columns
        )

    def not_allowed(self, statistic: str, column: str) -> str:
        """Why :meth:`allows` says no."""
        if self.statistics is not None and statistic not in self.statistics:
            return f"statistic {statistic!r} is not allowed by this party's policy"
        return f"column {column!r} is not offered by this party"

    def refusal(self, spec: QuerySpec) -> str | None:
        """Why this policy refuses the secure sum ``spec``, or None if it accepts."""
        if not self.allows(spec.statistic, spec.column):
            return self.not_allowed(spec.statistic, spec.column)
        if spec.is_exact and not self.allow_exact:
            return "exact (non-DP) releases are not allowed by this party's policy; set an epsilon"
        if spec.loss is not None and spec.loss.epsilon > exact(self.max_epsilon, "max_epsilon"):
            return f"epsilon {spec.epsilon:g} exceeds this party's per-query maximum {self.max_epsilon:g}"
        length = spec.codec.length
        if length > self.max_length:
            return f"the query needs vectors of {length} elements; this party allows at most {self.max_length}"
        if spec.colluders < self.min_colluders:
            return f"the query assumes {spec.colluders} colluders; this party requires at least {self.min_colluders}"
        if spec.sharing is Sharing.KEYED and not self.one_round:
            return (
                "this party's policy says one_round = false: it sends nothing before every party accepted, "
                "and a keyed session's partial sum is its answer; propose a seeded session"
            )
        return None


def seed_purpose(sender: str, recipient: str) -> str:
    """The PRG domain of the seeded share from ``sender`` to ``recipient``."""
    return f"share/{sender}/{recipient}"


class PartySession:
    """One party's state in one session."""

    def __init__(
        self,
        me: str,
        spec: QuerySpec,
        records: Any,
        policy: PartyPolicy = PartyPolicy(),
        rng: RandomSource | None = None,
        batch: tuple[QuerySpec, ...] = (),
        batch_records: tuple[Any, ...] = (),
        read: Callable[[int], Any] | None = None,
    ):
        """``batch``: more statistics asked in the same session (:class:`mpcdp.protocol.spec.Batch`), with this
        party's records for each (``batch_records``): checked one by one, their encoded aggregates (each with
        its own noise piece) concatenated into the one vector this session shares or masks, their losses
        composed (:attr:`Batch.loss`: what the node reserves and charges, once). ``read``: instead of ``records``
        and ``batch_records``, what gives the records of statistic ``i`` of the batch, called one statistic at a
        time by :meth:`read`, only once every statistic passed the checks that need no data (:meth:`check`)."""
        if me not in spec.parties:
            raise ProtocolError(Status.PERMISSION_DENIED, f"{me!r} is not on this session's party list")
        self.me = me
        self.spec = spec
        self.policy = policy
        self.state = "proposed"
        self._records = records
        self._rng = rng or system_random("party")
        self.batch = Batch((spec, *batch))  # SpecError unless the statistics share one session
        if read is None and len(batch_records) != len(batch):
            raise ValueError(f"a batch of {len(self.batch)} statistics needs {len(batch)} batch_records")
        self._batch_records: tuple[Any, ...] | None = tuple(batch_records)
        if read is None:
            records_of = (records, *batch_records)
            read = records_of.__getitem__
        self._read: Callable[[int], Any] | None = read
        self._checked = False
        self._sum: np.ndarray | None = None  # the running sum of the shares held, made by the first one
        self._received: set[str] = set()
        self._local: np.ndarray | None = None  # the encoded aggregate, between accept and make_shares

    @property
    def length(self) -> int:
        return self.batch.length

    @property
    def peers(self) -> list[str]:
        return [p for p in self.spec.parties if p != self.me]

    @property
    def missing(self) -> list[str]:
        """Peers whose share has not arrived yet."""
        return [p for p in self.peers if p not in self._received]

    def _require(self, *states: str) -> None:
        if self.state not in states:
            raise ProtocolError(
                Status.FAILED_PRECONDITION, f"session is {self.state}; this step needs it to be {' or '.join(states)}"
            )

    def _check_deadline(self, now: float) -> None:
        if now > self.spec.deadline:
            raise ProtocolError(Status.DEADLINE_EXCEEDED, "the session's deadline has passed")

    def check(self, now: float = -math.inf) -> None:
        """The checks that need no data, for every statistic of the batch: the deadline, the policy, the batch's
        vector length against the policy's ``max_length``; refuse (ProtocolError, state refused) by raising."""
        self._require("proposed")
        self._check_deadline(now)
        for i, spec in enumerate(self.batch.specs):
            reason = self.policy.refusal(spec)
            if reason is not None:
                self.state = "refused"
                raise ProtocolError(Status.PERMISSION_DENIED, self.batch.label(i) + reason)
        if self.length > self.policy.max_length:
            self.state = "refused"
            raise ProtocolError(
                Status.PERMISSION_DENIED,
                f"the batch needs vectors of {self.length} elements; "
                f"this party allows at most {self.policy.max_length}",
            )
        self._checked = True

    def read(self) -> None:
        """Read and encode every statistic's records, one statistic at a time into its segment (after
        :meth:`check`; touches nothing but this session, so it may run in another thread). Bad local data
        (ValueError, or whatever the reader raises) is raised, the session left as it was, its records dropped."""
        self._require("proposed")
        if not self._checked:
            raise ProtocolError(Status.FAILED_PRECONDITION, "check the session before reading its records")
        try:
            self._local = self._encode()  # fail now, not mid-round, on bad local data
        finally:
            self._records = self._batch_records = self._read = None  # the encoded aggregate is all it needs

    def accept(self, now: float = -math.inf) -> None:
        """Check the spec against policy and deadline (:meth:`check`, then :meth:`read` unless done already); refuse
        by raising. The privacy ledger is the node's (``services.party_node``: it reserves the batch's loss before
        this, charges it before the partial sum leaves, frees it on abort)."""
        if not self._checked:
            self.check(now)
        if self._local is None:
            self.read()
        self._require("proposed")
        self.state = "accepted"

    def _encode(self) -> np.ndarray:
        """The encoded aggregate: of a batch, every statistic's in one vector (its segment :attr:`Batch.slices`),
        read and encoded one statistic at a time (its records dropped before the next is read)."""
        read = self._read
        if read is None:
            raise ProtocolError(Status.FAILED_PRECONDITION, "this session's records were read already")
        if len(self.batch) == 1:
            return self.spec.codec.encode(read(0))
        local = ring.zeros(self.length)
        for i, (spec, part) in enumerate(zip(self.batch.specs, self.batch.slices, strict=True)):
            local[part] = spec.codec.encode(read(i))
        return local

    def make_shares(self) -> list[ShareMessage]:
        """Encode records, add this party's noise piece, share, and return one message per peer.

        Fail closed: whenever the spec is not exact the party draws its own
        noise piece (:func:`mpcdp.protocol.noise.noise_piece`) from its random
        source, so no caller can obtain an exact sum under a DP label. The
        share this party keeps is folded into its running sum; the encoded
        aggregate (made once, by :meth:`accept`) is dropped afterwards.
        """
        if self.spec.sharing is Sharing.KEYED:
            raise ProtocolError(Status.FAILED_PRECONDITION, "a keyed session has no shares: see masked_partial")
        local = self.contribution()
        sid = self.spec.session_id
        out = []
        if self.spec.sharing is Sharing.SEEDED:
            purposes = [seed_purpose(self.me, p) for p in self.peers]
            # the encoded aggregate becomes the correction where it is: no copy of the vector
            seeded = share_seeded(local, self.spec.n_parties, sid, purposes, rng=self._rng, in_place=True)
            kept = seeded.correction
            out = [ShareMessage(sid, self.me, p, seed=s) for p, s in zip(self.peers, seeded.seeds, strict=True)]
        else:
            shares = share(local, self.spec.n_parties, rng=self._rng)
            kept = shares[-1]
            out = [ShareMessage(sid, self.me, p, vector=v) for p, v in zip(self.peers, shares[:-1], strict=True)]
        if self._sum is None:
            self._sum = kept  # the first share held: the running sum starts as it
        else:
            np.add(self._sum, kept, out=self._sum)
        del local, kept
        self._records = None
        self.state = "shared"
        return out

    def contribution(self) -> np.ndarray:
        """The encoded aggregate plus this party's noise piece (drawn whenever the spec is not exact: fail
        closed), handed over once: to be split into shares here, or masked by :mod:`mpcdp.protocol.masked`."""
        self._require("accepted")
        local, self._local = self._local, None
        assert local is not None  # accepted: accept() encoded it
        if not self.batch.is_exact and not local.flags.writeable:
            local = local.copy()
        for spec, part in zip(self.batch.specs, self.batch.slices, strict=True):  # each statistic its own piece
            if not spec.is_exact:
                segment = local[part]
                np.add(segment, ring.as_ring(noise_piece(spec, self._rng)), out=segment)  # local is ours: in place
        self.state = "shared"
        return local

    def receive_share(self, msg: ShareMessage, now: float = -math.inf) -> None:
        """Fold one peer's share into the running sum, after checking who sent what."""
        self._require("accepted", "shared")
        self._check_deadline(now)
        if msg.session_id != self.spec.session_id:
            raise ProtocolError(Status.NOT_FOUND, "share for another session")
        if msg.recipient != self.me:
            raise ProtocolError(Status.INVALID_ARGUMENT, f"share addressed to {msg.recipient!r}, not to {self.me!r}")
        if msg.sender not in self.peers:
            raise ProtocolError(Status.PERMISSION_DENIED, f"{msg.sender!r} is not a peer in this session")
        if msg.sender in self._received:
            raise ProtocolError(Status.ALREADY_EXISTS, f"duplicate share from {msg.sender!r}")
        if self.spec.sharing is Sharing.KEYED:
            raise ProtocolError(Status.INVALID_ARGUMENT, "a keyed session carries no shares")
        if self.spec.sharing is Sharing.SEEDED:
            if msg.seed is None or len(msg.seed) != SEED_BYTES:
                raise ProtocolError(Status.INVALID_ARGUMENT, f"seeded sessions carry {SEED_BYTES}-byte seeds")
            Prg(msg.seed, self.spec.session_id, seed_purpose(msg.sender, self.me)).add_into(self._running())
        else:
            if msg.vector is None or np.asarray(msg.vector).size != self.length:
                raise ProtocolError(Status.INVALID_ARGUMENT, f"share vectors have length {self.length}")
            np.add(self._running(), ring.as_ring(np.asarray(msg.vector).reshape(-1)), out=self._sum)
        self._received.add(msg.sender)

    def _running(self) -> np.ndarray:
        if self._sum is None:  # a peer's share came before this party made its own
            self._sum = ring.zeros(self.length)
        return self._sum

    def partial_sum(self, now: float = -math.inf) -> PartialSum:
        """The sum of the shares this party holds, once it holds all n."""
        self._require("shared")
        self._check_deadline(now)
        if self.missing:
            raise ProtocolError(Status.FAILED_PRECONDITION, f"still waiting for shares from {', '.join(self.missing)}")
        self.state = "done"
        total, self._sum = self._sum, None  # handed over, not copied: the session holds nothing more
        assert total is not None  # shared: make_shares started it
        return PartialSum(self.spec.session_id, self.me, total)

    def masked_partial(self, keys: Mapping[str, bytes], now: float = -math.inf) -> PartialSum:
        """Keyed sharing: this party's partial sum at once, with no share sent or received: its encoded aggregate
        plus its noise piece (:meth:`contribution`) plus one mask per peer expanded from their 32-byte pair key
        ``keys[peer]`` and the digest of the session's whole batch of specs (:attr:`mpcdp.protocol.spec.Batch.digest`,
        :func:`mpcdp.sharing.mask_pairwise`: one stream over the concatenated vector). It leaves whatever
        the peers do next, so the node charges it before it leaves, even if the session then aborts.
        :meth:`masked_stream` gives the same partial sum masked slice by slice, as it is sent.

        What it reveals: on its own, or summed with the partial sums of any strict subset of the parties, it is
        uniformly random to anyone who lacks a pair key crossing that subset's boundary; the coordinator learns
        the sum of a set of parties only if it holds every such key (colluding parties hold theirs). A peer
        that refuses and colludes with the coordinator therefore yields the noisy sum of the parties that
        answered, which the noise pieces are sized for (``colluders`` withheld): what it learns today from a peer
        that accepts and then withholds its partial sum."""
        stream = self.masked_stream(keys, now)
        return PartialSum(self.spec.session_id, self.me, stream.upto(stream.length))

    def masked_stream(self, keys: Mapping[str, bytes], now: float = -math.inf) -> MaskedStream:
        """:meth:`masked_partial` masked as it is sent: every check and the contribution now, the masks of each
        slice when :meth:`MaskedStream.upto` reaches it."""
        if self.spec.sharing is not Sharing.KEYED:
            raise ProtocolError(Status.FAILED_PRECONDITION, f"a {self.spec.sharing} session exchanges shares")
        self._require("accepted")
        self._check_deadline(now)
        if set(keys) != set(self.peers):
            raise ProtocolError(Status.FAILED_PRECONDITION, "a keyed partial sum needs one pair key per peer")
        local = self.contribution()
        if not local.flags.writeable or not local.flags.c_contiguous:
            local = np.ascontiguousarray(local).copy()
        self.state = "done"
        return MaskedStream(local.reshape(-1), self.me, dict(keys), self.batch.digest)  # a batch: one stream

    def abort(self) -> None:
        """Drop everything; the session can make no further progress."""
        self._records = self._batch_records = self._read = self._local = self._sum = None
        self.state = "aborted"


class MaskedStream:
    """A keyed partial sum (:meth:`PartySession.masked_stream`) masked in place, in order, slice by slice: a party
    sends each slice as soon as it is masked, while it masks the next. :meth:`upto` masks every element below
    ``end`` not masked yet with each pair's stream continued from where the last slice ended, so the elements
    are those :func:`mpcdp.sharing.mask_pairwise` (``me``, ``keys``, ``binding``) gives the whole vector, which
    masks it when the first call asks for all of it.

    ``vector`` is the partial sum's buffer: only its first ``masked`` elements may be read (the rest is still
    the party's unmasked contribution); :meth:`upto` returns the masked prefix."""

    def __init__(self, vector: np.ndarray, me: str, keys: Mapping[str, bytes], binding: bytes):
        self.vector = vector
        self.masked = 0
        self._pairs = (me, keys, binding)
        self._streams: tuple[list[Prg], list[Prg]] | None = None  # made at the first slice short of the whole

    @property
    def length(self) -> int:
        return int(self.vector.size)

    def upto(self, end: int) -> np.ndarray:
        """Mask the elements below ``end`` (at most the length) not masked yet; the masked prefix."""
        end = min(end, self.length)
        if end > self.masked:
            if self.masked == 0 and end == self.length:  # the whole at once (a short vector's faster path)
                mask_pairwise(self.vector, *self._pairs)
            else:
                if self._streams is None:
                    add, subtract = mask_keys(*self._pairs)
                    self._streams = [pair_stream(k) for k in add], [pair_stream(k) for k in subtract]
                fold_streams(self.vector[self.masked : end], *self._streams)
            self.masked = end
        return self.vector[: self.masked]
