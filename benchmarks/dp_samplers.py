"""Throughput of the DP samplers, side by side with OpenDP's equivalents in the same run.

Writes benchmarks/results/dp_samplers.json: samples per second (best of
``--repeats``) for the exact discrete Laplace and discrete Gaussian samplers
(batched, CSPRNG-backed) and for k-ary randomized response client reports,
each next to OpenDP 0.16 (``make_laplace`` / ``make_gaussian`` on an integer
vector, ``make_randomized_response`` called once per report). Targets:
discrete Laplace >= 3x OpenDP's batched throughput; k-RR >= 5 million
reports per second. OpenDP is a benchmark-only dependency (extra ``bench``).

Also the Polya pieces of distributed discrete Laplace noise (``mpcdp.dp.approximate``), side by side: the
compound-Poisson and the gamma-mixture identities at shape 1/2 (3 parties, 1 colluder) over scales 1 to
10^6, and which one ``polya`` picks; their ratio shows where the mixture pays.

    python benchmarks/dp_samplers.py [--n 1000000] [--repeats 3]
    python benchmarks/dp_samplers.py --polya-only    # writes benchmarks/results/dp_polya.json
    python benchmarks/dp_samplers.py --small --base /tmp/base-tree  # writes benchmarks/results/dp_small_pieces.json

``--small``: CPU per call of what a DP scalar query costs in noise (a party's noise piece for a scalar sum,
discrete Laplace at epsilon 0.001 and 1 and Skellam; a mean's two blocks; the coordinator's ``describe``),
this tree against the tree at ``--base`` (e.g. a ``git worktree`` of an older commit), alternating child
processes (PYTHONPATH set to each tree) ``--pairs`` times in one run; reports the medians and their ratios, and
the load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from mpcdp.dp import approximate, samplers
from mpcdp.dp.local import KaryRR
from mpcdp.prg import system_random

OUT = Path(__file__).parent / "results" / "dp_samplers.json"
POLYA_OUT = OUT.with_name("dp_polya.json")
SMALL_OUT = OUT.with_name("dp_small_pieces.json")
SCALE = 10.0
K = 10
EPSILON = 1.0


def best_rate(fn, n: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def mpcdp_rates(n: int, repeats: int) -> dict:
    rng = system_random("bench/dp")
    krr = KaryRR(EPSILON, K)
    values = np.arange(n, dtype=np.int64) % K
    return {
        "discrete_laplace": best_rate(lambda: samplers.discrete_laplace(Fraction(SCALE), n, rng), n, repeats),
        "discrete_gaussian": best_rate(lambda: samplers.discrete_gaussian(Fraction(SCALE**2), n, rng), n, repeats),
        "k_rr": best_rate(lambda: krr.randomize(values, rng), n, repeats),
    }


POLYA_SCALES = (1.0, 10.0, 30.0, 100.0, 1e3, 1e6)


def polya_rates(n: int, repeats: int) -> list[dict]:
    """Elements per second of each Polya identity at shape 1/2, by scale."""
    rng = system_random("bench/polya")
    rows = []
    for scale in POLYA_SCALES:
        compound = best_rate(lambda s=scale: approximate.polya_compound(0.5, s, n, rng), n, repeats)
        mixture = best_rate(lambda s=scale: approximate.polya_mixture(0.5, s, n, rng), n, repeats)
        events = -0.5 * np.log(-np.expm1(-1 / scale))
        rows.append(
            {
                "scale": scale,
                "events_per_element": events,
                "compound_per_s": compound,
                "mixture_per_s": mixture,
                "mixture_speedup": mixture / compound,
                "polya_uses": "mixture" if events > approximate.GAMMA_POISSON_MIN_EVENTS else "compound",
            }
        )
    return rows


def small_costs(calls: int) -> dict:
    """Microseconds of CPU per call (process time, warm) of a scalar DP query's noise work, in this process's
    tree (imported here: a child process runs it with PYTHONPATH set to the tree measured)."""
    from mpcdp.protocol import QuerySpec
    from mpcdp.protocol.noise import describe, noise_piece

    parties = ("p1", "p2", "p3")
    scalar = dict(bounds=(0, 1000), frac_bits=0, max_records=1)  # benchmarks/secure_sum.py --dp's query
    specs = {
        "piece: sum, discrete Laplace, eps 0.001": QuerySpec("sum", parties=parties, epsilon=0.001, **scalar),
        "piece: sum, discrete Laplace, eps 1": QuerySpec("sum", parties=parties, epsilon=1.0, **scalar),
        "piece: sum, Skellam, eps 1, delta 1e-6": QuerySpec(
            "sum", parties=parties, epsilon=1.0, delta=1e-6, mechanism="skellam", **scalar
        ),
        "piece: mean (sum + count), discrete Laplace, eps 1": QuerySpec(
            "mean", parties=parties, epsilon=1.0, bounds=(0, 1000)
        ),
    }
    rng = system_random("bench/small")
    out = {}
    for name, spec in specs.items():
        noise_piece(spec, rng)
        start = time.process_time()
        for _ in range(calls):
            noise_piece(spec, rng)
        out[name] = 1e6 * (time.process_time() - start) / calls
    spec = specs["piece: sum, discrete Laplace, eps 0.001"]
    start = time.process_time()
    for _ in range(calls):
        describe(spec, {"sum": 500.0})
    out["describe: sum, discrete Laplace, eps 0.001"] = 1e6 * (time.process_time() - start) / calls
    return out


def small_ab(base: Path, pairs: int, calls: int) -> dict:
    """``small_costs`` in child processes, this tree and ``base`` alternating ``pairs`` times."""
    here = Path(__file__).resolve().parents[1]
    runs: dict[str, list[dict]] = {"base": [], "new": []}
    loads = [os.getloadavg()[0]]
    for _ in range(pairs):
        for side, tree in (("base", base), ("new", here)):
            env = {**os.environ, "PYTHONPATH": str(tree)}
            cmd = [sys.executable, str(Path(__file__).resolve()), "--small-child", "--calls", str(calls)]
            runs[side].append(json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True).stdout))
            loads.append(os.getloadavg()[0])
    rows = {}
    for key in runs["new"][0]:
        old = statistics.median(r[key] for r in runs["base"])
        new = statistics.median(r[key] for r in runs["new"])
        rows[key] = {"base_us": old, "new_us": new, "speedup": old / new}
    return {"base": str(base), "pairs": pairs, "calls": calls, "load_1min": loads, "median_cpu_us": rows, "runs": runs}


def opendp_rates(n: int, n_rr: int, repeats: int) -> dict:
    import opendp.prelude as dp

    dp.enable_features("contrib")
    domain = dp.vector_domain(dp.atom_domain(T=int))
    lap = dp.m.make_laplace(domain, dp.l1_distance(T=int), scale=SCALE)
    gauss = dp.m.make_gaussian(domain, dp.l2_distance(T=int), scale=SCALE)
    zeros = [0] * n
    p = float(np.exp(EPSILON) / (np.exp(EPSILON) + K - 1))
    rr = dp.m.make_randomized_response(list(range(K)), p)
    answers = [i % K for i in range(n_rr)]
    return {
        "discrete_laplace": best_rate(lambda: lap(zeros), n, repeats),
        "discrete_gaussian": best_rate(lambda: gauss(zeros), n, repeats),
        "k_rr": best_rate(lambda: [rr(a) for a in answers], n_rr, repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="samples per batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--polya-only", action="store_true", help=f"only the Polya pieces (no OpenDP), to {POLYA_OUT}")
    parser.add_argument("--small", action="store_true", help=f"a scalar query's noise, vs --base, to {SMALL_OUT}")
    parser.add_argument("--base", type=Path, help="the tree to compare with (--small)")
    parser.add_argument("--pairs", type=int, default=4, help="alternating base/new child runs (--small)")
    parser.add_argument("--calls", type=int, default=2000, help="calls per measurement (--small)")
    parser.add_argument("--small-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.small_child:
        print(json.dumps(small_costs(args.calls)))
        return
    if args.small:
        if args.base is None:
            parser.error("--small needs --base (a tree to compare with)")
        result = small_ab(args.base, args.pairs, args.calls)
        SMALL_OUT.parent.mkdir(parents=True, exist_ok=True)
        SMALL_OUT.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["median_cpu_us"], indent=2), "load", result["load_1min"])
        return
    if args.polya_only:
        rows = polya_rates(args.n, args.repeats)
        load = __import__("os").getloadavg()[0]
        POLYA_OUT.write_text(json.dumps({"n": args.n, "load": load, "shape": 0.5, "rows": rows}, indent=2) + "\n")
        print(json.dumps(rows, indent=2))
        return
    import opendp

    ours = mpcdp_rates(args.n, args.repeats)
    theirs = opendp_rates(args.n // 5, args.n // 20, args.repeats)
    ratio = {key: ours[key] / theirs[key] for key in ours}
    result = {
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "parameters": {"n": args.n, "scale": SCALE, "k": K, "epsilon": EPSILON, "repeats": args.repeats},
        "opendp_version": getattr(opendp, "__version__", None) or _dist_version("opendp"),
        "samples_per_second": {"mpcdp": ours, "opendp": theirs},
        "speedup_vs_opendp": ratio,
        "polya_pieces": polya_rates(args.n, args.repeats),
        "targets": {
            "discrete_laplace_speedup_at_least_3x": ratio["discrete_laplace"] >= 3,
            "k_rr_at_least_5M_per_s": ours["k_rr"] >= 5e6,
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
