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
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from mpcdp.dp import approximate, samplers
from mpcdp.dp.local import KaryRR
from mpcdp.prg import system_random

OUT = Path(__file__).parent / "results" / "dp_samplers.json"
POLYA_OUT = OUT.with_name("dp_polya.json")
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
    args = parser.parse_args()
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
