"""Subcommands of ``mpcdp``: each module here defines ``register(subparsers)``.

The CLI discovers them, so adding a command is adding a module; the module is
named after its command (``text_node`` registers ``text-node``), so that
``mpcdp X`` imports only X's module. This package
file holds what the commands share (command modules never import each other):
argument types that refuse a bad value with one clear line (argparse reports
it as ``argument --flag: <message>``), the layout of an "examples:" epilog,
the options of every serving node and the query options of ``mpcdp query``
and ``mpcdp simulate``.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and epilogs (so example commands stay whole and copyable),
    wraps an unindented line too long for the terminal, and shows a docstring's ``code`` as `code`."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.replace("``", "`").splitlines():
            long_prose = len(line) > width and not line.startswith(" ")
            lines.extend(textwrap.wrap(line, width) if long_prose else [line])
        return "\n".join(indent + line for line in lines)


def examples(*lines: str) -> str:
    """An epilog listing real invocations, one per line (``#`` lines are comments)."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _number(kind, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def at_least(lo: int, hint: str = ""):
    """An integer type refusing values below ``lo``."""

    def parse(text: str) -> int:
        value = _number(int, text)
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}{hint}, got {value}")
        return value

    return parse


def integer_in(lo: int, hi: int):
    """An integer type refusing values outside [lo, hi]."""

    def parse(text: str) -> int:
        value = _number(int, text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be in [{lo}, {hi}], got {value}")
        return value

    return parse


def positive(text: str) -> float:
    """A finite number > 0 (durations, scales)."""
    value = _number(float, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def epsilon(text: str) -> float:
    """A DP epsilon: a finite number > 0."""
    value = _number(float, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 (smaller is more private, not 0), got {text}")
    return value


def delta(text: str) -> float:
    """A DP delta: a probability in [0, 1)."""
    value = _number(float, text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1) (0 for pure DP), got {text}")
    return value


def fraction(text: str) -> float:
    """A fraction in [0, 1]."""
    value = _number(float, text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1] (e.g. 0.5 for half), got {text}")
    return value


def numbers(text: str) -> tuple[float, ...]:
    """Comma-separated finite numbers, e.g. ``0,1000,2000``."""
    return tuple(_number(float, part) for part in text.split(","))


def level(text: str) -> float:
    """A confidence level strictly between 0 and 1."""
    value = _number(float, text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1 (e.g. 0.95), got {text}")
    return value


def address(text: str) -> str:
    """A host:port to listen on (port 0: any free port)."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"must be host:port (e.g. 0.0.0.0:50051), got {text!r}")
    return text


def add_insecure_flag(parser: argparse.ArgumentParser, exposed: str = "read shares and impersonate nodes") -> None:
    """--insecure, whose help says what anyone on the network can then do (``exposed``)."""
    parser.add_argument(
        "--insecure",
        action="store_true",
        help=f"plaintext, unauthenticated channels: anyone on the network can {exposed} (local experiments only)",
    )


def add_node_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every serving node shares: its audit log and the limits of its gRPC server."""
    from services.audit import FORMATS
    from services.node_limits import Limits

    d = Limits()
    g = parser.add_argument_group("audit log and server limits")
    g.add_argument(
        "--log-format",
        choices=FORMATS,
        default="text",
        help="audit log format: text lines, or json (one JSON object per line, for log shippers); "
        "the log records refusals, aborts, releases and permission denials, never a share, "
        "seed or record value (default: text)",
    )
    g.add_argument(
        "--audit-log",
        metavar="PATH",
        help="append the audit log to this file, created owner-only (0600) (default: standard error)",
    )
    g.add_argument(
        "--idle-timeout",
        type=positive,
        default=d.idle_timeout,
        metavar="SECONDS",
        help=f"close a streaming call that neither sends nor receives a message for this long "
        f"(default {d.idle_timeout:g})",
    )
    g.add_argument(
        "--keepalive-time",
        type=positive,
        default=d.keepalive_time,
        metavar="SECONDS",
        help=f"ping a quiet connection after this long (default {d.keepalive_time:g})",
    )
    g.add_argument(
        "--keepalive-timeout",
        type=positive,
        default=d.keepalive_timeout,
        metavar="SECONDS",
        help=f"drop a connection whose ping is unanswered for this long (default {d.keepalive_timeout:g})",
    )
    g.add_argument(
        "--max-message-mib",
        type=positive,
        default=d.max_message_bytes / 2**20,
        metavar="MIB",
        help=f"largest message received or sent, in MiB (default {d.max_message_bytes / 2**20:g})",
    )
    g.add_argument(
        "--max-streams",
        type=at_least(1),
        default=d.max_concurrent_streams,
        metavar="N",
        help=f"calls in flight on one connection (default {d.max_concurrent_streams})",
    )


def add_federation_node_arguments(parser: argparse.ArgumentParser, example_port: int, clients: bool = False) -> None:
    """The options a federation node (party or coordinator) serves with: --listen, --link-port (``clients``: and
    --client-link-port), --insecure, then :func:`add_node_arguments`."""
    parser.add_argument(
        "--listen",
        type=address,
        help=f"address to bind instead of the federation file's (e.g. 0.0.0.0:{example_port})",
    )
    parser.add_argument(
        "--link-port",
        type=integer_in(1, 65535),
        metavar="PORT",
        help="port the node's links to its peers listen on (TLS, beside the gRPC port, on the same host), "
        "instead of the federation file's link_port; default: that, else a free port, which peers ask for "
        f"over gRPC. Fix it for a firewall (e.g. {example_port + 100}); it must differ from the gRPC port",
    )
    if clients:
        parser.add_argument(
            "--client-link-port",
            type=integer_in(1, 65535),
            metavar="PORT",
            help="port the clients' query links listen on, instead of the federation file's client_link_port; "
            "default: that, else a free port, which clients ask for over gRPC; it must differ from the gRPC "
            "port and the link port (refused under --insecure, where clients are served over gRPC only)",
        )
    add_insecure_flag(parser)
    add_node_arguments(parser)


def link_ports(args, node, grpc_address: str) -> tuple[int, int]:
    """The ports a node's links (and a coordinator's clients' query links) listen on: the flags of
    :func:`add_federation_node_arguments` over the federation file's, 0 for a free port. ValueError saying which
    is wrong if one is the gRPC port (of ``grpc_address``) or both are one."""
    from services.federation import check_link_ports

    link_port = args.link_port or node.link_port or 0
    client_flag = getattr(args, "client_link_port", None)
    client_port = client_flag or node.client_link_port or 0
    if client_port and getattr(args, "insecure", False):  # no clients' query links without TLS: gRPC only
        key = "--client-link-port" if client_flag else "client_link_port"
        if client_flag:
            raise ValueError(f"{key}: under --insecure clients are served over gRPC only, not on query links")
        print(f"note: {key} {client_port} is unused under --insecure (clients are served over gRPC)", file=sys.stderr)
        client_port = 0
    grpc_port = int(grpc_address.rpartition(":")[2])
    keys = (
        "--link-port" if args.link_port else "link_port",
        "--client-link-port" if client_flag else "client_link_port",
    )
    grpc_key = "--listen" if getattr(args, "listen", None) else "its address"
    check_link_ports(grpc_port or None, link_port or None, client_port or None, keys, grpc_key)
    return link_port, client_port


def node_limits(args):
    """The :class:`services.node_limits.Limits` of :func:`add_node_arguments`' options."""
    from services.node_limits import Limits

    return Limits(
        max_message_bytes=max(int(args.max_message_mib * 2**20), 1024),
        idle_timeout=args.idle_timeout,
        keepalive_time=args.keepalive_time,
        keepalive_timeout=args.keepalive_timeout,
        max_concurrent_streams=args.max_streams,
    )


def configure_audit(args, node: str) -> None:
    """Send this node's audit log where :func:`add_node_arguments`' options say."""
    from services import audit

    audit.configure(node, args.log_format, args.audit_log)


def node_identity(args, node, federation):
    """The TLS identity a federation node serves with; warns under --insecure and sends the audit log where
    :func:`add_node_arguments`' options say."""
    from services.tls import Identity, warn_insecure

    if args.insecure:
        warn_insecure()
    configure_audit(args, node.name)
    return Identity(node.name, federation.certs, args.insecure)


def serve_node(command: str, args, identity, address: str, services, cleanup) -> int:
    """Serve ``services`` at ``address`` until Ctrl-C or SIGTERM (exit 0); an address that cannot be bound is
    a one-line error naming ``command`` (exit 1)."""
    import asyncio
    import sys

    from services.server import serve_until_stopped

    banner = f"{command} {identity.name} serving on port {{port}}"
    try:
        return asyncio.run(
            serve_until_stopped(identity, address, services, banner, cleanup=cleanup, limits=node_limits(args))
        )
    except (OSError, RuntimeError) as exc:  # gRPC reports an address it cannot bind as a RuntimeError
        print(f"mpcdp {command}: {exc}", file=sys.stderr)
        return 1


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


COMPARISON_FLAGS = {"fraction": "threshold", "quantile": "quantile", "edges": "edges", "categories": "categories"}


def missing_comparison_flag(args) -> str | None:
    """What a comparison statistic needs that the command line left out, in words (None: nothing)."""
    from mpcdp.mpc.queries import COMPARISONS  # here, not at the top: `mpcdp X` loads only what X needs

    if args.statistic not in COMPARISONS:
        return None
    kind = COMPARISONS.get(args.statistic)
    for need in kind.needs:
        flag = COMPARISON_FLAGS[need]
        if not getattr(args, flag):
            return f"--statistic {kind.name} needs --{flag}"
    return None


def categories(args) -> list[str]:
    """The --categories list (empty without the flag)."""
    return [c for c in (args.categories or "").split(",") if c]


def query_options(args) -> dict:
    """The query keywords :func:`add_query_arguments`' flags give (all but the statistic, the column and the
    bounds), as :func:`services.analyst.query` and a local federation's ``query`` take them."""
    return {
        "epsilon": args.epsilon,
        "delta": args.delta,
        "dimension": args.dimension,
        "categories": categories(args),
        "frac_bits": args.frac_bits,
        "max_records": args.max_records,
        "mechanism": args.mechanism,
        "colluders": args.colluders,
        "sharing": args.sharing,
        "confidence": args.confidence,
        "fraction": args.threshold,
        "quantile": args.quantile,
        "edges": args.edges or (),
    }


def add_query_arguments(p, statistic_default: str | None = None, bounds_default: str = "0,1") -> None:
    """The flags of ``mpcdp query`` and ``mpcdp simulate`` (no ``statistic_default``: --statistic is required)."""
    from mpcdp.dp.mechanisms import CENTRAL_MECHANISMS  # imported here: `mpcdp X` loads only what X needs
    from mpcdp.mpc.queries import COMPARISONS  # registers the comparison statistics in STATISTICS
    from mpcdp.protocol.spec import SHARING_MODES
    from mpcdp.protocol.statistics import STATISTICS

    p.add_argument(
        "--statistic",
        default=statistic_default,
        choices=STATISTICS.names(),
        help="what to release over all parties' records: sum, count, mean, variance (each per "
        "coordinate) or histogram (a count per --categories value), as a secure sum; or, computed by "
        ">= 3 parties under MPC (services/mpc_node.py) and opening only the answer: "
        + "; ".join(f"{c.name}: {c.summary}" for c in COMPARISONS)
        + (f" (default: {statistic_default})" if statistic_default else " (required)"),
    )
    p.add_argument(
        "--threshold",
        type=fraction,
        metavar="FRACTION",
        help="with --statistic threshold: YES if the column's sum is at least FRACTION times its record "
        "count, e.g. 0.5 for a majority of 0/1 votes",
    )
    p.add_argument(
        "--quantile",
        type=level,
        metavar="Q",
        help="with --statistic quantile: which quantile, strictly between 0 and 1 (median: 0.5)",
    )
    p.add_argument(
        "--edges",
        type=numbers,
        metavar="E0,E1,...",
        help="with --statistic quantile or median: the increasing candidate values; the DP release is one "
        "of them (the one nearest in rank to the quantile, with high probability)",
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
        choices=CENTRAL_MECHANISMS.names(),
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
        default="keyed",
        choices=SHARING_MODES,
        help="how shares travel: keyed (no share message: masks from pair keys the parties agreed once "
        "per link; one message each way), seeded (a 32-byte PRG seed per peer) or full random vectors "
        "(default: keyed). The coordinator runs a keyed query seeded where a party's policy waits for every "
        "acceptance (one_round = false) or refuses it, a party refused keyed in the last minute, or more than "
        "64 parties take part; the release then says so and why",
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
