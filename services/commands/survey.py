"""``mpcdp survey``: secure surveys and polls (local DP + secret sharing + central DP).

Who sees what: a respondent's device first randomises each answer with the
question's local DP mechanism (so even all aggregators together would learn
only a noisy answer), then splits it into one additive share per aggregator,
each run by an independent organisation. An aggregator stores shares durably
and sees only random-looking numbers; at close it releases only its sum over
the submissions every aggregator holds, plus its piece of the central DP
noise. The coordinator adds those sums and debiases: it learns noisy totals,
never an answer. The epsilons (local and central, per question), the
aggregators and the minimum number of respondents are set in the survey file.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.commands import (
    Formatter,
    add_insecure_flag,
    add_node_arguments,
    address,
    at_least,
    configure_audit,
    examples,
    level,
    node_limits,
    positive,
)
from services.survey import page as survey_page
from services.survey import tokens_cli
from services.survey.limits import MAX_CALLS as AGGREGATOR_MAX_CALLS
from services.survey.limits import MAX_MESSAGE as AGGREGATOR_MAX_MESSAGE
from services.survey.limits import MAX_STREAMS as AGGREGATOR_MAX_STREAMS

if TYPE_CHECKING:
    from mpcdp.survey.definition import Survey
    from mpcdp.survey.release import QuestionResult
    from services.survey.budget import SurveyLedger

# The survey library, grpc and the servers are imported in the functions that run them: `mpcdp survey --help`
# (and `mpcdp --help`) register the subcommands without loading them.

SURVEY = "examples/election_poll.toml"
ANSWERS = '{"will_vote": true, "vote": "Greens", "issues": ["climate"], "salary": 52000}'
STDOUT = "-"


def _identity(args, default_name: str):
    from mpcdp.survey.definition import SurveyError
    from services.tls import Identity, warn_insecure

    if args.insecure:
        warn_insecure()
        return Identity(args.name or default_name, None, True)
    if not args.certs:
        raise SurveyError("give --certs DIR (the federation's certificates) or --insecure", source="command line")
    return Identity(args.name or default_name, Path(args.certs))


def results_document(
    survey: Survey, results: list[QuestionResult], truth: dict | None, level: float, coordinator=None
) -> dict:
    """The release as a document; a verified survey's also says how many reports failed verification."""
    questions = []
    for r in results:
        d = r.as_dict(level)
        if truth is not None:
            for e, t in zip(d["estimates"], truth[r.question], strict=True):
                e["truth"] = t
        questions.append(d)
    doc = {"survey": survey.id, "title": survey.title, "questions": questions}
    verification = getattr(coordinator, "verification", None)
    if verification is not None:
        doc["verification"] = verification.as_dict()
    return doc


def format_results(doc: dict) -> str:
    lines = []
    v = doc.get("verification")
    if v is not None:
        lines.append(
            f"verified: counted {v['counted']} reports; rejected: {v['rejected']} reports failed "
            f"verification; {v['malformed']} malformed; {v['incomplete']} not held by every aggregator"
        )
    for q in doc["questions"]:
        eps = [
            f"local eps {q['local_epsilon']:.4g}" if q["local_epsilon"] else "no local DP",
            f"central eps {q['central_epsilon']:.4g}" if q["central_epsilon"] else "no central noise",
        ]
        if q["central_delta"]:
            eps[-1] += f", delta {q['central_delta']:g}"
        lines.append(f"{q['question']} ({q['kind']}, {q['respondents']} respondents; {'; '.join(eps)})")
        level = round(q["ci_level"] * 100)
        for e in q["estimates"]:
            lo, hi = e["ci"]
            truth = f"   truth {e['truth']:.4g}" if "truth" in e else ""
            lines.append(
                f"  {e['label']:<16} {e['value']:>12.4g}   {level}% CI [{lo:.4g}, {hi:.4g}]{truth}"
                + ("   (!)" if e.get("outside_range") else "")
            )
        if any(e.get("outside_range") for e in q["estimates"]):
            lo, hi = q.get("range", (0, 1))
            lines.append(
                f"  (!) outside [{lo:g}, {hi:g}], where the true value lies: the noise pushed it there. "
                "Reported unclipped, with its full interval; read it as near the edge."
            )
    return "\n".join(lines)


