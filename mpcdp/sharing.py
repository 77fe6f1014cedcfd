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
for every peer, the PRG expansion of their pair key bound to the session (the digest of its whole spec,
session id and deadline included) and the pair (added by the party whose name sorts first, subtracted by
the other). Every mask appears in exactly two vectors with
opposite signs, so the sum over all parties is the sum of the secrets, while any one masked vector, and the
sum of any strict subset of them, is uniformly random to whoever lacks a pair key crossing the subset's
boundary (pairwise masking, Bonawitz et al. CCS 2017, without its dropout recovery).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from . import ring
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


def mask_purpose(a: str, b: str) -> str:
    """The PRG domain of the mask between parties ``a`` and ``b`` (the same from either end)."""
    lo, hi = sorted((a, b))
    return f"mask/{lo}/{hi}"


def mask_pairwise(vector: np.ndarray, me: str, keys: Mapping[str, bytes], binding: bytes) -> np.ndarray:
    """Mask ``vector`` (a writable contiguous ring vector, changed in place) as party ``me`` with one mask per
    peer: the expansion of their 32-byte pair key ``keys[peer]`` under (``binding``, the pair), added if
    ``me`` sorts before ``peer`` and subtracted otherwise, all in one pass (:func:`mpcdp.prg.fold_streams`).

    Summed over every party of a session (each with the same pair keys and binding) the masks cancel.
    ``binding`` identifies the session: the digest of its whole spec (:attr:`mpcdp.protocol.QuerySpec.digest`).
    Precondition of secrecy: a party never masks two vectors under the same keys and binding (two vectors
    masked alike reveal their difference). A party node refuses a session id it used while its deadline is
    ahead, and after that a replay either fails its own deadline check or, with any field changed, has
    another binding."""
    if me in keys:
        raise ValueError("a party has no pair key with itself")
    streams = {peer: Prg(key, binding, mask_purpose(me, peer)) for peer, key in keys.items()}
    return fold_streams(
        vector,
        add=[prg for peer, prg in streams.items() if me < peer],
        subtract=[prg for peer, prg in streams.items() if peer < me],
    )
