"""Statistics, one class each in the registry :data:`STATISTICS`; the linear ones as vectors for one secure sum.

A *linear* statistic is answered by one secure sum: a party encodes its clipped records into one ring vector
(its local aggregate), the secure sum adds the vectors of all parties, and the coordinator decodes the total:

    sum        [sum x]                       (dimension d)
    count      [n]
    mean       [sum x, n]                    -> sum / n
    variance   [sum x, sum x^2, n]           -> sample variance (n - 1 denominator), with its parts
    histogram  [count of each category]      (one-hot per record)

Real-valued coordinates are fixed point (``frac_bits``); counts are integers. Each :class:`Block` gives, per
coordinate and in ring units, how much one record can move it (neighbors: add or remove one record of one
party): the DP layer sizes noise by it.

Comparison statistics (max, argmax, threshold, quantile, ...) are not linear: they need the honest-majority
engine (:mod:`mpcdp.mpc`), which registers them here too (``engine = Engine.HONEST_MAJORITY``) so that one
registry names every statistic. A new linear statistic is one :class:`LinearStatistic` subclass and one
``STATISTICS.register`` call.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Protocol

import numpy as np

from .. import ring
from ..registry import Registry
from .errors import SpecError
from .intervals import around, as_result, mean_interval, variance_interval

MAX_DIMENSION = 1 << 24

__all__ = [
    "MAX_DIMENSION",
    "STATISTICS",
    "Block",
    "Engine",
    "LinearStatistic",
    "QueryCodec",
    "Reads",
    "SpecShape",
    "Statistic",
    "codec_for",
]


class SpecShape(Protocol):
    """What a statistic needs of a query spec (``mpcdp.protocol.spec.QuerySpec`` has it)."""

    @property
    def statistic(self) -> str: ...
    @property
    def dimension(self) -> int: ...
    @property
    def bounds(self) -> tuple[float, float]: ...
    @property
    def categories(self) -> tuple[str, ...]: ...
    @property
    def frac_bits(self) -> int: ...
    @property
    def max_records(self) -> int: ...


@dataclass(frozen=True)
class Block:
    """A run of coordinates sharing one meaning and one scale.

    ``spread``: one record moves every coordinate by up to ``sensitivity`` (a sum of vectors); otherwise it
    moves one coordinate by ``sensitivity`` (a count, one histogram cell).
    """

    name: str  # "sum", "sum_sq", "count" or "histogram"
    length: int
    scale: int  # ring units per unit of value
    sensitivity: int  # max change of one coordinate, in ring units, from adding or removing one record
    spread: bool = False

    @property
    def l1(self) -> int:
        """L1 sensitivity of the whole block (ring units)."""
        return self.length * self.sensitivity if self.spread else self.sensitivity

    @property
    def l2(self) -> int:
        """L2 sensitivity of the whole block (ring units), rounded up."""
        return math.ceil(math.sqrt(self.length) * self.sensitivity) if self.spread else self.sensitivity


class Engine(Enum):
    """What computes a statistic."""

    SECURE_SUM = "secure-sum"  # linear: one secure sum of local vectors (mpcdp.protocol)
    HONEST_MAJORITY = "honest-majority"  # comparisons under the honest-majority engine (mpcdp.mpc)


class Reads(Enum):
    """What a party's data must give a linear statistic."""

    NUMBERS = "numbers"  # (m, d) real records, clipped to the bounds
    ROWS = "rows"  # only how many records there are
    LABELS = "labels"  # one category label per record


class Statistic(ABC):
    """Every statistic of the registry: a name, its wire enum value, the engine that computes it."""

    name: ClassVar[str]
    wire: ClassVar[int]
    engine: ClassVar[Engine]
    summary: ClassVar[str] = ""

    def __repr__(self) -> str:
        return f"<statistic {self.name}>"


STATISTICS: Registry[Statistic] = Registry("statistic")


