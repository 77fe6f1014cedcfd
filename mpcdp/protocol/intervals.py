"""Confidence intervals of a noisy release, from the released values and the noise's tail widths alone.

``width[block]`` is the half-width, in value units, that the total noise of each coordinate of ``block``
stays within (with the release's per-coordinate miss probability). Sums, counts and histogram cells get
value +- width; means and variances are bounded over the box those intervals span, by interval arithmetic:
conservative, sound, and post-processing of the released values only (no data are looked at).
"""

from __future__ import annotations

from typing import Any

import numpy as np

Interval = tuple[np.ndarray, np.ndarray]  # per-coordinate lower and upper bounds


def around(value: Any, w: float) -> Any:
    if isinstance(value, (list, np.ndarray)):  # the same half-width for every coordinate
        return {"half_width": w}
    return [value - w, value + w]


def as_result(bounds: Interval | None, like: Any) -> Any:
    """[lower, upper] for a scalar entry, {"lower": array, "upper": array} for a vector one."""
    if bounds is None:
        return None
    lower, upper = bounds
    if isinstance(like, (list, np.ndarray)):
        return {"lower": lower, "upper": upper}
    return [float(lower[0]), float(upper[0])]


def count_range(result: dict[str, Any], width: dict[str, float]) -> tuple[float, float]:
    return result["count"] - width["count"], result["count"] + width["count"]


def mean_interval(result: dict[str, Any], width: dict[str, float], lo: float, hi: float) -> Interval | None:
    """Per coordinate, s / c over s in its sum interval and c in the count's (c > 0 needed).

    s / c is monotone in s and in c on c > 0, so the extremes are at the box's
    corners; the true mean of clipped records lies in [lo, hi], so the interval
    is clipped to it.
    """
    c_lo, c_hi = count_range(result, width)
    if c_lo <= 0:
        return None
    s = np.atleast_1d(np.asarray(result["sum"], dtype=np.float64))
    corners = [(s + ds) / c for ds in (-width["sum"], width["sum"]) for c in (c_lo, c_hi)]
    return (np.clip(np.minimum.reduce(corners), lo, hi), np.clip(np.maximum.reduce(corners), lo, hi))


def variance_interval(result: dict[str, Any], width: dict[str, float], lo: float, hi: float) -> Interval | None:
    """Per coordinate, the sample variance (q - s^2 / n) / (n - 1) by interval arithmetic.

    s, q and n range over their intervals independently (sound, if loose,
    since the true point lies in that box), with n >= 2 (the variance needs
    two records): s^2 / n in [min s^2 / n_max, max s^2 / n_min], the numerator
    q - s^2 / n, then the division by n - 1 > 0. The result is clipped to
    [0, ((hi - lo) / 2)^2 n_min / (n_min - 1)], the largest sample variance of
    n >= n_min values in [lo, hi] (Popoviciu's inequality times n / (n - 1)).
    """
    c_lo, c_hi = count_range(result, width)
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
