"""Tokenise a whole batch of texts at once: word pieces as spans over one array of code points.

The split is the one of :func:`mpcdp.text.tokenize.split` (words are runs of letters and digits; "n't",
"'s", "'re", "'ll", "'ve", "'d" and "'m" are pieces of their own, with a straight or curly apostrophe;
"ca", "wo", "sha", "ai" before "n't" stand for "can", "will", "shall", "is"), computed by array
operations over the concatenation of all texts instead of one regular-expression pass per text, so no
Python code runs per word. A text that may hold a URL, an e-mail address or an @mention (it contains
"@", "://" or "www.") is split by :mod:`mpcdp.text.tokenize`'s regular expression, which knows those
units; its pieces join the others. Tests check that both splits agree on arbitrary strings.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .tokenize import APOSTROPHES, CLITICS, fix_keys, is_symbol, pieces_of

Int64s = npt.NDArray[np.int64]
Codes = npt.NDArray[np.uint8] | npt.NDArray[np.uint32]

# Bits of a code point's flags.
ALNUM = 1  # str.isalnum(): a word character
WORD = 2  # regular-expression \w: alnum or "_"
APOSTROPHE = 4
SYMBOL = 8  # emoji and other non-ASCII symbols (mpcdp.text.tokenize.replace_symbols)
UPPER = 16  # str.isupper()
CHANGED_BY_LOWER = 32
CHANGED_BY_UPPER = 64
ALPHA = 128

# Clitics by number (1 + position here); 0 is "no clitic", -1 a piece that is never a vocabulary word.
CLITIC_WORDS = tuple(CLITICS.values())  # "not", "is", "are", "will", "have", "would", "am"
NOT = 1 + list(CLITICS).index("n't")
_APOSTROPHE_CLITICS = {key[1:]: 1 + i for i, key in enumerate(CLITICS) if key.startswith("'")}
_FOLDED_LETTERS = "ntsrelvdm"  # the letters the contraction patterns match, case-insensitively


@functools.lru_cache(maxsize=65536)
def code_point_class(code: int) -> tuple[int, int]:
    """A code point's flags and the ASCII letter of the contraction patterns it matches ignoring case (or 0)."""
    ch = chr(code)
    flags = (
        ALNUM * ch.isalnum()
        | WORD * (ch.isalnum() or ch == "_")
        | APOSTROPHE * (ch in APOSTROPHES)
        | SYMBOL * is_symbol(ch)
        | UPPER * ch.isupper()
        | CHANGED_BY_LOWER * (ch.lower() != ch)
        | CHANGED_BY_UPPER * (ch.upper() != ch)
        | ALPHA * ch.isalpha()
    )
    if ch.isascii():  # ASCII letters match ignoring case exactly their lower case
        folded = ord(ch.lower()) if ch.lower() in _FOLDED_LETTERS else 0
    else:  # a few others do too (the long s matches "s")
        folded = next((ord(x) for x in _FOLDED_LETTERS if re.fullmatch(x, ch, re.IGNORECASE)), 0)
    return flags, folded


_ONE_LETTER = np.zeros(256, dtype=bool)  # "'s", "'d", "'m" by their folded letter
_ONE_LETTER[[ord(c) for c in "sdm"]] = True
_LETTER = np.zeros(256, dtype=np.intp)  # "'re", "'ll", "'ve" by their two folded letters
_LETTER[[ord(c) for c in "relv"]] = [1, 2, 3, 4]
_TWO_LETTERS = np.zeros((5, 5), dtype=bool)
_TWO_LETTERS[[1, 3, 4], [2, 3, 2]] = True

_ASCII = [code_point_class(c) for c in range(128)]
ASCII_FLAGS = np.array([f for f, _ in _ASCII], dtype=np.uint8)
ASCII_FOLDED = np.array([x for _, x in _ASCII], dtype=np.uint8)
ASCII_LOWER = np.array([ord(chr(c).lower()) for c in range(128)], dtype=np.uint8)


def classify(codes: Codes, padding: int = 0) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Flags and folded letters of every code point (ASCII by table, the others once per distinct one),
    followed by ``padding`` zeros (no flag: past the end reads as a separator)."""
    flags = np.zeros(codes.size + padding, dtype=np.uint8)
    folded = np.zeros(codes.size + padding, dtype=np.uint8)
    if codes.dtype == np.uint8:
        np.take(ASCII_FLAGS, codes, out=flags[: codes.size])
        np.take(ASCII_FOLDED, codes, out=folded[: codes.size])
        return flags, folded
    small = np.minimum(codes, 127)
    flags[: codes.size], folded[: codes.size] = ASCII_FLAGS[small], ASCII_FOLDED[small]
    wide = np.flatnonzero(codes > 127)
    if wide.size:
        distinct, where = np.unique(codes[wide], return_inverse=True)
        table = np.array([code_point_class(int(c)) for c in distinct], dtype=np.uint8).reshape(-1, 2)
        flags[wide], folded[wide] = table[where, 0], table[where, 1]
    return flags, folded


def encode(text: str) -> Codes:
    """The code points of ``text``: one byte each when it is ASCII."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _has_units(text: str) -> bool:
    return "@" in text or "://" in text or "www." in text


