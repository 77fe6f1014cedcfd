"""``mpcdp survey serve-page --out DIR``: the page for any static host, and its refusals in plain words."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mpcdp.tokens.privacy_pass import IssuerPublicKey, generate_issuer_key
from services.cli import main
from services.survey.admission import public_key_document
from tests.support import ROOT

POLL = str(ROOT / "examples" / "election_poll.toml")
ENDPOINTS = {
    "survey": "election-poll-2026",
    "issuer": "https://tokens.example.org",
    "aggregators": {
        "pollster-a": "https://a.example.org/",
        "pollster-b": "https://b.example.org",
        "university-c": "https://c.example.org:8443",
    },
}


@pytest.fixture(scope="module")
def issuer_key(tmp_path_factory):
    """An issuer.json for the example poll, as `mpcdp survey invite` writes it."""
    key = IssuerPublicKey(generate_issuer_key().public_key())
    doc = public_key_document("election-poll-2026", key)
    path = tmp_path_factory.mktemp("issuer") / "issuer.json"
    path.write_text(json.dumps(doc))
    return str(path), doc


@pytest.fixture
def endpoints(tmp_path):
    def write(doc=ENDPOINTS):
        path = tmp_path / "endpoints.json"
        path.write_text(json.dumps(doc))
        return str(path)

    return write


@pytest.fixture
def serve_page(issuer_key):
    def run(*args: str, key: str | None = None) -> int:
        if not (ROOT / "web" / "dist" / "index.html").is_file():
            pytest.fail("the survey page is not built: run `make web`")
        return main(["survey", "serve-page", "--issuer-key", key or issuer_key[0], *args])

    return run


def test_writes_the_page_with_exact_parameters_and_a_narrow_connect_policy(tmp_path, endpoints, serve_page, issuer_key):
    out = tmp_path / "site"
    assert serve_page("--survey", POLL, "--endpoints", endpoints(), "--out", str(out)) == 0
    assert {"index.html", "page.js", "style.css", "survey.json"} <= {p.name for p in out.iterdir()}
    doc = json.loads((out / "survey.json").read_text())
    assert doc["id"] == "election-poll-2026" and len(doc["digest"]) == 64
    assert doc["issuer_key"] == {k: issuer_key[1][k] for k in ("public_key", "token_key_id")}  # the pinned key
    assert doc["endpoints"]["aggregators"]["pollster-a"] == "https://a.example.org"  # no trailing slash
    vote = next(q for q in doc["questions"] if q["id"] == "vote")
    assert vote["local"]["mechanism"] == "krr" and int(vote["local"]["keep_threshold"]) < 1 << 64
    assert vote["circuit"] == {"type": "Histogram", "length": 5, "chunk_length": 2}
    policy = re.search(r"connect-src ([^;]*);", (out / "index.html").read_text()).group(1).split()
    assert sorted(policy) == sorted(
        ["'self'", "https://tokens.example.org", "https://a.example.org", "https://b.example.org",
         "https://c.example.org:8443"]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"survey": "another-poll"}, "is for survey 'another-poll'"),
        ({"aggregators": {"pollster-a": "https://a.example.org"}}, "every aggregator"),
        ({"issuer": "http://tokens.example.org"}, "give an https:// URL"),
    ],
)
def test_refuses_a_wrong_endpoints_file_plainly(tmp_path, endpoints, serve_page, capsys, change, message):
    code = serve_page("--survey", POLL, "--endpoints", endpoints({**ENDPOINTS, **change}), "--out", str(tmp_path))
    err = capsys.readouterr().err
    assert code == 1 and message in err and "Traceback" not in err


def test_refuses_a_survey_without_proofs(tmp_path, endpoints, serve_page, capsys):
    survey = tmp_path / "plain.toml"
    survey.write_text(Path(POLL).read_text().replace('proofs = "prio3"', ""))
    assert serve_page("--survey", str(survey), "--endpoints", endpoints(), "--out", str(tmp_path / "o")) == 1
    assert "has no proofs" in capsys.readouterr().err


def test_refuses_another_surveys_issuer_key(tmp_path, endpoints, serve_page, capsys):
    other = tmp_path / "other.json"
    other.write_text(
        json.dumps(public_key_document("another-poll", IssuerPublicKey(generate_issuer_key().public_key())))
    )
    assert serve_page("--survey", POLL, "--endpoints", endpoints(), "--out", str(tmp_path / "o"), key=str(other)) == 1
    assert "issuer key of survey 'another-poll'" in capsys.readouterr().err


def test_serving_needs_a_certificate_or_insecure(tmp_path, endpoints, serve_page, capsys):
    assert serve_page("--survey", POLL, "--endpoints", endpoints()) == 1
    assert "--https-cert" in capsys.readouterr().err


def test_plain_http_only_on_loopback(endpoints, serve_page, capsys):
    args = ("--survey", POLL, "--endpoints", endpoints(), "--insecure", "--listen", "0.0.0.0:8443")
    assert serve_page(*args) == 1
    assert "only on loopback" in capsys.readouterr().err