# -- aggregator -----------------------------------------------------------------


def _with_peers(survey: Survey, peers: dict[str, str]) -> Survey:
    """The survey with the other aggregators reached at ``peers`` (name -> address) instead of the file's."""
    return dataclasses.replace(
        survey,
        aggregators=tuple(dataclasses.replace(a, address=peers.get(a.name, a.address)) for a in survey.aggregators),
    )


def _peer(text: str) -> tuple[str, str]:
    name, sep, addr = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=HOST:PORT, got {text!r}")
    return name, address(addr)


def _survey_ledger(args) -> SurveyLedger:
    """This aggregator's ledger of survey releases: ``--ledger``, else beside an SQLite store, else (memory or
    PostgreSQL store) ``NAME.ledger.db`` in the working directory."""
    from services.survey.budget import SurveyLedger

    if args.ledger:
        return SurveyLedger(args.ledger)
    store = args.store or f"{args.name}.survey.db"
    if store == "memory" or store.startswith(("postgresql://", "postgres://")):
        return SurveyLedger(f"{args.name}.ledger.db")
    return SurveyLedger(Path(store.removeprefix("sqlite://")).with_suffix(".ledger.db"))


def run_aggregator(args) -> int:
    from mpcdp.prg import Prg, system_random
    from mpcdp.survey.definition import SurveyError, read_survey
    from services.server import serve_until_stopped
    from services.survey.aggregator import AggregatorService
    from services.survey.store import open_store
    from services.wire.mpcdp.v1 import survey_pb2, survey_pb2_grpc

    surveys = {s.id: s for s in (read_survey(p) for p in args.survey)}
    first = next(iter(surveys.values()))
    listen = args.listen or {a.name: a.address for a in first.aggregators}.get(args.name)
    if listen is None:
        raise SurveyError(f"{args.name!r} is not an aggregator of this survey", source=args.survey[0])
    identity = _identity(args, args.name)
    if not args.insecure:
        identity.server_credentials()  # missing certificates: say so before opening the store
    try:
        store = open_store(args.store or f"{args.name}.survey.db", args.pg_schema)
    except Exception as exc:  # sqlite3 or psycopg: the URL may hold a password, so it is not echoed
        raise SurveyError(f"cannot open the share store: {type(exc).__name__}: {exc}", source="--store") from None

    def noise_rng(survey: Survey):
        if args.noise_seed is None:
            return system_random(f"survey-noise/{args.name}")
        return Prg(int(args.noise_seed).to_bytes(32, "big"), survey.digest, f"survey-noise/{args.name}")

    servicers = []
    reports = None
    if any(s.verified for s in surveys.values()):  # verified surveys: reports, verdicts, the verifier
        from services.survey.reports import RoutedStore, open_report_store
        from services.survey.verifier import VerifierService

        try:
            reports = open_report_store(args.store or f"{args.name}.survey.db", args.pg_schema)
        except ValueError as exc:
            raise SurveyError(str(exc), source="--store") from None
        store = RoutedStore(store, reports, surveys, args.name)
        peers = dict(args.peer or ())
        verifier = VerifierService(
            args.name,
            {k: _with_peers(v, peers) for k, v in surveys.items()},
            reports,
            identity,
            args.coordinator,
            args.insecure,
        )
        servicers.append(
            (
                survey_pb2_grpc.add_SurveyVerifierServicer_to_server,
                verifier,
                survey_pb2.DESCRIPTOR.services_by_name["SurveyVerifier"].full_name,
            )
        )
    admissions = tokens_cli.admit(args, surveys, reports)  # --issuer-key: admitted by token only
    service = AggregatorService(
        args.name, surveys, store, noise_rng, args.coordinator, args.insecure, ledger=_survey_ledger(args)
    )
    name = survey_pb2.DESCRIPTOR.services_by_name["SurveyAggregator"].full_name
    configure_audit(args, args.name)

    async def cleanup():
        store.shutdown()

    grpc_server = serve_until_stopped(
        identity,
        listen,
        [(survey_pb2_grpc.add_SurveyAggregatorServicer_to_server, service, name), *servicers],
        f"aggregator {args.name} serving {', '.join(surveys)} on port {{port}}",
        cleanup,
        dataclasses.replace(node_limits(args), max_concurrent_rpcs=args.max_calls),
    )
    sources = {survey_id: Path(p).read_text() for survey_id, p in zip(surveys, args.survey, strict=True)}
    return asyncio.run(tokens_cli.with_https(args, grpc_server, surveys, sources, reports, admissions))


