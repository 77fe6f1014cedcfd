"""Statistics as vectors, so that one secure sum answers each of them.

Every statistic is a *codec*: a party encodes its clipped records into one
ring vector (its local aggregate), the secure sum adds the vectors of all
parties, and the coordinator decodes the total into the answer:

    sum        [sum x]                       (dimension d)
    count      [n]
    mean       [sum x, n]                    -> sum / n
    variance   [sum x, sum x^2, n]           -> sample variance (n - 1 denominator), with its parts
    histogram  [count of each category]      (one-hot per record)

Real-valued coordinates are fixed point (``frac_bits``); counts are integers.
``sensitivity`` gives, per coordinate and in ring units, how much one record
can move it (add/remove-one-record neighbours): the DP layer sizes noise by it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import ring
from .spec import QuerySpec


@dataclass(frozen=True)
class Block:
    """A run of coordinates sharing one meaning and one scale."""

    name: str  # "sum", "sum_sq", "count" or "histogram"
    length: int
    scale: int  # ring units per unit of value
    sensitivity: int  # max change, in ring units, from adding or removing one record


class Statistic:
    """Encoder/decoder for one query's statistic."""

    def __init__(self, spec: QuerySpec):
        self.spec = spec
        self.codec = ring.FixedPoint(spec.frac_bits)
        d = spec.dimension
        fx = self.codec.scale
        if spec.statistic == "histogram":
            self.blocks = (Block("histogram", len(spec.categories), 1, 1),)
        else:
            lo, hi = map(float, spec.bounds)
            mag = max(abs(lo), abs(hi))
            blocks = {  # built only for the statistic asked: a bound fine for a sum may not be squared
                "sum": lambda: Block("sum", d, fx, self.codec.encode_bound(mag)),
                "sum_sq": lambda: Block("sum_sq", d, fx, self.codec.encode_bound(mag * mag)),
                "count": lambda: Block("count", 1, 1, 1),
            }
            names = {
                "sum": ("sum",),
                "count": ("count",),
                "mean": ("sum", "count"),
                "variance": ("sum", "sum_sq", "count"),
            }[spec.statistic]
            self.blocks = tuple(blocks[n]() for n in names)

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

    def clip(self, records) -> np.ndarray:
        """Records as a (m, d) float array clipped to the spec's bounds.

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
        if not np.all(np.isfinite(arr)):
            raise ValueError("records contain NaN or infinite values")
        lo, hi = map(float, self.spec.bounds)
        return np.clip(arr, lo, hi)

    def encode(self, records) -> np.ndarray:
        """This party's local aggregate vector in the ring."""
        spec = self.spec
        if spec.statistic == "histogram":
            labels = list(np.asarray(records, dtype=object).reshape(-1)) if np.size(records) else []
            index = {c: i for i, c in enumerate(spec.categories)}
            counts = np.zeros(len(spec.categories), dtype=np.int64)
            for label in labels:
                i = index.get(str(label))
                if i is not None:  # undeclared categories are dropped, like clipping
                    counts[i] += 1
            self._check_count(len(labels))
            return ring.as_ring(counts)
        if spec.statistic == "count":
            n = int(np.shape(records)[0]) if np.ndim(records) else 1
            self._check_count(n)
            return ring.as_ring(np.array([n]))
        x = self.clip(records)
        self._check_count(x.shape[0])
        parts = {
            "sum": lambda: self.codec.encode(x).sum(axis=0, dtype=ring.DTYPE),
            "sum_sq": lambda: self.codec.encode(x * x).sum(axis=0, dtype=ring.DTYPE),
            "count": lambda: ring.as_ring(np.array([x.shape[0]])),
        }
        return np.concatenate([parts[b.name]() for b in self.blocks])

    def _check_count(self, n: int) -> None:
        if n > self.spec.max_records:
            # not n itself: this message goes back to the coordinator, and a record count is private data
            raise ValueError(f"this party holds more records than the query's max_records={self.spec.max_records}")

    # -- coordinator side ---------------------------------------------------

    def split(self, total) -> dict[str, np.ndarray]:
        """The decoded blocks of a summed vector, each in its own units."""
        values = ring.to_signed(ring.as_ring(total)).astype(np.float64)
        if values.size != self.length:
            raise ValueError(f"expected a vector of length {self.length}, got {values.size}")
        out, start = {}, 0
        for b in self.blocks:
            out[b.name] = values[start : start + b.length] / b.scale
            start += b.length
        return out

    def decode(self, total, arrays: bool = False) -> dict:
        """The answer from the summed vector: a dict with the statistic and its parts.

        Vector entries are lists, or float64 arrays with ``arrays`` (no per-element
        Python objects: what a transport that packs them again wants)."""
        parts = self.split(total)
        _scalar = _as_array if arrays else _as_list
        stat = self.spec.statistic
        if stat == "sum":
            return {"sum": _scalar(parts["sum"])}
        if stat == "count":
            return {"count": float(parts["count"][0])}
        if stat == "histogram":
            return {"histogram": dict(zip(self.spec.categories, parts["histogram"].tolist()))}
        n = float(parts["count"][0])
        s = parts["sum"]
        result = {"count": n, "sum": _scalar(s)}
        # Clipping to the bounds is post-processing: free under DP, a no-op on exact sums,
        # but it biases a noisy mean towards the interior.
        result["mean"] = _scalar(np.clip(s / n, *map(float, self.spec.bounds))) if n > 0 else None
        if stat == "variance":
            ss = parts["sum_sq"]
            result["sum_sq"] = _scalar(ss)
            result["variance"] = _scalar(np.maximum((ss - s * s / n) / (n - 1), 0.0)) if n > 1 else None
        return result


def _as_list(v: np.ndarray):
    return float(v[0]) if v.size == 1 else v.tolist()


def _as_array(v: np.ndarray):
    return float(v[0]) if v.size == 1 else v


def statistic_for(spec: QuerySpec) -> Statistic:
    return Statistic(spec)
