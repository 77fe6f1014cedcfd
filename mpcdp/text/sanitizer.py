"""Sanitise texts word by word with a metric-DP mechanism, keeping layout and capitalisation.

Every in-vocabulary word (looked up lower-cased) is replaced by an independent
draw of the mechanism; separators are kept verbatim and the substitute wears
the original word's capitalisation pattern. Out-of-vocabulary words, often
names and so the most sensitive tokens, become a placeholder by default; the
only other option, keeping them, releases them in the clear and is warned.
Which positions hold vocabulary words is revealed either way.

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
from .tokenize import apply_case, case_pattern, detokenize, tokenize

OOV_PLACEHOLDER, OOV_KEEP = "placeholder", "keep"
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


@dataclass(frozen=True)
class SanitizedText:
    text: str
    cost: PrivacyCost


class Sanitizer:
    """Sanitises batches of texts over one embedding (and its neighbour table, for truncated Gumbel)."""

    def __init__(self, embedding: Embedding, table: NeighbourTable | None = None,
                 oov: str = OOV_PLACEHOLDER, placeholder: str = DEFAULT_PLACEHOLDER):
        if oov not in (OOV_PLACEHOLDER, OOV_KEEP):
            raise ValueError(f"oov must be {OOV_PLACEHOLDER!r} or {OOV_KEEP!r}, got {oov!r}")
        if oov == OOV_KEEP:
            warnings.warn("out-of-vocabulary words will be released unperturbed (oov='keep')",
                          stacklevel=2)
        self.embedding, self.table, self.oov, self.placeholder = embedding, table, oov, placeholder
        self.diameter = table.delta_max if table is not None else max_pairwise_distance(embedding.vectors)
        self._mechanisms: OrderedDict[tuple, Mechanism] = OrderedDict()
        self._lock = threading.Lock()

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
                row.append(index.get(tok.text.lower(), -1) if tok.is_word else -2)
            ids.extend(row)
            owners.append(len(row))
        ids = np.asarray(ids, dtype=np.int64)
        known = ids >= 0
        replaced = ids.copy()
        replaced[known] = mech.perturb(ids[known], rng)
        words = self.embedding.words
        out, pos = [], 0
        for tokens, count in zip(token_lists, owners):
            pieces, perturbed, oov, after_word = [], 0, 0, False
            for tok, original, new in zip(tokens, ids[pos:pos + count], replaced[pos:pos + count]):
                if original == -2:
                    piece = tok.text
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
                epsilon_text_bound=mech.epsilon * perturbed * self.diameter)
            out.append(SanitizedText("".join(pieces), cost))
        return out


def load_sanitizer(vocabulary_size: int = DEFAULT_VOCABULARY_SIZE, neighbours: int = DEFAULT_NEIGHBOURS,
                   cache_dir=None, oov: str = OOV_PLACEHOLDER, placeholder: str = DEFAULT_PLACEHOLDER,
                   embedding: Embedding | None = None) -> Sanitizer:
    """A sanitizer over ``embedding`` (default: GloVe 6B 50d, most frequent words) with its cached table."""
    embedding = embedding or load_default_glove(vocabulary_size)
    table = load_or_build(embedding, neighbours, cache_dir)
    return Sanitizer(embedding, table, oov=oov, placeholder=placeholder)