# -- respondent ------------------------------------------------------------------


def run_submit(args) -> int:
    from mpcdp.survey.definition import read_survey
    from mpcdp.survey.respondent import PreparedSubmission, SurveyClient
    from services.survey.files import write_private
    from services.survey.transport import GrpcTransport

    survey = read_survey(args.survey)
    identity = None if args.invitation else _identity(args, "respondents")  # with an invitation: a token
    if identity is not None and not args.insecure:
        identity.channel_credentials()  # missing certificates: say so before preparing anything
    outbox = Path(args.outbox or f"{args.answers}.pending.json")
    if outbox.exists():
        prepared = PreparedSubmission.from_json(outbox.read_text())
        print(f"resending the pending submission in {outbox} (same id: it is counted once)")
    else:
        try:
            answers = json.loads(Path(args.answers).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"mpcdp survey submit: --answers: cannot read a JSON answer sheet: {exc}", file=sys.stderr)
            return 2
        prepared = SurveyClient(survey).prepare(answers)
        write_private(outbox, prepared.to_json())  # every share of this respondent: owner-only
    if identity is None:
        tokens_cli.deliver_https(args, survey, prepared, outbox)
    else:
        transport = GrpcTransport(identity, survey, timeout=args.timeout)

        async def send():
            try:
                await SurveyClient(survey, transport).deliver([prepared], attempts=args.attempts)
            finally:
                await transport.close()

        asyncio.run(send())
    outbox.unlink()
    print(f"submitted to {len(survey.aggregators)} aggregators")
    return 0


# -- coordinator -----------------------------------------------------------------


def run_close(args) -> int:
    from mpcdp.survey.definition import read_survey
    from services.survey.collector import coordinator_for

    survey = read_survey(args.survey)
    coordinator = coordinator_for(_identity(args, "coordinator"), survey, timeout=args.timeout)

    async def close():
        try:
            return await coordinator.close_and_release()
        finally:
            await coordinator.close()

    doc = results_document(survey, asyncio.run(close()), None, args.level, coordinator)
    _emit(doc, args)
    return 0


def _info(args):
    """Where progress messages go: stderr when the results themselves go to stdout as JSON."""
    return sys.stderr if args.json == STDOUT else sys.stdout


def _emit(doc: dict, args) -> None:
    if args.json == STDOUT:
        print(json.dumps(doc, indent=2))
    else:
        print(format_results(doc))
        if args.json:
            Path(args.json).write_text(json.dumps(doc, indent=2))
            print(f"results written to {args.json}")
    if getattr(args, "plot", None):
        plot_results(doc, args.plot)
        print(f"plot written to {args.plot}", file=_info(args))


# -- simulation ------------------------------------------------------------------


