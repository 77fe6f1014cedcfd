"""The survey page's JavaScript against mpcdp's Python: same local randomizers, reports that verify.

The page's own modules (web/src, the code the browser bundle runs) are driven in Node by
web/test/node_page.mjs with a seeded random source; the survey description they read is
services.survey.page's survey.json, so the exact parameters are the registry's.

* For every local mechanism (none, two_coin, rr on yes/no and multi-select, krr, unary, laplace) the
  JavaScript and Python reports of one answer agree in distribution (chi-square test of homogeneity at
  fixed seeds), and the same test tells apart two different answers (it has power).
* A sheet randomized, proved and split in JavaScript is prepared by mpcdp's aggregators (Prio3 prep_init,
  the leader's decision, the output shares): every proof verifies and the totals are the page's reports;
  a report shifted to another submission id is rejected (the nonce binding).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from mpcdp.prg import Prg
from mpcdp.survey.definition import parse_survey
from mpcdp.survey.proved import ACCEPTED, add_aggregates, decide, finish, prep_init, totals_vector
from services.survey.page import survey_json
from tests.support import ROOT

NODE_PAGE = ROOT / "web" / "test" / "node_page.mjs"
P_MIN = 1e-3
N = 6000

SURVEY = """
[survey]
id = "web-randomizers"
min_respondents = 1
proofs = "prio3"

[[aggregator]]
name = "a"
address = "127.0.0.1:7001"

[[aggregator]]
name = "b"
address = "127.0.0.1:7002"

[[question]]
id = "yn_none"
kind = "yesno"

[[question]]
id = "yn_two_coin"
kind = "yesno"
local = { mechanism = "two_coin" }

[[question]]
id = "yn_rr"
kind = "yesno"
local = { mechanism = "rr", epsilon = 0.7 }

[[question]]
id = "choice_none"
kind = "choice"
options = ["red", "green", "blue"]

[[question]]
id = "choice_krr"
kind = "choice"
options = ["a", "b", "c", "d"]
local = { mechanism = "krr", epsilon = 1.5 }

[[question]]
id = "choice_unary"
kind = "choice"
options = ["a", "b", "c", "d"]
local = { mechanism = "unary", epsilon = 1.0 }

[[question]]
id = "multi_rr"
kind = "multiselect"
options = ["x", "y", "z"]
local = { mechanism = "rr", epsilon = 2.0 }

[[question]]
id = "numeric_none"
kind = "numeric"
bounds = [0, 10]
step = 0.25

