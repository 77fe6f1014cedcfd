"""Empirical privacy audit: from many runs on two neighbouring inputs, a 99.9%-confidence lower
bound on epsilon (Clopper-Pearson on the probability of an output event) must not exceed the claim,
and must come reasonably close to it (so the audit has power)."""

import math

import numpy as np
from scipy import stats

from mpcdp.dp import central, local
from mpcdp.prg import Prg

RUNS = 200_000
ALPHA = 1e-3


def epsilon_lower_bound(hits_x: int, hits_y: int, runs: int) -> float:
    """Lower confidence bound on ln(P[E | x] / P[E | y]) from event counts (Bonferroni over both)."""
    low_x = stats.beta.ppf(ALPHA / 2, hits_x, runs - hits_x + 1)
    high_y = stats.beta.ppf(1 - ALPHA / 2, hits_y + 1, runs - hits_y)
    return math.log(low_x / high_y)


def audit(outputs_x: np.ndarray, outputs_y: np.ndarray, events) -> float:
    bounds = []
    for event in events:
        a, b = int(event(outputs_x).sum()), int(event(outputs_y).sum())
        bounds += [epsilon_lower_bound(a, b, RUNS), epsilon_lower_bound(b, a, RUNS)]
    return max(bounds)


def test_binary_rr_audit():
    mech = local.BinaryRR(1.0)
    rng = Prg.from_int(31)
    x = mech.randomize(np.ones(RUNS, dtype=bool), rng)
    y = mech.randomize(np.zeros(RUNS, dtype=bool), rng)
    lower = audit(x, y, [lambda o: o])
    assert 0.9 * mech.epsilon_actual < lower <= mech.epsilon_actual


def test_two_coin_rr_audit():
    rng = Prg.from_int(32)
    x = local.two_coin_randomize(np.ones(RUNS, dtype=bool), rng)
    y = local.two_coin_randomize(np.zeros(RUNS, dtype=bool), rng)
    lower = audit(x, y, [lambda o: o])
    assert 0.9 * math.log(3) < lower <= math.log(3)


def test_kary_rr_audit():
    mech = local.KaryRR(2.0, 4)
    rng = Prg.from_int(33)
    x = mech.randomize(np.zeros(RUNS, dtype=np.int64), rng)
    y = mech.randomize(np.full(RUNS, 2, dtype=np.int64), rng)
    lower = audit(x, y, [lambda o, v=v: o == v for v in range(4)])
    assert 0.9 * mech.epsilon_actual < lower <= mech.epsilon_actual


def test_discrete_laplace_audit():
    mech = central.DiscreteLaplaceMechanism(0.5, sensitivity=2)
    rng = Prg.from_int(34)
    x = mech.release(np.zeros(RUNS, dtype=np.int64), rng)
    y = mech.release(np.full(RUNS, 2, dtype=np.int64), rng)
    lower = audit(x, y, [lambda o, c=c: o <= c for c in (-2, 0, 2)])
    assert 0.8 * 0.5 < lower <= mech.guarantee.epsilon
