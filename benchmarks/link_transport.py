"""The links' carrier side by side: a bare grpc.aio bidi stream (what ``Link/Open`` was) vs the TLS link.

Two processes on loopback, one sending 1 MiB writes, one receiving, both with the federation's mutual TLS
(the same certificates, P-256, TLS 1.3 on both carriers). Reported for each carrier: the receiver's and the
sender's CPU per MiB (``time.process_time`` in each process, from its start signal to its last byte) and
MiB/s; several rounds, alternating the carriers, medians. The gRPC side is benchmark-local code: a generic
stream-stream method with no serializers (each write reaches the handler as the bytes sent, as
``Link/Open`` did); the TLS side is the real hub: ``post`` of 1 MiB messages, received by ``expect`` with a
sink that reads nothing (the bytes handed to the application, as the gRPC handler's are).

``--secure-sum BEFORE AFTER`` also runs ``benchmarks/secure_sum.py`` (L = 10^5 and 10^6 with 3 parties,
L = 10^5 with 10 parties, MPyC in the same run) against two source trees (``git worktree``), alternating,
the same benchmark script for both (``--script``), each tree's code on ``PYTHONPATH``.

    python benchmarks/link_transport.py [--mib 256] [--rounds 3] [--secure-sum /tmp/base /tmp/after]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "link_transport.json"
MIB = 1 << 20
SID = b"b" * 16
GRPC_METHOD = "/bench.Bench/Sink"
SECURE_SUM_WORKLOADS = ["L=1e5, 3 parties", "L=1e6, 3 parties", "L=1e5, 10 parties"]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# -- the two ends, each run as its own process ----------------------------------------------


async def grpc_receiver(certs: Path, mib: int) -> None:
    import grpc

    from services.tls import Identity

    ident = Identity("bob", certs)
    options = [("grpc.max_receive_message_length", 4 * MIB), ("grpc.max_send_message_length", 4 * MIB)]
    server = grpc.aio.server(options=options)
    done = asyncio.get_running_loop().create_future()

    async def sink(requests, context):
        got = 0
        t0 = None
        async for data in requests:
            if t0 is None:
                t0 = time.process_time(), time.perf_counter()
            got += len(data)
            if got >= mib * MIB:
                break
        cpu, wall = time.process_time() - t0[0], time.perf_counter() - t0[1]
        yield json.dumps({"cpu_s": cpu, "wall_s": wall, "bytes": got}).encode()
        done.set_result(None)

    handler = grpc.method_handlers_generic_handler("bench.Bench", {"Sink": grpc.stream_stream_rpc_method_handler(sink)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", ident.server_credentials())
    await server.start()
    print(json.dumps({"address": f"127.0.0.1:{port}"}), flush=True)
    await done
    await asyncio.sleep(0.2)
    await server.stop(None)


async def grpc_sender(certs: Path, mib: int, address: str) -> dict:
    from services.tls import Identity

    payload = os.urandom(MIB)
    options = [("grpc.max_receive_message_length", 4 * MIB), ("grpc.max_send_message_length", 4 * MIB)]
    async with Identity("alice", certs).channel(address, "bob", options) as channel:
        call = channel.stream_stream(GRPC_METHOD)()
        await call.write(b"warm")  # the connection and the stream are up before the timed region
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(mib):
            await call.write(payload)
        reply = json.loads(await call.read())
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        await call.done_writing()
    return {"sender_cpu_s": cpu, "sender_wall_s": wall, "receiver": reply}


async def tls_receiver(certs: Path, mib: int) -> None:
    from services.link import Hub
    from services.server import start
    from services.tls import Identity

    ident = Identity("bob", certs)
    addresses: dict[str, str] = {}
    hub = Hub(ident, addresses.__getitem__, lambda who: who == "alice")
    server, port = await start(ident, "127.0.0.1:0", [hub.service()])
    first: list[tuple[float, float]] = []

    def discard(offset: int, piece) -> None:
        if not first:
            first.append((time.process_time(), time.perf_counter()))

    warm = asyncio.Event()
    hub.on("warm", lambda *_: warm.set())  # pushed: a receive would dial alice, whose address bob does not know
    expected = [
        asyncio.ensure_future(hub.expect("alice", SID, i + 1, "data", discard, timeout=300)) for i in range(mib)
    ]
    await asyncio.sleep(0)  # every sink is set before the first byte comes: nothing is held
    print(json.dumps({"address": f"127.0.0.1:{port}"}), flush=True)
    await warm.wait()
    await asyncio.gather(*expected)
    cpu, wall = time.process_time() - first[0][0], time.perf_counter() - first[0][1]
    reply = {"cpu_s": cpu, "wall_s": wall, "bytes": mib * MIB}
    await hub.send("alice", SID, 0, "done", json.dumps(reply).encode())
    await asyncio.sleep(0.2)
    await hub.close()
    await server.stop(None)


async def tls_sender(certs: Path, mib: int, address: str) -> dict:
    from services.link import Hub
    from services.tls import Identity

    hub = Hub(Identity("alice", certs), {"bob": address}.__getitem__, lambda who: who == "bob")
    payload = os.urandom(MIB)
    await hub.send("bob", SID, 0, "warm", b"")  # the connection is up before the timed region
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sent = [hub.post("bob", SID, i + 1, "data", payload) for i in range(mib)]
    await asyncio.gather(*sent)
    reply = json.loads(bytes(await hub.receive("bob", SID, 0, "done", timeout=300)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await hub.close()
    return {"sender_cpu_s": cpu, "sender_wall_s": wall, "receiver": reply}


ENDS = {"grpc": (grpc_receiver, grpc_sender), "tls": (tls_receiver, tls_sender)}


def end(args) -> int:
    receive, send = ENDS[args.carrier]
    if args.role == "receive":
        asyncio.run(receive(args.certs, args.mib))
    else:
        print(json.dumps(asyncio.run(send(args.certs, args.mib, args.address))), flush=True)
    return 0


# -- the driver -------------------------------------------------------------------------------


def one_transfer(carrier: str, certs: Path, mib: int) -> dict:
    me = [sys.executable, __file__, "--end", "--carrier", carrier, "--certs", str(certs), "--mib", str(mib)]
    receiver = subprocess.Popen([*me, "--role", "receive"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert receiver.stdout is not None
        address = json.loads(receiver.stdout.readline())["address"]
        out = subprocess.run([*me, "--role", "send", "--address", address], capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            raise RuntimeError(out.stderr)
        result = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        receiver.wait(60)
    got = result["receiver"]
    return {
        "receiver_cpu_ms_per_mib": 1e3 * got["cpu_s"] / mib,
        "sender_cpu_ms_per_mib": 1e3 * result["sender_cpu_s"] / mib,
        "mib_per_second": mib / result["sender_wall_s"],
        "receiver_wall_s": got["wall_s"],
    }


def transports(mib: int, rounds: int) -> dict:
    from services.tls import init_certs

    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp)
        init_certs(["alice", "bob"], certs)
        runs: dict[str, list[dict]] = {"grpc": [], "tls": []}
        loads = []
        for _ in range(rounds):
            for carrier in ("grpc", "tls"):
                runs[carrier].append(one_transfer(carrier, certs, mib))
                loads.append(os.getloadavg()[0])
                print(f"{carrier}: {runs[carrier][-1]}", file=sys.stderr, flush=True)
    medians = {carrier: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for carrier, rs in runs.items()}
    return {
        "mib_per_transfer": mib,
        "write_bytes": MIB,
        "rounds": rounds,
        "medians": medians,
        "ratios_grpc_over_tls": {
            key: medians["grpc"][key] / medians["tls"][key]
            for key in ("receiver_cpu_ms_per_mib", "sender_cpu_ms_per_mib")
        }
        | {"mib_per_second": medians["tls"]["mib_per_second"] / medians["grpc"]["mib_per_second"]},
        "runs": runs,
        "load_1min_each_run": loads,
    }


def secure_sum(trees: dict[str, Path], script: Path, rounds: int) -> dict:
    """``script`` (benchmarks/secure_sum.py) against each tree in turn, ``rounds`` times, alternating."""
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(rounds):
        for name, tree in trees.items():
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "secure_sum.json"
                only = [arg for w in SECURE_SUM_WORKLOADS for arg in ("--only", w)]
                env = {**os.environ, "PYTHONPATH": str(tree)}
                before = uptime()
                done = subprocess.run(
                    [sys.executable, str(script), *only, "--out", str(out)], env=env, capture_output=True, text=True
                )
                if done.returncode:
                    raise RuntimeError(f"secure_sum on {tree} failed:\n{done.stderr[-3000:]}")
                report = json.loads(out.read_text())
            commit = subprocess.run(
                ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
            )
            runs[name].append(
                {"tree": str(tree), "commit": commit.stdout.strip(), "uptime_before": before, "uptime_after": uptime()}
                | {"rows": report["rows"]}
            )
            print(
                f"secure_sum {name}: "
                + ", ".join(f"{r['workload']} {1e3 * r['mpcdp_seconds']:.1f} ms" for r in report["rows"]),
                file=sys.stderr,
                flush=True,
            )
    summary = {}
    for workload in SECURE_SUM_WORKLOADS:
        row = {}
        for name in trees:
            rows = [r for run in runs[name] for r in run["rows"] if r["workload"] == workload]
            row[name] = {
                "mpcdp_ms_median_of_runs": 1e3 * statistics.median(r["mpcdp_seconds"] for r in rows),
                "mpcdp_ms_each_run": [1e3 * r["mpcdp_seconds"] for r in rows],
                "speedup_vs_mpyc_each_run": [r["speedup_vs_mpyc"] for r in rows],
                "cpu_ms_per_query_each_run": [r.get("mpcdp_cpu_ms_per_query") for r in rows],
            }
        summary[workload] = row
    return {"script": str(script), "rounds": rounds, "summary": summary, "runs": runs}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256, help="MiB per transfer (default 256)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each carrier, alternating (default 3)")
    ap.add_argument(
        "--secure-sum", nargs=2, type=Path, metavar=("BEFORE", "AFTER"), help="also secure_sum on two trees"
    )
    ap.add_argument("--secure-sum-rounds", type=int, default=2)
    ap.add_argument("--script", type=Path, default=ROOT / "benchmarks" / "secure_sum.py")
    ap.add_argument("--skip-transports", action="store_true", help="only the secure_sum side by side")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--end", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--carrier", choices=sorted(ENDS), help=argparse.SUPPRESS)
    ap.add_argument("--role", choices=("send", "receive"), help=argparse.SUPPRESS)
    ap.add_argument("--certs", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--address", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.end:
        return end(args)
    report: dict = {
        "benchmark": "link_transport: grpc.aio bidi stream vs the TLS link, and secure_sum before/after",
        "uptime_before": uptime(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    if not args.skip_transports:
        report["transports"] = transports(args.mib, args.rounds)
    if args.secure_sum:
        before, after = args.secure_sum
        report["secure_sum"] = secure_sum({"before": before, "after": after}, args.script, args.secure_sum_rounds)
    report["uptime_after"] = uptime()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if "transports" in report:
        for carrier, m in report["transports"]["medians"].items():
            print(
                f"{carrier:>4}: receiver {m['receiver_cpu_ms_per_mib']:.2f} ms/MiB, sender "
                f"{m['sender_cpu_ms_per_mib']:.2f} ms/MiB, {m['mib_per_second']:.0f} MiB/s"
            )
    for workload, row in report.get("secure_sum", {}).get("summary", {}).items():
        print(workload + ": " + ", ".join(f"{n} {v['mpcdp_ms_median_of_runs']:.1f} ms" for n, v in row.items()))
    print(f"wrote {args.out} ({report['uptime_after']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
