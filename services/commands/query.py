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

Spent budget always yields its result: the coordinator keeps every release
under its session id, and if yours did not arrive (you were cut off after
the parties were charged) `mpcdp query --fetch SESSION` gets it again, at no
further cost. The error message names the session.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from services import federation as fed
from services.client import QueryError, QueryResult, fetch, query
from services.commands import Formatter, at_least, delta, epsilon, examples, integer_in, level, positive
from services.tls import Identity, warn_insecure

FEDERATION = "examples/engineers/federation.toml"


def parse_bounds(text: str) -> tuple[float, float]:
    """The --bounds type: ``LO,HI``, two finite numbers with LO <= HI."""
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts) if len(parts) == 2 else (math.nan, math.nan)
    except ValueError:
        lo = hi = math.nan
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise argparse.ArgumentTypeError(f"takes LO,HI (two numbers, e.g. 0,10000), got {text!r}")
    if lo > hi:
        raise argparse.ArgumentTypeError(f"takes LO,HI with LO <= HI, got {text!r}")
    return lo, hi


def format_result(r: QueryResult) -> str:
    lines = [f"{r.statistic}: {_fmt(r.value)}"]
    for key, value in r.result.items():
        if key != r.statistic:
            lines.append(f"  {key}: {_fmt(value)}")
    if r.exact:
        lines.append("exact release (no differential privacy)")
    else:
        lines.append(
            f"epsilon spent: {r.epsilon:g}"
            + (f", delta {r.delta:g}" if r.delta else "")
            + f" ({r.mechanism} noise, shared among the parties)"
        )
        level = f"{100 * r.confidence:g}%"
        for key, interval in r.intervals.items():
            lines.extend(_interval_lines(level, key, interval))
        for key, std in r.noise_std.items():
            lines.append(f"  noise std on {key}: {_fmt(std)}")
    lines.append(f"parties: {', '.join(r.parties)}")
    return "\n".join(lines)


def _interval_lines(level: str, key: str, interval) -> list[str]:
    """One line per interval: scalar [lo, hi], vector half-width or bounds, histogram cells."""
    if interval is None:
        return [f"  {level} interval for {key}: none (too few records for the noise; the count may be 0)"]
    if isinstance(interval, list):
        return [f"  {level} interval for {key}: [{_fmt(interval[0])}, {_fmt(interval[1])}]"]
    if "half_width" in interval:
        return [f"  {level} interval for each {key}: +/- {_fmt(interval['half_width'])}"]
    if set(interval) == {"lower", "upper"}:
        return [
            f"  {level} interval for {key}: lower {_fmt(np.asarray(interval['lower']))}, "
            f"upper {_fmt(np.asarray(interval['upper']))}"
        ]
    return [line for cell, iv in interval.items() for line in _interval_lines(level, f"{key}[{cell}]", iv)]


def _fmt(v) -> str:
    if isinstance(v, np.ndarray):
        v = v.tolist() if v.size <= 20 else v[:20].tolist() + ["..."]
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def run(args) -> int:
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
    if args.fetch is None and args.statistic is None:
        print("mpcdp query: --statistic is required (or --fetch SESSION for a release already made)", file=sys.stderr)
        return 2
    try:
        if args.fetch is not None:
            result = fetch(federation, name, args.fetch, insecure=args.insecure)
            print(result.to_json() if args.json else format_result(result))
            return 0
        result = query(
            federation,
            name,
            args.statistic,
            insecure=args.insecure,
            column=args.column,
            bounds=args.bounds,
            epsilon=args.epsilon,
            delta=args.delta,
            dimension=args.dimension,
            categories=[c for c in (args.categories or "").split(",") if c],
            parties=[p for p in (args.parties or "").split(",") if p],
            frac_bits=args.frac_bits,
            max_records=args.max_records,
            mechanism=args.mechanism,
            colluders=args.colluders,
            sharing=args.sharing,
            timeout=args.timeout,
            confidence=args.confidence,
        )
    except QueryError as exc:
        print(f"mpcdp query: {exc}", file=sys.stderr)
        return 1
    print(result.to_json() if args.json else format_result(result))
    return 0


