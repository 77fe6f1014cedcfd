"""What a release promises: pure epsilon-DP or rho-zCDP, and its conversion to (epsilon, delta).

Conversions (Bun and Steinke, TCC 2016): pure epsilon-DP implies
(epsilon^2 / 2)-zCDP (Prop. 1.4); rho-zCDP implies
(rho + 2 sqrt(rho ln(1/delta)), delta)-DP for every delta > 0 (Prop. 1.3).
Reported epsilons are rounded up (6 decimals), never down. The converse,
the largest rho within a given (epsilon, delta), is :func:`zcdp_rho`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import localcontext

from .rational import DECIMAL_DIGITS, decimal_of, exact, float_at_most, positive_rational, round_up

PURE = "pure"
ZCDP = "zcdp"
NONE = "none"


@dataclass(frozen=True)
class Guarantee:
    """A DP guarantee: ``kind`` is "pure" (epsilon), "zcdp" (rho) or "none" (no protection)."""

    kind: str
    epsilon: float = math.inf
    rho: float = math.inf

    @classmethod
    def pure(cls, epsilon: float) -> Guarantee:
        return cls(PURE, epsilon=float(epsilon), rho=float(epsilon) ** 2 / 2)

    @classmethod
    def zcdp(cls, rho: float) -> Guarantee:
        return cls(ZCDP, rho=float(rho))

    @classmethod
    def none(cls) -> Guarantee:
        return cls(NONE)

    @property
    def is_private(self) -> bool:
        return self.kind != NONE

    def epsilon_delta(self, delta: float = 0.0) -> tuple[float, float]:
        """(epsilon, delta)-DP implied by this guarantee, epsilon rounded up.

        Pure DP ignores ``delta`` and returns (epsilon, 0). zCDP needs
        0 < delta < 1. No guarantee gives (inf, delta).
        """
        if self.kind == PURE:
            return round_up(self.epsilon), 0.0
        if self.kind == NONE:
            return math.inf, float(delta)
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1) to convert zCDP, got {delta!r}")
        eps = self.rho + 2 * math.sqrt(self.rho * math.log(1 / delta))
        return round_up(eps), float(delta)


def zcdp_rho(epsilon, delta) -> float:
    """The largest rho whose conversion (Prop. 1.3) stays within (epsilon, delta)-DP, rounded down.

    rho + 2 sqrt(rho L) <= epsilon with L = ln(1/delta) gives
    rho = (sqrt(L + epsilon) - sqrt(L))^2 = epsilon^2 / (sqrt(L + epsilon) + sqrt(L))^2;
    the second form does not cancel when epsilon << L. It is evaluated in
    decimal at 60 digits and rounded down to a float, so the rho used never
    exceeds the exact one (towards more privacy). Floats are read as the decimals they print as
    (:func:`mpcdp.dp.rational.exact`), like the ledger reads them.
    """
    eps = positive_rational(epsilon, "epsilon")
    d = exact(delta, "delta")
    if not 0 < d < 1:
        raise ValueError(f"delta must be in (0, 1) for zCDP noise, got {delta!r}")
    with localcontext() as ctx:
        ctx.prec = DECIMAL_DIGITS
        lg = -decimal_of(d).ln()
        e = decimal_of(eps)
        return float_at_most(e * e / ((lg + e).sqrt() + lg.sqrt()) ** 2)
