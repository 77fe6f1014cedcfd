"""``mpcdp certs init``: a private CA and a key and certificate for every node of a federation.

Every node-to-node channel is mutually authenticated TLS: a node accepts a peer
only if the peer's certificate was signed by the federation's CA and names the
node it claims to be, so no outsider can read shares or pose as a party. The
CA key (ca.key) can mint new members: keep it offline once the certificates
are handed out, and give each node only ca.pem, <name>.pem and <name>.key.
"""

from __future__ import annotations

import sys
from pathlib import Path

from services import federation as fed
from services.commands import Formatter, examples
from services.tls import init_certs

FEDERATION = "examples/engineers/federation.toml"


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
    try:
        init_certs(federation.names(), out, ca_name=f"{federation.name} CA")
    except OSError as exc:
        print(f"mpcdp certs: cannot write certificates to {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote a CA and certificates for {', '.join(federation.names())} to {out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("certs", help="make the TLS certificates of a federation (a CA, one per node)",
                       description=__doc__, formatter_class=Formatter,
                       epilog=examples(f"mpcdp certs init --federation {FEDERATION}"))
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = actions.add_parser(
        "init", help="make a CA and one key and certificate per node",
        description="Make a fresh CA (ca.pem, ca.key) and a key and certificate (<name>.pem, <name>.key) for "
                    "every node of the federation file, so that every channel is mutually authenticated TLS. "
                    "Keys are written readable by their owner only; an existing CA is kept unless --force.",
        formatter_class=Formatter, epilog=examples(
            f"mpcdp certs init --federation {FEDERATION}",
            f"mpcdp certs init --federation {FEDERATION} --out /tmp/engineers-certs --force",
        ))
    init.add_argument("--federation", required=True,
                      help="federation file (TOML) whose nodes get a certificate each")
    init.add_argument("--out", help="output folder (default: the federation file's `certs` folder, "
                                    "relative to the file)")
    init.add_argument("--force", action="store_true",
                      help="replace an existing CA and every certificate (old certificates stop being accepted)")
    init.set_defaults(run=run_init)
