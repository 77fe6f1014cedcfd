"""Write a batch's sanitised texts with array operations: separators kept, pieces replaced, case worn.

Every text is laid out as separator, piece, separator, ..., piece, separator (separators possibly empty);
each of these segments is copied from one source buffer (the input's code points, the vocabulary's, and a
few strings made in Python), all texts in one gather, and the result is decoded once and sliced per text.
A substitute wears its original's capitalisation (:func:`mpcdp.text.tokenize.case_pattern`, found from
per-character flags; ASCII substitutes are upper-cased in place, others by :func:`~mpcdp.text.tokenize.
apply_case`). A contraction piece replaced by a word after another piece gets a space ("do not", never
"donot"). Separators holding emoji or other symbols follow the symbol policy, in Python, one separator at a
time (there are few).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .spans import ALNUM, ALPHA, CHANGED_BY_LOWER, CHANGED_BY_UPPER, SYMBOL, UPPER, Batch
from .tokenize import TITLE, apply_case, replace_symbols
from .tokenize import UPPER as UPPER_CASE

Int64s = npt.NDArray[np.int64]

# Per-character counts packed in 21-bit fields of one integer, so one cumulative sum gives all three per piece.
_FIELD = 21
_MASK = np.uint64((1 << _FIELD) - 1)
_COUNTS = np.array(
    [
        bool(f & CHANGED_BY_LOWER) + (bool(f & CHANGED_BY_UPPER) << _FIELD) + (bool(f & ALPHA) << (2 * _FIELD))
        for f in range(256)
    ],
    dtype=np.uint64,
)


@dataclass(frozen=True)
class VocabularyCodes:
    """Every vocabulary word's code points, end to end, with where each starts and how it looks."""

    words: tuple[str, ...]
    codes: npt.NDArray[np.uint32]
    offset: Int64s
    length: Int64s
    ascii: npt.NDArray[np.bool_]
    starts_alnum: npt.NDArray[np.bool_]

    @classmethod
    def of(cls, words: Sequence[str]) -> VocabularyCodes:
        length = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        offset = np.cumsum(length) - length
        return cls(
            tuple(words),
            _wide("".join(words)),
            offset,
            length,
            np.fromiter((w.isascii() for w in words), dtype=bool, count=len(words)),
            np.fromiter((w[:1].isalnum() for w in words), dtype=bool, count=len(words)),
        )


