"""``mpcdp query``: ask a running federation for a statistic over its parties' private records.

Who sees what: each party clips its records to --bounds, secret-shares them
with the other parties over mutual TLS and hands the coordinator only a
partial sum that looks uniformly random on its own; the coordinator and you
see only the released result. With --epsilon the release is differentially
private: each party also adds a piece of noise inside its shares, so no single
node knows the noise, and the pieces of the parties outside any --colluders
coalition already give the promised epsilon (neighbours: one record added to
or removed from one party). Each party checks the query against its own policy
and privacy budget and refuses one that would overspend; the cost is charged
to every party's ledger. Without --epsilon the release is exact, which the
federation's policy must allow.

With --quorum K the parties run the many-party protocol instead: each masks
its input with secrets shared among a few neighbours, and the query completes
when at least K of them finish, whoever drops after accepting. The release
names the counted parties (and the dropped ones) and restates epsilon for the
counted ones; every party is charged what a release counting only K costs.

Each --also "FLAGS" asks one more statistic in the same session (a batch:
one proposal and one partial sum per party carrying every statistic; with
--quorum, one key exchange and one masked vector per party): FLAGS are this
command's per-statistic flags (--statistic, --column, --bounds, --epsilon,
--categories, ...); --parties, --colluders, --sharing, --timeout,
--confidence and --quorum are the session's. Every party checks each
statistic against its policy (refusing one refuses the whole batch, naming
the statistic) and is charged their losses composed, at once: at each party
the whole batch or nothing. Each statistic gets its own noise; the output
lists one release per statistic (--json: a list), each with its own epsilon
and the batch's composed epsilon.

Spent budget always yields its result: the coordinator keeps every release
under its session id, and if yours did not arrive (you were cut off after
the parties were charged) `mpcdp query --fetch SESSION` gets it again, at no
further cost. The error message names the session.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import TYPE_CHECKING

from services.commands import Formatter, add_query_arguments, examples, missing_comparison_flag, query_options

if TYPE_CHECKING:
    from services.analyst import QueryResult

FEDERATION = "examples/engineers/federation.toml"


def run(args) -> int:
    # the analyst client and gRPC load when a query runs, not for `mpcdp --help`
    from services import federation as fed
    from services.analyst import QueryError, fetch_batch, query, query_batch
    from services.tls import Identity, warn_insecure

    try:
        federation = fed.load(args.federation)
        name = args.id or (federation.names("client") or [""])[0]
        if not name:
            raise fed.FederationError(f"{args.federation}: no node has the client role; pass --id NAME")
        federation.node(name)
        federation.coordinator()
        if not args.insecure:
            Identity(name, federation.certs).channel_credentials()  # missing certificates: say so before connecting
    except (fed.FederationError, OSError) as exc:
        print(f"mpcdp query: {exc}", file=sys.stderr)
        return 2
    if args.insecure:
        warn_insecure()
    missing = missing_comparison_flag(args) if args.fetch is None and args.statistic else None
    if missing:
        print(f"mpcdp query: {missing}", file=sys.stderr)
        return 2
    if args.fetch is None and args.statistic is None:
        print("mpcdp query: --statistic is required (or --fetch SESSION for a release already made)", file=sys.stderr)
        return 2
    try:
        also = [_question(args, text) for text in args.also or ()]
    except ValueError as exc:
        print(f"mpcdp query: --also: {exc}", file=sys.stderr)
        return 2
    try:
        if args.fetch is not None:
            _print(fetch_batch(federation, name, args.fetch, insecure=args.insecure), args.json)
            return 0
        if also:
            _print(
                query_batch(
                    federation,
                    name,
                    [_question(args), *also],
                    insecure=args.insecure,
                    quorum=args.quorum,
                    parties=_parties(args),
                    colluders=args.colluders,
                    sharing=args.sharing,
                    timeout=args.timeout,
                    confidence=args.confidence,
                ),
                args.json,
            )
            return 0
        result = query(
            federation,
            name,
            args.statistic,
            insecure=args.insecure,
            column=args.column,
            bounds=args.bounds,
            parties=_parties(args),
            timeout=args.timeout,
            quorum=args.quorum,
            **query_options(args),
        )
    except QueryError as exc:
        print(f"mpcdp query: {exc}", file=sys.stderr)
        return 1
    print(result.to_json() if args.json else result.to_text())
    return 0


SESSION_FLAGS = ("colluders", "sharing", "timeout", "confidence")  # the session's, not a statistic's: given once


class _AlsoParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ValueError(message)


def _question(args, text: str | None = None) -> dict:
    """One statistic's keywords for :meth:`services.analyst.Analyst.query_batch`: the command's own flags
    (``text`` None) or an --also's ("--statistic count --epsilon 0.5"); ValueError on a bad one."""
    if text is not None:
        parser = _AlsoParser(prog="--also", add_help=False)
        add_query_arguments(parser)
        parser.set_defaults(**{f: getattr(args, f) for f in SESSION_FLAGS})
        parsed = parser.parse_args(shlex.split(text))
        if parsed.statistic is None:
            raise ValueError(f"{text!r} names no --statistic")
        changed = [f"--{f}" for f in SESSION_FLAGS if getattr(parsed, f) != getattr(args, f)]
        if changed:
            raise ValueError(f"{', '.join(changed)} is the session's: give it once, outside --also")
        args = parsed
    options = {k: v for k, v in query_options(args).items() if k not in SESSION_FLAGS}
    return dict(statistic=args.statistic, column=args.column, bounds=args.bounds, **options)


