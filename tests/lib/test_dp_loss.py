"""PrivacyLoss: exact amounts, composition within one relation only, conversions in the safe direction."""

import math
from fractions import Fraction

import pytest

from mpcdp.dp.loss import Measure, PrivacyLoss, Relation, RelationMismatch


def test_amounts_are_exact_as_written():
    loss = PrivacyLoss.pure(0.1)
    assert loss.epsilon == Fraction(1, 10) and loss.measure is Measure.PURE and loss.relation is Relation.RECORD
    assert sum([PrivacyLoss.pure(0.1)] * 9, PrivacyLoss.pure("0.1")).epsilon == 1
    assert PrivacyLoss.of(1, 0) == PrivacyLoss.pure(1) and PrivacyLoss.of(1, "1e-6").measure is Measure.APPROX


def test_composition_refuses_different_relations():
    with pytest.raises(RelationMismatch, match="per added or removed record with one per replaced respondent"):
        PrivacyLoss.pure(1) + PrivacyLoss.pure(1, Relation.RESPONDENT)
    with pytest.raises(ValueError, match="needs a delta"):
        PrivacyLoss.zcdp(0.1) + PrivacyLoss.approx(1, 1e-6)
    mixed = PrivacyLoss.pure(1) + PrivacyLoss.zcdp(Fraction(1, 4))  # pure epsilon is epsilon^2 / 2 zCDP
    assert mixed == PrivacyLoss.zcdp(Fraction(3, 4))
    assert PrivacyLoss.approx(1, 1e-6) + PrivacyLoss.pure(1) == PrivacyLoss.approx(2, 1e-6)


def test_split_shares_compose_back_exactly():
    loss = PrivacyLoss.approx(1, 1e-6)
    share = loss.split(3)
    assert share + share + share == loss


@pytest.mark.parametrize("epsilon, delta", [(1.0, 1e-6), (0.01, 1e-9), (5.0, 1e-3), (1e-6, 1e-10)])
def test_rho_within_epsilon_delta_converts_back_inside_it(epsilon, delta):
    rho = PrivacyLoss.approx(epsilon, delta).to_zcdp()
    assert rho.measure is Measure.ZCDP
    back = rho.to_approx(delta)
    assert back.epsilon <= Fraction(repr(epsilon)) * (1 + Fraction(1, 10**20))  # within the target, up to rounding
    r = float(rho.rho)
    assert r + 2 * math.sqrt(r * math.log(1 / delta)) == pytest.approx(epsilon, rel=1e-9)


def test_zcdp_to_approx_rounds_up_and_needs_a_delta():
    eps, delta = PrivacyLoss.zcdp(0.1).epsilon_delta(1e-6)
    assert delta == 1e-6 and eps >= 0.1 + 2 * math.sqrt(0.1 * math.log(1e6))
    with pytest.raises(ValueError, match="delta must be in"):
        PrivacyLoss.zcdp(0.1).to_approx(0)
    assert PrivacyLoss.pure(2).to_approx(1e-6) == PrivacyLoss.pure(2)


def test_text_names_the_relation():
    assert str(PrivacyLoss.pure(1)) == "epsilon=1 (pure DP, per added or removed record)"
    assert str(PrivacyLoss.zcdp(0.02, Relation.RESPONDENT)) == "rho=0.02 (zCDP, per replaced respondent)"
    assert "per unit of embedding distance" in str(PrivacyLoss.pure(3, Relation.METRIC))
    assert str(PrivacyLoss.approx(1, 1e-6, Relation.LOCAL)).startswith("epsilon=1 delta=1e-06 (approximate DP")


@pytest.mark.parametrize(
    "build",
    [
        lambda: PrivacyLoss.pure(-1),
        lambda: PrivacyLoss.pure(float("nan")),
        lambda: PrivacyLoss.approx(1, 1),
        lambda: PrivacyLoss.approx(1, 0),
        lambda: PrivacyLoss(Measure.PURE, Relation.RECORD, epsilon=Fraction(1), delta=Fraction(1, 2)),
        lambda: PrivacyLoss.pure(1).split(0),
    ],
)
def test_bad_losses_are_refused(build):
    with pytest.raises(ValueError):
        build()
