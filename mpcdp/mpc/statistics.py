"""Nonlinear statistics under MPC: threshold, max/argmax/min, second price, noisy argmax, DP quantile.

Each statistic has three parts, so that the same object serves the
in-memory driver here and a party node behind a transport:

* ``prepare(party, data, rng)`` — local and plaintext: turns the party's own
  data (or its additive share of a sum, from :mod:`mpcdp.sharing`) into its
  additive part of the values the MPC compares, adding its noise piece when
  the statistic is DP;
* ``program(prepared)`` — the engine program (round generator) every party
  runs, which enters the additive parts (one round), computes, and opens only
  the release;
* ``release(opened)`` — the answer from the opened words.

Exact statistics (threshold, max, second price) are NOT differentially
private: each reveals exactly what it names (one bit; the top value, which
is one party's bid) and nothing else about the inputs beyond what that
implies. The two DP statistics use report-noisy-max with distributed discrete
Laplace noise: every party adds its own piece (:mod:`mpcdp.dp.distributed`)
to every candidate's score before the comparisons, so no party ever sees a
score, noisy or not, and only the winning label is opened.

Values are signed integers; every compared value must lie in
``[compare.VALUE_MIN, compare.VALUE_MAX]`` (about ±4.6e18), which ``prepare``
checks where the party's data determine it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from .. import ring
from ..dp.distributed import DistributedDiscreteLaplace
from ..dp.loss import PrivacyLoss
from ..prg import RandomSource, system_random
from . import compare
from .engine import U64, Engine, Program
from .memory import Trace, run_in_memory, seeded_rngs

COUNT_MAX = 1 << 40  # counts and local totals a DP statistic accepts (headroom for noise and scaling)


class MpcStatistic(Protocol):
    """What every statistic here offers a driver: the engine program over a prepared input, and its release."""

    def program(self, part: Any) -> Callable[[Engine], Program[Any]]: ...

    def release(self, opened: Any) -> Any: ...


def _ints(values: Any, what: str, lo: int, hi: int) -> np.ndarray:
    """Integers in [lo, hi] as ring elements, shape kept (leading axes are independent instances)."""
    arr = np.asarray(values)
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise ValueError(f"{what} must be a non-empty vector")
    if arr.dtype.kind not in "iu" and arr.dtype != object:
        raise ValueError(f"{what} must be integers")
    flat = [int(v) for v in arr.reshape(-1)]
    if min(flat) < lo or max(flat) > hi:
        raise ValueError(f"{what} must lie in [{lo}, {hi}]")
    return np.array([v % ring.MODULUS for v in flat], dtype=U64).reshape(arr.shape)


def _signed(words: Any) -> Any:
    out = ring.to_signed(np.asarray(words, dtype=U64))
    return int(out) if out.ndim == 0 else out


def _index(words: Any) -> Any:
    out = np.asarray(words, dtype=U64).astype(np.int64)
    return int(out) if out.ndim == 0 else out


class Threshold:
    """Whether a column's total is at least a value, or at least a fraction of its count: one bit.

    Releases exactly the bit [total >= value] or [total >= fraction * count]
    (exact, no DP: opt-in like an exact sum), and nothing else about the
    total or any party's part. The comparison is q * total - p * count >= 0
    for fraction = p / q, so no division happens under MPC. Each party
    prepares from its own (total, count), or from its additive shares of them;
    |q * total - p * count| must stay within the comparison range.
    Rounds: 1 key set-up + to_bits (9/11/12 for n = 3/5/7) + 1 open.
    """

    name = "threshold"

    def __init__(self, at_least: int | None = None, fraction: float | Fraction | None = None):
        if (at_least is None) == (fraction is None):
            raise ValueError("give exactly one of at_least (a value) or fraction (of the count)")
        if fraction is not None:
            frac = Fraction(fraction).limit_denominator(1 << 16)
            if not 0 <= frac <= 1:
                raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
            self.num: int | None = frac.numerator
            self.den: int = frac.denominator
            self.at_least: int | None = None
        else:
            assert at_least is not None
            self.num, self.den, self.at_least = None, 1, int(at_least)
            if not compare.VALUE_MIN <= self.at_least <= compare.VALUE_MAX:
                raise ValueError("at_least is outside the comparison range")

    def prepare(self, party: int, total: Any, count: Any = 0, rng: RandomSource | None = None) -> np.ndarray:
        """This party's additive part of q * total - p * count (or of total - value)."""
        total, count = ring.as_ring(total).reshape(1), ring.as_ring(count).reshape(1)
        if self.at_least is not None:
            shifted: np.ndarray = total - ring.as_ring(self.at_least if party == 0 else 0).reshape(1)
            return shifted
        assert self.num is not None
        scaled: np.ndarray = U64(self.den) * total - U64(self.num) * count
        return scaled

    def program(self, part: np.ndarray) -> Callable[[Engine], Program[Any]]:
        def run(e: Engine) -> Program[Any]:
            bits = yield from compare.to_bits(e, part)
            return (yield from e.open(compare.shr(bits, 63), xor=True))

        return run

    def release(self, opened: Any) -> bool:
        return int(np.asarray(opened).reshape(-1)[0]) == 0


