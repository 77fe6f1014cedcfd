"""Arithmetic in the ring Z_{2^64} and fixed-point encoding of reals into it.

Ring elements are numpy ``uint64`` arrays; numpy's unsigned array arithmetic
already wraps modulo 2^64, so ``add``/``sub``/``neg`` are thin, named wrappers
that also accept Python ints. Signed values live in ``[-2^63, 2^63)`` in two's
complement, which is how a secure sum of signed contributions is decoded.

Overflow is the one failure a secure sum cannot detect afterwards: a wrapped
sum decodes to a plausible wrong number. :func:`check_headroom` is therefore
run at query time, before any share moves.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

BITS = 64
MODULUS = 1 << BITS
SIGNED_MAX = (1 << (BITS - 1)) - 1
SIGNED_MIN = -(1 << (BITS - 1))
DTYPE = np.uint64


class HeadroomError(ValueError):
    """A query whose worst-case sum would not fit the ring's signed range."""


def as_ring(values: ArrayLike) -> np.ndarray:
    """Coerce ints (Python or numpy, signed or not) to ring elements, mod 2^64."""
    arr = np.asarray(values)
    if arr.dtype == DTYPE:
        return arr
    if arr.dtype.kind == "i":
        return arr.astype(np.int64, copy=False).view(DTYPE)
    if arr.dtype.kind == "u":
        return arr.astype(DTYPE)
    if arr.dtype == object or arr.dtype.kind == "b":
        flat = [int(v) % MODULUS for v in arr.reshape(-1)]
        return np.array(flat, dtype=DTYPE).reshape(arr.shape)
    raise TypeError(f"ring elements must be integers, got dtype {arr.dtype}")


def zeros(length: int) -> np.ndarray:
    return np.zeros(length, dtype=DTYPE)


