"""Additive secret sharing over Z_{2^64}.

A secret vector x is split into n shares that are uniformly random subject to
summing to x mod 2^64. Any n - 1 of them are jointly uniform and independent
of x (perfect secrecy against n - 1 colluders); all n reconstruct it.

The *seeded* form replaces n - 1 of the share vectors by 32-byte PRG seeds
(expanded with :class:`mpcdp.prg.Prg`), so a party sends n - 1 seeds instead of
n - 1 vectors and keeps the one full vector, the correction, for itself. Its
secrecy is computational (AES) rather than perfect. This is the standard
seed-compression of secure aggregation (Bonawitz et al., CCS 2017).

The *keyed* form (:func:`mask_pairwise`) sends nothing between parties per session: each pair of parties
holds a secret pair key agreed once over their authenticated link, and each party adds to its own vector,
for every peer, the AES-CTR stream keyed by a PRF of their pair key over the session (the digest of its whole
spec, session id and deadline included) and the pair (added by the party whose name sorts first, subtracted by
the other). The streams are folded in by :func:`fold_masks`, which the many-party protocol uses too.
Every mask appears in exactly two vectors with opposite signs, so the sum over all parties is the sum of the
secrets, while any one masked vector, and the sum of any strict subset of them, is uniformly random to whoever
lacks a pair key crossing the subset's boundary (pairwise masking, Bonawitz et al. CCS 2017, without its
dropout recovery).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from numpy.typing import ArrayLike

from . import ring
from .prg import KEY_BYTES as AES_KEY_BYTES
from .prg import SEED_BYTES, Prg, RandomSource, fold_streams, system_random


def _check_parties(n: int) -> None:
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"secret sharing needs at least 2 parties, got {n!r}")


def share(secret: ArrayLike, n: int, rng: RandomSource | None = None) -> list[np.ndarray]:
    """Split ``secret`` (ring vector) into n additive shares; share i goes to party i."""
    _check_parties(n)
    x = ring.as_ring(secret)
    rng = rng or system_random("share")
    masks = [rng.uint64(x.size).reshape(x.shape) for _ in range(n - 1)]
    last = x.copy()
    for m in masks:
        np.subtract(last, m, out=last)
    return masks + [last]


def reconstruct(shares: Iterable[ArrayLike]) -> np.ndarray:
    """The secret: the sum of all shares mod 2^64."""
    return ring.total(shares)


def expand_seed(seed: bytes, length: int, session_id: bytes, purpose: str) -> np.ndarray:
    """The share vector a seed stands for, bound to the session and the purpose."""
    return Prg(seed, session_id, purpose).uint64(length)


@dataclass(frozen=True)
class SeededShares:
    """n - 1 seeds plus one full correction vector; together they sum to the secret.

    ``seeds[i]`` expands (with ``purposes[i]``) to the share of recipient i;
    ``correction`` is the share of the last recipient (the owner, in the peer
    protocol, who then never sends a vector at all).
    """

    seeds: tuple[bytes, ...] = field(repr=False)  # kept out of reprs, logs and tracebacks
    purposes: tuple[str, ...]
    correction: np.ndarray = field(repr=False)

    def expand(self, session_id: bytes) -> list[np.ndarray]:
        """All n share vectors (for inspection; :meth:`reconstruct` avoids the copies)."""
        n = self.correction.size
        seeded = [expand_seed(s, n, session_id, p) for s, p in zip(self.seeds, self.purposes, strict=True)]
        return [*seeded, self.correction]

    def reconstruct(self, session_id: bytes) -> np.ndarray:
        """The secret, summing every seed's expansion straight into one vector (one pass)."""
        return fold_streams(self.correction.copy(), add=self._prgs(session_id))

    def _prgs(self, session_id: bytes) -> list[Prg]:
        return [Prg(s, session_id, p) for s, p in zip(self.seeds, self.purposes, strict=True)]


