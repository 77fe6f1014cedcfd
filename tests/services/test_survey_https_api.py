"""The HTTPS API of surveys (services/survey/http.py) in process: redemption, intake, and every attack of issue 12
item 4 — a reused token, another survey's issuer, a forged or truncated token, an invitation used twice, an
oversized body, a flood from one address — each refused with its status, counted, and nothing stored."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from mpcdp.prg import Prg
from mpcdp.survey import proved
from mpcdp.survey.definition import parse_survey
from mpcdp.tokens import InvalidToken, Issuer, TokenReused, generate_issuer_key
from mpcdp.tokens.admission import SurveyAdmission
from services.survey.admission import IssuerDir, b64url, from_b64url
from services.survey.http import GroupCommit, HttpLimits, SurveyHttp
from services.survey.reports import ReportStore
from services.survey.store import PutStatus
from tests.support.survey_proved import TEXT, respondents

SURVEY = parse_survey(TEXT)
OTHER = parse_survey(TEXT.replace('id = "election-poll-2026"', 'id = "another-poll"'))
LEADER = SURVEY.aggregator_names[0]
ORIGIN = "https://poll.example.org"
BASE = "http://aggregator.test"


@pytest.fixture(scope="module")
def issuer_dir(tmp_path_factory):
    return IssuerDir(tmp_path_factory.mktemp("tokens"), SURVEY, create=True)


def token_store(tmp_path, issuer_dir) -> ReportStore:
    """The leader's report store for SURVEY, admitting reports by the issuer's tokens only."""
    store = ReportStore(str(tmp_path / "a.db"))
    store.register(SURVEY, LEADER)
    store.admit_by_token(issuer_dir.admission)
    return store


@pytest.fixture
def server(tmp_path, issuer_dir):
    store = token_store(tmp_path, issuer_dir)
    app = SurveyHttp(
        {SURVEY.id: SURVEY},
        {SURVEY.id: TEXT},
        aggregator=LEADER,
        store=store,
        issuers={SURVEY.id: issuer_dir},
        cors_origins=(ORIGIN,),
        limits=HttpLimits(max_body=8 << 10, rate=1000, burst=1000, per_token=6),
    )
    yield app, store
    store.shutdown()


def client(app: SurveyHttp, address: str = "203.0.113.7") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app.app, client=(address, 1234)), base_url=BASE)


def submission(seed: int):
    sids, rows, _, _ = respondents(SURVEY, 1, seed)
    return sids[0], proved.shard_sheet(SURVEY, sids[0], rows[0], Prg.from_int(seed + 100))[0]


async def redeem(http: httpx.AsyncClient, admission: SurveyAdmission, code: str, sid: bytes, seed: int = 1):
    request, pending = admission.request(sid, Prg.from_int(seed, sid.hex()))
    r = await http.post(f"/v1/surveys/{SURVEY.id}/tokens", json={"invitation": code, "token_request": b64url(request)})
    return r, (pending.finalize(from_b64url(r.json()["token_response"])) if r.status_code == 200 else None)


def body(sid: bytes, report: bytes, token: bytes | None, digest: bytes = SURVEY.digest) -> dict:
    doc = {"digest": digest.hex(), "submission_id": sid.hex(), "report": b64url(report)}
    if token is not None:
        doc["token"] = b64url(token)
    return doc


async def test_definition_redemption_and_intake(server, issuer_dir):
    app, store = server
    (code,) = issuer_dir.invitations.create(1, Prg.from_int(1))
    sid, report = submission(1)
    async with client(app) as http:
        doc = (await http.get(f"/v1/surveys/{SURVEY.id}")).json()
        assert doc["digest"] == SURVEY.digest.hex() and doc["toml"] == TEXT
        assert doc["issuer"]["token_key_id"] == issuer_dir.issuer.public_key.token_key_id.hex()
        assert doc["issuer"]["origin_info"] == ",".join(SURVEY.aggregator_names)
        r, token = await redeem(http, issuer_dir.admission, code, sid)
        assert r.status_code == 200
        again, same = await redeem(http, issuer_dir.admission, code, sid)  # a retry of the very same request
        assert again.status_code == 200 and same == token
        r = await http.post(f"/v1/surveys/{SURVEY.id}/reports", json=body(sid, report, token))
        assert (r.status_code, r.json()) == (201, {"outcome": "accepted"})
        r = await http.post(f"/v1/surveys/{SURVEY.id}/reports", json=body(sid, report, token))
        assert (r.status_code, r.json()) == (200, {"outcome": "duplicate"})  # the outbox retried
    assert store.state(SURVEY.id).count == 1


async def test_every_attack_is_refused_with_its_status_counted_and_nothing_stored(server, issuer_dir):
    app, store = server
    codes = issuer_dir.invitations.create(3, Prg.from_int(2))
    (sid, report), (sid2, report2), (sid3, report3) = submission(2), submission(3), submission(4)
    reports = f"/v1/surveys/{SURVEY.id}/reports"
    other_issuer = Issuer(generate_issuer_key())
    other = SurveyAdmission(other_issuer.public_key, OTHER.id, OTHER.digest, OTHER.aggregator_names)
    async with client(app) as http:
        _, token = await redeem(http, issuer_dir.admission, codes[0], sid)
        assert (await http.post(reports, json=body(sid, report, token))).status_code == 201

        async def refused(doc, status, code, **kw):
            r = await http.post(reports, json=doc, **kw) if doc is not None else await http.post(reports, **kw)
            assert (r.status_code, r.json()["error"]) == (status, code), r.text
            assert r.json()["message"] and "Error" not in r.json()["message"]

        await refused(body(sid2, report2, token), 403, "token_reused")  # the spent token with another report
        await refused(body(sid2, report2, None), 401, "token_missing")
        forged = bytearray((await redeem(http, issuer_dir.admission, codes[1], sid2))[1])
        forged[200] ^= 1
        await refused(body(sid2, report2, bytes(forged)), 403, "token_invalid")
        await refused(body(sid2, report2, bytes(forged)[:300]), 403, "token_invalid")  # truncated
        request, pending = other.request(sid2, Prg.from_int(5))
        foreign = pending.finalize(other_issuer.issue(request))  # a token from another survey's issuer
        await refused(body(sid2, report2, foreign), 403, "token_invalid")
        _, token3 = await redeem(http, issuer_dir.admission, codes[2], sid3)
        await refused(body(sid2, report2, token3), 403, "token_invalid")  # bound to another submission
        await refused(body(sid3, report3[:-1], token3), 400, "malformed")
        await refused(body(sid3, report3, token3, digest=OTHER.digest), 412, "digest_mismatch")
        await refused({"digest": SURVEY.digest.hex(), "submission_id": "zz"}, 400, "malformed")
        big = body(sid3, report3 * 8, token3)  # over the 8 KiB limit of this server
        await refused(big, 413, "too_large")
        await refused(None, 415, "unsupported_media_type", content=b"x")
        r = await http.post("/v1/surveys/nope/reports", json=body(sid3, report3, token3))
        assert (r.status_code, r.json()["error"]) == (404, "unknown_survey")
        # the invitation used twice: another token request with a used code
        r, _ = await redeem(http, issuer_dir.admission, codes[0], sid3, seed=9)
        assert (r.status_code, r.json()["error"]) == (403, "invitation_refused")
        assert "already used" in r.json()["message"]
        r, _ = await redeem(http, issuer_dir.admission, "aaaaa-bbbbb-ccccc-ddddd-eeeee-fff", sid3)
        assert (r.status_code, r.json()["error"]) == (403, "invitation_refused")
        # token3 is still good: nothing above spent it
        assert (await http.post(reports, json=body(sid3, report3, token3))).status_code == 201
        assert (await http.get("/metrics")).status_code == 404  # not to the world: counts tell when people answer
    async with client(app, "127.0.0.1") as local:
        metrics = (await local.get("/metrics")).text
    assert store.state(SURVEY.id).count == 2
    (spent,) = store._db.execute("SELECT COUNT(*) FROM spent_tokens").fetchone()
    assert spent == 2
    assert store.refusals(SURVEY.id) == {"token-reused": 1, "token-missing": 1, "token-invalid": 4, "malformed": 1}
    for line in (
        "reports_refused_token_reused 1",
        "reports_refused_token_invalid 4",
        "reports_refused_too_large 1",
        "tokens_refused_invitation_refused 2",
    ):
        assert f"mpcdp_https_{line}\n" in metrics


async def test_a_flood_from_one_address_and_one_token_is_rate_limited(tmp_path, issuer_dir):
    store = token_store(tmp_path, issuer_dir)
    app = SurveyHttp(
        {SURVEY.id: SURVEY},
        {SURVEY.id: TEXT},
        store=store,
        admissions={SURVEY.id: issuer_dir.admission},
        limits=HttpLimits(rate=0.01, burst=5, per_token=3),
    )
    sid, report = submission(6)
    async with client(app, "198.51.100.1") as flood, client(app, "198.51.100.2") as other:
        statuses = [(await flood.get(f"/v1/surveys/{SURVEY.id}")).status_code for _ in range(20)]
        assert statuses[:5] == [200] * 5 and set(statuses[5:]) == {429}
        r = await flood.get(f"/v1/surveys/{SURVEY.id}")
        assert r.json()["error"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
        assert (await other.get(f"/v1/surveys/{SURVEY.id}")).status_code == 200  # another address is served
        junk = body(sid, report, b"\x00\x02" + bytes(352))
        codes = [(await other.post(f"/v1/surveys/{SURVEY.id}/reports", json=junk)).status_code for _ in range(4)]
        assert codes == [403, 403, 403, 429]  # one token tried too often
    async with client(app, "127.0.0.1") as local:
        metrics = (await local.get("/metrics")).text
    assert "mpcdp_https_definition_refused_rate_limited 16\n" in metrics
    assert store.state(SURVEY.id).count == 0
    store.shutdown()


async def test_cors_only_for_the_survey_page_origin(server):
    app, _ = server
    async with client(app) as http:
        r = await http.get(f"/v1/surveys/{SURVEY.id}", headers={"Origin": ORIGIN})
        assert r.headers["access-control-allow-origin"] == ORIGIN
        pre = {
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        r = await http.options(f"/v1/surveys/{SURVEY.id}/reports", headers=pre)
        assert r.status_code == 200 and "POST" in r.headers["access-control-allow-methods"]
        r = await http.get(f"/v1/surveys/{SURVEY.id}", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        r = await http.options(f"/v1/surveys/{SURVEY.id}/reports", headers={**pre, "Origin": "https://evil.example"})
        assert r.status_code == 400


async def test_concurrent_reports_share_one_transaction_and_each_gets_its_own_answer(server, issuer_dir):
    app, store = server
    subs = [submission(20 + i) for i in range(40)]
    async with client(app) as http:
        tokens = []
        for (sid, _), code in zip(subs, issuer_dir.invitations.create(40, Prg.from_int(8)), strict=True):
            tokens.append((await redeem(http, issuer_dir.admission, code, sid))[1])
        docs = [body(sid, report, token) for (sid, report), token in zip(subs, tokens, strict=True)]
        docs.append(body(subs[0][0], subs[1][1], tokens[0]))  # the same id with another report: a conflict
        replies = await asyncio.gather(*(http.post(f"/v1/surveys/{SURVEY.id}/reports", json=d) for d in docs))
    async with client(app, "::1") as local:
        metrics = (await local.get("/metrics")).text
    assert sorted(r.status_code for r in replies) == [201] * 40 + [409]
    assert store.state(SURVEY.id).count == 40
    transactions = int(metrics.split("mpcdp_https_intake_transactions ")[1].split()[0])
    assert transactions < 20  # grouped: far fewer commits (fsyncs) than reports


def test_a_group_the_store_refuses_is_stored_report_by_report():
    class Store:
        def __init__(self):
            self.calls = []

        def put(self, survey_id, items, tokens, checked, count=True):
            self.calls.append((len(items), count))
            if len(items) > 1:
                raise TokenReused("one of these tokens was already used")
            if items[0][0] == b"bad":
                raise InvalidToken("this one is bad")
            return [PutStatus.ACCEPTED]

    store = Store()
    group = GroupCommit(store, None)
    waiting = [("s", (sid, b"r"), b"t", None, None) for sid in (b"ok1", b"bad", b"ok2")]
    outcomes = group._store(waiting)
    assert outcomes[0] == outcomes[2] == PutStatus.ACCEPTED and isinstance(outcomes[1], InvalidToken)
    # the group's refusal is not counted; the retries, report by report, count the bad one once
    assert store.calls == [(3, False), (1, True), (1, True), (1, True)]


async def test_a_batch_of_reports_with_tokens_is_stored_together_or_refused_together(server, issuer_dir):
    app, store = server
    subs = [submission(70 + i) for i in range(6)]
    batch = f"/v1/surveys/{SURVEY.id}/reports/batch"
    async with client(app) as http:
        tokens = []
        for (sid, _), code in zip(subs, issuer_dir.invitations.create(6, Prg.from_int(9)), strict=True):
            tokens.append((await redeem(http, issuer_dir.admission, code, sid))[1])
        entries = [body(sid, report, token) for (sid, report), token in zip(subs, tokens, strict=True)]
        for e in entries:
            del e["digest"]
        doc = {"digest": SURVEY.digest.hex(), "reports": entries[:5]}
        r = await http.post(batch, json=doc)
        assert (r.status_code, r.json()) == (200, {"outcomes": ["accepted"] * 5})
        r = await http.post(batch, json=doc)  # the relay retried
        assert r.json() == {"outcomes": ["duplicate"] * 5}
        sid7, report7 = submission(80)
        reused = {**body(sid7, report7, tokens[0]), "digest": None}  # a spent token with a new report
        for bad, status, code in (
            ({"digest": SURVEY.digest.hex(), "reports": [entries[5], reused]}, 403, "token_reused"),
            (
                {"digest": SURVEY.digest.hex(), "reports": [{k: v for k, v in entries[5].items() if k != "token"}]},
                401,
                "token_missing",
            ),
            ({"digest": OTHER.digest.hex(), "reports": [entries[5]]}, 412, "digest_mismatch"),
            ({"digest": SURVEY.digest.hex(), "reports": []}, 400, "malformed"),
        ):
            r = await http.post(batch, json=bad)
            assert (r.status_code, r.json()["error"]) == (status, code), r.text
        assert store.state(SURVEY.id).count == 5  # the refused batches stored nothing, not even their good report
        r = await http.post(batch, json={"digest": SURVEY.digest.hex(), "reports": [entries[5]]})
        assert r.json() == {"outcomes": ["accepted"]}
