"""Comparison queries of a federation: each nonlinear statistic under MPC as one registered class.

A federation query names a statistic; the linear ones (sum, mean, ...) are
secure sums, the ones here are computed by the parties with the engine of
:mod:`mpcdp.mpc` and open only their release. Each is a :class:`Comparison`
registered in :data:`COMPARISONS` under the name the command line, the wire
and the Python API use, and each says, for a :class:`ComparisonSpec`:

* ``validate`` -- which of the spec's fields it needs;
* ``loss`` -- the privacy loss of its release: ``None`` for the exact ones
  (max, min, argmax, threshold, second-price reveal exactly what they name,
  so a party takes part only if its policy sets ``allow_exact_nonlinear``),
  pure epsilon-DP for noisy-argmax, quantile and median (neighbours: one
  record of one party added or removed; against the spec's ``colluders``);
* ``prepare`` -- a party's additive input from its own column (plaintext,
  local), with its noise piece when the release is DP;
* ``computation`` -- the engine statistic (:mod:`mpcdp.mpc.statistics`) the
  parties run;
* ``release`` -- the named entries of the release, from the opened words.

For max, min, argmax and second-price each party is one bidder: it enters
its largest (smallest, for min) value in its own slot, so "argmax" names the
winning party and second-price is a Vickrey auction among the parties.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..dp.loss import PrivacyLoss, Relation
from ..prg import RandomSource, system_random
from ..protocol.party import PartyPolicy
from ..protocol.statistics import STATISTICS, Statistic
from ..protocol.statistics import Engine as Computed
from ..registry import Registry, UnknownName
from . import compare
from .statistics import COUNT_MAX, DPQuantile, Extremum, NoisyArgmax, SecondPrice, Threshold
from .statistics import MpcStatistic as Computation

SESSION_ID_BYTES = 16
Entry = str | int | float


class ComparisonRefused(ValueError):
    """A comparison query that cannot run; the message names the field and is safe to show anyone."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class ComparisonSpec:
    """What every party must agree on before a comparison runs (validated on construction)."""

    statistic: str
    column: str
    parties: tuple[str, ...]
    session_id: bytes
    deadline: float
    epsilon: float | None = None  # None: an exact release (no DP)
    colluders: int = 1  # the noise of a DP release is sized with this many pieces known
    fraction: float | None = None  # threshold: YES iff sum >= fraction * count
    quantile: float | None = None  # quantile: q in (0, 1)
    edges: tuple[float, ...] = ()  # quantile and median: the candidates, increasing
    categories: tuple[str, ...] = ()  # noisy-argmax: the candidates

    def __post_init__(self) -> None:
        try:
            kind = COMPARISONS.get(self.statistic)
        except UnknownName as exc:
            raise ComparisonRefused("statistic", str(exc)) from None
        n = len(self.parties)
        if n < 3:
            raise ComparisonRefused("parties", "comparisons under MPC need at least 3 parties (honest majority)")
        if len(set(self.parties)) != n:
            raise ComparisonRefused("parties", "a party is listed twice")
        if len(self.session_id) != SESSION_ID_BYTES:
            raise ComparisonRefused("session_id", f"must be {SESSION_ID_BYTES} bytes")
        if not self.column:
            raise ComparisonRefused("column", "name the column to compare")
        if kind.private:
            if self.epsilon is None or not math.isfinite(self.epsilon) or self.epsilon <= 0:
                raise ComparisonRefused("epsilon", f"{self.statistic} is differentially private: give an epsilon > 0")
            if not 1 <= self.colluders <= (n - 1) // 2:
                raise ComparisonRefused(
                    "colluders",
                    f"must be in [1, {(n - 1) // 2}] for {n} parties (the engine's honest majority), "
                    f"got {self.colluders}",
                )
        elif self.epsilon is not None:
            raise ComparisonRefused("epsilon", f"{self.statistic} is an exact release (no DP noise): leave epsilon out")
        kind.validate(self)

    @property
    def kind(self) -> Comparison:
        return COMPARISONS.get(self.statistic)

    @property
    def is_exact(self) -> bool:
        return self.epsilon is None

    def loss(self) -> PrivacyLoss | None:
        """The release's privacy loss against ``colluders`` colluding parties (None: exact, no DP); at most
        :attr:`charge` (the noise's scale is rounded up)."""
        return self.kind.loss(self)

    @property
    def charge(self) -> PrivacyLoss | None:
        """What every node's ledger is charged: pure epsilon-DP per added or removed record (None: exact)."""
        return None if self.epsilon is None else PrivacyLoss.pure(self.epsilon, Relation.RECORD)


