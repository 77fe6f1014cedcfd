"""``mpcdp text-node``: serve word-level metric-DP text sanitisation over gRPC."""

from __future__ import annotations

import signal
import sys
import threading
import time

import grpc

from services.text_node import DEFAULT_MAX_TEXT_CHARS, add_embedding_arguments, build_server, sanitizer_from_args

INSECURE_WARNING = ("WARNING: --insecure: the text node serves plaintext, unauthenticated gRPC; "
                    "use only for local experiments.")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "text-node", help="serve text sanitisation (truncated Gumbel, multivariate Laplace) over gRPC",
        description="Serve mpcdp.v1.TextSanitizer with health checking and reflection. Run it inside "
                    "your own trust boundary: raw text reaches this node, only sanitised text leaves.")
    p.add_argument("--port", type=int, required=True, help="port to listen on (0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    p.add_argument("--max-text-chars", type=int, default=DEFAULT_MAX_TEXT_CHARS,
                   help="refuse longer texts (default %(default)s)")
    tls = p.add_argument_group("transport (mutual TLS, or --insecure)")
    tls.add_argument("--insecure", action="store_true", help="plaintext, unauthenticated (local experiments)")
    tls.add_argument("--cert", help="server certificate chain (PEM)")
    tls.add_argument("--key", help="server private key (PEM)")
    tls.add_argument("--ca", help="CA certificate that client certificates must chain to (PEM)")
    add_embedding_arguments(p)
    p.set_defaults(run=run)


def _credentials(args):
    if args.insecure:
        if args.cert or args.key or args.ca:
            raise ValueError("--insecure cannot be combined with --cert/--key/--ca")
        print(INSECURE_WARNING, file=sys.stderr)
        return None
    if not (args.cert and args.key and args.ca):
        raise ValueError("mutual TLS needs --cert, --key and --ca (or pass --insecure)")
    with open(args.key, "rb") as k, open(args.cert, "rb") as c, open(args.ca, "rb") as ca:
        return grpc.ssl_server_credentials([(k.read(), c.read())], root_certificates=ca.read(),
                                           require_client_auth=True)


def run(args) -> int:
    started = time.perf_counter()
    try:
        if not 0 <= args.port <= 65535:
            raise ValueError(f"--port must be in [0, 65535], got {args.port}")
        if args.max_text_chars < 1:
            raise ValueError(f"--max-text-chars must be positive, got {args.max_text_chars}")
        credentials = _credentials(args)
        sanitizer = sanitizer_from_args(args)
        server, port = build_server(sanitizer, f"{args.host}:{args.port}", credentials, args.max_text_chars)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"mpcdp text-node: {exc}", file=sys.stderr)
        return 2
    print(f"text node serving on {args.host}:{port} ({sanitizer.embedding.size} words, "
          f"ready in {time.perf_counter() - started:.2f} s)", file=sys.stderr, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=2).wait()
    return 0
