"""Question kinds, one class each: what an answer is, how it is encoded, proved, randomized and debiased.

Each kind is a :class:`Question` subclass registered in :data:`QUESTION_KINDS`
under the name survey files use (``kind = "choice"``). It owns its block's
width and labels, the answer check, the encoding into integers, the local
mechanisms it accepts, its replace-one-respondent sensitivity, the Prio3
circuit and measurement proving an answer valid, the debiasing of the summed
block, and (for simulations and tests) a synthetic population and the forged
answers a malicious respondent could try. Blocks:

    yesno        [1 if yes else 0]                         Count
    choice       one-hot over the options                  Histogram(k), or SumVec(k, 1) after unary encoding
    multiselect  one bit per option                        SumVec(k, 1)
    numeric      the answer clamped to [lo, hi], randomly  Sum(bits) of report - lo (in steps), lo and hi the
                 rounded (unbiased) to a multiple of        report range (:attr:`Question.unit_range`)
                 ``step``, in steps

Summed over respondents, block coordinates are counts (or a sum in steps).
Frequencies are debiased as (c/n - q) / (p - q), p and q the local
mechanism's response rates (Wang et al., USENIX Security 2017; Warner 1965),
with variance lambda (1 - lambda) / (n (p - q)^2), lambda the reported share
(its maximum 1/4 where noise pushed it outside [0, 1]), plus the central
noise's variance / (n (p - q))^2. A numeric mean is unbiased (zero-mean local
noise, unbiased rounding); its variance is bounded by (Popoviciu's
(hi - lo)^2 / 4 + the local noise + the rounding's step^2 / 4) / n plus the
central noise's variance * step^2 / n^2. Variances are for respondents drawn
at random from a population (sampling plus randomization).

A numeric report's proof shows ``0 <= report - lo < 2^bits``: a forged
numeric report can add at most ``lo + 2^bits - 1 <= 2 hi - lo + 1`` steps,
under twice an honest extreme; the estimator adds ``lo`` back per counted
respondent.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import ClassVar

import numpy as np

from ..dp.estimate import Estimate
from ..dp.laplace import unbiased_round
from ..dp.local import UnaryEncoding
from ..prg import RandomSource
from ..registry import Registry
from ..vdaf import Prio3, Prio3Count, Prio3Histogram, Prio3Sum, Prio3SumVec
from .local import KaryResponse, LocalLaplace, LocalMechanism, NoLocal, OptimizedUnary, RandomizedResponse, TwoCoin

MAX_OPTIONS = 256
Attack = tuple[str, list[int]]  # (what it does, the encoded measurement it proves)


@dataclass(frozen=True)
class CentralNoise:
    """Distributed noise the aggregators add to a question's totals at release (:mod:`.noise`)."""

    mechanism: str = "none"
    epsilon: float | None = None
    delta: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.mechanism != "none"


def chunk_length(length: int) -> int:
    """Draft 08's suggested chunk length: about sqrt(length) (at least 1)."""
    return max(1, round(math.sqrt(length)))


