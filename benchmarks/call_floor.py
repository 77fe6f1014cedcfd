"""The floor under a query: what one mutually authenticated gRPC call costs on this machine, with nothing behind it.

Every mpcdp query is at least one gRPC call from the analyst to the coordinator (a server-streaming
``Query``: request, session-id header, one reply), plus the coordinator's messages to the parties over
their links. This benchmark serves a call of that shape (``Floor/Echo``: the request's bytes back as one
streamed reply) from a separate Python process over mutual TLS with the federation's certificates, and
drives it from this process with 1, 16 and 64 calls in flight spread over 8 channels, as
``benchmarks/secure_sum.py``'s concurrent workload drives real queries. It reports calls per second,
median latency and CPU per call in each process: the ceiling that queries made of one such call (and
more work) cannot pass here, to set beside the concurrent workload's queries per second. Beside it, the
same request and reply as one length-prefixed message each way over a plain asyncio mutual-TLS stream
(what a query costs with no gRPC in between), measured the same way.

    python benchmarks/call_floor.py [--seconds 3]     # writes benchmarks/results/call_floor.json
"""

from __future__ import annotations

import argparse
import asyncio
import collections
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

    async def echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(4), "little")
                body = await reader.readexactly(size)
                writer.write(len(body).to_bytes(4, "little") + body)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        tls = await asyncio.start_server(echo_stream, "127.0.0.1", 0, ssl=tls_context(Path(certs), "coordinator", True))
        server = grpc.aio.server()
        handler = grpc.unary_stream_rpc_method_handler(echo)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("mpcdp.bench.Floor", {"Echo": handler}),))
        port = Identity("coordinator", Path(certs)).add_port(server, "127.0.0.1:0")
        await server.start()
        print(port, tls.sockets[0].getsockname()[1], flush=True)
        await server.wait_for_termination()

    asyncio.run(main())


def tls_context(certs: Path, name: str, server: bool):
    """Mutual TLS 1.3 with the federation's CA and ``name``'s certificate."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(certs / "ca.pem")
    ctx.load_cert_chain(certs / f"{name}.pem", certs / f"{name}.key")
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class TlsEcho:
    """One mutual-TLS connection to the echo stream; requests pipelined, replies matched in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.writer, self.waiting = writer, collections.deque()
        self.task = asyncio.ensure_future(self._replies(reader))

    @classmethod
    async def open(cls, port: int, certs: Path) -> TlsEcho:
        ctx = tls_context(certs, "client", False)
        return cls(*await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="coordinator"))

    async def _replies(self, reader: asyncio.StreamReader) -> None:
        while True:
            size = int.from_bytes(await reader.readexactly(4), "little")
            self.waiting.popleft().set_result(await reader.readexactly(size))

    async def __call__(self, payload: bytes) -> bytes:
        reply = asyncio.get_running_loop().create_future()
        self.waiting.append(reply)
        self.writer.write(len(payload).to_bytes(4, "little") + payload)
        return await reply

    def close(self) -> None:
        self.task.cancel()
        self.writer.close()


async def drive(ports: tuple[int, int], certs: Path, pid: int, seconds: float) -> dict[str, list[dict]]:
    """Each level for the gRPC call and for the TLS stream: calls/s, median latency, CPU per call."""
    from services.tls import Identity

    identity = Identity("client", certs)
    channels = [identity.channel(f"127.0.0.1:{ports[0]}", "coordinator") for _ in range(CHANNELS)]
    methods = [ch.unary_stream(METHOD, _registered_method=True) for ch in channels]
    streams = [await TlsEcho.open(ports[1], certs) for _ in range(CHANNELS)]
    payload = b"\x01" * 200  # about a scalar query's request

    async def grpc_call(i: int) -> None:
        call = methods[i % CHANNELS](payload)
        await call.initial_metadata()
        async for _ in call:
            pass

    async def tls_call(i: int) -> None:
        await streams[i % CHANNELS](payload)

    async def level(one, in_flight: int) -> dict:
        times: list[float] = []
        stop = time.perf_counter() + seconds

        async def worker(i: int) -> None:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                await one(i)
                times.append(time.perf_counter() - t0)

        server_before, client_before, began = cpu_seconds(pid), time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(in_flight)))
        took = time.perf_counter() - began
        server_cpu, client_cpu = cpu_seconds(pid) - server_before, time.process_time() - client_before
        return {
            "in_flight": in_flight,
            "calls": len(times),
            "calls_per_second": len(times) / took,
            "median_ms": 1e3 * statistics.median(times),
            "cpu_ms_per_call": {"server": 1e3 * server_cpu / len(times), "client": 1e3 * client_cpu / len(times)},
            "load": os.getloadavg(),
        }

    results: dict[str, list[dict]] = {"grpc": [], "tls_stream": []}
    try:
        for i in range(CHANNELS):  # every connection's TLS handshake, before timing
            await grpc_call(i)
            await tls_call(i)
        for in_flight in IN_FLIGHT:  # the two alternate at each level, under the same load
            results["grpc"].append(await level(grpc_call, in_flight))
            results["tls_stream"].append(await level(tls_call, in_flight))
    finally:
        for ch in channels:
            await ch.close()
        for stream in streams:
            stream.close()
    return results


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
            grpc_port, tls_port = map(int, proc.stdout.readline().split())
            results = asyncio.run(drive((grpc_port, tls_port), Path(tmp), proc.pid, args.seconds))
        finally:
            proc.terminate()
            proc.wait()
    for transport, levels in results.items():
        for lv in levels:
            cpu = lv["cpu_ms_per_call"]
            print(
                f"{transport:>10}, {lv['in_flight']:>2} in flight: {lv['calls_per_second']:7.0f} calls/s, median "
                f"{lv['median_ms']:.2f} ms, CPU per call: server {cpu['server']:.2f} ms, client {cpu['client']:.2f} ms "
                f"(load {lv['load'][0]:.1f})"
            )
    report = {
        "grpc": "a server-streaming gRPC call (request, initial metadata, one reply), mutual TLS",
        "tls_stream": "one length-prefixed message each way on an asyncio mutual-TLS stream",
        **results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
