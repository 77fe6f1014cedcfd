"""Shamir secret sharing of 32-byte secrets, many secrets and many evaluation points at once (numpy).

A secret s becomes the values at x = 1, 2, ... of a random polynomial of degree t - 1 whose constant term
is s: any t shares rebuild s by Lagrange interpolation at 0, and any t - 1 of them are jointly uniform and
independent of s (perfect secrecy; Shamir, "How to share a secret", CACM 1979).

The field is GF(p), p = 2^31 - 1 (a Mersenne prime), so every product of two elements fits a 64-bit word and
sharing is whole-array numpy arithmetic: a secret is cut into :data:`CHUNKS` pieces of 30 bits (the last of
16), each piece shared with its own independent polynomial, and a share is the :data:`CHUNKS` values at one
point (each independent piece is perfectly hidden, so the whole secret is). Coefficients are drawn exactly
uniformly (by rejection) from an injected random source. :func:`split` shares several secrets at every point
in one pass (a party's key and seed among its k neighbours: O(1) numpy calls, not O(k) Python loops);
:func:`rebuild_many` rebuilds many secrets, each from its own set of t points, in one pass. Shares that do
not fit together are caught when a rebuilt piece is out of range (a piece is 30 bits in a 31-bit field);
callers that must catch every inconsistency check the secret against a commitment.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from ..prg import RandomSource

PRIME = (1 << 31) - 1  # a Mersenne prime
SECRET_BYTES = 32
CHUNK_BITS = 30
CHUNKS = -(-8 * SECRET_BYTES // CHUNK_BITS)  # 9 pieces: 8 of 30 bits, the last of 16
SHARE_BYTES = 4 * CHUNKS  # CHUNKS big-endian 32-bit field elements
_P = np.uint64(PRIME)
_LIMIT = np.array([1 << CHUNK_BITS] * (CHUNKS - 1) + [1 << (8 * SECRET_BYTES - CHUNK_BITS * (CHUNKS - 1))], np.uint64)
_SHIFTS = [CHUNK_BITS * i for i in range(CHUNKS)]
_WORDS = struct.Struct(f">{CHUNKS}I")


def _pieces(secrets: Sequence[bytes]) -> np.ndarray:
    """(S, CHUNKS) field elements: the 30-bit pieces of each secret, least significant first."""
    out = np.empty((len(secrets), CHUNKS), dtype=np.uint64)
    mask = (1 << CHUNK_BITS) - 1
    for i, secret in enumerate(secrets):
        if len(secret) != SECRET_BYTES:
            raise ValueError(f"a shared secret is {SECRET_BYTES} bytes")
        value = int.from_bytes(secret, "big")
        out[i] = [(value >> s) & mask for s in _SHIFTS]
    return out


def _join(pieces: np.ndarray) -> bytes:
    value = sum(int(v) << s for v, s in zip(pieces, _SHIFTS, strict=True))
    return value.to_bytes(SECRET_BYTES, "big")


def _uniform(rng: RandomSource, shape: tuple[int, ...]) -> np.ndarray:
    """Field elements drawn exactly uniformly: 31-bit words, the one value p rejected and drawn again."""
    out = rng.uint64(int(np.prod(shape))).reshape(shape) & _P
    while (bad := out == _P).any():
        out[bad] = rng.uint64(int(bad.sum())) & _P
    return out


def _check_points(points: Sequence[int]) -> np.ndarray:
    if len(set(points)) != len(points) or not all(0 < x < PRIME for x in points):
        raise ValueError(f"evaluation points must be distinct integers in [1, {PRIME})")
    return np.asarray(points, dtype=np.uint64)


def split(secrets: Sequence[bytes], points: Sequence[int], threshold: int, rng: RandomSource) -> np.ndarray:
    """Shares of each of ``secrets`` at every one of ``points`` (distinct, in [1, p)): an array
    (secret, point, piece) of field elements; any ``threshold`` points rebuild a secret (:func:`share_bytes`)."""
    if not 1 <= threshold <= len(points):
        raise ValueError(f"threshold must be in [1, {len(points)}], got {threshold}")
    x = _check_points(points)[None, :, None]  # (1, P, 1)
    constant = _pieces(secrets)  # (S, CHUNKS)
    coefficients = _uniform(rng, (threshold - 1, len(secrets), 1, CHUNKS))
    y = np.zeros((len(secrets), len(points), CHUNKS), dtype=np.uint64)
    for c in coefficients[::-1]:  # Horner, highest degree first; every product < 2^62
        y = (y * x + c) % _P
    shares: np.ndarray = (y * x + constant[:, None, :]) % _P
    return shares


def share_bytes(shares: np.ndarray) -> list[bytes]:
    """One secret's shares (point, piece) as one byte string per point (:data:`SHARE_BYTES` each)."""
    raw = shares.astype(">u4").tobytes()
    return [raw[i : i + SHARE_BYTES] for i in range(0, len(raw), SHARE_BYTES)]


def share_values(shares: Sequence[bytes]) -> np.ndarray:
    """The field elements of byte-form shares, (share, piece), all checked at once (ValueError unless each is
    :data:`SHARE_BYTES` of elements below p)."""
    if any(len(share) != SHARE_BYTES for share in shares):
        raise ValueError(f"a share is {SHARE_BYTES} bytes")
    values = np.frombuffer(b"".join(shares), dtype=">u4").astype(np.uint64).reshape(len(shares), CHUNKS)
    if (values >= _P).any():
        raise ValueError("a share is not a field element")
    return values


def is_share(share: bytes) -> bool:
    """Whether ``share`` is one share in byte form (:data:`SHARE_BYTES` of elements below p): about 1 us, for a
    share checked as it arrives (:func:`share_values` checks many at once)."""
    return len(share) == SHARE_BYTES and max(_WORDS.unpack(share)) < PRIME


def _inverse(a: np.ndarray) -> np.ndarray:
    """a^(p - 2) mod p elementwise (Fermat), by square and multiply on 64-bit words."""
    result = np.ones_like(a)
    base = a % _P
    e = PRIME - 2
    while e:
        if e & 1:
            result = result * base % _P
        base = base * base % _P
        e >>= 1
    return result


def rebuild_many(points: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Secrets from their shares: ``points`` (m, t), row i the distinct points of secret i's t shares, and
    ``shares`` (m, t, CHUNKS) their values; returns (m, CHUNKS) pieces, each below its range unless the shares
    were inconsistent (see :func:`secrets_from`). Lagrange interpolation at 0, every row at once."""
    x = np.asarray(points, dtype=np.uint64) % _P
    m, t = x.shape
    num = np.ones((m, t), dtype=np.uint64)
    den = np.ones((m, t), dtype=np.uint64)
    for j in range(t):
        for i in range(t):
            if i != j:
                num[:, i] = num[:, i] * x[:, j] % _P
                den[:, i] = den[:, i] * ((x[:, j] + _P - x[:, i]) % _P) % _P
    if (den == 0).any():
        raise ValueError("the points of a secret's shares must be distinct")
    weight = num * _inverse(den) % _P  # (m, t): the Lagrange basis at 0
    total = np.zeros((m, CHUNKS), dtype=np.uint64)
    for i in range(t):
        total = (total + shares[:, i, :] * weight[:, i, None]) % _P
    return total


def secrets_from(pieces: np.ndarray) -> list[bytes | None]:
    """The 32-byte secrets of :func:`rebuild_many`'s rows (None for a row whose pieces are out of range: the
    shares did not fit together)."""
    fits: np.ndarray = np.all(pieces < _LIMIT, axis=1)
    return [_join(pieces[i]) if fits[i] else None for i in range(len(pieces))]
