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
import sys
import threading
from collections.abc import Mapping
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:  # `mpcdp survey --help` registers `survey page` without loading the survey library
    from mpcdp.survey.definition import Survey
    from mpcdp.survey.questions import Question

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "web" / "dist"
PAGE_FORMAT = "mpcdp survey page 1"
CONNECT_ANY = "connect-src 'self' https: http://127.0.0.1:* http://localhost:*"  # web/src/index.html's, narrowed


class PageError(Exception):
    """The page cannot be written or served (not built, bad folder, a survey without proofs)."""


def _circuit(survey: Survey, q: Question) -> dict[str, Any]:
    from mpcdp.survey.proved import circuit  # Prio3 only when a page is written, not at command-line start-up

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
    """The endpoints file (HTTP API contract: issuer and aggregator base URLs), checked against the survey.

    Every URL is https://, or http:// on loopback (experiments): answers never travel in clear over a network."""
    if endpoints.get("survey") != survey.id:
        raise PageError(f"the endpoints file is for survey {endpoints.get('survey')!r}, not {survey.id!r}")
    urls = endpoints.get("aggregators") or {}
    missing = [name for name in survey.aggregator_names if not isinstance(urls.get(name), str)]
    if missing or not isinstance(endpoints.get("issuer"), str):
        raise PageError(f"the endpoints file needs the issuer's URL and every aggregator's (missing: {missing})")
    out = {
        "issuer": endpoints["issuer"].rstrip("/"),
        "aggregators": {k: urls[k].rstrip("/") for k in survey.aggregator_names},
    }
    for url in [out["issuer"], *out["aggregators"].values()]:
        parts = urlsplit(url)
        loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
        if not (parts.scheme == "https" or loopback) or not parts.hostname:
            raise PageError(f"{url!r} in the endpoints file: give an https:// URL (http:// only on loopback)")
    return out


