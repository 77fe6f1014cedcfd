"""Conversions and reports round towards more privacy, checked against high-precision oracles."""

from __future__ import annotations

import ast
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import pytest

from mpcdp.dp import mechanisms
from mpcdp.dp.ledger import PrivacyLedger
from mpcdp.dp.loss import PrivacyLoss, Relation
from mpcdp.protocol import QuerySpec, noise
from mpcdp.survey import noise as survey_noise
from mpcdp.survey.definition import parse_survey


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


def as_decimal(x: Fraction) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 120
        return Decimal(x.numerator) / Decimal(x.denominator)


def rho_within(eps, delta) -> Fraction:
    return PrivacyLoss.approx(eps, delta).to_zcdp().rho


def _conversions(root: Path) -> set[str]:
    """Every function under ``root`` doing a conversion's arithmetic: a logarithm and a square root of a loss's
    delta or rho (rho = (sqrt(L + epsilon) - sqrt(L))^2 and epsilon = rho + 2 sqrt(rho L), L = ln(1/delta))."""
    found = set()
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for scope in [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef))]:
            for fn in scope.body:
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                calls, words = set(), set()
                for n in ast.walk(fn):
                    if isinstance(n, ast.Call):
                        calls.add(n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", ""))
                    words.add(getattr(n, "attr", None) or getattr(n, "id", None) or getattr(n, "arg", None))
                if calls & {"log", "ln", "log1p"} and "sqrt" in calls and words & {"delta", "rho"}:
                    found.add(f"{getattr(scope, 'name', path.stem)}.{fn.name}")
    return found


def test_one_zcdp_rho_for_queries_and_surveys(monkeypatch):
    # one conversion each way in the library (the deleted dp/guarantee.zcdp_rho was a second one)
    assert _conversions(Path(mechanisms.__file__).parents[1]) == {"PrivacyLoss.to_zcdp", "PrivacyLoss.to_approx"}
    converted = []
    to_zcdp = PrivacyLoss.to_zcdp

    def spy(loss: PrivacyLoss) -> PrivacyLoss:
        converted.append(loss)
        return to_zcdp(loss)

    monkeypatch.setattr(PrivacyLoss, "to_zcdp", spy)
    spec = QuerySpec("sum", parties=("a", "b", "c"), bounds=(0, 1), epsilon=0.5, delta=1e-6, mechanism="skellam")
    noise.mechanisms(spec)
    assert converted and converted[0] == PrivacyLoss.approx(0.5, 1e-6)  # a query's Skellam noise: to_zcdp
    converted.clear()
    survey = parse_survey(
        (Path(mechanisms.__file__).parents[2] / "examples" / "election_poll.toml")
        .read_text()
        .replace("central = { epsilon = 0.5 }", 'central = { mechanism = "skellam", epsilon = 0.4375, delta = 1e-7 }')
    )
    q = next(q for q in survey.questions if q.central.mechanism == "skellam")
    survey_noise.mechanism(survey, q)
    assert converted and converted[0] == PrivacyLoss.approx(0.4375, 1e-7, Relation.RESPONDENT)  # and a survey's


EPSILONS = [10.0**-k for k in range(2, 13)] + [3e-9 * (1 + i / 7) for i in range(30)] + [0.5, 1.0, 8.0]
DELTAS = [1e-5, 1e-9, 1e-12, 1e-30, 1e-100]


def test_zcdp_rho_never_exceeds_the_exact_value_even_when_epsilon_is_much_below_ln_1_over_delta():
    worst = 0.0
    for delta in DELTAS:
        for eps in EPSILONS:
            rho = as_decimal(rho_within(eps, delta))
            exact = exact_rho(eps, delta)
            assert rho <= exact, (eps, delta)
            worst = max(worst, float((exact - rho) / exact))
    assert worst < 1e-38  # and only the 10^-40 safety margin below it


def test_zcdp_rho_accepts_exact_fractions():
    rho = rho_within(Fraction("0.1"), Fraction("1e-6"))
    assert as_decimal(rho) <= exact_rho(Fraction("0.1"), Fraction("1e-6"))
    with pytest.raises(ValueError):
        rho_within(1.0, 0.0)


def test_ledger_reports_round_the_exact_fraction_not_its_float(tmp_path):
    # 3/10 + 10^-30 rounds to the float 0.3 (below 3/10): rounding that float "up" reported 0.3, an under-report
    ledger = PrivacyLedger(tmp_path / "l.db", "d", 1)
    spent = Fraction(3, 10) + Fraction(1, 10**30)
    ledger.charge(spent)
    assert Fraction(ledger.spent().epsilon) >= spent
    assert Fraction(ledger.remaining().epsilon) <= 1 - spent
