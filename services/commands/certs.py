"""``mpcdp certs init``: a private CA and a key and certificate for every node of a federation."""

from __future__ import annotations

import sys
from pathlib import Path

from services import federation as fed
from services.tls import init_certs


def run_init(args) -> int:
    try:
        federation = fed.load(args.federation)
    except fed.FederationError as exc:
        print(f"mpcdp certs: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else federation.certs
    if (out / "ca.pem").exists() and not args.force:
        print(f"mpcdp certs: {out} already holds a CA; pass --force to replace every certificate", file=sys.stderr)
        return 1
    init_certs(federation.names(), out, ca_name=f"{federation.name} CA")
    print(f"wrote a CA and certificates for {', '.join(federation.names())} to {out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("certs", help="make TLS certificates for a federation", description=__doc__)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = actions.add_parser("init", help="make a CA and one certificate per node")
    init.add_argument("--federation", required=True, help="federation file (TOML)")
    init.add_argument("--out", help="output folder (default: the federation file's `certs` folder)")
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    init.set_defaults(run=run_init)
