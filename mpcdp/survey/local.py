"""Local DP on the respondent's device: the local mechanisms a question may use, one class each.

Each mechanism is epsilon-LDP for any two answers of one respondent (the
neighbouring relation of local DP, :attr:`mpcdp.dp.loss.Relation.LOCAL`); the
randomizers are those of :mod:`mpcdp.dp.local` (exact samplers,
keep-probabilities rounded towards more privacy) applied to a question's
encoded block (:meth:`mpcdp.survey.questions.Question.encode`). For frequency
questions a reported coordinate is 1 with probability p if truly 1 and q if
truly 0; :meth:`LocalMechanism.rates` gives (p, q) for the debiasing.

* ``none``: the encoded answer as it is.
* ``two_coin`` (yes/no, epsilon = ln 3): answer truthfully on heads, else
  report a second coin (Warner 1965); p = 3/4, q = 1/4.
* ``rr`` (yes/no, multi-select): keep each bit with probability
  e^eps' / (1 + e^eps'), else flip, eps' = epsilon / width: one answer
  changes at most ``width`` bits, so the block is epsilon-LDP.
* ``krr`` (choice): k-ary randomized response: keep with probability
  e^eps / (e^eps + k - 1), else report one of the other k - 1 options
  uniformly (Kairouz, Oh and Viswanath 2014).
* ``unary`` (choice): optimized unary encoding: one-hot, then the true bit is
  1 with probability 1/2 and every other bit with q = 1 / (e^eps + 1)
  (Wang et al., USENIX Security 2017). Its output is any 0/1 vector.
* ``laplace`` (numeric): grid Laplace on the power-of-two step, sensitivity
  hi - lo (:class:`mpcdp.dp.laplace.GridLaplace`, Dwork et al. 2006), clamped
  ``LAPLACE_TAIL`` noise scales beyond the answer range (P(|noise| > tail)
  <= 1e-9, so the clamp's bias is below 1e-9 of the noise scale).

A new mechanism is one subclass registered in :data:`LOCAL_MECHANISMS`; a
question kind lists which ones it accepts.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import ClassVar, Protocol

import numpy as np

from ..dp.laplace import GridLaplace
from ..dp.local import TWO_COIN_EPSILON, BinaryRR, KaryRR, UnaryEncoding, two_coin_randomize
from ..dp.rational import epsilon_in_range
from ..dp.samplers import discrete_laplace
from ..prg import RandomSource
from ..registry import Registry

Json = dict[str, object]

# A locally noised numeric report is clamped T = b * LAPLACE_TAIL steps beyond the answer
# range (b the noise scale in steps): P(|noise| > T) <= 1e-9, so the clamp's bias is below 1e-9 * b.
LAPLACE_TAIL = math.log(1e9)


class Block(Protocol):
    """What a local mechanism needs to know of the question whose block it randomizes."""

    @property
    def width(self) -> int: ...

    @property
    def span(self) -> float: ...  # numeric questions: hi - lo, a local Laplace's sensitivity

    @property
    def grid_exponent(self) -> int: ...  # numeric questions: reports are multiples of 2^grid_exponent

    @property
    def unit_range(self) -> tuple[int, int]: ...  # smallest and largest coordinate of a report


def _threshold(p: Fraction) -> str:
    """An exact probability p (a multiple of 2^-64) as the decimal T with Bernoulli(p) = [uint64 < T]."""
    return str(int(p * (1 << 64)))


@lru_cache(maxsize=256)
def _binary(epsilon: float) -> BinaryRR:
    return BinaryRR(epsilon)


@lru_cache(maxsize=256)
def _kary(epsilon: float, k: int) -> KaryRR:
    return KaryRR(epsilon, k)


@lru_cache(maxsize=256)
def _unary(epsilon: float, k: int) -> UnaryEncoding:
    return UnaryEncoding(epsilon, k)


@lru_cache(maxsize=64)
def _grid_laplace(epsilon: float, sensitivity: float, grid_exponent: int) -> GridLaplace:
    return GridLaplace(epsilon, sensitivity, grid_exponent, rounding="unbiased")


@dataclass(frozen=True)
class LocalMechanism(ABC):
    """A local DP mechanism with its parameter, as declared by one question (``local = {...}``)."""

    name: ClassVar[str]
    keeps_one_hot: ClassVar[bool] = True  # a one-hot block stays one-hot (so a choice is still one option)
    epsilon_required: ClassVar[bool] = True  # the survey file must give ``epsilon``

    epsilon: float | None = None

    @classmethod
    def configure(cls, epsilon: float | None) -> LocalMechanism:
        """This mechanism at ``epsilon`` (from the survey file); ValueError says what is wrong with it."""
        if epsilon is None:
            raise ValueError("required field is missing")
        try:
            epsilon_in_range(epsilon)
        except ValueError as exc:
            raise ValueError(str(exc).removeprefix("epsilon ")) from None
        return cls(float(epsilon))

    @property
    def enabled(self) -> bool:
        return True

    @abstractmethod
    def randomize(self, q: Block, block: np.ndarray, rng: RandomSource) -> np.ndarray:
        """The (n, width) int64 reports of an encoded (n, width) block, one row per respondent."""

    def rates(self, q: Block) -> tuple[float, float]:
        """(P(report 1 | true 1), P(report 1 | true 0)) of each coordinate of a frequency question."""
        raise TypeError(f"the {self.name} mechanism reports no frequencies")

    def report_variance(self, q: Block) -> float:
        """Variance of the local noise on one numeric report, in the answer's units."""
        return 0.0

    def tail_steps(self, q: Block) -> int:
        """Steps a numeric report may lie beyond the answer range."""
        return 0

    @abstractmethod
    def browser_parameters(self, q: Block) -> Json:
        """Exactly what the sampler uses, JSON-safe (integers as decimal strings), for other implementations."""

    def _epsilon(self) -> float:
        assert self.epsilon is not None, "a configured mechanism has its epsilon"
        return self.epsilon