def share_seeded(
    secret: ArrayLike,
    n: int,
    session_id: bytes,
    purposes: list[str] | None = None,
    rng: RandomSource | None = None,
    *,
    in_place: bool = False,
) -> SeededShares:
    """Split ``secret`` into n - 1 seeded shares and one full correction share.

    ``purposes`` names each seeded share's PRG domain (default ``share/<i>``);
    the peer protocol uses ``share/<sender>/<recipient>`` so that no two
    expansions in a session share a key stream even if a seed repeated.
    ``in_place``: ``secret`` (a writable uint64 array the caller gives up) becomes the correction, so a
    megabyte vector is not copied; every seed's expansion is subtracted from it in one pass.
    """
    _check_parties(n)
    x = ring.as_ring(secret).reshape(-1)
    purposes = list(purposes) if purposes is not None else [f"share/{i}" for i in range(n - 1)]
    if len(purposes) != n - 1:
        raise ValueError(f"need {n - 1} purposes for {n} shares, got {len(purposes)}")
    rng = rng or system_random("seed")
    seeds = tuple(rng.bytes(SEED_BYTES) for _ in range(n - 1))
    given = in_place and x.flags.writeable and x.flags.c_contiguous
    shares = SeededShares(seeds, tuple(purposes), x if given else x.copy())
    fold_streams(shares.correction, subtract=shares._prgs(session_id))
    return shares


PAIR_KEY_ID_BYTES = 8
_PAIR_KEY_ID_DOMAIN = b"mpcdp/v1/pair-key-id"


def pair_key_id(key: bytes) -> bytes:
    """The public id of a pair key (8 bytes of SHA-256 over it): what a party reports so that the coordinator
    can check both ends of a pair masked with the same key; it reveals nothing usable about the key."""
    return hashlib.sha256(_PAIR_KEY_ID_DOMAIN + key).digest()[:PAIR_KEY_ID_BYTES]


# Pair masks, shared by the keyed sessions (below) and the many-party protocol (mpcdp.protocol.masked).

SHORT_MASK_WORDS = 4096  # up to this length the masks are made in one call each and summed at once
MASK_BATCH_BYTES = 1 << 20  # short masks made before they are summed: memory O(L), whatever the number of seeds
_FIRST_BLOCK = 2  # AES-GCM's keystream for a 96-bit nonce N starts at the counter block N || 2
_NONCE = bytes(12)
_TAG_BYTES = 16


def pair_stream(seed: bytes) -> Prg:
    """The mask between two parties: AES-128-CTR keyed by the first half of their pair seed (already bound to the
    session and both names: :func:`mpcdp.protocol.masked.pair_seed`, :func:`mask_key`), counter blocks from 2 (as
    AES-GCM's keystream under the nonce 0, which :func:`fold_masks` uses to make the same stream for short vectors)."""
    return Prg.keyed(seed[:AES_KEY_BYTES], first_block=_FIRST_BLOCK)


