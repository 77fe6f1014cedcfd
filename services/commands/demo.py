"""``mpcdp demo``: the seed's four engineers average their raises without revealing them."""

from __future__ import annotations

from mpcdp.protocol import QuerySpec, run_in_memory

RAISES = {"alice": 3800, "bob": 2514, "carol": 2982, "dave": 3390}


def run(args) -> int:
    spec = QuerySpec("mean", parties=tuple(RAISES), column="raise", bounds=(0, 10_000))
    print("Four engineers each hold a private raise; they want only the average.")
    print(f"Each splits its raise into {spec.n_parties} random shares in Z_2^64 (seeded), keeps one,")
    print("sends the others to its peers, and reports only the sum of the shares it holds.")
    result = run_in_memory(spec, {p: [v] for p, v in RAISES.items()}).release
    print(f"average raise: {result.value:g}   (over {result.result['count']:g} parties, in memory)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the four-engineers raise-averaging example",
                       description=__doc__)
    p.set_defaults(run=run)
