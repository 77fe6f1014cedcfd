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
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..prg import RandomSource, system_random
from .embeddings import DEFAULT_VOCABULARY_SIZE, Embedding, load_default_glove
from .mechanisms import Mechanism, make_mechanism
from .neighbours import DEFAULT_NEIGHBOURS, NeighbourTable, load_or_build, max_pairwise_distance
from .tokenize import apply_case, case_pattern, replace_symbols, tokenize

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
class SanitizedText:
    text: str
    cost: PrivacyCost


class Sanitizer:
    """Sanitises batches of texts over one embedding (and its neighbour table, for truncated Gumbel)."""

    def __init__(self, embedding: Embedding, table: NeighbourTable | None = None,
                 oov: str = OOV_PLACEHOLDER, placeholder: str = DEFAULT_PLACEHOLDER,
                 symbols: str = SYMBOLS_PLACEHOLDER):
        if oov not in (OOV_PLACEHOLDER, OOV_KEEP):
            raise ValueError(f"oov must be {OOV_PLACEHOLDER!r} or {OOV_KEEP!r}, got {oov!r}")
        if symbols not in SYMBOL_POLICIES:
            raise ValueError(f"symbols must be one of {', '.join(SYMBOL_POLICIES)}, got {symbols!r}")
        if oov == OOV_KEEP:
            warnings.warn("out-of-vocabulary words will be released unperturbed (oov='keep')",
                          stacklevel=2)
        if symbols == SYMBOLS_KEEP:
            warnings.warn("emoji and symbols will be released unperturbed (symbols='keep')", stacklevel=2)
        self.embedding, self.table, self.oov, self.placeholder = embedding, table, oov, placeholder
        self.symbols = symbols
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
            line += (f", Delta0 = {self.table.delta_min:.4f}: truncated Gumbel needs epsilon > {minimum:.4g}")
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
                self._mechanisms[key] = make_mechanism(name, self.embedding, self.table, epsilon)
                if len(self._mechanisms) > _MECHANISM_CACHE:
                    self._mechanisms.popitem(last=False)
            self._mechanisms.move_to_end(key)
            return self._mechanisms[key]

    def vocabulary_ids(self, texts: Sequence[str]) -> np.ndarray:
        """The vocabulary index of every in-vocabulary word occurrence in ``texts``, in order."""
        index = self.embedding.index
        ids = [index.get(t.lookup, -1) for text in texts for t in tokenize(text) if t.is_word]
        ids = np.asarray(ids, dtype=np.int64)
        return ids[ids >= 0]

    def sanitize(self, texts: Sequence[str], mechanism: str, epsilon: float,
                 rng: RandomSource | None = None) -> list[SanitizedText]:
        """One sanitised text and its privacy cost per input text; all words in one vectorised draw."""
        mech = self.mechanism(mechanism, epsilon)
        rng = rng or system_random("text-sanitize")
        index = self.embedding.index
        token_lists = [tokenize(t) for t in texts]
        ids, owners = [], []
        for tokens in token_lists:
            row = []
            for tok in tokens:
                row.append(index.get(tok.lookup, -1) if tok.is_word else -2)
            ids.extend(row)
            owners.append(len(row))
        ids = np.asarray(ids, dtype=np.int64)
        known = ids >= 0
        replaced = ids.copy()
        replaced[known] = mech.perturb(ids[known], rng)
        words = self.embedding.words
        out, pos = [], 0
        for tokens, count in zip(token_lists, owners):
            pieces, perturbed, oov, symbols, after_word = [], 0, 0, 0, False
            for tok, original, new in zip(tokens, ids[pos:pos + count], replaced[pos:pos + count]):
                if original == -2:
                    piece, released = self._separator(tok.text)
                    symbols += released
                elif original == -1:
                    oov += 1
                    piece = tok.text if self.oov == OOV_KEEP else self.placeholder
                else:
                    perturbed += 1
                    piece = apply_case(words[new], case_pattern(tok.text))
                    # A clitic ("n't", "'s") replaced by a full word must not glue onto its host.
                    if after_word and piece[:1].isalnum():
                        piece = " " + piece
                pieces.append(piece)
                after_word = original != -2
            pos += count
            cost = PrivacyCost(
                mechanism=mech.name, epsilon_per_word=mech.epsilon, words_perturbed=perturbed,
                oov_words=oov, oov_released=oov if self.oov == OOV_KEEP else 0,
                epsilon_text_bound=mech.epsilon * perturbed * self.diameter, symbols_released=symbols)
            out.append(SanitizedText("".join(pieces), cost))
        return out


def load_sanitizer(vocabulary_size: int = DEFAULT_VOCABULARY_SIZE, neighbours: int = DEFAULT_NEIGHBOURS,
                   cache_dir=None, oov: str = OOV_PLACEHOLDER, placeholder: str = DEFAULT_PLACEHOLDER,
                   embedding: Embedding | None = None, symbols: str = SYMBOLS_PLACEHOLDER,
                   words_only: bool = True) -> Sanitizer:
    """A sanitizer over ``embedding`` (default: GloVe 6B 50d, its most frequent words, or entries
    when not ``words_only``) with its cached neighbour table."""
    embedding = embedding or load_default_glove(vocabulary_size, words_only)
    table = load_or_build(embedding, neighbours, cache_dir)
    return Sanitizer(embedding, table, oov=oov, placeholder=placeholder, symbols=symbols)
