"""How the secure sum scales: time and bytes per party against the number of parties and the vector length.

Two sweeps over real processes on loopback (mutual TLS), as in
``benchmarks/secure_sum.py`` (whose runners this reuses, MPyC 0.11 in the
same run where it finishes in reasonable time):

- n = 3, 5, 10, 16 parties at L = 10^4 (every party is one OS process: this
  machine's two cores bound n here; see the limits in the JSON);
- L = 1, 10^2, 10^4, 10^5, 10^6, 10^7 at n = 3 (MPyC up to 10^5: 10^6 alone
  takes it about 5 s per sum);
- many parties in one process (``services/swarm.py``, the many-party
  protocol over a sparse graph): n = 10 ... 1,000 at L = 1 and L = 1,000, and
  n = 100 at L = 10^5. All parties share one core there, so the figure per
  party is the process's CPU time divided by n (the protocol's cost per
  party), and bytes are the protocol's payload per party (sent + received).
  The points are measured in interleaved rounds (every point once a round,
  the order reversed every other round) and each reports the median over its
  rounds: on this shared machine the CPU time of one and the same query drifts
  by up to 2x over minutes, and a sweep measured point after point would
  fold that drift into the ratio between 10 and 1,000 parties.

Per party: the wall time of one query, and the bytes the parties sent on
their TCP sockets divided by n. Writes benchmarks/results/scaling.json and
scaling.png (log-log).

    python benchmarks/scaling.py [--quick] [--many-only]   # --many-only: only the third sweep, merged
    python benchmarks/scaling.py --many-against REV          # the third sweep, REV's code against this tree's,
                                                             # alternating: results/scaling_many_paired.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

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
MANY_PARTIES = [10, 30, 100, 300, 1000]
MANY_LENGTHS = [1, 1000]
MANY_BIG = (100, 100_000)  # target: 100 parties, L = 10^5 in <= 5 s
MANY_PER_POINT = 300  # parties per point and round at least: small federations run several times
MANY_ROUNDS = 7  # interleaved rounds of the many-party sweep (--quick: 2)


def many_runs(parties: int, length: int, workers: int = 0) -> tuple[Any, list[Any]]:
    """Many-party queries, every party in this process (or in ``workers`` processes over the links); a tenth
    may drop (none does). Small federations run several times (about 300 parties in all), so that a point is
    not one run of a few milliseconds. Each release is checked against the sum in the clear."""
    import asyncio

    import numpy as np

    from services import swarm

    query = many_query(parties, length)
    data = {
        p: ((np.arange(length) * (i + 1)) % 1000).reshape(1, length).astype(np.float64)
        for i, p in enumerate(query.spec.parties)
    }
    want = sum(v[0] for v in data.values())
    runs = []
    for _ in range(1 if workers else max(1, MANY_PER_POINT // parties)):
        if workers:
            run = asyncio.run(swarm.run_across_processes(query, data, workers=workers))
        else:
            run = asyncio.run(swarm.run_swarm(query, data))
        if run.release is None or not np.array_equal(np.atleast_1d(run.release.value), np.atleast_1d(want)):
            raise RuntimeError(f"the many-party sum of {parties} parties was wrong: {run.error}")
        runs.append(run)
    return query, runs


def many_point(parties: int, length: int, workers: int = 0, runs: list[Any] | None = None, loads=()) -> dict:
    """A point of the sweep: the median CPU per party over ``runs`` (measured now if not given)."""
    if runs is None:
        query, runs = many_runs(parties, length, workers)
    else:
        query = many_query(parties, length)
    run = sorted(runs, key=lambda r: r.cpu_seconds)[len(runs) // 2]  # the median run
    row = {
        "parties": parties,
        "length": length,
        "workers": workers,
        "degree": query.plan.degree,
        "threshold": query.plan.threshold,
        "seconds": run.seconds,
        "seconds_per_party": run.seconds / parties,
        "cpu_seconds": run.cpu_seconds,
        "cpu_seconds_per_party": run.cpu_seconds / parties,
        "runs": len(runs),
        "cpu_seconds_per_party_runs": [r.cpu_seconds / parties for r in runs],
        "load_average": os.getloadavg()[0],
        "load_averages": list(loads) or [os.getloadavg()[0]],
        "payload_bytes_per_party": run.party_bytes(),
    }
    print(
        f"{f'{workers} workers' if workers else 'in process'} n={parties:>5} L={length:>7}: {run.seconds:7.2f} s, "
        f"{1e3 * run.cpu_seconds / parties:6.2f} ms CPU per party, degree {query.plan.degree}, "
        f"{run.party_bytes():,.0f} B per party",
        flush=True,
    )
    return row


def many_query(parties: int, length: int) -> Any:
    """A sum over ``parties`` of vectors of ``length``; a tenth may drop."""
    from mpcdp.protocol import QuerySpec
    from mpcdp.protocol.masked import MaskedQuery

    names = tuple(f"party-{i + 1}" for i in range(parties))
    spec = QuerySpec("sum", names, dimension=length, bounds=(0, 1000), frac_bits=0)
    return MaskedQuery.of(spec, parties - parties // 10)


def many_points(quick: bool) -> list[tuple[int, int]]:
    """The sweep's points in the order a round measures them: the fewest and the most parties first and next to
    each other (their ratio is the flatness), then inwards."""
    ns = MANY_PARTIES[:3] if quick else MANY_PARTIES
    ends = [ns[i // 2] if i % 2 == 0 else ns[-1 - i // 2] for i in range(len(ns))]
    return [(n, L) for n in ends for L in MANY_LENGTHS]


def interleaved(points: list[tuple[int, int]], rounds: int) -> tuple[dict, dict]:
    """Every point once a round, the order reversed every other round: (point -> its runs in each round, point
    -> the load average after each round's runs)."""
    runs: dict[tuple[int, int], list[list[Any]]] = {p: [] for p in points}
    loads: dict[tuple[int, int], list[float]] = {p: [] for p in points}
    many_runs(30, 1)  # warm: the first runs in a process pay its imports
    for r in range(rounds):
        for point in points if r % 2 == 0 else points[::-1]:
            runs[point].append(many_runs(*point)[1])
            loads[point].append(os.getloadavg()[0])
    return runs, loads


def flatness(cpu: dict[tuple[int, int], list[list[float]]]) -> dict[str, float]:
    """Per length: the median over the rounds of that round's CPU per party at the most parties over that at the
    fewest (each the median of the round's runs), so a drift slower than a round cancels."""
    import statistics

    out = {}
    for length in MANY_LENGTHS:
        ns = sorted(n for n, at in cpu if at == length)
        if len(ns) > 1:
            pairs = zip(cpu[ns[-1], length], cpu[ns[0], length], strict=True)
            out[str(length)] = statistics.median(statistics.median(a) / statistics.median(b) for a, b in pairs)
    return out


def flat(rounds: list[list[Any]]) -> list[Any]:
    return [x for batch in rounds for x in batch]


def sorted_key(point: tuple[int, int]) -> tuple[int, int]:
    """Points listed by length, then parties."""
    return point[1], point[0]


def many_sweep(quick: bool) -> dict:
    points = many_points(quick)
    runs, loads = interleaved(points, 2 if quick else MANY_ROUNDS)
    rows = [many_point(n, L, runs=flat(runs[n, L]), loads=loads[n, L]) for n, L in sorted(points, key=sorted_key)]
    cpu = {p: [[r.cpu_seconds / p[0] for r in batch] for batch in runs[p]] for p in points}
    return {
        "by_parties": rows,
        "flatness": flatness(cpu),
        "rounds": 2 if quick else MANY_ROUNDS,
        "big": many_point(*MANY_BIG),
        "across_processes": [many_point(n, 1, workers=2) for n in (100, 1000)],
        "note": "every party and the coordinator on one asyncio loop in one process (one core), no TLS "
        "(across_processes: the parties in 2 worker processes, the coordinator in a third, messages between "
        "processes on the mutually authenticated links; cpu_seconds adds the three processes); "
        "a quorum of n - n/10 (the graph tolerates that many dropouts); seconds_per_party = wall seconds / n, "
        "cpu_seconds_per_party = the process's CPU time / n (what the protocol costs, whatever else runs), the "
        "median over interleaved rounds; flatness: per length, the median over rounds of the round's CPU per party "
        "at 1,000 parties over that at 10 (measured next to each other)",
    }


def _points_child(points: list[list[int]]) -> None:
    """(``--points``) Measure ``points`` in this order and print one JSON line each: a child of
    :func:`many_against`, run with another tree's code on its PYTHONPATH."""
    many_runs(30, 1)  # warm
    for n, length in points:
        query, runs = many_runs(n, length)
        cpu = [r.cpu_seconds / n for r in runs]
        print(json.dumps({"parties": n, "length": length, "degree": query.plan.degree, "cpu": cpu}), flush=True)


def many_against(rev: str, quick: bool) -> dict:
    """The many-party sweep of commit ``rev`` against this tree, in alternating child processes (the same
    benchmark code, each tree's mpcdp and services), every point once per child, the order reversed every
    other round: the median CPU per party of each point before and after, and each side's flatness."""
    import statistics
    import subprocess
    import tempfile

    repo = Path(__file__).resolve().parent.parent
    rounds = 2 if quick else MANY_ROUNDS
    points = many_points(quick)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    base = subprocess.run(["git", "rev-parse", rev], cwd=repo, capture_output=True, text=True, check=True).stdout
    cpu: dict[str, dict[tuple[int, int], list[list[float]]]] = {s: {p: [] for p in points} for s in ("before", "after")}
    degree: dict[str, dict[tuple[int, int], int]] = {"before": {}, "after": {}}
    loads = []
    with tempfile.TemporaryDirectory(prefix="mpcdp-scaling-") as tmp:
        archive = subprocess.run(["git", "archive", rev], cwd=repo, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        trees = {"before": tmp, "after": str(repo)}
        for r in range(rounds):
            order = points if r % 2 == 0 else points[::-1]
            for side in ("before", "after") if r % 2 == 0 else ("after", "before"):
                env = {**os.environ, "PYTHONPATH": trees[side]}
                cmd = [sys.executable, __file__, "--points", json.dumps(order)]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
                for line in out.splitlines():
                    doc = json.loads(line)
                    point = (doc["parties"], doc["length"])
                    cpu[side][point].append(doc["cpu"])
                    degree[side][point] = doc["degree"]
                loads.append(os.getloadavg()[0])
                print(f"round {r + 1}/{rounds} {side}: load {loads[-1]:.2f}", flush=True)
    rows = []
    for point in sorted(points, key=sorted_key):
        row: dict[str, Any] = {"parties": point[0], "length": point[1]}
        for side in ("before", "after"):
            row[f"{side}_degree"] = degree[side][point]
            row[f"{side}_cpu_ms_per_party"] = 1e3 * statistics.median(flat(cpu[side][point]))
            row[f"{side}_cpu_ms_per_party_rounds"] = [[1e3 * c for c in batch] for batch in cpu[side][point]]
        row["after_over_before"] = row["after_cpu_ms_per_party"] / row["before_cpu_ms_per_party"]
        rows.append(row)
        print(
            f"n={point[0]:>5} L={point[1]:>5}: before {row['before_cpu_ms_per_party']:.2f} ms, "
            f"after {row['after_cpu_ms_per_party']:.2f} ms CPU per party",
            flush=True,
        )
    return {
        "benchmark": "many-party CPU per party, before and after",
        "before": {"rev": rev, "commit": base.strip()},
        "after": {"commit": head, "tree": "the working tree at that commit (uncommitted changes included)"},
        "rounds": rounds,
        "load_averages": loads,
        "points": rows,
        "flatness": {side: flatness(cpu[side]) for side in ("before", "after")},
        "note": "CPU seconds of the process / n, every party and the coordinator on one asyncio loop (no TLS); "
        "a quorum of n - n/10, nobody drops; the median over all runs of a point (small federations run several "
        "times a round); the two sides alternate in child processes, so both see the same drift of this shared "
        "machine; flatness: per length, the median over rounds of the round's CPU per party at the most parties "
        "over that at the fewest (measured next to each other)",
    }


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

    many = report.get("many_parties")
    fig, axes = plt.subplots(2, 3 if many else 2, figsize=(16 if many else 11, 8))
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
    if many:
        for length in MANY_LENGTHS:
            rows = [r for r in many["by_parties"] if r["length"] == length]
            x = [r["parties"] for r in rows]
            axes[0][2].loglog(x, [r["cpu_seconds_per_party"] for r in rows], "o-", label=f"L = {length:,}")
            axes[1][2].loglog(x, [r["payload_bytes_per_party"] for r in rows], "o-", label=f"L = {length:,}")
        cpu = [r["cpu_seconds_per_party"] for r in many["by_parties"]]
        ends = [min(r["parties"] for r in many["by_parties"]), max(r["parties"] for r in many["by_parties"])]
        low = min(r["cpu_seconds_per_party"] for r in many["by_parties"] if r["parties"] == ends[0])
        axes[0][2].fill_between(ends, low, 2 * low, color="gray", alpha=0.15, label="within 2x of the fewest parties")
        axes[0][2].set_ylim(min(cpu) / 4, max(cpu) * 4)  # a decade or more: the drift of a shared machine is not news
        axes[0][2].set_ylabel("CPU seconds per party (process CPU / n)")
        axes[1][2].set_ylabel("payload bytes per party (sent + received)")
        for ax in axes[:, 2]:
            ax.set_xlabel("parties n, all in one process (sparse graph, degree O(log n))")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
    fig.suptitle(
        "Secure sum: one process per party over loopback with mutual TLS (left, middle); "
        "many parties in one process (right); 2-core machine"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one repetition per point, fewer points")
    ap.add_argument("--many-only", action="store_true", help="only the many-parties sweep, merged into the JSON")
    ap.add_argument("--many-against", metavar="REV", help="the many-parties sweep of git REV against this tree")
    ap.add_argument("--points", help=argparse.SUPPRESS)  # a child of --many-against
    args = ap.parse_args(argv)
    if args.points:
        _points_child(json.loads(args.points))
        return 0
    if args.many_against:
        report = many_against(args.many_against, args.quick)
        path = RESULTS / "scaling_many_paired.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"flatness (1,000 parties over 10): {report['flatness']}; wrote {path}")
        return 0
    if args.many_only:
        report = json.loads((RESULTS / "scaling.json").read_text())
        report["many_parties"] = many_sweep(args.quick)
        report.pop("not_measured", None)
        (RESULTS / "scaling.json").write_text(json.dumps(report, indent=2) + "\n")
        plot(report, RESULTS / "scaling.png")
        print(f"wrote {RESULTS / 'scaling.json'} and scaling.png")
        return 0
    reps = 1 if args.quick else 3
    parties = PARTIES[:3] if args.quick else PARTIES
    lengths = LENGTHS[:4] if args.quick else LENGTHS
    report = {
        "benchmark": "scaling",
        "sharing": "seeded, every party with every other (full mesh)",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "by_parties": [point(PARTIES_L, n, reps, n <= MPYC_MAX_PARTIES) for n in parties],
        "by_length": [point(L, LENGTHS_N, reps, L <= MPYC_MAX_LENGTH) for L in lengths],
        "many_parties": many_sweep(args.quick),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scaling.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, RESULTS / "scaling.png")
    print(f"wrote {RESULTS / 'scaling.json'} and scaling.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
