"""The pure survey pipeline: local mechanisms, client preparation, intersection, noise, debiasing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mpcdp import ring
from mpcdp.dp.loss import Relation
from mpcdp.prg import Prg
from mpcdp.survey import noise
from mpcdp.survey.definition import parse_survey
from mpcdp.survey.release import BelowMinimum, estimate, id_set_digest, intersect
from mpcdp.survey.respondent import PreparedSubmission, SurveyClient
from mpcdp.survey.sheet import AnswerError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "election_poll.toml"
# the example poll as unverified ring shares: this file tests that path (Prio3 reports: test_survey_proved)
EXAMPLE_TEXT = EXAMPLE.read_text().replace('proofs = "prio3"', "")
SURVEY = parse_survey(EXAMPLE_TEXT)


def truth_answers(n: int, seed: int) -> list[dict]:
    """Respondents with a known distribution (drawn from an explicit Prg)."""
    rng = Prg.from_int(seed, "truth")
    u = rng.uint64(7 * n).reshape(n, 7) / 2.0**64
    vote_cdf = np.cumsum([0.10, 0.30, 0.15, 0.35, 0.10])
    out = []
    for row in u:
        out.append(
            {
                "will_vote": bool(row[0] < 0.7),
                "vote": SURVEY.question("vote").options[int(np.searchsorted(vote_cdf, row[1], side="right"))],
                "issues": [
                    o
                    for o, t, x in zip(("economy", "health", "climate", "housing"), (0.6, 0.5, 0.3, 0.2), row[2:6])
                    if x < t
                ],
                "salary": float(20_000 + 60_000 * row[6]),
            }
        )
    return out


OTHER = parse_survey(
    EXAMPLE_TEXT.replace('mechanism = "two_coin"', 'mechanism = "rr", epsilon = 1.5')
    .replace('mechanism = "krr"', 'mechanism = "unary"')
    .replace('local = { mechanism = "rr", epsilon = 4.0 }', "")
)


@pytest.mark.parametrize("survey", [SURVEY, OTHER], ids=["example", "other-mechanisms"])
@pytest.mark.parametrize("qid", ["will_vote", "vote", "issues"])
def test_randomize_reports_at_the_stated_rates(survey, qid):
    q = survey.question(qid)
    rng = Prg.from_int(11)
    answer = {"will_vote": True, "vote": "Labour", "issues": ["health"]}[qid]
    reports = q.randomize([answer] * 20_000, rng)
    p, qq = q.local.rates(q)
    truth = {"will_vote": [1], "vote": [0, 1, 0, 0, 0], "issues": [0, 1, 0, 0]}[qid]
    expected = np.where(np.array(truth) == 1, p, qq)
    se = np.sqrt(expected * (1 - expected) / len(reports))
    assert np.all(np.abs(reports.mean(axis=0) - expected) <= 4.5 * se)


def test_numeric_reports_are_unbiased_and_on_the_grid():
    q = SURVEY.question("salary")
    rng = Prg.from_int(12)
    reports = q.randomize([51_234.5] * 20_000, rng)[:, 0]
    mean = reports.mean() * q.step
    se = np.sqrt(q.local.report_variance(q) / len(reports))
    assert abs(mean - 51_234.5) < 4.5 * se
    lo, hi = q.unit_range
    assert reports.min() >= lo and reports.max() <= hi


def test_unnoised_numeric_answers_round_without_bias_on_both_sides_of_zero():
    q = parse_survey(
        EXAMPLE_TEXT.replace("bounds = [0, 200000]", "bounds = [-1000, 1000]").replace(
            'local = { mechanism = "laplace", epsilon = 1.0 }', ""
        )
    ).question("salary")
    rng = Prg.from_int(13)
    assert q.randomize([-1e-30, 0.0, 1e-30], rng)[:, 0].tolist() == [0, 0, 0]  # crashed before
    x = -0.25 * q.step
    reports = q.randomize([x] * 20_000, rng)[:, 0]
    assert set(reports.tolist()) == {-1, 0}
    assert abs(reports.mean() * q.step - x) < 4.5 * q.step * np.sqrt(0.25 * 0.75 / len(reports))


def test_bad_answers_are_refused_naming_the_question():
    client = SurveyClient(SURVEY, rng=Prg.from_int(1))
    good = truth_answers(1, 1)[0]
    for change, qid in [
        ({"vote": "Pirates"}, "vote"),
        ({"salary": float("nan")}, "salary"),
        ({"will_vote": "yes"}, "will_vote"),
        ({"issues": ["health", "health"]}, "issues"),
        ({"age": 40}, "age"),
    ]:
        with pytest.raises(AnswerError) as err:
            client.prepare({**good, **change})
        assert err.value.question == qid
    with pytest.raises(AnswerError, match="missing"):
        client.prepare({k: v for k, v in good.items() if k != "salary"})


def test_prepared_submission_round_trips_through_json():
    prepared = SurveyClient(SURVEY, rng=Prg.from_int(2)).prepare(truth_answers(1, 2)[0])
    assert PreparedSubmission.from_json(prepared.to_json()) == prepared
    assert set(prepared.shares) == set(SURVEY.aggregator_names)
    assert all(len(s) == 8 * SURVEY.width for s in prepared.shares.values())


def close_in_memory(survey, submissions, seed: int, drop_at: dict[str, int] | None = None):
    """Aggregators' partial sums over the intersection plus their noise pieces, then the estimates."""
    drop_at = drop_at or {}
    held = {
        a: [s.submission_id for i, s in enumerate(submissions) if drop_at.get(a) != i] for a in survey.aggregator_names
    }
    inter = intersect(held)
    partials = []
    for a in survey.aggregator_names:
        counted = set(held[a]) - set(inter.exclude[a])
        kept = [s for s in submissions if s.submission_id in counted]
        assert id_set_digest(s.submission_id for s in kept) == inter.digest
        share_sum = ring.total(np.frombuffer(s.shares[a], dtype="<u8") for s in kept)
        partials.append(ring.add(share_sum, noise.noise_piece(survey, Prg.from_int(seed, f"noise/{a}"))))
    return estimate(survey, ring.total(partials), inter.count), inter