def whole_numbers(values: Sequence[object], column: str) -> list[int]:
    """A column's values as integers in the comparison range, or a refusal naming the column (never a value).

    Integers (and strings of digits) are read exactly; floats only when they are whole."""
    out = []
    for v in values:
        number = _whole(v)
        if number is None or not compare.VALUE_MIN <= number <= compare.VALUE_MAX:
            raise ComparisonRefused("column", f"{column!r} must hold whole numbers within +-2^62 to be compared")
        out.append(number)
    return out


def _whole(v: object) -> int | None:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            pass
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) and f.is_integer() else None


class Comparison(Statistic):
    """One statistic computed under MPC among the parties, opening only its release."""

    engine: ClassVar[Computed] = Computed.HONEST_MAJORITY
    private: ClassVar[bool] = False  # True: DP (needs epsilon); False: exact (needs allow_exact_nonlinear)
    summary: ClassVar[str]

    def validate(self, spec: ComparisonSpec) -> None:
        """Refuse fields this statistic does not use (ComparisonRefused)."""
        for name, unused in (
            ("fraction", spec.fraction is not None),
            ("quantile", spec.quantile is not None),
            ("edges", bool(spec.edges)),
            ("categories", bool(spec.categories)),
        ):
            if unused and name not in self.uses:
                raise ComparisonRefused(name, f"is not used by {self.name}")

    uses: ClassVar[tuple[str, ...]] = ()  # the spec fields it reads beyond the column (and epsilon if private)
    needs: ClassVar[tuple[str, ...]] = ()  # those it cannot do without

    def loss(self, spec: ComparisonSpec) -> PrivacyLoss | None:
        return None

    @abstractmethod
    def computation(self, spec: ComparisonSpec) -> Computation: ...

    @abstractmethod
    def prepare(self, spec: ComparisonSpec, position: int, values: Sequence[Any], rng: RandomSource) -> Any:
        """This party's additive input (local, plaintext) from its own column."""

    @abstractmethod
    def release(self, spec: ComparisonSpec, opened: np.ndarray) -> dict[str, Entry]:
        """The release's named entries; the one named like the statistic is its value."""


class _Bidders(Comparison):
    """Each party one bidder: its best value in its own slot, zeros elsewhere."""

    smallest: ClassVar[bool] = False

    def prepare(self, spec: ComparisonSpec, position: int, values: Sequence[Any], rng: RandomSource) -> Any:
        numbers = whole_numbers(values, spec.column)
        if not numbers:
            raise ComparisonRefused("column", "this party holds no records to compare")
        slots: list[int] = [0] * len(spec.parties)
        slots[position] = min(numbers) if self.smallest else max(numbers)
        return Extremum().prepare(position, np.array(slots, dtype=object))


class Max(_Bidders):
    name, wire = "max", 6
    summary = "the largest value any party holds (exact: one party's value)"

    def computation(self, spec: ComparisonSpec) -> Computation:
        return Extremum()

    def release(self, spec: ComparisonSpec, opened: np.ndarray) -> dict[str, Entry]:
        return {self.name: int(Extremum().release(opened))}


class Min(_Bidders):
    name, wire = "min", 7
    summary = "the smallest value any party holds (exact: one party's value)"
    smallest = True

    def computation(self, spec: ComparisonSpec) -> Computation:
        return Extremum(smallest=True)

    def release(self, spec: ComparisonSpec, opened: np.ndarray) -> dict[str, Entry]:
        return {self.name: int(Extremum(smallest=True).release(opened))}


class Argmax(_Bidders):
    name, wire = "argmax", 8
    summary = "the name of the party holding the largest value (exact; the first listed on ties)"

    def computation(self, spec: ComparisonSpec) -> Computation:
        return Extremum(reveal="index")

    def release(self, spec: ComparisonSpec, opened: np.ndarray) -> dict[str, Entry]:
        return {self.name: spec.parties[int(Extremum(reveal="index").release(opened))]}


