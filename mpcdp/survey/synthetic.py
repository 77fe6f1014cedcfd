"""Synthetic respondents with a known truth, for simulations and tests (never for real surveys).

Fixed population shapes per kind: yes with probability 0.62; choice option i
with weight k - i; multi-select option j with probability 0.15 + 0.6 (k-1-j)/(k-1);
numeric lo + (hi - lo) u1 u2 (u uniform: a right-skewed answer, like salaries).
The truth returned is that of the generated sample, which is what a release estimates.
"""

from __future__ import annotations

import numpy as np

from ..prg import RandomSource
from .definition import Survey


def synthetic_answers(survey: Survey, n: int, rng: RandomSource) -> tuple[list[dict], dict[str, list[float]]]:
    """``n`` answer sheets and, per question, the sample's true value of each label."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n!r}")
    columns: dict[str, list] = {}
    truth: dict[str, list[float]] = {}
    for q in survey.questions:
        u = rng.uint64(2 * n).reshape(n, 2) / 2.0**64
        if q.kind == "yesno":
            yes = u[:, 0] < 0.62
            columns[q.id], truth[q.id] = yes.tolist(), [float(yes.mean())]
        elif q.kind == "choice":
            k = len(q.options)
            cdf = np.cumsum(np.arange(k, 0, -1)) / (k * (k + 1) / 2)
            index = np.minimum(np.searchsorted(cdf, u[:, 0], side="right"), k - 1)
            columns[q.id] = [q.options[i] for i in index]
            truth[q.id] = (np.bincount(index, minlength=k) / n).tolist()
        elif q.kind == "multiselect":
            k = len(q.options)
            probs = 0.15 + 0.6 * np.arange(k - 1, -1, -1) / (k - 1)
            picks = rng.uint64(n * k).reshape(n, k) / 2.0**64 < probs
            columns[q.id] = [[o for o, p in zip(q.options, row) if p] for row in picks]
            truth[q.id] = picks.mean(axis=0).tolist()
        else:
            lo, hi = q.bounds
            values = lo + (hi - lo) * u[:, 0] * u[:, 1]
            columns[q.id], truth[q.id] = values.tolist(), [float(values.mean())]
    sheets = [{qid: col[i] for qid, col in columns.items()} for i in range(n)]
    return sheets, truth
