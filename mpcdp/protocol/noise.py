"""Distributed DP noise for a query: calibration per block, each party's piece, what a release reports.

A statistic's vector has blocks (sum, sum of squares, count, histogram).
The query's budget is split evenly over its k blocks and the guarantees add
up (sequential composition): pure epsilon/k per block for discrete Laplace
(Dwork and Roth 2014, Thm 3.16), rho/k-zCDP per block for Skellam (Bun and
Steinke 2016, Lemma 2.3), with rho the largest value whose (epsilon,
delta)-DP conversion (Prop. 1.3) stays within the query's epsilon and delta.

Neighbours: add or remove one record of one party. Sensitivity per block,
from the codec's per-coordinate sensitivity s (ring units) over d
coordinates: a record moves every coordinate of a sum block by up to s
(L1 = d s, L2 = ceil(sqrt(d) s)); it moves one histogram cell or the count
by 1 (L1 = L2 = 1).

Every party adds one piece per coordinate (:func:`noise_piece`); the pieces
of the n - t honest parties alone already give the guarantee
(:mod:`mpcdp.dp.distributed`). :func:`describe` gives the release's noise
standard deviation and confidence intervals from the noise distribution
and the released noisy values alone (the data are not looked at), so they
are post-processing: sums, counts and histogram cells from the tail bound,
means and variances from those by interval arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .. import ring
from ..dp.distributed import DEFAULT_BETA, DistributedNoise
from ..dp.loss import PrivacyLoss
from ..dp.mechanisms import CENTRAL_MECHANISMS
from ..prg import RandomSource, system_random
from .statistics import Block, SpecShape, codec_for


class NoiseSpec(SpecShape, Protocol):
    """What the noise calibration needs of a query spec (``QuerySpec`` has it)."""

    @property
    def parties(self) -> tuple[str, ...]: ...
    @property
    def colluders(self) -> int: ...
    @property
    def mechanism(self) -> str: ...
    @property
    def loss(self) -> PrivacyLoss | None: ...


Interval = tuple[np.ndarray, np.ndarray]  # per-coordinate lower and upper bounds


def mechanisms(spec: NoiseSpec) -> list[tuple[Block, DistributedNoise]]:
    """Each block of ``spec``'s statistic with its distributed-noise mechanism."""
    if spec.loss is None:
        raise ValueError("an exact query has no noise")
    blocks = codec_for(spec).blocks
    mechanism = CENTRAL_MECHANISMS.get(spec.mechanism)
    share = mechanism.share(spec.loss, len(blocks))
    n, t = len(spec.parties), spec.colluders
    return [(b, mechanism.calibrate(share, b.l1, b.l2, n, t)) for b in blocks]


def noise_piece(spec: NoiseSpec, rng: RandomSource | None = None) -> np.ndarray:
    """One party's int64 noise piece for the whole vector (ring units)."""
    rng = rng or system_random("noise")
    return np.concatenate([np.asarray(m.piece(b.length, rng), dtype=np.int64) for b, m in mechanisms(spec)])


def check_noise_headroom(spec: NoiseSpec) -> None:
    """Raise ``ring.HeadroomError`` if data plus noise (beyond a 2^-40 tail) could overflow a block."""
    total = len(spec.parties) * spec.max_records
    for b, m in mechanisms(spec):
        ring.check_fits(total, b.sensitivity, m.tail_bound(DEFAULT_BETA), what=b.name)


@dataclass(frozen=True)
class Description:
    noise_std: dict[str, float]  # block name -> standard deviation of its total noise, in value units
    intervals: dict[str, Any]  # result key -> [lower, upper]; vectors: {"half_width": w} or {"lower", "upper"}
    guarantee: dict[str, PrivacyLoss | None]  # block name -> the loss that block's honest pieces give


