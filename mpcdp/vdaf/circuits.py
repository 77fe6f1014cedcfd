"""The validity circuits of Prio3 in VDAF draft 08, section 7.4.

Each circuit evaluates to zero on a valid encoded measurement (and, for the
ones with joint randomness, to nonzero with probability close to 1 on an
invalid one). Affine constants are divided by the number of shares so that
the aggregators' shares of the output sum to the output.

- :class:`Count` (7.4.1): one element, ``x * x - x == 0``, so x is 0 or 1.
- :class:`Sum` (7.4.2): an integer in ``[0, 2^bits)`` as ``bits`` bits, each checked
  with ``PolyEval(x^2 - x)`` and combined with powers of the joint randomness.
- :class:`SumVec` (7.4.3): ``length`` integers of ``bits`` bits each; the bits are
  range-checked in chunks by ``ParallelSum(Mul, chunk_length)``.
- :class:`Histogram` (7.4.4): a one-hot vector: every entry a bit (as SumVec) and
  the entries summing to 1.
- :class:`MultiHotHistogram` (7.4.5): a vector of bits with at most ``max_count`` ones;
  the count is proved by also encoding ``count + offset`` in bits.
"""

from __future__ import annotations

from typing import Any

from .field import Elem, Field, Field64, Field128
from .flp import Gadget, GadgetCall, Mul, ParallelSum, PolyEval


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value >= high):
        bound = f"[{low}, {high})" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return value


def _bits(value: int, bits: int) -> list[int]:
    return [(value >> i) & 1 for i in range(bits)]


def _from_bits(field: Field, bits: list[Elem]) -> Elem:
    return sum(b * (1 << i) for i, b in enumerate(bits)) % field.modulus


def _range_check(
    field: Field, meas: list[Elem], r: Elem, num_shares: int, chunk_length: int, calls: int, call: GadgetCall
) -> Elem:
    """``sum_i r^(i+1) * m_i * (m_i - 1)`` over all entries, chunk by chunk through gadget 0.

    With shares, ``1`` becomes ``1 / num_shares`` so that the shares sum to the true check.
    Gadget inputs are left unreduced (gadgets and wire polynomials reduce what they use).
    """
    p = field.modulus
    shares_inv = field.inv(num_shares)
    n = len(meas)
    total: Elem = 0
    r_power: Elem = 1
    for c in range(calls):
        inputs: list[Elem] = []
        for index in range(c * chunk_length, (c + 1) * chunk_length):
            r_power = r_power * r % p
            m = meas[index] if index < n else 0
            inputs.append(r_power * m)
            inputs.append(m - shares_inv)
        total += call(0, inputs)
    return total % p


class Count:
    """A 0/1 measurement (a yes/no answer), summed over reports."""

    MEAS_LEN = OUTPUT_LEN = 1
    JOINT_RAND_LEN = 0

    def __init__(self) -> None:
        self.field = Field64
        self.gadgets: list[Gadget] = [Mul()]
        self.gadget_calls = [1]

    def eval(self, meas: list[Elem], joint_rand: list[Elem], num_shares: int, call: GadgetCall) -> Elem:
        return (call(0, [meas[0], meas[0]]) - meas[0]) % self.field.modulus

    def encode(self, measurement: Any) -> list[int]:
        if measurement not in (0, 1) or not isinstance(measurement, (bool, int)):
            raise ValueError(f"a Count measurement is 0 or 1 (or a bool), got {measurement!r}")
        return [int(measurement)]

    def truncate(self, meas: list[Elem]) -> list[Elem]:
        return list(meas)

    def decode(self, output: list[int], num_measurements: int) -> int:
        return output[0]


class Sum:
    """An integer in ``[0, 2^bits)``, summed over reports."""

    JOINT_RAND_LEN = 1
    OUTPUT_LEN = 1

    def __init__(self, bits: int):
        self.bits = _check_int("bits", bits, 1, 128)
        self.field = Field128
        self.MEAS_LEN = bits
        self.gadgets: list[Gadget] = [PolyEval((0, Field128.modulus - 1, 1))]
        self.gadget_calls = [bits]

    def eval(self, meas: list[Elem], joint_rand: list[Elem], num_shares: int, call: GadgetCall) -> Elem:
        p, r = self.field.modulus, joint_rand[0]
        out: Elem = 0
        r_power: Elem = 1
        for b in meas:
            r_power = r_power * r % p
            out += r_power * call(0, [b])
        return out % p

    def encode(self, measurement: Any) -> list[int]:
        _check_int("a Sum measurement", measurement, 0, 1 << self.bits)
        return _bits(measurement, self.bits)

    def truncate(self, meas: list[Elem]) -> list[Elem]:
        return [_from_bits(self.field, meas)]

    def decode(self, output: list[int], num_measurements: int) -> int:
        return output[0]