@dataclass(frozen=True)
class Batch:
    """A batch of texts as one array of code points and its word pieces, in order.

    ``text`` joins the texts with a NUL between two (so no word runs from one text into the next), ``codes``
    are its code points and ``flags`` theirs (then a few zeros); text t is ``codes[first[t]:last[t]]``.
    Piece i covers ``codes[start[i]:end[i]]`` in text ``doc[i]``. ``clitic[i]`` numbers the word a
    contraction piece stands for (1 + index in :data:`CLITIC_WORDS`; 0 for other words, -1 for a piece that
    is never a vocabulary word); ``glued[i]``: a contraction piece right after another piece (its substitute
    needs a space); ``host[i]``: a piece followed by a glued "n't". The pieces at ``literal`` were not left
    for a vectorised lookup (non-ASCII or long words, texts with units): ``literal_keys`` holds their
    lookup words ("" for a URL, e-mail address or @mention).
    """

    text: str
    codes: Codes
    flags: npt.NDArray[np.uint8]
    first: Int64s
    last: Int64s
    start: Int64s
    end: Int64s
    doc: Int64s
    clitic: npt.NDArray[np.int8]
    glued: npt.NDArray[np.bool_]
    host: npt.NDArray[np.bool_]
    literal: Int64s
    literal_keys: list[str]

    @property
    def texts(self) -> int:
        return self.first.size

    def pieces_per_text(self) -> Int64s:
        return np.bincount(self.doc, minlength=self.texts).astype(np.int64)


_PADDING = 4  # flags past the end of the codes: enough for every look-ahead below


def split_batch(texts: Sequence[str], max_packed: int = 16) -> Batch:
    """The word pieces of every text in ``texts`` (see :class:`Batch`).

    Words of at most ``max_packed`` ASCII characters are left for a vectorised lookup; the others get their
    lookup word in ``literal_keys``.
    """
    try:
        text = "\0".join(texts)
    except TypeError:
        raise TypeError("every text must be a str") from None
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    first = np.cumsum(lengths + 1) - lengths - 1
    last = first + lengths
    codes = encode(text)
    flags, folded = classify(codes, _PADDING)
    start, end, doc, clitic = _pieces(codes, flags, folded, first)
    glued = np.zeros(start.size, dtype=bool)
    glued[1:] = (clitic[1:] > 0) & (start[1:] == end[:-1])
    host = np.zeros(start.size, dtype=bool)
    host[:-1] = glued[1:] & (clitic[1:] == NOT)
    literal_mask = (clitic == 0) & (end - start > max_packed)
    if codes.dtype != np.uint8:  # words holding a non-ASCII character
        wide = np.zeros(codes.size + 1, dtype=np.int64)
        np.cumsum(codes > 127, out=wide[1:])
        literal_mask |= (clitic == 0) & (wide[end] > wide[start])
    regex_keys: list[str] = []
    with_units = [t for t, x in enumerate(texts) if _has_units(x)] if _has_units(text) else []
    if with_units:  # replace those texts' pieces by the regular expression's
        pieces = [_regex_pieces(texts[t], int(first[t])) for t in with_units]
        new_start = np.concatenate([p[0] for p in pieces])
        new_end = np.concatenate([p[1] for p in pieces])
        new_glued = np.concatenate([p[2] for p in pieces])
        new_doc = np.repeat(np.array(with_units, dtype=np.int64), [p[0].size for p in pieces])
        regex_keys = [k for p in pieces for k in p[3]]
        kept = ~np.isin(doc, with_units)
        start, end, doc, clitic = start[kept], end[kept], doc[kept], clitic[kept]
        glued, host, literal_mask = glued[kept], host[kept], literal_mask[kept]
        at = np.searchsorted(start, new_start)
        start, end, doc = np.insert(start, at, new_start), np.insert(end, at, new_end), np.insert(doc, at, new_doc)
        clitic = np.insert(clitic, at, np.zeros(new_start.size, dtype=np.int8))
        glued, host = np.insert(glued, at, new_glued), np.insert(host, at, False)
        literal_mask = np.insert(literal_mask, at, True)
        from_regex = np.insert(np.zeros(int(kept.sum()), dtype=bool), at, True)
    literal = np.flatnonzero(literal_mask)
    spans = zip(start[literal].tolist(), end[literal].tolist(), strict=True)
    if regex_keys:
        given = iter(regex_keys)
        flagged = from_regex[literal].tolist()
        keys = [next(given) if f else _key(text[s:e]) for f, (s, e) in zip(flagged, spans, strict=True)]
    else:
        keys = [_key(text[s:e]) for s, e in spans]
    return Batch(text, codes, flags, first, last, start, end, doc, clitic, glued, host, literal, keys)