def add_query_arguments(p, statistic_default: str | None = None, bounds_default: str = "0,1") -> None:
    """The query flags, shared with ``mpcdp simulate`` (no ``statistic_default``: --statistic is required)."""
    p.add_argument(
        "--statistic",
        default=statistic_default,
        choices=("sum", "count", "mean", "variance", "histogram"),
        help="what to release over all parties' records: sum, count, mean, variance (each per "
        "coordinate) or histogram (a count per --categories value)"
        + (f" (default: {statistic_default})" if statistic_default else " (required)"),
    )
    p.add_argument(
        "--column",
        default="value",
        help="data column each party reads; comma-separated columns make a vector record (default: value)",
    )
    p.add_argument(
        "--bounds",
        type=parse_bounds,
        default=parse_bounds(bounds_default),
        metavar="LO,HI",
        help="every record (each coordinate) is clipped to [LO, HI] before it is shared; this caps "
        "one record's influence, so wider bounds mean more noise for the same epsilon "
        f"(default: {bounds_default})",
    )
    p.add_argument(
        "--epsilon",
        type=epsilon,
        help="DP privacy loss of this release, > 0: one record can change the odds of any result by "
        "at most a factor e^epsilon, so smaller is more private and noisier (0.1 strong, 1 "
        "moderate); charged to every party's budget. Omit for an exact, non-DP release, only "
        "if the federation's policy allows it (default: exact)",
    )
    p.add_argument(
        "--delta",
        type=delta,
        default=0.0,
        help="DP delta in [0, 1): probability that the epsilon guarantee may fail; 0 is pure DP, "
        "skellam needs a small delta > 0 such as 1e-6 (default 0)",
    )
    p.add_argument(
        "--mechanism",
        default="discrete_laplace",
        choices=("discrete_laplace", "skellam"),
        help="noise the parties add jointly: discrete_laplace (pure epsilon-DP) or skellam (zCDP, "
        "reported as (epsilon, delta); needs --delta > 0) (default: discrete_laplace)",
    )
    p.add_argument(
        "--dimension",
        type=at_least(1),
        default=1,
        help="length of each record vector for sum, mean and variance (default 1: scalars)",
    )
    p.add_argument(
        "--categories",
        help="comma-separated categories of a histogram, declared up front (required with "
        "--statistic histogram; no default)",
    )
    p.add_argument(
        "--frac-bits",
        type=integer_in(0, 52),
        default=16,
        help="fixed-point precision: reals are encoded in Z_2^64 with this many fractional bits, "
        "0 to 52 (default 16: steps of 1/65536)",
    )
    p.add_argument(
        "--max-records",
        type=at_least(0),
        default=0,
        help="most records any one party may contribute; sizes the ring overflow check "
        "(default 0: the federation policy's max_records)",
    )
    p.add_argument(
        "--colluders",
        type=at_least(1),
        default=1,
        help="assumed number t of colluding parties, 1 <= t < parties: the noise is sized so that "
        "the other parties' pieces alone give the promised epsilon; larger t means more noise "
        "(default 1)",
    )
    p.add_argument(
        "--sharing",
        default="seeded",
        choices=("seeded", "full"),
        help="how shares travel: seeded (a 32-byte PRG seed per peer instead of a random vector, "
        "much less traffic) or full random vectors (default: seeded)",
    )
    p.add_argument("--timeout", type=positive, default=30.0, help="session deadline in seconds (default 30)")
    p.add_argument(
        "--confidence",
        type=level,
        default=0.95,
        help="confidence level of the reported noise intervals, between 0 and 1 (default 0.95); "
        "they come from the noise distribution alone and cost no privacy",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the release as JSON (result, intervals, noise std, epsilon and delta spent) "
        "for scripts, instead of text",
    )


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
    add_query_arguments(p)
    p.set_defaults(run=run)
