"""Lossless word/separator tokenisation that matches GloVe's lower-cased word pieces.

A text splits into word and separator tokens; separators (whitespace,
punctuation, emoji and other symbols) are kept verbatim, so
``detokenize(tokenize(t)) == t`` for every string. Words are runs of letters and
digits. English contractions split as GloVe's tokeniser does ("don't" -> "do"
"n't", "it\u2019s" -> "it" "\u2019s", straight and curly apostrophes alike), and each
piece is looked up as the full word it stands for ("n't" -> "not", "'ll" ->
"will", "ca" in "can't" -> "can"), so a contraction is perturbed as words and
replaced by words. URLs, e-mail addresses and @mentions are single tokens that
are never vocabulary words (so they are replaced by the out-of-vocabulary
placeholder unless kept on purpose). Each word's capitalisation pattern is
recorded so a substitute can wear it.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

APOSTROPHES = "'\u2019"  # straight and right single quotation mark (the curly apostrophe)
_A = f"[{APOSTROPHES}]"
_UNIT = (
    r"(?:https?://|www\.)[^\s<>\"]+?(?=[.,;:!?)\]]*(?:\s|$))"  # a URL, trailing punctuation excluded
    r"|[\w.+-]+@[^\W_](?:[\w-]*[^\W_])?(?:\.[^\W_](?:[\w-]*[^\W_])?)+"  # an e-mail address
    r"|(?<![\w@])@\w+"
)  # an @mention
_PIECE = rf"[^\W_]+?(?=n{_A}t\b)|n{_A}t\b|{_A}(?:s|re|ll|ve|d|m)\b|[^\W_]+"
_SPLIT = re.compile(f"({_UNIT}|{_PIECE})", re.IGNORECASE)
# The same split for texts without units (no "@", "://", "www.") or without apostrophes either: faster.
_SPLIT_PIECES = re.compile(f"({_PIECE})", re.IGNORECASE)
_SPLIT_WORDS = re.compile(r"([^\W_]+)")

# What each contraction piece stands for, as a vocabulary word ("'s" is read as "is").
CLITICS = {"n't": "not", "'s": "is", "'re": "are", "'ll": "will", "'ve": "have", "'d": "would", "'m": "am"}
CONTRACTION_HOSTS = {"ca": "can", "wo": "will", "sha": "shall", "ai": "is"}  # before "n't" only
_CLITIC_KEYS = {k.replace("'", a): v for k, v in CLITICS.items() for a in APOSTROPHES}
_NOT = {"n't".replace("'", a) for a in APOSTROPHES}

LOWER, TITLE, UPPER, MIXED = "lower", "title", "upper", "mixed"


@dataclass(frozen=True)
class Token:
    """A piece of text; ``lookup`` is the lower-case vocabulary word a word token stands for.

    ``is_word`` and an empty ``lookup`` mark a token that is never in a vocabulary (URL,
    e-mail address, @mention).
    """

    text: str
    is_word: bool
    lookup: str = ""


def pieces_of(text: str) -> tuple[list[str], bool]:
    """The regular-expression split of ``text`` (separators at even positions, words at odd ones),
    and whether it may hold contraction pieces or units, whose lookup keys need :func:`fix_keys`."""
    if not isinstance(text, str):
        raise TypeError("text must be a str")
    if "@" in text or "://" in text or "www." in text:
        return _SPLIT.split(text), True
    if "'" in text or "\u2019" in text:
        return _SPLIT_PIECES.split(text), True
    return _SPLIT_WORDS.split(text), False


def fix_keys(pieces: list[str], keys: list[str], offset: int = 0) -> list[int]:
    """Turn the lower-cased words of ``pieces`` (at ``keys[offset:]``) into lookup keys, in place:
    contraction pieces become their words, units become "". Returns the glued words' positions."""
    glued = []
    for i in range(len(pieces) // 2):
        key = keys[offset + i]
        if key.isalnum():
            continue
        if key in _CLITIC_KEYS:
            keys[offset + i] = _CLITIC_KEYS[key]
            if i and not pieces[2 * i]:
                glued.append(i)
                host = keys[offset + i - 1]
                if key in _NOT and host in CONTRACTION_HOSTS:
                    keys[offset + i - 1] = CONTRACTION_HOSTS[host]
        else:
            keys[offset + i] = ""
    return glued


def split(text: str) -> tuple[list[str], list[str], list[int]]:
    """``(pieces, keys, glued)``: the form of :func:`tokenize` the sanitiser works on.

    ``pieces`` alternates separators (even positions, possibly empty) and words
    (odd positions), so ``"".join(pieces) == text``; ``keys[i]`` is word i's
    lookup word ("" for a URL, e-mail address or @mention); ``glued`` lists the
    words that follow another word with no separator (contraction pieces).
    """
    pieces, special = pieces_of(text)
    keys = [w.lower() for w in pieces[1::2]]
    return pieces, keys, fix_keys(pieces, keys) if special else []


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into word and separator tokens covering it exactly."""
    pieces, keys, _ = split(text)
    tokens = []
    for i, piece in enumerate(pieces):
        if i % 2:
            tokens.append(Token(piece, True, keys[i // 2]))
        elif piece:
            tokens.append(Token(piece, False))
    return tokens


def detokenize(tokens: Iterable[Token]) -> str:
    return "".join(t.text for t in tokens)


def is_vocabulary_word(entry: str) -> bool:
    """Whether the tokeniser can produce ``entry`` as a word to look up, and it is a whole word.

    True for runs of letters and digits; False for punctuation, contraction pieces
    ("n't", "'s") and the hosts that exist only before "n't" ("ca", "wo").
    """
    return entry == entry.lower() and _WHOLE_WORD.fullmatch(entry) is not None and entry not in CONTRACTION_HOSTS


_WHOLE_WORD = re.compile(r"[^\W_]+")


@functools.lru_cache(maxsize=4096)
def is_symbol(ch: str) -> bool:
    """A non-ASCII symbol: emoji, ©, €, private-use, or a joiner or mark inside an emoji sequence.

    ASCII punctuation and symbols ($, +, =, ...) are layout, like other punctuation.
    """
    if ch.isascii():
        return False
    cat = unicodedata.category(ch)
    return cat[0] == "S" or cat in ("Co", "Cn", "Cf", "Mn", "Me")


def replace_symbols(separator: str, replacement: str) -> tuple[str, int]:
    """``separator`` with each run of symbols replaced by ``replacement``; and the number of runs."""
    if separator.isascii():
        return separator, 0
    out, runs, in_run = [], 0, False
    for ch in separator:
        if is_symbol(ch):
            if not in_run:
                out.append(replacement)
                runs += 1
            in_run = True
        else:
            out.append(ch)
            in_run = False
    return "".join(out), runs


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