class SecondPriceAuction(_Bidders):
    name, wire = "second-price", 10
    summary = "a Vickrey auction: the winning party and the second-highest bid, not the winning bid (exact)"

    def computation(self, spec: ComparisonSpec) -> Computation:
        return SecondPrice()

    def release(self, spec: ComparisonSpec, opened: np.ndarray) -> dict[str, Entry]:
        winner, price = SecondPrice().release(opened)
        if price is None:  # unreachable with one slot per party and >= 3 parties
            raise ComparisonRefused("parties", "a second price needs at least two bidders")
        return {self.name: int(price), "winner": spec.parties[int(winner)]}


class ThresholdVote(Comparison):
    name, wire = "threshold", 9
    summary = (
        "YES if the column's sum over all parties is at least --threshold times its record count, else NO "
        "(exact, one bit)"
    )
    uses: ClassVar[tuple[str, ...]] = ("fraction",)
    needs: ClassVar[tuple[str, ...]] = ("fraction",)

    def validate(self, spec: ComparisonSpec) -> None:
        super().validate(spec)
        if spec.fraction is None or not 0 <= spec.fraction <= 1:
            raise ComparisonRefused("fraction", "a threshold is a fraction of the count in [0, 1]")

    def computation(self, spec: ComparisonSpec) -> Computation:
        return Threshold(fraction=spec.fraction)

    def prepare(self, spec: ComparisonSpec, position: int, values: Sequence[Any], rng: RandomSource) -> Any:
        numbers = whole_numbers(values, spec.column)
        total = sum(numbers)
        if abs(total) > COUNT_MAX or len(numbers) > COUNT_MAX:
            raise ComparisonRefused("column", "a threshold's sum and count must stay within 2^40 per party")
        return Threshold(fraction=spec.fraction).prepare(position, total, len(numbers))

    def release(self, spec: ComparisonSpec, opened: np.ndarray) -> dict[str, Entry]:
        return {self.name: "YES" if Threshold(fraction=spec.fraction).release(opened) else "NO"}


class NoisySelection(Comparison):
    name, wire = "noisy-argmax", 11
    summary = (
        "DP selection: the --categories value the most records hold, after every party adds its noise piece "
        "to every count inside the MPC (report-noisy-max, epsilon-DP)"
    )
    private = True
    uses: ClassVar[tuple[str, ...]] = ("categories",)
    needs: ClassVar[tuple[str, ...]] = ("categories",)

    def validate(self, spec: ComparisonSpec) -> None:
        super().validate(spec)
        if len(spec.categories) < 2 or len(set(spec.categories)) != len(spec.categories):
            raise ComparisonRefused("categories", "noisy-argmax chooses among at least two distinct categories")

    def _computation(self, spec: ComparisonSpec) -> NoisyArgmax:
        assert spec.epsilon is not None
        return NoisyArgmax(spec.epsilon, len(spec.parties), colluders=spec.colluders)

    def computation(self, spec: ComparisonSpec) -> Computation:
        return self._computation(spec)

    def loss(self, spec: ComparisonSpec) -> PrivacyLoss | None:
        return self._computation(spec).guarantee()

    def prepare(self, spec: ComparisonSpec, position: int, values: Sequence[Any], rng: RandomSource) -> Any:
        index = {c: i for i, c in enumerate(spec.categories)}
        counts = np.zeros(len(spec.categories), dtype=np.int64)
        for v in values:  # labels outside the categories count for no candidate
            i = index.get(str(v))
            if i is not None:
                counts[i] += 1
        return self._computation(spec).prepare(position, counts, rng)

    def release(self, spec: ComparisonSpec, opened: np.ndarray) -> dict[str, Entry]:
        return {self.name: spec.categories[int(self._computation(spec).release(opened))]}


