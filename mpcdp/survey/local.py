"""Local DP on the respondent's device, per question: the randomised block and its response rates.

Each mechanism is epsilon-LDP for any two answers of one respondent (the
neighbouring relation of local DP); the randomisers are those of
:mod:`mpcdp.dp.local` (exact samplers, keep-probabilities rounded towards
more privacy) applied to the question's block. For frequency
questions a reported coordinate is 1 with probability p if truly 1 and q if
truly 0; :func:`rates` gives (p, q) for the debiasing in :mod:`.release`.

* two_coin (yes/no, epsilon = ln 3): answer truthfully on heads, else report a
  second coin (Warner 1965, as in the seed); p = 3/4, q = 1/4.
* rr (yes/no): keep the answer with probability e^eps / (1 + e^eps), else flip.
  On a multi-select question, each option's bit at epsilon / k (k options):
  one answer changes at most k bits, so the sheet is epsilon-LDP.
* krr (choice): k-ary randomized response: keep with probability
  e^eps / (e^eps + k - 1), else report one of the other k - 1 options
  uniformly (Kairouz, Oh and Viswanath 2014).
* unary (choice): optimised unary encoding: one-hot, then the true bit is 1
  with probability 1/2 and every other bit with q = 1 / (e^eps + 1)
  (Wang et al., USENIX Security 2017).
* laplace (numeric): grid Laplace on the power-of-two step, sensitivity
  hi - lo (:class:`mpcdp.dp.laplace.GridLaplace`), clamped far in the tails
  (see :data:`.definition.LAPLACE_TAIL`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from ..dp.laplace import unbiased_round
from ..dp.local import BinaryRR, KaryRR, UnaryEncoding, two_coin_randomize
from ..dp.samplers import discrete_laplace
from ..prg import RandomSource
from .definition import Question


@lru_cache(maxsize=256)
def _mechanism(name: str, epsilon: float, k: int):
    if name == "rr":
        return BinaryRR(epsilon)
    if name == "krr":
        return KaryRR(epsilon, k)
    return UnaryEncoding(epsilon, k)


def _bit_epsilon(q: Question) -> float:
    return q.local.epsilon / len(q.options) if q.kind == "multiselect" else q.local.epsilon


def rates(q: Question) -> tuple[float, float]:
    """(P(report 1 | true 1), P(report 1 | true 0)) for each coordinate of a frequency question."""
    name = q.local.name
    if name == "none":
        return 1.0, 0.0
    if name == "two_coin":
        return 0.75, 0.25
    if name == "rr":
        keep = float(_mechanism("rr", _bit_epsilon(q), 2).keep)
        return keep, 1 - keep
    if name == "krr":
        keep = float(_mechanism("krr", q.local.epsilon, len(q.options)).keep)
        return keep, (1 - keep) / (len(q.options) - 1)
    return 0.5, float(_mechanism("unary", q.local.epsilon, len(q.options)).flip_on)


def report_variance(q: Question) -> float:
    """Variance of the local noise on one numeric report, in the answer's units."""
    return q.laplace().variance if q.local.name == "laplace" else 0.0


def randomise(q: Question, answers: Sequence, rng: RandomSource) -> np.ndarray:
    """The question's int64 blocks, one row per respondent, after local randomisation.

    ``answers`` holds one already checked answer per respondent; each row is
    randomised independently (vectorised over respondents).
    """
    n = len(answers)
    if q.kind == "numeric":
        return _numeric(q, np.array(answers, dtype=np.float64), rng).reshape(n, 1)
    if q.kind == "yesno":
        truth = np.array(answers, dtype=bool).reshape(n, 1)
    elif q.kind == "choice":
        index = {o: i for i, o in enumerate(q.options)}
        truth = UnaryEncoding.one_hot(np.array([index[a] for a in answers], dtype=np.int64), len(q.options))
    else:
        truth = np.array([[o in a for o in q.options] for a in answers], dtype=bool).reshape(n, len(q.options))
    name, k = q.local.name, truth.shape[1]
    if name == "none":
        out = truth
    elif name == "two_coin":
        out = two_coin_randomize(truth, rng).reshape(n, 1)
    elif name == "rr":
        out = _mechanism("rr", _bit_epsilon(q), 2).randomize(truth, rng).reshape(n, k)
    elif name == "krr":
        reported = _mechanism("krr", q.local.epsilon, k).randomize(np.argmax(truth, axis=1), rng)
        out = UnaryEncoding.one_hot(reported, k)
    else:
        out = _mechanism("unary", q.local.epsilon, k).randomize(truth, rng)
    return out.astype(np.int64)


def _numeric(q: Question, x: np.ndarray, rng: RandomSource) -> np.ndarray:
    x = np.clip(x, *q.bounds)
    if q.local.name == "laplace":
        mech = q.laplace()
        steps = mech.to_grid(x, rng) + discrete_laplace(mech.scale_steps, x.size, rng)
        return np.clip(steps, *q.unit_range)
    return unbiased_round(x / q.step, rng)  # x / step is exact: the step is a power of two
