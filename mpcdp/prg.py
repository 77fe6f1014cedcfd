"""Cryptographic randomness: seeds from the OS, expanded with AES-256-CTR.

Every random share, seed and noise sample in mpcdp comes from a
:class:`RandomSource`. The only implementation is :class:`Prg`, AES-256 in
counter mode keyed through HKDF-SHA256 from a 32-byte seed and bound to a
session id and a purpose string (domain separation), as in the secure
aggregation protocol of Bonawitz et al. (CCS 2017) and the PRG of the IETF
VDAF draft. :func:`system_random` keys one from ``os.urandom``; tests pass a
``Prg`` built from a fixed seed *explicitly*. Nothing reads a global RNG.
"""

from __future__ import annotations

import os
import struct
from typing import Protocol

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SEED_BYTES = 32
_SALT = b"mpcdp/v1/prg"
_CHUNK = 1 << 22  # bytes per cipher call; bounds the scratch buffer


class RandomSource(Protocol):
    """What mechanisms and sharing need from randomness: uniform bytes and words."""

    def bytes(self, n: int) -> bytes: ...

    def uint64(self, n: int) -> np.ndarray: ...


def new_seed() -> bytes:
    """A fresh 32-byte seed from the operating system's CSPRNG."""
    return os.urandom(SEED_BYTES)


def _derive_key(seed: bytes, session_id: bytes, purpose: str) -> bytes:
    info = struct.pack(">H", len(session_id)) + session_id + purpose.encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=info).derive(seed)


class Prg:
    """A deterministic stream of uniform bytes: AES-256-CTR under HKDF(seed, session, purpose).

    Two Prgs with the same (seed, session_id, purpose) produce the same stream;
    changing any of the three gives an independent stream. Successive calls
    continue the stream, so ``uint64(2)`` equals ``uint64(1)`` then ``uint64(1)``.
    """

    def __init__(self, seed: bytes, session_id: bytes = b"", purpose: str = "default"):
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != SEED_BYTES:
            raise ValueError(f"a PRG seed is exactly {SEED_BYTES} bytes")
        if not isinstance(session_id, (bytes, bytearray)):
            raise TypeError("session_id must be bytes")
        key = _derive_key(bytes(seed), bytes(session_id), purpose)
        self._enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        self._zeros = bytes(0)

    @classmethod
    def from_int(cls, seed: int, purpose: str = "test") -> "Prg":
        """A reproducible generator for tests and simulations (never for production noise)."""
        return cls(int(seed).to_bytes(SEED_BYTES, "big"), b"", purpose)

    def bytes(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("n must be non-negative")
        return self._enc.update(bytes(n))

    def uint64(self, n: int) -> np.ndarray:
        """n uniform elements of Z_{2^64} (little-endian words of the keystream)."""
        if n < 0:
            raise ValueError("n must be non-negative")
        nbytes = 8 * n
        raw = np.empty(nbytes + 16, dtype=np.uint8)  # update_into wants 15 bytes of slack
        step = min(_CHUNK, nbytes)
        if len(self._zeros) < step:
            self._zeros = bytes(step)
        zeros = memoryview(self._zeros)
        for start in range(0, nbytes, step):
            stop = min(start + step, nbytes)
            self._enc.update_into(zeros[: stop - start], memoryview(raw)[start:])
        out = raw[:nbytes].view("<u8")
        return out.astype(np.uint64, copy=False)


def system_random(purpose: str = "default") -> Prg:
    """A CSPRNG for production use: a Prg keyed by a fresh seed from the OS."""
    return Prg(new_seed(), b"", purpose)
