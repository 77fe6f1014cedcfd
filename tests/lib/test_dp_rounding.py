"""Conversions and reports round towards more privacy, checked against high-precision oracles."""

from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction

import pytest

from mpcdp.dp import guarantee
from mpcdp.dp.ledger import PrivacyLedger
from mpcdp.protocol import noise
from mpcdp.survey import noise as survey_noise


def exact_rho(eps, delta) -> Decimal:
    """(sqrt(L + eps) - sqrt(L))^2 at 120 digits (cancellation is harmless at this precision), for the
    decimal values the floats print as (what the ledger charges)."""
    with localcontext() as ctx:
        ctx.prec = 120
        d, e = (
            Fraction(repr(delta)) if isinstance(delta, float) else delta,
            Fraction(repr(eps)) if isinstance(eps, float) else eps,
        )
        lg = -(Decimal(d.numerator) / Decimal(d.denominator)).ln()
        e = Decimal(e.numerator) / Decimal(e.denominator)
        return ((lg + e).sqrt() - lg.sqrt()) ** 2


def test_one_zcdp_rho_for_queries_and_surveys():
    assert noise.zcdp_rho is guarantee.zcdp_rho
    assert not hasattr(survey_noise, "zcdp_rho")  # surveys calibrate through mpcdp.dp.mechanisms, like queries
    assert not hasattr(survey_noise, "skellam_rho")


EPSILONS = [10.0**-k for k in range(2, 13)] + [3e-9 * (1 + i / 7) for i in range(30)] + [0.5, 1.0, 8.0]
DELTAS = [1e-5, 1e-9, 1e-12, 1e-30, 1e-100]


def test_zcdp_rho_never_exceeds_the_exact_value_even_when_epsilon_is_much_below_ln_1_over_delta():
    worst = 0.0
    for delta in DELTAS:
        for eps in EPSILONS:
            rho = guarantee.zcdp_rho(eps, delta)
            exact = exact_rho(eps, delta)
            assert Decimal(rho) <= exact, (eps, delta)
            worst = max(worst, float((exact - Decimal(rho)) / exact))
    assert worst < 1e-14  # and it is as large as a float can be, give or take an ulp


def test_zcdp_rho_accepts_exact_fractions():
    rho = guarantee.zcdp_rho(Fraction("0.1"), Fraction("1e-6"))
    assert Decimal(rho) <= exact_rho(Fraction("0.1"), Fraction("1e-6"))
    with pytest.raises(ValueError):
        guarantee.zcdp_rho(1.0, 0.0)


def test_ledger_reports_round_the_exact_fraction_not_its_float(tmp_path):
    # 3/10 + 10^-30 rounds to the float 0.3 (below 3/10): rounding that float "up" reported 0.3, an under-report
    ledger = PrivacyLedger(tmp_path / "l.db", "d", 1)
    spent = Fraction(3, 10) + Fraction(1, 10**30)
    ledger.charge(spent)
    assert Fraction(ledger.spent().epsilon) >= spent
    assert Fraction(ledger.remaining().epsilon) <= 1 - spent
