"""Word-level metric-DP perturbation: truncated Gumbel and multivariate Laplace.

Both mechanisms give epsilon-metric DP (d_chi-privacy, Chatzikokolakis et al.,
PETS 2013) over the vocabulary with d the Euclidean distance between word
vectors: for any words w, w' and output y,
P[M(w) = y] <= exp(epsilon * ||v(w) - v(w')||) P[M(w') = y]. Epsilon is per unit of
embedding distance, so it is not comparable with the epsilon of a count, nor
across embeddings. Applied word by word, the costs add up over the words of a
text (metric-DP composition).

* :class:`TruncatedGumbel`: Xu, Feyisetan, Aggarwal, Xu, Teissier, "Density-aware
  differentially private textual perturbations using truncated Gumbel noise",
  FLAIRS 2021, as restated in the appendix of Meisenbacher, Nandakumar,
  Klymenko, Matthes, "1-Diffractor", LREC-COLING 2024.
* :class:`MultivariateLaplace`: Feyisetan, Balle, Drake, Diethe, "Privacy- and
  utility-preserving textual analysis via calibrated multivariate
  perturbations", WSDM 2020.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ..prg import RandomSource
from ..registry import Registry
from . import samplers
from .embeddings import Embedding
from .nearest import Int64s, ListSearch, Points, VocabularySearch
from .neighbors import NeighborTable, exact_neighbors

_CHUNK = 1 << 16  # tokens per vectorised step; bounds scratch memory


class EpsilonTooSmallError(ValueError):
    """Epsilon is below the smallest value for which a calibration exists."""

    def __init__(self, epsilon: float, minimum: float, vocabulary_size: int):
        self.epsilon, self.minimum = epsilon, minimum
        super().__init__(
            f"epsilon={epsilon:g} is too small for the truncated Gumbel mechanism on this "
            f"vocabulary of {vocabulary_size} words: it needs epsilon > {minimum:.6g}"
        )


class Mechanism(Protocol):
    name: str
    epsilon: float

    def perturb(self, given: npt.ArrayLike, rng: RandomSource) -> np.ndarray:
        """One independent draw of the mechanism for each vocabulary index in ``words``."""


def _check_epsilon(value: float) -> float:
    epsilon = float(value)
    if not math.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(f"epsilon must be a positive finite number, got {epsilon!r}")
    return epsilon


def _check_words(given: npt.ArrayLike, size: int) -> npt.NDArray[np.int64]:
    words = np.asarray(given)
    if words.ndim != 1 or (words.size and not np.issubdtype(words.dtype, np.integer)):
        raise ValueError("words must be a 1-d array of vocabulary indices")
    if words.size and (words.min() < 0 or words.max() >= size):
        raise ValueError(f"words contains an index outside the vocabulary [0, {size})")
    checked: npt.NDArray[np.int64] = words.astype(np.int64, copy=False)
    return checked


def truncated_gumbel_min_epsilon(vocabulary_size: int, delta_min: float) -> float:
    """The infimum of valid epsilons: (2(1 + ln n) + 3) / Delta0; the calibration needs alpha Delta0 > 1."""
    return (2.0 * (1.0 + math.log(vocabulary_size)) + 3.0) / delta_min


def lambert_w0(x: float) -> float:
    """The principal branch of Lambert's W for x > 0 (w e^w = x), by Halley's iteration to full precision."""
    if not x > 0 or not math.isfinite(x):
        raise ValueError(f"lambert_w0 needs a positive finite argument, got {x!r}")
    w = math.log1p(x) if x < 3 else math.log(x) - math.log(math.log(x))
    for _ in range(100):
        e = math.exp(w)
        f = w * e - x
        step = f / (e * (w + 1) - (w + 2) * f / (2 * w + 2))
        w -= step
        if abs(step) <= 4e-16 * max(1.0, abs(w)):
            break
    return w


@dataclass(frozen=True)
class GumbelCalibration:
    """alpha = (eps - 2(1 + ln n)/Delta0)/3; scale b = 2 Delta / min(W0(2 alpha Delta), ln(alpha Delta0))."""

    alpha: float
    scale: float

    @classmethod
    def for_vocabulary(
        cls, epsilon: float, vocabulary_size: int, delta_max: float, delta_min: float
    ) -> GumbelCalibration:
        epsilon = _check_epsilon(epsilon)
        minimum = truncated_gumbel_min_epsilon(vocabulary_size, delta_min)
        if not epsilon > minimum:
            raise EpsilonTooSmallError(epsilon, minimum, vocabulary_size)
        alpha = (epsilon - 2.0 * (1.0 + math.log(vocabulary_size)) / delta_min) / 3.0
        w0 = lambert_w0(2.0 * alpha * delta_max)
        return cls(alpha=alpha, scale=2.0 * delta_max / min(w0, math.log(alpha * delta_min)))


class TruncatedGumbel:
    """Truncated Gumbel (Xu et al., FLAIRS 2021): epsilon-metric DP, Euclidean distance.

    Per word w: k ~ Poisson(ln n) truncated to [1, n]; the candidates are w
    (distance 0) and its k - 1 nearest neighbours; each candidate's distance gets
    iid Gumbel(0, b) noise truncated to [-Delta, Delta]; the candidate with the
    smallest noisy distance is returned. Delta, Delta0 are the global max and min
    pairwise distances. Defined only for epsilon > (2(1 + ln n) + 3) / Delta0.
    Tokens whose k exceeds the cached neighbour lists use an exact search.
    """

    name = "truncated-gumbel"

    def __init__(self, embedding: Embedding, table: NeighborTable, epsilon: float):
        if table.ids.shape[0] != embedding.size or table.fingerprint != embedding.fingerprint():
            raise ValueError("table was not built for this embedding")
        n = embedding.size
        self.embedding, self.table = embedding, table
        self.calibration = GumbelCalibration.for_vocabulary(epsilon, n, table.delta_max, table.delta_min)
        self.epsilon = float(epsilon)
        self.min_epsilon = truncated_gumbel_min_epsilon(n, table.delta_min)
        self.candidate_count = samplers.TruncatedPoisson(math.log(n), 1, n)
        self._width = table.k + 1  # candidates in the table: the word itself, then its neighbours
        self._ids = np.hstack([np.arange(n, dtype=np.int32)[:, None], table.ids]).ravel()
        self._dist = np.hstack([np.zeros((n, 1)), table.distances]).ravel()

    def perturb(self, given: npt.ArrayLike, rng: RandomSource) -> np.ndarray:
        words = _check_words(given, self.embedding.size)
        out = np.empty_like(words)
        for start in range(0, words.size, _CHUNK):
            chunk = words[start : start + _CHUNK]
            out[start : start + _CHUNK] = self._perturb_chunk(chunk, rng)
        return out

    def _perturb_chunk(self, words: np.ndarray, rng: RandomSource) -> np.ndarray:
        # Tokens grouped by their candidate count k: each group is one dense (tokens, k) block of noisy
        # distances and one argmin per row (the first column reaching the minimum; ties have probability ~0).
        # The noise of the whole chunk is drawn at once and used block after block.
        k = self.candidate_count.sample(rng, words.size)
        order = np.argsort(k.astype(np.int16) if k.max() < 1 << 15 else k, kind="stable")
        counts = k[order]
        cuts = (np.flatnonzero(counts[1:] != counts[:-1]) + 1).tolist()
        cached = k <= self._width
        noise = samplers.truncated_gumbel(rng, int(k[cached].sum()), self.calibration.scale, self.table.delta_max)
        out = np.empty_like(words)
        used = 0
        for first, last in zip([0, *cuts], [*cuts, words.size], strict=True):
            count, rows = int(counts[first]), order[first:last]
            if count > self._width:
                out[rows] = [self._perturb_exact(int(w), count, rng) for w in words[rows]]
                continue
            base = words[rows] * self._width
            block = noise[used : used + rows.size * count].reshape(rows.size, count)
            used += rows.size * count
            block += self._dist[base[:, None] + np.arange(count)]
            out[rows] = self._ids[base + block.argmin(axis=1)]
        return out

    def _perturb_exact(self, word: int, k: int, rng: RandomSource) -> int:
        ids, dist = exact_neighbors(self.embedding, word, k - 1)
        ids = np.concatenate([[word], ids])
        dist = np.concatenate([[0.0], dist])
        noise = samplers.truncated_gumbel(rng, k, self.calibration.scale, self.table.delta_max)
        return int(ids[np.argmin(dist + noise)])


class MultivariateLaplace:
    """Multivariate Laplace (Feyisetan et al., WSDM 2020): epsilon-metric DP, Euclidean distance.

    Adds noise z with density proportional to exp(-epsilon ||z||) (a uniform
    direction times a Gamma(d, 1/epsilon) radius) to the word's vector and returns
    the nearest vocabulary word, the source word included. The search is exact
    (:class:`~mpcdp.text.nearest.ExactSearch`), or with ``approximate`` a search of
    the ``nprobe`` nearest of about sqrt(n) inverted lists
    (:class:`~mpcdp.text.nearest.ListSearch`): much faster, and it decodes a
    different word for some tokens (on GloVe 50k at epsilon 10: about 9% at nprobe
    8). Decoding is post-processing of the noisy vector, so the privacy guarantee
    is the same; only utility figures change (``benchmarks/text_throughput.py``
    measures speed and agreement). The searches come from ``searches``, shared by
    every mechanism over the vocabulary (a new one when not given).
    """

    name = "multivariate-laplace"
    DEFAULT_NPROBE = ListSearch.DEFAULT_NPROBE

    def __init__(
        self,
        embedding: Embedding,
        epsilon: float,
        approximate: bool = False,
        nprobe: int = DEFAULT_NPROBE,
        searches: VocabularySearch | None = None,
    ):
        searches = searches or VocabularySearch(embedding.vectors)
        if searches.vectors is not embedding.vectors:
            raise ValueError("searches were not built for this embedding")
        if nprobe < 1:
            raise ValueError(f"nprobe must be at least 1, got {nprobe!r}")
        self.embedding, self.epsilon, self.approximate = embedding, _check_epsilon(epsilon), approximate
        self.nprobe = nprobe
        self._exact = searches.exact()
        self._lists = searches.lists() if approximate else None

    def noise(self, n: int, rng: RandomSource) -> np.ndarray:
        """n noise vectors with density proportional to exp(-epsilon ||z||)."""
        radius = samplers.gamma_integer_shape(rng, n, self.embedding.dim, 1.0 / self.epsilon)
        direction = samplers.uniform_direction(rng, n, self.embedding.dim)
        direction *= radius[:, None]
        return direction

    def noisy_vectors(self, words: np.ndarray, rng: RandomSource) -> np.ndarray:
        """Each word's vector plus its own noise vector."""
        points = self.noise(words.size, rng)
        points += self._exact.vectors64[words]
        return points

    def nearest(self, points: Points) -> Int64s:
        """The vocabulary word nearest to each point, by the exact or the approximate search."""
        return self._exact.nearest(points) if self._lists is None else self._lists.nearest(points, self.nprobe)

    def perturb(self, given: npt.ArrayLike, rng: RandomSource) -> np.ndarray:
        words = _check_words(given, self.embedding.size)
        out = np.empty_like(words)
        for start in range(0, words.size, _CHUNK):
            chunk = words[start : start + _CHUNK]
            out[start : start + _CHUNK] = self.nearest(self.noisy_vectors(chunk, rng))
        return out