@dataclass(frozen=True)
class Question(ABC):
    """One question of a survey: the fields every kind shares; the kind is the subclass."""

    name: ClassVar[str]  # the kind, as survey files write it
    mechanisms: ClassVar[tuple[type[LocalMechanism], ...]]  # the local mechanisms this kind accepts
    fields: ClassVar[tuple[str, ...]] = ()  # the kind's own fields in a survey file
    unit: ClassVar[str] = "share of respondents"  # what each estimate is

    id: str
    text: str = ""
    options: tuple[str, ...] = ()
    bounds: tuple[float, float] | None = None
    step: float | None = None  # numeric: the report grid, a power of two (a declared step is rounded down)
    local: LocalMechanism = field(default_factory=NoLocal)
    central: CentralNoise = field(default_factory=CentralNoise)

    @property
    def kind(self) -> str:
        return self.name

    @property
    @abstractmethod
    def width(self) -> int:
        """Ring coordinates this question takes in an encoded answer sheet."""

    @property
    @abstractmethod
    def labels(self) -> tuple[str, ...]:
        """What each coordinate estimates."""

    @property
    def unit_range(self) -> tuple[int, int]:
        """The smallest and largest coordinate of a report."""
        return 0, 1

    @property
    def span(self) -> float:
        """hi - lo of a numeric answer; 1 for a bit."""
        return 1.0

    @property
    def grid_exponent(self) -> int:
        """Reports are integer multiples of 2^grid_exponent (0 for counts)."""
        return 0

    @property
    def magnitude(self) -> int:
        """Largest |coordinate| one report can contribute, in ring units."""
        return 1

    @property
    @abstractmethod
    def sensitivity(self) -> int:
        """L1 change of this block when one respondent's report is replaced (ring units)."""

    @property
    def l2_sensitivity(self) -> int:
        """L2 change of this block when one respondent's report is replaced (0/1 coordinates: sqrt(L1))."""
        return math.isqrt(self.sensitivity - 1) + 1

    @property
    def value_range(self) -> tuple[float, float]:
        """Where the true value of each label lies."""
        return 0.0, 1.0

    @abstractmethod
    def problem(self, answer: object) -> str | None:
        """Why ``answer`` is not a valid answer to this question (never echoing it), or None."""

    @abstractmethod
    def encode(self, answers: Sequence[object], rng: RandomSource) -> np.ndarray:
        """Checked answers as an (n, width) int64 block, before local randomization."""

    def randomize(self, answers: Sequence[object], rng: RandomSource) -> np.ndarray:
        """The (n, width) int64 reports of ``n`` checked answers, after the local mechanism (row by row)."""
        return self.local.randomize(self, self.encode(answers, rng), rng)

    @abstractmethod
    def estimate(self, total: np.ndarray, respondents: int, noise_variance: float) -> Estimate:
        """Debiased estimates of the labels from the summed block over ``respondents`` reports."""

    @abstractmethod
    def make_circuit(self, shares: int) -> Prio3:
        """The Prio3 instance proving one report valid, with one share per aggregator."""

    def circuit(self, shares: int) -> Prio3:
        return _circuit(self, shares)

    @abstractmethod
    def measurement(self, row: np.ndarray) -> int | list[int]:
        """The Prio3 measurement of one randomized report."""

    def unshift(self, total: list[int], count: int) -> list[int]:
        """A summed measurement back in report units (numeric measurements are shifted by lo)."""
        return total

    @abstractmethod
    def attacks(self) -> list[Attack]:
        """Invalid encoded measurements a malicious respondent could prove (:mod:`.forged`)."""

    @abstractmethod
    def synthetic(self, n: int, rng: RandomSource) -> tuple[list[object], list[float]]:
        """``n`` answers from a fixed population shape, and the sample's true value of each label."""


@lru_cache(maxsize=256)
def _circuit(q: Question, shares: int) -> Prio3:
    return q.make_circuit(shares)


def _uniforms(n: int, rng: RandomSource) -> np.ndarray:
    return rng.uint64(2 * n).reshape(n, 2) / 2.0**64


QUESTION_KINDS: Registry[type[Question]] = Registry("question kind")


@dataclass(frozen=True)
class _Frequency(Question):
    """A question whose coordinates are 0/1 and whose estimates are population shares."""

    def estimate(self, total: np.ndarray, respondents: int, noise_variance: float) -> Estimate:
        p, q = self.local.rates(self)
        n = float(respondents)
        lam = total / n
        # the plug-in lambda (1 - lambda) where lambda is a possible share; where noise pushed it
        # outside [0, 1] the plug-in says nothing (clipping made it 0), so use its maximum 1/4
        share_var = np.where((lam >= 0) & (lam <= 1), lam * (1 - lam), 0.25)
        var = (share_var / n + noise_variance / n**2) / (p - q) ** 2
        return Estimate((lam - q) / (p - q), var, respondents)

    def measurement(self, row: np.ndarray) -> int | list[int]:
        return [int(x) for x in row]


