"""DP audits of noisy-argmax and the DP quantile run under MPC, on neighbouring inputs, at fixed seeds.

For each pair of neighbours we (1) run the MPC K times at once (a batch of
independent instances) and check the released labels follow the exact
distribution of the mechanism (every party's noise piece included), (2)
check, exactly, that the honest parties' noise alone keeps every output's
log-probability ratio within epsilon, and (3) audit empirically: a
Clopper-Pearson lower bound on the privacy loss seen in the MPC's outputs
must not exceed epsilon — and the same audit flags a mechanism run with
eight times too little noise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mpcdp import ring
from mpcdp.mpc.memory import run_in_memory, seeded_rngs
from mpcdp.mpc.statistics import DPQuantile, NoisyArgmax, simulate
from tests.support.stats import nb_difference_pmf

K = 12000
CONFIDENCE = 1e-4


def argmax_distribution(utilities, support, pmf) -> np.ndarray:
    """P(argmax_j (u_j + N_j) = i), N_j iid with ``pmf`` on integer ``support``, ties to the lowest index."""
    u = np.asarray(utilities, dtype=np.int64)
    grid = np.arange(u.min() + support[0], u.max() + support[-1] + 1)
    at = np.zeros((u.size, grid.size))
    for j, uj in enumerate(u):
        at[j, uj + support[0] - grid[0] : uj + support[-1] - grid[0] + 1] = pmf
    below = np.cumsum(at, axis=1) - at  # P(V_j < v)
    upto = below + at  # P(V_j <= v)
    out = np.empty(u.size)
    for i in range(u.size):
        others = np.prod(below[:i], axis=0) * np.prod(upto[i + 1 :], axis=0)
        out[i] = float(np.sum(at[i] * others))
    return out / out.sum()


def noise_pmf(noise, pieces: int):
    """The exact pmf of the sum of ``pieces`` Polya-difference pieces of ``noise``."""
    r = pieces * float(noise.shape)
    alpha = math.exp(-1.0 / float(noise.scale))
    return nb_difference_pmf(r, alpha, int(60 * float(noise.scale)) + 10)


def exact_loss(p, q) -> float:
    return float(np.max(np.abs(np.log(p) - np.log(q))))


def audited_loss(labels_a, labels_b, m: int) -> float:
    """A lower confidence bound on max_i |ln P_a(i) / P_b(i)| from observed labels (Clopper-Pearson)."""
    runs = labels_a.size
    ca, cb = np.bincount(labels_a, minlength=m), np.bincount(labels_b, minlength=m)

    def lo(c, k):
        return stats.beta.ppf(CONFIDENCE, c, k - c + 1) if c > 0 else 0.0

    def hi(c, k):
        return stats.beta.ppf(1 - CONFIDENCE, c + 1, k - c) if c < k else 1.0

    best = 0.0
    for i in range(m):
        for (x, nx), (y, ny) in (((ca[i], runs), (cb[i], runs)), ((cb[i], runs), (ca[i], runs))):
            if lo(x, nx) > 0:
                best = max(best, math.log(lo(x, nx) / hi(y, ny)))
    return best


def goodness_of_fit(labels, probabilities) -> float:
    runs = labels.size
    observed = np.bincount(labels, minlength=probabilities.size)
    keep = probabilities * runs > 5
    expected = probabilities[keep] * runs
    obs = observed[keep]
    return stats.chisquare(obs, expected * obs.sum() / expected.sum()).pvalue


def noisy_argmax_labels(stat, counts, seed, runs=K):
    batch = np.broadcast_to(np.asarray(counts), (runs, len(counts)))
    data = [batch] + [np.zeros_like(batch)] * (stat.n_parties - 1)
    labels, _ = simulate(stat, data, seed=seed)
    return np.asarray(labels)


@pytest.mark.parametrize("n", [3, 5])
def test_noisy_argmax_audit_on_one_approval_ballot(n):
    """Neighbours: one more ballot approving candidates 0 and 2 (counts move up by one, monotone)."""
    d, d_prime, eps, t = [3, 4, 1], [4, 4, 2], 1.0, (n - 1) // 2
    stat = NoisyArgmax(eps, n_parties=n)
    runs = K if n == 3 else K // 4  # five parties: fewer runs, to keep the suite fast
    a, b = noisy_argmax_labels(stat, d, n, runs), noisy_argmax_labels(stat, d_prime, n + 1, runs)
    support, all_pieces = noise_pmf(stat.noise, n)
    for labels, counts in ((a, d), (b, d_prime)):
        assert goodness_of_fit(labels, argmax_distribution(counts, support, all_pieces)) > 1e-3
    for pieces in (n - t, n):  # the n - t honest pieces alone, and all n
        support, pmf = noise_pmf(stat.noise, pieces)
        assert (
            exact_loss(argmax_distribution(d, support, pmf), argmax_distribution(d_prime, support, pmf)) <= eps + 1e-9
        )
    assert audited_loss(a, b, 3) <= eps
    if n > 3:
        return  # the audit's power does not depend on n
    weak = NoisyArgmax(8 * eps, n_parties=n)  # claims epsilon, adds the noise of 8 epsilon
    a, b = noisy_argmax_labels(weak, d, seed=n + 2), noisy_argmax_labels(weak, d_prime, seed=n + 3)
    assert audited_loss(a, b, 3) > eps


def quantile_labels(stat, parts, seed):
    """K independent runs of the DP quantile over the same parties' records, batched in one MPC."""
    n = stat.n_parties
    rngs = seeded_rngs(n, seed + 1)
    prepared = []
    for p, records in enumerate(parts):
        gap = np.broadcast_to(ring.as_ring(stat.gaps(records)), (K, stat.edges.size))
        noise = ring.as_ring(stat.noise.piece(K * stat.edges.size, rngs[p])).reshape(K, -1)
        prepared.append((np.ascontiguousarray(gap), noise))
    results, _ = run_in_memory(n, [stat.program(x) for x in prepared], seeded_rngs(n, seed))
    return np.asarray(results[0]).astype(np.int64)


def test_dp_median_audit_on_one_added_record():
    """Neighbours: one more record (at 3.5); the utility -|2 rank - N| moves by one, down at some edges, up at
    others."""
    eps, edges = 1.0, [0, 1, 2, 3, 4]
    stat = DPQuantile(0.5, edges, eps, n_parties=3)
    d = [[0.5, 1.5], [1.5, 2.5], [3.5]]
    d_prime = [[0.5, 1.5], [1.5, 2.5], [3.5, 3.5]]
    utilities = [-np.abs(sum(stat.gaps(r) for r in parts)) for parts in (d, d_prime)]
    assert set(utilities[1] - utilities[0]) == {-1, 1}
    a, b = quantile_labels(stat, d, seed=5), quantile_labels(stat, d_prime, seed=6)
    support, all_pieces = noise_pmf(stat.noise, 3)
    for labels, u in zip((a, b), utilities):
        assert goodness_of_fit(labels, argmax_distribution(u, support, all_pieces)) > 1e-3
    losses = []
    for pieces in (2, 3):
        support, pmf = noise_pmf(stat.noise, pieces)
        losses.append(
            exact_loss(argmax_distribution(utilities[0], support, pmf), argmax_distribution(utilities[1], support, pmf))
        )
    assert 0.1 < losses[0] <= eps + 1e-9 and losses[1] <= losses[0]  # a real, bounded loss
    assert audited_loss(a, b, len(edges)) <= eps