class Extremum:
    """The max (or min) of m values, its index, or both; ties go to the lowest index.

    Exact (no DP): releases the chosen value and/or index and nothing else
    about the other values (a tournament of comparisons whose outcomes stay
    shared). ``prepare`` takes a party's additive part of the m values; for
    bids, a party puts its own bids in its slots and zeros elsewhere.
    Rounds: 1 key set-up + to_bits + compare.extremum_rounds(m) (50 for m = 1000) + 1 open.
    """

    def __init__(self, smallest: bool = False, reveal: str = "value"):
        if reveal not in ("value", "index", "both"):
            raise ValueError("reveal must be 'value', 'index' or 'both'")
        self.smallest, self.reveal = smallest, reveal
        self.name = ("min" if smallest else "max") if reveal == "value" else ("argmin" if smallest else "argmax")

    def prepare(self, party: int, values: Any, rng: RandomSource | None = None) -> np.ndarray:
        return _ints(values, "values", compare.VALUE_MIN, compare.VALUE_MAX)

    def program(self, part: np.ndarray) -> Callable[[Engine], Program[Any]]:
        def run(e: Engine) -> Program[Any]:
            bits = yield from compare.to_bits(e, part)
            best, index = yield from compare.extremum(e, bits, smallest=self.smallest)
            shown = {"value": [best], "index": [index], "both": [best, index]}[self.reveal]
            return (yield from e.open(np.stack(shown, axis=1), xor=True))

        return run

    def release(self, opened: Any) -> Any:
        """The value, the index, or (value, index); arrays of them for a batch of instances."""
        if self.reveal == "value":
            return _signed(opened[0])
        if self.reveal == "index":
            return _index(opened[0])
        return _signed(opened[0]), _index(opened[1])


class SecondPrice:
    """A Vickrey auction: the winner's index (lowest on ties) and the second-highest value.

    Exact (no DP): releases the winner and the price (which is the runner-up's
    bid, or None with a single bid) and nothing else; the winning bid itself
    stays secret. Rounds: 1 key set-up + to_bits + 2 * compare.extremum_rounds(m) + 7 + 1 open.
    """

    name = "second-price"

    def prepare(self, party: int, values: Any, rng: RandomSource | None = None) -> np.ndarray:
        return _ints(values, "bids", compare.VALUE_MIN, compare.VALUE_MAX)

    def program(self, part: np.ndarray) -> Callable[[Engine], Program[Any]]:
        def run(e: Engine) -> Program[Any]:
            bits = yield from compare.to_bits(e, part)
            _, index, second = yield from compare.top_two(e, bits)
            return (yield from e.open(np.stack([index, second], axis=1), xor=True))

        return run

    def release(self, opened: Any) -> tuple[int, int | None]:
        price = _signed(opened[1])
        return _index(opened[0]), (None if price == compare.SENTINEL else price)


