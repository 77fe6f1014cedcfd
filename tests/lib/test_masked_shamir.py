"""Vectorised Shamir sharing (mpcdp.protocol.shamir): equal to a plain-Python reference over the same field,
any threshold subset rebuilds, fewer shares reveal nothing, malformed and inconsistent shares are refused."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from mpcdp.prg import Prg
from mpcdp.protocol import shamir
from tests.support.shamir import rebuild

P = shamir.PRIME


def reference_split(secret: bytes, points: list[int], coefficients: list[list[int]]) -> list[list[int]]:
    """Shares at ``points``, piece by piece, with Python integers: piece c of the share at x is
    sum_j a_j[c] x^j mod p, a_0 the secret's piece c (``coefficients``[j - 1] are a_j for j >= 1)."""
    value = int.from_bytes(secret, "big")
    pieces = [(value >> (shamir.CHUNK_BITS * c)) & ((1 << shamir.CHUNK_BITS) - 1) for c in range(shamir.CHUNKS)]
    out = []
    for x in points:
        row = []
        for c in range(shamir.CHUNKS):
            terms = [pieces[c]] + [a[c] for a in coefficients]
            row.append(sum(a * pow(x, j, P) for j, a in enumerate(terms)) % P)
        out.append(row)
    return out


def reference_rebuild(shares: dict[int, list[int]]) -> bytes:
    """Lagrange interpolation at 0 with Python integers, piece by piece."""
    value = 0
    for c in range(shamir.CHUNKS):
        piece = 0
        for i, y in shares.items():
            num, den = 1, 1
            for j in shares:
                if j != i:
                    num, den = num * j % P, den * (j - i) % P
            piece += y[c] * num * pow(den, -1, P)
        value |= (piece % P) << (shamir.CHUNK_BITS * c)
    return value.to_bytes(32, "big")


class Recording:
    """A random source that remembers the words it handed out (to read back the polynomial's coefficients)."""

    def __init__(self, seed: int):
        self.prg = Prg.from_int(seed)
        self.words: list[np.ndarray] = []

    def uint64(self, n: int) -> np.ndarray:
        words = self.prg.uint64(n)
        self.words.append(words.copy())
        return words

    def bytes(self, n: int) -> bytes:
        return self.prg.bytes(n)


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_split_and_rebuild_equal_the_reference(seed):
    gen = np.random.default_rng(seed)
    secrets = [gen.bytes(32) for _ in range(3)]
    k = int(gen.integers(2, 40))
    t = int(gen.integers(1, k + 1))
    points = sorted(int(x) for x in gen.choice(np.arange(1, 5000), size=k, replace=False))
    rng = Recording(seed)
    shares = shamir.split(secrets, points, t, rng)
    assert shares.shape == (3, k, shamir.CHUNKS) and shares.dtype == np.uint64
    words = (rng.words[0] & np.uint64(P)).reshape(t - 1, 3, shamir.CHUNKS) if t > 1 else np.zeros((0, 3, 9))
    assert len(rng.words) == 1  # no word was exactly p at these seeds: one draw
    for s, secret in enumerate(secrets):
        coefficients = [[int(v) for v in words[j, s]] for j in range(t - 1)]
        assert shares[s].tolist() == reference_split(secret, points, coefficients)
        as_bytes = shamir.share_bytes(shares[s])
        assert all(len(b) == shamir.SHARE_BYTES for b in as_bytes)
        subset = [int(i) for i in gen.choice(k, size=t, replace=False)]
        chosen = {points[i]: as_bytes[i] for i in subset}
        assert rebuild(chosen, t) == secret
        assert reference_rebuild({points[i]: shares[s, i].tolist() for i in subset}) == secret


def test_rebuild_many_takes_a_different_point_set_per_secret():
    rng = Prg.from_int(7)
    secrets = [bytes([i]) * 32 for i in range(5)]
    points = list(range(1, 11))
    t = 4
    shares = shamir.split(secrets, points, t, rng)
    subsets = [c for c in itertools.combinations(range(10), t)][::40][:5]
    rows = np.asarray([[points[i] for i in c] for c in subsets])
    values = np.stack([shares[s][list(c)] for s, c in enumerate(subsets)])
    assert shamir.secrets_from(shamir.rebuild_many(rows, values)) == secrets


