"""``mpcdp text-node``: serve word-level metric-DP text sanitisation over gRPC, as a member of a federation.

A party runs it inside its own trust boundary: its clients send raw texts and
get back texts in which every word was replaced by a metric-DP draw (see
`mpcdp text sanitize --help` for the guarantee); only the sanitised text
should leave the boundary. The node keeps no texts and logs none.

The node's name, address and certificate come from the federation file and the
folder ``mpcdp certs init`` wrote, exactly as for ``mpcdp party``; only clients
holding a certificate from the federation's CA are served. ``--insecure``
serves plaintext for a local experiment, with or without a federation file.

One client cannot stall the node: health checks always answer, sanitisation
runs on --workers threads behind a queue of --queue requests, each client
(certificate name) may have --per-client requests queued or running, and
streams idle for --idle-timeout seconds are closed. Requests over a limit are
refused at once with RESOURCE_EXHAUSTED. Refusals and closed streams go to
the audit log (--audit-log, --log-format), never a text.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

from services.commands import Formatter, add_node_arguments, configure_audit, examples, node_limits
from services.text_options import TextLimits, add_embedding_arguments, sanitizer_from_args

if TYPE_CHECKING:
    from services.tls import Identity

ROLE = "text"
LOCAL_HOST = "127.0.0.1"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "text-node",
        help="serve text sanitisation (truncated Gumbel, multivariate Laplace) over gRPC",
        description=__doc__,
        formatter_class=Formatter,
        epilog=examples(
            "mpcdp text-node --insecure --port 50060   # a local experiment, plaintext",
            "mpcdp text-node --federation examples/docker/federation.toml --id text   # in the compose federation",
        ),
    )
    p.add_argument(
        "--federation",
        help="federation file (TOML) naming this node, its address and the "
        "certificate folder (required unless --insecure)",
    )
    p.add_argument("--id", help="this node's name in the federation file (a node with the text role)")
    p.add_argument("--listen", help="address to bind instead of the federation file's (e.g. 0.0.0.0:50060)")
    p.add_argument("--port", type=int, help="port to bind instead of the federation file's (0: any free port)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext, unauthenticated channels: anyone on the network can read the texts (local experiments only)",
    )
    limits = p.add_argument_group("sanitising work")
    limits.add_argument(
        "--max-text-chars",
        type=int,
        default=TextLimits.max_text_chars,
        help="refuse longer texts (default %(default)s)",
    )
    limits.add_argument(
        "--workers", type=int, default=TextLimits.workers, help="threads sanitising at once (default %(default)s)"
    )
    limits.add_argument(
        "--queue",
        type=int,
        default=TextLimits.queue,
        help="requests queued or running, all clients together (default %(default)s)",
    )
    limits.add_argument(
        "--per-client",
        type=int,
        default=TextLimits.per_client,
        help="requests one client may have queued or running (default %(default)s)",
    )
    add_node_arguments(p)
    add_embedding_arguments(p)
    p.set_defaults(run=run)


def _is_address(address: str) -> bool:
    host, _, port = address.rpartition(":")
    return bool(host) and port.isdigit() and int(port) <= 65535


def identity_and_address(args) -> tuple[Identity, str]:
    """This node's TLS identity and the address it binds, from the flags and the federation file."""
    from services.tls import Identity, warn_insecure  # here, with gRPC: not for `mpcdp --help`

    if args.port is not None and not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in [0, 65535], got {args.port}")
    if args.listen is not None and not _is_address(args.listen):
        raise ValueError(f"--listen must be host:port, got {args.listen!r}")
    if (args.federation is None) != (args.id is None):
        raise ValueError("--federation and --id go together")
    if args.federation is None:
        if not args.insecure:
            raise ValueError(
                "pass --federation FILE --id NAME (mutual TLS with the federation's "
                "certificates), or --insecure for a local experiment"
            )
        if args.listen is None and args.port is None:
            raise ValueError("without --federation, pass --port or --listen")
        identity = Identity(ROLE, None, insecure=True)
        address = args.listen or f"{LOCAL_HOST}:0"
    else:
        from services import federation as fed  # here: pydantic costs the node ~0.3 s of start-up otherwise

        federation = fed.load(args.federation)
        node = federation.node(args.id)
        if not node.has(ROLE):
            raise fed.FederationError(f"node {node.name!r} does not have the {ROLE} role")
        identity = Identity(node.name, federation.certs, args.insecure)
        address = args.listen or node.address
    if args.port is not None:
        address = f"{address.rsplit(':', 1)[0]}:{args.port}"
    if args.insecure:
        warn_insecure()
    else:
        identity.server_credentials()  # a missing certificate fails now, not after loading the embedding
    return identity, address


def run(args) -> int:
    from services import audit
    from services.text_node import build_server

    started = time.perf_counter()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        limits = TextLimits(args.max_text_chars, args.workers, args.queue, args.per_client)
        identity, address = identity_and_address(args)
        configure_audit(args, identity.name)
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which CPU build it picked is noise here
        sanitizer = sanitizer_from_args(args)
        server, port = build_server(sanitizer, address, identity, limits, node_limits(args))
    except (ValueError, OSError, RuntimeError) as exc:  # FederationError is a ValueError
        print(f"mpcdp text-node: {exc}", file=sys.stderr)
        return 2
    host = address.rsplit(":", 1)[0]
    print(
        f"text node {identity.name} serving on {host}:{port} ({sanitizer.embedding.size} words, "
        f"ready in {time.perf_counter() - started:.2f} s)",
        file=sys.stderr,
        flush=True,
    )
    print(sanitizer.describe(), file=sys.stderr, flush=True)
    audit.record("started", address=address, port=port)
    stop.wait()
    server.stop(grace=2)
    return 0