class NoisyArgmax:
    """DP selection by report-noisy-max: the label whose count plus noise is largest.

    Each party adds its own distributed discrete Laplace piece to every
    candidate's count; the n - t honest pieces sum to a discrete Laplace of
    scale b, and only the winning index is opened (ties: lowest index).
    Guarantee: pure epsilon-DP against t colluders, with b = sensitivity /
    epsilon when ``monotone`` — the neighbouring relation "add or remove one
    record, which raises (or lowers) each count by at most ``sensitivity``,
    all in the same direction", e.g. one approval ballot — and b = 2 *
    sensitivity / epsilon otherwise (counts may move either way). Source:
    Dwork and Roth, The Algorithmic Foundations of Differential Privacy
    (2014), Claim 3.9 (report noisy max); its proof carries over to discrete
    Laplace noise because P[X >= k + s] >= exp(-s / b) P[X >= k] for integer
    s >= 0. The Polya pieces are floating-point (approximate) samplers.
    Rounds: 1 key set-up + to_bits + compare.extremum_rounds(m) (50 for m = 1000) + 1 open.
    """

    name = "noisy-argmax"

    def __init__(
        self, epsilon: float, n_parties: int, sensitivity: int = 1, monotone: bool = True, colluders: int | None = None
    ):
        self.colluders = (n_parties - 1) // 2 if colluders is None else colluders
        self.noise = DistributedDiscreteLaplace(
            epsilon, sensitivity if monotone else 2 * sensitivity, n_parties, max(1, self.colluders)
        )
        self.epsilon, self.n_parties = float(epsilon), n_parties

    def guarantee(self, pieces_added: int | None = None) -> PrivacyLoss | None:
        """The epsilon-DP guarantee when ``pieces_added`` (default: all n) parties added their piece."""
        return self.noise.guarantee(self.n_parties if pieces_added is None else pieces_added)

    def prepare(self, party: int, counts: Any, rng: RandomSource | None = None) -> np.ndarray:
        """This party's counts plus its own noise piece on each candidate."""
        counts = _ints(counts, "counts", -COUNT_MAX, COUNT_MAX)
        rng = rng or system_random("noisy-argmax")
        noisy: np.ndarray = counts + ring.as_ring(self.noise.piece(counts.size, rng)).reshape(counts.shape)
        return noisy

    def program(self, part: np.ndarray) -> Callable[[Engine], Program[Any]]:
        return Extremum(reveal="index").program(part)

    def release(self, opened: Any) -> Any:
        return _index(opened[0])