@QUESTION_KINDS.register
@dataclass(frozen=True)
class YesNo(_Frequency):
    """A yes/no question: true or false."""

    name: ClassVar[str] = "yesno"
    mechanisms: ClassVar[tuple[type[LocalMechanism], ...]] = (NoLocal, TwoCoin, RandomizedResponse)

    @property
    def width(self) -> int:
        return 1

    @property
    def labels(self) -> tuple[str, ...]:
        return ("yes",)

    @property
    def sensitivity(self) -> int:
        return 1

    def problem(self, answer: object) -> str | None:
        return None if isinstance(answer, bool) else "must be true or false"

    def encode(self, answers: Sequence[object], rng: RandomSource) -> np.ndarray:
        return np.array(answers, dtype=bool).reshape(len(answers), 1).astype(np.int64)

    def make_circuit(self, shares: int) -> Prio3:
        return Prio3Count(shares)

    def measurement(self, row: np.ndarray) -> int | list[int]:
        return int(row[0])

    def attacks(self) -> list[Attack]:
        return [("a count of -1", [-1]), ("a count of 10^6", [10**6])]

    def synthetic(self, n: int, rng: RandomSource) -> tuple[list[object], list[float]]:
        """Yes with probability 0.62."""
        yes = _uniforms(n, rng)[:, 0] < 0.62
        return yes.tolist(), [float(yes.mean())]


@dataclass(frozen=True)
class _Options(_Frequency):
    """A question over declared options, one coordinate each."""

    fields: ClassVar[tuple[str, ...]] = ("options",)

    @property
    def width(self) -> int:
        return len(self.options)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.options


@QUESTION_KINDS.register
@dataclass(frozen=True)
class Choice(_Options):
    """A single choice among the options."""

    name: ClassVar[str] = "choice"
    mechanisms: ClassVar[tuple[type[LocalMechanism], ...]] = (NoLocal, KaryResponse, OptimizedUnary)

    @property
    def sensitivity(self) -> int:
        return 2 if self.local.keeps_one_hot else len(self.options)

    def problem(self, answer: object) -> str | None:
        return None if answer in self.options else f"must be one of the {len(self.options)} declared options"

    def encode(self, answers: Sequence[object], rng: RandomSource) -> np.ndarray:
        index = {o: i for i, o in enumerate(self.options)}
        picked = np.array([index[a] for a in answers], dtype=np.int64)  # type: ignore[index]
        return UnaryEncoding.one_hot(picked, len(self.options)).astype(np.int64)

    def make_circuit(self, shares: int) -> Prio3:
        k = len(self.options)
        if self.local.keeps_one_hot:
            return Prio3Histogram(shares, k, chunk_length(k))
        return Prio3SumVec(shares, k, 1, chunk_length(k))

    def measurement(self, row: np.ndarray) -> int | list[int]:
        return int(np.argmax(row)) if self.local.keeps_one_hot else [int(x) for x in row]

    def attacks(self) -> list[Attack]:
        k = len(self.options)
        return [
            (f"{self.options[0]!r} counted 10^6 times", [10**6] + [0] * (k - 1)),
            ("two options in a single choice", [1, 1] + [0] * (k - 2)),
        ]

    def synthetic(self, n: int, rng: RandomSource) -> tuple[list[object], list[float]]:
        """Option i with weight k - i."""
        k = len(self.options)
        cdf = np.cumsum(np.arange(k, 0, -1)) / (k * (k + 1) / 2)
        index = np.minimum(np.searchsorted(cdf, _uniforms(n, rng)[:, 0], side="right"), k - 1)
        return [self.options[i] for i in index], (np.bincount(index, minlength=k) / n).tolist()


@QUESTION_KINDS.register
@dataclass(frozen=True)
class MultiSelect(_Options):
    """Any set of distinct options."""

    name: ClassVar[str] = "multiselect"
    mechanisms: ClassVar[tuple[type[LocalMechanism], ...]] = (NoLocal, RandomizedResponse)

    @property
    def sensitivity(self) -> int:
        return len(self.options)

    def problem(self, answer: object) -> str | None:
        ok = (
            isinstance(answer, (list, tuple))
            and all(x in self.options for x in answer)
            and len(set(answer)) == len(answer)
        )
        return None if ok else "must be a list of distinct declared options"

    def encode(self, answers: Sequence[object], rng: RandomSource) -> np.ndarray:
        rows = [[o in a for o in self.options] for a in answers]  # type: ignore[operator]
        return np.array(rows, dtype=bool).reshape(len(answers), len(self.options)).astype(np.int64)

    def make_circuit(self, shares: int) -> Prio3:
        k = len(self.options)
        return Prio3SumVec(shares, k, 1, chunk_length(k))

    def attacks(self) -> list[Attack]:
        return [(f"{self.options[0]!r} counted twice", [2] + [0] * (len(self.options) - 1))]

    def synthetic(self, n: int, rng: RandomSource) -> tuple[list[object], list[float]]:
        """Option j with probability 0.15 + 0.6 (k - 1 - j) / (k - 1)."""
        k = len(self.options)
        _uniforms(n, rng)  # drawn for every kind, so each question's population keeps its stream
        probs = 0.15 + 0.6 * np.arange(k - 1, -1, -1) / (k - 1)
        picks = rng.uint64(n * k).reshape(n, k) / 2.0**64 < probs
        return [[o for o, p in zip(self.options, row, strict=True) if p] for row in picks], picks.mean(axis=0).tolist()