def add(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """a + b mod 2^64."""
    out: np.ndarray = np.add(as_ring(a), as_ring(b), dtype=DTYPE)
    return out


def sub(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """a - b mod 2^64."""
    out: np.ndarray = np.subtract(as_ring(a), as_ring(b), dtype=DTYPE)
    return out


def neg(a: ArrayLike) -> np.ndarray:
    """-a mod 2^64."""
    out: np.ndarray = np.subtract(DTYPE(0), as_ring(a), dtype=DTYPE)
    return out


def total(arrays: Iterable[ArrayLike]) -> np.ndarray:
    """Sum of a sequence of equal-length ring vectors, mod 2^64."""
    vectors = list(arrays)
    if not vectors:
        raise ValueError("total() of no vectors")
    out = as_ring(vectors[0]).copy()
    for a in vectors[1:]:
        np.add(out, as_ring(a), out=out, dtype=DTYPE)
    return out


def to_signed(a: ArrayLike) -> np.ndarray:
    """Interpret ring elements as two's-complement int64 in [-2^63, 2^63)."""
    return as_ring(a).view(np.int64)


_CONVERT_CHUNK = 1 << 16  # elements converted at a time (512 KiB)


def _to_int64_in_place(values: np.ndarray) -> np.ndarray:
    """The integral float64 ``values`` (contiguous) converted to int64 in their own memory. numpy copies an
    operand that overlaps the output before converting: piece by piece that copy stays small and in cache,
    where a whole-array conversion would first copy all of it (several times slower than ``astype``)."""
    flat = values.reshape(-1)
    out = flat.view(np.int64)
    for start in range(0, flat.size, _CONVERT_CHUNK):
        np.copyto(out[start : start + _CONVERT_CHUNK], flat[start : start + _CONVERT_CHUNK], casting="unsafe")
    return out.reshape(values.shape)


@dataclass(frozen=True)
class FixedPoint:
    """Fixed-point codec: a real x is stored as round(x * 2^frac_bits) in the ring.

    The resolution is 2^-frac_bits; encode/decode round-trips within half of it
    for |x| * 2^frac_bits < 2^52 (where float64 still holds every integer).
    """

    frac_bits: int = 16

    def __post_init__(self) -> None:
        if not isinstance(self.frac_bits, int) or not 0 <= self.frac_bits <= 52:
            raise ValueError(f"frac_bits must be an integer in [0, 52], got {self.frac_bits!r}")

    @property
    def scale(self) -> int:
        return 1 << self.frac_bits

    @property
    def resolution(self) -> float:
        return 1.0 / self.scale

    def encode(self, x: ArrayLike, *, in_place: bool = False) -> np.ndarray:
        """Reals -> ring. Refuses NaN, infinities and values outside the signed range.

        ``in_place``: ``x``, a float64 array the caller gives up, is scaled, rounded and converted where it
        is (no megabyte-sized allocation at all); the result shares its memory."""
        arr = np.asarray(x, dtype=np.float64)
        if in_place and arr is x and arr.flags.writeable and arr.flags.c_contiguous:
            scaled = arr if self.scale == 1 else np.multiply(arr, self.scale, out=arr)
        else:
            scaled = arr * self.scale
        if scaled.size:
            # a NaN anywhere makes both NaN; rounding cannot leave the range (floats beyond 2^52 are integers)
            lo, hi = float(scaled.min()), float(scaled.max())
            if not -(2.0**63) <= lo <= hi < 2.0**63:
                if scaled is not arr and not np.all(np.isfinite(arr)):
                    raise ValueError("cannot encode NaN or infinite values")
                if math.isnan(lo) or math.isnan(hi):
                    raise ValueError("cannot encode NaN values")
                raise HeadroomError(
                    f"value too large for the ring at frac_bits={self.frac_bits}: "
                    f"|x| must be below 2^{63 - self.frac_bits}"
                )
        np.rint(scaled, out=scaled)
        return _to_int64_in_place(scaled).view(DTYPE)

    def encode_clipped(self, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        """``encode(np.clip(x, lo, hi))`` for float64 records ``x``, into a new array, in one trip through memory:
        each cache-sized piece is clipped, scaled, rounded and converted before the next is read (the same
        operations in the same order, so the same elements), where clipping and encoding the whole array make
        five passes over it. Bounds whose encodings do not fit the signed range are refused (HeadroomError)
        before anything is computed: then no clipped value can leave it, and infinities clip to the bounds. A
        NaN is refused (ValueError, as :meth:`encode` does) by the conversion that meets it: with finite bounds it
        is the only value whose conversion is invalid, and the check costs no pass of its own."""
        self.encode_bound(max(abs(float(lo)), abs(float(hi))))  # finite, and within the ring once scaled
        if not lo <= hi:
            raise ValueError(f"bounds must be ordered, got ({lo!r}, {hi!r})")
        src = np.asarray(x, dtype=np.float64)
        flat = src.reshape(-1)
        out = np.empty(src.shape, dtype=np.int64)
        into = out.reshape(-1)
        piece = np.empty(min(_CONVERT_CHUNK, flat.size), dtype=np.float64)
        try:
            with np.errstate(invalid="raise"):  # NaN: clip, multiply and rint carry it, the conversion flags it
                for start in range(0, flat.size, _CONVERT_CHUNK):
                    end = min(start + _CONVERT_CHUNK, flat.size)
                    scaled = piece[: end - start]
                    np.clip(flat[start:end], lo, hi, out=scaled)
                    if self.scale != 1:
                        np.multiply(scaled, self.scale, out=scaled)
                    np.rint(scaled, out=scaled)
                    np.copyto(into[start:end], scaled, casting="unsafe")
        except FloatingPointError:
            raise ValueError("cannot encode NaN values") from None
        return out.view(DTYPE)

    def decode(self, a: ArrayLike) -> np.ndarray:
        """Ring -> reals, reading elements as signed."""
        return to_signed(a).astype(np.float64) / self.scale

    def encode_bound(self, bound: float) -> int:
        """The largest |encoded value| of any real with |x| <= bound."""
        if not np.isfinite(bound) or bound < 0:
            raise ValueError(f"bound must be a finite non-negative number, got {bound!r}")
        scaled = float(bound) * self.scale
        if not scaled < 2.0**63:
            raise HeadroomError(
                f"overflow risk: |value| {float(bound):g} is too large for the ring at frac_bits={self.frac_bits}: "
                f"bounds must lie within +-2^{63 - self.frac_bits} (about {2.0 ** (63 - self.frac_bits):.3g}); "
                "lower the bound or the number of fractional bits"
            )
        return int(np.rint(scaled))


def check_fits(count: int, magnitude: int, noise_tail: int = 0, what: str = "sum") -> int:
    """Refuse a sum of ``count`` ring values with |v| <= magnitude (ring units) that could overflow.

    The worst case ``count * magnitude + noise_tail`` must not exceed 2^63 - 1,
    the signed range the total is decoded in; ``noise_tail`` bounds the total
    noise except with negligible probability. Returns the worst case.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if magnitude < 0 or noise_tail < 0:
        raise ValueError("magnitude and noise_tail must be non-negative")
    worst = int(count) * int(magnitude) + int(noise_tail)
    if worst > SIGNED_MAX:
        raise HeadroomError(
            f"overflow risk in the {what}: {count} values of up to {magnitude} ring units "
            f"(plus noise tail {noise_tail}) need {worst.bit_length() + 1} bits but the ring "
            f"holds 64; lower the bound, the number of fractional bits or the number of records"
        )
    return worst


def check_headroom(count: int, bound: float, frac_bits: int, noise_tail: int = 0) -> int:
    """Refuse a sum of ``count`` reals with |x| <= bound at ``frac_bits`` that could overflow.

    Worst case: ``count * round(bound * 2^frac_bits) + noise_tail`` <= 2^63 - 1.
    """
    return check_fits(count, FixedPoint(frac_bits).encode_bound(bound), noise_tail)
