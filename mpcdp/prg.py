"""Cryptographic randomness: seeds from the OS, expanded with AES-128-CTR.

Every random share, seed and noise sample in mpcdp comes from a
:class:`RandomSource`. The only implementation is :class:`Prg`, AES-128 in
counter mode keyed through HKDF-SHA256 from a 32-byte seed and bound to a
session id and a purpose string (domain separation), as in the secure
aggregation protocol of Bonawitz et al. (CCS 2017) and the PRG of the IETF
VDAF draft. :meth:`Prg.keyed` skips the HKDF: its caller passes an AES key that
is already a hash bound to its session and purpose (the many-party pair masks).
:func:`system_random` keys one from ``os.urandom``; tests pass a
``Prg`` built from a fixed seed *explicitly*. Nothing reads a global RNG.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SEED_BYTES = 32
_SALT = b"mpcdp/v1/prg"
_CHUNK_WORDS = 1 << 15  # words per cipher call: 256 KiB, stays in cache
_ZEROS = bytes(8 * _CHUNK_WORDS)  # what the keystream is XORed onto
_CTR = modes.CTR(bytes(16))  # every stream starts at counter 0 under its own key (immutable: shared)
_CTR_FROM = {0: _CTR, 2: modes.CTR((2).to_bytes(16, "big"))}  # made once: the first blocks in use (Prg.keyed)
KEY_BYTES = 16  # an AES-128 key


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
    """A deterministic stream of uniform bytes: AES-128-CTR under HKDF(seed, session, purpose) (or, from
    :meth:`keyed`, under a key the caller derived and bound to its session and purpose).

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
        self._enc = Cipher(algorithms.AES(key), _CTR).encryptor()

    @classmethod
    def keyed(cls, key: bytes, first_block: int = 0) -> Prg:
        """A generator keyed directly by a 16-byte AES key that is already the output of a KDF bound to its session
        and purpose (the many-party pair masks: one hash per neighbour instead of a hash and an HKDF); its counter
        starts at ``first_block`` (the many-party masks start at 2, as AES-GCM's keystream does)."""
        if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
            raise ValueError(f"a PRG key is exactly {KEY_BYTES} bytes")
        if not 0 <= first_block < 1 << 128:
            raise ValueError("first_block is a 128-bit counter block: in [0, 2^128)")
        mode = _CTR_FROM.get(first_block) or modes.CTR(first_block.to_bytes(16, "big"))
        prg = cls.__new__(cls)
        prg._enc = Cipher(algorithms.AES(bytes(key)), mode).encryptor()
        return prg

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
        zeros = memoryview(_ZEROS)
        for start in range(0, 8 * n, len(zeros)):
            k = min(len(zeros), 8 * n - start)
            self._enc.update_into(zeros[:k], raw.data[start:])
        return raw[: 8 * n].view("<u8").astype(np.uint64, copy=False)

    def add_into(self, out: np.ndarray, subtract: bool = False) -> np.ndarray:
        """out += (or -=) the next ``out.size`` words, mod 2^64, in place (see :func:`fold_streams`)."""
        return fold_streams(out, subtract=[self]) if subtract else fold_streams(out, add=[self])


def fold_streams(out: np.ndarray, add: Sequence[Prg] = (), subtract: Sequence[Prg] = ()) -> np.ndarray:
    """out += the next ``out.size`` words of each generator in ``add``, and -= those of ``subtract``, mod 2^64.

    One pass over ``out`` whatever the number of generators: each cache-sized piece of ``out`` takes every
    stream's keystream for it (produced into one small scratch buffer and consumed at once) before the next
    piece is touched, so expanding n seeds into a running sum costs one trip through memory, not n. Each
    generator's stream continues exactly as ``uint64`` would have: the result equals adding (subtracting)
    ``prg.uint64(out.size)`` of each, in any order.
    """
    if out.dtype != np.uint64 or not out.flags.c_contiguous or not out.flags.writeable:
        raise TypeError("fold_streams needs a writable contiguous uint64 array")
    flat = out.reshape(-1)
    words = max(min(_CHUNK_WORDS, flat.size), 1)  # an empty ``out`` takes no words, as ``uint64(0)`` draws none
    scratch = np.empty(8 * words + 16, dtype=np.uint8)  # update_into wants 15 bytes of slack
    zeros = memoryview(_ZEROS)
    streams = [(p._enc, np.add) for p in add] + [(p._enc, np.subtract) for p in subtract]
    for start in range(0, flat.size, words):
        k = min(words, flat.size - start)
        chunk = flat[start : start + k]
        stream = scratch[: 8 * k].view("<u8")
        for enc, op in streams:
            enc.update_into(zeros[: 8 * k], scratch.data)
            op(chunk, stream, out=chunk)
    return out


def system_random(purpose: str = "default") -> Prg:
    """A CSPRNG for production use: a Prg keyed by a fresh seed from the OS."""
    return Prg(new_seed(), b"", purpose)