@QUESTION_KINDS.register
@dataclass(frozen=True)
class Numeric(Question):
    """A number in [lo, hi], reported on a power-of-two grid."""

    name: ClassVar[str] = "numeric"
    unit: ClassVar[str] = "mean"
    mechanisms: ClassVar[tuple[type[LocalMechanism], ...]] = (NoLocal, LocalLaplace)
    fields: ClassVar[tuple[str, ...]] = ("bounds", "step")

    @property
    def width(self) -> int:
        return 1

    @property
    def labels(self) -> tuple[str, ...]:
        return ("mean",)

    @property
    def _bounds(self) -> tuple[float, float]:
        assert self.bounds is not None, "a numeric question has bounds"
        return self.bounds

    @property
    def _step(self) -> float:
        assert self.step is not None, "a numeric question has a step"
        return self.step

    @property
    def span(self) -> float:
        lo, hi = self._bounds
        return hi - lo

    @property
    def grid_exponent(self) -> int:
        return math.frexp(self._step)[1] - 1

    @property
    def unit_range(self) -> tuple[int, int]:
        """The smallest and largest report, in steps: the rounded answer range, widened by the local
        mechanism's tail (a local Laplace report is clamped there)."""
        lo, hi = self._bounds
        tail = self.local.tail_steps(self)
        return math.floor(lo / self._step) - tail, math.ceil(hi / self._step) + tail

    @property
    def magnitude(self) -> int:
        return max(abs(u) for u in self.unit_range)

    @property
    def sensitivity(self) -> int:
        lo, hi = self.unit_range
        return hi - lo

    @property
    def l2_sensitivity(self) -> int:
        return self.sensitivity

    @property
    def value_range(self) -> tuple[float, float]:
        return self._bounds

    @property
    def bits(self) -> int:
        """Bits of the proved measurement ``report - lo``."""
        lo, hi = self.unit_range
        return max(1, (hi - lo).bit_length())

    def problem(self, answer: object) -> str | None:
        ok = isinstance(answer, (int, float)) and not isinstance(answer, bool) and math.isfinite(answer)
        return None if ok else "must be a finite number"

    def encode(self, answers: Sequence[object], rng: RandomSource) -> np.ndarray:
        x = np.clip(np.array(answers, dtype=np.float64), *self._bounds)
        return unbiased_round(x / self._step, rng).reshape(len(answers), 1)  # x / step is exact: a power of two

    def estimate(self, total: np.ndarray, respondents: int, noise_variance: float) -> Estimate:
        n = float(respondents)
        step = self._step
        var = (self.span**2 / 4 + self.local.report_variance(self) + step**2 / 4) / n
        var += noise_variance * step**2 / n**2
        return Estimate(total * step / n, np.array([var]), respondents)

    def make_circuit(self, shares: int) -> Prio3:
        return Prio3Sum(shares, self.bits)

    def measurement(self, row: np.ndarray) -> int | list[int]:
        return int(row[0]) - self.unit_range[0]

    def unshift(self, total: list[int], count: int) -> list[int]:
        return [total[0] + self.unit_range[0] * count]

    def attacks(self) -> list[Attack]:
        low = -int(10**12 // self._step)  # the whole value on the lowest bit: a bit of -10^12 / step
        return [
            (f"an answer of -10^12 ({self.id})", [low] + [0] * (self.bits - 1)),
            (f"an answer of 10^6 x its top ({self.id})", [0] * (self.bits - 1) + [10**6]),
        ]

    def synthetic(self, n: int, rng: RandomSource) -> tuple[list[object], list[float]]:
        """lo + (hi - lo) u1 u2, u uniform: a right-skewed answer, like salaries."""
        u = _uniforms(n, rng)
        lo, hi = self._bounds
        values = lo + (hi - lo) * u[:, 0] * u[:, 1]
        return values.tolist(), [float(values.mean())]
