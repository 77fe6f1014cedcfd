"""Throughput of the DP samplers, side by side with OpenDP's equivalents in the same run.

Writes benchmarks/results/dp_samplers.json: samples per second (best of
``--repeats``) for the exact discrete Laplace and discrete Gaussian samplers
(batched, CSPRNG-backed) and for k-ary randomized response client reports,
each next to OpenDP 0.16 (``make_laplace`` / ``make_gaussian`` on an integer
vector, ``make_randomized_response`` called once per report). Targets:
discrete Laplace >= 3x OpenDP's batched throughput; k-RR >= 5 million
reports per second. OpenDP is a benchmark-only dependency (extra ``bench``).

    python benchmarks/dp_samplers.py [--n 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from mpcdp.dp import samplers
from mpcdp.dp.local import KaryRR
from mpcdp.prg import system_random

OUT = Path(__file__).parent / "results" / "dp_samplers.json"
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
    args = parser.parse_args()
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
