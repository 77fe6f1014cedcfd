"""``mpcdp survey``: secure surveys and polls (local DP + secret sharing + central DP).

    mpcdp survey simulate --survey examples/election_poll.toml --respondents 100000 --json results.json
    mpcdp survey report --results results.json --plot results.png
    mpcdp survey aggregator --survey s.toml --name pollster-a --store postgresql://... --certs certs/
    mpcdp survey submit --survey s.toml --answers answers.json --certs certs/ --name respondents
    mpcdp survey close --survey s.toml --certs certs/ --json results.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path

from mpcdp.client import Conflict, PreparedSubmission, Refused, SurveyClient, Unavailable
from mpcdp.prg import Prg, system_random
from mpcdp.survey.definition import Survey, SurveyError, parse_survey
from mpcdp.survey.release import BelowMinimum, QuestionResult
from mpcdp.survey.sheet import AnswerError
from mpcdp.survey.synthetic import synthetic_answers


def load_survey(path: str) -> Survey:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SurveyError(f"cannot read: {exc.strerror}", source=path) from None
    return parse_survey(text, path)


def _identity(args, default_name: str):
    from services.tls import Identity, warn_insecure

    if args.insecure:
        warn_insecure()
        return Identity(args.name or default_name, None, True)
    if not args.certs:
        raise SurveyError("give --certs DIR (the federation's certificates) or --insecure", source="command line")
    return Identity(args.name or default_name, Path(args.certs))


def results_document(survey: Survey, results: list[QuestionResult], truth: dict | None, level: float) -> dict:
    questions = []
    for r in results:
        d = r.as_dict(level)
        if truth is not None:
            for e, t in zip(d["estimates"], truth[r.question]):
                e["truth"] = t
        questions.append(d)
    return {"survey": survey.id, "title": survey.title, "questions": questions}


def format_results(doc: dict) -> str:
    lines = []
    for q in doc["questions"]:
        eps = [f"local eps {q['local_epsilon']:.4g}" if q["local_epsilon"] else "no local DP",
               f"central eps {q['central_epsilon']:.4g}" if q["central_epsilon"] else "no central noise"]
        if q["central_delta"]:
            eps[-1] += f", delta {q['central_delta']:g}"
        lines.append(f"{q['question']} ({q['kind']}, {q['respondents']} respondents; {'; '.join(eps)})")
        level = int(round(q["ci_level"] * 100))
        for e in q["estimates"]:
            lo, hi = e["ci"]
            truth = f"   truth {e['truth']:.4g}" if "truth" in e else ""
            lines.append(f"  {e['label']:<16} {e['value']:>12.4g}   {level}% CI [{lo:.4g}, {hi:.4g}]{truth}")
    return "\n".join(lines)


# -- aggregator -----------------------------------------------------------------


def run_aggregator(args) -> int:
    from services.server import serve_until_stopped
    from services.survey.aggregator import AggregatorService
    from services.survey.store import open_store
    from services.wire.mpcdp.v1 import survey_pb2, survey_pb2_grpc

    surveys = {s.id: s for s in (load_survey(p) for p in args.survey)}
    first = next(iter(surveys.values()))
    listen = args.listen or {a.name: a.address for a in first.aggregators}.get(args.name)
    if listen is None:
        raise SurveyError(f"{args.name!r} is not an aggregator of this survey", source=args.survey[0])
    identity = _identity(args, args.name)
    store = open_store(args.store or f"{args.name}.survey.db", args.pg_schema)

    def noise_rng(survey: Survey):
        if args.noise_seed is None:
            return system_random(f"survey-noise/{args.name}")
        return Prg(int(args.noise_seed).to_bytes(32, "big"), survey.digest, f"survey-noise/{args.name}")

    service = AggregatorService(args.name, surveys, store, noise_rng, args.coordinator, args.insecure)
    name = survey_pb2.DESCRIPTOR.services_by_name["SurveyAggregator"].full_name

    async def cleanup():
        store.shutdown()

    return asyncio.run(serve_until_stopped(
        identity, listen, [(survey_pb2_grpc.add_SurveyAggregatorServicer_to_server, service, name)],
        f"aggregator {args.name} serving {', '.join(surveys)} on port {{port}}", cleanup))


# -- respondent ------------------------------------------------------------------


def run_submit(args) -> int:
    from services.survey.transport import GrpcTransport

    survey = load_survey(args.survey)
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
        outbox.write_text(prepared.to_json())
    transport = GrpcTransport(_identity(args, "respondents"), survey, timeout=args.timeout)

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
    from services.survey.transport import CoordinatorClient

    survey = load_survey(args.survey)
    coordinator = CoordinatorClient(_identity(args, "coordinator"), survey, timeout=args.timeout)

    async def close():
        try:
            return await coordinator.close_and_release()
        finally:
            await coordinator.close()

    doc = results_document(survey, asyncio.run(close()), None, args.level)
    _emit(doc, args)
    return 0


def _emit(doc: dict, args) -> None:
    print(format_results(doc))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2))
        print(f"results written to {args.json}")
    if getattr(args, "plot", None):
        plot_results(doc, args.plot)
        print(f"plot written to {args.plot}")


# -- simulation ------------------------------------------------------------------


def run_simulate(args) -> int:
    from tqdm import tqdm

    from services.survey.simulation import LocalSurvey

    survey = load_survey(args.survey)
    if args.respondents < 1:
        raise SurveyError(f"--respondents must be at least 1, got {args.respondents}", source="command line")
    rng = Prg.from_int(args.seed, "survey-simulate") if args.seed is not None else system_random("simulate")
    sheets, truth = synthetic_answers(survey, args.respondents, rng)
    client_rng = Prg.from_int(args.seed, "survey-respondents") if args.seed is not None else None
    prepared = SurveyClient(survey, rng=client_rng).prepare_many(sheets)
    workdir = Path(tempfile.mkdtemp(prefix="mpcdp-survey-"))
    mode = "plaintext: --insecure" if args.insecure else "mutual TLS, fresh certificates"
    print(f"starting {len(survey.aggregators)} aggregator processes on loopback ({mode}; store: {args.store})")
    try:
        with LocalSurvey(survey, Path(args.survey), workdir, args.store, args.insecure, args.seed) as run:
            transport = run.transport()
            coordinator = run.coordinator()

            async def go():
                bar = tqdm(total=len(prepared) * len(survey.aggregators), unit="share", desc="submitting",
                           disable=args.quiet)
                try:
                    await SurveyClient(run.survey, transport).deliver(
                        prepared, batch_size=args.batch, on_ack=lambda _name, k: bar.update(k))
                    bar.close()
                    return await coordinator.close_and_release()
                finally:
                    await transport.close()
                    await coordinator.close()

            results = asyncio.run(go())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _emit(results_document(survey, results, truth, args.level), args)
    return 0


# -- pictures --------------------------------------------------------------------


def plot_results(doc: dict, path: str) -> None:
    """One panel per question: each estimate with its interval, and the truth where known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    questions = doc["questions"]
    heights = [1 + 0.35 * len(q["estimates"]) for q in questions]
    fig, axes = plt.subplots(len(questions), 1, figsize=(8, 1.2 + sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, q in zip(axes[:, 0], questions):
        labels = [e["label"] for e in q["estimates"]]
        values = [e["value"] for e in q["estimates"]]
        lows = [e["value"] - e["ci"][0] for e in q["estimates"]]
        highs = [e["ci"][1] - e["value"] for e in q["estimates"]]
        ys = list(range(len(labels)))
        ax.errorbar(values, ys, xerr=[lows, highs], fmt="o", color="tab:blue", capsize=4,
                    label=f"estimate, {int(round(q['ci_level'] * 100))}% interval")
        if all("truth" in e for e in q["estimates"]):
            ax.plot([e["truth"] for e in q["estimates"]], ys, "x", color="tab:red", markersize=9, label="truth")
        ax.set_yticks(ys, labels)
        ax.invert_yaxis()
        eps = [f"local ε={q['local_epsilon']:.3g}" if q["local_epsilon"] else "no local DP",
               f"central ε={q['central_epsilon']:.3g}" if q["central_epsilon"] else "no central noise"]
        unit = "share of respondents" if q["kind"] != "numeric" else "mean"
        ax.set_title(f"{q['question']} — {unit}, n={q['respondents']} ({', '.join(eps)})", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=9)
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
        try:
            return fn(args)
        except (SurveyError, AnswerError, BelowMinimum, Conflict, Refused, Unavailable) as exc:
            print(f"mpcdp survey {args.survey_command}: {exc}", file=sys.stderr)
            return 1
        except RuntimeError as exc:  # an aggregator process that did not start
            print(f"mpcdp survey {args.survey_command}: {exc}", file=sys.stderr)
            return 1
    return run


def _tls_flags(p, default_name: str) -> None:
    p.add_argument("--certs", help="folder with ca.pem, <name>.pem and <name>.key")
    p.add_argument("--name", help=f"this node's certificate name (default: {default_name})")
    p.add_argument("--insecure", action="store_true", help="plaintext, unauthenticated channels (experiments only)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per RPC (default 120)")


def register(sub) -> None:
    p = sub.add_parser("survey", help="secure surveys: submit, aggregate, close, simulate, plot",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = p.add_subparsers(dest="survey_command", metavar="SUBCOMMAND", required=True)

    a = sp.add_parser("aggregator", help="run an aggregator node (stores shares durably, releases once)")
    a.add_argument("--survey", action="append", required=True, help="survey file (repeat for several)")
    a.add_argument("--name", required=True, help="this aggregator's name in the survey file")
    a.add_argument("--listen", help="address to bind instead of the survey file's")
    a.add_argument("--store", help="sqlite://PATH (default <name>.survey.db), postgresql://... or memory")
    a.add_argument("--pg-schema", default="public", help="PostgreSQL schema for the tables (default public)")
    a.add_argument("--coordinator", default="coordinator", help="certificate name allowed to close and release")
    a.add_argument("--noise-seed", type=int, help="reproducible noise (simulations and tests only)")
    a.add_argument("--certs", help="folder with ca.pem, <name>.pem and <name>.key")
    a.add_argument("--insecure", action="store_true", help="plaintext, unauthenticated channels (experiments only)")
    a.set_defaults(run=_guard(run_aggregator))

    s = sp.add_parser("submit", help="answer a survey: randomise locally, share, send to every aggregator")
    s.add_argument("--survey", required=True)
    s.add_argument("--answers", required=True, help="JSON object: question id -> answer")
    s.add_argument("--outbox", help="where the prepared submission waits until delivered "
                                    "(default <answers>.pending.json); a rerun resends it unchanged")
    s.add_argument("--attempts", type=int, default=5, help="tries per aggregator (default 5)")
    _tls_flags(s, "respondents")
    s.set_defaults(run=_guard(run_submit))

    c = sp.add_parser("close", help="close a survey, intersect, release and debias (coordinator)")
    c.add_argument("--survey", required=True)
    c.add_argument("--json", help="write the results here")
    c.add_argument("--plot", help="draw the results to this PNG")
    c.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    _tls_flags(c, "coordinator")
    c.set_defaults(run=_guard(run_close))

    m = sp.add_parser("simulate", help="aggregators as local processes, synthetic respondents, estimates vs truth")
    m.add_argument("--survey", required=True)
    m.add_argument("--respondents", type=int, default=10_000)
    m.add_argument("--seed", type=int, help="reproducible respondents, randomisation and noise")
    m.add_argument("--store", default="sqlite", help="sqlite (default), memory or postgresql://...")
    m.add_argument("--batch", type=int, default=1000, help="submissions per streamed batch (default 1000)")
    m.add_argument("--json", help="write the results (with the truth) here")
    m.add_argument("--plot", help="draw the results to this PNG")
    m.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    m.add_argument("--insecure", action="store_true", help="plaintext channels (local experiments only)")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    m.set_defaults(run=_guard(run_simulate))

    r = sp.add_parser("report", help="print and plot a results file")
    r.add_argument("--results", default="results.json", help="results JSON from close or simulate")
    r.add_argument("--plot", help="draw each question's estimates and intervals to this PNG")
    r.set_defaults(run=_guard(run_report))
