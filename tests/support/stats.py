"""Shared test helpers."""

from __future__ import annotations

import numpy as np
from scipy import stats

P_MIN = 1e-3  # fixed seeds: a correct sampler passes deterministically


def chi_square_pvalue(draws: np.ndarray, support: np.ndarray, pmf: np.ndarray, bins: int = 60) -> float:
    """Chi-square p-value of integer draws against a pmf given on ``support`` (tails lumped)."""
    pmf = pmf / pmf.sum()
    cdf = np.cumsum(pmf)
    cuts = np.unique(np.searchsorted(cdf, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = np.concatenate([[support[0] - 0.5], support[cuts] + 0.5, [support[-1] + 0.5]])
    expected = np.diff(np.concatenate([[0.0], cdf[cuts], [1.0]])) * draws.size
    clipped = np.clip(draws, support[0], support[-1])
    observed, _ = np.histogram(clipped, bins=edges)
    keep = expected > 0
    return stats.chisquare(observed[keep], expected[keep] * observed.sum() / expected[keep].sum()).pvalue


# --- from test_dp_distributed.py


def nb_difference_pmf(r: float, alpha: float, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact pmf of NB(r, alpha) - NB(r, alpha) on [-width, width] (numerical convolution)."""
    k = np.arange(0, 2 * width + 1)
    nb = stats.nbinom.pmf(k, r, 1 - alpha)
    diff = np.convolve(nb, nb[::-1])  # index i <-> value i - 2 width
    centre = 2 * width
    return np.arange(-width, width + 1), diff[centre - width : centre + width + 1]
