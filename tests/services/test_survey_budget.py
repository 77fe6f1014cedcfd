"""Survey releases charge each aggregator's ledger once, per replaced respondent (the issue 10 decision)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from mpcdp.dp.ledger import BudgetExceeded, PrivacyLedger
from mpcdp.dp.loss import Measure, PrivacyLoss, Relation
from mpcdp.survey.definition import parse_survey
from mpcdp.survey.noise import release_loss
from services.survey.budget import SurveyLedger, release_label
from tests.support.survey_text import survey_text

_POLL = survey_text(
    """
[[question]]
id = "q"
kind = "yesno"
central = { mechanism = "discrete_laplace", epsilon = 0.3 }
[[question]]
id = "r"
kind = "choice"
options = ["x", "y"]
central = { mechanism = "skellam", epsilon = 0.5, delta = 1e-6 }
[[question]]
id = "s"
kind = "yesno"
"""
)
POLL = parse_survey(_POLL)


def test_one_release_costs_every_question_composed_per_replaced_respondent():
    loss = release_loss(POLL)
    assert loss is not None and loss.relation is Relation.RESPONDENT and loss.measure is Measure.APPROX
    assert (loss.epsilon, loss.delta) == (Fraction(8, 10), Fraction(1, 10**6))  # 0.3 + 0.5, exactly
    no_noise = parse_survey(
        _POLL.replace('central = { mechanism = "discrete_laplace", epsilon = 0.3 }\n', "").replace(
            'central = { mechanism = "skellam", epsilon = 0.5, delta = 1e-6 }\n', ""
        )
    )
    assert release_loss(no_noise) is None
    assert SurveyLedger("unused.db").charge_release(no_noise, b"d" * 32) is None


def test_a_release_is_charged_once_and_a_replay_charges_nothing(tmp_path):
    ledgers = SurveyLedger(tmp_path / "agg-a.ledger.db")
    first = ledgers.charge_release(POLL, b"d" * 32)
    assert first is not None and first.label == release_label(b"d" * 32)
    again = ledgers.charge_release(POLL, b"d" * 32)  # the coordinator asks again after a crash
    assert again is not None and again.id == first.id
    ledger = PrivacyLedger(tmp_path / "agg-a.ledger.db", "poll", release_loss(POLL))
    assert len(ledger.history()) == 1 and ledger.history()[0].loss.relation is Relation.RESPONDENT
    with pytest.raises(BudgetExceeded):  # a release over another set: never charged twice
        ledgers.charge_release(POLL, b"e" * 32)
    assert len(ledger.history()) == 1


def test_a_survey_ledger_refuses_a_loss_of_another_relation(tmp_path):
    ledgers = SurveyLedger(tmp_path / "agg-a.ledger.db")
    ledgers.charge_release(POLL, b"d" * 32)
    ledger = ledgers.ledger(POLL)
    assert ledger is not None
    with pytest.raises(ValueError, match="per replaced respondent"):
        ledger.charge(PrivacyLoss.pure(0.1, Relation.RECORD))
