"""Shared test helpers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest

from mpcdp.dp.ledger import PrivacyLedger
from mpcdp.protocol import QuerySpec
from services import convert, sessions
from services import federation as fed
from services.analyst import Analyst, QueryError
from services.coordinator_node import CoordinatorNode
from services.data import Table
from services.ledgers import settled
from services.link import Hub
from services.party_node import PartyNode
from services.server import start
from services.tls import Identity, init_certs
from services.wire.mpcdp.v1 import federation_pb2 as pb

RAISES = {"alice": 3800, "bob": 2514, "carol": 2982, "dave": 3390}


MEAN = 3171.5


def federation_doc(parties, policy=None):
    nodes = [
        {"name": "coordinator", "address": "127.0.0.1:1", "roles": ["coordinator"]},
        {"name": "analyst", "roles": ["client"]},
    ]
    nodes += [{"name": p, "address": "127.0.0.1:1", "roles": ["party"]} for p in parties]
    return {
        "federation": {"name": "test"},
        "policy": policy or {"allow_exact": True, "max_records": 100},
        "node": nodes,
    }


def federation_file(federation, path):
    """Write ``federation`` (its nodes, addresses and certificate folder; a policy allowing exact releases) as
    a federation file at ``path``, for `mpcdp` commands run against a cluster; the path."""
    lines = ["[federation]", 'name = "test"', f'certs = "{federation.certs}"', "[policy]", "allow_exact = true"]
    for node in federation.nodes:
        lines += ["[[node]]", f'name = "{node.name}"', f"roles = {json.dumps(list(node.roles))}"]
        if node.address:
            lines.append(f'address = "{node.address}"')
    path.write_text("\n".join(lines) + "\n")
    return path


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
        f = self.federation.model_copy(update={"certs": certs or self.federation.certs})
        return Analyst(f, name)

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


async def ledgered_cluster(tmp_path_factory, data, policy, budget: float = 50.0):
    """A cluster (:func:`make_cluster`) whose parties and coordinator each keep a privacy ledger on disk, with
    fresh certificates: (cluster, ledgers by node, the state folder)."""
    certs = tmp_path_factory.mktemp("certs")
    init_certs(["coordinator", "analyst", *data], certs)
    state = tmp_path_factory.mktemp("state")
    ledgers = {n: PrivacyLedger(state / f"{n}.db", "values", budget) for n in [*data, "coordinator"]}
    return await make_cluster(certs, data=data, policy=policy, ledgers=ledgers), ledgers, state


async def make_cluster(certs, data=None, policy=None, party_cls=PartyNode, ledgers=None, rng=None, limits=None):
    data = data or {p: {"raise": [v]} for p, v in RAISES.items()}
    f = fed.parse(federation_doc(list(data), policy), certs.parent)
    f = f.model_copy(update={"certs": certs})
    nodes, servers, ports = {}, {}, {}
    ledgers = ledgers or {}
    for name in data:
        # rng(sid, party): each party its own stream, as with the CSPRNG (shared streams would
        # make the parties' noise pieces identical, and the total noise far wider than described)
        node_rng = (lambda sid, _name=name: rng(sid, _name)) if rng else None
        node = party_cls(f, name, Table(data[name]), Identity(name, certs), ledger=ledgers.get(name), rng=node_rng)
        servers[name], ports[name] = await start(Identity(name, certs), "127.0.0.1:0", node.services(), limits)
        nodes[name] = node
    coord = CoordinatorNode(f, Identity("coordinator", certs), ledger=ledgers.get("coordinator"), default_timeout=10.0)
    servers["coordinator"], ports["coordinator"] = await start(
        Identity("coordinator", certs),
        "127.0.0.1:0",
        coord.services(),
        limits,
    )
    nodes["coordinator"] = coord
    return Cluster(serving_at(f, nodes, ports), nodes, servers)


def parties_with_session_logs(folder):
    """A ``party_cls`` for :func:`make_cluster` whose parties keep their session ids in ``folder`` (as a node with a
    state directory does), so a cluster made again on the same folder is the same parties restarted."""
    from services.ledgers import SessionLog

    def durable(f, name, table, identity, **kw):
        return PartyNode(f, name, table, identity, sessions=SessionLog(folder / f"{name}.sessions"), **kw)

    return durable


def serving_at(f, nodes, ports):
    """``f`` with each node of ``ports`` at its loopback port, handed to every node of ``nodes``; returned."""
    real = f.model_copy(
        update={
            "nodes": tuple(
                n.model_copy(update={"address": f"127.0.0.1:{ports[n.name]}"}) if n.name in ports else n
                for n in f.nodes
            )
        }
    )
    for node in nodes.values():
        node.federation = real
    return real


@pytest.fixture
async def cluster(certs):
    c = await make_cluster(certs)
    yield c
    await c.close()


async def until(condition, seconds=20.0):
    """Poll ``condition`` until it holds (a loaded CI machine is slow, never wrong); fails after ``seconds``."""
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "condition never held"
        await asyncio.sleep(0.02)


async def ledgers_applied(cluster, names, seconds=20.0) -> None:
    """Wait until the named nodes' sessions have ended (a party's additive and many-party ones, the coordinator's)
    and the ledger changes they queued as they ended (the frees of what an aborted session held, group-committed off
    the loop) are applied (:func:`services.ledgers.settled`): what a test reads from a ledger after an abort."""

    def ended(node) -> bool:
        if isinstance(node, PartyNode):
            return not node._live and not node.many_in_flight
        return not getattr(node, "_sessions", None)

    await until(lambda: all(ended(cluster.nodes[name]) for name in names), seconds)
    for name in names:
        assert await settled(cluster.nodes[name].ledger, seconds), f"{name}'s ledger changes were not applied"


def idle(cluster, *faulty) -> bool:
    return not any(
        node._live for name, node in cluster.nodes.items() if isinstance(node, PartyNode) and name not in faulty
    )


def assert_idle(cluster, *faulty):
    for name, node in cluster.nodes.items():
        if isinstance(node, PartyNode) and name not in faulty:
            assert not node._live, f"{name} still holds a live session"


async def expect_error(cluster, code, *fragments, faulty=(), **kw):
    with pytest.raises(QueryError) as info:
        await cluster.query(**kw)
    assert info.value.code == code, info.value
    for fragment in fragments:
        assert fragment in info.value.details, info.value.details
    with contextlib.suppress(AssertionError):  # a party's confirming abort may come after the analyst heard
        await until(lambda: idle(cluster, *faulty), 10.0)
    assert_idle(cluster, *faulty)
    return info.value


class Speaker:
    """A link hub speaking as ``name`` (with its own certificate) to the cluster's nodes: raw session messages
    on the links, as a coordinator or a party that misbehaves would send them."""

    def __init__(self, cluster, name="coordinator", certs=None):
        self.hub = Hub(Identity(name, certs or cluster.federation.certs), cluster.federation.address, lambda who: True)

    async def propose_raw(self, party, sid: bytes, payload: bytes, timeout=10.0) -> pb.ProposeResponse:
        """Send a proposal's bytes; the party's answer."""
        await self.hub.send(party, sid, 0, sessions.PROPOSE, payload)
        return pb.ProposeResponse.FromString(await self.hub.receive(party, sid, 0, sessions.ANSWER, timeout=timeout))

    async def propose(self, party, spec, start=False) -> pb.ProposeResponse:
        propose = pb.Propose(spec=convert.spec_to_proto(spec), start=start)
        return await self.propose_raw(party, spec.session_id, propose.SerializeToString())

    async def share(self, party, sid: bytes, payload) -> None:
        await self.hub.send(party, sid, 0, sessions.SHARE, payload)

    async def aborted(self, party, sid: bytes, timeout=10.0) -> pb.Abort:
        """The party's abort of a session (its own, or its confirmation of ours)."""
        return pb.Abort.FromString(await self.hub.receive(party, sid, 0, sessions.ABORT, timeout=timeout))

    async def abort(self, party, sid: bytes) -> pb.Abort:
        """Abort a session as its coordinator; the party's confirmation."""
        abort = pb.Abort(session_id=sid, sender="coordinator", reason="test")
        await self.hub.send(party, sid, 0, sessions.ABORT, abort.SerializeToString())
        return await self.aborted(party, sid)

    async def close(self):
        await self.hub.close()


def session_spec(sharing="full", session_id=b"s" * 16, **kw) -> QuerySpec:
    fields = dict(parties=tuple(RAISES), column="raise", bounds=(0, 10_000), deadline=time.time() + 60)
    fields.update(kw)
    return QuerySpec("mean", sharing=sharing, session_id=session_id, **fields)


async def open_session(cluster, party="bob", sharing="full", session_id=b"s" * 16):
    """Propose a session to ``party`` as the coordinator (waiting for START: no share moves); the speaker and
    the spec."""
    spec = session_spec(sharing, session_id)
    speaker = Speaker(cluster)
    answer = await speaker.propose(party, spec)
    assert answer.accepted, answer
    return speaker, spec