def test_end_to_end_estimates_cover_the_truth_and_half_deliveries_do_not_count():
    n = 20_000
    answers = truth_answers(n, 3)
    client = SurveyClient(SURVEY, rng=Prg.from_int(4))
    submissions = client.prepare_many(answers)
    results, inter = close_in_memory(SURVEY, submissions, seed=5, drop_at={"pollster-b": 17})
    assert inter.count == n - 1 and inter.exclude["pollster-a"] == [submissions[17].submission_id]
    counted = answers[:17] + answers[18:]
    truth = {
        "will_vote": [np.mean([a["will_vote"] for a in counted])],
        "vote": [np.mean([a["vote"] == o for a in counted]) for o in SURVEY.question("vote").options],
        "issues": [np.mean([o in a["issues"] for a in counted]) for o in SURVEY.question("issues").options],
        "salary": [np.mean([a["salary"] for a in counted])],
    }
    for r in results:
        z = (r.estimate.value - truth[r.question]) / r.estimate.std_error
        assert np.all(np.abs(z) < 4), (r.question, z)
        assert r.respondents == n - 1
    by_id = {r.question: r for r in results}
    assert by_id["will_vote"].local_epsilon == pytest.approx(np.log(3))
    assert by_id["vote"].central_epsilon <= 0.5 and by_id["salary"].central_delta == 0.0


def test_release_is_reproducible_at_fixed_seeds_and_refused_below_minimum():
    client = SurveyClient(SURVEY, rng=Prg.from_int(6))
    subs = [client.prepare(a) for a in truth_answers(3, 7)]
    with pytest.raises(BelowMinimum, match="below its minimum of 1000"):
        close_in_memory(SURVEY, subs, seed=8)


def test_frequency_estimator_interval_coverage():
    """95% intervals of the RR yes/no estimator cover the truth in about 95% of 400 polls."""
    q = SURVEY.question("will_vote")
    p, qq = q.local.rates(q)
    rng = Prg.from_int(9)
    n, truth, covered = 500, 0.3, 0
    small = parse_survey(EXAMPLE_TEXT.replace("min_respondents = 1000", "min_respondents = 10"))
    offset = small.offsets()[0][1]
    for _ in range(400):
        yes = (rng.uint64(n) / 2.0**64) < truth
        u = rng.uint64(n) / 2.0**64
        reported = np.where(yes, u < p, u < qq).sum()
        total = np.zeros(small.width, dtype=np.int64)
        total[offset] = reported
        ((res, *_),) = [estimate(small, ring.as_ring(total), n)[:1]]
        low, high = res.estimate.ci(0.95)
        covered += low[0] <= truth <= high[0]
    assert 0.92 <= covered / 400 <= 0.98


def test_skellam_central_noise_reports_its_epsilon_delta():
    text = EXAMPLE_TEXT.replace(
        'central = { epsilon = 0.5 }\n\n[[question]]\nid = "vote"',
        'central = { mechanism = "skellam", epsilon = 0.5, delta = 1e-6 }\n\n[[question]]\nid = "vote"',
    )
    survey = parse_survey(text)
    q = survey.question("will_vote")
    assert q.central.mechanism == "skellam"
    loss = noise.guarantee(survey, q)
    assert loss is not None and loss.relation is Relation.RESPONDENT
    eps, delta = loss.epsilon_delta(1e-6)
    assert eps <= 0.5 + 1e-6 and delta == 1e-6
    pieces = np.array([ring.to_signed(noise.noise_piece(survey, Prg.from_int(i)))[0] for i in range(400)])
    per_piece = noise.variance(survey, q) / len(survey.aggregators)
    assert abs(pieces.var() / per_piece - 1) < 0.3  # 400 draws: the variance within about 4 sigma
