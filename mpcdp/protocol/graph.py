"""The sparse sharing graph of a many-party query (SecAgg+, Bell et al., CCS 2020) and what it withstands.

In a full mesh every party exchanges a secret with every other: its cost grows linearly with n. Here each
party exchanges secrets only with its k neighbours in a graph drawn at random from the session id: the
Harary graph H(n, k) (a cycle where every node is joined to the k / 2 nearest on each side) laid over a
uniformly random ordering of the parties, so each party's neighbourhood is a uniformly random set of k
others. k is chosen by :func:`plan_graph` as the smallest that makes both failure probabilities below
hold; it grows like log n (about 2 (sigma + log2 n) / log2(n / (c + d))), so per-party cost is O(log n).

Security statement (honest-but-curious nodes; a coalition of the coordinator and at most ``colluders``
parties fixed before the session id is drawn; dropouts independent of the graph). Except with
probability at most ``2^-security_bits`` over the graph:

* (S1) every honest party has fewer than ``threshold`` colluding neighbours, so the coalition cannot
  rebuild its self-mask seed or its recovery key from the Shamir shares it holds; and
* (S2) the Harary graph minus the colluders and the dropped parties keeps the honest counted parties
  connected (no ``k / 2`` consecutive places of the ordering are all colluders or dropped parties),

and then the coalition learns nothing about the honest counted parties' inputs beyond their sum (the
release minus the colluders' own inputs), which carries the honest parties' noise pieces.

S2 is a bound on removed *nodes*. The masks actually used form the **roster graph**
(:meth:`mpcdp.protocol.masked.MaskedCoordinator.rosters`), which also loses every edge whose keys arrived
after one end reported (a late edge), and nothing in the graph's draw bounds those. So the coordinator
checks before unmasking that the counted parties are one connected group of their roster edges, and aborts
otherwise: against an honest-but-curious coordinator alone, the sum of the counted inputs is then all it
learns. Against a coordinator with colluding parties the check is weaker than S2: it cannot tell who
colludes, so it checks connectivity of the counted parties, not of the honest ones once the colluders are
taken out; S2 covers that only when no edge was late.

Correctness: except with probability at most ``2^-correctness_bits``, (C1) every party keeps at least
``threshold`` neighbours that did not drop, so whatever must be rebuilt can be. Both bounds are union
bounds over the n parties (and the n windows of the ordering) of exact hypergeometric tails.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..prg import Prg

DEFAULT_SECURITY_BITS = 40.0
DEFAULT_CORRECTNESS_BITS = 20.0


def _log2(num: int, den: int) -> float:
    """log2(num / den) for exact non-negative integers (-inf for 0)."""
    return -math.inf if num == 0 else math.log2(num) - math.log2(den)


def hypergeometric_tail(population: int, marked: int, draws: int, at_least: int) -> float:
    """log2 P[X >= at_least] for X the marked items among ``draws`` drawn without replacement (exact)."""
    if at_least <= 0:
        return 0.0
    top = min(marked, draws)
    if at_least > top:
        return -math.inf
    num = sum(math.comb(marked, x) * math.comb(population - marked, draws - x) for x in range(at_least, top + 1))
    return _log2(num, math.comb(population, draws))


def window_all_removed(n: int, removed: int, window: int) -> float:
    """log2 of the union bound on some ``window`` cyclically consecutive places of a random ordering of n
    all holding removed parties (``removed`` of them): n C(n - w, m - w) / C(n, m)."""
    if window > removed:
        return -math.inf
    return math.log2(n) + _log2(math.comb(n - window, removed - window), math.comb(n, removed))


def _log2_sum(*terms: float) -> float:
    finite = [t for t in terms if t != -math.inf]
    if not finite:
        return -math.inf
    top = max(finite)
    return top + math.log2(sum(2.0 ** (t - top) for t in finite))


@dataclass(frozen=True)
class GraphPlan:
    """A degree and a Shamir threshold for n parties, with the failure bounds they give (log2)."""

    n: int
    degree: int  # k: neighbours per party (n - 1: the complete graph)
    threshold: int  # t: shares that rebuild a party's secrets; fewer reveal nothing
    colluders: int
    dropouts: int  # most parties that may drop after accepting (n - quorum)
    security_log2: float  # log2 P[(S1) or (S2) fails]
    correctness_log2: float  # log2 P[(C1) fails]

    @property
    def complete(self) -> bool:
        return self.degree >= self.n - 1


def _suffix_log2(population: int, marked: int, draws: int) -> list[float]:
    """log2 P[X >= a] for a = 0 .. draws + 1, X hypergeometric (exact integers, one pass)."""
    terms = [math.comb(marked, x) * math.comb(population - marked, draws - x) for x in range(draws + 1)]
    den = math.comb(population, draws)
    out, acc = [-math.inf] * (draws + 2), 0
    for a in range(draws, -1, -1):
        acc += terms[a]
        out[a] = _log2(acc, den)
    return out


def plan_graph(
    n: int,
    colluders: int,
    dropouts: int,
    security_bits: float = DEFAULT_SECURITY_BITS,
    correctness_bits: float = DEFAULT_CORRECTNESS_BITS,
) -> GraphPlan:
    """The sparsest graph (smallest even k, then smallest t) meeting both bounds, else the complete graph.

    Raises ValueError when even the complete graph cannot: colluders + dropouts must leave at least one
    honest survivor, and a threshold t with colluders < t <= n - 1 - dropouts must exist.
    """
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"a graph needs at least 2 parties, got {n!r}")
    if not 0 <= colluders < n or not 0 <= dropouts < n or colluders + dropouts >= n:
        raise ValueError(f"{colluders} colluders and {dropouts} dropouts leave no honest survivor among {n} parties")
    log_n = math.log2(n)
    for k in range(2, n - 1, 2):
        s2 = window_all_removed(n, colluders + dropouts, k // 2)
        if s2 > -security_bits:
            continue
        corrupt = _suffix_log2(n - 1, colluders, k)  # (S1): t or more colluding neighbours
        dropped = _suffix_log2(n - 1, dropouts, k)  # (C1): more than k - t dropped neighbours
        for t in range(1, k + 1):
            correctness = log_n + dropped[k - t + 1]
            if correctness > -correctness_bits:
                break  # a larger t only needs more surviving neighbours
            security = _log2_sum(log_n + corrupt[t], s2)
            if security <= -security_bits:
                return GraphPlan(n, k, t, colluders, dropouts, security, correctness)
    k, t = n - 1, colluders + 1  # the complete graph: every honest party neighbours every colluder
    if k - dropouts < t:
        raise ValueError(
            f"{n} parties cannot tolerate {dropouts} dropouts with {colluders} colluders: "
            f"a secret must need more than {colluders} shares yet be rebuilt from {k - dropouts}"
        )
    return GraphPlan(n, k, t, colluders, dropouts, -math.inf, -math.inf)


class SharingGraph:
    """H(n, k) over the ordering of ``parties`` drawn from ``seed`` (a session id): who neighbours whom."""

    def __init__(self, parties: tuple[str, ...], degree: int, seed: bytes):
        n = len(parties)
        if not 1 <= degree <= n - 1:
            raise ValueError(f"degree must be in [1, {n - 1}], got {degree}")
        if degree < n - 1 and degree % 2:
            raise ValueError(f"a sparse Harary graph has an even degree, got {degree}")
        self.parties = parties
        self.degree = degree
        self._index = {p: i for i, p in enumerate(parties)}
        key = hashlib.sha256(b"mpcdp/v1/graph" + seed).digest()
        keys = Prg(key, seed, "graph/ordering").uint64(n)
        self._order = np.argsort(keys, kind="stable")  # place -> party index: a uniform random ordering
        self._place = np.empty(n, dtype=np.int64)
        self._place[self._order] = np.arange(n)

    @property
    def n(self) -> int:
        return len(self.parties)

    def index(self, party: str) -> int:
        """The party's position in the party list (its Shamir evaluation point is index + 1)."""
        return self._index[party]

    def neighbours(self, party: str) -> tuple[str, ...]:
        """The parties ``party`` exchanges secrets with, in party-list order."""
        return self._neighbours[self._index[party]]

    @cached_property
    def _neighbours(self) -> list[tuple[str, ...]]:
        n, half = self.n, self.degree // 2
        out = []
        for i in range(n):
            if self.degree >= n - 1:
                near = [j for j in range(n) if j != i]
            else:
                place = int(self._place[i])
                near = sorted(int(self._order[(place + d) % n]) for d in range(-half, half + 1) if d)
            out.append(tuple(self.parties[j] for j in near))
        return out
