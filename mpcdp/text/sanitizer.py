"""Sanitise texts word by word with a metric-DP mechanism, keeping layout and capitalisation.

Every in-vocabulary word (looked up lower-cased) is replaced by an independent
draw of the mechanism; separators are kept verbatim and the substitute wears
the original word's capitalisation pattern. Contractions are perturbed as the
words they stand for ("n't" as "not") and replaced by whole words. Out-of-
vocabulary words (often names, and so the most sensitive tokens), URLs, e-mail
addresses and @mentions become a placeholder by default; the only other
option, keeping them, releases them in the clear and is warned. Emoji and
other non-ASCII symbols are not words either: by default each run of them
becomes the placeholder (``symbols="placeholder"``), or they are dropped, or,
on request and warned, kept verbatim, unperturbed and outside the guarantee.
Which positions hold words and symbols is revealed in every case.

Privacy cost of one text (metric-DP composition over its m perturbed words):
epsilon per unit of embedding distance per word, hence at most
epsilon * m * Delta (pure DP) against any text with the same layout and
out-of-vocabulary positions, Delta being the vocabulary's diameter.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from ..prg import RandomSource, system_random
from .embeddings import DEFAULT_VOCABULARY_SIZE, Embedding, load_default_glove
from .mechanisms import Mechanism, make_mechanism
from .neighbours import DEFAULT_NEIGHBOURS, NeighbourTable, load_or_build, max_pairwise_distance
from .tokenize import apply_case, case_pattern, fix_keys, pieces_of, replace_symbols, split

OOV_PLACEHOLDER, OOV_KEEP = "placeholder", "keep"
SYMBOLS_PLACEHOLDER, SYMBOLS_DROP, SYMBOLS_KEEP = "placeholder", "drop", "keep"
SYMBOL_POLICIES = (SYMBOLS_PLACEHOLDER, SYMBOLS_DROP, SYMBOLS_KEEP)
DEFAULT_PLACEHOLDER = "<unk>"
_MECHANISM_CACHE = 8


@dataclass(frozen=True)
class PrivacyCost:
    """What one sanitised text cost: see the module docstring for the bound."""

    mechanism: str
    epsilon_per_word: float
    words_perturbed: int
    oov_words: int
    oov_released: int
    epsilon_text_bound: float
    symbols_released: int = 0


@dataclass(frozen=True)
class SanitizedBatch:
    """A batch's sanitised texts and, per text, the counts its :class:`PrivacyCost` is made of."""

    texts: list[str]
    mechanism: str
    epsilon_per_word: float
    words_perturbed: np.ndarray  # int64, one per text
    oov_words: np.ndarray
    oov_released: np.ndarray
    symbols_released: np.ndarray
    epsilon_text_bound: np.ndarray  # float64

    def costs(self) -> list[PrivacyCost]:
        columns = zip(
            self.words_perturbed.tolist(),
            self.oov_words.tolist(),
            self.oov_released.tolist(),
            self.epsilon_text_bound.tolist(),
            self.symbols_released.tolist(),
        )
        return [
            PrivacyCost(self.mechanism, self.epsilon_per_word, k, oov, released, bound, symbols)
            for k, oov, released, bound, symbols in columns
        ]


@dataclass(frozen=True)
class SanitizedText:
    text: str
    cost: PrivacyCost


