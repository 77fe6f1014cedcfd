"""``mpcdp simulate``: a whole federation on this machine, asked one query, then stopped.

A coordinator and --parties party processes start on loopback and talk gRPC
over mutual TLS with freshly made certificates: the same code as `mpcdp party`
and `mpcdp coordinator`. Each party holds one value (--values, or random in
--bounds) and runs the secure-sum protocol exactly as in a real federation:
a party sees only its own value and random-looking shares, the coordinator
only partial sums, you only the release (noisy with --epsilon). Each party
process reads its value from its own owner-only (0600) file in a temporary
folder, not from its command line (which `ps` shows to every user); --values
is still typed on yours, so this is for trying the protocol and its noise,
not for protecting real data.
"""

from __future__ import annotations

import sys

import numpy as np

from mpcdp.mpc.queries import COMPARISONS
from mpcdp.prg import Prg, system_random
from services.commands import (
    Formatter,
    add_query_arguments,
    at_least,
    categories,
    examples,
    missing_comparison_flag,
    positive,
    query_options,
)


def party_values(n: int, values: str | None, bounds, seed: int | None) -> dict[str, list[float]]:
    """One value per party: the given ones, or uniform in the bounds (seeded if asked)."""
    names = [f"party-{i + 1}" for i in range(n)]
    if values:
        try:
            given = [float(v) for v in values.split(",")]
        except ValueError:
            raise ValueError(f"--values takes one number per party, comma-separated, got {values!r}") from None
        if len(given) != n:
            raise ValueError(f"--values has {len(given)} values for --parties {n}")
        return {p: [v] for p, v in zip(names, given, strict=True)}
    rng = Prg.from_int(seed, "simulate") if seed is not None else system_random("simulate")
    lo, hi = bounds
    u = rng.uint64(n).astype(np.float64) / 2.0**64
    return {p: [float(lo + (hi - lo) * x)] for p, x in zip(names, u, strict=True)}


