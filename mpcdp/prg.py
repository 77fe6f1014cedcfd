"""Cryptographic randomness: seeds from the OS, expanded with AES-128-CTR.

Every random share, seed and noise sample in mpcdp comes from a
:class:`RandomSource`. The only implementation is :class:`Prg`, AES-128 in
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
_CHUNK_WORDS = 1 << 15  # words per cipher call: 256 KiB, stays in cache


class RandomSource(Protocol):
    """What mechanisms and sharing need from randomness: uniform bytes and words."""

    def bytes(self, n: int) -> bytes: ...

    def uint64(self, n: int) -> np.ndarray: ...


def new_seed() -> bytes:
    """A fresh 32-byte seed from the operating system's CSPRNG."""
    return os.urandom(SEED_BYTES)


def _derive_key(seed: bytes, session_id: bytes, purpose: str) -> bytes:
    info = struct.pack(">H", len(session_id)) + session_id + purpose.encode()
    return HKDF(algorithm=hashes.SHA256(), length=16, salt=_SALT, info=info).derive(seed)


class Prg:
    """A deterministic stream of uniform bytes: AES-128-CTR under HKDF(seed, session, purpose).

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
        self._scratch = np.empty(0, dtype=np.uint8)

    @classmethod
    def from_int(cls, seed: int, purpose: str = "test") -> Prg:
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
        raw = np.empty(8 * n + 16, dtype=np.uint8)  # update_into wants 15 bytes of slack
        zeros = self._zero_bytes(min(8 * _CHUNK_WORDS, 8 * n))
        for start in range(0, 8 * n, len(zeros)):
            k = min(len(zeros), 8 * n - start)
            self._enc.update_into(zeros[:k], raw.data[start:])
        return raw[: 8 * n].view("<u8").astype(np.uint64, copy=False)

    def _zero_bytes(self, nbytes: int) -> memoryview:
        if len(self._zeros) < nbytes:
            self._zeros = bytes(nbytes)
            self._scratch = np.empty(nbytes + 16, dtype=np.uint8)
        return memoryview(self._zeros)

    def add_into(self, out: np.ndarray, subtract: bool = False) -> np.ndarray:
        """out += (or -=) the next ``out.size`` words, mod 2^64, in place.

        The keystream is produced in cache-sized chunks and consumed at once, so
        expanding a seed into a running sum costs one pass over ``out``.
        """
        if out.dtype != np.uint64 or not out.flags.c_contiguous:
            raise TypeError("add_into needs a contiguous uint64 array")
        flat = out.reshape(-1)
        words = min(_CHUNK_WORDS, flat.size)
        zeros = self._zero_bytes(8 * words)
        scratch = self._scratch
        op = np.subtract if subtract else np.add
        for start in range(0, flat.size, words):
            k = min(words, flat.size - start)
            self._enc.update_into(zeros[: 8 * k], scratch.data)
            chunk = flat[start : start + k]
            op(chunk, scratch[: 8 * k].view("<u8"), out=chunk)
        return out


def system_random(purpose: str = "default") -> Prg:
    """A CSPRNG for production use: a Prg keyed by a fresh seed from the OS."""
    return Prg(new_seed(), b"", purpose)
