"""``mpcdp party``: run one party node of a federation, holding its own private data.

Who sees what: the node's records never leave it. For each query it checks
the spec against its own policy and privacy budget (a persistent ledger per
dataset) and refuses one that would overspend; otherwise it clips its records
to the query's bounds, adds its piece of the DP noise, splits the result into
additive shares in Z_2^64 and sends one to each other party over mutual TLS.
The coordinator receives only the sum of the shares this node holds, which is
uniformly random on its own. The session ids it has seen are kept in its
state directory (beside its ledger), so none is accepted twice, even after a
restart; refusals tell the coordinator why without naming local files,
columns or counts. One process per party runs on a state directory at a
time (two would share its session log, weakening replay protection): a second
is refused at start, naming the directory and the running one's pid (a lock
file, <name>.lock, released when the process ends, even by a crash). Runs
until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from services.commands import (
    Formatter,
    add_federation_node_arguments,
    examples,
    link_ports,
    node_identity,
    serve_node,
)

if TYPE_CHECKING:
    from services.data import Table


def _table(args, node) -> Table:
    from services.data import DataError, Table

    if args.values is not None:
        values = [v for v in args.values.split(",") if v != ""]
        return Table({args.column: values}, "values given on the command line")
    if node.data is None:
        raise DataError(f"node {node.name!r} has no `data` in the federation file; pass --values for an experiment")
    return Table.load(node.data, node.table)


def run(args) -> int:
    # Imported here, not above: `mpcdp --help` and `mpcdp party --help` need none of them (pydantic, grpc, scipy).
    from services import federation as fed
    from services.data import DataError
    from services.ledgers import SessionLog, ledger_for
    from services.party_node import PartyNode
    from services.state_lock import StateLock
    from services.tls import Identity

    try:
        federation = fed.load(args.federation)
        node = federation.node(args.id)
        if not node.has("party"):
            raise fed.FederationError(f"node {node.name!r} does not have the party role")
        table = _table(args, node)
        if not args.insecure:
            Identity(node.name, federation.certs).server_credentials()  # missing certificates: say so now
        address = args.listen or federation.address(node.name)
        link_port, _ = link_ports(args, node, address)
        state = node.state_dir
        lock = None if state is None else StateLock(state, node.name, "party")  # before any file is opened
    except (fed.FederationError, DataError, OSError, ValueError) as exc:
        print(f"mpcdp party: {exc}", file=sys.stderr)
        return 2
    identity = node_identity(args, node, federation)
    party = PartyNode(
        federation,
        node.name,
        table,
        identity,
        ledger=ledger_for(federation, node.name, dataset=table.source),
        sessions=None if state is None else SessionLog(state / f"{node.name}.sessions"),
    )
    party.link.listen_port = link_port  # the flag over the file
    try:
        return serve_node("party", args, identity, address, party.services(), party.close)
    finally:
        if lock is not None:  # held while it served (a crash drops it too)
            lock.release()


def register(sub) -> None:
    p = sub.add_parser(
        "party",
        help="run a party node (holds private data, shares it securely)",
        description=__doc__,
        formatter_class=Formatter,
        epilog=examples(
            "mpcdp certs init --federation examples/engineers/federation.toml   # once",
            "mpcdp party --federation examples/engineers/federation.toml --id alice   "
            "# and bob, carol: one terminal each",
            "mpcdp party --federation examples/engineers/federation.toml --id alice --values 3800,4100 --column raise",
        ),
    )
    p.add_argument(
        "--federation",
        required=True,
        help="federation file (TOML): this node's address and data file, its peers, the policy",
    )
    p.add_argument("--id", required=True, help="this node's name in the federation file (a node with the party role)")
    p.add_argument(
        "--values",
        help="comma-separated records to hold instead of the node's data file "
        "(experiments; default: the node's `data` file)",
    )
    p.add_argument("--column", default="value", help="column name the --values records get (default: value)")
    add_federation_node_arguments(p, 50051)
    p.set_defaults(run=run)