class TextMechanism:
    """A text mechanism as the command line, the text node and the experiments know it (registered in
    :data:`TEXT_MECHANISMS`): its name, what it is, and how to build it at an epsilon."""

    name: str
    summary: str  # what the mechanism does, for --help
    search_range: tuple[float | None, float]  # calibrate's sweep; None: just above the smallest valid epsilon
    style: tuple[str, str]  # colour and marker in plots

    def build(
        self,
        embedding: Embedding,
        table: NeighborTable | None,
        epsilon: float,
        approximate: bool = False,
        searches: VocabularySearch | None = None,
    ) -> Mechanism:
        raise NotImplementedError

    def min_epsilon(self, vocabulary_size: int, table: NeighborTable | None) -> float:
        """The smallest epsilon it is defined for (exclusive)."""
        raise NotImplementedError


class TruncatedGumbelKind(TextMechanism):
    name = TruncatedGumbel.name
    summary = (
        "noise calibrated to each word's neighbourhood, defined only above a vocabulary-dependent epsilon "
        "(about 76 for the default 50,000 GloVe words)"
    )
    search_range = (None, 1e8)
    style = ("tab:red", "o")

    def build(
        self,
        embedding: Embedding,
        table: NeighborTable | None,
        epsilon: float,
        approximate: bool = False,
        searches: VocabularySearch | None = None,
    ) -> Mechanism:
        if table is None:
            raise ValueError("the truncated Gumbel mechanism needs a neighbour table")
        return TruncatedGumbel(embedding, table, epsilon)

    def min_epsilon(self, vocabulary_size: int, table: NeighborTable | None) -> float:
        return math.inf if table is None else truncated_gumbel_min_epsilon(vocabulary_size, table.delta_min)


