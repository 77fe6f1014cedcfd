"""XofTurboShake128, the extendable-output function of VDAF draft 08 (section 6.2.1).

``XofTurboShake128(seed, dst, binder)`` is TurboSHAKE128 with domain byte 1 over
``len(dst) (one byte) || dst || seed || binder``; successive reads continue one
output stream. Field vectors are read by rejection sampling (section 6.2): each
``ENCODED_SIZE``-byte little-endian chunk, masked to the bits of the modulus,
is kept if it is below the modulus.

TurboSHAKE128 itself comes from pycryptodome (``Crypto.Hash.TurboSHAKE128``,
RFC 9861), a C implementation.
"""

from __future__ import annotations

from Crypto.Hash import TurboSHAKE128

from .field import Field

SEED_SIZE = 16


class XofTurboShake128:
    """One output stream bound to a 16-byte seed, a domain separation tag and a binder."""

    SEED_SIZE = SEED_SIZE

    __slots__ = ("_hash",)

    def __init__(self, seed: bytes, dst: bytes, binder: bytes):
        if len(seed) != SEED_SIZE:
            raise ValueError(f"XofTurboShake128 seeds are {SEED_SIZE} bytes, got {len(seed)}")
        if len(dst) > 255:
            raise ValueError("a domain separation tag is at most 255 bytes")
        self._hash = TurboSHAKE128.new(data=bytes([len(dst)]) + dst + seed + binder, domain=1)

    def next(self, length: int) -> bytes:
        return self._hash.read(length)

    def next_vec(self, field: Field, length: int) -> list[int]:
        """``length`` field elements by rejection sampling."""
        size, p = field.encoded_size, field.modulus
        mask = (1 << (p - 1).bit_length()) - 1
        frm = int.from_bytes
        data = self._hash.read(size * length)
        vec = [frm(data[i:i + size], "little") & mask for i in range(0, len(data), size)]
        if any(x >= p for x in vec):  # rare (2^-32 for Field64, 2^-62 for Field128): redo in order
            vec = [x for x in vec if x < p]
            while len(vec) < length:
                x = frm(self._hash.read(size), "little") & mask
                if x < p:
                    vec.append(x)
        return vec

    @classmethod
    def derive_seed(cls, seed: bytes, dst: bytes, binder: bytes) -> bytes:
        return cls(seed, dst, binder).next(SEED_SIZE)

    @classmethod
    def expand_into_vec(cls, field: Field, seed: bytes, dst: bytes, binder: bytes, length: int) -> list[int]:
        return cls(seed, dst, binder).next_vec(field, length)
