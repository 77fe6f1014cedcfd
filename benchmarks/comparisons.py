"""Comparisons under MPC: mpcdp's honest-majority engine against MPyC 0.11, 3 parties, in the same run.

Workloads: 1,000 secure comparisons x_i < y_i (x from party 0, y from party
1); the maximum of 1,000 values (value j from party j mod 3); one threshold
query ("did at least half vote YES?" over each party's local count); and
noisy-argmax over 100 candidates (each party adds its own distributed
discrete Laplace piece, epsilon = 1, and only the winning label is opened).

MPyC runs this same file as an MPyC program with ``-M3`` (three local
processes over loopback, with gmpy2), SecInt(64) secure arrays, timed from
input to output after its start-up. mpcdp is measured three ways, side by
side in the same run:

* **end to end over mutual TLS** (the headline): three party processes, each
  serving its :class:`services.link.Hub` (one long-lived mutually
  authenticated gRPC stream per pair, certificates from a fresh CA), run the
  engine program with :func:`services.mpc_node.drive`, exactly as party nodes
  do; the time of a run is its slowest party's, from a barrier to the opened
  release. And the threshold as a whole federation query: ``Coordinator.Query``
  from the analyst through the coordinator to the three party processes and
  back (certificates, policy, ledger, durable release included);
* the in-memory engine (compute: all parties in one process, every message
  encoded and decoded), with rounds and bytes;
* the same three parties over plain loopback TCP (benchmark-only framing, no
  TLS), a check of the transport's overhead.

The session's key set-up round is dealt once by a warm-up run (MPyC's
start-up, which sets up its keys, is not timed either).

    python benchmarks/comparisons.py [--quick]     # writes benchmarks/results/comparisons.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from benchlib import mpyc_runs

MPYC_ENV = "MPCDP_BENCH_CMP_WORKLOAD"
RESULTS = Path(__file__).resolve().parent / "results" / "comparisons.json"
PARTIES = 3
SIZE = 1000
CANDIDATES = 100
EPSILON = 1.0
TARGETS = {"compare": 20.0, "max": 20.0, "threshold": 1.0}  # minimum speed-up over MPyC, from the issue
LINK_NAMES = [f"party-{p}" for p in range(PARTIES)]


def inputs(workload: str, party: int) -> np.ndarray:
    """Deterministic benchmark data (not secrets' randomness): what ``party`` brings to ``workload``."""
    j = np.arange(SIZE, dtype=np.int64)
    if workload == "compare":
        return (j * 7919 % 100_003) if party == 0 else (j[::-1] * 104_729 % 100_003) if party == 1 else 0 * j
    if workload == "max":
        return np.where(j % PARTIES == party, (j * 7919 + 13) % 1_000_003, 0)
    if workload == "threshold":
        return np.array([2 + party, 4])  # (YES votes, voters) at this party
    if workload == "noisy-argmax":
        c = np.arange(CANDIDATES, dtype=np.int64)
        return (c * 37 + party * 11) % 101  # this party's approval counts
    raise ValueError(workload)


# -- the MPyC side: this same file, run as an MPyC program ---------------------------------


def mpyc_party() -> None:
    from mpyc.runtime import mpc

    from mpcdp.dp.distributed import DistributedDiscreteLaplace
    from mpcdp.prg import system_random

    workload = os.environ[MPYC_ENV]
    reps = mpyc_runs.reps()

    async def main():
        secint = mpc.SecInt(64)
        await mpc.start()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            if workload == "compare":
                x = mpc.input(secint.array(inputs("compare", 0)), senders=0)
                y = mpc.input(secint.array(inputs("compare", 1)), senders=1)
                out = await mpc.output(x < y)
                check = int(np.sum(out)) == int(np.sum(inputs("compare", 0) < inputs("compare", 1)))
            elif workload == "max":
                parts = mpc.input(secint.array(inputs("max", mpc.pid)))
                out = await mpc.output(mpc.np_amax(parts[0] + parts[1] + parts[2]))
                check = int(out) == int(sum(inputs("max", p) for p in range(PARTIES)).max())
            elif workload == "threshold":
                parts = mpc.input(secint.array(inputs("threshold", mpc.pid)))
                total = parts[0] + parts[1] + parts[2]
                out = await mpc.output(2 * total[0] >= total[1])
                check = bool(out) is True
            else:
                noise = DistributedDiscreteLaplace(EPSILON, 1, PARTIES, 1)
                mine = inputs("noisy-argmax", mpc.pid) + noise.piece(CANDIDATES, system_random("bench"))
                parts = mpc.input(secint.array(mine))
                out = await mpc.output(mpc.np_argmax(parts[0] + parts[1] + parts[2]))
                check = 0 <= int(out) < CANDIDATES
            times.append(time.perf_counter() - t0)
            if not check:
                raise RuntimeError("MPyC returned a wrong answer")
        await mpc.shutdown()
        if mpc.pid == 0:
            mpyc_runs.report(times)

    mpc.run(main())


def run_mpyc(workload: str, reps: int) -> dict:
    return mpyc_runs.run_parties(__file__, PARTIES, {MPYC_ENV: workload}, reps, timeout=1800)[0]


# -- the mpcdp side ------------------------------------------------------------------------


def scaling(parties: int) -> dict:
    """mpcdp alone with n parties: 1,000 comparisons and the max of 1,000 (compute, rounds, bytes)."""
    from mpcdp import ring
    from mpcdp.mpc import compare
    from mpcdp.mpc.memory import run_in_memory
    from mpcdp.mpc.statistics import Extremum, simulate

    def compare_program(part):
        def run(e):
            bits = yield from compare.to_bits(e, part)
            return (yield from e.open(compare.shr(bits, 63), xor=True))

        return run

    d = ring.as_ring(inputs("compare", 0) - inputs("compare", 1))
    parts = [d] + [ring.as_ring(np.zeros(SIZE, dtype=np.int64))] * (parties - 1)
    out = {"parties": parties}
    t0 = time.perf_counter()
    _, trace = run_in_memory(parties, [compare_program(p) for p in parts])
    out["compare"] = {"seconds": time.perf_counter() - t0, "rounds": trace.rounds, "bytes": trace.bytes}
    values = [inputs("max", 0) + inputs("max", 1) + inputs("max", 2)] + [np.zeros(SIZE, dtype=np.int64)] * (parties - 1)
    t0 = time.perf_counter()
    _, trace = simulate(Extremum(), values)
    out["max"] = {"seconds": time.perf_counter() - t0, "rounds": trace.rounds, "bytes": trace.bytes}
    return out


def party_programs(workload: str, only: int | None = None):
    """Every party's (or party ``only``'s) local preparation and engine program, and how to read the answer."""
    from mpcdp import ring
    from mpcdp.mpc import compare
    from mpcdp.mpc.statistics import Extremum, NoisyArgmax, Threshold

    if workload == "compare":
        parts = [
            ring.as_ring(inputs("compare", 0)),
            ring.as_ring(-inputs("compare", 1)),
            ring.as_ring(inputs("compare", 2)),
        ]  # additive parts of x - y

        def program(part):
            def run(e):
                bits = yield from compare.to_bits(e, part)
                return (yield from e.open(compare.shr(bits, 63), xor=True))

            return run

        expected = inputs("compare", 0) < inputs("compare", 1)
        return [program(p) for p in parts], lambda out: out, lambda a: np.array_equal(a, expected)
    if workload == "max":
        stat, data = Extremum(), [(inputs("max", p),) for p in range(PARTIES)]
        top = int(sum(inputs("max", p) for p in range(PARTIES)).max())

        def ok(a):
            return a == top

    elif workload == "threshold":
        stat, data = Threshold(fraction=0.5), [tuple(inputs("threshold", p)) for p in range(PARTIES)]

        def ok(a):
            return a is True

    else:
        stat, data = NoisyArgmax(EPSILON, PARTIES, colluders=1), [(inputs("noisy-argmax", p),) for p in range(PARTIES)]

        def ok(a):
            return 0 <= a < CANDIDATES

    programs = [stat.program(stat.prepare(p, *d)) if only in (None, p) else None for p, d in enumerate(data)]
    return programs, stat.release, ok


def mpcdp_once(workload: str, session) -> tuple[float, object, object]:
    from mpcdp.mpc.memory import run_in_memory

    t0 = time.perf_counter()
    programs, release, ok = party_programs(workload)
    results, trace = run_in_memory(PARTIES, programs, session=session)
    answer = release(results[0])
    seconds = time.perf_counter() - t0
    if not ok(answer):
        raise RuntimeError(f"mpcdp returned a wrong answer for {workload}")
    return seconds, trace, answer


# -- a check of the projection: the same parties as processes over plain TCP ----------------
# Benchmark-only framing, no TLS, no authentication: NOT the transport (that is still to be built).
# Every round each party sends every peer one length-prefixed frame (empty when it has nothing).


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectionError("peer closed")
        buf += chunk
    return bytes(buf)


def tcp_party(me: int, workload: str, reps: int, ports, results) -> None:
    from mpcdp.mpc.engine import Engine
    from mpcdp.mpc.messages import Round
    from mpcdp.mpc.session import PartyRun

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(PARTIES)
    ports.put((me, srv.getsockname()[1]))
    table = results.get()  # the parent sends everyone the port table
    peers = {}
    for q in range(me):
        s = socket.create_connection(("127.0.0.1", table[q]))
        s.sendall(me.to_bytes(2, "little"))
        peers[q] = s
    for _ in range(PARTIES - 1 - me):
        s, _ = srv.accept()
        peers[int.from_bytes(_recv_exact(s, 2), "little")] = s
    for s in peers.values():
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times, sent = [], 0
    engine = Engine(PARTIES, me, b"bench")  # one session: the first (warm-up) run deals the keys
    for rep in range(reps + 1):  # the first run warms up
        for s in peers.values():
            s.sendall(b"b")
        for s in peers.values():
            _recv_exact(s, 1)
        t0 = time.perf_counter()
        programs, release, ok = party_programs(workload, only=me)
        run = PartyRun(engine, programs[me])
        out = run.start()
        while not run.done:
            frames = {q: b"" for q in peers}
            for m in out:
                frames[m.recipient] = m.encode()
            for q, s in peers.items():
                s.sendall(len(frames[q]).to_bytes(4, "little") + frames[q])
                sent += (4 + len(frames[q])) if rep else 0
            got = []
            for s in peers.values():
                size = int.from_bytes(_recv_exact(s, 4), "little")
                if size:
                    got.append(Round.decode(_recv_exact(s, size)))
            out = run.step(got)
        if rep:
            times.append(time.perf_counter() - t0)
        if not ok(release(run.result)):
            raise RuntimeError("wrong answer over TCP")
    ports.put(("done", me, times, sent // reps))


def run_tcp(workload: str, reps: int) -> dict:
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    ports, tables = ctx.Queue(), [ctx.Queue() for _ in range(PARTIES)]
    procs = [ctx.Process(target=tcp_party, args=(p, workload, reps, ports, tables[p])) for p in range(PARTIES)]
    for proc in procs:
        proc.start()
    table = dict(ports.get(timeout=60) for _ in range(PARTIES))
    for q in tables:
        q.put(table)
    done = [ports.get(timeout=600) for _ in range(PARTIES)]
    for proc in procs:
        proc.join(timeout=60)
    slowest = [max(d[2][i] for d in done) for i in range(reps)]  # a run ends when its last party does
    return {"seconds": statistics.median(slowest), "runs": slowest, "bytes": sum(d[3] for d in done)}


def run_mpcdp(workload: str, reps: int) -> dict:
    from mpcdp.mpc.memory import engines

    session = engines(PARTIES)  # one session: keys dealt once, as MPyC sets up its keys at start-up
    mpcdp_once(workload, session)  # warm-up (and the key set-up round): imports, first-touch allocations
    runs, trace = [], None
    for _ in range(reps):
        seconds, trace, _ = mpcdp_once(workload, session)
        runs.append(seconds)
    return {
        "seconds": statistics.median(runs),
        "runs": runs,
        "rounds": trace.rounds,
        "messages": trace.messages,
        "bytes": trace.bytes,
    }


# -- end to end over mutual TLS: party processes on services.link, as party nodes run ------------------


def link_party(name: str, folder: Path, ports: dict[str, int], workload: str, reps: int) -> None:
    """One party process: serve a Hub over mutual TLS, run ``reps`` + 1 engine runs with the peers, print times."""
    import asyncio

    from mpcdp.mpc.engine import Engine
    from mpcdp.mpc.session import PartyRun
    from services.link import Hub
    from services.mpc_node import drive
    from services.server import start, wait_serving
    from services.tls import Identity

    me = LINK_NAMES.index(name)
    peers = [p for p in LINK_NAMES if p != name]
    identity = Identity(name, folder / "certs")

    async def go() -> dict:
        hub = Hub(identity, lambda p: f"127.0.0.1:{ports[p]}", lambda who: who in peers)
        server, _ = await start(identity, f"127.0.0.1:{ports[name]}", [hub.service()])
        session = b"bench-session-00"
        engine = Engine(PARTIES, me, session)  # one session: the warm-up run deals the keys
        await asyncio.gather(*(wait_serving(identity, f"127.0.0.1:{ports[p]}", p, 120.0) for p in peers))
        times = []
        end = time.monotonic() + 1800

        def left() -> float:
            return end - time.monotonic()

        try:
            for rep in range(reps + 1):
                await asyncio.gather(*(hub.send(p, b"barrier", rep, "barrier", b"b") for p in peers))
                await asyncio.gather(*(hub.receive(p, b"barrier", rep, "barrier") for p in peers))
                t0 = time.perf_counter()
                programs, release, ok = party_programs(workload, only=me)
                run = PartyRun(engine, programs[me])
                await drive(hub, LINK_NAMES, run, session, left)
                if rep:
                    times.append(time.perf_counter() - t0)
                if not ok(release(run.result)):
                    raise RuntimeError(f"wrong answer over the links for {workload}")
            # the last barrier: nobody closes its links while a peer still reads
            await asyncio.gather(*(hub.send(p, b"barrier", reps + 1, "barrier", b"b") for p in peers))
            await asyncio.gather(*(hub.receive(p, b"barrier", reps + 1, "barrier") for p in peers))
        finally:
            await hub.close()
            await server.stop(None)
        return {"times": times}

    print("RESULT " + json.dumps(asyncio.run(go())), flush=True)


def run_link(workload: str, reps: int) -> dict:
    """Three party processes over mutual TLS links; a run's time is its slowest party's."""
    import tempfile

    from services.launch import reserve_ports
    from services.tls import init_certs

    with tempfile.TemporaryDirectory(prefix="mpcdp-bench-cmp-") as tmp:
        folder = Path(tmp)
        init_certs(LINK_NAMES, folder / "certs", ca_name="benchmark CA")
        held = reserve_ports(LINK_NAMES)
        ports = ",".join(f"{n}={s.getsockname()[1]}" for n, s in held.items())
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--link-party", n, "--dir", tmp, "--ports", ports, "--workload", workload]
                + ["--reps", str(reps)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in LINK_NAMES
        ]
        try:
            outs = [p.communicate(timeout=1800) for p in procs]
        finally:
            for s in held.values():
                s.close()
            for p in procs:
                if p.poll() is None:
                    p.kill()
    results = []
    for (out, _), p in zip(outs, procs, strict=True):
        line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
        if p.returncode or line is None:
            logs = "\n".join(f"--- {n}:\n{e[-1500:]}" for n, (_, e) in zip(LINK_NAMES, outs, strict=True))
            raise RuntimeError(f"a link party failed:\n{logs}")
        results.append(json.loads(line[len("RESULT ") :]))
    slowest = [max(r["times"][i] for r in results) for i in range(reps)]
    return {"seconds": statistics.median(slowest), "runs": slowest}


def run_federation_threshold(reps: int) -> dict:
    """``mpcdp query --statistic threshold`` as a whole: analyst -> coordinator -> 3 party processes (mTLS)."""
    from services.simulation import LocalFederation

    votes = {n: [1] * (2 + p) + [0] * (2 - p) for p, n in enumerate(LINK_NAMES)}  # 9 YES of 12
    with LocalFederation(votes, column="vote", timeout=60.0, allow_exact_nonlinear=True) as f:
        if f.query("threshold", fraction=0.5).value != "YES":  # warm-up: channels, links, imports
            raise RuntimeError("wrong threshold answer from the federation")
        runs = []
        for _ in range(reps):
            t0 = time.perf_counter()
            answer = f.query("threshold", fraction=0.5).value
            runs.append(time.perf_counter() - t0)
            if answer != "YES":
                raise RuntimeError("wrong threshold answer from the federation")
    return {"seconds": statistics.median(runs), "runs": runs}


# -- the loopback network, measured --------------------------------------------------------

ECHO = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(1); print(s.getsockname()[1], flush=True)
c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while True:
    d = c.recv(1 << 20)
    if not d: break
    if d.endswith(b"!"): c.sendall(b"k")
    elif d.endswith(b"?"): c.sendall(d)
"""


def loopback() -> dict:
    """Median round-trip time of a 64-byte message, and throughput, over TCP between two processes."""
    server = subprocess.Popen([sys.executable, "-c", ECHO], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        c = socket.create_connection(("127.0.0.1", port))
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rtts = []
        for _ in range(2000):
            t0 = time.perf_counter()
            c.sendall(b"x" * 63 + b"?")
            got = b""
            while len(got) < 64:
                got += c.recv(64 - len(got))
            rtts.append(time.perf_counter() - t0)
        blob = b"\0" * (32 << 20) + b"!"
        t0 = time.perf_counter()
        c.sendall(blob)
        c.recv(1)
        throughput = len(blob) / (time.perf_counter() - t0)
        c.close()
    finally:
        server.kill()
        server.wait()
    return {
        "rtt_seconds": statistics.median(rtts),
        "rtt_p90_seconds": float(np.percentile(rtts, 90)),
        "throughput_bytes_per_second": throughput,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--link-party", help=argparse.SUPPRESS)  # internal: one party process of run_link
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--ports", help=argparse.SUPPRESS)
    ap.add_argument("--workload", help=argparse.SUPPRESS)
    ap.add_argument("--reps", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.link_party:
        ports = {n: int(port) for n, port in (x.split("=") for x in args.ports.split(","))}
        link_party(args.link_party, args.dir, ports, args.workload, args.reps)
        return 0
    net = loopback()
    plan = [("compare", 5, 1), ("max", 5, 1), ("threshold", 20, 20), ("noisy-argmax", 5, 3)]
    rows = []
    for workload, ours_reps, mpyc_reps in plan:
        if args.quick:
            ours_reps, mpyc_reps = 2, 1
        ours = run_mpcdp(workload, ours_reps)
        link = run_link(workload, ours_reps)
        tcp = run_tcp(workload, ours_reps)
        theirs = run_mpyc(workload, mpyc_reps)
        network = ours["rounds"] * net["rtt_seconds"] + ours["bytes"] / net["throughput_bytes_per_second"]
        projected = ours["seconds"] + network
        count = SIZE if workload in ("compare", "max") else CANDIDATES if workload == "noisy-argmax" else 1
        speedup = theirs["seconds"] / link["seconds"]
        rows.append(
            {
                "workload": workload,
                "parties": PARTIES,
                "items": count,
                "mpcdp_mtls_processes_seconds": link["seconds"],
                "mpyc_seconds": theirs["seconds"],
                "speedup_mtls_vs_mpyc": speedup,
                "target_speedup": TARGETS.get(workload),
                "target_met": (speedup >= TARGETS[workload]) if workload in TARGETS else None,
                "mpcdp_compute_seconds": ours["seconds"],
                "mpcdp_rounds": ours["rounds"],
                "mpcdp_messages": ours["messages"],
                "mpcdp_bytes": ours["bytes"],
                "mpcdp_bytes_per_item": ours["bytes"] / count,
                "mpcdp_projected_seconds": projected,
                "mpcdp_tcp_processes_seconds": tcp["seconds"],
                "mpcdp_tcp_bytes": tcp["bytes"],
                "speedup_compute_vs_mpyc": theirs["seconds"] / ours["seconds"],
                "mpcdp_mtls_runs": link["runs"],
                "mpcdp_runs": ours["runs"],
                "mpcdp_tcp_runs": tcp["runs"],
                "mpyc_runs": theirs["runs"],
            }
        )
        print(f"done: {workload}", file=sys.stderr, flush=True)
    query = run_federation_threshold(5 if args.quick else 20)
    mpyc_threshold = next(r["mpyc_seconds"] for r in rows if r["workload"] == "threshold")
    federation = {
        "workload": "threshold query (mpcdp query --statistic threshold --threshold 0.5)",
        "path": "analyst -> coordinator -> 3 party processes over mutual TLS -> release (policy, durable copy)",
        "seconds": query["seconds"],
        "runs": query["runs"],
        "mpyc_threshold_seconds": mpyc_threshold,
        "speedup_vs_mpyc": mpyc_threshold / query["seconds"],
        "target_speedup": TARGETS["threshold"],
        "target_met": mpyc_threshold / query["seconds"] >= TARGETS["threshold"],
    }
    more = [scaling(n) for n in (3, 5, 7)]
    report = {
        "benchmark": "comparisons",
        "engine": "replicated secret sharing over Z_2^64 and bits, n = 3, t = 1 (mpcdp.mpc)",
        "mpcdp_measured": (
            "headline: 3 party processes over services.link (one mutually authenticated gRPC stream per pair, "
            "TLS 1.3, fresh CA), the engine driven by services.mpc_node.drive as party nodes run it; a run's "
            "time is its slowest party's from a barrier to the opened release; keys dealt by a warm-up run"
        ),
        "also_measured": {
            "compute": "in-memory driver: all parties in one process, one after another; messages encoded",
            "projection": "compute + rounds x loopback RTT + bytes / loopback throughput (both measured below)",
            "tcp_check": "the same parties over plain loopback TCP (benchmark-only framing, no TLS)",
        },
        "mpyc": "MPyC 0.11, -M3 local processes over loopback, SecInt(64) arrays, gmpy2, input to output",
        "loopback": net,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_end": os.getloadavg(),
        },
        "rows": rows,
        "federation_threshold_query": federation,
        "mpcdp_scaling_in_memory": more,
        "scaling_note": "in-memory, a fresh session each: rounds and bytes include the key set-up round",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    head = (
        f"{'workload':<13} {'mTLS procs':>10} {'MPyC':>10} {'speed-up':>9} {'compute':>9} {'rounds':>6} "
        f"{'bytes/item':>10} {'TCP procs':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['workload']:<13} {1e3 * r['mpcdp_mtls_processes_seconds']:>8.1f}ms {1e3 * r['mpyc_seconds']:>8.1f}ms "
            f"{r['speedup_mtls_vs_mpyc']:>8.1f}x {1e3 * r['mpcdp_compute_seconds']:>7.1f}ms {r['mpcdp_rounds']:>6} "
            f"{r['mpcdp_bytes_per_item']:>10.0f} {1e3 * r['mpcdp_tcp_processes_seconds']:>8.1f}ms"
        )
    print(
        f"threshold as a federation query (analyst to release): {1e3 * federation['seconds']:.1f} ms "
        f"vs MPyC's threshold {1e3 * mpyc_threshold:.1f} ms ({federation['speedup_vs_mpyc']:.1f}x)"
    )
    for m in more:
        print(
            f"n = {m['parties']}: 1,000 comparisons {1e3 * m['compare']['seconds']:.0f} ms, "
            f"{m['compare']['rounds']} rounds, {m['compare']['bytes'] / SIZE:.0f} B each; max of 1,000 "
            f"{1e3 * m['max']['seconds']:.0f} ms, {m['max']['rounds']} rounds, {m['max']['bytes'] / SIZE:.0f} B/value"
        )
    print(f"loopback RTT {1e6 * net['rtt_seconds']:.0f} us; wrote {args.out}")
    return 0


if __name__ == "__main__":
    mpyc_runs.main_or_party(MPYC_ENV, mpyc_party, main)