class SumVec:
    """``length`` integers in ``[0, 2^bits)``, summed entry-wise over reports."""

    JOINT_RAND_LEN = 1

    def __init__(self, length: int, bits: int, chunk_length: int):
        self.length = _check_int("length", length, 1)
        self.bits = _check_int("bits", bits, 1, 128)
        self.chunk_length = _check_int("chunk_length", chunk_length, 1)
        self.field = Field128
        self.MEAS_LEN = length * bits
        self.OUTPUT_LEN = length
        self.gadgets: list[Gadget] = [ParallelSum(Mul(), chunk_length)]
        self.gadget_calls = [-(-self.MEAS_LEN // chunk_length)]

    def eval(self, meas: list[Elem], joint_rand: list[Elem], num_shares: int, call: GadgetCall) -> Elem:
        return _range_check(self.field, meas, joint_rand[0], num_shares, self.chunk_length, self.gadget_calls[0], call)

    def encode(self, measurement: Any) -> list[int]:
        if len(measurement) != self.length:
            raise ValueError(f"a SumVec measurement has {self.length} entries, got {len(measurement)}")
        out: list[int] = []
        for value in measurement:
            out += _bits(_check_int("a SumVec entry", value, 0, 1 << self.bits), self.bits)
        return out

    def truncate(self, meas: list[Elem]) -> list[Elem]:
        b = self.bits
        return [_from_bits(self.field, meas[i * b : (i + 1) * b]) for i in range(self.length)]

    def decode(self, output: list[int], num_measurements: int) -> list[int]:
        return list(output)


class Histogram:
    """A bucket index in ``[0, length)``, counted per bucket over reports."""

    JOINT_RAND_LEN = 2

    def __init__(self, length: int, chunk_length: int):
        self.length = _check_int("length", length, 1)
        self.chunk_length = _check_int("chunk_length", chunk_length, 1)
        self.field = Field128
        self.MEAS_LEN = self.OUTPUT_LEN = length
        self.gadgets: list[Gadget] = [ParallelSum(Mul(), chunk_length)]
        self.gadget_calls = [-(-length // chunk_length)]

    def eval(self, meas: list[Elem], joint_rand: list[Elem], num_shares: int, call: GadgetCall) -> Elem:
        p = self.field.modulus
        range_check = _range_check(
            self.field, meas, joint_rand[0], num_shares, self.chunk_length, self.gadget_calls[0], call
        )
        sum_check = (sum(meas) - self.field.inv(num_shares)) % p
        r = joint_rand[1]
        return (r * range_check + r * r % p * sum_check) % p

    def encode(self, measurement: Any) -> list[int]:
        index = _check_int("a Histogram measurement (a bucket index)", measurement, 0, self.length)
        return [int(i == index) for i in range(self.length)]

    def truncate(self, meas: list[Elem]) -> list[Elem]:
        return list(meas)

    def decode(self, output: list[int], num_measurements: int) -> list[int]:
        return list(output)


class MultiHotHistogram:
    """A set of buckets (bits, at most ``max_count`` of them set), counted per bucket."""

    JOINT_RAND_LEN = 2

    def __init__(self, length: int, max_count: int, chunk_length: int):
        self.length = _check_int("length", length, 1)
        self.max_count = _check_int("max_count", max_count, 1, length + 1)
        self.chunk_length = _check_int("chunk_length", chunk_length, 1)
        self.field = Field128
        self.bits_for_count = max_count.bit_length()
        self.offset = (1 << self.bits_for_count) - 1 - max_count
        self.MEAS_LEN = length + self.bits_for_count
        self.OUTPUT_LEN = length
        self.gadgets: list[Gadget] = [ParallelSum(Mul(), chunk_length)]
        self.gadget_calls = [-(-self.MEAS_LEN // chunk_length)]

    def eval(self, meas: list[Elem], joint_rand: list[Elem], num_shares: int, call: GadgetCall) -> Elem:
        f, p = self.field, self.field.modulus
        range_check = _range_check(f, meas, joint_rand[0], num_shares, self.chunk_length, self.gadget_calls[0], call)
        weight = sum(meas[: self.length])
        claimed = _from_bits(f, meas[self.length :])
        count_check = (weight + self.offset * f.inv(num_shares) - claimed) % p
        r = joint_rand[1]
        return (r * range_check + r * r % p * count_check) % p

    def encode(self, measurement: Any) -> list[int]:
        if len(measurement) != self.length:
            raise ValueError(f"a MultiHotHistogram measurement has {self.length} entries, got {len(measurement)}")
        buckets = [
            int(_check_int("a MultiHotHistogram entry", int(b) if isinstance(b, bool) else b, 0, 2))
            for b in measurement
        ]
        if sum(buckets) > self.max_count:
            raise ValueError(f"at most {self.max_count} buckets may be set, got {sum(buckets)}")
        return buckets + _bits(sum(buckets) + self.offset, self.bits_for_count)

    def truncate(self, meas: list[Elem]) -> list[Elem]:
        return list(meas[: self.length])

    def decode(self, output: list[int], num_measurements: int) -> list[int]:
        return list(output)


__all__ = ["Count", "Field64", "Field128", "Histogram", "MultiHotHistogram", "Sum", "SumVec"]
