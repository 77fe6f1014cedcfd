"""Secure sum over real processes on loopback: mpcdp's federation against MPyC 0.11, side by side.

Workloads: a scalar with 3 parties; vectors of L = 10^5 and 10^6 with 3
parties; L = 10^5 with 10 parties. Each party holds one integer vector in
[0, 1000). mpcdp runs its full protocol (proposal, seeded shares over mutual
TLS, partial sums, release) against already-running party processes; MPyC
runs the same sum of ``secint`` arrays with ``-M<n>`` on loopback (its own
demos' way), timed from input to output after its start-up. Reported:
median latency, its ratio to MPyC, and the bytes the nodes sent on their
TCP sockets (kernel counters from ``ss -tinp``, so TLS and HTTP/2 overhead
included) as a ratio to each party sending its input vector in the clear
(n * L * 8 bytes). The parties' bytes are the secure sum itself; "+release"
adds the coordinator's (proposals and the release to the analyst). Every
channel (analyst to coordinator, coordinator to parties, party to party) is
opened and TLS-authenticated once, at the warm-up query, and reused, as MPyC's
connections are set up before its timed region.

    python benchmarks/secure_sum.py [--quick]      # writes benchmarks/results/secure_sum.json
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
from pathlib import Path

import numpy as np

MPYC_ENV = "MPCDP_BENCH_MPYC_LENGTH"
RESULTS = Path(__file__).resolve().parent / "results" / "secure_sum.json"
WORKLOADS = [  # (name, L, parties, repetitions)
    ("scalar, 3 parties", 1, 3, 30),
    ("L=1e5, 3 parties", 100_000, 3, 5),
    ("L=1e6, 3 parties", 1_000_000, 3, 3),
    ("L=1e5, 10 parties", 100_000, 10, 3),
]
BOUND = 1000


# -- the MPyC side: this same file, run as an MPyC program ---------------------------


def mpyc_party() -> None:
    from mpyc.runtime import mpc

    length = int(os.environ[MPYC_ENV])
    reps = int(os.environ.get("MPCDP_BENCH_MPYC_REPS", "1"))

    async def main():
        secint = mpc.SecInt(64)
        await mpc.start()
        x = (np.arange(length, dtype=np.int64) * (mpc.pid + 1)) % BOUND
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            a = secint.array(x) if length > 1 else secint(int(x[0]))
            xs = mpc.input(a)
            total = xs[0]
            for y in xs[1:]:
                total = total + y
            await mpc.output(total)
            times.append(time.perf_counter() - t0)
        await mpc.shutdown()
        if mpc.pid == 0:
            print("RESULT " + json.dumps({"seconds": statistics.median(times), "runs": times}), flush=True)

    mpc.run(main())


def run_mpyc(length: int, parties: int, reps: int) -> dict:
    env = {**os.environ, MPYC_ENV: str(length), "MPCDP_BENCH_MPYC_REPS": str(reps)}
    out = subprocess.run(
        [sys.executable, __file__, f"-M{parties}"], env=env, capture_output=True, text=True, timeout=900
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            sent = [
                int(l.split("bytes sent:")[1]) for l in (out.stdout + out.stderr).splitlines() if "bytes sent:" in l
            ]
            result["bytes_party0"] = sent[-1] if sent else None
            return result
    raise RuntimeError(f"MPyC run failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")


# -- the mpcdp side --------------------------------------------------------------------


def socket_bytes_sent() -> dict[int, int]:
    """Bytes sent so far on every established TCP socket, summed per owning process (``ss -tinp``)."""
    out = subprocess.run(["ss", "-tinpH", "state", "established"], capture_output=True, text=True, check=True).stdout
    sent: dict[int, int] = {}
    pid = None
    for line in out.splitlines():
        if "pid=" in line:
            pid = int(line.split("pid=")[1].split(",")[0])
        elif pid is not None and "bytes_sent:" in line:
            sent[pid] = sent.get(pid, 0) + int(line.split("bytes_sent:")[1].split()[0])
            pid = None
    return sent


def run_mpcdp(length: int, parties: int, reps: int) -> dict:
    from services.simulation import COORDINATOR, LocalFederation

    data = {
        f"party-{i + 1}": ((np.arange(length, dtype=np.int64) * (i + 1)) % BOUND).reshape(1, length).astype(np.float64)
        for i in range(parties)
    }
    query = dict(bounds=(0, BOUND), dimension=length, frac_bits=0, max_records=1, timeout=300.0)
    expected = sum(v[0] for v in data.values())
    with LocalFederation(data, timeout=300.0, max_length=max(length, 1 << 21)) as fed:
        first = fed.query("sum", **query)  # warm-up: channels, imports, first-touch allocations
        got = np.atleast_1d(np.asarray(first.value, dtype=np.float64))
        if not np.array_equal(got, expected):
            raise RuntimeError("mpcdp returned a wrong sum")
        times, party_bytes, all_bytes = [], [], []
        for _ in range(reps):
            pids = {n: p.pid for n, p in fed.procs.items()}
            before = socket_bytes_sent()
            t0 = time.perf_counter()
            fed.query("sum", **query)
            times.append(time.perf_counter() - t0)
            after = socket_bytes_sent()
            delta = {n: after.get(pid, 0) - before.get(pid, 0) for n, pid in pids.items()}
            party_bytes.append(sum(v for n, v in delta.items() if n != COORDINATOR))
            all_bytes.append(sum(delta.values()))
    return {
        "seconds": statistics.median(times),
        "runs": times,
        "party_bytes": statistics.median(party_bytes),
        "all_bytes": statistics.median(all_bytes),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    rows = []
    for name, length, parties, reps in WORKLOADS:
        reps = 2 if args.quick else reps
        ours = run_mpcdp(length, parties, reps)
        theirs = run_mpyc(length, parties, reps)
        plaintext = parties * length * 8
        rows.append(
            {
                "workload": name,
                "length": length,
                "parties": parties,
                "repetitions": reps,
                "mpcdp_seconds": ours["seconds"],
                "mpyc_seconds": theirs["seconds"],
                "speedup_vs_mpyc": theirs["seconds"] / ours["seconds"],
                "plaintext_bytes": plaintext,
                "mpcdp_party_bytes": ours["party_bytes"],
                "mpcdp_all_bytes": ours["all_bytes"],
                "party_bytes_over_plaintext": ours["party_bytes"] / plaintext,
                "all_bytes_over_plaintext": ours["all_bytes"] / plaintext,
                "mpyc_party0_bytes": theirs["bytes_party0"],
                "mpcdp_runs": ours["runs"],
                "mpyc_runs": theirs["runs"],
            }
        )
        print(f"done: {name}", file=sys.stderr, flush=True)
    report = {
        "benchmark": "secure_sum",
        "sharing": "seeded",
        "transport": "gRPC, mutual TLS, loopback",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "targets": {"speedup_L1e6_3_parties": ">= 20", "party_bytes_over_plaintext": "<= 1.2"},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    head = f"{'workload':<20} {'mpcdp':>10} {'MPyC':>10} {'speed-up':>9} {'wire/plain':>11} {'+release':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['workload']:<20} {1e3 * r['mpcdp_seconds']:>8.1f}ms {1e3 * r['mpyc_seconds']:>8.1f}ms "
            f"{r['speedup_vs_mpyc']:>8.2f}x {r['party_bytes_over_plaintext']:>10.3f}x "
            f"{r['all_bytes_over_plaintext']:>8.3f}x"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    if os.environ.get(MPYC_ENV):
        mpyc_party()
    else:
        sys.exit(main())