def run_simulation(data: dict, args, bounds, out=None) -> int:
    """Start the federation, run the query, print the release to ``out`` (default: the standard output at the
    time of the call; progress to stderr with --json)."""
    from services.analyst import QueryError  # here, with gRPC: not for `mpcdp --help`
    from services.simulation import LocalFederation

    out = out or sys.stdout
    print(
        f"starting a coordinator and {len(data)} party processes on loopback "
        f"({'plaintext: --insecure' if args.insecure else 'mutual TLS, fresh certificates'}) ...",
        file=sys.stderr if args.json else out,
    )
    try:
        with LocalFederation(
            data,
            column=args.column,
            insecure=args.insecure,
            timeout=args.timeout,
            allow_exact_nonlinear=args.statistic in COMPARISONS,  # the throwaway federation opts in, as to exact sums
        ) as f:
            result = f.query(args.statistic, bounds=bounds, **query_options(args))
    except QueryError as exc:
        print(f"mpcdp simulate: the query failed: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"mpcdp simulate: {exc}", file=sys.stderr)
        return 1
    print(result.to_json() if args.json else result.to_text(), file=out)
    return 0


PROCESS_LIMIT = 16  # above this many parties, they run in one process (services/swarm.py)


def run_in_process(data: dict, args, out=None) -> int:
    """The many-party query (sparse graph, quorum, dropouts) with every party in this process."""
    import json

    from mpcdp.protocol import QuerySpec, SpecError
    from services import swarm
    from services.many_party import PHASES

    out = out or sys.stdout
    n = len(data)
    quorum = args.quorum if args.quorum is not None else n - n // 10
    try:
        spec = QuerySpec(
            args.statistic,
            tuple(data),
            column=args.column,
            dimension=args.dimension,
            bounds=args.bounds,
            categories=tuple(categories(args)),
            frac_bits=args.frac_bits,
            max_records=args.max_records or 1,  # one value per party
            epsilon=args.epsilon,
            delta=args.delta,
            mechanism=args.mechanism,
            colluders=args.colluders,
        )
        query = swarm.MaskedQuery.of(spec, quorum)
        query.plan  # noqa: B018  (refuses colluders and dropouts no graph can survive)
    except (SpecError, ValueError) as exc:
        print(f"mpcdp simulate: {exc}", file=sys.stderr)
        return 2
    if args.drop > n - quorum:
        print(f"mpcdp simulate: --drop {args.drop} exceeds the {n - quorum} dropouts --quorum allows", file=sys.stderr)
        return 2
    picker = Prg.from_int(args.seed, "simulate/drop") if args.seed is not None else system_random("simulate/drop")
    order = [list(data)[i] for i in np.argsort(picker.uint64(n), kind="stable")]
    stop = {p: PHASES[i % len(PHASES)] for i, p in enumerate(order[: args.drop])}
    print(
        f"running {n} parties {f'in {args.workers} worker processes' if args.workers else 'in this process'} "
        f"(many-party protocol: sparse graph of degree "
        f"{query.plan.degree}, quorum {quorum}{f', {args.drop} made to drop' if args.drop else ''}) ...",
        file=sys.stderr if args.json else out,
    )
    if args.workers:
        import asyncio

        wait = args.round_timeout or 30 * swarm.ROUND_TIMEOUT
        if args.drop:
            print(f"(a round waits for {wait:g} s of silence before it gives up on a dropped party)", file=sys.stderr)
        run = asyncio.run(swarm.run_across_processes(query, data, workers=args.workers, stop=stop, round_timeout=wait))
    else:
        run = swarm.run_query(query, data, stop=stop, round_timeout=args.round_timeout or swarm.ROUND_TIMEOUT)
    if run.release is None:
        print(f"mpcdp simulate: the query failed: {run.error}", file=sys.stderr)
        return 1
    doc = swarm.report(run, spec, data, args.confidence)
    print(json.dumps(doc, default=str) if args.json else swarm.to_text(doc), file=out)
    return 0


def run(args) -> int:
    try:
        data = party_values(args.parties, args.values, args.bounds, args.seed)
    except ValueError as exc:
        print(f"mpcdp simulate: {exc}", file=sys.stderr)
        return 2
    if args.insecure:
        from services.tls import warn_insecure

        warn_insecure()
    if args.statistic in COMPARISONS:  # computed by the party processes under MPC
        if len(data) < 3:
            print("mpcdp simulate: comparisons under MPC need at least 3 parties (honest majority)", file=sys.stderr)
            return 2
        missing = missing_comparison_flag(args)
        if missing:
            print(f"mpcdp simulate: {missing}", file=sys.stderr)
            return 2
        return run_simulation(data, args, args.bounds)
    if args.parties > PROCESS_LIMIT or args.in_process or args.quorum is not None or args.drop or args.workers:
        return run_in_process(data, args)
    return run_simulation(data, args, args.bounds)


def register(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="run a federation as local processes and ask it one query",
        description=__doc__,
        formatter_class=Formatter,
        epilog=examples(
            "mpcdp simulate --parties 4 --values 3800,2514,2982,3390 --statistic mean --bounds 0,10000",
            "mpcdp simulate --parties 4 --values 3800,2514,2982,3390 --statistic mean --bounds 0,10000 "
            "--epsilon 1 --json",
            "mpcdp simulate --parties 20 --statistic sum --bounds 0,1 --epsilon 0.5 --seed 7   "
            "# random data, one value per party",
            "mpcdp simulate --parties 4 --values 3800,2514,2982,3390 --statistic max   "
            "# under MPC: prints the top bid only",
            "mpcdp simulate --parties 5 --values 1,1,1,1,1 --statistic threshold --threshold 0.5   # YES/NO only",
            "mpcdp simulate --parties 1000 --statistic sum --bounds 0,1 --seed 1   # 1,000 parties in this process",
            "mpcdp simulate --parties 100 --statistic mean --epsilon 1 --quorum 90 --drop 8   # 8 parties drop",
            "mpcdp simulate --parties 1000 --workers 2 --statistic sum --bounds 0,1   # 500 parties per process",
        ),
    )
    p.add_argument(
        "--parties",
        type=at_least(2, " (a secure sum needs two parties)"),
        default=4,
        help=f"number of parties, at least 2 (default 4): one process each up to {PROCESS_LIMIT}, "
        "all in this process above that (up to 1024)",
    )
    p.add_argument("--values", help="one number per party, comma-separated (default: uniform random in --bounds)")
    p.add_argument(
        "--seed",
        type=at_least(0),
        help="seed for the random values: reproducible data, never reproducible noise (default: fresh random values)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext, unauthenticated channels between the local processes (experiments only)",
    )
    p.add_argument(
        "--quorum",
        type=at_least(2),
        help="many-party protocol: the query completes if at least this many parties finish "
        "(default: all but a tenth); the release names who was counted and restates epsilon for them",
    )
    p.add_argument(
        "--drop",
        type=at_least(0),
        default=0,
        help="many-party protocol: make this many parties drop, each at a different phase (default 0)",
    )
    p.add_argument(
        "--workers",
        type=at_least(0),
        default=0,
        help="many-party protocol: spread the parties over this many worker processes, linked by mutual TLS "
        "(default 0: every party in this process)",
    )
    p.add_argument(
        "--round-timeout",
        type=positive,
        metavar="SECONDS",
        help="many-party protocol: a round stops waiting for parties after this long without a message "
        "(default 1 in this process, 30 with --workers, where a worker masking hundreds of parties at once "
        "can leave its links quiet for seconds)",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help=f"run every party in this process with the many-party protocol (sparse graph, quorum, dropouts); "
        f"automatic above {PROCESS_LIMIT} parties, or with --quorum or --drop",
    )
    add_query_arguments(p, statistic_default="mean", bounds_default="0,10000")
    p.set_defaults(run=run)
