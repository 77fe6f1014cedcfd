"""``mpcdp certs init``: a private CA and a key and certificate for every node of a federation or survey.

Every node-to-node channel is mutually authenticated TLS: a node accepts a peer
only if the peer's certificate was signed by the federation's CA and names the
node it claims to be, so no outsider can read shares or pose as a party. The
CA key (ca.key) can mint new members: keep it offline once the certificates
are handed out, and give each node only ca.pem, <name>.pem and <name>.key.
"""

from __future__ import annotations

import sys
from pathlib import Path

from services.commands import Formatter, examples

FEDERATION = "examples/engineers/federation.toml"
SURVEY = "examples/election_poll.toml"


def _members(args) -> tuple[str, list[str], Path]:
    """(CA name, node names, default output folder) of the federation or survey file."""
    if args.federation:
        from services import federation as fed

        federation = fed.load(args.federation)
        return f"{federation.name} CA", list(federation.names()), federation.certs
    from mpcdp.survey.definition import read_survey
    from services.survey.simulation import COORDINATOR, RESPONDENTS
    from services.survey.tokens_cli import ISSUER

    survey = read_survey(args.survey)
    # respondents of a verified survey are admitted by token over server-authenticated HTTPS: no certificate
    respondents = [] if survey.verified else [RESPONDENTS]
    names = [*survey.aggregator_names, COORDINATOR, ISSUER, *respondents]
    return f"{survey.id} CA", names, Path(args.survey).resolve().parent / "certs"


def run_init(args) -> int:
    from mpcdp.survey.definition import SurveyError
    from services import federation as fed
    from services.tls import init_certs

    try:
        ca_name, names, default_out = _members(args)
    except (fed.FederationError, SurveyError) as exc:
        print(f"mpcdp certs: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else default_out
    if (out / "ca.pem").exists() and not args.force:
        print(f"mpcdp certs: {out} already holds a CA; pass --force to replace every certificate", file=sys.stderr)
        return 1
    try:
        init_certs(names, out, ca_name=ca_name)
    except OSError as exc:
        print(f"mpcdp certs: cannot write certificates to {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote a CA and certificates for {', '.join(names)} to {out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "certs",
        help="make the TLS certificates of a federation (a CA, one per node)",
        description=__doc__,
        formatter_class=Formatter,
        epilog=examples(f"mpcdp certs init --federation {FEDERATION}"),
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = actions.add_parser(
        "init",
        help="make a CA and one key and certificate per node",
        description="Make a fresh CA (ca.pem, ca.key) and a key and certificate (<name>.pem, <name>.key) for "
        "every node of the federation file, so that every channel is mutually authenticated TLS. "
        "For a survey file: one per aggregator, plus `coordinator` (closes the survey), `issuer` (the token "
        "endpoint's HTTPS certificate) and, for a survey without proofs only, `respondents` (the client "
        "certificate respondents submit with; respondents of a verified survey use an invitation instead). "
        "Keys are written readable by their owner only; an existing CA is kept unless --force.",
        formatter_class=Formatter,
        epilog=examples(
            f"mpcdp certs init --federation {FEDERATION}",
            f"mpcdp certs init --federation {FEDERATION} --out /tmp/engineers-certs --force",
            f"mpcdp certs init --survey {SURVEY} --out /tmp/poll-certs",
        ),
    )
    which = init.add_mutually_exclusive_group(required=True)
    which.add_argument("--federation", help="federation file (TOML) whose nodes get a certificate each")
    which.add_argument(
        "--survey", help="survey file (TOML) whose aggregators, coordinator and issuer get a certificate each"
    )
    init.add_argument(
        "--out",
        help="output folder (default: the federation file's `certs` folder, "
        "relative to the file; for a survey, `certs` next to the survey file)",
    )
    init.add_argument(
        "--force",
        action="store_true",
        help="replace an existing CA and every certificate (old certificates stop being accepted)",
    )
    init.set_defaults(run=run_init)