class LinearStatistic(Statistic):
    """A statistic answered by one secure sum: it owns its blocks, encoding, decoding and validation."""

    engine = Engine.SECURE_SUM
    reads: ClassVar[Reads] = Reads.NUMBERS
    uses_bounds: ClassVar[bool] = True  # records are clipped to the spec's bounds

    def validate(self, spec: SpecShape) -> None:
        """Raise :class:`SpecError` if the spec's bounds or categories do not fit this statistic."""
        if spec.categories:
            raise SpecError("categories", f"only a histogram takes categories, not {self.name}")
        if not self.uses_bounds:
            return
        if len(spec.bounds) != 2 or not all(_finite(b) for b in spec.bounds):
            raise SpecError("bounds", "must be two finite numbers (lo, hi)")
        lo, hi = map(float, spec.bounds)
        if lo > hi:
            raise SpecError("bounds", f"lo must not exceed hi, got ({lo:g}, {hi:g})")

    @abstractmethod
    def blocks(self, spec: SpecShape) -> tuple[Block, ...]:
        """The blocks of this statistic's vector for ``spec``."""

    @abstractmethod
    def encode(self, codec: QueryCodec, records: Any) -> np.ndarray:
        """One party's local aggregate (ring vector) of its ``records``."""

    @abstractmethod
    def decode(
        self, spec: SpecShape, parts: dict[str, np.ndarray], as_value: Callable[[np.ndarray], Any]
    ) -> dict[str, Any]:
        """The answer from the decoded blocks (``parts``); ``as_value`` turns a vector into a result entry."""

    @abstractmethod
    def intervals(self, spec: SpecShape, result: dict[str, Any], width: dict[str, float]) -> dict[str, Any]:
        """Confidence intervals of a noisy ``result`` from each block's noise half-width (``width``, value
        units): post-processing of the release (:mod:`mpcdp.protocol.intervals`)."""


class _Moments(LinearStatistic):
    """Sums of powers of the clipped records: power 1 (sum), 2 (sum of squares), 0 (count)."""

    powers: ClassVar[tuple[int, ...]]
    _NAMES: ClassVar[dict[int, str]] = {0: "count", 1: "sum", 2: "sum_sq"}

    def blocks(self, spec: SpecShape) -> tuple[Block, ...]:
        codec = ring.FixedPoint(spec.frac_bits)
        mag = max(abs(float(b)) for b in spec.bounds)
        # built only for the powers asked: a bound fine for a sum may not be squared
        return tuple(
            Block("count", 1, 1, 1)
            if p == 0
            else Block(self._NAMES[p], spec.dimension, codec.scale, codec.encode_bound(mag**p), spread=True)
            for p in self.powers
        )

    def encode(self, codec: QueryCodec, records: Any) -> np.ndarray:
        x = codec.checked(records)  # the party's records: read, never changed
        codec.check_count(x.shape[0])
        lo, hi = map(float, codec.spec.bounds)
        parts = {}
        for p in sorted(self.powers, reverse=True):
            if p == 0:
                parts[p] = ring.as_ring(np.array([x.shape[0]]))
            elif p == 1:  # every sum, the long vectors: clipped and encoded in one pass, into a new array
                encoded = codec.fixed.encode_clipped(x, lo, hi)
            else:
                encoded = codec.fixed.encode(np.clip(x, lo, hi) ** p, in_place=True)  # a fresh array: changed
            if p:
                parts[p] = encoded.reshape(-1) if x.shape[0] == 1 else encoded.sum(axis=0, dtype=ring.DTYPE)
        vectors = [parts[p] for p in self.powers]
        return vectors[0] if len(vectors) == 1 else np.concatenate(vectors)


class Sum(_Moments):
    name = "sum"
    wire = 1
    powers: ClassVar[tuple[int, ...]] = (1,)
    summary = "sum of the records (per coordinate)"

    def decode(
        self, spec: SpecShape, parts: dict[str, np.ndarray], as_value: Callable[[np.ndarray], Any]
    ) -> dict[str, Any]:
        return {"sum": as_value(parts["sum"])}

    def intervals(self, spec: SpecShape, result: dict[str, Any], width: dict[str, float]) -> dict[str, Any]:
        return {"sum": around(result["sum"], width["sum"])}


class Count(LinearStatistic):
    name = "count"
    wire = 2
    summary = "number of records"
    reads = Reads.ROWS
    uses_bounds = False

    def blocks(self, spec: SpecShape) -> tuple[Block, ...]:
        return (Block("count", 1, 1, 1),)

    def encode(self, codec: QueryCodec, records: Any) -> np.ndarray:
        n = int(np.shape(records)[0]) if np.ndim(records) else 1
        codec.check_count(n)
        return ring.as_ring(np.array([n]))

    def decode(
        self, spec: SpecShape, parts: dict[str, np.ndarray], as_value: Callable[[np.ndarray], Any]
    ) -> dict[str, Any]:
        return {"count": float(parts["count"][0])}

    def intervals(self, spec: SpecShape, result: dict[str, Any], width: dict[str, float]) -> dict[str, Any]:
        return {"count": around(result["count"], width["count"])}


