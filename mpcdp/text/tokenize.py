"""Lossless word/separator tokenisation that matches GloVe's lower-cased word pieces.

A text splits into alternating word and separator tokens; separators
(whitespace, punctuation) are kept verbatim, so ``detokenize(tokenize(t)) == t``
for every string. Words are runs of letters and digits; English clitics are
split off as GloVe's tokeniser does ("don't" -> "do" "n't", "it's" -> "it" "'s").
Each word's capitalisation pattern is recorded so a substitute can wear it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[^\W_]+?(?=n't\b)|n't\b|'(?:s|re|ll|ve|d|m)\b|[^\W_]+", re.IGNORECASE)

LOWER, TITLE, UPPER, MIXED = "lower", "title", "upper", "mixed"


@dataclass(frozen=True)
class Token:
    text: str
    is_word: bool


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into word and separator tokens covering it exactly."""
    if not isinstance(text, str):
        raise TypeError("text must be a str")
    tokens, pos = [], 0
    for match in _WORD.finditer(text):
        if match.start() > pos:
            tokens.append(Token(text[pos:match.start()], False))
        tokens.append(Token(match.group(), True))
        pos = match.end()
    if pos < len(text):
        tokens.append(Token(text[pos:], False))
    return tokens


def detokenize(tokens) -> str:
    return "".join(t.text for t in tokens)


def case_pattern(word: str) -> str:
    """``lower`` (no capitals), ``upper`` (all capitals, two or more letters), ``title`` or ``mixed``."""
    if word == word.lower():
        return LOWER
    if word == word.upper() and sum(c.isalpha() for c in word) > 1:
        return UPPER
    if word[0].isupper() and word[1:] == word[1:].lower():
        return TITLE
    return MIXED


def apply_case(word: str, pattern: str) -> str:
    """Render a lower-case vocabulary word in ``pattern`` (``mixed`` stays lower case)."""
    if pattern == UPPER:
        return word.upper()
    if pattern == TITLE:
        return word[:1].upper() + word[1:]
    return word
