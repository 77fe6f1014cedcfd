"""``mpcdp query``: ask a federation for a statistic (a DP release unless the policy allows exact)."""

from __future__ import annotations

import math
import sys

import numpy as np

from services import federation as fed
from services.client import QueryError, QueryResult, query
from services.tls import warn_insecure


def parse_bounds(text: str) -> tuple[float, float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise ValueError(f"--bounds takes LO,HI, got {text!r}")
    return float(parts[0]), float(parts[1])


def format_result(r: QueryResult) -> str:
    lines = [f"{r.statistic}: {_fmt(r.value)}"]
    for key, value in r.result.items():
        if key != r.statistic:
            lines.append(f"  {key}: {_fmt(value)}")
    if r.exact:
        lines.append("exact release (no differential privacy)")
    else:
        lines.append(f"epsilon spent: {r.epsilon:g}" + (f", delta {r.delta:g}" if r.delta else "")
                     + f" ({r.mechanism} noise, shared among the parties)")
        for key, interval in r.intervals.items():
            if isinstance(interval, list):
                lines.append(f"  {100 * r.confidence:g}% interval for {key}: [{_fmt(interval[0])}, {_fmt(interval[1])}]")
            elif isinstance(interval, dict) and "half_width" in interval:
                lines.append(f"  {100 * r.confidence:g}% interval for each {key}: +/- {_fmt(interval['half_width'])}")
        for key, std in r.noise_std.items():
            lines.append(f"  noise std on {key}: {_fmt(std)}")
    lines.append(f"parties: {', '.join(r.parties)}")
    return "\n".join(lines)


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
        bounds = parse_bounds(args.bounds)
    except (fed.FederationError, ValueError) as exc:
        print(f"mpcdp query: {exc}", file=sys.stderr)
        return 2
    if args.insecure:
        warn_insecure()
    name = args.id or (federation.names("client") or [""])[0]
    try:
        result = query(federation, name, args.statistic, insecure=args.insecure, column=args.column,
                       bounds=bounds, epsilon=args.epsilon, delta=args.delta, dimension=args.dimension,
                       categories=[c for c in (args.categories or "").split(",") if c],
                       parties=[p for p in (args.parties or "").split(",") if p], frac_bits=args.frac_bits,
                       max_records=args.max_records, mechanism=args.mechanism, colluders=args.colluders,
                       sharing=args.sharing, timeout=args.timeout, confidence=args.confidence)
    except QueryError as exc:
        print(f"mpcdp query: {exc}", file=sys.stderr)
        return 1
    print(result.to_json() if args.json else format_result(result))
    return 0


def add_query_arguments(p, statistic_required: bool = True) -> None:
    """The query flags, shared with ``mpcdp simulate``."""
    p.add_argument("--statistic", required=statistic_required, default=None if statistic_required else "mean",
                   choices=("sum", "count", "mean", "variance", "histogram"))
    p.add_argument("--column", default="value", help="column (comma-separated for vectors)")
    p.add_argument("--bounds", default="0,1", help="LO,HI: every record is clipped to this range")
    p.add_argument("--epsilon", type=float, help="DP epsilon; omit for an exact release (if allowed)")
    p.add_argument("--delta", type=float, default=0.0)
    p.add_argument("--mechanism", default="discrete_laplace", choices=("discrete_laplace", "skellam"))
    p.add_argument("--dimension", type=int, default=1)
    p.add_argument("--categories", help="comma-separated categories of a histogram")
    p.add_argument("--frac-bits", type=int, default=16)
    p.add_argument("--max-records", type=int, default=0, help="most records per party (default: federation policy)")
    p.add_argument("--colluders", type=int, default=1, help="assumed colluding parties (noise sized for the rest)")
    p.add_argument("--sharing", default="seeded", choices=("seeded", "full"))
    p.add_argument("--timeout", type=float, default=30.0, help="session deadline in seconds")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def register(sub) -> None:
    p = sub.add_parser("query", help="ask a federation for a statistic", description=__doc__)
    p.add_argument("--federation", required=True, help="federation file (TOML)")
    p.add_argument("--id", help="this client's name in the federation file (default: the first client)")
    p.add_argument("--parties", help="comma-separated subset of parties (default: all)")
    p.add_argument("--insecure", action="store_true", help="plaintext, unauthenticated channels (local experiments only)")
    add_query_arguments(p)
    p.set_defaults(run=run)
