"""The token side of ``mpcdp survey``: ``invite``, ``issuer``, the aggregators' HTTPS intake, ``submit --invitation``.

Registered by :mod:`services.commands.survey`; kept here so the survey command stays about surveys.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from services.survey.limits import HttpLimits

if TYPE_CHECKING:
    from mpcdp.survey.definition import Survey

# The libraries of the servers and of the survey definition are imported in the functions that run them:
# `mpcdp survey --help` registers these subcommands and flags without loading them.

ISSUER = "issuer"  # the token endpoint's certificate name in the survey CA (`mpcdp certs init --survey`)


# -- shared flags --------------------------------------------------------------------------------


def add_https_flags(p, serving: str) -> None:
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web origin allowed to call this server from a browser (the survey page's, e.g. "
        "https://poll.example.org); repeat for several (default: none)",
    )
    p.add_argument("--https-cert", help=f"PEM certificate for {serving} (default: <certs>/<name>.pem)")
    p.add_argument("--https-key", help="its PEM private key (default: <certs>/<name>.key)")
    p.add_argument(
        "--endpoints", help="endpoints file (JSON: issuer and aggregator URLs) to publish with the survey's definition"
    )
    p.add_argument(
        "--rate",
        type=float,
        default=HttpLimits.rate,
        help=f"requests per second per client address, sustained (default {HttpLimits.rate:g}); more get 429",
    )
    p.add_argument(
        "--burst",
        type=float,
        default=HttpLimits.burst,
        help=f"requests at once per client address (default {HttpLimits.burst:g})",
    )
    p.add_argument(
        "--per-token",
        type=int,
        default=HttpLimits.per_token,
        help=f"attempts per token or invitation per minute: an outbox's retries, not a flood "
        f"(default {HttpLimits.per_token})",
    )
    p.add_argument(
        "--max-body-kib",
        type=int,
        default=HttpLimits.max_body >> 10,
        help=f"largest report request body, in KiB; larger get 413 (default {HttpLimits.max_body >> 10})",
    )


def _limits(args) -> HttpLimits:
    return HttpLimits(max_body=args.max_body_kib << 10, rate=args.rate, burst=args.burst, per_token=args.per_token)


def _tls_files(args, name: str) -> tuple[Path | None, Path | None]:
    from mpcdp.survey.definition import SurveyError

    if args.insecure:
        return None, None
    if args.https_cert:
        return Path(args.https_cert), Path(args.https_key or args.https_cert)
    if not args.certs:
        raise SurveyError("give --certs DIR, --https-cert/--https-key or --insecure", source="command line")
    return Path(args.certs) / f"{name}.pem", Path(args.certs) / f"{name}.key"


def _endpoints(args) -> dict | None:
    from mpcdp.survey.definition import SurveyError

    if not args.endpoints:
        return None
    try:
        return json.loads(Path(args.endpoints).read_text())
    except (OSError, ValueError) as exc:
        raise SurveyError(f"cannot read the endpoints file: {exc}", source="--endpoints") from None


# -- aggregator ----------------------------------------------------------------------------------


def add_aggregator_flags(a) -> None:
    a.add_argument(
        "--issuer-key",
        action="append",
        default=[],
        metavar="ISSUER_JSON",
        help="the survey's issuer public key (issuer.json written by `mpcdp survey invite`): reports of that "
        "survey are then admitted only with a valid, unused token; repeat per survey",
    )
    a.add_argument(
        "--https",
        metavar="HOST:PORT",
        help="also take reports over HTTPS (HTTP/1.1 and HTTP/2) on this address: for respondents' browsers "
        "and `survey submit --invitation`",
    )
    add_https_flags(a, "the HTTPS intake")


def admit(args, surveys: dict[str, Survey], reports) -> dict:
    """Read every --issuer-key and make the report store admit its survey by token only."""
    from mpcdp.survey.definition import SurveyError
    from services.survey.admission import AdmissionError, admission_for, read_public_key

    admissions = {}
    for path in args.issuer_key:
        try:
            survey_id, key = read_public_key(path)
        except AdmissionError as exc:
            raise SurveyError(str(exc), source="--issuer-key") from None
        survey = surveys.get(survey_id)
        if survey is None:
            raise SurveyError(
                f"{path} is the issuer key of survey {survey_id!r}, not served here", source="--issuer-key"
            )
        if reports is None or not survey.verified:
            raise SurveyError(
                f'survey {survey_id!r}: tokens admit reports of verified surveys (proofs = "prio3") only',
                source="--issuer-key",
            )
        admissions[survey_id] = admission_for(survey, key)
        reports.admit_by_token(admissions[survey_id])
    return admissions


async def with_https(args, grpc_server, surveys: dict[str, Survey], sources: dict[str, str], reports, admissions):
    """Run the gRPC server coroutine, with the HTTPS intake (into the report store) beside it when --https is given."""
    from mpcdp.survey.definition import SurveyError
    from services.survey.http import SurveyHttp, serve

    if not args.https:
        return await grpc_server
    if not admissions:
        grpc_server.close()
        raise SurveyError("--https takes reports of surveys admitted by token: give --issuer-key", source="--https")
    app = SurveyHttp(
        surveys,
        sources,
        aggregator=args.name,
        store=reports,
        admissions=admissions,
        endpoints=_endpoints(args),
        cors_origins=tuple(args.cors_origin),
        limits=_limits(args),
    )
    cert, key = _tls_files(args, args.name)
    shutdown = asyncio.Event()
    task = asyncio.create_task(serve(app.app, args.https, shutdown, cert, key))
    try:
        return await grpc_server
    finally:
        shutdown.set()
        await task


# -- invite --------------------------------------------------------------------------------------


def run_invite(args) -> int:
    from mpcdp.prg import system_random
    from mpcdp.survey.definition import SurveyError, read_survey
    from services.survey.admission import AdmissionError, IssuerDir, default_tokens_dir
    from services.survey.files import write_private

    survey = read_survey(args.survey)
    if not survey.verified:
        raise SurveyError('tokens admit reports of verified surveys only: set proofs = "prio3"', source=args.survey)
    folder = Path(args.tokens) if args.tokens else default_tokens_dir(args.survey, survey)
    try:
        issuer = IssuerDir(folder, survey, create=True)
    except AdmissionError as exc:
        raise SurveyError(str(exc), source="--tokens") from None
    codes = issuer.invitations.create(args.count, system_random("invitations"))
    lines = [f"{args.link}#invitation={c}" if args.link else c for c in codes]
    if args.json:
        text = json.dumps({"survey": survey.id, "invitations": lines}, indent=2)
    else:
        text = "\n".join(lines)
    if args.out:
        write_private(args.out, text + "\n")  # the codes admit respondents: owner-only
    else:
        print(text)
    info = sys.stderr if not args.out else sys.stdout
    print(
        f"{len(codes)} invitations for survey {survey.id!r} ({issuer.invitations.unused()} unused in all; "
        f"only their keyed hashes are kept in {folder / 'invitations.db'}).\n"
        f"Issuer public key: {folder / 'issuer.json'} -- give it to every aggregator (--issuer-key); "
        f"run the token endpoint with `mpcdp survey issuer --survey {args.survey} --tokens {folder} ...`",
        file=info,
    )
    return 0


# -- issuer --------------------------------------------------------------------------------------


def run_issuer(args) -> int:
    from mpcdp.survey.definition import SurveyError, read_survey
    from services.survey.admission import AdmissionError, IssuerDir, default_tokens_dir
    from services.survey.http import SurveyHttp, serve

    survey = read_survey(args.survey)
    folder = Path(args.tokens) if args.tokens else default_tokens_dir(args.survey, survey)
    try:
        issuer = IssuerDir(folder, survey)
    except AdmissionError as exc:
        raise SurveyError(str(exc), source="--tokens") from None
    app = SurveyHttp(
        {survey.id: survey},
        {survey.id: Path(args.survey).read_text()},
        issuers={survey.id: issuer},
        endpoints=_endpoints(args),
        cors_origins=tuple(args.cors_origin),
        limits=_limits(args),
    )
    cert, key = _tls_files(args, args.name)

    async def run():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        scheme = "http" if args.insecure else "https"
        print(f"token issuer of survey {survey.id} serving on {scheme}://{args.listen}", flush=True)
        await serve(app.app, args.listen, stop, cert, key)

    asyncio.run(run())
    return 0


def register(sp, guard, formatter, examples, address, at_least, survey_example: str) -> None:
    """The ``invite`` and ``issuer`` subcommands."""
    i = sp.add_parser(
        "invite",
        help="create one-time invitation codes (each redeemable for one anonymous token)",
        formatter_class=formatter,
        description="Create N one-time invitation codes for a verified survey, one per respondent. A respondent "
        "exchanges a code for a blindly signed token (the issuer cannot link the token to the code or to the "
        "report) and sends the token with the answers: each aggregator admits one report per token. Only a "
        "keyed hash of each code is stored. The first call also creates the survey's issuer key pair in "
        "--tokens; give its issuer.json to every aggregator (--issuer-key).",
        epilog=examples(
            f"mpcdp survey invite --survey {survey_example} --count 1000 --out invitations.txt",
            f"mpcdp survey invite --survey {survey_example} --count 5 --link https://poll.example.org/",
        ),
    )
    i.add_argument("--survey", required=True, help='survey file (TOML) with proofs = "prio3"')
    i.add_argument("--count", type=at_least(1), required=True, help="number of invitations to create")
    i.add_argument(
        "--tokens",
        help="issuer folder: key pair and hashed invitations (default <survey id>.tokens/ beside the survey file)",
    )
    i.add_argument("--link", metavar="URL", help="print links URL#invitation=CODE (the survey page) instead of codes")
    i.add_argument("--out", help="write the invitations to this file, owner-only (default: stdout)")
    i.add_argument("--json", action="store_true", help="write them as a JSON document")
    i.set_defaults(run=guard(run_invite))

    s = sp.add_parser(
        "issuer",
        help="serve the token endpoint: invitation code -> blindly signed token (HTTPS)",
        formatter_class=formatter,
        description="Serve POST /v1/surveys/<id>/tokens over HTTPS (HTTP/1.1 and HTTP/2): a respondent sends an "
        "invitation code and a blinded token request and gets the blind signature back. Each code is good for "
        "one token (the same request retried gets the same answer). Blind RSA (RFC 9474, RFC 9578 token type "
        "2): the issuer never sees the token, so it cannot link it to the code or to the answers.",
        epilog=examples(
            f"mpcdp survey issuer --survey {survey_example} --listen 127.0.0.1:7320 --certs certs/",
            f"mpcdp survey issuer --survey {survey_example} --listen 127.0.0.1:7320 --insecure",
        ),
    )
    s.add_argument("--survey", required=True, help="survey file (TOML)")
    s.add_argument("--tokens", help="issuer folder made by `survey invite` (default <survey id>.tokens/)")
    s.add_argument("--listen", type=address, required=True, help="HOST:PORT to serve on")
    s.add_argument("--certs", help="folder with <name>.pem and <name>.key: this server's TLS certificate")
    s.add_argument("--name", default=ISSUER, help=f"certificate name in --certs (default {ISSUER})")
    s.add_argument("--insecure", action="store_true", help="plain HTTP (loopback experiments only)")
    add_https_flags(s, "the token endpoint")
    s.set_defaults(run=guard(run_issuer))


# -- respondent ----------------------------------------------------------------------------------


def add_submit_flags(s) -> None:
    s.add_argument(
        "--invitation",
        metavar="CODE",
        help="your invitation code: redeem it for an anonymous token and submit over HTTPS with it "
        "(no certificate needed; needs --endpoints)",
    )
    s.add_argument("--endpoints", help="endpoints file (JSON): the issuer's and each aggregator's HTTPS URL")
    s.add_argument("--ca", help="CA certificate to trust for HTTPS (default: the system's; the survey's ca.pem)")
    s.add_argument(
        "--issuer-key",
        metavar="ISSUER_JSON",
        help="the survey's published issuer key (issuer.json): refuse any other key the issuer presents (an "
        "issuer giving you a key of your own could recognise your token)",
    )


def deliver_https(args, survey: Survey, prepared, outbox: Path) -> None:
    """Redeem the invitation (once, kept in <outbox>.token) and send every aggregator its report."""
    from mpcdp.prg import system_random
    from mpcdp.survey.definition import SurveyError
    from mpcdp.survey.respondent import Refused, SurveyClient
    from services.survey.admission import AdmissionError, admission_for, read_public_key
    from services.survey.https_client import HttpsTransport, TokenOutbox, endpoints_of, fetch_issuer_key, http_client

    if not args.endpoints:
        raise SurveyError(
            "--invitation needs --endpoints FILE (the issuer's and aggregators' URLs)", source="command line"
        )
    try:
        endpoints = endpoints_of(args.endpoints)
    except (OSError, ValueError) as exc:
        raise SurveyError(f"cannot read the endpoints file: {exc}", source="--endpoints") from None
    token_box = outbox.with_name(outbox.name + ".token")
    pinned = None
    if args.issuer_key:
        try:
            pinned_survey, pinned = read_public_key(args.issuer_key)
        except AdmissionError as exc:
            raise SurveyError(str(exc), source="--issuer-key") from None
        if pinned_survey != survey.id:
            raise SurveyError(f"{args.issuer_key} is the issuer key of survey {pinned_survey!r}", source="--issuer-key")

    async def go():
        async with http_client(Path(args.ca) if args.ca else None, args.insecure, args.timeout) as client:
            issuer_name = ISSUER if args.ca else None  # the survey CA names its nodes, not their addresses
            key = await fetch_issuer_key(client, endpoints["issuer"], survey, issuer_name)
            if pinned is not None and key.spki != pinned.spki:
                raise Refused(
                    "the issuer presents another key than the survey's published one (--issuer-key): not redeeming"
                )
            admission = admission_for(survey, key)
            token = await TokenOutbox(token_box, admission, prepared.submission_id, issuer_name).token(
                client, endpoints["issuer"], args.invitation, system_random("token")
            )
            tokens = {prepared.submission_id: token}
            transport = HttpsTransport(client, endpoints["aggregators"], tokens, check_names=bool(args.ca))
            await SurveyClient(survey, transport).deliver([prepared], attempts=args.attempts)

    asyncio.run(go())
    token_box.unlink(missing_ok=True)