class Mean(_Moments):
    name = "mean"
    wire = 3
    powers: ClassVar[tuple[int, ...]] = (1, 0)
    summary = "mean of the records (per coordinate), with its sum and count"

    def decode(
        self, spec: SpecShape, parts: dict[str, np.ndarray], as_value: Callable[[np.ndarray], Any]
    ) -> dict[str, Any]:
        n = float(parts["count"][0])
        s = parts["sum"]
        # Clipping to the bounds is post-processing: free under DP, a no-op on exact sums,
        # but it biases a noisy mean towards the interior.
        lo, hi = (float(b) for b in spec.bounds)
        mean = as_value(np.clip(s / n, lo, hi)) if n > 0 else None
        return {"count": n, "sum": as_value(s), "mean": mean}

    def intervals(self, spec: SpecShape, result: dict[str, Any], width: dict[str, float]) -> dict[str, Any]:
        lo, hi = (float(b) for b in spec.bounds)
        return {
            "sum": around(result["sum"], width["sum"]),
            "count": around(result["count"], width["count"]),
            "mean": as_result(mean_interval(result, width, lo, hi), result["sum"]),
        }


class Variance(Mean):
    name = "variance"
    wire = 4
    powers: ClassVar[tuple[int, ...]] = (1, 2, 0)
    summary = "sample variance of the records (per coordinate), with its sums and count"

    def decode(
        self, spec: SpecShape, parts: dict[str, np.ndarray], as_value: Callable[[np.ndarray], Any]
    ) -> dict[str, Any]:
        result = super().decode(spec, parts, as_value)
        n, s, ss = result["count"], parts["sum"], parts["sum_sq"]
        result["sum_sq"] = as_value(ss)
        result["variance"] = as_value(np.maximum((ss - s * s / n) / (n - 1), 0.0)) if n > 1 else None
        return result

    def intervals(self, spec: SpecShape, result: dict[str, Any], width: dict[str, float]) -> dict[str, Any]:
        lo, hi = (float(b) for b in spec.bounds)
        intervals = super().intervals(spec, result, width)
        intervals["variance"] = as_result(variance_interval(result, width, lo, hi), result["sum"])
        return intervals


class Histogram(LinearStatistic):
    name = "histogram"
    wire = 5
    summary = "count of records per declared category"
    reads = Reads.LABELS
    uses_bounds = False

    def validate(self, spec: SpecShape) -> None:
        if not spec.categories:
            raise SpecError("categories", "a histogram needs its categories declared up front")
        if len(set(spec.categories)) != len(spec.categories):
            raise SpecError("categories", "categories must be distinct")
        if len(spec.categories) > MAX_DIMENSION:
            raise SpecError("categories", f"at most {MAX_DIMENSION} categories")

    def blocks(self, spec: SpecShape) -> tuple[Block, ...]:
        return (Block("histogram", len(spec.categories), 1, 1),)

    def encode(self, codec: QueryCodec, records: Any) -> np.ndarray:
        labels = list(np.asarray(records, dtype=object).reshape(-1)) if np.size(records) else []
        index = {c: i for i, c in enumerate(codec.spec.categories)}
        counts = np.zeros(len(codec.spec.categories), dtype=np.int64)
        for label in labels:
            i = index.get(str(label))
            if i is not None:  # undeclared categories are dropped, like clipping
                counts[i] += 1
        codec.check_count(len(labels))
        return ring.as_ring(counts)

    def decode(
        self, spec: SpecShape, parts: dict[str, np.ndarray], as_value: Callable[[np.ndarray], Any]
    ) -> dict[str, Any]:
        return {"histogram": dict(zip(spec.categories, parts["histogram"].tolist(), strict=True))}

    def intervals(self, spec: SpecShape, result: dict[str, Any], width: dict[str, float]) -> dict[str, Any]:
        w = width["histogram"]
        return {"histogram": {c: [v - w, v + w] for c, v in result["histogram"].items()}}


for _statistic in (Sum(), Count(), Mean(), Variance(), Histogram()):
    STATISTICS.register(_statistic)


