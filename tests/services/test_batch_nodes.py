"""The batch API on real TLS party and coordinator nodes: several statistics asked in one many-party session
(``QueryRequest.batch``, :meth:`services.analyst.Analyst.query_batch`, ``mpcdp query --also``). Exact batches
give exactly the in-the-clear answers, a DP batch charges every ledger the composed loss once, a party refusing
one statistic refuses the session, Fetch returns every release, and batches that do not share one session's
parties, colluders and deadline are refused. One cluster of 6 parties serves the module. (The full-mesh batch,
without a quorum: tests/services/test_mesh_batch.py.)"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time

import grpc
import pytest
import pytest_asyncio

from mpcdp.protocol import QuerySpec
from mpcdp.protocol.masked import MaskedQuery
from services import cli, convert, many_party
from services.analyst import QueryError
from services.releases import ReleaseStore
from services.wire.mpcdp.v1 import federation_pb2 as pb
from tests.support.federation import federation_file, ledgered_cluster

pytestmark = pytest.mark.asyncio(loop_scope="module")

NAMES = [f"p{i}" for i in range(1, 7)]
VALUES = {p: [10.0 + i, 3.0 * i] for i, p in enumerate(NAMES)}
TEAMS = {p: ["infra", "product"] if i % 2 else ["infra", "infra"] for i, p in enumerate(NAMES)}
TIMEOUT = 8.0
POLICY = {"allow_exact": True, "max_records": 10, "max_epsilon": 8.0, "epsilon_budget": 50.0}
SUM = dict(statistic="sum", column="value", bounds=(0, 100))
COUNT = dict(statistic="count", column="value")
HISTOGRAM = dict(statistic="histogram", column="team", categories=("infra", "product"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def nodes(tmp_path_factory):
    data = {p: {"value": VALUES[p], "team": TEAMS[p]} for p in NAMES}
    cluster, ledgers, state = await ledgered_cluster(tmp_path_factory, data, POLICY)
    cluster.nodes["coordinator"].store = ReleaseStore(state / "releases")  # Fetch gets what it kept
    yield cluster, ledgers
    await cluster.close()


def in_the_clear(parties):
    return {
        "sum": sum(v for p in parties for v in VALUES[p]),
        "count": sum(len(VALUES[p]) for p in parties),
        "histogram": {c: sum(TEAMS[p].count(c) for p in parties) for c in ("infra", "product")},
    }


async def batch(cluster, questions, parties, quorum, **kw):
    async with cluster.client() as c:
        return await c.query_batch(questions, parties=parties, quorum=quorum, timeout=TIMEOUT, **kw)


async def test_an_exact_batch_gives_the_answers_in_the_clear_and_fetch_returns_every_release(nodes):
    cluster, _ = nodes
    parties = NAMES[:5]
    released = await batch(cluster, [SUM, COUNT, HISTOGRAM], parties, quorum=4)
    clear = in_the_clear(parties)
    assert [r.statistic for r in released] == ["sum", "count", "histogram"]
    assert [r.index for r in released] == [0, 1, 2]
    assert [r.value for r in released] == [clear["sum"], clear["count"], clear["histogram"]]
    assert all(r.parties == tuple(parties) and r.exact and r.quorum == 4 for r in released)
    assert len({r.session_id for r in released}) == 1
    async with cluster.client() as c:
        again = await c.fetch_batch(released[0].session_id)
        assert [r.value for r in again] == [r.value for r in released]
        with pytest.raises(QueryError) as info:
            await c.fetch(released[0].session_id)  # one release expected: a batch says so
    assert "a batch of 3 statistics" in info.value.details


async def test_a_dp_batch_charges_every_ledger_the_composed_loss_once(nodes):
    cluster, ledgers = nodes
    parties = NAMES[:5]
    before = {n: ledgers[n].spent().epsilon for n in [*parties, "coordinator"]}
    questions = [dict(SUM, epsilon=1.0), dict(COUNT, epsilon=0.5), dict(HISTOGRAM, epsilon=0.5)]
    released = await batch(cluster, questions, parties, quorum=5)
    assert [r.statistic for r in released] == ["sum", "count", "histogram"]
    specs = [
        QuerySpec(
            q["statistic"],
            tuple(parties),
            column=q["column"],
            bounds=q.get("bounds", (0.0, 1.0)),
            categories=q.get("categories", ()),
            epsilon=q["epsilon"],
            max_records=10,
            session_id=b"s" * 16,
        )
        for q in questions
    ]
    composed = MaskedQuery.of(specs[0], 5, batch=tuple(specs[1:])).charge.epsilon_delta()[0]
    assert math.isclose(composed, sum(r.epsilon for r in released))  # every party counted: the sum of the three
    for name in [*parties, "coordinator"]:
        spent = ledgers[name].spent().epsilon - before[name]
        assert math.isclose(spent, composed) and ledgers[name].reserved() == {}, name
    clear = in_the_clear(parties)
    for r in released:  # noise around the answers, not a mask left in (that would be ~2^64 / 2^16 off)
        errors = [abs(r.value[c] - clear["histogram"][c]) for c in r.value] if isinstance(r.value, dict) else []
        error = max(errors) if errors else abs(r.value - clear[r.statistic])
        assert error < 20 * max(r.noise_std.values()), r


async def test_a_party_refusing_one_statistic_refuses_the_session(nodes):
    cluster, ledgers = nodes
    p6 = cluster.nodes["p6"]
    policy = p6.policy
    p6.policy = dataclasses.replace(policy, statistics=("sum", "count"))  # no histograms from p6
    try:
        with pytest.raises(QueryError) as info:
            await batch(cluster, [SUM, COUNT, HISTOGRAM], ["p5", "p6", "p1"], quorum=3)
    finally:
        p6.policy = policy
    assert info.value.code == grpc.StatusCode.ABORTED
    assert "p6 refused" in info.value.details and "histogram" in info.value.details
    assert all(ledgers[p].reserved() == {} for p in ["p5", "p6", "p1", "coordinator"])


def raw_request(session_parties, **batch_fields):
    seeded = convert.sharing_wire("seeded")
    spec = pb.QuerySpec(statistic=convert.statistic_wire("sum"), column="value", upper=100, sharing=seeded)
    spec.parties.extend(session_parties)
    other = pb.QuerySpec(statistic=convert.statistic_wire("count"), column="value", sharing=seeded, **batch_fields)
    return pb.QueryRequest(spec=spec, batch=[other], timeout_seconds=TIMEOUT, quorum=3)


@pytest.mark.parametrize(
    "fields, fragment",
    [
        (dict(parties=["p1", "p2", "p4"]), "names other parties"),
        (dict(deadline=time.time() + 5), "leave session_id and deadline unset"),
        (dict(colluders=2), "has colluders 2, the session 1"),
    ],
)
async def test_a_batch_not_sharing_the_session_is_refused(nodes, fields, fragment):
    cluster, _ = nodes
    async with cluster.client() as c:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in c._stub.Query(raw_request(["p1", "p2", "p3"], **fields)):
                pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and fragment in info.value.details()


@pytest.mark.parametrize("quorum", [3, None])
async def test_a_batch_asking_a_comparison_is_refused(nodes, quorum):
    """A comparison runs under MPC on its own, with or without a quorum (as the session's spec or in the batch)."""
    cluster, _ = nodes
    for first in (True, False):
        request = raw_request(["p1", "p2", "p3"])
        target = request.spec if first else request.batch[0]
        target.statistic = convert.statistic_wire("max")
        if quorum is None:
            request.ClearField("quorum")
        async with cluster.client() as c:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in c._stub.Query(request):
                    pass
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "a batch asks secure sums; a comparison runs under MPC on its own" in info.value.details()


async def test_a_party_refuses_a_proposal_whose_batch_does_not_share_the_session():
    """What a coordinator proposes is checked again by each party: a batch spec with another deadline (or
    parties, colluders, session id) is not one session."""
    sid, deadline = b"s" * 16, time.time() + 10
    spec = QuerySpec("sum", ("p1", "p2", "p3"), column="value", session_id=sid, deadline=deadline)
    other = dataclasses.replace(spec, statistic="count", deadline=deadline + 1)
    good = many_party.encode_proposal(MaskedQuery.of(spec, 3, batch=(dataclasses.replace(other, deadline=deadline),)))
    assert [s.statistic for s in many_party.decode_proposal(good).specs] == ["sum", "count"]
    fields = many_party.unpack(good)
    bad = many_party.pack(*fields[:2], convert.spec_to_proto(other).SerializeToString())
    with pytest.raises(ValueError, match="share parties, colluders, session id and deadline"):
        many_party.decode_proposal(bad)


async def test_mpcdp_query_also_prints_a_list(nodes, tmp_path, capsys):
    cluster, _ = nodes
    path = federation_file(cluster.federation, tmp_path / "federation.toml")
    parties = NAMES[1:5]
    argv = ["query", "--federation", str(path), "--parties", ",".join(parties), "--quorum", "4"]
    argv += ["--statistic", "sum", "--column", "value", "--bounds", "0,100", "--also", "--statistic count"]
    argv += ["--also", "--statistic histogram --column team --categories infra,product"]
    capsys.readouterr()
    assert await asyncio.to_thread(cli.main, [*argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    clear = in_the_clear(parties)
    assert [d["result"][d["statistic"]] for d in doc] == [clear["sum"], clear["count"], clear["histogram"]]
    assert await asyncio.to_thread(cli.main, argv) == 0
    text = capsys.readouterr().out
    assert "[1 of 3] sum: " in text and "[3 of 3] histogram: " in text
    fetch = ["query", "--federation", str(path), "--fetch", doc[0]["session_id"], "--json"]
    assert await asyncio.to_thread(cli.main, fetch) == 0
    assert json.loads(capsys.readouterr().out) == doc
    assert await asyncio.to_thread(cli.main, [*argv[:-2], "--also", "--statistic count --colluders 2"]) == 2
    assert "--colluders is the session's" in capsys.readouterr().err


async def test_a_party_gone_before_a_batch_is_left_out_of_every_release(nodes):
    """p6's node is stopped (last test of the module: it stays down): with a quorum of 3 the batch completes
    without it, and every release names the same counted parties and is exact over them."""
    cluster, _ = nodes
    await cluster.stop("p6")
    await cluster.nodes["p6"].link.close()
    parties = ["p3", "p4", "p5", "p6"]
    released = await batch(cluster, [SUM, COUNT, HISTOGRAM], parties, quorum=3)
    clear = in_the_clear(parties[:3])
    assert [r.value for r in released] == [clear["sum"], clear["count"], clear["histogram"]]
    assert all(r.parties == tuple(parties[:3]) and r.dropped == ("p6",) for r in released)
