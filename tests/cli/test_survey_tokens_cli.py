"""``mpcdp survey invite``, ``survey issuer`` and ``survey submit --invitation``: one-time invitations, stored
hashed, each redeemed once for a blindly signed token; a respondent with no certificate answers over HTTPS."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization

from mpcdp.survey.definition import parse_survey
from mpcdp.tokens import Issuer, generate_issuer_key
from services.cli import main
from services.survey.admission import ISSUER_PUBLIC, public_key_document, read_public_key
from services.survey.https_local import HttpsLocalSurvey, free_port
from services.tls import make_node_cert
from tests.support.survey_proved import TEXT

SMALL = TEXT.replace("min_respondents = 10", "min_respondents = 3")
ANSWERS = {"will_vote": True, "vote": "Greens", "issues": ["climate"], "salary": 52000}


def test_invite_keeps_only_keyed_hashes_and_the_key_owner_only(tmp_path, capsys):
    survey_path = tmp_path / "poll.toml"
    survey_path.write_text(SMALL)
    out = tmp_path / "codes.txt"
    assert main(["survey", "invite", "--survey", str(survey_path), "--count", "5", "--out", str(out)]) == 0
    codes = out.read_text().split()
    assert len(codes) == 5 and len(set(codes)) == 5
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    folder = tmp_path / "election-poll-2026.tokens"
    assert stat.S_IMODE((folder / "issuer.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "invitations.db").stat().st_mode) == 0o600
    survey_id, key = read_public_key(folder / ISSUER_PUBLIC)
    assert survey_id == "election-poll-2026" and len(key.token_key_id) == 32
    stored = b"".join(p.read_bytes() for p in folder.glob("invitations.db*"))
    for code in codes:
        assert code.encode() not in stored and code.replace("-", "").upper().encode() not in stored
    assert "give it to every aggregator" in capsys.readouterr().out
    # more invitations later: the same key, links to the survey page
    assert main(["survey", "invite", "--survey", str(survey_path), "--count", "2", "--link", "https://p.example/"]) == 0
    links = capsys.readouterr().out.split()
    assert all(line.startswith("https://p.example/#invitation=") for line in links[:2])
    assert read_public_key(folder / ISSUER_PUBLIC)[1].spki == key.spki
    # a survey without proofs admits no tokens: said plainly
    plain = tmp_path / "plain.toml"
    plain.write_text(SMALL.replace('proofs = "prio3"', ""))
    assert main(["survey", "invite", "--survey", str(plain), "--count", "1"]) == 1
    assert 'proofs = "prio3"' in capsys.readouterr().err


def issuer_certificate(certs: Path) -> None:
    """The issuer's certificate from the survey CA (what `certs init --survey` makes)."""
    ca_key = serialization.load_pem_private_key((certs / "ca.key").read_bytes(), None)
    from cryptography import x509

    ca_cert = x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes())
    key, cert = make_node_cert(ca_key, ca_cert, "issuer")
    (certs / "issuer.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(certs / "issuer.key", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )


def test_respondents_redeem_an_invitation_and_submit_over_https_without_a_certificate(tmp_path, capsys):
    survey_path = tmp_path / "poll.toml"
    survey_path.write_text(SMALL)
    tokens = tmp_path / "tokens"
    codes_file = tmp_path / "codes.txt"
    argv = ["survey", "invite", "--survey", str(survey_path), "--count", "4", "--tokens", str(tokens)]
    assert main([*argv, "--out", str(codes_file)]) == 0
    codes = codes_file.read_text().split()
    survey = parse_survey(SMALL)
    with HttpsLocalSurvey(survey, survey_path, tmp_path / "run", tokens / ISSUER_PUBLIC) as run:
        issuer_certificate(run.certs)
        port = free_port()
        issuer = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "survey", "issuer", "--survey", str(survey_path)]
            + ["--tokens", str(tokens), "--listen", f"127.0.0.1:{port}", "--certs", str(run.certs)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            with httpx.Client(verify=run.ssl_context()) as client:
                for _ in range(300):
                    try:
                        r = client.get(f"https://127.0.0.1:{port}/healthz", extensions={"sni_hostname": "issuer"})
                        if r.status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.1)
            endpoints = tmp_path / "endpoints.json"
            endpoints.write_text(
                json.dumps({"survey": survey.id, "issuer": f"https://127.0.0.1:{port}", "aggregators": run.urls()})
            )
            ca = str(run.certs / "ca.pem")

            def submit(i: int, code: str, key: Path = tokens / ISSUER_PUBLIC) -> int:
                answers = tmp_path / f"answers{i}.json"
                answers.write_text(json.dumps(ANSWERS))
                return main(
                    ["survey", "submit", "--survey", str(survey_path), "--answers", str(answers)]
                    + ["--invitation", code, "--endpoints", str(endpoints), "--ca", ca, "--issuer-key", str(key)]
                )

            # a respondent pins the published issuer key: an issuer presenting another one is not trusted
            other_key = tmp_path / "other-issuer.json"
            other_key.write_text(json.dumps(public_key_document(survey.id, Issuer(generate_issuer_key()).public_key)))
            assert submit(9, codes[0], other_key) == 1
            assert "another key than the survey's published one" in capsys.readouterr().err

            for i, code in enumerate(codes[:3]):
                assert submit(i, code) == 0
                assert not (tmp_path / f"answers{i}.json.pending.json.token").exists()  # delivered: outbox gone
            assert "submitted to 3 aggregators" in capsys.readouterr().out
            assert submit(3, codes[0]) == 1  # the invitation used a second time, for a new answer sheet
            err = capsys.readouterr().err
            assert "invitation_refused" in err and "already used" in err and "Traceback" not in err
            assert (tmp_path / "answers3.json.pending.json").exists()  # kept: it can go with a valid invitation
            assert submit(3, codes[3]) == 0

            assert asyncio.run(run.close_and_verify()).counted == 4
        finally:
            issuer.terminate()
            issuer.wait(timeout=10)