def test_any_threshold_subset_rebuilds_and_fewer_do_not():
    rng = Prg.from_int(1)
    secret = bytes(range(32))
    shares = dict(zip(range(1, 11), shamir.share_bytes(shamir.split([secret], list(range(1, 11)), 4, rng)[0])))
    for subset in ([1, 2, 3, 4], [10, 7, 3, 5], [2, 4, 6, 8, 9]):
        assert rebuild({x: shares[x] for x in subset}, 4) == secret
    with pytest.raises(ValueError, match="cannot rebuild"):
        rebuild({x: shares[x] for x in (1, 2, 3)}, 4)


def test_extreme_secrets_round_trip():
    rng = Prg.from_int(3)
    for secret in (bytes(32), b"\xff" * 32, b"\x80" + bytes(31)):
        shares = shamir.share_bytes(shamir.split([secret], [1, 2, 3], 2, rng)[0])
        assert rebuild({2: shares[1], 3: shares[2]}, 2) == secret


def test_fewer_than_threshold_shares_look_alike_for_any_secret():
    """The top bits of every piece of one share (t = 2) have the same uniform law whether the secret is 0 or all
    ones."""
    rng = Prg.from_int(2)
    for secret in (bytes(32), b"\xff" * 32):
        shares = shamir.split([secret] * 3000, [1, 2], 2, rng)[:, 0, :]  # 3000 sharings, the share at x = 1
        for piece in range(shamir.CHUNKS):
            counts = np.bincount((shares[:, piece] >> np.uint64(27)).astype(int), minlength=16)
            assert stats.chisquare(counts).pvalue > 1e-4


def test_a_field_word_equal_to_p_is_drawn_again():
    class Stuck:
        """Hands out p (not a field element) first, then ordinary words."""

        def __init__(self):
            self.first, self.prg = True, Prg.from_int(5)

        def uint64(self, n):
            if self.first:
                self.first = False
                return np.full(n, P, dtype=np.uint64)
            return self.prg.uint64(n)

    shares = shamir.split([bytes(32)], [1, 2], 2, Stuck())
    assert (shares < P).all()
    assert rebuild(dict(zip([1, 2], shamir.share_bytes(shares[0]))), 2) == bytes(32)


@pytest.mark.parametrize(
    "share",
    [b"\x01", bytes(shamir.SHARE_BYTES + 1), b"\xff" * shamir.SHARE_BYTES],
    ids=["short", "long", "not-in-field"],
)
def test_malformed_shares_are_refused(share):
    good = shamir.share_bytes(shamir.split([bytes(32)], [1, 2], 2, Prg.from_int(4))[0])
    with pytest.raises(ValueError):
        shamir.share_values([good[0], share])
    with pytest.raises(ValueError):
        rebuild({1: good[0], 2: share}, 2)


def test_inconsistent_shares_are_detected():
    """A share replaced by another field element rebuilds pieces out of range (at these seeds; a caller that must
    catch every case checks a commitment, as the many-party coordinator does)."""
    caught = 0
    for seed in range(20):
        rng = Prg.from_int(seed)
        shares = shamir.share_bytes(shamir.split([bytes(range(32))], [1, 2, 3], 2, rng)[0])
        wrong = (np.frombuffer(rng.bytes(shamir.SHARE_BYTES), ">u4") % P).astype(">u4").tobytes()
        try:
            rebuild({1: shares[0], 2: wrong}, 2)
        except ValueError as exc:
            assert "inconsistent" in str(exc)
            caught += 1
    assert caught == 20


def test_points_must_be_distinct_and_in_the_field():
    rng = Prg.from_int(6)
    for points in ([1, 1], [0, 2], [1, P]):
        with pytest.raises(ValueError, match="distinct"):
            shamir.split([bytes(32)], points, 2, rng)
    with pytest.raises(ValueError, match="32 bytes"):
        shamir.split([bytes(31)], [1, 2], 2, rng)
    with pytest.raises(ValueError, match="threshold"):
        shamir.split([bytes(32)], [1, 2], 3, rng)


def test_a_share_is_checked_alone_as_share_values_checks_many():
    good = shamir.share_bytes(shamir.split([b"\xff" * 32], [1, 2, 3], 2, Prg.from_int(6))[0])
    edge = (np.full(shamir.CHUNKS, P - 1, dtype=">u4")).tobytes()  # the largest field elements
    for share in (*good, edge):
        assert shamir.is_share(share)
        shamir.share_values([share])
    for share in (b"", b"\x01", bytes(shamir.SHARE_BYTES + 1), np.full(shamir.CHUNKS, P, ">u4").tobytes()):
        assert not shamir.is_share(share)
        with pytest.raises(ValueError):
            shamir.share_values([share])