class Sanitizer:
    """Sanitises batches of texts over one embedding (and its neighbour table, for truncated Gumbel)."""

    def __init__(
        self,
        embedding: Embedding,
        table: NeighbourTable | None = None,
        oov: str = OOV_PLACEHOLDER,
        placeholder: str = DEFAULT_PLACEHOLDER,
        symbols: str = SYMBOLS_PLACEHOLDER,
        approximate_nn: bool = False,
    ):
        if oov not in (OOV_PLACEHOLDER, OOV_KEEP):
            raise ValueError(f"oov must be {OOV_PLACEHOLDER!r} or {OOV_KEEP!r}, got {oov!r}")
        if symbols not in SYMBOL_POLICIES:
            raise ValueError(f"symbols must be one of {', '.join(SYMBOL_POLICIES)}, got {symbols!r}")
        if oov == OOV_KEEP:
            warnings.warn("out-of-vocabulary words will be released unperturbed (oov='keep')", stacklevel=2)
        if symbols == SYMBOLS_KEEP:
            warnings.warn("emoji and symbols will be released unperturbed (symbols='keep')", stacklevel=2)
        self.embedding, self.table, self.oov, self.placeholder = embedding, table, oov, placeholder
        self.symbols, self.approximate_nn = symbols, approximate_nn
        self._word_array = np.array(embedding.words, dtype=object)
        self.diameter = table.delta_max if table is not None else max_pairwise_distance(embedding.vectors)
        self._mechanisms: OrderedDict[tuple, Mechanism] = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self):
        # Shipped to workers once (see mpcdp.text.corpus): without the lock and the ready mechanisms.
        state = dict(self.__dict__)
        del state["_lock"], state["_mechanisms"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._mechanisms, self._lock = OrderedDict(), threading.Lock()

    def describe(self) -> str:
        """The substitution set and its extremes, which fix truncated Gumbel's smallest epsilon."""
        from .mechanisms import truncated_gumbel_min_epsilon

        line = f"substitution set: {self.embedding.size:,} words, diameter Delta = {self.diameter:.4f}"
        if self.table is not None:
            minimum = truncated_gumbel_min_epsilon(self.embedding.size, self.table.delta_min)
            line += f", Delta0 = {self.table.delta_min:.4f}: truncated Gumbel needs epsilon > {minimum:.4g}"
        return line

    def _separator(self, text: str) -> tuple[str, int]:
        """A separator as released, and how many symbol runs it releases verbatim."""
        if self.symbols == SYMBOLS_KEEP:
            return text, replace_symbols(text, "")[1]
        return replace_symbols(text, self.placeholder if self.symbols == SYMBOLS_PLACEHOLDER else "")[0], 0

    def mechanism(self, name: str, epsilon: float) -> Mechanism:
        """The named mechanism at ``epsilon`` (validated; the last few are kept ready)."""
        key = (name, float(epsilon))
        with self._lock:
            if key not in self._mechanisms:
                self._mechanisms[key] = make_mechanism(
                    name, self.embedding, self.table, epsilon, approximate=self.approximate_nn
                )
                if len(self._mechanisms) > _MECHANISM_CACHE:
                    self._mechanisms.popitem(last=False)
            self._mechanisms.move_to_end(key)
            return self._mechanisms[key]

    def vocabulary_ids(self, texts: Sequence[str]) -> np.ndarray:
        """The vocabulary index of every in-vocabulary word occurrence in ``texts``, in order."""
        get = self.embedding.index.get
        ids = np.fromiter((get(k, -1) for text in texts for k in split(text)[1]), dtype=np.int64)
        return ids[ids >= 0]

    def sanitize(
        self, texts: Sequence[str], mechanism: str, epsilon: float, rng: RandomSource | None = None
    ) -> list[SanitizedText]:
        """One sanitised text and its privacy cost per input text (see :meth:`sanitize_batch`)."""
        batch = self.sanitize_batch(texts, mechanism, epsilon, rng)
        return [SanitizedText(text, cost) for text, cost in zip(batch.texts, batch.costs())]

    def sanitize_batch(
        self, texts: Sequence[str], mechanism: str, epsilon: float, rng: RandomSource | None = None
    ) -> SanitizedBatch:
        """The sanitised texts and their costs as columns; all words in one vectorised draw.

        Each text is split once (a C-speed regular expression); lookups, the draw and
        the choice of substitutes run over the whole batch, and only the words that
        need it (capitals, out-of-vocabulary words, contraction pieces, symbols) get
        individual treatment.
        """
        mech = self.mechanism(mechanism, epsilon)
        rng = rng or system_random("text-sanitize")
        parsed = [pieces_of(t) for t in texts]
        originals = [w for pieces, _ in parsed for w in pieces[1::2]]
        keys = lower_all(originals)
        counts = np.fromiter((len(pieces) // 2 for pieces, _ in parsed), dtype=np.int64, count=len(parsed))
        starts = (np.cumsum(counts) - counts).tolist()
        glued = {
            t: fix_keys(pieces, keys, start)
            for t, ((pieces, special), start) in enumerate(zip(parsed, starts))
            if special
        }
        ids = np.fromiter(map(self.embedding.index.get, keys, repeat(-1)), dtype=np.int64, count=len(keys))
        known = ids >= 0
        chosen = np.zeros_like(ids)
        chosen[known] = mech.perturb(ids[known], rng)
        out_words = self._word_array[chosen].tolist()
        for j in np.flatnonzero(~known).tolist():
            out_words[j] = originals[j] if self.oov == OOV_KEEP else self.placeholder
        capitals = np.asarray(originals, dtype=object) != np.asarray(lower_all(originals), dtype=object)
        for j in np.flatnonzero(capitals & known).tolist():
            out_words[j] = apply_case(out_words[j], case_pattern(originals[j]))
        counted = np.concatenate([[0], np.cumsum(known, dtype=np.int64)])
        perturbed = counted[np.cumsum(counts)] - counted[np.cumsum(counts) - counts]
        out, symbols_released = [], np.zeros(len(texts), dtype=np.int64)
        for t, (text, (pieces, _), start, n) in enumerate(zip(texts, parsed, starts, counts.tolist())):
            chunk = out_words[start : start + n]
            for i in glued.get(t, ()):  # a contraction piece replaced by a full word must not glue onto its host
                if chunk[i][:1].isalnum():
                    chunk[i] = " " + chunk[i]
            pieces[1::2] = chunk
            if not text.isascii():  # ASCII holds no symbols
                for i in range(0, len(pieces), 2):
                    if not pieces[i].isascii():
                        pieces[i], released = self._separator(pieces[i])
                        symbols_released[t] += released
            out.append("".join(pieces))
        oov = counts - perturbed
        return SanitizedBatch(
            out,
            mech.name,
            mech.epsilon,
            perturbed,
            oov,
            oov if self.oov == OOV_KEEP else np.zeros_like(oov),
            symbols_released,
            mech.epsilon * perturbed * self.diameter,
        )


def lower_all(words: list[str]) -> list[str]:
    """Every word lower-cased, in one pass over their concatenation when that is safe."""
    lowered = "\0".join(words).lower().split("\0")  # words never hold NUL
    return lowered if len(lowered) == len(words) else [w.lower() for w in words]


def load_sanitizer(
    vocabulary_size: int = DEFAULT_VOCABULARY_SIZE,
    neighbours: int = DEFAULT_NEIGHBOURS,
    cache_dir=None,
    oov: str = OOV_PLACEHOLDER,
    placeholder: str = DEFAULT_PLACEHOLDER,
    embedding: Embedding | None = None,
    symbols: str = SYMBOLS_PLACEHOLDER,
    words_only: bool = True,
    approximate_nn: bool = False,
) -> Sanitizer:
    """A sanitizer over ``embedding`` (default: GloVe 6B 50d, its most frequent words, or entries
    when not ``words_only``) with its cached neighbour table."""
    embedding = embedding or load_default_glove(vocabulary_size, words_only)
    table = load_or_build(embedding, neighbours, cache_dir)
    return Sanitizer(embedding, table, oov=oov, placeholder=placeholder, symbols=symbols, approximate_nn=approximate_nn)
