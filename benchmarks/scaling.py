"""How the secure sum scales: time and bytes per party against the number of parties and the vector length.

Two sweeps over real processes on loopback (mutual TLS), as in
``benchmarks/secure_sum.py`` (whose runners this reuses, MPyC 0.11 in the
same run where it finishes in reasonable time):

- n = 3, 5, 10, 16 parties at L = 10^4 (every party is one OS process: this
  machine's two cores bound n here; see the limits in the JSON);
- L = 1, 10^2, 10^4, 10^5, 10^6, 10^7 at n = 3 (MPyC up to 10^5: 10^6 alone
  takes it about 5 s per sum).

Per party: the wall time of one query, and the bytes the parties sent on
their TCP sockets divided by n. Writes benchmarks/results/scaling.json and
scaling.png (log-log).

    python benchmarks/scaling.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from secure_sum import run_mpcdp, run_mpyc

RESULTS = Path(__file__).resolve().parent / "results"
PARTIES = [3, 5, 10, 16]
START_TIMEOUT = 300.0  # seconds for n processes to start on a busy 2-core machine
PARTIES_L = 10_000
LENGTHS = [1, 100, 10_000, 100_000, 1_000_000, 10_000_000]
LENGTHS_N = 3
MPYC_MAX_LENGTH = 100_000
MPYC_MAX_PARTIES = 10


def point(length: int, parties: int, reps: int, mpyc: bool) -> dict:
    import services.simulation

    services.simulation.START_TIMEOUT = START_TIMEOUT
    ours = run_mpcdp(length, parties, reps)
    row = {
        "length": length,
        "parties": parties,
        "repetitions": reps,
        "mpcdp_seconds": ours["seconds"],
        "mpcdp_bytes_per_party": ours["party_bytes"] / parties,
        "mpcdp_runs": ours["runs"],
    }
    if mpyc:
        theirs = run_mpyc(length, parties, reps)
        row.update(mpyc_seconds=theirs["seconds"], mpyc_bytes_party0=theirs["bytes_party0"])
    print(
        f"n={parties:>4} L={length:>9}: mpcdp {1e3 * row['mpcdp_seconds']:9.1f} ms"
        + (f", MPyC {1e3 * row['mpyc_seconds']:9.1f} ms" if mpyc else ""),
        flush=True,
    )
    return row


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for col, (sweep, key, label) in enumerate(
        [
            ("by_parties", "parties", f"parties n (L = {PARTIES_L:,})"),
            ("by_length", "length", f"vector length L (n = {LENGTHS_N})"),
        ]
    ):
        rows = report[sweep]
        x = [r[key] for r in rows]
        ax = axes[0][col]
        ax.loglog(x, [r["mpcdp_seconds"] for r in rows], "o-", label="mpcdp (wall time of a query)")
        m = [(r[key], r["mpyc_seconds"]) for r in rows if "mpyc_seconds" in r]
        if m:
            ax.loglog(*zip(*m), "s--", label="MPyC 0.11")
        ax.set_xlabel(label)
        ax.set_ylabel("seconds")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        ax = axes[1][col]
        ax.loglog(x, [r["mpcdp_bytes_per_party"] for r in rows], "o-", label="mpcdp: bytes sent per party")
        mb = [(r[key], r["mpyc_bytes_party0"]) for r in rows if r.get("mpyc_bytes_party0")]
        if mb:
            ax.loglog(*zip(*mb), "s--", label="MPyC: bytes sent by party 0")
        ax.loglog(x, [8 * max(r["length"], 1) for r in rows], ":", color="gray", label="8 L (the input, in clear)")
        ax.set_xlabel(label)
        ax.set_ylabel("bytes")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("Secure sum over loopback, mutual TLS, one process per party (2-core machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one repetition per point, fewer points")
    args = ap.parse_args(argv)
    reps = 1 if args.quick else 3
    parties = PARTIES[:3] if args.quick else PARTIES
    lengths = LENGTHS[:4] if args.quick else LENGTHS
    report = {
        "benchmark": "scaling",
        "sharing": "seeded, every party with every other (full mesh)",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "by_parties": [point(PARTIES_L, n, reps, n <= MPYC_MAX_PARTIES) for n in parties],
        "by_length": [point(L, LENGTHS_N, reps, L <= MPYC_MAX_LENGTH) for L in lengths],
        "not_measured": "n beyond 16: one OS process per party on 2 cores; 100 and 1,000 parties need many "
        "parties per process and a sparse sharing graph (not built)",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scaling.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, RESULTS / "scaling.png")
    print(f"wrote {RESULTS / 'scaling.json'} and scaling.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
