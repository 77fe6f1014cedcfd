"""The survey web page: its survey description for the browser, its folder, and a small HTTPS server for it.

The page (``web/``, built with esbuild into ``web/dist``) randomizes each answer in the respondent's
browser with the same local mechanism and the *same exact parameters* as :mod:`mpcdp.survey.local`:
rather than re-deriving the rounded keep/flip probabilities in JavaScript, it reads them from
``survey.json``, written here from the parsed survey (thresholds T with Bernoulli(p) = [u < T] for a
uniform 64-bit u, the discrete Laplace scale as the exact rational t / s: each registered local
mechanism's ``browser_parameters``). Each question's Prio3
circuit is :func:`mpcdp.survey.proved.circuit`'s, so the page's reports verify at the aggregators.

``write_page(survey, out, ...)`` copies the built page and writes ``survey.json`` beside it, for any
static host; ``serve_page`` serves that folder over HTTPS (or plain HTTP on loopback for tests).
"""

from __future__ import annotations

import json
import shutil
import ssl
import threading
from collections.abc import Mapping
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mpcdp.survey.definition import Survey
from mpcdp.survey.proved import circuit
from mpcdp.survey.questions import Question

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "web" / "dist"
PAGE_FORMAT = "mpcdp survey page 1"


class PageError(Exception):
    """The page cannot be written or served (not built, bad folder, a survey without proofs)."""


def _circuit(survey: Survey, q: Question) -> dict[str, Any]:
    vdaf = circuit(survey, q)
    out: dict[str, Any] = {"type": vdaf.name.removeprefix("Prio3")}
    for key in ("bits", "length", "chunk_length"):
        if hasattr(vdaf.flp.circuit, key):
            out[key] = getattr(vdaf.flp.circuit, key)
    return out


def question_json(survey: Survey, q: Question) -> dict[str, Any]:
    """What the page needs of one question: its wording, its mechanism's exact parameters, its circuit."""
    out: dict[str, Any] = {
        "id": q.id,
        "text": q.text or q.id,
        "kind": q.kind,
        "options": list(q.options),
        "local": {"mechanism": q.local.name, "epsilon": q.local.epsilon, **q.local.browser_parameters(q)},
        "circuit": _circuit(survey, q),
    }
    if q.bounds is not None:
        out.update(bounds=list(q.bounds), step=q.step, unit_range=list(q.unit_range))
    return out


def check_endpoints(survey: Survey, endpoints: Mapping[str, Any]) -> dict[str, Any]:
    """The endpoints file (HTTP API contract: issuer and aggregator base URLs), checked against the survey."""
    if endpoints.get("survey") != survey.id:
        raise PageError(f"the endpoints file is for survey {endpoints.get('survey')!r}, not {survey.id!r}")
    urls = endpoints.get("aggregators") or {}
    missing = [name for name in survey.aggregator_names if not isinstance(urls.get(name), str)]
    if missing or not isinstance(endpoints.get("issuer"), str):
        raise PageError(f"the endpoints file needs the issuer's URL and every aggregator's (missing: {missing})")
    return {
        "issuer": endpoints["issuer"].rstrip("/"),
        "aggregators": {k: urls[k].rstrip("/") for k in survey.aggregator_names},
    }


def survey_json(survey: Survey, endpoints: Mapping[str, Any]) -> dict[str, Any]:
    """The page's ``survey.json``: the survey, its questions, and where the issuer and each aggregator listen."""
    if survey.proofs != "prio3":
        raise PageError(f'survey {survey.id!r} has no proofs: the page sends Prio3 reports (set proofs = "prio3")')
    return {
        "format": PAGE_FORMAT,
        "id": survey.id,
        "title": survey.title or survey.id,
        "digest": survey.digest.hex(),
        "aggregators": [{"name": name} for name in survey.aggregator_names],
        "endpoints": check_endpoints(survey, endpoints),
        "questions": [question_json(survey, q) for q in survey.questions],
    }


def write_page(survey: Survey, out: Path, description: Mapping[str, Any], dist: Path = DIST) -> Path:
    """Copy the built page into ``out`` and write its ``survey.json``; returns ``out``."""
    if not (dist / "index.html").is_file():
        raise PageError(f"the survey page is not built ({dist}): run `make web`")
    out.mkdir(parents=True, exist_ok=True)
    for item in dist.iterdir():
        if item.is_file():
            shutil.copy2(item, out / item.name)
    (out / "survey.json").write_text(json.dumps(description, indent=1) + "\n")
    return out


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()


def serve_page(folder: Path, host: str, port: int, tls: ssl.SSLContext | None) -> ThreadingHTTPServer:
    """A static server for the page's folder (HTTPS when ``tls`` is given), started in a thread."""
    server = ThreadingHTTPServer((host, port), partial(_Quiet, directory=str(folder)))
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True, name="survey-page").start()
    return server