def run_simulate(args) -> int:
    from tqdm import tqdm

    from mpcdp.prg import Prg, system_random
    from mpcdp.survey.definition import SurveyError, read_survey
    from mpcdp.survey.forged import forged_submissions
    from mpcdp.survey.respondent import SurveyClient
    from mpcdp.survey.synthetic import synthetic_answers
    from services.survey.collector import coordinator_for
    from services.survey.simulation import COORDINATOR, RESPONDENTS, LocalSurvey

    survey = read_survey(args.survey)
    rng = Prg.from_int(args.seed, "survey-simulate") if args.seed is not None else system_random("simulate")
    sheets, truth = synthetic_answers(survey, args.respondents, rng)
    client_rng = Prg.from_int(args.seed, "survey-respondents") if args.seed is not None else None
    prepared = SurveyClient(survey, rng=client_rng).prepare_many(sheets)
    if args.forged:
        if not survey.verified:
            raise SurveyError(
                '--forged needs a survey whose reports carry proofs: set proofs = "prio3" in '
                "[survey] (without proofs a forged share is counted as it is)",
                source=args.survey,
            )
        prepared += forged_submissions(
            survey,
            args.forged,
            Prg.from_int(args.seed, "survey-forged") if args.seed is not None else system_random("forged"),
        )
    workdir = Path(tempfile.mkdtemp(prefix="mpcdp-survey-"))
    info = _info(args)
    mode = "plaintext: --insecure" if args.insecure else "mutual TLS, fresh certificates"
    print(
        f"starting {len(survey.aggregators)} aggregator processes on loopback ({mode}; store: {args.store})", file=info
    )
    try:
        if survey.verified:  # admitted the way real respondents are: invitation -> token -> HTTPS
            run_local, deliver, admission = _token_admission(args, survey, prepared, workdir, info)
        else:
            run_local = LocalSurvey(survey, Path(args.survey), workdir, args.store, args.insecure, args.seed)
            print(f"respondents admitted by the shared {RESPONDENTS!r} client certificate over gRPC", file=info)
            admission = None
        with run_local as run:
            coordinator = coordinator_for(run.identity(COORDINATOR), run.survey)

            async def go():
                bar = tqdm(
                    total=len(prepared) * len(survey.aggregators), unit="share", desc="submitting", disable=args.quiet
                )
                try:
                    if admission is None:
                        transport = run.transport()
                        try:
                            await SurveyClient(run.survey, transport).deliver(
                                prepared, batch_size=args.batch, on_ack=lambda _name, k: bar.update(k)
                            )
                        finally:
                            await transport.close()
                    else:
                        await deliver(run, lambda _name, k: bar.update(k))
                    bar.close()
                    results = await coordinator.close_and_release()
                    if admission is not None:
                        admission["spent_tokens"] = run.spent_tokens()
                    return results
                finally:
                    await coordinator.close()

            results = asyncio.run(go())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    doc = results_document(survey, results, truth, args.level, coordinator)
    if admission is not None:
        doc["admission"] = admission
    _emit(doc, args)
    return 0


def _token_admission(args, survey: Survey, prepared, workdir: Path, info):
    """A verified survey's simulation: an issuer, one invitation per respondent (forged ones too) redeemed for
    a token, aggregators admitting by token with their HTTPS intake, and reports sent in batches with tokens."""
    from mpcdp.prg import Prg, system_random
    from mpcdp.survey.respondent import SurveyClient
    from services.survey.admission import ISSUER_PUBLIC, IssuerDir
    from services.survey.https_client import HttpsTransport, http_client
    from services.survey.https_local import HttpsLocalSurvey, redeem_invitations

    issuer = IssuerDir(workdir / "tokens", survey, create=True)
    rng = Prg.from_int(args.seed, "survey-tokens") if args.seed is not None else system_random("tokens")
    tokens = redeem_invitations(issuer, prepared, rng)
    print(
        f"respondents admitted by anonymous tokens: {len(tokens)} one-time invitations redeemed at the survey's "
        f"issuer (blind RSA), reports sent with their tokens over {'HTTP' if args.insecure else 'HTTPS'} "
        f"in batches of up to {args.batch} (/reports/batch); no client certificate",
        file=info,
    )
    unlimited = ("--rate", "1000000", "--burst", "1000000")  # one loopback client sends every respondent's reports
    run = HttpsLocalSurvey(
        survey,
        Path(args.survey),
        workdir,
        issuer.path / ISSUER_PUBLIC,
        unlimited,
        store=args.store,
        insecure=args.insecure,
        noise_seed=args.seed,
    )

    async def deliver(run: HttpsLocalSurvey, on_ack) -> None:
        ca = None if run.certs is None else run.certs / "ca.pem"
        async with http_client(ca, args.insecure) as client:
            transport = HttpsTransport(client, run.urls(), tokens, check_names=ca is not None)
            await SurveyClient(run.survey, transport).deliver(prepared, batch_size=args.batch, on_ack=on_ack)

    return run, deliver, {"by": "token", "invitations": len(tokens), "transport": "https"}


