"""``mpcdp demo``: the seed's examples among real party processes.

``mpcdp demo`` (or ``mpcdp demo raises``): four engineers average their raises
without revealing them. ``mpcdp demo referendum``: five voters learn only
whether at least half voted YES -- the answer, YES, and nothing about the
count. ``mpcdp demo auction``: the four engineers bid their raises and only
the winning bid is printed; ``mpcdp demo vickrey``: a second-price auction
that names only the winner and what it pays (the second-highest bid), not
the winning bid. The referendum and the auctions are computed by the parties
under MPC (replicated secret sharing, honest majority): no party, and not the
coordinator, sees a vote or a bid.

For the raises: the coordinator and each engineer run as separate OS processes on loopback,
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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.commands import Formatter, examples

RAISES = {"alice": 3800, "bob": 2514, "carol": 2982, "dave": 3390}
BOUNDS = (0, 10_000)
DP_EPSILON = 4.0
COMPANY_SIZE = 2_500


def synthetic_raises(company: str, n: int):
    """Reproducible made-up raises in [1000, 6000) for the larger demo (data, not noise)."""
    from mpcdp.prg import Prg

    return (1000 + Prg.from_int(sum(company.encode()), "demo-data").uint64(n) % 5000).astype(float)


VOTERS = ("ana", "ben", "chloe", "dmitri", "eve")  # the unanimous referendum: every one votes YES


@dataclass(frozen=True)
class ComparisonDemo:
    """A demo computed under MPC among a throwaway federation whose policy opts in to exact nonlinear
    releases: its story, each party's records, the query, and the line that prints the answer."""

    story: str
    records: dict[str, list[float]]
    column: str
    statistic: str
    answer: Callable[[Any], str]
    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self, args) -> int:
        from services.simulation import LocalFederation

        print(self.story + "\n")
        with LocalFederation(self.records, column=self.column, allow_exact_nonlinear=True) as fed:
            result = fed.query(self.statistic, **self.options)
        print(self.answer(result))
        return 0


BIDS = {p: [float(v)] for p, v in RAISES.items()}

referendum = ComparisonDemo(
    "Five voters each hold one secret ballot, YES or NO, each at their own party process.\n"
    "A count would reveal every vote when it is unanimous, so the parties compute under MPC only\n"
    "whether the YES votes reach half of the ballots: each enters its ballot as replicated secret\n"
    "shares, the comparison runs on shares, and only its one-bit answer is opened.",
    {v: [1.0] for v in VOTERS},
    "ballot",
    "threshold",
    lambda r: f"referendum: {r.value}",
    {"fraction": 0.5},
)
auction = ComparisonDemo(
    "The four engineers bid their raises, each at their own party process. Under MPC the parties\n"
    "compare the bids on secret shares (a tournament whose outcomes stay shared) and open only the\n"
    "top bid: no losing bid, and not who bid it, leaves the parties.",
    BIDS,
    "bid",
    "max",
    lambda r: f"winning bid: {r.value:g}",
)
vickrey = ComparisonDemo(
    "A second-price (Vickrey) auction among the four engineers: the highest bidder wins and pays\n"
    "the second-highest bid. Under MPC the parties open only the winner's name and that price: the\n"
    "winning bid itself, and every other bid, stay secret.",
    BIDS,
    "bid",
    "second-price",
    lambda r: f"winner: {r.result['winner']}, pays {r.value:g}",
)


def run(args) -> int:
    from services.analyst import QueryError  # here, not above: `mpcdp --help` needs no analyst (grpc, scipy)

    try:
        return DEMOS[args.which](args)
    except (QueryError, RuntimeError) as exc:
        print(f"mpcdp demo: {exc}", file=sys.stderr)
        return 1


def raises(args) -> int:
    from services.analyst import QueryError
    from services.simulation import LocalFederation

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


DEMOS: dict[str, Callable[[Any], int]] = {
    "raises": raises,
    "referendum": referendum,
    "auction": auction,
    "vickrey": vickrey,
}


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the seed's examples over real processes: raises (default), referendum, auction, vickrey",
        description=__doc__,
        formatter_class=Formatter,
        epilog=examples("mpcdp demo", "mpcdp demo referendum", "mpcdp demo auction", "mpcdp demo vickrey"),
    )
    p.add_argument(
        "which",
        nargs="?",
        default="raises",
        choices=tuple(DEMOS),
        help="raises: the average of four raises, exact then DP; referendum: YES/NO only; auction: the "
        "winning bid only; vickrey: the winner and the second price only (default: raises)",
    )
    p.set_defaults(run=run)