def _regex_pieces(text: str, offset: int) -> tuple[Int64s, Int64s, npt.NDArray[np.bool_], list[str]]:
    """Starts, ends, glued flags and lookup words of ``text``'s words by the regular expression."""
    pieces, special = pieces_of(text)
    keys = [w.lower() for w in pieces[1::2]]
    glued_at = fix_keys(pieces, keys) if special else []
    bounds = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)), out=bounds[1:])
    glued = np.zeros(len(keys), dtype=bool)
    glued[glued_at] = True
    return offset + bounds[1:-1:2], offset + bounds[2::2], glued, keys


def _key(word: str) -> str:
    key = word.lower()
    return key if key.isalnum() else ""


def _lower(codes: Codes, where: Int64s) -> npt.NDArray[np.uint8]:
    """The code points at ``where`` lower-cased if ASCII, 0 if not."""
    picked = codes[where]
    return np.where(picked < 128, ASCII_LOWER[np.minimum(picked, 127)], 0).astype(np.uint8)


def _pieces(
    codes: Codes, flags: npt.NDArray[np.uint8], folded: npt.NDArray[np.uint8], first: Int64s
) -> tuple[Int64s, Int64s, Int64s, npt.NDArray[np.int8]]:
    """Runs of letters and digits, then the contraction pieces carved out of them (see the module docstring).

    ``flags`` and ``folded`` extend past the codes with zeros, so looking a few characters ahead never
    leaves them; the NUL between two texts is a separator, so no pattern runs across texts.
    """
    n = codes.size
    alnum = np.zeros(n + 2, dtype=np.int8)
    alnum[1:-1] = flags[:n] & ALNUM
    step = np.diff(alnum)
    start = np.flatnonzero(step == 1)
    end = np.flatnonzero(step == -1)
    doc = np.searchsorted(first, start, side="right") - 1
    length = end - start
    # "n't" closing a run: n, apostrophe, t (ignoring case), then no word character.
    maybe = np.flatnonzero(flags[end] & APOSTROPHE)
    after = end[maybe]
    maybe = maybe[(folded[after - 1] == ord("n")) & (folded[after + 1] == ord("t")) & ((flags[after + 2] & WORD) == 0)]
    nt = np.zeros(start.size, dtype=bool)
    nt[maybe] = True
    spelled = np.zeros(start.size, dtype=bool)  # with ASCII letters: "n't" read as "not"
    spelled[maybe] = (_lower(codes, end[maybe] - 1) == ord("n")) & (_lower(codes, end[maybe] + 1) == ord("t"))
    # "'s", "'re", "'ll", "'ve", "'d", "'m": a whole run right after an apostrophe, then no "_".
    short = np.flatnonzero((flags[start - 1] & APOSTROPHE).astype(bool) & (length <= 2) & (start > 0))
    first_letter, second_letter = folded[start[short]], folded[start[short] + 1]
    one = (length[short] == 1) & _ONE_LETTER[first_letter]
    two = (length[short] == 2) & _TWO_LETTERS[_LETTER[first_letter], _LETTER[second_letter]]
    short = short[(one | two) & ((flags[end[short]] & WORD) == 0)]
    apostrophe_clitic = np.zeros(start.size, dtype=bool)
    apostrophe_clitic[short] = True
    letters = _lower(codes, start[short]).astype(np.int64)
    letters = np.where(length[short] == 2, letters * 256 + _lower(codes, np.minimum(start[short] + 1, n - 1)), letters)
    clitic_number = np.zeros(start.size, dtype=np.int8)
    number = np.full(short.size, -1, dtype=np.int8)  # -1: matched only by case folding (a long s, U+017F)
    for suffix, value in _APOSTROPHE_CLITICS.items():
        code = ord(suffix[0]) if len(suffix) == 1 else ord(suffix[0]) * 256 + ord(suffix[1])
        number[(letters == code) & (length[short] == len(suffix))] = value
    clitic_number[short] = number
    start[short] -= 1
    # The "t" run of each "n't" is absorbed into it; a run longer than "n" keeps its host piece.
    single = nt & (length == 1)
    end = np.where(single, end + 2, np.where(nt, end - 1, end))
    clitic_number[single] = np.where(spelled[single], NOT, -1)
    keep = np.ones(start.size, dtype=bool)
    keep[1:] = ~nt[:-1]
    start, end, doc, clitic_number = start[keep], end[keep], doc[keep], clitic_number[keep]
    split = np.flatnonzero((nt & ~single)[keep])
    if split.size:
        start = np.insert(start, split + 1, end[split])
        end = np.insert(end, split + 1, end[split] + 3)
        doc = np.insert(doc, split + 1, doc[split])
        clitic_number = np.insert(clitic_number, split + 1, np.where(spelled[keep][split], NOT, -1).astype(np.int8))
    return start, end, doc, clitic_number
