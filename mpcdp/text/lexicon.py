"""Look up a batch's word pieces in a vocabulary with array operations, exactly.

A word of at most 16 ASCII characters, lower-cased, is packed into two 64-bit integers (its bytes,
zero-padded: distinct words give distinct keys, so there are no false matches); the vocabulary's packed
words sit in an open-addressing hash table with linear probing, probed for all pieces at once. Contraction
pieces are looked up as the words they stand for, and "ca", "wo", "sha", "ai" before "n't" as "can",
"will", "shall", "is" (:mod:`mpcdp.text.tokenize`); the few other pieces (non-ASCII or longer words,
texts with URLs) through the vocabulary's dictionary.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from .spans import CLITIC_WORDS, Batch
from .tokenize import CONTRACTION_HOSTS

Int64s = npt.NDArray[np.int64]
Keys = npt.NDArray[np.uint64]
PACKED = 16  # characters in a packed key
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd multipliers spreading the keys over the table
_MIX2 = np.uint64(0xC2B2AE3D27D4EB4F)


def pack(words: list[str]) -> tuple[Keys, Keys]:
    """The packed keys of ASCII words of at most 16 characters (as stored; no lower-casing)."""
    padded = b"".join(word.encode("ascii").ljust(PACKED, b"\0") for word in words)
    packed = np.frombuffer(padded, dtype="<u8").reshape(len(words), 2)
    return packed[:, 0].astype(np.uint64), packed[:, 1].astype(np.uint64)


def _slots(first: Keys, second: Keys, bits: int) -> Keys:
    mixed: Keys = first * _MIX + second * _MIX2
    spread: Keys = (mixed ^ (mixed >> np.uint64(29))) * _MIX
    return spread >> np.uint64(64 - bits)


class PackedTable:
    """An exact set of packed keys with a value each; ``find`` probes for many keys at once."""

    def __init__(self, first: Keys, second: Keys, values: Int64s):
        self.bits = max(4, int(np.ceil(np.log2(max(first.size, 1) * 4))))  # load factor at most 1/4
        size = 1 << self.bits
        self.first = np.zeros(size, dtype=np.uint64)  # an empty slot holds key 0 (no word packs to 0)
        self.second = np.zeros(size, dtype=np.uint64)
        self.values = np.full(size, -1, dtype=np.int64)
        home = _slots(first, second, self.bits).astype(np.int64)
        pending, probe, self.max_probe = np.arange(first.size), 0, 0
        while pending.size:  # linear probing, every key of a round trying its next slot
            slot = (home[pending] + probe) & (size - 1)
            free = self.first[slot] == 0
            taken, winner = np.unique(slot[free], return_index=True)
            placed = pending[free][winner]
            self.first[taken], self.second[taken], self.values[taken] = first[placed], second[placed], values[placed]
            self.max_probe = probe
            pending = np.setdiff1d(pending, placed, assume_unique=True)
            probe += 1

    def find(self, first: Keys, second: Keys) -> Int64s:
        """The value of each key, or -1."""
        out = np.full(first.size, -1, dtype=np.int64)
        home = _slots(first, second, self.bits).astype(np.int64)
        pending = np.arange(first.size)
        for probe in range(self.max_probe + 1):
            slot = (home[pending] + probe) & (self.first.size - 1)
            stored = self.first[slot]
            hit = (stored == first[pending]) & (self.second[slot] == second[pending])
            out[pending[hit]] = self.values[slot[hit]]
            pending = pending[~hit & (stored != 0)]  # an empty slot ends the search
            if not pending.size:
                break
        return out


class Lexicon:
    """A vocabulary (word -> index, aliases included) ready for :meth:`ids` over a :class:`Batch`."""

    def __init__(self, index: Mapping[str, int]):
        self.index = index
        packable = [w for w in index if w.isascii() and 0 < len(w) <= PACKED]
        first, second = pack(packable)
        self.table = PackedTable(first, second, np.array([index[w] for w in packable], dtype=np.int64))
        self.clitic_ids = np.array([-1] + [index.get(w, -1) for w in CLITIC_WORDS], dtype=np.int64)
        hosts = sorted(CONTRACTION_HOSTS, key=lambda h: int(pack([h])[0][0]))
        self.host_keys = pack(hosts)[0]  # sorted, for searchsorted
        self.host_ids = np.array([index.get(CONTRACTION_HOSTS[h], -1) for h in hosts], dtype=np.int64)

    def ids(self, batch: Batch) -> Int64s:
        """The vocabulary index of every piece of ``batch`` (-1 out of vocabulary)."""
        ids = np.full(batch.start.size, -1, dtype=np.int64)
        words = np.flatnonzero(batch.clitic == 0)
        if batch.literal.size:
            words = np.setdiff1d(words, batch.literal, assume_unique=True)
        first, second = packed_keys(batch, words)
        ids[words] = self.table.find(first, second)
        hosts = np.flatnonzero(batch.host[words] & (second == 0))
        if hosts.size:
            which = np.searchsorted(self.host_keys, first[hosts])
            which = np.minimum(which, self.host_keys.size - 1)
            match = self.host_keys[which] == first[hosts]
            ids[words[hosts[match]]] = self.host_ids[which[match]]
        clitics = np.flatnonzero(batch.clitic != 0)
        ids[clitics] = self.clitic_ids[np.maximum(batch.clitic[clitics], 0)]
        if batch.literal.size:
            get = self.index.get
            ids[batch.literal] = np.fromiter((get(k, -1) if k else -1 for k in batch.literal_keys), dtype=np.int64)
        return ids


_ONES = np.uint64(0x0101010101010101)
_ABOVE_AT = _ONES * np.uint64(0x3F)  # byte + 0x3F has its top bit set from "A" (0x41) up
_ABOVE_Z = _ONES * np.uint64(0x25)  # byte + 0x25 has its top bit set from "[" (0x5B) up
_TOP = _ONES * np.uint64(0x80)
_PREFIX = np.array([(1 << (8 * i)) - 1 for i in range(8)] + [(1 << 64) - 1], dtype=np.uint64)


def lower_packed(keys: Keys) -> Keys:
    """Eight ASCII bytes per key lower-cased at once (no byte reaches 0x80, so no carry crosses bytes)."""
    capitals = (keys + _ABOVE_AT) & ~(keys + _ABOVE_Z) & _TOP
    return keys | (capitals >> np.uint64(2))


def packed_keys(batch: Batch, words: Int64s) -> tuple[Keys, Keys]:
    """The lower-cased packed keys of the pieces ``words`` of ``batch`` (ASCII, at most 16 characters)."""
    raw = np.zeros(batch.codes.size + 16, dtype=np.uint8)
    raw[: batch.codes.size] = batch.codes  # the pieces are ASCII: no code point is cut
    windows = np.ndarray((batch.codes.size + 8,), dtype="<u8", buffer=raw, strides=(1,))  # 8 bytes from each
    start, length = batch.start[words], batch.end[words] - batch.start[words]
    first = lower_packed(windows[start] & _PREFIX[np.minimum(length, 8)])
    second = np.zeros(words.size, dtype=np.uint64)
    longer = np.flatnonzero(length > 8)
    if longer.size:
        second[longer] = lower_packed(windows[start[longer] + 8] & _PREFIX[length[longer] - 8])
    return first, second
