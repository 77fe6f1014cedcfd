"""Respondents with tokens over HTTPS against real aggregator processes: HTTP/2 and HTTP/1.1, certificates
admit nothing, only the coordinator closes, and kill -9 mid-ingestion never separates a report from its
spent token."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import ssl
import threading
import time
from pathlib import Path

import grpc
import httpx
import pytest

from mpcdp.prg import Prg
from mpcdp.survey.definition import parse_survey
from mpcdp.survey.respondent import Refused, SurveyClient
from mpcdp.survey.synthetic import synthetic_answers
from services.survey.admission import ISSUER_PUBLIC, IssuerDir
from services.survey.collector import coordinator_for
from services.survey.https_client import HttpsTransport, http_client
from services.survey.https_local import HttpsLocalSurvey
from services.survey.simulation import COORDINATOR, RESPONDENTS
from services.survey.transport import GrpcTransport
from tests.support.survey_proved import TEXT


def TokenSurvey(survey, path, workdir, issuer_json, **kw) -> HttpsLocalSurvey:
    return HttpsLocalSurvey(survey, path, workdir, issuer_json, ("--rate", "100000", "--burst", "100000"), **kw)


def setup(tmp: Path, n: int):
    path = tmp / "poll.toml"
    path.write_text(TEXT)
    survey = parse_survey(TEXT)
    issuer = IssuerDir(tmp / "tokens", survey, create=True)
    sheets, _ = synthetic_answers(survey, n, Prg.from_int(1, "truth"))
    submissions = SurveyClient(survey, rng=Prg.from_int(2)).prepare_many(sheets)
    tokens = {}
    for s in submissions:  # each respondent's blinded request, signed by the issuer, finalized
        request, pending = issuer.admission.request(s.submission_id, Prg.from_int(3, s.submission_id.hex()))
        tokens[s.submission_id] = pending.finalize(issuer.issuer.issue(request))
    return path, survey, issuer, submissions, tokens


def test_respondents_submit_over_https_with_tokens_and_certificates_admit_nothing(tmp_path):
    path, survey, _, submissions, tokens = setup(tmp_path, 14)
    honest, extra = submissions[:12], submissions[12:]
    with TokenSurvey(survey, path, tmp_path / "run", tmp_path / "tokens" / ISSUER_PUBLIC) as run:
        ca = run.certs / "ca.pem"
        leader = run.url(survey.aggregator_names[0])

        async def go():
            async with http_client(ca) as client:
                transport = HttpsTransport(client, run.urls(), tokens, check_names=True)
                await SurveyClient(run.survey, transport).deliver(honest)
                await SurveyClient(run.survey, transport).deliver(honest[:3])  # a retry: duplicates
                h2 = await client.get(f"{leader}/healthz", extensions={"sni_hostname": survey.aggregator_names[0]})
                # a token already spent, sent with another respondent's report: refused
                reused = HttpsTransport(client, run.urls(), {extra[0].submission_id: tokens[honest[0].submission_id]})
                with pytest.raises(Refused, match="403 token_reused"):
                    await SurveyClient(run.survey, reused).deliver([extra[0]], attempts=1)
            async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(ca))) as h1:
                r = await h1.get(f"{leader}/healthz", extensions={"sni_hostname": survey.aggregator_names[0]})
            assert (h2.http_version, r.http_version) == ("HTTP/2", "HTTP/1.1")
            # a certificate admits nothing: aggregator, coordinator and the old shared respondents certificate
            for name, refusal in (
                (survey.aggregator_names[1], "PERMISSION_DENIED: aggregator and coordinator certificates cannot"),
                (COORDINATOR, "PERMISSION_DENIED: aggregator and coordinator certificates cannot"),
                (RESPONDENTS, "by token only"),
            ):
                grpc_transport = GrpcTransport(run.identity(name), run.survey, timeout=10)
                try:
                    with pytest.raises(Refused, match=refusal):
                        await SurveyClient(run.survey, grpc_transport).deliver([extra[1]], attempts=1)
                finally:
                    await grpc_transport.close()
            # only the coordinator may see the state of, close or release the survey
            impostor = coordinator_for(run.identity(survey.aggregator_names[1]), run.survey)
            try:
                with pytest.raises(grpc.aio.AioRpcError) as denied:
                    await impostor.status()
                assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
            finally:
                await impostor.close()
            return await run.close_and_verify()

        verification = asyncio.run(go())
    assert verification.counted == 12 and verification.incomplete == 0


def test_kill_9_mid_https_ingestion_never_separates_a_report_from_its_spent_token(tmp_path):
    n = 90
    path, survey, _, submissions, tokens = setup(tmp_path, n)
    victim = survey.aggregator_names[1]
    with TokenSurvey(survey, path, tmp_path / "run", tmp_path / "tokens" / ISSUER_PUBLIC, insecure=True) as run:
        db = run.workdir / f"{victim}.db"
        seen: dict = {}

        def killer():  # from outside the client: the kill lands while requests are in flight
            while True:
                with sqlite3.connect(db) as conn:
                    (count,) = conn.execute("SELECT COUNT(*) FROM proved_reports").fetchone()
                if count >= n // 3:
                    break
                time.sleep(0.005)
            proc = run.procs[victim]
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            with sqlite3.connect(db) as conn:  # what the crash left on disk
                seen["reports"] = {bytes(r[0]) for r in conn.execute("SELECT sid FROM proved_reports")}
                seen["spent"] = {bytes(r[0]) for r in conn.execute("SELECT report_id FROM spent_tokens")}
            run.launch(victim)  # same port, same store; the respondents' retries wait for it

        thread = threading.Thread(target=killer)

        async def go():
            async with http_client(insecure=True) as client:
                transport = HttpsTransport(client, run.urls(), tokens)
                thread.start()
                await SurveyClient(run.survey, transport).deliver(submissions, batch_size=5, attempts=12)
            thread.join()
            with sqlite3.connect(db) as conn:
                seen["reports_after"] = {bytes(r[0]) for r in conn.execute("SELECT sid FROM proved_reports")}
                seen["spent_after"] = {bytes(r[0]) for r in conn.execute("SELECT report_id FROM spent_tokens")}
            return await run.close_and_verify()

        verification = asyncio.run(go())
    assert n // 3 <= len(seen["reports"]) < n  # killed mid-way
    assert seen["reports"] == seen["spent"]  # no report without its token spent, no token spent without its report
    assert seen["reports_after"] == seen["spent_after"] == {s.submission_id for s in submissions}
    assert verification.counted == n  # every report counted once: none lost, none twice