def survey_json(survey: Survey, endpoints: Mapping[str, Any], issuer_key: Mapping[str, str]) -> dict[str, Any]:
    """The page's ``survey.json``: the survey, its questions, where the issuer and each aggregator listen, and
    the issuer's public key the page was published with (``issuer_key``: ``public_key`` base64url SPKI and
    ``token_key_id`` hex). The page refuses to blind a token request under any other key, so an issuer cannot
    hand one respondent a key of their own to recognize their token later (key consistency)."""
    if survey.proofs != "prio3":
        raise PageError(f'survey {survey.id!r} has no proofs: the page sends Prio3 reports (set proofs = "prio3")')
    return {
        "format": PAGE_FORMAT,
        "id": survey.id,
        "title": survey.title or survey.id,
        "digest": survey.digest.hex(),
        "aggregators": [{"name": name} for name in survey.aggregator_names],
        "endpoints": check_endpoints(survey, endpoints),
        "issuer_key": {"public_key": issuer_key["public_key"], "token_key_id": issuer_key["token_key_id"]},
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
    html = (dist / "index.html").read_text()
    if CONNECT_ANY not in html:
        raise PageError(f"{dist / 'index.html'} has no connect-src to narrow: rebuild it with `make web`")
    (out / "index.html").write_text(html.replace(CONNECT_ANY, _connect_src(description["endpoints"])))
    (out / "survey.json").write_text(json.dumps(description, indent=1) + "\n")
    return out


def _connect_src(endpoints: Mapping[str, Any]) -> str:
    """The page's Content-Security-Policy connect-src: its own origin, the issuer and the aggregators only."""
    urls = [endpoints["issuer"], *endpoints["aggregators"].values()]
    origins = sorted({f"{u.scheme}://{u.netloc}" for u in map(urlsplit, urls)})
    return "connect-src 'self' " + " ".join(origins)


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


# -- the `mpcdp survey serve-page` command ----------------------------------------------

HELP = "write the survey's web page to a folder, or serve it over HTTPS"
DESCRIPTION = "\n\n".join(
    (
        "The survey's web page for respondents: it shows the questions and, in plain words, what is protected; "
        "randomizes each answer on the respondent's device (the survey's local mechanisms, with the same exact "
        "parameters as `mpcdp survey submit`), proves and splits it with Prio3 (one report per aggregator), "
        "exchanges the respondent's invitation for an anonymous single-use token (blind RSA: the issuer cannot "
        "link the token to the invitation), uploads each report to its aggregator over HTTPS and shows a "
        "receipt. A reload or a network error resends the same submission, which is never counted twice.",
        "--endpoints is the endpoints file (the issuer's and each aggregator's HTTPS base URL). The page's "
        "origin (https://HOST:PORT of this server, or your static host's) must be in every aggregator's and the "
        "issuer's --cors-origin. Give respondents the page's address with their code: "
        "https://HOST:PORT/#invitation=CODE (after the #, the code reaches no server's log).",
        "With --out DIR the page is written to DIR for any static host (HTTPS) and the command exits; otherwise "
        "it is served at --listen until Ctrl-C or SIGTERM, over HTTPS with --https-cert/--https-key, or over "
        "plain HTTP with --insecure (loopback experiments only: nothing protects the page's code then).",
    )
)
EXAMPLES = (
    "mpcdp survey serve-page --survey examples/election_poll.toml --endpoints endpoints.json "
    "--issuer-key tokens/issuer.json --out site/",
    "mpcdp survey serve-page --survey examples/election_poll.toml --endpoints endpoints.json "
    "--issuer-key tokens/issuer.json --listen 0.0.0.0:8443 --https-cert page.pem --https-key page.key",
)


def register(sp: Any, guard: Any, formatter: Any, examples: Any) -> None:
    """Add ``serve-page`` to the ``mpcdp survey`` subcommands (``guard`` turns errors into messages)."""
    g = sp.add_parser(
        "serve-page", help=HELP, formatter_class=formatter, description=DESCRIPTION, epilog=examples(*EXAMPLES)
    )
    g.add_argument("--survey", required=True, help="the survey file (TOML)")
    g.add_argument("--endpoints", required=True, metavar="JSON", help="the endpoints file (issuer and aggregator URLs)")
    g.add_argument(
        "--issuer-key",
        required=True,
        metavar="ISSUER_JSON",
        help="the survey's issuer public key (issuer.json from `survey invite`, as the aggregators get it): the page "
        "uses no other key",
    )
    g.add_argument("--out", metavar="DIR", help="write the page to this folder and exit (for any static host)")
    g.add_argument(
        "--listen", default="127.0.0.1:8443", metavar="HOST:PORT", help="where to serve (default %(default)s)"
    )
    g.add_argument("--https-cert", metavar="PEM", help="the page server's certificate chain")
    g.add_argument("--https-key", metavar="PEM", help="the page server's private key")
    g.add_argument("--insecure", action="store_true", help="plain HTTP (loopback experiments only)")
    g.set_defaults(run=guard(run))


def _issuer_key(path: str, survey: Survey) -> dict[str, str]:
    """The issuer public key file (``issuer.json`` from ``mpcdp survey invite``) as the page pins it."""
    from services.survey.admission import AdmissionError, public_key_document, read_public_key

    try:
        survey_id, key = read_public_key(path)
    except AdmissionError as exc:
        raise PageError(str(exc)) from None
    if survey_id != survey.id:
        raise PageError(f"{path} is the issuer key of survey {survey_id!r}, not {survey.id!r}")
    return public_key_document(survey_id, key)


def _tls(cert: str | None, key: str | None) -> ssl.SSLContext:
    if not cert or not key:
        raise PageError("give --https-cert and --https-key (or --out DIR for a static host, or --insecure)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def run(args: Any) -> int:
    """``mpcdp survey serve-page``: write the page, then serve it unless ``--out`` was given."""
    try:
        return _serve(args)
    except PageError as exc:
        print(f"mpcdp survey serve-page: {exc}", file=sys.stderr)
        return 1


def _serve(args: Any) -> int:
    import signal
    import tempfile

    from mpcdp.survey.definition import read_survey

    survey = read_survey(args.survey)

    try:
        endpoints = json.loads(Path(args.endpoints).read_text())
    except (OSError, ValueError) as exc:
        raise PageError(f"cannot read the endpoints file {args.endpoints}: {exc}") from None
    if not isinstance(endpoints, dict):
        raise PageError(f"the endpoints file {args.endpoints} must hold a JSON object")
    description = survey_json(survey, endpoints, _issuer_key(args.issuer_key, survey))
    if args.out:
        folder = write_page(survey, Path(args.out), description)
        print(f"survey page written to {folder}/ (serve it over HTTPS; its origin must be in --cors-origin)")
        return 0
    host, _, port = args.listen.rpartition(":")
    if not port.isdigit() or not host:
        raise PageError(f"--listen must be HOST:PORT, got {args.listen!r}")
    if args.insecure and host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        raise PageError("--insecure serves plain HTTP: only on loopback (--listen 127.0.0.1:PORT); use HTTPS elsewhere")
    tls = None if args.insecure else _tls(args.https_cert, args.https_key)
    with tempfile.TemporaryDirectory(prefix="mpcdp-page-") as tmp:
        write_page(survey, Path(tmp), description)
        server = serve_page(Path(tmp), host, int(port), tls)
        scheme = "http" if tls is None else "https"
        bound = server.server_address[1]
        print(f"survey page at {scheme}://{host}:{bound}/  (respondents: {scheme}://{host}:{bound}/#invitation=CODE)")
        if tls is None:
            print("warning: plain HTTP (--insecure): for loopback experiments only", file=sys.stderr)
        sys.stdout.flush()
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        server.shutdown()
    return 0
