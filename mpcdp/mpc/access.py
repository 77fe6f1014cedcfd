"""Who holds what in replicated (CNF) secret sharing among n parties, t < n/2 of them colluding.

A secret is the sum (or, for bits, the XOR) of one share per t-subset T of the
parties; share T is held by every party *not* in T. A coalition C of t parties
therefore misses exactly the share indexed by C itself and sees nothing of
the secret, while any t + 1 parties hold every share. Because 2t < n, any
two indices T, U leave some party outside their union, which can multiply those two
shares locally: this is what makes multiplication one round (Maurer,
"Secure multi-party computation made simple", DAM 2006; Ito, Saito and
Nishizeki's CNF sharing, 1987). Sizes: n = 3 has 3 shares (2 per party),
n = 5 has 10 (6 per party), n = 7 has 35 (20 per party).
"""

from __future__ import annotations

from functools import cache, cached_property
from itertools import combinations


class Access:
    """The replicated access structure for ``n`` parties and ``t = (n - 1) // 2`` colluders."""

    def __init__(self, n: int):
        if not isinstance(n, int) or n < 3:
            raise ValueError(f"an honest-majority engine needs at least 3 parties, got {n!r}")
        self.n = n
        self.t = (n - 1) // 2
        self.indices: tuple[frozenset[int], ...] = tuple(frozenset(c) for c in combinations(range(n), self.t))
        self._holders = tuple(tuple(p for p in range(n) if p not in T) for T in self.indices)
        self._held = tuple(tuple(k for k, T in enumerate(self.indices) if p not in T) for p in range(n))

    def holders(self, k: int) -> tuple[int, ...]:
        """The parties holding share ``k``: everyone outside its t-subset (n - t of them)."""
        return self._holders[k]

    def held(self, party: int) -> tuple[int, ...]:
        """The share indices ``party`` holds, in global order (its local stacking order)."""
        return self._held[party]

    def owner(self, k: int) -> int:
        """The one party that answers for share ``k`` when shares are summed to additive form."""
        return self.holders(k)[0]

    def owned(self, party: int) -> tuple[int, ...]:
        """The positions (in ``held(party)``) of the shares ``party`` answers for."""
        return tuple(pos for pos, k in enumerate(self.held(party)) if self.owner(k) == party)

    def residual(self, party: int) -> int:
        """The share a party's fresh additive value lands in unmasked: its first held index.

        Every other share of the value is drawn from a key the party holds; this
        one is the value minus all of them, sent to the share's other holders.
        """
        return self.held(party)[0]

    @cached_property
    def products(self) -> tuple[tuple[tuple[int, tuple[int, ...]], ...], ...]:
        """For each party, [(position a, positions b...)] of the cross terms x_a * y_b it computes.

        The pair (T, U) goes to the lowest party outside the union of T and U (one exists since 2t < n);
        positions are local to that party's ``held`` list.
        """
        out = []
        for p in range(self.n):
            held = self.held(p)
            pos = {k: i for i, k in enumerate(held)}
            rows: dict[int, list[int]] = {}
            for a in held:
                for b in held:
                    union = self.indices[a] | self.indices[b]
                    if next(q for q in range(self.n) if q not in union) == p:
                        rows.setdefault(pos[a], []).append(pos[b])
            out.append(tuple((a, tuple(bs)) for a, bs in sorted(rows.items())))
        return tuple(out)


@cache
def access_for(n: int) -> Access:
    """The (immutable) access structure for n parties, built once per process."""
    return Access(n)
