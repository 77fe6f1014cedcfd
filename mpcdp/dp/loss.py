"""Privacy loss as a value: a measure (pure epsilon, zCDP rho, (epsilon, delta)) and a neighboring relation.

Three epsilons in this project mean different things: a query's epsilon protects the addition or removal of
one record of one party (:attr:`Relation.RECORD`), a survey's central epsilon the replacement of one
respondent's report (:attr:`Relation.RESPONDENT`), a local randomizer's epsilon any two inputs of one
respondent (:attr:`Relation.LOCAL`), and text sanitization's epsilon is per unit of embedding distance
(:attr:`Relation.METRIC`). A :class:`PrivacyLoss` carries its relation, so losses of different relations are
never added (:meth:`PrivacyLoss.compose` raises :class:`RelationMismatch`), and its text says which it is.

Amounts are exact :class:`~fractions.Fraction` values. Numbers are read as the decimals they are written as
(:func:`mpcdp.dp.rational.exact`: the float 0.1 is 1/10), as the ledger and the noise calibration read them.

Composition (same relation): pure + pure and (epsilon, delta) + (epsilon, delta) add (basic sequential
composition, Dwork, Kenthapadi, McSherry, Mironov and Naor, EUROCRYPT 2006); zCDP + zCDP adds rho, and pure
epsilon is (epsilon^2 / 2)-zCDP (Bun and Steinke, TCC 2016, Prop. 1.4). Conversions (Bun and Steinke, Prop. 1.3):
rho-zCDP implies (rho + 2 sqrt(rho ln(1/delta)), delta)-DP for every 0 < delta < 1 (:meth:`PrivacyLoss.to_approx`,
epsilon rounded up); the converse, the largest rho within (epsilon, delta), is :meth:`PrivacyLoss.to_zcdp`
(rounded down). Both round towards more privacy.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from enum import Enum
from fractions import Fraction

from .rational import DECIMAL_DIGITS, decimal_of, exact, magnitude, round_up

__all__ = ["Measure", "PrivacyLoss", "Relation", "RelationMismatch"]

_MARGIN = Decimal(10) ** -40  # relative error allowance of a 60-digit decimal evaluation


class Measure(Enum):
    """How the loss is measured."""

    PURE = "pure"  # epsilon-DP
    ZCDP = "zcdp"  # rho-zero-concentrated DP
    APPROX = "approx"  # (epsilon, delta)-DP


class Relation(Enum):
    """Which two inputs the loss bounds the distinguishability of (the neighboring relation)."""

    RECORD = "record"  # add or remove one record of one party's data
    RESPONDENT = "respondent"  # replace one respondent's report by another
    LOCAL = "local"  # any two inputs of one respondent (local DP, on the device)
    METRIC = "metric"  # two inputs at embedding distance 1 (metric DP, per unit of distance)

    @property
    def describe(self) -> str:
        return {
            Relation.RECORD: "per added or removed record",
            Relation.RESPONDENT: "per replaced respondent",
            Relation.LOCAL: "per respondent, locally (any two answers)",
            Relation.METRIC: "per unit of embedding distance (metric DP)",
        }[self]


class RelationMismatch(ValueError):
    """Two losses of different neighboring relations: they do not add up to anything meaningful."""


def _amount(x: object, name: str) -> Fraction:
    if isinstance(x, Decimal):
        x = str(x)
    value = exact(x, name)
    if value < 0:
        raise ValueError(f"{name} must be non-negative, got {x!r}")
    return value


def _fraction(value: Decimal, up: bool) -> Fraction:
    """A value computed in decimal at ``DECIMAL_DIGITS`` digits as an exact Fraction, first moved up or down
    by a relative 10^-40 (more than the arithmetic's error), then cut to 45 significant digits the same way."""
    with localcontext() as ctx:
        ctx.prec = DECIMAL_DIGITS
        moved = value * (1 + _MARGIN if up else 1 - _MARGIN)
        ctx.prec = 45
        ctx.rounding = ROUND_CEILING if up else ROUND_FLOOR
        return Fraction(+moved)


@dataclass(frozen=True)
class PrivacyLoss:
    """A privacy loss: ``measure`` and ``relation`` say what the amounts mean.

    Pure: ``epsilon``; zCDP: ``rho``; approximate: ``epsilon`` and ``delta`` (0 < delta < 1). The unused
    amounts are 0. Build with :meth:`pure`, :meth:`zcdp`, :meth:`approx` or :meth:`of`.
    """

    measure: Measure
    relation: Relation
    epsilon: Fraction = Fraction(0)
    delta: Fraction = Fraction(0)
    rho: Fraction = Fraction(0)

    def __post_init__(self) -> None:
        if not isinstance(self.measure, Measure) or not isinstance(self.relation, Relation):
            raise TypeError("a PrivacyLoss needs a Measure and a Relation")
        for name in ("epsilon", "delta", "rho"):
            object.__setattr__(self, name, _amount(getattr(self, name), name))
        if self.measure is Measure.PURE and (self.delta or self.rho):
            raise ValueError("a pure DP loss has only an epsilon")
        if self.measure is Measure.ZCDP and (self.epsilon or self.delta):
            raise ValueError("a zCDP loss has only a rho")
        if self.measure is Measure.APPROX and (self.rho or not 0 < self.delta < 1):
            raise ValueError(f"an (epsilon, delta) loss needs 0 < delta < 1, got delta={float(self.delta):g}")

    # -- constructors -----------------------------------------------------------------------------------

    @classmethod
    def pure(cls, epsilon: object, relation: Relation = Relation.RECORD) -> PrivacyLoss:
        return cls(Measure.PURE, relation, epsilon=_amount(epsilon, "epsilon"))

    @classmethod
    def zcdp(cls, rho: object, relation: Relation = Relation.RECORD) -> PrivacyLoss:
        return cls(Measure.ZCDP, relation, rho=_amount(rho, "rho"))

    @classmethod
    def approx(cls, epsilon: object, delta: object, relation: Relation = Relation.RECORD) -> PrivacyLoss:
        return cls(Measure.APPROX, relation, epsilon=_amount(epsilon, "epsilon"), delta=_amount(delta, "delta"))

    @classmethod
    def of(cls, epsilon: object, delta: object = 0, relation: Relation = Relation.RECORD) -> PrivacyLoss:
        """(epsilon, delta)-DP: pure when delta is 0, approximate otherwise."""
        d = _amount(delta, "delta")
        return cls.pure(epsilon, relation) if d == 0 else cls.approx(epsilon, d, relation)

    # -- arithmetic -------------------------------------------------------------------------------------

    def compose(self, other: PrivacyLoss) -> PrivacyLoss:
        """The loss of both releases together (sequential composition); refuses different relations."""
        if not isinstance(other, PrivacyLoss):
            raise TypeError(f"cannot compose a PrivacyLoss with {type(other).__name__}")
        if other.relation is not self.relation:
            raise RelationMismatch(
                f"cannot compose a loss {self.relation.describe} with one {other.relation.describe}: "
                "they protect different things"
            )
        kinds = {self.measure, other.measure}
        if kinds == {Measure.PURE}:
            return PrivacyLoss.pure(self.epsilon + other.epsilon, self.relation)
        if Measure.APPROX not in kinds:  # zCDP with zCDP or pure
            return PrivacyLoss.zcdp(self.to_zcdp().rho + other.to_zcdp().rho, self.relation)
        if Measure.ZCDP in kinds:
            raise ValueError("composing zCDP with (epsilon, delta)-DP needs a delta: convert with to_approx first")
        return PrivacyLoss.approx(self.epsilon + other.epsilon, self.delta + other.delta, self.relation)

    def __add__(self, other: PrivacyLoss) -> PrivacyLoss:
        return self.compose(other)

    def split(self, parts: int) -> PrivacyLoss:
        """One of ``parts`` equal shares: ``parts`` releases at this share compose back to this loss."""
        if not isinstance(parts, int) or parts < 1:
            raise ValueError(f"parts must be a positive integer, got {parts!r}")
        return PrivacyLoss(self.measure, self.relation, self.epsilon / parts, self.delta / parts, self.rho / parts)

    # -- conversions ------------------------------------------------------------------------------------

    def to_zcdp(self) -> PrivacyLoss:
        """As rho-zCDP: pure epsilon gives epsilon^2 / 2 (exact); (epsilon, delta) gives the largest rho whose
        conversion stays within it (rounded down): rho = epsilon^2 / (sqrt(L + epsilon) + sqrt(L))^2, L = ln(1/delta),
        the root of rho + 2 sqrt(rho L) = epsilon written so that it does not cancel when epsilon << L."""
        if self.measure is Measure.ZCDP:
            return self
        if self.measure is Measure.PURE:
            return PrivacyLoss.zcdp(self.epsilon**2 / 2, self.relation)
        with localcontext() as ctx:
            ctx.prec = DECIMAL_DIGITS
            lg = -decimal_of(self.delta).ln()
            e = decimal_of(self.epsilon)
            rho = e * e / ((lg + e).sqrt() + lg.sqrt()) ** 2
            return PrivacyLoss.zcdp(_fraction(rho, up=False), self.relation)

    def to_approx(self, delta: object = 0) -> PrivacyLoss:
        """As (epsilon, delta)-DP. Pure stays pure (delta ignored); zCDP needs 0 < ``delta`` < 1 and gives
        epsilon = rho + 2 sqrt(rho ln(1/delta)), rounded up."""
        if self.measure is not Measure.ZCDP:
            return self
        d = _amount(delta, "delta")
        if not 0 < d < 1:
            raise ValueError(f"delta must be in (0, 1) to convert zCDP, got {delta!r}")
        with localcontext() as ctx:
            ctx.prec = DECIMAL_DIGITS
            r = decimal_of(self.rho)
            eps = r + 2 * (r * -decimal_of(d).ln()).sqrt()
            return PrivacyLoss.approx(_fraction(eps, up=True), d, self.relation)

    def epsilon_delta(self, delta: object = 0) -> tuple[float, float]:
        """(epsilon, delta) as floats for reports, epsilon rounded up (6 decimals); zCDP converted at ``delta``."""
        loss = self.to_approx(delta)
        return round_up(loss.epsilon), float(loss.delta)

    # -- text -------------------------------------------------------------------------------------------

    def amounts(self) -> str:
        """The amounts alone, e.g. ``epsilon=1``, ``rho=0.02`` or ``epsilon=1 delta=1e-06``."""
        if self.measure is Measure.ZCDP:
            return f"rho={_g(self.rho)}"
        if self.measure is Measure.PURE:
            return f"epsilon={_g(self.epsilon)}"
        return f"epsilon={_g(self.epsilon)} delta={_g(self.delta)}"

    def __str__(self) -> str:
        kind = {Measure.PURE: "pure DP", Measure.ZCDP: "zCDP", Measure.APPROX: "approximate DP"}[self.measure]
        return f"{self.amounts()} ({kind}, {self.relation.describe})"


def _g(x: Fraction) -> str:
    """An amount for people, as %g (beyond the float range, 3 significant digits of the exact value)."""
    return magnitude(x) if x > Fraction(10) ** 300 else f"{float(x):g}"
