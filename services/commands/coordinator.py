"""``mpcdp coordinator``: run a federation's coordinator, which answers analysts' queries."""

from __future__ import annotations

import asyncio
import sys

from services import federation as fed
from services.coordinator_node import DEFAULT_TIMEOUT, CoordinatorNode
from services.ledgers import ledger_for
from services.server import serve_until_stopped
from services.tls import Identity, warn_insecure
from services.wire.mpcdp.v1 import federation_pb2_grpc as pb_grpc

SERVICE = "mpcdp.v1.Coordinator"


def run(args) -> int:
    try:
        federation = fed.load(args.federation)
        node = federation.coordinator()
    except fed.FederationError as exc:
        print(f"mpcdp coordinator: {exc}", file=sys.stderr)
        return 2
    if args.insecure:
        warn_insecure()
    identity = Identity(node.name, federation.certs, args.insecure)
    coordinator = CoordinatorNode(federation, identity, ledger=ledger_for(federation, node.name, federation.name),
                                  default_timeout=args.timeout)
    return asyncio.run(serve_until_stopped(
        identity, args.listen or node.address,
        [(pb_grpc.add_CoordinatorServicer_to_server, coordinator, SERVICE)],
        f"coordinator {node.name} serving on port {{port}}", cleanup=coordinator.close))


def register(sub) -> None:
    p = sub.add_parser("coordinator", help="run the coordinator (opens sessions, releases DP results)",
                       description=__doc__)
    p.add_argument("--federation", required=True, help="federation file (TOML)")
    p.add_argument("--listen", help="address to bind instead of the federation file's (e.g. 0.0.0.0:50050)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"default session deadline in seconds (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--insecure", action="store_true", help="plaintext, unauthenticated channels (local experiments only)")
    p.set_defaults(run=run)