class MultivariateLaplaceKind(TextMechanism):
    name = MultivariateLaplace.name
    summary = "noise on the word vector, then the nearest word (the baseline)"
    search_range = (0.05, 1e4)
    style = ("tab:blue", "s")

    def build(
        self,
        embedding: Embedding,
        table: NeighborTable | None,
        epsilon: float,
        approximate: bool = False,
        searches: VocabularySearch | None = None,
    ) -> Mechanism:
        return MultivariateLaplace(embedding, epsilon, approximate=approximate, searches=searches)

    def min_epsilon(self, vocabulary_size: int, table: NeighborTable | None) -> float:
        return 0.0


TEXT_MECHANISMS: Registry[TextMechanism] = Registry("text mechanism")
TRUNCATED_GUMBEL = TEXT_MECHANISMS.register(TruncatedGumbelKind())
MULTIVARIATE_LAPLACE = TEXT_MECHANISMS.register(MultivariateLaplaceKind())


def make_mechanism(
    name: str,
    embedding: Embedding,
    table: NeighborTable | None,
    epsilon: float,
    approximate: bool = False,
    searches: VocabularySearch | None = None,
) -> Mechanism:
    """The mechanism registered as ``name`` at ``epsilon`` (``UnknownName``, a ValueError, lists the choices),
    decoding with the shared ``searches`` of the embedding when it needs a nearest-word search."""
    return TEXT_MECHANISMS.get(name).build(embedding, table, epsilon, approximate, searches)