[[question]]
id = "numeric_laplace"
kind = "numeric"
bounds = [0, 10]
step = 1
local = { mechanism = "laplace", epsilon = 2.0 }
"""

ANSWERS = {
    "yn_none": True,
    "yn_two_coin": True,
    "yn_rr": False,
    "choice_none": "green",
    "choice_krr": "b",
    "choice_unary": "c",
    "multi_rr": ["x", "z"],
    "numeric_none": 3.3,
    "numeric_laplace": 7.4,
}
OTHER = {
    "yn_none": False,
    "yn_two_coin": False,
    "yn_rr": True,
    "choice_none": "red",
    "choice_krr": "d",
    "choice_unary": "a",
    "multi_rr": ["y"],
    "numeric_none": 3.9,
    "numeric_laplace": 2.1,
}
ENDPOINTS = {
    "survey": "web-randomizers",
    "issuer": "https://127.0.0.1:1",
    "aggregators": {"a": "https://127.0.0.1:2", "b": "https://127.0.0.1:3"},
}


def run_node(request: dict) -> dict:
    if shutil.which("node") is None or not (ROOT / "web" / "node_modules" / "@divviup").is_dir():
        pytest.fail("the survey page's JavaScript is not installed: run `make web` (needs Node >= 20)")
    done = subprocess.run(
        ["node", str(NODE_PAGE)], input=json.dumps(request), capture_output=True, text=True, timeout=300
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def survey():
    return parse_survey(SURVEY)


@pytest.fixture(scope="module")
def page(survey):
    return survey_json(survey, ENDPOINTS, {"public_key": "", "token_key_id": ""})  # no token in these tests


@pytest.fixture(scope="module")
def js_draws(page):
    return run_node({"op": "randomize", "survey": page, "answers": ANSWERS, "n": N, "seed": 11})


def python_draws(survey, answers, seed):
    rng = Prg.from_int(seed, "web-randomizers")
    return {q.id: q.randomize([answers[q.id]] * N, rng) for q in survey.questions}


@pytest.fixture(scope="module")
def py_draws(survey):
    return python_draws(survey, ANSWERS, 12)


@pytest.fixture(scope="module")
def py_other(survey):
    return python_draws(survey, OTHER, 13)


def categories(rows) -> list:
    """Each report as a hashable category (a numeric report binned into 4-step bins)."""
    out = []
    for row in rows:
        values = [int(v) for v in row]
        out.append(values[0] // 4 if len(values) == 1 and max(abs(v) for v in values) > 1 else tuple(values))
    return out


def homogeneity(a, b) -> float:
    """p-value of the chi-square test that two samples of categories share one distribution.

    Categories seen fewer than 10 times in the two samples together are pooled."""
    ca, cb = Counter(categories(a)), Counter(categories(b))
    keys = sorted(set(ca) | set(cb), key=str)
    small = [k for k in keys if ca[k] + cb[k] < 10]
    big = [k for k in keys if k not in small]
    table = [[ca[k] for k in big], [cb[k] for k in big]]
    if small:
        table[0].append(sum(ca[k] for k in small))
        table[1].append(sum(cb[k] for k in small))
    if len(table[0]) < 2:
        return 1.0 if table[0] and table[1] else 0.0  # a single category: equal iff both samples are in it
    return float(chi2_contingency(np.array(table)).pvalue)


@pytest.mark.parametrize("qid", list(ANSWERS))
def test_javascript_and_python_randomizers_agree_in_distribution(qid, js_draws, py_draws):
    assert len(js_draws[qid]) == N
    assert homogeneity(js_draws[qid], py_draws[qid]) > P_MIN


@pytest.mark.parametrize("qid", [q for q in ANSWERS if q != "yn_none" and q != "choice_none"])
def test_the_comparison_tells_two_answers_apart(qid, js_draws, py_other):
    """The same test rejects the JavaScript draws of one answer against the Python draws of another."""
    assert homogeneity(js_draws[qid], py_other[qid]) < 1e-6


def test_no_local_mechanism_reports_the_answer_itself(js_draws):
    assert {tuple(r) for r in js_draws["choice_none"]} == {(0, 1, 0)}
    assert {int(r[0]) for r in js_draws["numeric_none"]} == {13, 14}  # 3.3 / 0.25 = 13.2, rounded unbiased


def test_laplace_reports_stay_in_the_proved_range(js_draws, survey):
    lo, hi = survey.question("numeric_laplace").unit_range
    steps = [int(r[0]) for r in js_draws["numeric_laplace"]]
    assert lo <= min(steps) and max(steps) <= hi
    assert abs(np.mean(steps) - 7.4) < 0.5  # unbiased: noise scale 5.5 steps, 6000 draws


def _prepare(survey, sids, reports):
    """mpcdp's aggregators' verification of reports[j][r] (aggregator j, respondent r)."""
    key = bytes(range(16))
    inits = [prep_init(survey, j, key, sids, reports[j]) for j in range(len(survey.aggregators))]
    verdicts, messages = decide(survey, [init.shares for init in inits])
    return verdicts, inits, messages


def test_reports_made_by_the_page_verify_at_mpcdp_aggregators(survey, page):
    sids, blocks, reports = [], [], [[], []]
    for r in range(3):
        sid = bytes([r]) * 16
        out = run_node({"op": "shard", "survey": page, "answers": ANSWERS, "sid": sid.hex(), "seed": 100 + r})
        sids.append(sid)
        blocks.append(out["blocks"])
        for j, report in enumerate(out["reports"]):
            reports[j].append(bytes.fromhex(report))
    verdicts, inits, messages = _prepare(survey, sids, reports)
    assert verdicts == [ACCEPTED] * 3
    totals = add_aggregates(survey, [finish(survey, init, verdicts, messages) for init in inits])
    expected = np.sum([np.concatenate([np.array(b, dtype=np.int64) for b in sheet]) for sheet in blocks], axis=0)
    assert totals_vector(survey, totals, 3).tolist() == expected.tolist()

    # the same reports under other submission ids: prepared under other nonces, every one rejected
    moved = [sids[1], sids[2], sids[0]]
    verdicts, _, _ = _prepare(survey, moved, reports)
    assert ACCEPTED not in verdicts


def _key_doc(survey_id: str = "web-randomizers") -> dict:
    from mpcdp.tokens.privacy_pass import IssuerPublicKey, generate_issuer_key
    from services.survey.admission import public_key_document

    return public_key_document(survey_id, IssuerPublicKey(generate_issuer_key().public_key()))


def test_the_page_uses_only_the_issuer_key_it_was_published_with():
    """Key consistency: a key other than the pinned one (or a key id that is not its key's) is refused."""
    pinned, other = _key_doc(), _key_doc()
    same = run_node({"op": "issuer", "presented": pinned, "pinned": pinned})
    assert same == {"ok": True, "key_id": pinned["token_key_id"]}
    assert run_node({"op": "issuer", "presented": other, "pinned": pinned}) == {
        "ok": False,
        "error": "issuer_key_mismatch",
    }
    forged_id = {**pinned, "token_key_id": other["token_key_id"]}
    refused = run_node({"op": "issuer", "presented": forged_id, "pinned": forged_id})
    assert refused["ok"] is False and "key id" in refused["error"]
