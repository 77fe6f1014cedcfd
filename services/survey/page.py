"""The survey web page: its survey description for the browser, its folder, and a small HTTPS server for it.

The page (``web/``, built with esbuild into ``web/dist``) randomizes each answer in the respondent's
browser with the same local mechanism and the *same exact parameters* as :mod:`mpcdp.survey.local`:
rather than re-deriving the rounded keep/flip probabilities in JavaScript, it reads them from
``survey.json``, written here from the parsed survey (thresholds T with Bernoulli(p) = [u < T] for a
uniform 64-bit u, the discrete Laplace scale as the exact rational t / s). Each question's Prio3
circuit is :func:`mpcdp.survey.proved.circuit`'s, so the page's reports verify at the aggregators.

``write_page(survey, out, ...)`` copies the built page and writes ``survey.json`` beside it, for any
static host; ``serve_page`` serves that folder over HTTPS (or plain HTTP on loopback for tests).
"""

from __future__ import annotations

import json
import shutil
import ssl
import threading
from collections.abc import Callable, Mapping
from fractions import Fraction
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mpcdp.dp.local import BinaryRR, KaryRR, UnaryEncoding
from mpcdp.survey.definition import Question, Survey
from mpcdp.survey.proved import circuit

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "web" / "dist"
PAGE_FORMAT = "mpcdp survey page 1"


class PageError(Exception):
    """The page cannot be written or served (not built, bad folder, a survey without proofs)."""


def _threshold(p: Fraction) -> str:
    """T = p 2^64 as a decimal string (p is a multiple of 2^-64 by construction)."""
    t = p * (1 << 64)
    if t.denominator != 1:
        raise ValueError("a sampling probability that is not a multiple of 2^-64")
    return str(t.numerator)


def _bit_epsilon(q: Question) -> float:
    """A multi-select question's bits each get epsilon / k (one answer changes at most k bits)."""
    assert q.local.epsilon is not None
    return q.local.epsilon / len(q.options) if q.kind == "multiselect" else q.local.epsilon


def _laplace(q: Question) -> dict[str, Any]:
    scale = Fraction(q.laplace().scale_steps)
    return {"scale_num": str(scale.numerator), "scale_den": str(scale.denominator)}


# The exact parameters each local mechanism's sampler uses (see web/src/mechanisms.js).
# TODO(survey registries): these become methods of the registered local mechanisms.
_PARAMETERS: dict[str, Callable[[Question], dict[str, Any]]] = {
    "none": lambda q: {},
    "two_coin": lambda q: {},
    "rr": lambda q: {"keep_threshold": _threshold(BinaryRR(_bit_epsilon(q)).keep)},
    "krr": lambda q: {"keep_threshold": _threshold(KaryRR(_bit_epsilon(q), len(q.options)).keep)},
    "unary": lambda q: {"flip_on_threshold": _threshold(UnaryEncoding(_bit_epsilon(q), len(q.options)).flip_on)},
    "laplace": _laplace,
}


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
        "local": {"mechanism": q.local.name, "epsilon": q.local.epsilon, **_PARAMETERS[q.local.name](q)},
        "circuit": _circuit(survey, q),
    }
    if q.bounds is not None:
        out.update(bounds=list(q.bounds), step=q.step, unit_range=list(q.unit_range))
    return out


def survey_json(
    survey: Survey, endpoints: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The page's ``survey.json``: the survey, its questions and where each aggregator takes reports.

    ``endpoints`` maps aggregator names to their HTTPS base URLs; ``extra`` adds fields the
    token redemption needs (issuer key, issuer URL).
    """
    if survey.proofs != "prio3":
        raise PageError(f"survey {survey.id!r} has no proofs: the page sends Prio3 reports (set proofs = \"prio3\")")
    endpoints = endpoints or {}
    return {
        "format": PAGE_FORMAT,
        "id": survey.id,
        "title": survey.title or survey.id,
        "digest": survey.digest.hex(),
        "aggregators": [{"name": a.name, "url": endpoints.get(a.name, "")} for a in survey.aggregators],
        "questions": [question_json(survey, q) for q in survey.questions],
        **(extra or {}),
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
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
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
