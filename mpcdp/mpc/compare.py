"""Comparison circuits on the engine: bit decomposition, <, =, selection, max/argmax/min, bits to ring.

Signed 64-bit values are compared through the sign of their difference, so
a < b is exact whenever a - b does not overflow: for every pair of values in
``[VALUE_MIN, VALUE_MAX] = [-(2^62 - 1), 2^62 - 1]`` (and ``SENTINEL =
-2^62``, the "no value" of :func:`top_two`). Rounds, for n = 3 / 5 / 7
(``csa`` = carry-save layers reducing n addends to 2: 1 / 3 / 4):

====================  =======================  ==================================
``to_bits``           1 + csa + 7 = 9/11/12    ring (additive parts) -> bits
``less_than``         7                        on bits: g, p, then 6 prefix levels
``greater_equal``     7                        on bits: NOT less_than
``equal``             6                        on bits: an OR tree over 64 bits
``select``            1                        on bits
``to_ring``           1 + ceil(log2 n) = 3/4/4 a shared bit -> ring
``extremum``          10 per level             max/min and its index, radix 4 (8 for a last pair)
``top_two``           2 extremum + 7           max, its index and the runner-up
====================  =======================  ==================================

``to_bits`` is the arithmetic-to-boolean conversion of ABY3 (Mohassel and
Rindal, CCS 2018) for any n: each party enters its additive part as a shared
bit vector, carry-save adders (one AND layer each) reduce the n addends to
two, and a Kogge-Stone parallel-prefix adder (Kogge and Stone, 1973) adds
them. Nothing is opened on the way, so there is no statistical masking
parameter: unlike comparison by masked opening in a prime field (MPyC,
Catrina and de Hoogh), a coalition's view is pseudo-random outright.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np

from .engine import ONES, U64, Engine, Program

VALUE_MAX = (1 << 62) - 1
VALUE_MIN = -VALUE_MAX
SENTINEL = -(1 << 62)
PREFIX_SHIFTS = (1, 2, 4, 8, 16, 32)


def shl(x: np.ndarray, k: int) -> np.ndarray:
    out: np.ndarray = np.left_shift(x, U64(k))
    return out


def shr(x: np.ndarray, k: int) -> np.ndarray:
    out: np.ndarray = np.right_shift(x, U64(k))
    return out


def spread(e: Engine, bit: np.ndarray) -> np.ndarray:
    """A shared bit (in bit 0) as a shared all-ones / all-zeros mask: local."""
    out: np.ndarray = np.subtract(U64(0), bit & U64(1), dtype=U64)
    return out


def invert(e: Engine, x: np.ndarray) -> np.ndarray:
    """NOT x, bitwise: local (the constant sits in share index 0)."""
    out: np.ndarray = x ^ e.constant(np.full(x.shape[1:], ONES, dtype=U64))
    return out


def carries(e: Engine, g: np.ndarray, p: np.ndarray) -> Program[np.ndarray]:
    """Kogge-Stone prefix: bit i of the result is the carry out of bits 0..i (six rounds)."""
    for level, k in enumerate(PREFIX_SHIFTS):
        if level == len(PREFIX_SHIFTS) - 1:
            (gp,) = yield from e.and_many([(p, shl(g, k))])
        else:
            gp, p = yield from e.and_many([(p, shl(g, k)), (p, shl(p, k))])
        g = g ^ gp  # a span generates or propagates, never both: OR is XOR
    return g


def add_bits(e: Engine, terms: list[np.ndarray]) -> Program[np.ndarray]:
    """The bits of the sum mod 2^64 of shared bit vectors (carry-save tree, then one adder)."""
    terms = list(terms)
    while len(terms) > 2:
        triples = [terms[i : i + 3] for i in range(0, len(terms) - 2, 3)]
        rest = terms[3 * len(triples) :]
        ands = yield from e.and_many([(a ^ c, b ^ c) for a, b, c in triples])
        terms = [x for (a, b, c), m in zip(triples, ands, strict=True) for x in (a ^ b ^ c, shl(m ^ c, 1))] + rest
    a, b = terms
    (g,) = yield from e.and_many([(a, b)])
    p = a ^ b
    g = yield from carries(e, g, p)
    total: np.ndarray = p ^ shl(g, 1)
    return total


def to_bits(e: Engine, z: Any) -> Program[np.ndarray]:
    """Shared bits of the ring value whose additive parts (one per party) are z: one entry round + adder."""
    parts = cast(list[np.ndarray], (yield from e.inputs(z, xor=True)))
    return (yield from add_bits(e, parts))


def less_than(e: Engine, a: np.ndarray, b: np.ndarray) -> Program[np.ndarray]:
    """[a < b] in bit 0, for shared bit vectors read as signed values within the comparison range.

    The sign of a - b = a + NOT b + 1: generate and propagate, the carry-in
    folded into bit 0, then the carry into bit 63.
    """
    nb = invert(e, b)
    (g,) = yield from e.and_many([(a, nb)])
    p = a ^ nb
    g = g ^ (p & U64(1))
    p_in = p & ~U64(1)
    g = yield from carries(e, g, p_in)
    bit: np.ndarray = (shr(p, 63) ^ shr(g, 62)) & U64(1)
    return bit


def greater_equal(e: Engine, a: np.ndarray, b: np.ndarray) -> Program[np.ndarray]:
    """[a >= b] in bit 0: NOT [a < b] (7 rounds)."""
    lt = yield from less_than(e, a, b)
    ge: np.ndarray = lt ^ e.constant(np.ones(lt.shape[1:], dtype=U64))
    return ge


def equal(e: Engine, a: np.ndarray, b: np.ndarray) -> Program[np.ndarray]:
    """[a == b] in bit 0: NOT of the OR of the 64 bits of a XOR b (six rounds)."""
    z = a ^ b
    for k in (32, 16, 8, 4, 2, 1):
        y = shr(z, k)
        (zy,) = yield from e.and_many([(z, y)])
        z = z ^ y ^ zy
    return invert(e, z) & U64(1)


def select(e: Engine, bit: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray]]) -> Program[list[np.ndarray]]:
    """For each (x, y): x where the shared bit is 1, else y (one round for all pairs)."""
    mask = spread(e, bit)
    diffs = yield from e.and_many([(mask, x ^ y) for x, y in pairs])
    return [y ^ d for (_, y), d in zip(pairs, diffs, strict=True)]


def to_ring(e: Engine, bit: np.ndarray) -> Program[np.ndarray]:
    """A shared bit (bit 0) as a shared ring element 0/1: each party enters its XOR part, then XOR as a + b - 2ab."""
    parts = yield from e.inputs(e.additive(bit, xor=True) & U64(1))
    while len(parts) > 1:
        pairs = [(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        rest = parts[2 * len(pairs) :]
        flat = yield from e.mul(
            np.concatenate([a.reshape(e.k, -1) for a, _ in pairs], axis=1),
            np.concatenate([b.reshape(e.k, -1) for _, b in pairs], axis=1),
        )
        prods = np.split(flat, len(pairs), axis=1)
        parts = [a + b - U64(2) * m.reshape(a.shape) for (a, b), m in zip(pairs, prods, strict=True)] + rest
    return parts[0]


def to_ring_rounds(n: int) -> int:
    return 1 + math.ceil(math.log2(n))


def _halves(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h = v.shape[-1] // 2
    return v[..., 0 : 2 * h : 2], v[..., 1 : 2 * h : 2], v[..., 2 * h :]


PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


def _pad(e: Engine, values: np.ndarray, index: np.ndarray, multiple: int, filler: int) -> tuple[np.ndarray, np.ndarray]:
    extra = (-values.shape[-1]) % multiple
    if not extra:
        return values, index
    shape = values.shape[1:-1] + (extra,)
    fill = e.constant(np.full(shape, np.int64(filler).view(U64), dtype=U64))
    return (
        np.concatenate([values, fill], axis=-1),
        np.concatenate([index, e.constant(np.zeros(shape, dtype=U64))], axis=-1),
    )


def extremum(e: Engine, values: np.ndarray, smallest: bool = False) -> Program[tuple[np.ndarray, np.ndarray]]:
    """The max (or min) over the last axis of shared bit vectors, and its index; ties go to the lowest index.

    A radix-4 tournament: each group of four runs its six comparisons at
    once (7 rounds), each member's "beats every other" bit is an AND of three
    (2 rounds), and one selection picks the winner and its index (1 round):
    10 rounds per level where a binary tournament spends 16 on two levels, at
    twice the comparisons. Groups are padded with a value that never wins; a
    last pair takes one binary step (8 rounds).
    """
    index = e.constant(np.broadcast_to(np.arange(values.shape[-1], dtype=U64), values.shape[1:]))
    filler = -SENTINEL if smallest else SENTINEL
    while values.shape[-1] > 2:
        values, index = _pad(e, values, index, 4, filler)
        groups = values.reshape(values.shape[:-1] + (-1, 4))
        igroups = index.reshape(index.shape[:-1] + (-1, 4))
        left = np.stack([groups[..., i] for i, _ in PAIRS], axis=1)
        right = np.stack([groups[..., j] for _, j in PAIRS], axis=1)
        beaten = yield from (less_than(e, right, left) if smallest else less_than(e, left, right))
        one = e.constant(np.ones(beaten.shape[2:], dtype=U64))
        bit = {pair: beaten[:, n] for n, pair in enumerate(PAIRS)}  # 1: the later member beats the earlier
        holds = {pair: b ^ one for pair, b in bit.items()}
        terms = [[holds[(i, j)] if i < j else bit[(j, i)] for j in range(4) if j != i] for i in range(4)]
        first = yield from e.and_(np.stack([t[0] for t in terms], axis=1), np.stack([t[1] for t in terms], axis=1))
        wins = yield from e.and_(first, np.stack([t[2] for t in terms], axis=1))
        mask = spread(e, wins)
        chosen, at = yield from e.and_many([(mask, np.moveaxis(groups, -1, 1)), (mask, np.moveaxis(igroups, -1, 1))])
        values = np.bitwise_xor.reduce(chosen, axis=1)
        index = np.bitwise_xor.reduce(at, axis=1)
    if values.shape[-1] == 2:
        a, b, _ = _halves(values)
        ia, ib, _ = _halves(index)
        take_b = yield from (less_than(e, b, a) if smallest else less_than(e, a, b))
        values, index = yield from select(e, take_b, [(b, a), (ib, ia)])
    return values[..., 0], index[..., 0]


def extremum_rounds(m: int) -> int:
    """Rounds of :func:`extremum` over m values."""
    rounds = 0
    while m > 2:
        m, rounds = -(-m // 4), rounds + 10
    return rounds + (8 if m == 2 else 0)


def top_two(e: Engine, values: np.ndarray) -> Program[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The max over the last axis, its index (lowest on ties) and the second largest (SENTINEL if none).

    The max and its index (a tournament), then the winner knocked out — its
    slot, found by comparing the shared index with each public position,
    replaced by SENTINEL — and a second tournament: extremum_rounds(m) * 2 + 7.
    """
    best, index = yield from extremum(e, values)
    positions = np.broadcast_to(np.arange(values.shape[-1], dtype=U64), values.shape[1:])
    winner = np.broadcast_to(index[..., None], values.shape)
    is_winner = yield from equal(e, winner, e.constant(positions))
    knocked = e.constant(np.full(values.shape[1:], np.int64(SENTINEL).view(U64), dtype=U64))
    (rest,) = yield from select(e, is_winner, [(knocked, values)])
    second, _ = yield from extremum(e, rest)
    return best, index, second