def _parties(args) -> list[str]:
    return [p for p in (args.parties or "").split(",") if p]


def _print(released: list[QueryResult], as_json: bool) -> None:
    """One release as before; a batch's one after the other (--json: a list)."""
    if as_json:
        texts = [r.to_json() for r in released]
        print(texts[0] if len(texts) == 1 else "[\n" + ",\n".join(texts) + "\n]")
    elif len(released) == 1:
        print(released[0].to_text())
    else:
        print("\n\n".join(f"[{r.index + 1} of {len(released)}] {r.to_text()}" for r in released))


def register(sub) -> None:
    p = sub.add_parser(
        "query",
        help="ask a running federation for a statistic (DP unless exact is allowed)",
        description=__doc__,
        formatter_class=Formatter,
        epilog=examples(
            "# with the parties and the coordinator of the example running (see `mpcdp party --help`):",
            f"mpcdp query --federation {FEDERATION} --statistic mean --column raise --bounds 0,10000 --epsilon 1",
            f"mpcdp query --federation {FEDERATION} --statistic histogram --column team "
            "--categories infra,product --epsilon 0.5 --json",
            f"mpcdp query --federation {FEDERATION} --statistic variance --column raise "
            "--bounds 0,10000 --epsilon 1 --colluders 2",
            f"mpcdp query --federation {FEDERATION} --fetch 5f0c3d2e9a8b4c1d7e6f5a4b3c2d1e0f",
            "# completes if at least 3 of the parties finish (the release names who was counted):",
            f"mpcdp query --federation {FEDERATION} --statistic sum --column raise --bounds 0,10000 --epsilon 1 "
            "--quorum 3 --json",
            "# three statistics in one session (one release each, their losses composed; --quorum 3: many-party):",
            f"mpcdp query --federation {FEDERATION} --statistic sum --column raise --bounds 0,10000 "
            "--epsilon 0.5 --also '--statistic count --epsilon 0.25' "
            "--also '--statistic histogram --column team --categories infra,product --epsilon 0.25'",
            "# computed by the parties under MPC (at least 3), opening only the answer:",
            f"mpcdp query --federation {FEDERATION} --statistic noisy-argmax --column team "
            "--categories infra,product --epsilon 1",
            f"mpcdp query --federation {FEDERATION} --statistic median --column raise "
            "--edges 2000,2500,3000,3500,4000 --epsilon 1",
            f"mpcdp query --federation {FEDERATION} --statistic max --column raise   "
            "# exact: only where every policy sets allow_exact_nonlinear",
        ),
    )
    p.add_argument(
        "--federation",
        required=True,
        help="federation file (TOML): the nodes, their addresses, the certificate folder, the policy",
    )
    p.add_argument(
        "--id",
        help="your client name in the federation file; its certificate authenticates you "
        "(default: the first node with the client role)",
    )
    p.add_argument("--parties", help="comma-separated subset of the parties to ask, at least 2 (default: every party)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext, unauthenticated channels: anyone on the network can read shares and "
        "impersonate nodes (local experiments only; the nodes must run with it too)",
    )
    p.add_argument(
        "--fetch",
        metavar="SESSION",
        help="get again the release of a session you asked for (its id is in the error that "
        "reported the broken release); costs no budget (the other query options are ignored)",
    )
    p.add_argument(
        "--quorum",
        type=int,
        metavar="K",
        help="run the many-party protocol: the query completes when at least K parties finish, whoever drops "
        "after accepting (more than --colluders, at most every party); the release names the counted parties and "
        "restates epsilon for them (default: every party must finish)",
    )
    p.add_argument(
        "--also",
        action="append",
        metavar="FLAGS",
        help="one more statistic in the same session (a batch), given by this command's per-statistic "
        "flags in quotes, e.g. --also '--statistic count --epsilon 0.5' (repeatable; see above)",
    )
    add_query_arguments(p)
    p.set_defaults(run=run)
