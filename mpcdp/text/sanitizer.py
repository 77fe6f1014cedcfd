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
from pathlib import Path
from typing import Any

import numpy as np

from ..prg import RandomSource, system_random
from .embeddings import DEFAULT_VOCABULARY_SIZE, Embedding, load_default_glove
from .lexicon import Lexicon
from .mechanisms import Mechanism, make_mechanism
from .nearest import VocabularySearch
from .neighbors import DEFAULT_NEIGHBORS, NeighborTable, load_or_build, max_pairwise_distance
from .render import VocabularyCodes, render
from .spans import split_batch

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
            strict=True,
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
        table: NeighborTable | None = None,
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
        self.lexicon = Lexicon(embedding.index)
        self._vocabulary = VocabularyCodes.of(embedding.words)
        self.searches = VocabularySearch(embedding.vectors)  # built on first use, shared by every epsilon
        self.diameter = table.delta_max if table is not None else max_pairwise_distance(embedding.vectors)
        self._mechanisms: OrderedDict[tuple[str, float], Mechanism] = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # Shipped to workers once (see mpcdp.text.corpus): without the lock and the ready mechanisms.
        state = dict(self.__dict__)
        del state["_lock"], state["_mechanisms"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
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

    def mechanism(self, name: str, epsilon: float) -> Mechanism:
        """The named mechanism at ``epsilon`` (validated; the last few are kept ready)."""
        key = (name, float(epsilon))
        with self._lock:
            if key not in self._mechanisms:
                self._mechanisms[key] = make_mechanism(
                    name, self.embedding, self.table, epsilon, self.approximate_nn, self.searches
                )
                if len(self._mechanisms) > _MECHANISM_CACHE:
                    self._mechanisms.popitem(last=False)
            self._mechanisms.move_to_end(key)
            return self._mechanisms[key]

    def vocabulary_ids(self, texts: Sequence[str]) -> np.ndarray:
        """The vocabulary index of every in-vocabulary word occurrence in ``texts``, in order."""
        ids = self.lexicon.ids(split_batch(texts))
        return ids[ids >= 0]

    def sanitize(
        self, texts: Sequence[str], mechanism: str, epsilon: float, rng: RandomSource | None = None
    ) -> list[SanitizedText]:
        """One sanitised text and its privacy cost per input text (see :meth:`sanitize_batch`)."""
        batch = self.sanitize_batch(texts, mechanism, epsilon, rng)
        return [SanitizedText(text, cost) for text, cost in zip(batch.texts, batch.costs(), strict=True)]

    def sanitize_batch(
        self, texts: Sequence[str], mechanism: str, epsilon: float, rng: RandomSource | None = None
    ) -> SanitizedBatch:
        """The sanitised texts and their costs as columns; all words in one vectorised draw.

        The batch is split, looked up, perturbed and written back with array operations over all its
        texts at once (:mod:`~mpcdp.text.spans`, :mod:`~mpcdp.text.lexicon`, :mod:`~mpcdp.text.render`).
        """
        mech = self.mechanism(mechanism, epsilon)
        rng = rng or system_random("text-sanitize")
        batch = split_batch(texts)
        chosen = self.lexicon.ids(batch)
        known = chosen >= 0
        chosen[known] = mech.perturb(chosen[known], rng)
        replacement = {SYMBOLS_PLACEHOLDER: self.placeholder, SYMBOLS_DROP: "", SYMBOLS_KEEP: None}[self.symbols]
        out, symbols_released = render(
            batch, chosen, self._vocabulary, self.placeholder, self.oov == OOV_KEEP, replacement
        )
        words = batch.pieces_per_text()
        perturbed = np.bincount(batch.doc[known], minlength=len(texts)).astype(np.int64)
        oov = words - perturbed
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


def load_sanitizer(
    vocabulary_size: int = DEFAULT_VOCABULARY_SIZE,
    neighbors: int = DEFAULT_NEIGHBORS,
    cache_dir: Path | None = None,
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
    table = load_or_build(embedding, neighbors, cache_dir)
    return Sanitizer(embedding, table, oov=oov, placeholder=placeholder, symbols=symbols, approximate_nn=approximate_nn)
