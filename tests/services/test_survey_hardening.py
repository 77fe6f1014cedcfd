"""Survey hardening: honest intervals for estimates the noise pushed out of range, private files."""

from __future__ import annotations

import math

import numpy as np

from mpcdp import ring
from mpcdp.survey import noise
from mpcdp.survey.definition import parse_survey
from mpcdp.survey.release import estimate
from services.commands.survey import format_results, results_document
from tests.support.survey_text import survey_text

TEXT = survey_text(
    """
[[question]]
id = "rare"
kind = "yesno"
central = { mechanism = "discrete_laplace", epsilon = 1.0 }
[[question]]
id = "income"
kind = "numeric"
bounds = [0, 100]
step = 1
central = { mechanism = "discrete_laplace", epsilon = 1.0 }
""",
    survey_id="s",
    head="min_respondents = 10",
)
SURVEY = parse_survey(TEXT)
N = 1000


def released(rare: int, income_steps: int):
    total = ring.as_ring(np.array([rare, income_steps], dtype=np.int64))
    return {r.question: r for r in estimate(SURVEY, total, N)}


def test_a_share_pushed_below_zero_gets_an_honest_interval_and_a_flag():
    r = released(-3, 50 * N)["rare"]  # nobody said yes; the central noise drew -3
    assert r.estimate.value[0] < 0
    # the sampling variance is at most 1/4 / n; the old clipped plug-in gave 0 and a +-0.003 interval
    assert r.estimate.variance[0] >= 0.25 / N
    lo, hi = r.estimate.ci(0.95)
    assert hi[0] - lo[0] >= 2 * 1.95 * math.sqrt(0.25 / N)
    d = r.as_dict()
    assert d["estimates"][0]["outside_range"] is True and d["range"] == [0.0, 1.0]


def test_a_share_inside_the_range_keeps_its_plug_in_variance_and_no_flag():
    r = released(100, 50 * N)["rare"]
    lam, sigma2 = 0.1, noise.variance(SURVEY, SURVEY.question("rare"))
    assert math.isclose(r.estimate.variance[0], lam * (1 - lam) / N + sigma2 / N**2)
    assert r.as_dict()["estimates"][0]["outside_range"] is False


def test_a_numeric_mean_beyond_its_bounds_is_flagged_in_the_report():
    results = released(100, 101 * N)  # a mean of 101 on [0, 100]
    assert results["income"].as_dict()["estimates"][0]["outside_range"] is True
    doc = results_document(SURVEY, list(results.values()), None, 0.95)
    text = format_results(doc)
    assert "(!) outside [0, 100]" in text and "outside [0, 1]" not in text


def test_respondent_batches_stay_under_the_aggregators_message_limit():
    import asyncio

    from mpcdp.survey.respondent import BATCH_BYTES, PreparedSubmission, SurveyClient
    from services.survey.limits import MAX_MESSAGE

    sizes = []

    class Recorder:
        async def send(self, aggregator, survey, batches, on_ack):
            for i, b in enumerate(batches):
                sizes.append(sum(len(sid) + len(share) for sid, share in b))
                on_ack(i, ["accepted"] * len(b))

    share = bytes(64 << 10)  # 64 KiB shares: 1000 of them would be a 64 MiB batch
    subs = [PreparedSubmission(SURVEY.id, i.to_bytes(16, "big"), {"a": share, "b": share}) for i in range(300)]
    asyncio.run(SurveyClient(SURVEY, Recorder()).deliver(subs, batch_size=1000))
    assert sum(sizes) == 2 * 300 * (16 + len(share))
    assert max(sizes) <= BATCH_BYTES < MAX_MESSAGE


def test_aggregator_store_and_its_wal_are_owner_only(tmp_path):
    import os
    import stat

    from services.survey.store import SqliteStore

    old = os.umask(0o022)  # the usual umask, under which the store used to be 0644
    try:
        store = SqliteStore(str(tmp_path / "agg.db"))
        store.register(SURVEY.id, SURVEY.digest, SURVEY.width)
        store.put(SURVEY.id, [(b"i" * 16, bytes(8 * SURVEY.width))])
        files = sorted(p.name for p in tmp_path.iterdir())
        assert files == ["agg.db", "agg.db-shm", "agg.db-wal"]
        assert {stat.S_IMODE((tmp_path / f).stat().st_mode) for f in files} == {0o600}
        store.shutdown()
    finally:
        os.umask(old)


def test_an_earlier_world_readable_store_is_tightened(tmp_path):
    import os
    import stat

    from services.survey.store import SqliteStore

    path = tmp_path / "agg.db"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    SqliteStore(str(path)).shutdown()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_outbox_holding_a_respondents_shares_is_owner_only(tmp_path):
    import json
    import os
    import stat

    from services.cli import main

    (tmp_path / "s.toml").write_text(TEXT)  # its aggregators (ports 1 and 2) are not running
    answers = tmp_path / "a.json"
    answers.write_text(json.dumps({"rare": True, "income": 50}))
    old = os.umask(0o022)
    try:
        code = main(
            [
                "survey",
                "submit",
                "--survey",
                str(tmp_path / "s.toml"),
                "--answers",
                str(answers),
                "--insecure",
                "--attempts",
                "1",
                "--timeout",
                "0.5",
            ]
        )
    finally:
        os.umask(old)
    assert code != 0
    outbox = tmp_path / "a.json.pending.json"
    assert outbox.exists() and stat.S_IMODE(outbox.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
