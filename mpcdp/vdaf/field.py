"""The two prime fields of VDAF draft 08 (section 6.1): Field64 and Field128.

Elements are plain Python ints in ``[0, p)``; vectors are lists of them (the
draft's vectors are short: tens to thousands of elements per report, where
CPython's bigint arithmetic beats per-call numpy overhead). A field also holds
its 2-power roots of unity and the number-theoretic transform the FLP needs to
move polynomials between coefficients and values at roots of unity.

Encoding (draft 08, section 6.1): each element as ``ENCODED_SIZE`` bytes,
little-endian; decoding refuses values ``>= p``.

Source: draft-irtf-cfrg-vdaf-08, sections 6.1 (fields) and 6.1.2 (FFT-friendly
fields: ``GEN_ORDER`` and ``gen()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import cache
from typing import Any, cast

import numpy as np

from .errors import DecodeError

Elem = Any  # a field element: an int, or an object array holding one element per report


@dataclass(frozen=True, eq=False)
class Field:
    """A prime field with a multiplicative subgroup of order ``gen_order`` (a power of two)."""

    name: str
    modulus: int
    encoded_size: int
    gen_order: int
    generator: int
    _cache: dict[object, Any] = dataclass_field(default_factory=dict, repr=False)

    # --- encoding ---------------------------------------------------------------------------
    def encode_vec(self, vec: list[int]) -> bytes:
        """Little-endian fixed-size encoding of each element, concatenated."""
        size = self.encoded_size
        return b"".join([x.to_bytes(size, "little") for x in vec])

    def decode_vec(self, data: bytes, what: str = "vector") -> list[int]:
        """Inverse of :meth:`encode_vec`; refuses a ragged length or an element not below p."""
        size = self.encoded_size
        if len(data) % size:
            raise DecodeError(f"{what}: {len(data)} bytes is not a whole number of {self.name} elements")
        frm = int.from_bytes
        vec = [frm(data[i : i + size], "little") for i in range(0, len(data), size)]
        if vec and max(vec) >= self.modulus:
            raise DecodeError(f"{what}: an element is not below the {self.name} modulus")
        return vec

    def decode_matrix(self, data: bytes, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Many equal-length encoded vectors at once: an object matrix (one row per vector) and a
        boolean mask of the rows holding an element not below p (numpy, not element by element)."""
        words = np.frombuffer(data, dtype="<u8").reshape(rows, -1)
        if self.encoded_size == 8:
            return words.astype(object), np.asarray((words >= np.uint64(self.modulus)).any(axis=1))
        if self.encoded_size != 16:
            raise ValueError(f"{self.name}: only 8- and 16-byte elements decode as a matrix")
        lo, hi = words[:, 0::2], words[:, 1::2]
        p_lo, p_hi = np.uint64(self.modulus & (2**64 - 1)), np.uint64(self.modulus >> 64)
        bad = ((hi > p_hi) | ((hi == p_hi) & (lo >= p_lo))).any(axis=1)
        return lo.astype(object) | (hi.astype(object) << 64), np.asarray(bad)

    # --- arithmetic ---------------------------------------------------------------------------
    def inv(self, x: Elem) -> Elem:
        """Multiplicative inverse of a nonzero element, or elementwise of an object array of them
        (Montgomery's trick along the array: one modular inversion for all of it)."""
        if not isinstance(x, np.ndarray):
            return pow(x, -1, self.modulus)
        return np.array(self.batch_inv(x.tolist()) if len(x) else [], dtype=object)

    def power(self, x: Elem, e: int) -> Elem:
        """``x ** e`` for an element or, elementwise, an object array of them (square and multiply)."""
        if not isinstance(x, np.ndarray):
            return pow(x, e, self.modulus)
        p, out = self.modulus, cast(Elem, 1)
        while e:
            if e & 1:
                out = out * x % p
            e >>= 1
            if e:
                x = x * x % p
        return out

    def vec_add(self, a: list[int], b: list[int]) -> list[int]:
        p = self.modulus
        return [(x + y) % p for x, y in zip(a, b, strict=True)]

    def vec_sub(self, a: list[int], b: list[int]) -> list[int]:
        p = self.modulus
        return [(x - y) % p for x, y in zip(a, b, strict=True)]

    def batch_inv(self, xs: list[Elem]) -> list[Elem]:
        """Inverses of nonzero elements with one inversion (Montgomery's trick).

        Like every vector routine here, it also works elementwise on a list of object arrays
        (one entry per report), which is how preparation is vectorised across reports.
        """
        p = self.modulus
        prefix: list[Elem] = [1] * (len(xs) + 1)
        acc: Elem = 1
        for i, x in enumerate(xs):
            acc = acc * x % p
            prefix[i + 1] = acc
        inv = self.inv(acc)
        out: list[Elem] = [0] * len(xs)
        for i in range(len(xs) - 1, -1, -1):
            out[i] = inv * prefix[i] % p
            inv = inv * xs[i] % p
        return out

    def poly_eval(self, coeffs: list[int], x: int) -> int:
        """Horner evaluation of ``sum(coeffs[i] * x**i)``."""
        p = self.modulus
        acc = 0
        for c in reversed(coeffs):
            acc = (acc * x + c) % p
        return acc

    # --- roots of unity and the NTT -------------------------------------------------------------
    def root(self, n: int) -> int:
        """The principal n-th root of unity ``gen^(GEN_ORDER / n)``, n a power of two."""
        if n & (n - 1) or not 0 < n <= self.gen_order:
            raise ValueError(f"{self.name} has no root of unity of order {n}")
        key = ("root", n)
        if key not in self._cache:
            self._cache[key] = pow(self.generator, self.gen_order // n, self.modulus)
        return cast(int, self._cache[key])

    def nodes(self, n: int) -> tuple[list[int], int]:
        """The n-th roots of unity ``root(n)**k`` for k < n, and ``1/n``."""
        key = ("nodes", n)
        if key not in self._cache:
            p, w = self.modulus, self.root(n)
            nodes = [1] * n
            for k in range(1, n):
                nodes[k] = nodes[k - 1] * w % p
            self._cache[key] = (nodes, pow(n, -1, p))
        return cast(tuple[list[int], int], self._cache[key])

    def _twiddles(self, n: int, inverse: bool) -> list[list[int]]:
        key = (n, inverse)
        if key not in self._cache:
            p = self.modulus
            stages: list[list[int]] = []
            length = 2
            while length <= n:
                w = self.root(length)
                if inverse:
                    w = self.inv(w)
                half = length // 2
                ws = [1] * half
                for k in range(1, half):
                    ws[k] = ws[k - 1] * w % p
                stages.append(ws)
                length *= 2
            self._cache[key] = stages
        return cast(list[list[int]], self._cache[key])

    def ntt(self, values: list[int], inverse: bool = False) -> list[int]:
        """Evaluate a polynomial (coefficients, length n a power of two) at ``root(n)**k``, k < n.

        With ``inverse=True`` interpolate instead: values at the roots to coefficients. Inputs
        may be unreduced (any ints); sums stay unreduced inside (Python ints do not overflow,
        and only products need reducing), outputs are reduced.
        """
        p = self.modulus
        n = len(values)
        a = [values[i] for i in _bit_reversal(n)]
        length = 2
        for ws in self._twiddles(n, inverse):
            half = length // 2
            for start in range(0, n, length):
                for k in range(half):
                    i, j = start + k, start + k + half
                    u = a[i]
                    v = a[j] * ws[k] % p if k else a[j]
                    a[i] = u + v
                    a[j] = u - v
            length *= 2
        if inverse and n > 1:
            n_inv = self.nodes(n)[1]
            return [x * n_inv % p for x in a]
        return [x % p for x in a]

    def lagrange_at(self, n: int, t: int, count: int | None = None) -> list[int]:
        """Lagrange basis at t for the nodes ``root(n)**k``: ``f(t) = sum(f(w^k) * L[k])``.

        ``L[k] = (t^n - 1) * w^k / (n * (t - w^k))``; requires ``t^n != 1``. Only the first
        ``count`` entries (default n) are computed: the ones a sparse vector of values needs.
        """
        p = self.modulus
        nodes, n_inv = self.nodes(n)
        nodes = nodes[: n if count is None else count]
        scale = (self.power(t, n) - 1) * n_inv % p
        inverses = self.batch_inv([t - x for x in nodes])
        return [x * y % p * scale % p for x, y in zip(nodes, inverses, strict=True)]


@cache
def _bit_reversal(n: int) -> tuple[int, ...]:
    bits = n.bit_length() - 1
    return tuple(int(format(i, f"0{bits}b")[::-1], 2) if bits else 0 for i in range(n))


def next_power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length() if n > 1 else 1


Field64 = Field(
    name="Field64",
    modulus=2**32 * 4294967295 + 1,
    encoded_size=8,
    gen_order=2**32,
    generator=pow(7, 4294967295, 2**32 * 4294967295 + 1),
)

Field128 = Field(
    name="Field128",
    modulus=2**66 * 4611686018427387897 + 1,
    encoded_size=16,
    gen_order=2**66,
    generator=pow(7, 4611686018427387897, 2**66 * 4611686018427387897 + 1),
)