LOCAL_MECHANISMS: Registry[type[LocalMechanism]] = Registry("local mechanism")


@LOCAL_MECHANISMS.register
@dataclass(frozen=True)
class NoLocal(LocalMechanism):
    """No local randomization: the encoded answer is reported as it is (no local guarantee)."""

    name: ClassVar[str] = "none"
    epsilon_required: ClassVar[bool] = False

    @classmethod
    def configure(cls, epsilon: float | None) -> LocalMechanism:
        if epsilon is not None:
            raise ValueError("no local mechanism, so no epsilon")
        return cls()

    @property
    def enabled(self) -> bool:
        return False

    def randomize(self, q: Block, block: np.ndarray, rng: RandomSource) -> np.ndarray:
        return block

    def rates(self, q: Block) -> tuple[float, float]:
        return 1.0, 0.0

    def browser_parameters(self, q: Block) -> Json:
        return {}


@LOCAL_MECHANISMS.register
@dataclass(frozen=True)
class TwoCoin(LocalMechanism):
    """Warner's two coins (epsilon = ln 3 exactly): heads, the truth; tails, a second fair coin."""

    name: ClassVar[str] = "two_coin"
    epsilon_required: ClassVar[bool] = False

    @classmethod
    def configure(cls, epsilon: float | None) -> LocalMechanism:
        if epsilon is not None and abs(epsilon - TWO_COIN_EPSILON) > 1e-9:
            raise ValueError(f"the two-coin mechanism has epsilon = ln 3 = {TWO_COIN_EPSILON:.6f}")
        return cls(TWO_COIN_EPSILON)

    def randomize(self, q: Block, block: np.ndarray, rng: RandomSource) -> np.ndarray:
        return two_coin_randomize(block.astype(bool), rng).reshape(block.shape).astype(np.int64)

    def rates(self, q: Block) -> tuple[float, float]:
        return 0.75, 0.25

    def browser_parameters(self, q: Block) -> Json:
        return {}


