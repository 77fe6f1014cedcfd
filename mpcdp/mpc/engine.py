"""One party's engine: replicated shares over Z_2^64 and over bits, as sans-I/O round generators.

A shared value is a uint64 array of shape ``(k, ...)``: the k shares of the
:class:`~mpcdp.mpc.access.Access` structure this party holds, in its
``held`` order. Arithmetic values are shared additively mod 2^64; bit
vectors are shared by XOR, 64 bits to a word, so one word op handles a whole
64-bit number (shifts and NOT are local).

Every interactive operation is a generator: it yields the words it sends
this round as ``{recipient: uint64 array}``, is resumed with the words it
received as ``{sender: uint64 array}``, and returns its result; operations
compose with ``yield from``. Nothing here does I/O, so a transport (or
:mod:`mpcdp.mpc.memory`) only moves these dictionaries.

Operations and their rounds (n parties, t = (n - 1) // 2):

=====================  ======  ===========================================
``setup``              1       the lowest holder of each share index deals its 32-byte key
``inputs``/``reshare`` 1       additive (per-party) values -> replicated sharing
``mul``/``and_``       1       local cross terms, then ``reshare``
``open``               1       each share's owner broadcasts its additive part
``random_bits``        0       pseudo-random secret sharing from the index keys
=====================  ======  ===========================================

Resharing a party's additive value z (its input, or its sum of cross terms
in a product): for each held index except one (its ``residual`` index) the
party's part is drawn from that index's key, so all of the index's holders
can draw it too; the residual part is z minus the others, sent to the
residual index's other holders: ``n - t - 1`` words per party per value
(1, 2, 3 for n = 3, 5, 7). A coalition C of t parties never holds C's own
key, and every honest party's residual is masked by its part at index C (or
is the share C itself, which C never receives), so all C receives is
pseudo-random: security reduces to the PRG (AES-128-CTR), with no
statistical masking parameter. This is pseudo-random secret sharing in
replicated form (Cramer, Damgård and Ishai, TCC 2005); the three-party case
is Araki, Furukawa, Lindell, Nof and Ohara (CCS 2016). Semi-honest security
against t < n/2 colluders: a deviating party can change the output (no
verification), as in MPyC's default mode.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar, cast

import numpy as np

from ..prg import SEED_BYTES, Prg, RandomSource, system_random
from ..protocol.errors import ProtocolError, Status
from .access import access_for

T = TypeVar("T")
Outbox = dict[int, np.ndarray]
Inbox = dict[int, np.ndarray]
Program = Generator[Outbox, Inbox, T]

U64 = np.uint64
ONES = U64(0xFFFFFFFFFFFFFFFF)


def words_of_seeds(seeds: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(seeds), dtype="<u8").astype(U64)


def received(inbox: Inbox, sender: int, size: int) -> np.ndarray:
    """The ``size`` words ``sender`` owed us this round, or a protocol error naming what is wrong."""
    words = inbox.get(sender)
    if words is None:
        raise ProtocolError(Status.INVALID_ARGUMENT, f"no message from party {sender} in this round")
    if words.size != size:
        raise ProtocolError(
            Status.INVALID_ARGUMENT, f"party {sender} sent {words.size} words where {size} were expected"
        )
    return words


class Stream:
    """A Prg read in growing chunks: the same words as ``prg.uint64`` calls, without a cipher call per read."""

    MAX_CHUNK = 1 << 14

    def __init__(self, prg: Prg):
        self._prg = prg
        self._buf = np.empty(0, dtype=U64)
        self._at = 0
        self._chunk = 256

    def take(self, size: int) -> np.ndarray:
        if self._at + size > self._buf.size:
            self._chunk = min(2 * self._chunk, self.MAX_CHUNK)
            self._buf = np.concatenate([self._buf[self._at :], self._prg.uint64(max(size, self._chunk))])
            self._at = 0
        out = self._buf[self._at : self._at + size]
        self._at += size
        return out


class Engine:
    """Party ``me`` of ``n``: its shares' bookkeeping, keys and the round generators."""

    def __init__(self, n: int, me: int, session_id: bytes = b"", rng: RandomSource | None = None):
        self.access = access_for(n)
        if not 0 <= me < n:
            raise ValueError(f"party index must be in [0, {n}), got {me!r}")
        self.n, self.t, self.me = n, self.access.t, me
        self.session_id = bytes(session_id)
        self.held = self.access.held(me)
        self.k = len(self.held)
        self._rng = rng or system_random("mpc")
        self._pos = {idx: pos for pos, idx in enumerate(self.held)}
        self._owned = list(self.access.owned(me))
        self._owners = sorted({self.access.owner(k) for k in range(len(self.access.indices))})
        pairs = [(a, b) for a, bs in self.access.products[me] for b in bs]  # may be none (n = 4, party 3)
        self._left = np.array([a for a, _ in pairs], dtype=np.intp)
        self._right = np.array([b for _, b in pairs], dtype=np.intp)
        self._residual = [self.access.residual(p) for p in range(n)]
        # inputs(): row r of held index pos is the part contributed by holders(idx)[r]; it is drawn
        # from the index key, except in the contributor's residual index (then it arrives by message)
        rows = [self.access.holders(idx) for idx in self.held]
        self._my_row = np.array([r.index(me) for r in rows])
        self._drawn = np.array([[self._residual[p] != idx for p in r] for idx, r in zip(self.held, rows, strict=True)])
        slots = [
            (p, pos, r)
            for pos, (idx, row) in enumerate(zip(self.held, rows, strict=True))
            for r, p in enumerate(row)
            if self._residual[p] != idx
        ]
        self._slot_party, self._slot_pos, self._slot_row = (np.array(v) for v in zip(*slots, strict=True))
        self._residual_pos = {p: self._pos[self._residual[p]] for p in range(n) if self._residual[p] in self._pos}
        self._reshare: dict[int, Stream] = {}
        self._random: dict[int, Stream] = {}
        self.round = 0  # rounds run so far in this session, across all its programs
        self.openings = 0  # opening rounds this party has sent its part of: after one, a peer may know a release

    @property
    def ready(self) -> bool:
        """True once the keys are dealt: later programs of the same session skip the set-up round."""
        return bool(self._reshare)

    # -- setup ------------------------------------------------------------------------

    def setup(self) -> Program[None]:
        """Round 0: agree one key per share index among its holders (dealt by the lowest holder)."""
        dealt: dict[int, bytes] = {}
        out: dict[int, list[bytes]] = {}
        for idx in self.held:
            holders = self.access.holders(idx)
            if holders[0] == self.me:
                dealt[idx] = self._rng.bytes(SEED_BYTES)
                for h in holders[1:]:
                    out.setdefault(h, []).append(dealt[idx])
        inbox = yield {h: words_of_seeds(s) for h, s in out.items()}
        expected: dict[int, list[int]] = {}
        for idx in self.held:
            dealer = self.access.holders(idx)[0]
            if dealer != self.me:
                expected.setdefault(dealer, []).append(idx)
        for dealer, idxs in expected.items():
            raw = received(inbox, dealer, len(idxs) * SEED_BYTES // 8).astype("<u8").tobytes()
            for j, idx in enumerate(idxs):
                dealt[idx] = raw[j * SEED_BYTES : (j + 1) * SEED_BYTES]
        for idx, key in dealt.items():
            self._reshare[idx] = Stream(Prg(key, self.session_id, "mpc/reshare"))
            self._random[idx] = Stream(Prg(key, self.session_id, "mpc/random"))

    # -- local operations ---------------------------------------------------------------

    def constant(self, value: object) -> np.ndarray:
        """A public value (ring element or bit word) as a sharing: it sits in share index 0."""
        value = np.asarray(value, dtype=U64)
        out = np.zeros((self.k,) + value.shape, dtype=U64)
        if 0 in self._pos:
            out[self._pos[0]] = value
        return out

    def additive(self, x: np.ndarray, xor: bool = False) -> np.ndarray:
        """This party's part of an n-out-of-n sharing of x: the sum (or XOR) of the shares it answers for."""
        if not self._owned:
            return np.zeros(x.shape[1:], dtype=U64)
        parts = x[self._owned]
        out: np.ndarray = np.bitwise_xor.reduce(parts, axis=0) if xor else parts.sum(axis=0, dtype=U64)
        return out

    # -- interactive operations ---------------------------------------------------------

    def inputs(self, z: Any, xor: bool = False, combine: bool = False) -> Program[list[np.ndarray] | np.ndarray]:
        """Replicated sharings of every party's additive value z_p (one round).

        Returns the n sharings [z_0], ..., [z_{n-1}], or their sum (XOR) when
        ``combine``: the entry of values the parties hold as additive shares
        (mpcdp.sharing), and the second half of every multiplication.
        """
        z = np.ascontiguousarray(z, dtype=U64)
        size, m = z.size, self.n - self.t
        draws = np.stack([self._reshare[idx].take(size * m).reshape(m, size) for idx in self.held])
        draws[~self._drawn] = 0  # the residual slots are filled from messages below
        mine = draws[np.arange(self.k), self._my_row]
        if xor:
            residual = z.reshape(-1) ^ np.bitwise_xor.reduce(mine, axis=0)
        else:
            residual = z.reshape(-1) - mine.sum(axis=0, dtype=U64)
        inbox = yield {h: residual for h in self.access.holders(self._residual[self.me]) if h != self.me}
        residuals = {p: residual if p == self.me else received(inbox, p, size) for p in self._residual_pos}
        if combine:
            out = np.bitwise_xor.reduce(draws, axis=1) if xor else draws.sum(axis=1, dtype=U64)
            for p, pos in self._residual_pos.items():
                out[pos] = out[pos] ^ residuals[p] if xor else out[pos] + residuals[p]
            combined: np.ndarray = out.reshape((self.k,) + z.shape)
            return combined
        out = np.zeros((self.n, self.k, size), dtype=U64)
        out[self._slot_party, self._slot_pos] = draws[self._slot_pos, self._slot_row]
        for p, pos in self._residual_pos.items():
            out[p, pos] = residuals[p]
        return [s.reshape((self.k,) + z.shape) for s in out]

    def reshare(self, z: Any, xor: bool = False) -> Program[np.ndarray]:
        """A replicated sharing of the sum (XOR) of all parties' additive values z_p (one round)."""
        return cast(np.ndarray, (yield from self.inputs(z, xor=xor, combine=True)))

    def _cross(self, x: np.ndarray, y: np.ndarray, xor: bool) -> np.ndarray:
        """This party's sum of the cross terms x_T * y_U assigned to it (an additive share of x * y)."""
        x, y = x.reshape(self.k, -1), y.reshape(self.k, -1)
        if xor:
            terms: np.ndarray = np.bitwise_xor.reduce(x[self._left] & y[self._right], axis=0)
            return terms
        products: np.ndarray = (x[self._left] * y[self._right]).sum(axis=0, dtype=U64)
        return products

    def mul(self, x: np.ndarray, y: np.ndarray) -> Program[np.ndarray]:
        """[x * y] mod 2^64, elementwise (one round)."""
        return (yield from self.reshare(self._cross(x, y, xor=False).reshape(x.shape[1:])))

    def and_(self, x: np.ndarray, y: np.ndarray) -> Program[np.ndarray]:
        """[x & y], bitwise on every word (one round)."""
        return (yield from self.reshare(self._cross(x, y, xor=True).reshape(x.shape[1:]), xor=True))

    def and_many(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> Program[list[np.ndarray]]:
        """Several ANDs of different shapes in the same round."""
        if len(pairs) == 1:
            return [(yield from self.and_(*pairs[0]))]
        xs = [x.reshape(self.k, -1) for x, _ in pairs]
        ys = [y.reshape(self.k, -1) for _, y in pairs]
        both = yield from self.and_(np.concatenate(xs, axis=1), np.concatenate(ys, axis=1))
        cuts = np.cumsum([x.shape[1] for x in xs])[:-1]
        return [part.reshape(x.shape) for part, (x, _) in zip(np.split(both, cuts, axis=1), pairs, strict=True)]

    def open(self, x: np.ndarray, xor: bool = False) -> Program[np.ndarray]:
        """Reveal x to every party (one round; each share's owner sends its additive part to the others)."""
        mine = self.additive(x, xor)
        flat = mine.reshape(-1)
        self.openings += 1
        inbox = yield {p: flat for p in range(self.n) if p != self.me} if self._owned else {}
        total = flat.copy()
        for p in self._owners:
            if p != self.me:
                part = received(inbox, p, flat.size)
                if xor:
                    np.bitwise_xor(total, part, out=total)
                else:
                    np.add(total, part, out=total)
        return total.reshape(mine.shape)

    def random_bits(self, shape: tuple[int, ...] | int) -> np.ndarray:
        """Uniformly random shared bit words (64 random bits each), no communication."""
        size = int(np.prod(shape))
        return np.stack([self._random[idx].take(size).reshape(shape) for idx in self.held])