def _wide(text: str) -> npt.NDArray[np.uint32]:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def case_patterns(batch: Batch) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Which pieces are ``upper`` and which ``title`` (:func:`mpcdp.text.tokenize.case_pattern`)."""
    counts = np.zeros(batch.codes.size + 1, dtype=np.uint64)
    np.cumsum(_COUNTS[batch.flags[: batch.codes.size]], out=counts[1:])
    inside = counts[batch.end] - counts[batch.start]
    lowered = inside & _MASK
    uppered = (inside >> np.uint64(_FIELD)) & _MASK
    letters = inside >> np.uint64(2 * _FIELD)
    first = batch.flags[batch.start]
    capital = lowered > 0
    upper = capital & (uppered == 0) & (letters > 1)
    first_lowered = (first & CHANGED_BY_LOWER) != 0
    title = capital & ~upper & ((first & UPPER) != 0) & (lowered == first_lowered)
    return upper, title


def render(
    batch: Batch,
    chosen: Int64s,
    vocabulary: VocabularyCodes,
    placeholder: str,
    keep_oov: bool,
    symbol_replacement: str | None,
) -> tuple[list[str], Int64s]:
    """The texts with piece i replaced by vocabulary word ``chosen[i]`` (or, when it is -1, the placeholder or,
    with ``keep_oov``, the piece itself), each run of symbols by ``symbol_replacement`` (None: kept); and per
    text the symbol runs released verbatim."""
    n, pieces, texts = batch.codes.size, batch.start.size, batch.texts
    if not texts:
        return [], np.zeros(0, dtype=np.int64)
    doc, start, end = batch.doc, batch.start, batch.end
    known = chosen >= 0
    word = np.where(known, chosen, 0)
    # The substitutes' code points, one after another (only theirs: the whole vocabulary would be copied
    # for every batch, which costs more than a short text does).
    length = np.where(known, vocabulary.length[word], 0)
    at = np.cumsum(length) - length
    total_length = int(length.sum())
    used = vocabulary.codes[np.repeat(vocabulary.offset[word] - at, length) + np.arange(total_length)]
    extras: list[str] = [placeholder, " "]
    extra_at: list[int] = [0, len(placeholder)]
    base = n + total_length  # where the extra strings start in the source buffer

    def extra(text: str) -> int:
        extra_at.append(extra_at[-1] + len(extras[-1]))
        extras.append(text)
        return base + extra_at[-1]

    count = np.bincount(doc, minlength=texts).astype(np.int64)
    through = np.cumsum(count)
    src = np.empty(2 * pieces + texts, dtype=np.int64)
    size = np.empty(2 * pieces + texts, dtype=np.int64)
    before = 2 * np.arange(pieces, dtype=np.int64) + doc  # the separator before each piece
    after = 2 * through + np.arange(texts)  # the separator closing each text
    previous_end = batch.first[doc]
    if pieces > 1:
        same = doc[1:] == doc[:-1]
        previous_end[1:][same] = end[:-1][same]
    src[before], size[before] = previous_end, start - previous_end
    closing = batch.first.copy()
    closing[count > 0] = end[through[count > 0] - 1]
    src[after], size[after] = closing, batch.last - closing
    size[after[:-1]] += 1  # the NUL between two texts, to split the output at

    src[before + 1] = np.where(known, n + at, base)
    size[before + 1] = np.where(known, length, len(placeholder))
    starts_alnum = np.where(known, vocabulary.starts_alnum[word], placeholder[:1].isalnum())
    if keep_oov:
        oov = np.flatnonzero(~known)
        src[before[oov] + 1], size[before[oov] + 1] = start[oov], end[oov] - start[oov]
        starts_alnum[oov] = (batch.flags[start[oov]] & ALNUM) != 0
    spaced = batch.glued & starts_alnum
    src[before[spaced]], size[before[spaced]] = base + len(placeholder), 1

    upper, title = case_patterns(batch)
    upper &= known
    title &= known
    fancy = np.flatnonzero((upper | title) & ~vocabulary.ascii[word])
    for i in fancy.tolist():  # non-ASCII substitutes: str.upper knows their capitals
        cased = apply_case(vocabulary.words[word[i]], UPPER_CASE if upper[i] else TITLE)
        src[before[i] + 1], size[before[i] + 1] = extra(cased), len(cased)
    upper[fancy], title[fancy] = False, False

    released = np.zeros(texts, dtype=np.int64)
    if (batch.flags & SYMBOL).any():  # (the padding holds no flags)
        _symbol_separators(batch, src, size, np.concatenate([before, after]), symbol_replacement, released, extra)

    out_end = np.cumsum(size)
    out_start = out_end - size
    total = int(out_end[-1]) if out_end.size else 0
    buffer = np.concatenate([batch.codes.astype(np.uint32), used, _wide("".join(extras))])
    out = buffer[np.repeat(src - out_start, size) + np.arange(total)]
    _capitalise(out, out_start[before[upper] + 1], size[before[upper] + 1])
    _capitalise(out, out_start[before[title] + 1], np.ones(int(title.sum()), dtype=np.int64))
    if total and int(out.max()) < 128:
        joined = out.astype(np.uint8).tobytes().decode("ascii")
    else:
        joined = out.tobytes().decode("utf-32-le", "surrogatepass")
    if joined.count("\0") == texts - 1:
        return joined.split("\0"), released
    ends = out_end[after].tolist()  # some text holds a NUL itself: cut by the lengths
    stops = [e - 1 for e in ends[:-1]] + ends[-1:]
    return [joined[a:b] for a, b in zip([0, *ends[:-1]], stops, strict=True)], released


def _capitalise(out: npt.NDArray[np.uint32], starts: Int64s, sizes: Int64s) -> None:
    """Upper-case the ASCII letters of ``out[starts[j]:starts[j] + sizes[j]]`` in place."""
    if not starts.size:
        return
    where = np.repeat(starts - (np.cumsum(sizes) - sizes), sizes) + np.arange(int(sizes.sum()))
    letters = out[where]
    small = (letters >= ord("a")) & (letters <= ord("z"))
    out[where[small]] = letters[small] - 32


def _symbol_separators(
    batch: Batch,
    src: Int64s,
    size: Int64s,
    separators: Int64s,
    replacement: str | None,
    released: Int64s,
    extra: Callable[[str], int],
) -> None:
    """Separators holding symbols: each run replaced by ``replacement``, or kept and counted (None)."""
    n = batch.codes.size
    marks = np.zeros(n + 1, dtype=np.int64)
    np.cumsum((batch.flags[:n] & SYMBOL) != 0, out=marks[1:])
    separators = separators[src[separators] < n]  # not the spaces added before contraction words
    has = separators[marks[src[separators] + size[separators]] > marks[src[separators]]]
    docs = np.searchsorted(batch.first, src[has], side="right") - 1
    for j, t in zip(has.tolist(), docs.tolist(), strict=True):
        text = batch.text[src[j] : src[j] + size[j]]
        if replacement is None:
            released[t] += replace_symbols(text, "")[1]
        else:
            replaced = replace_symbols(text, replacement)[0]
            src[j], size[j] = extra(replaced), len(replaced)