class Quantile(Comparison):
    name, wire = "quantile", 12
    summary = (
        "DP quantile: the --edges value nearest in rank to the --quantile of all parties' records "
        "(exponential mechanism as report-noisy-max under MPC, epsilon-DP)"
    )
    private = True
    uses: ClassVar[tuple[str, ...]] = ("quantile", "edges")
    needs: ClassVar[tuple[str, ...]] = ("quantile", "edges")

    def q(self, spec: ComparisonSpec) -> float:
        if spec.quantile is None:
            raise ComparisonRefused("quantile", "give the quantile q, strictly between 0 and 1")
        return spec.quantile

    def validate(self, spec: ComparisonSpec) -> None:
        super().validate(spec)
        q = self.q(spec)
        if not 0 < q < 1:
            raise ComparisonRefused("quantile", "q must be strictly between 0 and 1")
        edges = np.asarray(spec.edges, dtype=np.float64)
        if edges.size < 2 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
            raise ComparisonRefused("edges", "give at least two strictly increasing finite candidate values")

    def _computation(self, spec: ComparisonSpec) -> DPQuantile:
        assert spec.epsilon is not None
        return DPQuantile(self.q(spec), spec.edges, spec.epsilon, len(spec.parties), colluders=spec.colluders)

    def computation(self, spec: ComparisonSpec) -> Computation:
        return self._computation(spec)

    def loss(self, spec: ComparisonSpec) -> PrivacyLoss | None:
        return self._computation(spec).guarantee()

    def prepare(self, spec: ComparisonSpec, position: int, values: Sequence[Any], rng: RandomSource) -> Any:
        try:
            records = np.asarray([float(v) for v in values], dtype=np.float64)
        except (TypeError, ValueError):
            raise ComparisonRefused("column", f"{spec.column!r} must hold numbers") from None
        if not np.all(np.isfinite(records)):
            raise ComparisonRefused("column", f"{spec.column!r} must hold finite numbers")
        return self._computation(spec).prepare(position, records, rng)

    def release(self, spec: ComparisonSpec, opened: np.ndarray) -> dict[str, Entry]:
        return {self.name: float(self._computation(spec).release(opened))}


class Median(Quantile):
    name, wire = "median", 13
    summary = "DP median: the quantile at q = 1/2 (--quantile may be left out)"
    uses: ClassVar[tuple[str, ...]] = ("edges",)
    needs: ClassVar[tuple[str, ...]] = ("edges",)

    def q(self, spec: ComparisonSpec) -> float:
        if spec.quantile is not None and spec.quantile != 0.5:
            raise ComparisonRefused("quantile", "the median is the quantile at 1/2; leave --quantile out")
        return 0.5


COMPARISONS: Registry[Comparison] = Registry("comparison statistic")  # the comparisons among STATISTICS
for _kind in (Max(), Min(), Argmax(), ThresholdVote(), SecondPriceAuction(), NoisySelection(), Quantile(), Median()):
    STATISTICS.register(COMPARISONS.register(_kind))


def refusal(policy: PartyPolicy, spec: ComparisonSpec) -> str | None:
    """Why a party with ``policy`` refuses to compute ``spec`` under MPC, or None if it accepts (no local detail
    in the words): exact comparisons only with ``allow_exact_nonlinear``, the statistics, columns, epsilon cap and
    colluders of the same policy as its secure sums."""
    if not policy.allows(spec.statistic, spec.column):
        return policy.not_allowed(spec.statistic, spec.column)
    if spec.epsilon is None:
        if not policy.allow_exact_nonlinear:
            return "this party's policy does not allow exact nonlinear releases (allow_exact_nonlinear)"
        return None
    if spec.epsilon > policy.max_epsilon:
        return f"epsilon {spec.epsilon:g} exceeds this party's per-query maximum {policy.max_epsilon:g}"
    if spec.colluders < policy.min_colluders:
        return f"the query assumes {spec.colluders} colluders; this party requires at least {policy.min_colluders}"
    return None


def run_locally(spec: ComparisonSpec, columns: Sequence[Sequence[Any]], seed: int | None = None) -> dict[str, Entry]:
    """The release of ``spec`` with party p holding ``columns[p]``, every party in this process (tests, demos)."""
    from .memory import run_in_memory, seeded_rngs

    if len(columns) != len(spec.parties):
        raise ValueError(f"one column per party: {len(spec.parties)} parties, {len(columns)} columns")
    n, kind = len(spec.parties), spec.kind
    rngs = seeded_rngs(n, seed) if seed is not None else [system_random("mpc") for _ in range(n)]
    noise = seeded_rngs(n, seed + 1) if seed is not None else [system_random("noise") for _ in range(n)]
    computation = kind.computation(spec)
    programs = [computation.program(kind.prepare(spec, p, columns[p], noise[p])) for p in range(n)]
    results, _ = run_in_memory(n, programs, rngs, session_id=spec.session_id)
    return kind.release(spec, results[0])