def linear(name: str) -> LinearStatistic:
    """The registered statistic ``name``, if a secure sum computes it; ``SpecError`` otherwise."""
    try:
        statistic = STATISTICS.get(name)
    except ValueError as exc:
        raise SpecError("statistic", str(exc)) from None
    if not isinstance(statistic, LinearStatistic):
        raise SpecError(
            "statistic", f"{name} is computed by the honest-majority engine (mpcdp.mpc), not by a secure sum"
        )
    return statistic


class QueryCodec:
    """One query's statistic bound to its spec: encoder (party side) and decoder (coordinator side)."""

    def __init__(self, spec: SpecShape):
        self.spec = spec
        self.statistic = linear(spec.statistic)
        self.fixed = ring.FixedPoint(spec.frac_bits)
        self.blocks = self.statistic.blocks(spec)

    @property
    def length(self) -> int:
        return sum(b.length for b in self.blocks)

    def sensitivities(self) -> np.ndarray:
        """Per-coordinate sensitivity (ring units) under add/remove-one-record."""
        return np.concatenate([np.full(b.length, b.sensitivity, dtype=np.int64) for b in self.blocks])

    def check_headroom(self, total_records: int, noise_tail: int = 0) -> None:
        """Raise ``HeadroomError`` if any coordinate of the total could overflow."""
        for b in self.blocks:
            ring.check_fits(total_records, b.sensitivity, noise_tail, what=b.name)

    # -- party side ---------------------------------------------------------

    def clip(self, records: Any) -> np.ndarray:
        """Records as a (m, d) float array clipped to the spec's bounds (:meth:`checked` first)."""
        lo, hi = map(float, self.spec.bounds)
        clipped: np.ndarray = np.clip(self.checked(records), lo, hi)
        return clipped

    def checked(self, records: Any) -> np.ndarray:
        """Records as a (m, d) float array (a view where they are one already: not to be changed), unclipped.

        NaN or infinite records are refused (clipping would silently turn +inf
        into the upper bound, hiding a data error).
        """
        arr = np.asarray(records, dtype=np.float64)
        if arr.ndim == 0:
            arr = arr.reshape(1, 1)
        elif arr.ndim == 1:
            arr = arr.reshape(-1, 1) if self.spec.dimension == 1 else arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != self.spec.dimension:
            # the width only: the number of rows would tell the coordinator how many records this party holds
            width = arr.shape[-1] if arr.ndim else 1
            raise ValueError(f"records must have dimension {self.spec.dimension}, got {width} columns")
        # the sum is finite iff every record is (NaN and infinities propagate), unless finite ones overflow it
        if not math.isfinite(float(np.sum(arr))) and not np.all(np.isfinite(arr)):
            raise ValueError("records contain NaN or infinite values")
        return arr

    def encode(self, records: Any) -> np.ndarray:
        """This party's local aggregate vector in the ring."""
        return self.statistic.encode(self, records)

    def check_count(self, n: int) -> None:
        if n > self.spec.max_records:
            # not n itself: this message goes back to the coordinator, and a record count is private data
            raise ValueError(f"this party holds more records than the query's max_records={self.spec.max_records}")

    # -- coordinator side ---------------------------------------------------

    def split(self, total: Any) -> dict[str, np.ndarray]:
        """The decoded blocks of a summed vector, each in its own units."""
        values = ring.to_signed(ring.as_ring(total)).astype(np.float64)
        if values.size != self.length:
            raise ValueError(f"expected a vector of length {self.length}, got {values.size}")
        out: dict[str, np.ndarray] = {}
        start = 0
        for b in self.blocks:
            block = out[b.name] = values[start : start + b.length]
            if b.scale != 1:
                np.divide(block, b.scale, out=block)  # in place: one pass, no second megabyte array
            start += b.length
        return out

    def decode(self, total: Any, arrays: bool = False) -> dict[str, Any]:
        """The answer from the summed vector: a dict with the statistic and its parts.

        Vector entries are lists, or float64 arrays with ``arrays`` (no per-element
        Python objects: what a transport that packs them again wants)."""
        return self.statistic.decode(self.spec, self.split(total), _as_array if arrays else _as_list)


def _as_list(v: np.ndarray) -> float | list[float]:
    return float(v[0]) if v.size == 1 else list(v.tolist())


def _as_array(v: np.ndarray) -> float | np.ndarray:
    return float(v[0]) if v.size == 1 else v


def _finite(x: object) -> bool:
    try:
        return math.isfinite(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def codec_for(spec: SpecShape) -> QueryCodec:
    """The codec of ``spec``'s (linear) statistic."""
    return QueryCodec(spec)
