"""Sharing + reconstruction of L = 10^6 ring elements vs a plain numpy sum, side by side.

For n = 3 and 10 parties, times (median of repeats, same process, same run):
  plain     sum of n uint64 vectors of length L (the floor: memory bound)
  full      share(x, n) then reconstruct(shares)
  seeded    share_seeded(x, n) then expand the n - 1 seeds and reconstruct
and reports each as a ratio to ``plain``, plus the PRG's throughput in GB/s.
Writes benchmarks/results/sharing.json.  Target: seeded within 3x of plain.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from mpcdp import ring
from mpcdp.prg import Prg
from mpcdp.sharing import reconstruct, share, share_seeded

L = 10**6
REPEATS = 15
OUT = Path(__file__).resolve().parent / "results" / "sharing.json"


def median_time(fn) -> float:
    fn()  # warm up (page faults, caches)
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> dict:
    rng = Prg.from_int(1, "bench")
    x = rng.uint64(L)
    sid = bytes(16)
    prg_s = median_time(lambda: Prg(bytes(32), sid, "bench").uint64(L))
    rows = []
    for n in (3, 10):
        arrays = [rng.uint64(L) for _ in range(n)]
        plain = median_time(lambda arrays=arrays: ring.total(arrays))
        full = median_time(lambda n=n: reconstruct(share(x, n, rng=rng)))
        seeded = median_time(lambda n=n: share_seeded(x, n, sid, rng=rng).reconstruct(sid))
        seeded_share = median_time(lambda n=n: share_seeded(x, n, sid, rng=rng))
        full_share = median_time(lambda n=n: share(x, n, rng=rng))
        rows.append(
            {
                "n": n,
                "L": L,
                "plain_sum_ms": plain * 1e3,
                "full_ms": full * 1e3,
                "seeded_ms": seeded * 1e3,
                "full_share_ms": full_share * 1e3,
                "seeded_share_ms": seeded_share * 1e3,
                "full_ratio": full / plain,
                "seeded_ratio": seeded / plain,
                "full_share_ratio": full_share / plain,
                "seeded_share_ratio": seeded_share / plain,
                "seeded_share_within_3x": seeded_share / plain <= 3.0,
            }
        )
    result = {
        "benchmark": "sharing",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "prg_gb_per_s": 8 * L / prg_s / 1e9,
        "repeats": REPEATS,
        "rows": rows,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"PRG (AES-128-CTR): {result['prg_gb_per_s']:.2f} GB/s")
    print("ratios to a plain numpy sum of the same n vectors (share = split only; +rec = split and reconstruct)")
    print(f"{'n':>3} {'plain ms':>9} {'full share':>11} {'seeded share':>13} {'full +rec':>10} {'seeded +rec':>12}")
    for r in rows:
        print(
            f"{r['n']:>3} {r['plain_sum_ms']:>9.2f} {r['full_share_ratio']:>10.2f}x {r['seeded_share_ratio']:>12.2f}x "
            f"{r['full_ratio']:>9.2f}x {r['seeded_ratio']:>11.2f}x"
        )
    return result


if __name__ == "__main__":
    main()
