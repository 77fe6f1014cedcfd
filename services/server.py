"""One way to start any mpcdp gRPC server: its services plus health checking and reflection."""

from __future__ import annotations

import asyncio
import socket

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.tls import Identity

MAX_MESSAGE = 64 << 20  # a bound on any one message; federation vectors and releases go in ~1 MiB chunks
OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]


def reserve_loopback_port() -> socket.socket:
    """Hold a free loopback port (SO_REUSEPORT) until a child process has bound it too.

    Closing the returned socket after the node is serving releases the hold;
    no other program can take the port in between.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def start(identity: Identity, address: str, services) -> tuple[grpc.aio.Server, int]:
    """Start a server on ``address`` (port 0 picks a free port) and return it with its port.

    ``services`` is a list of ``(add_to_server, servicer, full_service_name)``.
    The standard health service reports each of them SERVING, and reflection
    lists them, so ordinary gRPC tooling (grpcurl, grpc_health_probe) works.
    """
    server = grpc.aio.server(options=OPTIONS)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
    for add, servicer, name in services:
        add(servicer, server)
        names.append(name)
    reflection.enable_server_reflection(names, server)
    port = identity.add_port(server, address)
    if port == 0:
        raise OSError(f"could not listen on {address}")
    await server.start()
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port


async def wait_serving(identity: Identity, address: str, peer: str, timeout: float) -> None:
    """Block until the node ``peer`` at ``address`` answers its health check as SERVING."""
    async with identity.channel(address, peer) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout, wait_for_ready=True)
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError(f"{peer} at {address} is not serving")


async def serve_until_stopped(identity: Identity, address: str, services, banner: str, cleanup=None) -> int:
    """Serve until SIGINT or SIGTERM, then stop gracefully. Prints ``banner`` with the port once serving."""
    import signal

    server, port = await start(identity, address, services)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(banner.format(port=port), flush=True)
    await stop.wait()
    await server.stop(grace=1.0)
    if cleanup is not None:
        await cleanup()
    return 0
