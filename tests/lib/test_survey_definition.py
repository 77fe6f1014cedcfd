"""Survey files: parsing, validation with line and field, digest."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mpcdp.survey.definition import SurveyError, parse_survey
from tests.support.survey_text import survey_text

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "election_poll.toml"

BASE = survey_text(
    """
[[question]]
id = "q1"
kind = "yesno"
local = { mechanism = "rr", epsilon = 1.0 }

[[question]]
id = "q2"
kind = "numeric"
bounds = [0, 100]
step = 0.3
""",
    "s1",
    head="min_respondents = 10",
)


def test_example_parses_with_expected_layout():
    s = parse_survey(EXAMPLE.read_text(), str(EXAMPLE))
    assert [q.id for q in s.questions] == ["will_vote", "vote", "issues", "salary"]
    assert s.width == 1 + 5 + 4 + 1
    assert s.questions[0].local.epsilon == pytest.approx(math.log(3))
    assert len(s.digest) == 32


def test_step_is_rounded_down_to_a_power_of_two():
    q = parse_survey(BASE).questions[1]
    assert q.step == 0.25 and q.grid_exponent == -2
    assert q.unit_range == (0, 400) and q.sensitivity == 400


def test_digest_ignores_addresses_but_not_meaning():
    a = parse_survey(BASE)
    assert parse_survey(BASE.replace("127.0.0.1:2", "10.0.0.9:7")).digest == a.digest
    assert parse_survey(BASE.replace("epsilon = 1.0", "epsilon = 1.5")).digest != a.digest


@pytest.mark.parametrize(
    "old, new, line, field, words",
    [
        ("epsilon = 1.0 }", "epsilon = -1.0 }", 15, "question[0].local.epsilon", "between 1e-09 and 1e+06"),
        ("epsilon = 1.0 }", "epsilon = 1e-300 }", 15, "question[0].local.epsilon", "between"),
        ('mechanism = "rr"', 'mechanism = "krr"', 15, "question[0].local.mechanism", "does not apply"),
        ('kind = "numeric"', 'kind = "slider"', 19, "question[1].kind", "unknown kind"),
        ("bounds = [0, 100]", "bounds = [100, 0]", 20, "question[1].bounds", "lo < hi"),
        ("min_respondents = 10", "min_respondents = 0", 4, "survey.min_respondents", "at least 1"),
        ('address = "127.0.0.1:2"', 'address = "nowhere"', 10, "aggregator[1].address", "host:port"),
        ('id = "q2"', 'id = "q1"', 18, "question[1].id", "duplicate"),
        ("step = 0.3", "step = 0.3\ncolour = 1", 22, "question[1].colour", "unknown field"),
        ('id = "s1"', "id = 5", 3, "survey.id", "must be a string"),
    ],
)
def test_errors_point_to_line_and_field(old, new, line, field, words):
    with pytest.raises(SurveyError) as err:
        parse_survey(BASE.replace(old, new, 1), "poll.toml")
    assert err.value.line == line and err.value.field == field
    assert words in str(err.value) and f"poll.toml:{line}: {field}:" in str(err.value)


def test_syntax_errors_and_structural_errors():
    with pytest.raises(SurveyError, match="not valid TOML"):
        parse_survey(BASE + "[[question\n")
    with pytest.raises(SurveyError, match="between 2 and"):
        parse_survey(BASE.replace('[[aggregator]]\nname = "b"\naddress = "127.0.0.1:2"\n', ""))
    with pytest.raises(SurveyError, match="colluders"):
        parse_survey(BASE.replace("min_respondents = 10", "min_respondents = 10\ncolluders = 2"))
    with pytest.raises(SurveyError, match="two-coin mechanism has epsilon = ln 3"):
        parse_survey(BASE.replace('mechanism = "rr", epsilon = 1.0', 'mechanism = "two_coin", epsilon = 2.0'))
    with pytest.raises(SurveyError, match="skellam noise gives approximate DP"):
        parse_survey(BASE + 'central = { mechanism = "skellam", epsilon = 1.0 }\n')
    with pytest.raises(SurveyError, match="overflow risk"):
        parse_survey(
            BASE.replace("step = 0.3", "step = 1e-12").replace("min_respondents = 10", "max_respondents = 100000000000")
        )
