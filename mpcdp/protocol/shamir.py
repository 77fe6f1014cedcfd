"""Shamir secret sharing of 32-byte secrets (seeds and keys) over the prime field GF(2^521 - 1).

A secret s becomes the values at x = 1, 2, ... of a random polynomial of degree t - 1 whose constant term
is s: any t shares rebuild s by Lagrange interpolation at 0, and any t - 1 of them are jointly uniform and
independent of s (perfect secrecy; Shamir, "How to share a secret", CACM 1979). The field is larger than
any 32-byte secret, so a secret is its own field element. Coefficients are drawn exactly uniformly (by
rejection) from an injected random source.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..prg import RandomSource

PRIME = (1 << 521) - 1  # a Mersenne prime
SECRET_BYTES = 32
SHARE_BYTES = 66  # a field element, big-endian


def _uniform(rng: RandomSource) -> int:
    while True:
        value = int.from_bytes(rng.bytes(SHARE_BYTES), "big") & PRIME  # 521 bits
        if value < PRIME:
            return value


def split(secret: bytes, points: list[int], threshold: int, rng: RandomSource) -> dict[int, bytes]:
    """Shares of ``secret`` at the evaluation ``points`` (distinct, in [1, 2^32)); any ``threshold`` rebuild it."""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"a shared secret is {SECRET_BYTES} bytes")
    if not 1 <= threshold <= len(points):
        raise ValueError(f"threshold must be in [1, {len(points)}], got {threshold}")
    if len(set(points)) != len(points) or not all(0 < x < 1 << 32 for x in points):
        raise ValueError("evaluation points must be distinct integers in [1, 2^32)")
    coefficients = [int.from_bytes(secret, "big")] + [_uniform(rng) for _ in range(threshold - 1)]
    out = {}
    for x in points:
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % PRIME
        out[x] = y.to_bytes(SHARE_BYTES, "big")
    return out


def rebuild(shares: Mapping[int, bytes], threshold: int) -> bytes:
    """The secret from ``threshold`` shares (point -> share; extra shares are ignored)."""
    if len(shares) < threshold:
        raise ValueError(f"{len(shares)} shares cannot rebuild a secret that needs {threshold}")
    points = sorted(shares)[:threshold]
    secret = 0
    for i in points:
        num, den = 1, 1
        for j in points:
            if j != i:
                num = num * j % PRIME
                den = den * (j - i) % PRIME
        y = int.from_bytes(shares[i], "big")
        if y >= PRIME or len(shares[i]) != SHARE_BYTES:
            raise ValueError("a share is not a field element")
        secret = (secret + y * num * pow(den, -1, PRIME)) % PRIME
    if secret >= 1 << (8 * SECRET_BYTES):
        raise ValueError("the shares do not rebuild a 32-byte secret (inconsistent shares)")
    return secret.to_bytes(SECRET_BYTES, "big")
