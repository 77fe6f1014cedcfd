"""XofTurboShake128, the extendable-output function of VDAF draft 08 (section 6.2.1).

``XofTurboShake128(seed, dst, binder)`` is TurboSHAKE128 with domain byte 1 over
``len(dst) (one byte) || dst || seed || binder``; successive reads continue one
output stream. Field vectors are read by rejection sampling (section 6.2): each
``ENCODED_SIZE``-byte little-endian chunk, masked to the bits of the modulus,
is kept if it is below the modulus.

TurboSHAKE128 itself comes from pycryptodome (``Crypto.Hash.TurboSHAKE128``,
RFC 9861), a C implementation. Preparation hashes six short messages per
report and aggregator, so the wrapper's per-call cost matters: one-shot
hashes drive the same C functions directly through one reusable state per
thread (about 3x less overhead), a path checked at import against the public
API and replaced by it if pycryptodome's internals ever differ.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
from Crypto.Hash import TurboSHAKE128

from .field import Field

SEED_SIZE = 16


def _public_turboshake(message: bytes, length: int) -> bytes:
    return TurboSHAKE128.new(data=message, domain=1).read(length)


def _direct_turboshake() -> Callable[[bytes, int], bytes] | None:
    """A one-shot TurboSHAKE128 (domain byte 1) on pycryptodome's keccak functions, or None."""
    try:
        from Crypto.Hash.keccak import _raw_keccak_lib as lib
        from Crypto.Util._raw_api import SmartPointer, VoidPointer, backend, c_size_t, c_ubyte, ffi
    except ImportError:
        return None
    if backend != "cffi":
        return None
    byte_array = ffi.typeof("uint8_t[]")
    local = threading.local()
    capacity, rounds, domain = c_size_t(32), c_ubyte(12), 1

    def new_state() -> Any:
        """This thread's keccak state and a reusable output buffer."""
        pointer = VoidPointer()
        if lib.keccak_init(pointer.address_of(), capacity, rounds):
            raise RuntimeError("TurboSHAKE128 state could not be created")
        local.state = SmartPointer(pointer.get(), lib.keccak_destroy)  # frees it with the thread
        local.raw = local.state.get()
        grow(1 << 12)
        return local.raw

    def grow(size: int) -> None:
        local.out = ffi.new(byte_array, size)
        local.buffer = ffi.buffer(local.out)
        local.size = size

    def turboshake(message: bytes, length: int) -> bytes:
        try:
            raw = local.raw
        except AttributeError:
            raw = new_state()
        if length > local.size:
            grow(max(length, 2 * local.size))
        if (
            lib.keccak_reset(raw)
            or lib.keccak_absorb(raw, message, len(message))
            or lib.keccak_squeeze(raw, local.out, length, domain)
        ):
            raise RuntimeError("TurboSHAKE128 failed")
        return cast(bytes, local.buffer[0:length])

    try:
        probe = bytes(range(200))
        if all(turboshake(probe[:n], k) == _public_turboshake(probe[:n], k) for n, k in ((0, 16), (200, 400))):
            return turboshake
    except Exception:
        pass
    return None


turboshake128 = _direct_turboshake() or _public_turboshake
"""``turboshake128(message, length)``: the first ``length`` bytes of TurboSHAKE128(message, D=1)."""


class XofTurboShake128:
    """One output stream bound to a 16-byte seed, a domain separation tag and a binder."""

    SEED_SIZE = SEED_SIZE

    __slots__ = ("_hash",)

    def __init__(self, seed: bytes, dst: bytes, binder: bytes):
        _check(seed, dst)
        self._hash = TurboSHAKE128.new(data=bytes([len(dst)]) + dst + seed + binder, domain=1)

    def next(self, length: int) -> bytes:
        return self._hash.read(length)

    def next_vec(self, field: Field, length: int) -> list[int]:
        """``length`` field elements by rejection sampling."""
        size, p = field.encoded_size, field.modulus
        mask = (1 << (p - 1).bit_length()) - 1
        frm = int.from_bytes
        data = self._hash.read(size * length)
        vec = [frm(data[i : i + size], "little") & mask for i in range(0, len(data), size)]
        if any(x >= p for x in vec):  # rare (2^-32 for Field64, 2^-62 for Field128): redo in order
            vec = [x for x in vec if x < p]
            while len(vec) < length:
                x = frm(self._hash.read(size), "little") & mask
                if x < p:
                    vec.append(x)
        return vec

    @classmethod
    def derive_seed(cls, seed: bytes, dst: bytes, binder: bytes) -> bytes:
        _check(seed, dst)
        return turboshake128(bytes([len(dst)]) + dst + seed + binder, SEED_SIZE)

    @classmethod
    def expand_into_vec(cls, field: Field, seed: bytes, dst: bytes, binder: bytes, length: int) -> list[int]:
        """``XofTurboShake128(seed, dst, binder).next_vec(field, length)`` in one hash call."""
        _check(seed, dst)
        size, p = field.encoded_size, field.modulus
        message = bytes([len(dst)]) + dst + seed + binder
        data = turboshake128(message, size * length)
        frm = int.from_bytes
        vec = [frm(data[i : i + size], "little") for i in range(0, len(data), size)]
        if max(vec, default=0) >= p or p.bit_length() < 8 * size:  # rejection sampling is needed
            return cls(seed, dst, binder).next_vec(field, length)
        return vec

    @classmethod
    def expand_into_matrix(
        cls, field: Field, seeds: Sequence[bytes], dst: bytes, binders: Sequence[bytes], length: int
    ) -> tuple[np.ndarray, list[bytes]]:
        """:meth:`expand_into_vec` for many ``(seed, binder)`` pairs: an object matrix with one row
        each, decoded together, and each row's encoding. Rows that need rejection sampling (an
        element at or above p, probability 2^-62 per element) are redone one by one, in order."""
        if any(len(seed) != SEED_SIZE for seed in seeds):
            raise ValueError(f"XofTurboShake128 seeds are {SEED_SIZE} bytes")
        prefix, size = bytes([len(dst)]) + dst, field.encoded_size
        rows = [
            turboshake128(prefix + seed + binder, size * length) for seed, binder in zip(seeds, binders, strict=True)
        ]
        matrix, bad = field.decode_matrix(b"".join(rows), len(rows))
        for k in np.flatnonzero(bad).tolist():
            vec = cls.expand_into_vec(field, seeds[k], dst, binders[k], length)
            matrix[k] = vec
            rows[k] = field.encode_vec(vec)
        return matrix, rows


def _check(seed: bytes, dst: bytes) -> None:
    if len(seed) != SEED_SIZE:
        raise ValueError(f"XofTurboShake128 seeds are {SEED_SIZE} bytes, got {len(seed)}")
    if len(dst) > 255:
        raise ValueError("a domain separation tag is at most 255 bytes")