def describe(spec: NoiseSpec, result: dict[str, Any], confidence: float = 0.95) -> Description:
    """Noise scale and simultaneous ``confidence`` intervals for a noisy release.

    Each coordinate's interval has miss probability (1 - confidence) / m, m the
    number of coordinates (union bound), from the noise tail bound, so all
    intervals of a release hold together with probability >= ``confidence``;
    a sum vector gets one half-width for all its coordinates. Means and
    variances (scalars, or per coordinate of a vector) are bounded over the box
    those intervals span (:func:`_mean_interval`, :func:`_variance_interval`):
    conservative, sound, and post-processing of the released values only.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    mechs = mechanisms(spec)
    beta = (1 - confidence) / sum(b.length for b, _ in mechs)
    n = len(spec.parties)
    std: dict[str, float] = {}
    width: dict[str, float] = {}
    guarantee: dict[str, PrivacyLoss | None] = {}
    for b, m in mechs:
        std[b.name] = math.sqrt(m.variance(n)) / b.scale
        width[b.name] = m.tail_bound(beta) / b.scale
        guarantee[b.name] = m.guarantee(n)
    intervals: dict[str, Any] = {}
    for key in ("sum", "count"):
        if key in width and result.get(key) is not None:
            intervals[key] = _around(result[key], width[key])
    if "histogram" in width:
        intervals["histogram"] = {
            c: [v - width["histogram"], v + width["histogram"]] for c, v in result["histogram"].items()
        }
    lo, hi = (float(spec.bounds[0]), float(spec.bounds[1])) if "sum" in width else (0.0, 0.0)
    if "mean" in result:
        intervals["mean"] = _as_result(_mean_interval(result, width, lo, hi), result["sum"])
    if "variance" in result:
        intervals["variance"] = _as_result(_variance_interval(result, width, lo, hi), result["sum"])
    return Description(std, intervals, guarantee)


def _around(value: Any, w: float) -> Any:
    if isinstance(value, (list, np.ndarray)):  # the same half-width for every coordinate
        return {"half_width": w}
    return [value - w, value + w]


def _as_result(bounds: Interval | None, like: Any) -> Any:
    """[lower, upper] for a scalar entry, {"lower": array, "upper": array} for a vector one."""
    if bounds is None:
        return None
    lower, upper = bounds
    if isinstance(like, (list, np.ndarray)):
        return {"lower": lower, "upper": upper}
    return [float(lower[0]), float(upper[0])]


def _count_range(result: dict[str, Any], width: dict[str, float]) -> tuple[float, float]:
    return result["count"] - width["count"], result["count"] + width["count"]


def _mean_interval(result: dict[str, Any], width: dict[str, float], lo: float, hi: float) -> Interval | None:
    """Per coordinate, s / c over s in its sum interval and c in the count's (c > 0 needed).

    s / c is monotone in s and in c on c > 0, so the extremes are at the box's
    corners; the true mean of clipped records lies in [lo, hi], so the interval
    is clipped to it.
    """
    c_lo, c_hi = _count_range(result, width)
    if c_lo <= 0:
        return None
    s = np.atleast_1d(np.asarray(result["sum"], dtype=np.float64))
    corners = [(s + ds) / c for ds in (-width["sum"], width["sum"]) for c in (c_lo, c_hi)]
    return (np.clip(np.minimum.reduce(corners), lo, hi), np.clip(np.maximum.reduce(corners), lo, hi))


def _variance_interval(result: dict[str, Any], width: dict[str, float], lo: float, hi: float) -> Interval | None:
    """Per coordinate, the sample variance (q - s^2 / n) / (n - 1) by interval arithmetic.

    s, q and n range over their intervals independently (sound, if loose,
    since the true point lies in that box), with n >= 2 (the variance needs
    two records): s^2 / n in [min s^2 / n_max, max s^2 / n_min], the numerator
    q - s^2 / n, then the division by n - 1 > 0. The result is clipped to
    [0, ((hi - lo) / 2)^2 n_min / (n_min - 1)], the largest sample variance of
    n >= n_min values in [lo, hi] (Popoviciu's inequality times n / (n - 1)).
    """
    c_lo, c_hi = _count_range(result, width)
    n_min = max(c_lo, 2.0)
    if c_hi < n_min:
        return None
    s = np.atleast_1d(np.asarray(result["sum"], dtype=np.float64))
    q = np.atleast_1d(np.asarray(result["sum_sq"], dtype=np.float64))
    s_lo, s_hi = s - width["sum"], s + width["sum"]
    sq_hi = np.maximum(s_lo * s_lo, s_hi * s_hi)
    sq_lo = np.where((s_lo <= 0) & (s_hi >= 0), 0.0, np.minimum(s_lo * s_lo, s_hi * s_hi))
    num_lo = q - width["sum_sq"] - sq_hi / n_min
    num_hi = q + width["sum_sq"] - sq_lo / c_hi
    d_lo, d_hi = n_min - 1, c_hi - 1
    lower = np.where(num_lo >= 0, num_lo / d_hi, num_lo / d_lo)
    upper = np.where(num_hi >= 0, num_hi / d_lo, num_hi / d_hi)
    cap = ((hi - lo) / 2) ** 2 * n_min / (n_min - 1)
    return np.clip(lower, 0.0, cap), np.clip(upper, 0.0, cap)
