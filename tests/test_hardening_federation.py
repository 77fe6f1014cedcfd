"""Issue 9 (hardening) for the federation services: each test mounts the attack or reproduces the bug."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from services.server import Limits, start
from services.tls import Identity
from services.wire.mpcdp.v1 import federation_pb2 as pb
from services.wire.mpcdp.v1 import federation_pb2_grpc as pb_grpc
from tests.test_federation_grpc import RAISES, certs, make_cluster  # noqa: F401 - certs is a fixture

GARBAGE = b"\x0a\xff\xff\xff\xff\x0f"  # a length-delimited field running past the end: no message decodes


@pytest.fixture
async def cluster(certs):  # noqa: F811
    c = await make_cluster(certs)
    yield c
    await c.close()


async def raw_call(cluster, node, method, payload, streaming_in=False, streaming_out=False, as_name="coordinator"):
    address = cluster.federation.node(node).address
    async with Identity(as_name, cluster.federation.certs).channel(address, node) as ch:
        kind = {(False, False): ch.unary_unary, (False, True): ch.unary_stream,
                (True, False): ch.stream_unary, (True, True): ch.stream_stream}[(streaming_in, streaming_out)]
        call = kind(method)
        request = iter([payload]) if streaming_in else payload
        try:
            if streaming_out:
                return [m async for m in call(request, timeout=5)]
            return await call(request, timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc


@pytest.mark.parametrize("node, method, streaming_in, streaming_out", [
    ("bob", "/mpcdp.v1.Party/DeliverSeed", False, False),
    ("bob", "/mpcdp.v1.Party/Exchange", True, False),
    ("bob", "/mpcdp.v1.Party/Session", True, True),
    ("coordinator", "/mpcdp.v1.Coordinator/Query", False, True),
    ("bob", "/grpc.health.v1.Health/Check", False, False),
])
async def test_undecodable_request_bytes_are_invalid_argument(cluster, node, method, streaming_in, streaming_out):
    as_name = "analyst" if node == "coordinator" else "coordinator"
    err = await raw_call(cluster, node, method, GARBAGE, streaming_in, streaming_out, as_name)
    assert isinstance(err, grpc.aio.AioRpcError), err
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    assert "class" not in err.details() and "Error" not in err.details()
    assert (await cluster.query()).value == pytest.approx(3171.5, abs=1e-3)  # the node still serves


async def test_an_idle_authenticated_exchange_stream_is_closed(certs):  # noqa: F811
    c = await make_cluster(certs, limits=Limits(idle_timeout=0.5))
    try:
        node = c.federation.node("bob")
        async with Identity("alice", certs).channel(node.address, "bob") as ch:
            call = pb_grpc.PartyStub(ch).Exchange(timeout=10)
            began = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call  # never writes: an idle stream held open by an authenticated peer
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "idle" in info.value.details()
        assert time.monotonic() - began < 3
        assert (await c.query()).value == pytest.approx(3171.5, abs=1e-3)
    finally:
        await c.close()


def test_limits_become_keepalive_and_stream_options():
    options = dict(Limits(keepalive_time=30, keepalive_timeout=5, max_concurrent_streams=7).options())
    assert options["grpc.keepalive_time_ms"] == 30_000 and options["grpc.keepalive_timeout_ms"] == 5_000
    assert options["grpc.max_concurrent_streams"] == 7
    with pytest.raises(ValueError):
        Limits(idle_timeout=0)