# -- pictures --------------------------------------------------------------------


def plot_results(doc: dict, path: str) -> None:
    """One panel per question: each estimate with its interval, and the truth where known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    questions = doc["questions"]
    heights = [1 + 0.35 * len(q["estimates"]) for q in questions]
    fig, axes = plt.subplots(
        len(questions), 1, figsize=(8, 1.2 + sum(heights)), squeeze=False, gridspec_kw={"height_ratios": heights}
    )
    for ax, q in zip(axes[:, 0], questions, strict=True):
        labels = [e["label"] for e in q["estimates"]]
        values = [e["value"] for e in q["estimates"]]
        lows = [e["value"] - e["ci"][0] for e in q["estimates"]]
        highs = [e["ci"][1] - e["value"] for e in q["estimates"]]
        ys = list(range(len(labels)))
        outside = [bool(e.get("outside_range")) for e in q["estimates"]]
        for flag, color, label in (
            (False, "tab:blue", f"estimate, {round(q['ci_level'] * 100)}% interval"),
            (True, "tab:orange", "pushed outside the possible range by noise"),
        ):
            pick = [i for i in ys if outside[i] == flag]
            if pick:
                ax.errorbar(
                    [values[i] for i in pick],
                    pick,
                    xerr=[[lows[i] for i in pick], [highs[i] for i in pick]],
                    fmt="o",
                    color=color,
                    capsize=4,
                    label=label,
                )
        if any(outside):
            ax.axvspan(*q.get("range", (0, 1)), color="0.95", zorder=0)  # where the true value lies
        if all("truth" in e for e in q["estimates"]):
            ax.plot([e["truth"] for e in q["estimates"]], ys, "x", color="tab:red", markersize=9, label="truth")
        ax.set_yticks(ys, labels)
        ax.invert_yaxis()
        eps = [
            f"local ε={q['local_epsilon']:.3g}" if q["local_epsilon"] else "no local DP",
            f"central ε={q['central_epsilon']:.3g}" if q["central_epsilon"] else "no central noise",
        ]
        ax.set_title(f"{q['question']} — {q['unit']}, n={q['respondents']} ({', '.join(eps)})", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    legend: dict[str, Any] = {}
    for ax in axes[:, 0]:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(name, handle)
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=len(legend), fontsize=9)
    fig.suptitle(doc.get("title") or doc["survey"])
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_report(args) -> int:
    try:
        doc = json.loads(Path(args.results).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"mpcdp survey report: --results: cannot read a results file: {exc}", file=sys.stderr)
        return 2
    print(format_results(doc))
    if args.plot:
        plot_results(doc, args.plot)
        print(f"plot written to {args.plot}")
    return 0


# -- wiring ----------------------------------------------------------------------


def _guard(fn):
    def run(args) -> int:
        import grpc

        from mpcdp.survey.definition import SurveyError
        from mpcdp.survey.release import BelowMinimum
        from mpcdp.survey.respondent import Conflict, Refused, Unavailable
        from mpcdp.survey.sheet import AnswerError

        try:
            return fn(args)
        except (SurveyError, AnswerError, BelowMinimum, Conflict, Refused, Unavailable) as exc:
            print(f"mpcdp survey {args.survey_command}: {exc}", file=sys.stderr)
            return 1
        except RuntimeError as exc:  # an aggregator process that did not start
            print(f"mpcdp survey {args.survey_command}: {exc}", file=sys.stderr)
            return 1
        except grpc.RpcError as exc:  # an aggregator that is down or refused the call
            print(f"mpcdp survey {args.survey_command}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
        except OSError as exc:  # a missing certificate or an unwritable output file
            print(f"mpcdp survey {args.survey_command}: {exc}", file=sys.stderr)
            return 1

    return run


def simulation_store(text: str) -> str:
    """The --store type of ``survey simulate``: sqlite, memory or a PostgreSQL URL."""
    if text in ("sqlite", "memory") or text.startswith(("postgresql://", "postgres://")):
        return text
    raise argparse.ArgumentTypeError(f"must be sqlite, memory or postgresql://..., got {text!r}")


def _tls_flags(p, default_name: str) -> None:
    p.add_argument(
        "--certs", help="folder with ca.pem, <name>.pem and <name>.key: your TLS identity (required unless --insecure)"
    )
    p.add_argument("--name", help=f"your certificate name (default: {default_name})")
    add_insecure_flag(p, "read the shares")
    p.add_argument("--timeout", type=positive, default=120.0, help="seconds per RPC (default 120)")


def _json_flag(p, what: str) -> None:
    p.add_argument(
        "--json",
        metavar="PATH",
        help=f"write {what} as JSON to PATH, or print only the JSON to stdout with `--json -` "
        f"(for scripts; default: text only)",
    )


def _level_flag(p) -> None:
    p.add_argument(
        "--level", type=level, default=0.95, help="confidence level of the intervals, between 0 and 1 (default 0.95)"
    )


def register(sub) -> None:
    p = sub.add_parser(
        "survey",
        help="secure surveys and polls: aggregate, submit, close, simulate, report",
        description=__doc__,
        formatter_class=Formatter,
        epilog=examples(
            f"mpcdp survey simulate --survey {SURVEY} --respondents 20000 --seed 1",
            f"mpcdp survey simulate --survey {SURVEY} --respondents 100000 --json results.json",
            "mpcdp survey report --results results.json --plot results.png",
        ),
    )
    sp = p.add_subparsers(dest="survey_command", metavar="SUBCOMMAND", required=True)

    a = sp.add_parser(
        "aggregator",
        help="run an aggregator node (stores shares durably, releases once)",
        formatter_class=Formatter,
        description="Run one aggregator of a survey until Ctrl-C or SIGTERM. It accepts respondents' shares, "
        "stores each durably before acknowledging it (a retried submission is stored once), and at "
        "close gives the coordinator only its sum over the submissions every aggregator holds, plus "
        "its piece of the central DP noise. A share on its own is uniformly random: an aggregator "
        "learns nothing about any answer.",
        epilog=examples(
            f"mpcdp survey aggregator --survey {SURVEY} --name pollster-a --insecure --store memory   "
            "# and pollster-b, university-c",
            f"mpcdp survey aggregator --survey {SURVEY} --name pollster-a --certs certs/ "
            "--store sqlite://pollster-a.db",
        ),
    )
    a.add_argument(
        "--survey", action="append", required=True, help="survey file (TOML); repeat to serve several surveys"
    )
    a.add_argument(
        "--name", required=True, help="this aggregator's name in the survey file (also its certificate name)"
    )
    a.add_argument("--listen", type=address, help="address to bind instead of the survey file's (e.g. 0.0.0.0:7311)")
    a.add_argument(
        "--store",
        help="where shares are kept: sqlite://PATH, postgresql://... or memory "
        "(lost on exit) (default: sqlite file <name>.survey.db)",
    )
    a.add_argument("--pg-schema", default="public", help="PostgreSQL schema for the tables (default public)")
    a.add_argument(
        "--ledger",
        metavar="FILE",
        help="privacy ledger of survey releases: each release is charged there once, per replaced "
        "respondent (default: beside an SQLite store, else NAME.ledger.db here)",
    )
    a.add_argument(
        "--peer",
        type=_peer,
        action="append",
        metavar="NAME=HOST:PORT",
        help="reach aggregator NAME at HOST:PORT instead of the survey file's address (verified "
        "surveys: the leader calls the others); repeat per aggregator",
    )
    a.add_argument(
        "--coordinator",
        default="coordinator",
        help="the only certificate name allowed to close the survey and receive its sums (default coordinator)",
    )
    a.add_argument(
        "--noise-seed",
        type=at_least(0),
        help="make this node's noise reproducible: simulations and tests only, it voids the "
        "central DP guarantee (default: fresh CSPRNG noise)",
    )
    a.add_argument("--certs", help="folder with ca.pem, <name>.pem and <name>.key (required unless --insecure)")
    add_insecure_flag(a, "read the shares")
    a.add_argument(
        "--max-calls",
        type=at_least(1),
        default=AGGREGATOR_MAX_CALLS,
        metavar="N",
        help="calls in flight on this aggregator at once; more are refused (RESOURCE_EXHAUSTED) and "
        "respondents retry later. With --max-message-mib it bounds the memory waiting batches "
        f"can take (default {AGGREGATOR_MAX_CALLS})",
    )
    add_node_arguments(a)
    tokens_cli.add_aggregator_flags(a)
    mib = AGGREGATOR_MAX_MESSAGE / 2**20
    helps = {  # an aggregator's own defaults: respondents send batches of at most 4 MiB, one stream each
        "--max-message-mib": f"largest message received or sent, in MiB; bounds the memory one batch costs "
        f"(default {mib:g})",
        "--max-streams": f"calls in flight on one connection; more wait in the client (HTTP/2 flow control) "
        f"(default {AGGREGATOR_MAX_STREAMS})",
    }
    for action in a._actions:
        for option, text in helps.items():
            if option in action.option_strings:
                action.help = text
    a.set_defaults(run=_guard(run_aggregator), max_message_mib=mib, max_streams=AGGREGATOR_MAX_STREAMS)

    s = sp.add_parser(
        "submit",
        help="answer a survey: randomise locally, share, send to every aggregator",
        formatter_class=Formatter,
        description="Answer a survey as one respondent. The answer sheet is checked against the survey, each "
        "answer is randomised here with its question's local DP mechanism, then split into one "
        "share per aggregator. The raw answers never leave this machine and each aggregator sees "
        "only a random-looking share. The prepared submission waits in an outbox file until every "
        "aggregator has acknowledged it; a rerun resends it unchanged (same id: counted once).",
        epilog=examples(
            f"echo '{ANSWERS}' > answers.json",
            f"mpcdp survey submit --survey {SURVEY} --answers answers.json --insecure",
            f"mpcdp survey submit --survey {SURVEY} --answers answers.json --certs certs/",
        ),
    )
    s.add_argument("--survey", required=True, help="survey file (TOML): questions, mechanisms, aggregators")
    s.add_argument(
        "--answers", required=True, help="answer sheet: a JSON object mapping every question id to its answer"
    )
    s.add_argument(
        "--outbox",
        help="where the prepared submission waits until delivered "
        "(default <answers>.pending.json); a rerun resends it unchanged",
    )
    s.add_argument("--attempts", type=at_least(1), default=5, help="tries per aggregator (default 5)")
    _tls_flags(s, "respondents")
    tokens_cli.add_submit_flags(s)
    s.set_defaults(run=_guard(run_submit))

    c = sp.add_parser(
        "close",
        help="close a survey, intersect, release and debias (coordinator)",
        formatter_class=Formatter,
        description="Close a survey and publish its estimates (the coordinator's job). Every aggregator lists "
        "the submissions it holds; only those every aggregator holds are counted, so a retried or "
        "half-delivered submission is neither lost nor counted twice. Each aggregator then returns "
        "its sum over exactly that set plus its central noise piece; the sums are added and the "
        "local randomisation debiased. Only noisy totals are seen here, and nothing is released "
        "below the survey's min_respondents.",
        epilog=examples(
            f"mpcdp survey close --survey {SURVEY} --insecure --json results.json",
            f"mpcdp survey close --survey {SURVEY} --certs certs/ --json -   # JSON on stdout",
        ),
    )
    c.add_argument("--survey", required=True, help="survey file (TOML): aggregators and questions")
    _json_flag(c, "the results")
    c.add_argument("--plot", metavar="PNG", help="also draw the estimates and intervals to this PNG file")
    _level_flag(c)
    _tls_flags(c, "coordinator")
    c.set_defaults(run=_guard(run_close))

    m = sp.add_parser(
        "simulate",
        help="aggregators as local processes, synthetic respondents, estimates vs truth",
        formatter_class=Formatter,
        description="Run a whole survey on this machine: one process per aggregator of the survey file "
        "(mutual TLS with fresh certificates unless --insecure), synthetic respondents whose answers "
        "are randomised and shared exactly like real ones, then close, and print each estimate "
        "beside the true value. Shows what the survey's epsilons cost in accuracy before it is "
        "fielded; the respondents are made up, so no one's privacy is at stake.",
        epilog=examples(
            f"mpcdp survey simulate --survey {SURVEY} --respondents 20000 --seed 1",
            f"mpcdp survey simulate --survey {SURVEY} --respondents 100000 --json results.json --plot results.png",
            f"mpcdp survey simulate --survey {SURVEY} --respondents 5000 --store memory --quiet --json -",
            f"mpcdp survey simulate --survey {SURVEY} --respondents 20000 --forged 10",
        ),
    )
    m.add_argument("--survey", required=True, help="survey file (TOML): questions, mechanisms, aggregators")
    m.add_argument(
        "--respondents",
        type=at_least(1),
        default=10_000,
        help="number of synthetic respondents, at least 1; the survey's min_respondents must be met "
        "for a release (default 10000)",
    )
    m.add_argument(
        "--seed", type=at_least(0), help="reproducible respondents, randomisation and noise (default: fresh randomness)"
    )
    m.add_argument(
        "--store",
        type=simulation_store,
        default="sqlite",
        help="aggregators' share stores: sqlite (a file each in a temporary folder), memory or "
        "postgresql://... (default sqlite)",
    )
    m.add_argument("--batch", type=at_least(1), default=1000, help="submissions per streamed batch (default 1000)")
    m.add_argument(
        "--forged",
        type=at_least(0),
        default=0,
        metavar="N",
        help="add N malicious respondents whose reports encode out-of-range answers (a choice counted "
        "10^6 times, two options in one choice, a count of -1, a salary of -10^12) with honestly "
        'made proofs; a survey with proofs = "prio3" rejects every one and says so (default 0)',
    )
    _json_flag(m, "the results (with the truth)")
    m.add_argument("--plot", metavar="PNG", help="also draw the estimates, intervals and truth to this PNG file")
    _level_flag(m)
    m.add_argument(
        "--insecure", action="store_true", help="plaintext channels between the local processes (experiments only)"
    )
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    m.set_defaults(run=_guard(run_simulate))

    tokens_cli.register(sp, _guard, Formatter, examples, address, at_least, SURVEY)
    survey_page.register(sp, _guard, Formatter, examples)

    r = sp.add_parser(
        "report",
        help="print and plot a results file",
        formatter_class=Formatter,
        description="Print a results file written by `survey close --json` or `survey simulate --json`, and "
        "optionally plot each question's estimates with their intervals (and the truth, for a "
        "simulation). It reads only released results, which are already private.",
        epilog=examples("mpcdp survey report --results results.json --plot results.png"),
    )
    r.add_argument(
        "--results", default="results.json", help="results JSON from close or simulate (default results.json)"
    )
    r.add_argument("--plot", metavar="PNG", help="draw each question's estimates and intervals to this PNG file")
    r.set_defaults(run=_guard(run_report))