class DPQuantile:
    """A DP quantile (median: q = 1/2) over fixed bin edges: the edge chosen by the exponential mechanism.

    Candidates are the edges e_0 < ... < e_B; the utility of e_b is
    -|den * rank_b - num * N| for q = num / den, rank_b the number of records
    below e_b and N the number of records (records are clipped to
    [e_0, e_B]). Adding or removing one record moves each utility by at most
    s = max(num, den - num), in either direction, so report-noisy-max with
    discrete Laplace noise of scale 2 s / epsilon selects an edge with pure
    epsilon-DP (add/remove-one-record neighbours, t colluders).
    Sources: the exponential mechanism (McSherry and Talwar, FOCS 2007) with
    the quantile utility of Smith (STOC 2011) and Gillenwater, Joseph and
    Kulesza (ICML 2021), run as report-noisy-max (Dwork and Roth 2014,
    §3.3). Under MPC: each party computes its local ranks, the signed gaps
    are compared to zero (to_bits), turned into ring bits (to_ring) to take
    |gap| with one multiplication, and each party adds its noise piece
    before the noisy argmax; only the winning edge is opened.
    Rounds: 1 key set-up + 1 + to_bits + to_ring + 1 + to_bits + compare.extremum_rounds(B + 1) + 1.
    """

    name = "quantile"

    def __init__(self, q: float, edges: Sequence[float], epsilon: float, n_parties: int, colluders: int | None = None):
        frac = Fraction(q).limit_denominator(1 << 10)
        if not 0 < frac < 1:
            raise ValueError(f"q must be strictly between 0 and 1, got {q!r}")
        self.edges = np.asarray(edges, dtype=np.float64)
        if self.edges.ndim != 1 or self.edges.size < 2 or np.any(np.diff(self.edges) <= 0):
            raise ValueError("edges must be at least two strictly increasing numbers")
        self.num, self.den = frac.numerator, frac.denominator
        self.sensitivity = max(self.num, self.den - self.num)
        self.colluders = (n_parties - 1) // 2 if colluders is None else colluders
        self.noise = DistributedDiscreteLaplace(epsilon, 2 * self.sensitivity, n_parties, max(1, self.colluders))
        self.epsilon, self.n_parties = float(epsilon), n_parties

    def guarantee(self, pieces_added: int | None = None) -> PrivacyLoss | None:
        return self.noise.guarantee(self.n_parties if pieces_added is None else pieces_added)

    def gaps(self, records: Any) -> np.ndarray:
        """den * rank_b - num * N over this party's records, for every edge b (plaintext, local)."""
        x = np.clip(np.asarray(records, dtype=np.float64).reshape(-1), self.edges[0], self.edges[-1])
        if x.size > COUNT_MAX:
            raise ValueError("too many records")
        ranks = np.searchsorted(np.sort(x), self.edges, side="left").astype(np.int64)
        return self.den * ranks - self.num * x.size

    def prepare(self, party: int, records: Any, rng: RandomSource | None = None) -> tuple[np.ndarray, np.ndarray]:
        """This party's additive gaps and its noise piece for each edge."""
        rng = rng or system_random("quantile")
        return ring.as_ring(self.gaps(records)), ring.as_ring(self.noise.piece(self.edges.size, rng))

    def program(self, prepared: tuple[np.ndarray, np.ndarray]) -> Callable[[Engine], Program[Any]]:
        gap, noise = prepared

        def run(e: Engine) -> Program[Any]:
            shared = yield from e.reshare(gap)
            bits = yield from compare.to_bits(e, gap)
            negative = yield from compare.to_ring(e, compare.shr(bits, 63))
            product = yield from e.mul(negative, shared)
            utility = U64(2) * product - shared  # -|gap|
            noisy = yield from compare.to_bits(e, e.additive(utility) + noise)
            _, index = yield from compare.extremum(e, noisy)
            return (yield from e.open(index, xor=True))

        return run

    def release(self, opened: Any) -> Any:
        chosen = self.edges[np.asarray(opened).astype(np.int64)]
        return float(chosen) if chosen.ndim == 0 else chosen


def simulate(statistic: Any, data: Sequence[Any], seed: int | None = None, record: bool = False) -> tuple[Any, Trace]:
    """Run ``statistic`` among ``len(data)`` parties in memory; ``data[p]`` is party p's input.

    ``data[p]`` is passed to ``prepare`` as positional arguments when it is a
    tuple. With ``seed`` every party's randomness (keys and noise) is
    reproducible; without, it comes from the system CSPRNG.
    """
    n = len(data)
    rngs = seeded_rngs(n, seed) if seed is not None else [system_random("mpc") for _ in range(n)]
    noise_rngs = seeded_rngs(n, seed + 1) if seed is not None else [system_random("noise") for _ in range(n)]
    prepared = [
        statistic.prepare(p, *(d if isinstance(d, tuple) else (d,)), rng=noise_rngs[p]) for p, d in enumerate(data)
    ]
    results, trace = run_in_memory(n, [statistic.program(x) for x in prepared], rngs, record=record)
    return statistic.release(results[0]), trace
