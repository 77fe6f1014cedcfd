"""``mpcdp coordinator``: run a federation's coordinator, which answers analysts' queries.

Who sees what: the coordinator opens a session per query, asks every party to
accept it, collects one partial sum per party and adds them. A partial sum is
uniformly random on its own, so the coordinator never sees a party's records
or an exact aggregate of a DP query: only the noisy release it decodes and
returns. It keeps its own privacy ledger per dataset and refuses a query over
budget before any share moves. It keeps every release under its session id in
its state directory (beside its ledger), so an analyst cut off after the
budget was spent gets it with `mpcdp query --fetch`. Queries run concurrently;
none may last longer than --max-timeout. One coordinator runs on a state
directory at a time: a second is refused at start, naming the directory and
the running one's pid (a lock file, <name>.lock, released when the process
ends, even by a crash). Runs until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import sys

from services.commands import (
    Formatter,
    add_federation_node_arguments,
    examples,
    integer_in,
    link_ports,
    node_identity,
    positive,
    serve_node,
)
from services.deadlines import COALESCED_SESSIONS, DEFAULT_TIMEOUT, SEND_TIMEOUT


def run(args) -> int:
    # Imported here, not above: `mpcdp --help` and `mpcdp coordinator --help` need none of them (scipy, pydantic).
    from services import federation as fed
    from services.coordinator_node import CoordinatorNode
    from services.ledgers import ledger_for
    from services.releases import ReleaseStore
    from services.state_lock import StateLock
    from services.tls import Identity

    try:
        federation = fed.load(args.federation)
        node = federation.coordinator()
        if not args.insecure:
            Identity(node.name, federation.certs).server_credentials()  # missing certificates: say so now
        address = args.listen or federation.address(node.name)
        ports = link_ports(args, node, address)
        state = node.state_dir
        lock = None if state is None else StateLock(state, node.name, "coordinator")  # before any file is opened
    except (fed.FederationError, OSError, ValueError) as exc:
        print(f"mpcdp coordinator: {exc}", file=sys.stderr)
        return 2
    identity = node_identity(args, node, federation)
    coordinator = CoordinatorNode(
        federation,
        identity,
        ledger=ledger_for(federation, node.name, federation.name),
        default_timeout=args.timeout,
        max_timeout=args.max_timeout,
        send_timeout=args.send_timeout,
        coalesce=args.coalesce,
        store=None if state is None else ReleaseStore(state / f"{node.name}.releases"),
    )
    coordinator.link.listen_port, coordinator.queries.hub.listen_port = ports  # the flags over the file
    try:
        return serve_node(
            "coordinator",
            args,
            identity,
            address,
            coordinator.services(),
            coordinator.close,
        )
    finally:
        if lock is not None:  # held while it served (a crash drops it too)
            lock.release()


def register(sub) -> None:
    p = sub.add_parser(
        "coordinator",
        help="run the coordinator (opens sessions, releases DP results)",
        description=__doc__,
        formatter_class=Formatter,
        epilog=examples(
            "mpcdp coordinator --federation examples/engineers/federation.toml",
            "mpcdp coordinator --federation examples/engineers/federation.toml --timeout 60",
        ),
    )
    p.add_argument(
        "--federation", required=True, help="federation file (TOML): the coordinator node, the parties, the policy"
    )
    p.add_argument(
        "--timeout",
        type=positive,
        default=DEFAULT_TIMEOUT,
        help=f"default session deadline in seconds, for queries that give none (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument(
        "--max-timeout",
        type=positive,
        metavar="SECONDS",
        help="longest session deadline a query may ask for; longer ones are refused (default: the "
        "federation policy's max_timeout, else 300)",
    )
    p.add_argument(
        "--send-timeout",
        type=positive,
        default=SEND_TIMEOUT,
        metavar="SECONDS",
        help="close a query call whose analyst leaves part of the release unread this long; the "
        f"release stays kept for `mpcdp query --fetch` (default {SEND_TIMEOUT:g})",
    )
    p.add_argument(
        "--coalesce",
        type=integer_in(0, 64),
        default=COALESCED_SESSIONS,
        metavar="N",
        help="sessions in flight per group of small concurrent queries asking the same parties; the queries "
        "arriving while N are in flight run together in one batch session at the parties (each analyst still "
        f"gets only its own release, charged per query); 0: every query its own session (default {COALESCED_SESSIONS})",
    )
    add_federation_node_arguments(p, 50050, clients=True)
    p.set_defaults(run=run)
