"""What any t parties receive does not depend on the other parties' inputs: the attack, with chi-square.

Two sessions compare x < y for K independent copies, with inputs A and B
that give the same output. For every coalition of t parties we take every
message block its members received (rounds after the key set-up) and the
coalition's best reconstruction attempt — the XOR (or sum) of all the
distinct shares it holds of the compared values — and test, block by block,
whether their low and high 4 bits are distributed the same under A and B.
The same attack by t + 1 parties must succeed: that shows the test has power.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from mpcdp import ring
from mpcdp.mpc import compare
from mpcdp.mpc.access import access_for
from mpcdp.mpc.memory import run_in_memory, seeded_rngs
from mpcdp.prg import Prg
from mpcdp.sharing import share

K = 1000
ALPHA = 1e-3  # family-wise, Bonferroni over every block, feature and coalition of one n
INPUTS = {"A": (1, 2), "B": (-(1 << 40) + 12345, 987654321)}  # both: x < y


def session(n: int, x: int, y: int, seed: int):
    xs = share(ring.as_ring(np.full(K, x, dtype=np.int64)), n, Prg.from_int(seed))
    ys = share(ring.as_ring(np.full(K, y, dtype=np.int64)), n, Prg.from_int(seed + 1))

    def program(p):
        def run(e):
            xa = yield from e.reshare(xs[p])
            bits = yield from compare.to_bits(e, np.stack([xs[p], ys[p]]))
            xb, yb = bits[:, 0], bits[:, 1]
            lt = yield from compare.less_than(e, xb, yb)
            (larger,) = yield from compare.select(e, lt, [(yb, xb)])
            lt_ring = yield from compare.to_ring(e, lt)
            product = yield from e.mul(lt_ring, xa)
            out = yield from e.open(lt, xor=True)
            return out, {
                "x (ring)": (xa, False),
                "x - y bits": (xb, True),
                "max": (larger, True),
                "lt * x": (product, False),
            }

        return run

    results, trace = run_in_memory(n, [program(p) for p in range(n)], seeded_rngs(n, seed + 2), record=True)
    assert all(np.array_equal(r[0], np.ones(K)) for r in results)
    return results, trace


def features(words: np.ndarray) -> list[np.ndarray]:
    return [words & np.uint64(15), words >> np.uint64(60)]


def received_samples(party, trace) -> dict:
    """Samples (K per key) of every message block ``party`` received after the key set-up."""
    out = {}
    for m in trace.received[party]:
        if m.round == 0:
            continue  # the dealt keys: fresh random seeds, independent of any input
        for j, block in enumerate(m.words.reshape(-1, K)):
            out[("message", m.round, m.sender, party, j)] = block
    return out


def reconstructions(n, coalition, results) -> dict:
    """The coalition's attempt at each shared value: the XOR (or sum) of all distinct shares it holds."""
    acc = access_for(n)
    out = {}
    for name, (_, xor) in results[0][1].items():
        seen = {}
        for p in coalition:
            for pos, idx in enumerate(acc.held(p)):
                seen[idx] = results[p][1][name][0][pos]
        stack = np.stack(list(seen.values()))
        guess = np.bitwise_xor.reduce(stack, axis=0) if xor else stack.sum(axis=0, dtype=np.uint64)
        out[("reconstruction", name)] = guess.reshape(-1)
    return out


def pvalues(a: dict, b: dict) -> dict:
    assert a.keys() == b.keys()
    out = {}
    for key in a:
        for f, (fa, fb) in enumerate(zip(features(a[key]), features(b[key]))):
            table = np.stack(
                [np.bincount(fa.astype(np.int64), minlength=16), np.bincount(fb.astype(np.int64), minlength=16)]
            )
            table = table[:, table.sum(axis=0) > 0]
            out[key + (f,)] = 1.0 if table.shape[1] < 2 else chi2_contingency(table)[1]
    return out


@pytest.mark.parametrize("n", [3, 5, 7])
def test_any_t_parties_see_the_same_distribution_whatever_the_others_input(n):
    t = (n - 1) // 2
    runs = {name: session(n, x, y, seed=10 * n + i) for i, (name, (x, y)) in enumerate(INPUTS.items())}
    all_p = {}
    for party in range(n):  # a coalition receives the union of its members' messages
        all_p.update(pvalues(*[received_samples(party, runs[name][1]) for name in INPUTS]))
    assert len(all_p) > 50 * n  # every round's messages were tested, not just a few
    for c in combinations(range(n), t):
        views = [reconstructions(n, c, runs[name][0]) for name in INPUTS]
        all_p.update({(c,) + k: p for k, p in pvalues(*views).items()})
    worst = min(all_p, key=all_p.get)
    assert all_p[worst] > ALPHA / len(all_p), f"{worst} differs between inputs (p = {all_p[worst]:.2e})"

    # the same attack by t + 1 parties reconstructs the inputs, and the test sees it at once
    for c in list(combinations(range(n), t + 1))[:3]:
        p = pvalues(*[reconstructions(n, c, runs[name][0]) for name in INPUTS])
        assert p[("reconstruction", "x (ring)", 0)] < 1e-12
        assert p[("reconstruction", "x - y bits", 0)] < 1e-12


def test_the_same_test_catches_a_reshare_sent_unmasked(monkeypatch):
    """Power check: if a party's residual went out without the key-drawn parts, the messages would differ."""
    from mpcdp.mpc.engine import Engine

    honest = Engine.inputs

    def unmasked(self, z, xor=False, combine=False):
        drawn, self._drawn = self._drawn, np.zeros_like(self._drawn)
        try:
            return (yield from honest(self, z, xor, combine))
        finally:
            self._drawn = drawn

    monkeypatch.setattr(Engine, "inputs", unmasked)
    runs = {name: session(3, x, y, seed=7 + i) for i, (name, (x, y)) in enumerate(INPUTS.items())}
    p = {}
    for party in range(3):
        p.update(pvalues(*[received_samples(party, runs[name][1]) for name in INPUTS]))
    assert min(p.values()) < 1e-12
