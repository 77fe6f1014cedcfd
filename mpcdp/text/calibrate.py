"""Choose epsilon by what users understand: the fraction of words kept, N_w.

N_w(epsilon), the chance that a word is replaced by itself, is estimated
over a fixed sample of words (a corpus's word occurrences, or a uniform
vocabulary sample), with the same random stream at every epsilon (common
random numbers), so the estimated curve is smooth and almost always
monotone. A log-spaced sweep over the mechanism's valid range brackets the
target, then bisection on log epsilon narrows it. When the target lies
outside what the mechanism reaches over that range (truncated Gumbel's N_w
grows only logarithmically in epsilon: on GloVe 50k about 0.2 at 100, 0.4 at
10^6 and 0.5 near 2.4e7, 0.54 at the sweep's end, 10^8), the result says so
and gives the reachable range instead of an epsilon.

N_w only describes utility and the visible effect; the guarantee is still
the metric-DP epsilon found (see :mod:`mpcdp.text.mechanisms`).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..prg import Prg
from .mechanisms import TEXT_MECHANISMS, privacy_statistics
from .sanitizer import Sanitizer

SWEEP_POINTS = 16
BISECTIONS = 12


@dataclass(frozen=True)
class Calibration:
    """The epsilon reaching ``target`` (None when out of reach) and the N_w curve measured on the way."""

    mechanism: str
    target: float
    epsilon: float | None
    n_w: float | None
    reachable: tuple[float, float]
    curve: list[tuple[float, float]] = field(default_factory=list)
    words: int = 0
    draws: int = 0

    @property
    def reached(self) -> bool:
        return self.epsilon is not None


def epsilon_range(sanitizer: Sanitizer, mechanism: str) -> tuple[float, float]:
    """The sweep's ends: truncated Gumbel starts just above its smallest valid epsilon."""
    kind = TEXT_MECHANISMS.get(mechanism)
    low, high = kind.search_range
    if low is None:
        low = kind.min_epsilon(sanitizer.embedding.size, sanitizer.table) * (1 + 1e-6)
    return low, high


def calibrate(
    sanitizer: Sanitizer,
    mechanism: str,
    target: float,
    words: np.ndarray,
    draws: int = 20,
    seed: int = 0,
    tolerance: float = 0.005,
) -> Calibration:
    """The epsilon whose N_w over ``words`` is ``target`` (within ``tolerance``, or the bisection's end)."""
    TEXT_MECHANISMS.get(mechanism)  # an unknown name fails here, listing the choices
    if not 0 < target < 1:
        raise ValueError(f"target N_w must be strictly between 0 and 1, got {target!r}")
    words = np.asarray(words, dtype=np.int64)
    if words.size == 0:
        raise ValueError("no words to measure N_w on")
    curve: dict[float, float] = {}

    def n_w(eps: float) -> float:
        if eps not in curve:
            mech = sanitizer.mechanism(mechanism, eps)
            curve[eps] = privacy_statistics(mech, words, draws, Prg.from_int(seed, "text-calibrate")).n_w
        return curve[eps]

    low, high = epsilon_range(sanitizer, mechanism)
    sweep = np.geomspace(low, high, SWEEP_POINTS)
    values = [n_w(float(e)) for e in sweep]
    reachable = (min(values), max(values))
    result = functools.partial(
        Calibration, mechanism=mechanism, target=target, reachable=reachable, words=int(words.size), draws=draws
    )
    crossing = next((i for i in range(len(sweep) - 1) if (values[i] - target) * (values[i + 1] - target) <= 0), None)
    if crossing is None:
        return result(epsilon=None, n_w=None, curve=sorted(curve.items()))
    a, b = float(sweep[crossing]), float(sweep[crossing + 1])
    rising = values[crossing + 1] >= values[crossing]
    best = min((a, b), key=lambda e: abs(n_w(e) - target))
    for _ in range(BISECTIONS):
        if abs(n_w(best) - target) <= tolerance:
            break
        mid = math.sqrt(a * b)
        if (n_w(mid) < target) == rising:
            a = mid
        else:
            b = mid
        best = min((best, mid), key=lambda e: abs(n_w(e) - target))
    return result(epsilon=best, n_w=n_w(best), curve=sorted(curve.items()))


def plot(calibration: Calibration, path: str | os.PathLike[str], title: str = "") -> None:
    """N_w against epsilon (log scale), the target, and the epsilon found."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps, nw = zip(*calibration.curve, strict=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(eps, nw, marker="o", ms=3, color="tab:blue", label=f"N_w, {calibration.mechanism}")
    ax.axhline(calibration.target, color="grey", ls="--", lw=1, label=f"target {calibration.target:g}")
    if calibration.reached:
        assert calibration.epsilon is not None and calibration.n_w is not None
        ax.plot(
            [calibration.epsilon],
            [calibration.n_w],
            marker="*",
            ms=14,
            color="tab:red",
            label=f"epsilon = {calibration.epsilon:.4g}",
        )
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("epsilon (metric DP, per unit of embedding distance)")
    ax.set_ylabel("N_w: probability a word is kept")
    ax.set_title(title or f"{calibration.words} words x {calibration.draws} draws", fontsize=9, loc="left")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