@LOCAL_MECHANISMS.register
@dataclass(frozen=True)
class RandomizedResponse(LocalMechanism):
    """Binary randomized response on each bit at epsilon / width (Warner 1965)."""

    name: ClassVar[str] = "rr"
    keeps_one_hot: ClassVar[bool] = False

    def _bit(self, q: Block) -> BinaryRR:
        return _binary(self._epsilon() / q.width)

    def randomize(self, q: Block, block: np.ndarray, rng: RandomSource) -> np.ndarray:
        return self._bit(q).randomize(block.astype(bool), rng).reshape(block.shape).astype(np.int64)

    def rates(self, q: Block) -> tuple[float, float]:
        keep = float(self._bit(q).keep)
        return keep, 1 - keep

    def browser_parameters(self, q: Block) -> Json:
        return {"keep_threshold": _threshold(self._bit(q).keep)}


@LOCAL_MECHANISMS.register
@dataclass(frozen=True)
class KaryResponse(LocalMechanism):
    """k-ary randomized response over a one-hot block (Kairouz, Oh and Viswanath 2014)."""

    name: ClassVar[str] = "krr"

    def _mechanism(self, q: Block) -> KaryRR:
        return _kary(self._epsilon(), q.width)

    def randomize(self, q: Block, block: np.ndarray, rng: RandomSource) -> np.ndarray:
        reported = self._mechanism(q).randomize(np.argmax(block, axis=1), rng)
        return UnaryEncoding.one_hot(reported, q.width).astype(np.int64)

    def rates(self, q: Block) -> tuple[float, float]:
        keep = float(self._mechanism(q).keep)
        return keep, (1 - keep) / (q.width - 1)

    def browser_parameters(self, q: Block) -> Json:
        return {"keep_threshold": _threshold(self._mechanism(q).keep), "k": q.width}


@LOCAL_MECHANISMS.register
@dataclass(frozen=True)
class OptimizedUnary(LocalMechanism):
    """Optimized unary encoding of a one-hot block (Wang et al., USENIX Security 2017)."""

    name: ClassVar[str] = "unary"
    keeps_one_hot: ClassVar[bool] = False

    def _mechanism(self, q: Block) -> UnaryEncoding:
        return _unary(self._epsilon(), q.width)

    def randomize(self, q: Block, block: np.ndarray, rng: RandomSource) -> np.ndarray:
        return self._mechanism(q).randomize(block.astype(bool), rng).astype(np.int64)

    def rates(self, q: Block) -> tuple[float, float]:
        return 0.5, float(self._mechanism(q).flip_on)

    def browser_parameters(self, q: Block) -> Json:
        return {"flip_on_threshold": _threshold(self._mechanism(q).flip_on)}


@LOCAL_MECHANISMS.register
@dataclass(frozen=True)
class LocalLaplace(LocalMechanism):
    """Grid Laplace on a numeric report in steps, sensitivity hi - lo, clamped ``LAPLACE_TAIL`` scales out."""

    name: ClassVar[str] = "laplace"

    def grid(self, q: Block) -> GridLaplace:
        return _grid_laplace(self._epsilon(), q.span, q.grid_exponent)

    def randomize(self, q: Block, block: np.ndarray, rng: RandomSource) -> np.ndarray:
        noisy = block + discrete_laplace(self.grid(q).scale_steps, block.size, rng).reshape(block.shape)
        clamped: np.ndarray = np.clip(noisy, *q.unit_range).astype(np.int64)
        return clamped

    def report_variance(self, q: Block) -> float:
        return self.grid(q).variance

    def tail_steps(self, q: Block) -> int:
        return math.ceil(float(self.grid(q).scale_steps) * LAPLACE_TAIL)

    def browser_parameters(self, q: Block) -> Json:
        scale = Fraction(self.grid(q).scale_steps)
        return {
            "scale_num": str(scale.numerator),
            "scale_den": str(scale.denominator),
            "grid_exponent": q.grid_exponent,
        }
