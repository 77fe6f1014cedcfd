"""An estimate with its variance and normal-approximation confidence intervals."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """Estimated value(s), the variance of the estimator, and the sample size behind them.

    ``variance`` is the estimator's variance over the randomisation,
    conditional on the data (exact, or an unbiased plug-in where it depends
    on the unknown truth; each estimator says which).
    """

    value: np.ndarray
    variance: np.ndarray
    n: int

    @property
    def std_error(self) -> np.ndarray:
        error: np.ndarray = np.sqrt(self.variance)
        return error

    def ci(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Two-sided normal-approximation interval value +- z_{(1+level)/2} * std_error."""
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level!r}")
        z = NormalDist().inv_cdf((1 + level) / 2)
        half = z * self.std_error
        return self.value - half, self.value + half
