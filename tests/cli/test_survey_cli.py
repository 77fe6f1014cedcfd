"""``mpcdp survey``: simulate, report, submit (with a resent outbox) and close, as a person runs them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mpcdp.prg import Prg
from mpcdp.survey.definition import parse_survey
from mpcdp.survey.respondent import SurveyClient
from mpcdp.survey.synthetic import synthetic_answers
from services.cli import main
from services.survey.simulation import LocalSurvey

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "election_poll.toml"


def test_simulate_then_report_prints_estimates_beside_the_truth_and_plots(tmp_path, capsys):
    out, png = tmp_path / "results.json", tmp_path / "results.png"
    assert (
        main(
            [
                "survey",
                "simulate",
                "--survey",
                str(EXAMPLE),
                "--respondents",
                "2000",
                "--seed",
                "3",
                "--forged",
                "3",
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "mutual TLS" in printed and re.search(r"Greens .* 95% CI \[.*\]\s+truth", printed)
    assert "respondents admitted by anonymous tokens: 2003 one-time invitations" in printed
    doc = json.loads(out.read_text())
    assert [q["question"] for q in doc["questions"]] == ["will_vote", "vote", "issues", "salary"]
    assert all(q["respondents"] == 2000 and "truth" in q["estimates"][0] for q in doc["questions"])
    # the example poll is verified: every respondent, forged ones too, came in with a token of their own, over
    # HTTPS; each aggregator spent exactly one token per report the close counted or rejected
    assert doc["verification"] == {"counted": 2000, "rejected": 3, "malformed": 0, "incomplete": 0}
    assert doc["admission"]["by"] == "token" and doc["admission"]["transport"] == "https"
    assert set(doc["admission"]["spent_tokens"].values()) == {2003}
    assert main(["survey", "report", "--results", str(out), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_survey_file_points_at_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace("epsilon = 2.0", 'epsilon = "two"'))
    assert main(["survey", "simulate", "--survey", str(bad), "--respondents", "10"]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:37: question[1].local.epsilon: must be a number" in err


def test_submit_resends_its_outbox_and_close_releases(tmp_path, capsys):
    survey = parse_survey(EXAMPLE.read_text().replace("min_respondents = 1000", "min_respondents = 2"))
    source = tmp_path / "poll.toml"
    source.write_text(EXAMPLE.read_text().replace("min_respondents = 1000", "min_respondents = 2"))
    (tmp_path / "run").mkdir()
    with LocalSurvey(survey, source, tmp_path / "run", insecure=True, noise_seed=1) as run:
        live = source.read_text()
        for original, actual in zip(survey.aggregators, run.survey.aggregators):
            live = live.replace(original.address, actual.address)
        live_path = tmp_path / "live.toml"
        live_path.write_text(live)
        sheets, _ = synthetic_answers(survey, 3, Prg.from_int(4))
        for i, sheet in enumerate(sheets):
            answers = tmp_path / f"a{i}.json"
            answers.write_text(json.dumps(sheet))
            assert main(["survey", "submit", "--survey", str(live_path), "--answers", str(answers), "--insecure"]) == 0
        # a respondent whose first attempt died after writing the outbox: the rerun resends it as is
        pending = tmp_path / "a0.json.pending.json"
        pending.write_text(SurveyClient(survey, rng=Prg.from_int(5)).prepare(sheets[0]).to_json())
        for _ in range(2):
            pending_copy = pending.read_text()
            assert (
                main(
                    [
                        "survey",
                        "submit",
                        "--survey",
                        str(live_path),
                        "--answers",
                        str(tmp_path / "a0.json"),
                        "--insecure",
                    ]
                )
                == 0
            )
            pending.write_text(pending_copy)
        assert "resending the pending submission" in capsys.readouterr().out
        out = tmp_path / "results.json"
        assert main(["survey", "close", "--survey", str(live_path), "--insecure", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert all(q["respondents"] == 4 for q in doc["questions"])
