"""``mpcdp party``: run one party node of a federation, holding its own private data."""

from __future__ import annotations

import asyncio
import sys

from services import federation as fed
from services.data import DataError, Table
from services.ledgers import ledger_for
from services.party_node import PartyNode
from services.server import serve_until_stopped
from services.tls import Identity, warn_insecure
from services.wire.mpcdp.v1 import federation_pb2_grpc as pb_grpc

SERVICE = "mpcdp.v1.Party"


def _table(args, node) -> Table:
    if args.values is not None:
        values = [v for v in args.values.split(",") if v != ""]
        return Table({args.column: values}, "values given on the command line")
    if node.data is None:
        raise DataError(f"node {node.name!r} has no `data` in the federation file; pass --values for an experiment")
    return Table.load(node.data, node.table)


def run(args) -> int:
    try:
        federation = fed.load(args.federation)
        node = federation.node(args.id)
        if not node.has("party"):
            raise fed.FederationError(f"node {node.name!r} does not have the party role")
        table = _table(args, node)
    except (fed.FederationError, DataError) as exc:
        print(f"mpcdp party: {exc}", file=sys.stderr)
        return 2
    if args.insecure:
        warn_insecure()
    identity = Identity(node.name, federation.certs, args.insecure)
    party = PartyNode(federation, node.name, table, identity,
                      ledger=ledger_for(federation, node.name, dataset=table.source))
    address = args.listen or node.address
    return asyncio.run(serve_until_stopped(
        identity, address, [(pb_grpc.add_PartyServicer_to_server, party, SERVICE)],
        f"party {node.name} serving on port {{port}}", cleanup=party.close))


def register(sub) -> None:
    p = sub.add_parser("party", help="run a party node (holds private data, shares it securely)",
                       description=__doc__)
    p.add_argument("--federation", required=True, help="federation file (TOML)")
    p.add_argument("--id", required=True, help="this node's name in the federation file")
    p.add_argument("--values", help="comma-separated records instead of the node's data file (experiments)")
    p.add_argument("--column", default="value", help="column name for --values (default: value)")
    p.add_argument("--listen", help="address to bind instead of the federation file's (e.g. 0.0.0.0:50051)")
    p.add_argument("--insecure", action="store_true", help="plaintext, unauthenticated channels (local experiments only)")
    p.set_defaults(run=run)