def _short_masks(seeds: Sequence[bytes], length: int) -> np.ndarray:
    """The sum mod 2^64 of the masks of ``seeds`` on a short vector: each is the AES-GCM encryption of zeros under
    its key and the nonce 0 without its tag, which is exactly :func:`pair_stream`'s keystream (AES-CTR from the
    counter block 2; the 32-bit GCM counter cannot wrap this short), in one call whose set-up costs about 2 us where
    a cipher context costs about 11; written into one (rows, length) buffer of at most :data:`MASK_BATCH_BYTES`
    (a party's k masks: one batch; the coordinator's thousands of seeds: batch after batch) and summed per batch."""
    row = 8 * length + _TAG_BYTES
    rows = max(1, min(len(seeds), MASK_BATCH_BYTES // row))
    zeros, out = bytes(8 * length), np.empty((rows, row), dtype=np.uint8)
    masks = np.ndarray((rows, length), dtype="<u8", buffer=out, strides=(row, 8))  # the tags left out
    total = np.zeros(length, dtype=np.uint64)
    for start in range(0, len(seeds), rows):
        batch = seeds[start : start + rows]
        for seed, into in zip(batch, out, strict=False):
            AESGCM(seed[:AES_KEY_BYTES]).encrypt_into(_NONCE, zeros, None, into.data)  # the keystream, then the tag
        np.add(total, masks[: len(batch)].sum(axis=0, dtype=np.uint64), out=total)  # wraps mod 2^64
    return total


def fold_masks(
    out: np.ndarray,
    add: Sequence[bytes] = (),
    subtract: Sequence[bytes] = (),
    add_streams: Sequence[Prg] = (),
    subtract_streams: Sequence[Prg] = (),
) -> None:
    """out += the pair masks of the pair seeds in ``add`` and the next words of ``add_streams``, and -= those of
    ``subtract`` and ``subtract_streams``, mod 2^64, in place. A pair mask is :func:`pair_stream`'s keystream,
    made in one call per mask on a vector of at most :data:`SHORT_MASK_WORDS` words (:func:`_short_masks`),
    folded in one pass over ``out`` with every other stream above that."""
    flat = out.reshape(-1)
    if flat.size > SHORT_MASK_WORDS:
        adds = [*add_streams, *map(pair_stream, add)]
        fold_streams(out, adds, [*subtract_streams, *map(pair_stream, subtract)])
        return
    fold_streams(out, add_streams, subtract_streams)
    if add:
        np.add(flat, _short_masks(add, flat.size), out=flat)
    if subtract:
        np.subtract(flat, _short_masks(subtract, flat.size), out=flat)


_MASK_KEY_DOMAIN = b"mpcdp/v1/keyed/mask"


def bound_field(f: bytes) -> bytes:
    """One field with its 2-byte big-endian length: the unit of :func:`bind_fields`."""
    return len(f).to_bytes(2, "big") + f


def bind_fields(*fields: bytes) -> bytes:
    """Fields joined unambiguously (each with a 2-byte length): what every hash or PRF of several fields here
    and in :mod:`mpcdp.protocol.masked` is taken over."""
    return b"".join(map(bound_field, fields))


def mask_key(pair_key: bytes, binding: bytes, a: str, b: str) -> bytes:
    """The AES key of the mask between parties ``a`` and ``b`` (the same from either end) in the session
    ``binding``: HMAC-SHA256 under their 32-byte pair key (a PRF) of the binding and both names in name order,
    each length-bound. Its first 16 bytes key :func:`pair_stream`."""
    lo, hi = sorted((a, b))
    message = bind_fields(_MASK_KEY_DOMAIN, binding, lo.encode(), hi.encode())
    return hmac.new(pair_key, message, hashlib.sha256).digest()


def mask_pairwise(vector: np.ndarray, me: str, keys: Mapping[str, bytes], binding: bytes) -> np.ndarray:
    """Mask ``vector`` (a writable contiguous ring vector, changed in place) as party ``me`` with one mask per
    peer: the stream of :func:`mask_key` (their 32-byte pair key ``keys[peer]``, ``binding``, the pair), added if
    ``me`` sorts before ``peer`` and subtracted otherwise, all in one pass (:func:`fold_masks`, as the
    many-party masks).

    Summed over every party of a session (each with the same pair keys and binding) the masks cancel.
    ``binding`` identifies the session: the digest of its whole batch of specs
    (:attr:`mpcdp.protocol.spec.Batch.digest`; a single spec's own digest).
    Precondition of secrecy: a party never masks two vectors under the same keys and binding (two vectors
    masked alike reveal their difference). A party node refuses a session id it used while its deadline is
    ahead, and after that a replay either fails its own deadline check or, with any field changed, has
    another binding."""
    add, subtract = mask_keys(me, keys, binding)
    fold_masks(vector, add=add, subtract=subtract)
    return vector


def mask_keys(me: str, keys: Mapping[str, bytes], binding: bytes) -> tuple[list[bytes], list[bytes]]:
    """The keys of the masks :func:`mask_pairwise` folds in as party ``me``: those it adds (peers after it in name
    order), those it subtracts (peers before); each keys :func:`pair_stream` (a long vector masked slice by slice
    continues each stream: the same words)."""
    if me in keys:
        raise ValueError("a party has no pair key with itself")
    add = [mask_key(key, binding, me, peer) for peer, key in keys.items() if me < peer]
    return add, [mask_key(key, binding, me, peer) for peer, key in keys.items() if peer < me]
