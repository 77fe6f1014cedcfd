"""``mpcdp demo``: the seed's four engineers average their raises without revealing them.

The coordinator and each engineer run as separate OS processes on loopback,
talking gRPC over mutual TLS with freshly made certificates (the same code as
``mpcdp simulate``): first the exact average, then a differentially private one,
then the same private query over four companies of 2,500 engineers each, where
the same epsilon costs almost nothing in accuracy.
No engineer, and not the coordinator, ever sees another engineer's raise; with
DP even the released average says little about any one of them. It takes no
options and needs no files.
"""

from __future__ import annotations

import sys

from mpcdp.prg import Prg
from services.analyst import QueryError
from services.commands import Formatter, examples
from services.simulation import LocalFederation

RAISES = {"alice": 3800, "bob": 2514, "carol": 2982, "dave": 3390}
BOUNDS = (0, 10_000)
DP_EPSILON = 4.0
COMPANY_SIZE = 2_500


def synthetic_raises(company: str, n: int):
    """Reproducible made-up raises in [1000, 6000) for the larger demo (data, not noise)."""
    return (1000 + Prg.from_int(sum(company.encode()), "demo-data").uint64(n) % 5000).astype(float)


def run(args) -> int:
    print("Four engineers each hold a private raise; they want only the average.")
    print("Each encodes its raise in Z_2^64, splits it into 4 additive shares (3 sent as 32-byte PRG seeds),")
    print("keeps one, sends the others to its peers over mutual TLS, and reports only the sum of the")
    print("shares it holds. The coordinator adds those partial sums: it never sees a raise.\n")
    try:
        with LocalFederation({p: [v] for p, v in RAISES.items()}, column="raise") as fed:
            exact = fed.query("mean", bounds=BOUNDS)
            print(f"average raise: {exact.value:g}   (exact, over {exact.result['count']:g} party processes)\n")
            print(f"The same query with differential privacy (epsilon = {DP_EPSILON:g}): each party also adds a")
            print("piece of discrete Laplace noise, so even the released sum and count are noisy and no one,")
            print("the coordinator included, knows the noise. With four records the noise is large.\n")
            noisy = fed.query("mean", bounds=BOUNDS, epsilon=DP_EPSILON)
            print(noisy.to_text())
        companies = {f"company-{c}": synthetic_raises(c, COMPANY_SIZE) for c in "abcd"}
        truth = sum(v.sum() for v in companies.values()) / (4 * COMPANY_SIZE)
        print(f"\nThe same private query over four companies of {COMPANY_SIZE:,} engineers each: one engineer")
        print("is a tiny part of the total, so the same noise hardly moves the average.\n")
        with LocalFederation(companies, column="raise") as fed:
            big = fed.query("mean", bounds=BOUNDS, epsilon=DP_EPSILON)
        print(big.to_text())
        print(f"(exact mean, for comparison only: {truth:.6g})")
    except (QueryError, RuntimeError) as exc:
        print(f"mpcdp demo: {exc}", file=sys.stderr)
        return 1
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the four-engineers raise-averaging example over real processes",
        description=__doc__,
        formatter_class=Formatter,
        epilog=examples("mpcdp demo"),
    )
    p.set_defaults(run=run)