@dataclass(frozen=True)
class PrivacyStatistics:
    """Averages over sampled words: N_w, the probability a word is kept, and S_w, the
    number of distinct output words (the word itself included when kept), from ``draws``
    independent perturbations of each word (Feyisetan et al., WSDM 2020)."""

    n_w: float
    s_w: float
    words: int
    draws: int


def vocabulary_sample(vocabulary_size: int, count: int, rng: RandomSource) -> np.ndarray:
    """``count`` distinct vocabulary indices, uniformly at random (sorted)."""
    if not 1 <= count <= vocabulary_size:
        raise ValueError(f"count must be in [1, {vocabulary_size}], got {count!r}")
    keys = rng.uint64(vocabulary_size)
    return np.sort(np.argsort(keys, kind="stable")[:count])


def privacy_statistics(mechanism: Mechanism, words: np.ndarray, draws: int, rng: RandomSource) -> PrivacyStatistics:
    """Estimate N_w and S_w by perturbing each of ``words`` ``draws`` times."""
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws!r}")
    words = np.asarray(words, dtype=np.int64)
    outputs = mechanism.perturb(np.repeat(words, draws), rng).reshape(words.size, draws)
    kept = (outputs == words[:, None]).mean(axis=1)
    ordered = np.sort(outputs, axis=1)
    distinct = 1 + (ordered[:, 1:] != ordered[:, :-1]).sum(axis=1)
    return PrivacyStatistics(
        n_w=float(kept.mean()), s_w=float(distinct.mean()), words=int(words.size), draws=int(draws)
    )
