"""Secure sum over real processes on loopback: mpcdp's federation against MPyC 0.11, side by side.

Workloads: a scalar with 3 parties; vectors of L = 10^5 and 10^6 with 3
parties; L = 10^5 with 10 parties. Each party holds one integer vector in
[0, 1000). mpcdp runs its full protocol (proposal, each party's partial sum masked
with its pair keys, over mutual TLS, release) against already-running party processes; MPyC
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
    python benchmarks/secure_sum.py --profile      # where a scalar query's time goes (secure_sum_profile.json)
    python benchmarks/secure_sum.py --only concurrent  # scalar queries/s with many sessions in flight
    python benchmarks/secure_sum.py --sharing-side-by-side  # keyed vs seeded scalar sessions, same processes
                                                            # (secure_sum_keyed.json)
    python benchmarks/secure_sum.py --profile --sharing seeded  # the profile of the two-message path
    python benchmarks/secure_sum.py --batch  # scalar statistics/s: separate queries vs batches of 16 and 64
                                             # per session (secure_sum_batch.json)
    python benchmarks/secure_sum.py --analyst-side-by-side  # the analyst over gRPC vs over the query link
                                                            # (secure_sum_analyst.json)
    python benchmarks/secure_sum.py --dp  # exact vs DP scalar sums, same processes (secure_sum_dp.json)

The concurrent workload ("concurrent scalar, 3 parties") runs scalar sums against the same real party
processes with 1, 16 and 64 queries in flight, spread over 8 analyst connections (each in flight query
waits for its release, then asks the next), and reports queries per second and the median and p90
latency at each level; its MPyC column is MPyC's scalar latency (MPyC runs one computation at a time).

The side-by-side run ("--sharing-side-by-side") measures the concurrent workload's levels for keyed
sessions (PROPOSE, then each party's masked partial sum: one message each way, the default) and for seeded
ones (PROPOSE, ANSWER and a seed to each peer, then the partial sum), alternating the two at each level
against the same party processes, so the ratio is measured under the same load.

The batch run ("--batch") answers scalar sums against the same party processes as separate concurrent
queries (16 and 64 in flight) and as batches of 16 and 64 statistics per session (``QueryRequest.batch``: one
proposal and one partial sum per party for the whole batch), one and several sessions in flight, keyed, and
reports statistics per second and CPU per statistic in each process; the last level runs seeded, as a DP
batch does. The separate queries run twice: each its own session (coordinator --coalesce 0) and coalesced
(the default: the queries arriving while a group's sessions are in flight run together as one batch).

The profile runs a coordinator, three parties and the analyst as real TLS gRPC servers and clients in ONE
process (each with its state directory: the parties' session logs and the coordinator's release store are
fsynced as in production), times scalar queries one after another, then profiles more of them with
cProfile and sorts every function's own time into groups: gRPC and its event-loop plumbing, the
protocol library, the service adapters, durability (fsync and file writes), protobuf, the rest.
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
from benchlib import mpyc_runs

MPYC_ENV = "MPCDP_BENCH_MPYC_LENGTH"
RESULTS = Path(__file__).resolve().parent / "results" / "secure_sum.json"
WORKLOADS = [  # (name, L, parties, repetitions)
    ("scalar, 3 parties", 1, 3, 30),
    ("L=1e5, 3 parties", 100_000, 3, 5),
    ("L=1e6, 3 parties", 1_000_000, 3, 3),
    ("L=1e5, 10 parties", 100_000, 10, 3),
]
BOUND = 1000
CONCURRENT = "concurrent scalar, 3 parties"
IN_FLIGHT = (1, 16, 64)  # queries in flight in the concurrent workload
ANALYSTS = 8  # analyst connections they are spread over


# -- the MPyC side: this same file, run as an MPyC program ---------------------------


def mpyc_party() -> None:
    from mpyc.runtime import mpc

    length = int(os.environ[MPYC_ENV])
    reps = mpyc_runs.reps()

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
            mpyc_runs.report(times)

    mpc.run(main())


def run_mpyc(length: int, parties: int, reps: int) -> dict:
    result, output = mpyc_runs.run_parties(__file__, parties, {MPYC_ENV: str(length)}, reps, timeout=900)
    sent = [int(ln.split("bytes sent:")[1]) for ln in output.splitlines() if "bytes sent:" in ln]
    result["bytes_party0"] = sent[-1] if sent else None
    return result


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
        times, party_bytes, all_bytes, cpu = [], [], [], []
        for _ in range(reps):
            pids = {n: p.pid for n, p in fed.procs.items()}
            before = socket_bytes_sent()
            cpu_before = {n: cpu_seconds(pid) for n, pid in pids.items()}
            analyst_before = time.process_time()
            t0 = time.perf_counter()
            fed.query("sum", **query)
            times.append(time.perf_counter() - t0)
            cpu.append({n: cpu_seconds(pid) - cpu_before[n] for n, pid in pids.items()})
            cpu[-1]["analyst (this process)"] = time.process_time() - analyst_before
            after = socket_bytes_sent()
            delta = {n: after.get(pid, 0) - before.get(pid, 0) for n, pid in pids.items()}
            party_bytes.append(sum(v for n, v in delta.items() if n != COORDINATOR))
            all_bytes.append(sum(delta.values()))
    return {
        "seconds": statistics.median(times),
        "runs": times,
        "party_bytes": statistics.median(party_bytes),
        "all_bytes": statistics.median(all_bytes),
        "cpu_ms": {n: 1e3 * statistics.median(c[n] for c in cpu) for n in cpu[0]},  # per query, each process
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process used so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_concurrent(
    parties: int,
    seconds: float,
    sharings: tuple[str, ...] = ("keyed",),
    coalesce: int | None = None,
    levels: list[tuple] | None = None,
) -> dict:
    """Scalar sums with many queries in flight against real party processes: queries/s and latency, at each
    level for each sharing mode in turn (same processes). ``levels``: (sessions in flight, sharing, statistics
    per session[, the analyst's transport]) instead; a session of more than one statistic is a batch
    (``Analyst.query_batch``) of that many scalar sums, and statistics/s counts each. ``coalesce``: the
    coordinator's --coalesce (0: every query its own session; None: its default, concurrent queries run together)."""
    import asyncio

    from services.analyst import Analyst
    from services.simulation import CLIENT, LocalFederation

    data = {f"party-{i + 1}": np.array([[float(i + 1)]]) for i in range(parties)}
    expected = parties * (parties + 1) / 2

    async def level(
        fed, in_flight: int, sharing: str, batch: int = 1, transport: str = "auto", epsilon: float | None = None
    ) -> dict:
        analysts = [Analyst(fed.federation, CLIENT, transport=transport) for _ in range(min(ANALYSTS, in_flight))]
        times: list[float] = []
        stop = time.perf_counter() + seconds
        ask: dict = dict(statistic="sum", bounds=(0, BOUND), frac_bits=0, max_records=1)
        if epsilon is not None:
            ask["epsilon"] = epsilon

        async def session(analyst, timeout: float = 60.0) -> list:
            if batch == 1:
                return [await analyst.query(timeout=timeout, sharing=sharing, **ask)]
            return await analyst.query_batch([ask] * batch, timeout=timeout, sharing=sharing)

        async def worker(analyst) -> None:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                released = await session(analyst)
                times.append(time.perf_counter() - t0)
                if epsilon is not None:  # noisy: only a number
                    if not all(np.isfinite(r.value) for r in released):
                        raise RuntimeError(f"mpcdp returned {[r.value for r in released]}")
                elif [r.value for r in released] != [expected] * batch:
                    raise RuntimeError(f"mpcdp returned a wrong sum {[r.value for r in released]}")

        try:
            await asyncio.gather(*(session(analysts[i % len(analysts)]) for i in range(8)))
            pids = {n: p.pid for n, p in fed.procs.items()}
            cpu_before = {n: cpu_seconds(pid) for n, pid in pids.items()}
            analyst_before = time.process_time()
            began = time.perf_counter()
            await asyncio.gather(*(worker(analysts[i % len(analysts)]) for i in range(in_flight)))
            took = time.perf_counter() - began
            cpu = {n: cpu_seconds(pid) - cpu_before[n] for n, pid in pids.items()}
            cpu["analyst (this process)"] = time.process_time() - analyst_before
        finally:
            for a in analysts:
                await a.close()
        times.sort()
        answered = batch * len(times)
        return {
            "in_flight": in_flight,
            "sharing": sharing,
            "statistics_per_session": batch,
            "coalesce": "default" if coalesce is None else coalesce,
            "transport": transport,
            "epsilon": epsilon,
            "queries": len(times),
            "queries_per_second": len(times) / took,
            "statistics_per_second": answered / took,
            "median_ms": 1e3 * statistics.median(times),
            "p90_ms": 1e3 * times[int(0.9 * len(times))],
            "cpu_ms_per_query": {n: 1e3 * c / len(times) for n, c in cpu.items()},
            "cpu_ms_per_query_all_processes": 1e3 * sum(cpu.values()) / len(times),
            "cpu_ms_per_statistic": {n: 1e3 * c / answered for n, c in cpu.items()},
            "cpu_ms_per_statistic_all_processes": 1e3 * sum(cpu.values()) / answered,
            "load": os.getloadavg(),
        }

    async def all_levels(fed) -> list[dict]:
        asked = levels or [(n, sharing, 1) for n in IN_FLIGHT for sharing in sharings]
        return [await level(fed, n, sharing, batch, *rest) for n, sharing, batch, *rest in asked]

    with LocalFederation(data, timeout=60.0, coalesce=coalesce) as fed:
        return {"levels": asyncio.run(all_levels(fed))}


# -- where a scalar query's time goes ---------------------------------------------------

PROFILE_RESULTS = RESULTS.with_name("secure_sum_profile.json")
GROUPS = (  # (group, substrings of a profiled function's file or name), first match wins
    ("waiting in epoll (idle: sockets, other threads)", ("select.epoll",)),
    ("durability (fsync, file writes)", ("fsync", "ledgers.py", "releases.py", "sqlite", "ledger.py")),
    ("gRPC (calls, streams, HTTP/2, TLS)", ("grpc", "cygrpc", "_cython")),
    ("protobuf (encode, decode)", ("protobuf", "_pb2", "convert.py", "SerializeToString", "FromString")),
    ("protocol library (mpcdp/)", ("/mpcdp/",)),
    ("service adapters (services/)", ("/services/",)),
    ("asyncio event loop", ("asyncio", "selectors", "select", "epoll")),
)


def _replace(obj, **fields):
    """A copy of a federation (or node) description with ``fields`` changed (pydantic or dataclass)."""
    import dataclasses

    return obj.model_copy(update=fields) if hasattr(obj, "model_copy") else dataclasses.replace(obj, **fields)


async def _profile_cluster(
    tmp: Path, queries: int, profiled: int, durable: bool = True, sharing: str = "keyed"
) -> dict:
    import cProfile
    import pstats

    from services import federation as fed
    from services.analyst import Analyst
    from services.coordinator_node import CoordinatorNode
    from services.data import Table
    from services.ledgers import SessionLog
    from services.party_node import PartyNode
    from services.releases import ReleaseStore
    from services.server import start
    from services.tls import Identity, init_certs

    parties = ["alice", "bob", "carol"]
    certs = tmp / "certs"
    init_certs(["coordinator", "analyst", *parties], certs)
    doc = {
        "federation": {"name": "profile"},
        "policy": {"allow_exact": True, "max_records": 1},
        "node": [
            {"name": "coordinator", "address": "127.0.0.1:1", "roles": ["coordinator"]},
            {"name": "analyst", "roles": ["client"]},
            *({"name": p, "address": "127.0.0.1:1", "roles": ["party"]} for p in parties),
        ],
    }
    f = _replace(fed.parse(doc, tmp), certs=certs)
    nodes, servers, ports = {}, {}, {}
    for i, name in enumerate(parties):
        node = PartyNode(
            f,
            name,
            Table({"value": [float(i + 1)]}),
            Identity(name, certs),
            sessions=SessionLog(tmp / f"{name}.sessions") if durable else None,
        )
        servers[name], ports[name] = await start(Identity(name, certs), "127.0.0.1:0", node.services())
        nodes[name] = node
    store = ReleaseStore(tmp / "releases") if durable else None
    coordinator = CoordinatorNode(f, Identity("coordinator", certs), store=store)
    servers["coordinator"], ports["coordinator"] = await start(
        Identity("coordinator", certs),
        "127.0.0.1:0",
        coordinator.services(),
    )
    nodes["coordinator"] = coordinator
    real = _replace(
        f, nodes=tuple(_replace(n, address=f"127.0.0.1:{ports[n.name]}") if n.name in ports else n for n in f.nodes)
    )
    for node in nodes.values():
        node.federation = real
    try:
        async with Analyst(real, "analyst") as analyst:
            ask = dict(bounds=(0, 10), sharing=sharing)
            await analyst.query("sum", **ask)  # warm-up: every channel and link opened once (and pair keys)
            times = []
            for _ in range(queries):
                t0 = time.perf_counter()
                result = await analyst.query("sum", **ask)
                times.append(time.perf_counter() - t0)
            if result.value != 6:
                raise RuntimeError(f"wrong sum {result.value}")
            profiler = cProfile.Profile()
            profiler.enable()
            t0 = time.perf_counter()
            for _ in range(profiled):
                await analyst.query("sum", **ask)
            profiled_seconds = time.perf_counter() - t0
            profiler.disable()
    finally:
        for server in servers.values():
            await server.stop(None)
        for node in nodes.values():
            await node.close()
    stats = pstats.Stats(profiler)
    groups: dict[str, float] = {g: 0.0 for g, _ in GROUPS}
    groups["other"] = 0.0
    top = []
    for (file, line, name), (_, calls, own, _cumulative, _) in stats.stats.items():
        where = f"{file}:{line}({name})"
        group = next((g for g, keys in GROUPS if any(k in where for k in keys)), "other")
        groups[group] += own
        top.append((own, calls, where, group))
    total = sum(groups.values())
    top.sort(reverse=True)
    fsync = _fsync_seconds(tmp)
    return {
        "queries": queries,
        "median_ms": 1e3 * statistics.median(times),
        "p90_ms": 1e3 * sorted(times)[int(0.9 * len(times))],
        "profiled_queries": profiled,
        "profiled_ms_per_query": 1e3 * profiled_seconds / profiled,
        "cpu_ms_per_query_by_group": {g: 1e3 * v / profiled for g, v in sorted(groups.items(), key=lambda kv: -kv[1])},
        "cpu_share_by_group": {g: v / total for g, v in groups.items()},
        "top_functions_ms_per_query": [
            {"function": where, "group": group, "ms": 1e3 * own / profiled, "calls_per_query": calls / profiled}
            for own, calls, where, group in top[:40]
        ],
        "fsync_ms_on_this_disk": fsync,
        "note": "all nodes in one process, so CPU adds up over coordinator, parties and analyst; an fsync "
        "waits on the disk without using CPU (its wall time is fsync_ms_on_this_disk). On the critical path of "
        "an exact scalar query: one, each party's session id (group-committed, written while the shares "
        "move, awaited before the partial sum leaves); the coordinator keeps an exact release after sending "
        "it (a DP release: before, file and folder)",
    }


def _fsync_seconds(tmp: Path, n: int = 20) -> float:
    """Median wall time of one small write + fsync in ``tmp`` (ms)."""
    times = []
    for i in range(n):
        path = tmp / f"fsync-{i}"
        t0 = time.perf_counter()
        with open(path, "wb") as fh:
            fh.write(b"x" * 100)
            fh.flush()
            os.fsync(fh.fileno())
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def profile(queries: int = 200, profiled: int = 100, out: Path = PROFILE_RESULTS, sharing: str = "keyed") -> dict:
    import asyncio
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mpcdp-profile-") as tmp:
        report = asyncio.run(_profile_cluster(Path(tmp), queries, profiled, sharing=sharing))
    with tempfile.TemporaryDirectory(prefix="mpcdp-profile-") as tmp:  # the same, no state directories
        bare = asyncio.run(_profile_cluster(Path(tmp), queries, 1, durable=False, sharing=sharing))
    report["sharing"] = sharing
    report["without_durability"] = {k: bare[k] for k in ("median_ms", "p90_ms")}
    report["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()}
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"scalar query, all nodes in one process: median {report['median_ms']:.2f} ms, p90 {report['p90_ms']:.2f} ms")
    print(f"profiled: {report['profiled_ms_per_query']:.2f} ms per query; CPU per query by group:")
    for group, ms in report["cpu_ms_per_query_by_group"].items():
        print(f"  {ms:7.3f} ms  {group}")
    print(f"one small write + fsync on this disk: {report['fsync_ms_on_this_disk']:.2f} ms")
    print(f"the same nodes without state directories (no fsync): median {bare['median_ms']:.2f} ms")
    for row in report["top_functions_ms_per_query"][:12]:
        print(f"  {row['ms']:7.3f} ms  {row['calls_per_query']:6.1f} calls  {row['function'][-90:]}")
    print(f"wrote {out}")
    return report


DP_RESULTS = RESULTS.with_name("secure_sum_dp.json")
DP_EPSILON = 0.001  # per query: thousands of queries fit the simulated parties' budget of 100


def dp_side_by_side(quick: bool, out: Path = DP_RESULTS) -> dict:
    """Exact against DP scalar sums (discrete Laplace noise shared among the parties, epsilon DP_EPSILON each) at
    1, 16 and 64 in flight, alternating on the same processes: what the privacy ledgers' transactions cost."""
    ours = run_concurrent(
        3, 2.0 if quick else 5.0, levels=[(n, "keyed", 1, "auto", eps) for n in IN_FLIGHT for eps in (None, DP_EPSILON)]
    )
    by = {(lv["epsilon"], lv["in_flight"]): lv for lv in ours["levels"]}
    report = {
        "benchmark": "secure_sum exact vs DP scalar sums, 3 parties, real processes, same processes alternating",
        "epsilon_per_dp_query": DP_EPSILON,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "levels": ours["levels"],
        "ratios_dp_over_exact": {
            str(n): {
                "queries_per_second": by[(DP_EPSILON, n)]["queries_per_second"] / by[(None, n)]["queries_per_second"],
                "cpu_per_query": by[(DP_EPSILON, n)]["cpu_ms_per_query_all_processes"]
                / by[(None, n)]["cpu_ms_per_query_all_processes"],
            }
            for n in IN_FLIGHT
        },
    }
    for lv in ours["levels"]:
        kind = "exact" if lv["epsilon"] is None else f"DP eps={lv['epsilon']:g}"
        print(
            f"{kind:>14}, {lv['in_flight']:>2} in flight: {lv['queries_per_second']:7.1f} queries/s, median "
            f"{lv['median_ms']:.2f} ms, CPU {lv['cpu_ms_per_query_all_processes']:.1f} ms/query (load "
            f"{lv['load'][0]:.1f}): " + ", ".join(f"{name} {ms:.2f}" for name, ms in lv["cpu_ms_per_query"].items())
        )
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


def concurrent_row(quick: bool) -> dict:
    ours = run_concurrent(3, 2.0 if quick else 6.0)
    theirs = run_mpyc(1, 3, 5 if quick else 30)
    best = max(ours["levels"], key=lambda lv: lv["queries_per_second"])
    return {
        "workload": CONCURRENT,
        "length": 1,
        "parties": 3,
        "levels": ours["levels"],
        "mpcdp_queries_per_second": best["queries_per_second"],
        "mpyc_seconds": theirs["seconds"],
        "mpyc_queries_per_second": 1 / theirs["seconds"],
        "throughput_vs_mpyc": best["queries_per_second"] * theirs["seconds"],
        "mpyc_runs": theirs["runs"],
    }


SIDE_BY_SIDE_RESULTS = RESULTS.with_name("secure_sum_keyed.json")


def sharing_side_by_side(quick: bool, out: Path = SIDE_BY_SIDE_RESULTS) -> dict:
    """Keyed against seeded scalar sessions at 1, 16 and 64 in flight, alternating on the same processes."""
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    ours = run_concurrent(3, 2.0 if quick else 6.0, sharings=("seeded", "keyed"))
    by = {(lv["sharing"], lv["in_flight"]): lv for lv in ours["levels"]}
    report = {
        "benchmark": "secure_sum keyed vs seeded scalar sessions, 3 parties, real processes",
        "uptime_before": uptime,
        "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "levels": ours["levels"],
        "ratios_keyed_over_seeded": {
            str(n): {
                "queries_per_second": by[("keyed", n)]["queries_per_second"] / by[("seeded", n)]["queries_per_second"],
                "median_latency": by[("keyed", n)]["median_ms"] / by[("seeded", n)]["median_ms"],
            }
            for n in IN_FLIGHT
        },
    }
    lines = [
        f"{sharing:>6}, {n:>2} in flight: {lv['queries_per_second']:7.1f} queries/s, median {lv['median_ms']:.2f} ms, "
        f"p90 {lv['p90_ms']:.2f} ms, CPU {lv['cpu_ms_per_query_all_processes']:.1f} ms/query "
        f"(load {lv['load'][0]:.1f}): " + ", ".join(f"{name} {ms:.2f}" for name, ms in lv["cpu_ms_per_query"].items())
        for n in IN_FLIGHT
        for sharing in ("seeded", "keyed")
        for lv in [by[(sharing, n)]]
    ]
    return _written(report, out, lines)


def _written(report: dict, out: Path, lines: list[str]) -> dict:
    """Write ``report`` as JSON to ``out`` and print the load before, ``lines``, the load after."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(report["uptime_before"])
    for line in lines:
        print(line)
    print(report["uptime_after"])
    print(f"wrote {out}")
    return report


BATCH_RESULTS = RESULTS.with_name("secure_sum_batch.json")
BATCH_LEVELS = [  # (sessions in flight, sharing, statistics per session): separate queries, then batches
    (16, "keyed", 1),
    (64, "keyed", 1),
    (1, "keyed", 16),
    (8, "keyed", 16),
    (1, "keyed", 64),
    (4, "keyed", 64),
    (4, "seeded", 64),  # how a DP batch runs (a keyed partial sum is charged as it leaves)
]


BATCH_UNCOALESCED = [(16, "keyed", 1), (64, "keyed", 1)]  # the same separate queries, each its own session


def _kind(level: dict) -> str:
    if level["statistics_per_session"] > 1:
        return f"batches of {level['statistics_per_session']}"
    return "separate, coalesced" if level["coalesce"] else "separate, alone"


def batch_side_by_side(quick: bool, out: Path = BATCH_RESULTS) -> dict:
    """Scalar statistics per second as separate concurrent queries (16 and 64 in flight), each its own session
    (coordinator --coalesce 0) and coalesced (the default: queries arriving while sessions are in flight run
    together), against batches of 16 and 64 statistics per session (one and several sessions in flight), keyed
    (and seeded: how a DP batch runs), in one run (the uncoalesced levels on a federation of their own, started
    first); CPU per statistic per process."""
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    seconds = 2.0 if quick else 6.0
    alone = run_concurrent(3, seconds, levels=BATCH_UNCOALESCED, coalesce=0)["levels"]
    ours = {"levels": alone + run_concurrent(3, seconds, levels=BATCH_LEVELS)["levels"]}
    separate = max(alone, key=lambda lv: lv["statistics_per_second"])
    report = {
        "benchmark": "secure_sum scalar statistics: separate concurrent queries vs batches, keyed, 3 parties, real "
        "processes (coordinator, 3 parties; the analyst is this process)",
        "uptime_before": uptime,
        "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "target": ">= 500 scalar statistics per second",
        "levels": ours["levels"],
        "ratios_over_best_separate_alone": {
            f"{_kind(lv)} x {lv['in_flight']} in flight, {lv['sharing']}": lv["statistics_per_second"]
            / separate["statistics_per_second"]
            for lv in ours["levels"][len(alone) :]
        },
    }
    lines = [
        f"{_kind(lv):>19} ({lv['sharing']}), {lv['in_flight']:>2} sessions in flight: "
        f"{lv['statistics_per_second']:7.1f} statistics/s, session median "
        f"{lv['median_ms']:.2f} ms, CPU {lv['cpu_ms_per_statistic_all_processes']:.2f} ms/statistic "
        f"(load {lv['load'][0]:.1f}): "
        + ", ".join(f"{name} {ms:.3f}" for name, ms in lv["cpu_ms_per_statistic"].items())
        for lv in ours["levels"]
    ]
    return _written(report, out, lines)


ANALYST_RESULTS = RESULTS.with_name("secure_sum_analyst.json")
ANALYST_ORDER = ("grpc", "link", "link", "grpc")  # at each level: ABBA, so a drift in the load cancels out


def analyst_side_by_side(quick: bool, out: Path = ANALYST_RESULTS) -> dict:
    """The analyst's two transports: one gRPC call per query against the coordinator's query link
    (services/query_link.py), scalar keyed sums at 1, 16 and 64 in flight, each level measured gRPC, link, link,
    gRPC on the same party processes, first with every query its own session (coordinator --coalesce 0: the
    transport alone), then coalesced (the default); the ratios are of the two measurements' means; CPU per query
    per process."""
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    levels = [(n, "keyed", 1, transport) for n in IN_FLIGHT for transport in ANALYST_ORDER]
    measured = [
        lv
        for coalesce in (0, None)
        for lv in run_concurrent(3, 2.0 if quick else 4.0, coalesce=coalesce, levels=levels)["levels"]
    ]

    def mean(coalesce, transport: str, n: int, key: str) -> float:
        return statistics.mean(
            lv[key] for lv in measured if (lv["coalesce"], lv["transport"], lv["in_flight"]) == (coalesce, transport, n)
        )

    runs = {0: "each query its own session", "default": "coalesced"}
    report = {
        "benchmark": "secure_sum scalar queries, the analyst over gRPC vs over the query link, keyed, 3 parties, "
        "real processes (coordinator, 3 parties; the analyst is this process: up to 8 Analysts, which share one "
        "query link and have a gRPC channel each); each level measured gRPC, link, link, gRPC; with the "
        "coordinator's coalescing off (0), then on (default)",
        "uptime_before": uptime,
        "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "targets": "scalar query <= 2 ms; >= 500 scalar queries/s",
        "levels": measured,
        "means": {
            f"{runs[c]}: {transport}, {n} in flight": {
                key: mean(c, transport, n, key)
                for key in ("queries_per_second", "median_ms", "cpu_ms_per_query_all_processes")
            }
            for c in runs
            for n in IN_FLIGHT
            for transport in ANALYST_ORDER[:2]
        },
        "ratios_link_over_grpc": {
            f"{runs[c]}, {n} in flight": {
                name: mean(c, "link", n, key) / mean(c, "grpc", n, key)
                for name, key in (
                    ("queries_per_second", "queries_per_second"),
                    ("median_latency", "median_ms"),
                    ("cpu_per_query", "cpu_ms_per_query_all_processes"),
                )
            }
            for c in runs
            for n in IN_FLIGHT
        },
    }
    lines = [
        f"{runs[lv['coalesce']]:>26}: {lv['transport']:>4}, {lv['in_flight']:>2} in flight: "
        f"{lv['queries_per_second']:6.1f} queries/s, median {lv['median_ms']:.2f} ms, p90 {lv['p90_ms']:.2f} ms, "
        f"CPU {lv['cpu_ms_per_query_all_processes']:.2f} ms/query (load {lv['load'][0]:.1f}): "
        + ", ".join(f"{name} {ms:.2f}" for name, ms in lv["cpu_ms_per_query"].items())
        for lv in measured
    ] + [
        f"link/gRPC, {what}: queries/s x{r['queries_per_second']:.2f}, median latency "
        f"x{r['median_latency']:.2f}, CPU/query x{r['cpu_per_query']:.2f}"
        for what, r in report["ratios_link_over_grpc"].items()
    ]
    return _written(report, out, lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    ap.add_argument("--profile", action="store_true", help="only the profile of a scalar query (see above)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--sharing",
        choices=("keyed", "seeded"),
        default="keyed",
        help="the sharing mode --profile measures (default keyed: one message each way)",
    )
    ap.add_argument(
        "--sharing-side-by-side",
        action="store_true",
        help="only keyed vs seeded scalar sessions at 1/16/64 in flight, same processes (secure_sum_keyed.json)",
    )
    ap.add_argument(
        "--batch",
        action="store_true",
        help="only scalar statistics/s as separate concurrent queries vs batches of 16 and 64 per session, same "
        "processes (secure_sum_batch.json)",
    )
    ap.add_argument(
        "--only", action="append", default=[], help="run only workloads whose name contains this (repeatable)"
    )
    ap.add_argument(
        "--analyst-side-by-side",
        action="store_true",
        help="only the analyst over gRPC vs over the query link, scalar queries at 1/16/64 in flight, same processes "
        "(secure_sum_analyst.json)",
    )
    ap.add_argument(
        "--dp",
        action="store_true",
        help=f"only exact vs DP scalar sums (epsilon {DP_EPSILON} each) at 1/16/64 in flight, same processes "
        "(secure_sum_dp.json)",
    )
    args = ap.parse_args(argv)
    if args.dp:
        dp_side_by_side(args.quick)
        return 0
    if args.profile:
        out = (
            PROFILE_RESULTS if args.sharing == "keyed" else PROFILE_RESULTS.with_name("secure_sum_profile_seeded.json")
        )
        profile(50 if args.quick else 200, 20 if args.quick else 100, out, args.sharing)
        return 0
    if args.sharing_side_by_side:
        sharing_side_by_side(args.quick)
        return 0
    if args.batch:
        batch_side_by_side(args.quick)
        return 0
    if args.analyst_side_by_side:
        analyst_side_by_side(args.quick)
        return 0
    rows = []
    if not args.only or any(o in CONCURRENT for o in args.only):
        rows.append(concurrent_row(args.quick))
        print(f"done: {CONCURRENT}", file=sys.stderr, flush=True)
    for name, length, parties, reps in WORKLOADS:
        if args.only and not any(o in name for o in args.only):
            continue
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
                "mpcdp_cpu_ms_per_query": ours["cpu_ms"],
                "mpyc_runs": theirs["runs"],
            }
        )
        print(f"done: {name}", file=sys.stderr, flush=True)
    report = {
        "benchmark": "secure_sum",
        "sharing": "keyed (scalar and vectors: PROPOSE, then each party's masked partial sum)",
        "transport": (
            "mutual TLS 1.3 on loopback: node-to-node links and the analyst's query link (gRPC only to find a "
            "link's port)"
        ),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load": os.getloadavg(),
        },
        "targets": {
            "scalar_3_parties_ms": "<= 2",
            "concurrent_scalar_queries_per_second": ">= 500",
            "speedup_L1e6_3_parties": ">= 80",
            "party_bytes_over_plaintext": "<= 1.2",
        },
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    head = f"{'workload':<20} {'mpcdp':>10} {'MPyC':>10} {'speed-up':>9} {'wire/plain':>11} {'+release':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        if r["workload"] == CONCURRENT:
            for lv in r["levels"]:
                print(
                    f"{CONCURRENT}, {lv['in_flight']:>2} in flight: {lv['queries_per_second']:7.1f} queries/s, "
                    f"median {lv['median_ms']:.2f} ms, p90 {lv['p90_ms']:.2f} ms (MPyC, one at a time: "
                    f"{1e3 * r['mpyc_seconds']:.2f} ms, {1 / r['mpyc_seconds']:.0f}/s; load {lv['load'][0]:.1f})"
                )
            continue
        print(
            f"{r['workload']:<20} {1e3 * r['mpcdp_seconds']:>8.1f}ms {1e3 * r['mpyc_seconds']:>8.1f}ms "
            f"{r['speedup_vs_mpyc']:>8.2f}x {r['party_bytes_over_plaintext']:>10.3f}x "
            f"{r['all_bytes_over_plaintext']:>8.3f}x"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    mpyc_runs.main_or_party(MPYC_ENV, mpyc_party, main)
