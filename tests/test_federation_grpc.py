"""The federation over real gRPC with mutual TLS, in one process: the exact path and every failure."""

from __future__ import annotations

import asyncio
import dataclasses
import math

import grpc
import pytest

from services import federation as fed
from services.client import Client, QueryError
from services.coordinator_node import CoordinatorNode
from services.data import Table
from services.party_node import PartyNode
from services.server import start
from services.tls import Identity, init_certs
from services.wire.mpcdp.v1 import federation_pb2 as pb
from services.wire.mpcdp.v1 import federation_pb2_grpc as pb_grpc

RAISES = {"alice": 3800, "bob": 2514, "carol": 2982, "dave": 3390}
MEAN = 3171.5


def federation_doc(parties, policy=None):
    nodes = [{"name": "coordinator", "address": "127.0.0.1:1", "roles": ["coordinator"]},
             {"name": "analyst", "roles": ["client"]}]
    nodes += [{"name": p, "address": "127.0.0.1:1", "roles": ["party"]} for p in parties]
    return {"federation": {"name": "test"}, "policy": policy or {"allow_exact": True, "max_records": 100},
            "node": nodes}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    out = tmp_path_factory.mktemp("certs")
    init_certs(["coordinator", "analyst", "mallory", *RAISES], out)
    return out


class Cluster:
    """A coordinator and parties on loopback, each a real TLS gRPC server."""

    def __init__(self, federation, nodes, servers):
        self.federation = federation
        self.nodes = nodes
        self.servers = servers

    def client(self, name="analyst", certs=None):
        f = dataclasses.replace(self.federation, certs=certs or self.federation.certs)
        return Client(f, name)

    async def query(self, statistic="mean", **kw):
        kw.setdefault("column", "raise")
        kw.setdefault("bounds", (0, 10_000))
        async with self.client() as c:
            return await c.query(statistic, **kw)

    async def stop(self, name):
        await self.servers[name].stop(None)

    async def close(self):
        for server in self.servers.values():
            await server.stop(None)
        for node in self.nodes.values():
            await node.close()


async def make_cluster(certs, data=None, policy=None, party_cls=PartyNode, ledgers=None, rng=None):
    data = data or {p: {"raise": [v]} for p, v in RAISES.items()}
    f = fed.parse(federation_doc(list(data), policy), certs.parent)
    f = dataclasses.replace(f, certs=certs)
    nodes, servers, ports = {}, {}, {}
    ledgers = ledgers or {}
    for name in data:
        node = party_cls(f, name, Table(data[name]), Identity(name, certs), ledger=ledgers.get(name),
                         rng=rng)
        servers[name], ports[name] = await start(Identity(name, certs), "127.0.0.1:0",
                                                 [(pb_grpc.add_PartyServicer_to_server, node, "mpcdp.v1.Party")])
        nodes[name] = node
    coord = CoordinatorNode(f, Identity("coordinator", certs), ledger=ledgers.get("coordinator"),
                            default_timeout=10.0)
    servers["coordinator"], ports["coordinator"] = await start(
        Identity("coordinator", certs), "127.0.0.1:0",
        [(pb_grpc.add_CoordinatorServicer_to_server, coord, "mpcdp.v1.Coordinator")])
    nodes["coordinator"] = coord
    real = dataclasses.replace(f, nodes=tuple(
        dataclasses.replace(n, address=f"127.0.0.1:{ports[n.name]}") if n.name in ports else n
        for n in f.nodes))
    for node in nodes.values():
        node.federation = real
    return Cluster(real, nodes, servers)


@pytest.fixture
async def cluster(certs):
    c = await make_cluster(certs)
    yield c
    await c.close()


async def test_four_engineers_mean_over_grpc(cluster):
    r = await cluster.query()
    assert r.value == pytest.approx(MEAN, abs=1e-3)
    assert r.exact and r.parties == tuple(RAISES)
    assert r.result["count"] == 4


async def test_full_sharing_and_other_statistics(cluster):
    assert (await cluster.query(sharing="full")).value == pytest.approx(MEAN, abs=1e-3)
    assert (await cluster.query("sum")).value == pytest.approx(sum(RAISES.values()), abs=1e-3)
    var = await cluster.query("variance")
    xs = list(RAISES.values())
    m = sum(xs) / 4
    assert var.value == pytest.approx(sum((x - m) ** 2 for x in xs) / 3, rel=1e-6)


async def test_node_ready_for_next_query_after_each(cluster):
    for _ in range(3):
        assert (await cluster.query()).value == pytest.approx(MEAN, abs=1e-3)
