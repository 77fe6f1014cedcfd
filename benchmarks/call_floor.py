"""The floor under a query: what one mutually authenticated gRPC call costs on this machine, with nothing behind it.

Every mpcdp query is at least one gRPC call from the analyst to the coordinator (a server-streaming
``Query``: request, session-id header, one reply), plus the coordinator's messages to the parties over
their links. This benchmark serves a call of that shape (``Floor/Echo``: the request's bytes back as one
streamed reply) from a separate Python process over mutual TLS with the federation's certificates, and
drives it from this process with 1, 16 and 64 calls in flight spread over 8 channels, as
``benchmarks/secure_sum.py``'s concurrent workload drives real queries. It reports calls per second,
median latency and CPU per call in each process: the ceiling that queries made of one such call (and
more work) cannot pass here, to set beside the concurrent workload's queries per second.

    python benchmarks/call_floor.py [--seconds 3]     # writes benchmarks/results/call_floor.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "call_floor.json"
ROOT = Path(__file__).resolve().parent.parent
IN_FLIGHT = (1, 16, 64)
CHANNELS = 8
METHOD = "/mpcdp.bench.Floor/Echo"


def serve(certs: str) -> None:
    """The server process: ``Floor/Echo`` on a free port, printed on stdout."""
    import grpc

    from services.tls import Identity

    async def echo(request: bytes, context):
        await context.send_initial_metadata((("mpcdp-session", "00" * 16),))
        yield request

    async def main() -> None:
        server = grpc.aio.server()
        handler = grpc.unary_stream_rpc_method_handler(echo)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("mpcdp.bench.Floor", {"Echo": handler}),))
        port = Identity("coordinator", Path(certs)).add_port(server, "127.0.0.1:0")
        await server.start()
        print(port, flush=True)
        await server.wait_for_termination()

    asyncio.run(main())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(port: int, certs: Path, pid: int, seconds: float) -> list[dict]:
    from services.tls import Identity

    identity = Identity("client", certs)
    channels = [identity.channel(f"127.0.0.1:{port}", "coordinator") for _ in range(CHANNELS)]
    calls = [ch.unary_stream(METHOD, _registered_method=True) for ch in channels]
    payload = b"\x01" * 200  # about a scalar query's request

    async def one(call) -> float:
        t0 = time.perf_counter()
        stream = call(payload)
        await stream.initial_metadata()
        async for _ in stream:
            pass
        return time.perf_counter() - t0

    levels = []
    try:
        await asyncio.gather(*(one(c) for c in calls))  # every channel's TLS handshake, before timing
        for in_flight in IN_FLIGHT:
            times: list[float] = []
            stop = time.perf_counter() + seconds

            async def worker(i: int, times=times, stop=stop) -> None:
                while time.perf_counter() < stop:
                    times.append(await one(calls[i % CHANNELS]))

            server_before, client_before, began = cpu_seconds(pid), time.process_time(), time.perf_counter()
            await asyncio.gather(*(worker(i) for i in range(in_flight)))
            took = time.perf_counter() - began
            server_cpu, client_cpu = cpu_seconds(pid) - server_before, time.process_time() - client_before
            levels.append(
                {
                    "in_flight": in_flight,
                    "calls": len(times),
                    "calls_per_second": len(times) / took,
                    "median_ms": 1e3 * statistics.median(times),
                    "cpu_ms_per_call": {"server": 1e3 * server_cpu / len(times), "client": 1e3 * client_cpu / len(times)},
                    "load": os.getloadavg(),
                }
            )
    finally:
        for ch in channels:
            await ch.close()
    return levels


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="how long each level runs (default 3)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # the server process (a certificate folder)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    sys.path.insert(0, str(ROOT))
    from services.tls import init_certs

    with tempfile.TemporaryDirectory() as tmp:
        init_certs(["coordinator", "client"], Path(tmp))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", tmp], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            levels = asyncio.run(drive(port, Path(tmp), proc.pid, args.seconds))
        finally:
            proc.terminate()
            proc.wait()
    for lv in levels:
        cpu = lv["cpu_ms_per_call"]
        print(
            f"{lv['in_flight']:>2} in flight: {lv['calls_per_second']:7.0f} calls/s, median {lv['median_ms']:.2f} ms, "
            f"CPU per call: server {cpu['server']:.2f} ms, client {cpu['client']:.2f} ms (load {lv['load'][0]:.1f})"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"method": "server-streaming call, mutual TLS, one reply", "levels": levels}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
