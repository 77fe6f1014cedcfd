"""The full-mesh batch on real TLS party and coordinator nodes: several statistics in one additive session
without a quorum (``QueryRequest.batch``, :meth:`services.analyst.Analyst.query_batch`, ``mpcdp query
--also``): one PROPOSE carrying every spec and one PARTIAL carrying every partial sum per party, keyed and
seeded. Batches of 1, 2 and 16 statistics give the answers in the clear (exact) or around them (DP, one
ledger charge of the composed loss per node); a batch that would overspend on one party charges nothing
anywhere; a party refusing one statistic refuses the batch naming it; a party dropping mid-batch aborts the
session cleanly; a replayed batch proposal is refused. One cluster of 5 parties serves the module (p5's
ledger is nearly spent by the all-or-nothing test, and only that test asks it)."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import math
import time

import grpc
import numpy as np
import pytest
import pytest_asyncio

from mpcdp.protocol import QuerySpec
from services import cli, convert, sessions
from services.analyst import QueryError
from services.releases import ReleaseStore
from services.wire.mpcdp.v1 import federation_pb2 as pb
from tests.support.federation import Speaker, federation_file, ledgered_cluster, ledgers_applied, until

pytestmark = pytest.mark.asyncio(loop_scope="module")

NAMES = [f"p{i}" for i in range(1, 6)]
ASKED = NAMES[:4]  # every test but the all-or-nothing one asks these
VALUES = {p: [10.0 + i, 3.0 * i] for i, p in enumerate(NAMES)}
VECTORS = {p: [[1.0 + i, 2.0, 0.5 * i], [0.0, 1.0, 1.0]] for i, p in enumerate(NAMES)}
TEAMS = {p: ["infra", "product"] if i % 2 else ["infra", "infra"] for i, p in enumerate(NAMES)}
TIMEOUT = 10.0
POLICY = {"allow_exact": True, "max_records": 10, "max_epsilon": 8.0}
SUM = dict(statistic="sum", column="value", bounds=(0, 100))
COUNT = dict(statistic="count", column="value")
VECTOR = dict(statistic="sum", column="x,y,z", bounds=(0, 10), dimension=3)
HISTOGRAM = dict(statistic="histogram", column="team", categories=("infra", "product"))
NOTE = (
    "a batch of DP statistics runs seeded, so that no party is charged unless every party accepted (a keyed "
    "partial sum is charged as it leaves)"
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def nodes(tmp_path_factory):
    data = {p: {"value": VALUES[p], "team": TEAMS[p]} for p in NAMES}
    for p in NAMES:  # a vector's coordinates are columns
        data[p].update({axis: [row[i] for row in VECTORS[p]] for i, axis in enumerate("xyz")})
    cluster, ledgers, state = await ledgered_cluster(tmp_path_factory, data, POLICY)
    cluster.nodes["coordinator"].store = ReleaseStore(state / "releases")  # Fetch gets what it kept
    yield cluster, ledgers
    await cluster.close()


def in_the_clear(question, parties=ASKED):
    column = question["column"]
    if column == "x,y,z":
        return list(np.sum([r for p in parties for r in VECTORS[p]], axis=0))
    if column == "team":
        return {c: sum(TEAMS[p].count(c) for p in parties) for c in ("infra", "product")}
    values = [v for p in parties for v in VALUES[p]]
    return sum(values) if question["statistic"] == "sum" else len(values)


def questions(n: int, **kw) -> list[dict]:
    kinds = [SUM, COUNT, VECTOR, HISTOGRAM]
    return [dict(kinds[i % len(kinds)], **kw) for i in range(n)]


async def batch(cluster, asked, parties=ASKED, **kw):
    async with cluster.client() as c:
        return await c.query_batch(asked, parties=parties, timeout=TIMEOUT, **kw)


def spent(ledgers, names) -> dict[str, float]:
    return {n: float(ledgers[n].spent().epsilon) for n in names}


@pytest.mark.parametrize("sharing", ["keyed", "seeded"])
@pytest.mark.parametrize("n", [1, 2, 16])
async def test_an_exact_batch_gives_the_answers_in_the_clear_one_release_each(nodes, n, sharing):
    cluster, _ = nodes
    asked = questions(n)
    released = await batch(cluster, asked, sharing=sharing)
    assert [r.index for r in released] == list(range(n))
    assert len({r.session_id for r in released}) == 1
    for q, r in zip(asked, released, strict=True):
        assert r.statistic == q["statistic"] and r.exact and r.quorum is None
        expected = in_the_clear(q)
        assert (r.value.tolist() if isinstance(r.value, np.ndarray) else r.value) == pytest.approx(expected)
        assert r.sharing == sharing and r.sharing_note == "" and r.parties == tuple(ASKED)
        assert r.batch_size == n and r.batch_epsilon is None
    if n > 1:
        assert f"batch: statistic {n} of {n} in one session (exact)" in released[-1].to_text()
        async with cluster.client() as c:
            again = await c.fetch_batch(released[0].session_id)
        assert [r.to_json() for r in again] == [r.to_json() for r in released]


@pytest.mark.parametrize("sharing", ["keyed", "seeded"])
async def test_a_dp_batch_charges_every_node_the_composed_loss_once_and_each_release_its_own(nodes, sharing):
    """Asked keyed or seeded, a DP batch runs seeded and says why: a keyed partial sum is charged as it leaves,
    and one party refusing must not cost the others the whole batch."""
    cluster, ledgers = nodes
    who = [*ASKED, "coordinator"]
    before = spent(ledgers, who)
    asked = [dict(q, epsilon=e) for q, e in zip(questions(16), [0.25, 0.125] * 8, strict=True)]
    released = await batch(cluster, asked, sharing=sharing)
    total = sum(q["epsilon"] for q in asked)  # pure DP: the losses compose by adding up
    assert math.isclose(total, 3.0)
    assert [r.epsilon for r in released] == [q["epsilon"] for q in asked]
    assert {r.sharing for r in released} == {"seeded"}
    assert {r.sharing_note for r in released} == ({"" if sharing == "seeded" else NOTE})
    assert all(math.isclose(r.batch_epsilon, total) and r.batch_size == 16 for r in released)
    assert "batch: statistic 1 of 16 in one session (epsilon 3 composed)" in released[0].to_text()
    after = spent(ledgers, who)
    for name in who:
        assert math.isclose(after[name] - before[name], total) and ledgers[name].reserved() == {}, name
        assert sum(c.label == released[0].session_id for c in ledgers[name].history()) == 1, name  # one charge
    for q, r in zip(asked, released, strict=True):  # noise around each answer, not a mask left in
        clear = in_the_clear(q)
        if isinstance(clear, dict):
            error = max(abs(r.value[c] - clear[c]) for c in clear)
        else:
            error = float(np.max(np.abs(np.asarray(r.value) - np.asarray(clear))))
        assert error < 20 * max(r.noise_std.values()), r


@pytest.mark.parametrize("sharing", ["seeded", "keyed"])
async def test_a_batch_that_would_overspend_on_one_party_is_refused_whole(nodes, sharing):
    """p5 has 0.5 left; a batch costing 0.75 in all (each statistic 0.25, within any per-query limit) is refused
    by p5 naming its budget, and nothing is charged anywhere: no partial sum leaves before every party accepted
    (a DP batch asked keyed runs seeded: a keyed partial sum would be charged as it leaves)."""
    cluster, ledgers = nodes
    parties = ["p2", "p3", "p5"]
    if not ledgers["p5"].history():
        ledgers["p5"].charge(49.5, label="earlier")  # of the cluster's 50
    who = [*parties, "coordinator"]
    before = spent(ledgers, who)
    asked = [dict(SUM, epsilon=0.25), dict(COUNT, epsilon=0.25), dict(VECTOR, epsilon=0.25)]
    with pytest.raises(QueryError) as info:
        await batch(cluster, asked, parties=parties, sharing=sharing)
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value
    assert "p5 refused" in info.value.details
    await until(lambda: all(ledgers[n].reserved() == {} for n in who))
    assert spent(ledgers, who) == before


@pytest.mark.parametrize("sharing", ["keyed", "seeded"])
async def test_a_party_refusing_one_statistic_refuses_the_batch_naming_it(nodes, sharing):
    cluster, ledgers = nodes
    p3 = cluster.nodes["p3"]
    policy = p3.policy
    p3.policy = dataclasses.replace(policy, statistics=("sum", "count"))  # no histograms from p3
    try:
        with pytest.raises(QueryError) as info:
            await batch(cluster, [SUM, COUNT, HISTOGRAM, COUNT], sharing=sharing)
    finally:
        p3.policy = policy
        cluster.nodes["coordinator"]._refused.clear()  # p3 refused keyed: its sessions would run seeded for 60 s
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "p3 refused: statistic 2 of the batch (histogram): statistic 'histogram' is not allowed" in (
        info.value.details
    )
    assert all(ledgers[p].reserved() == {} for p in [*ASKED, "coordinator"])


@pytest.mark.parametrize("sharing, epsilon", [("seeded", 0.125), ("keyed", None)])
async def test_a_party_dropping_mid_batch_aborts_the_session_cleanly(nodes, sharing, epsilon):
    """p2 accepts a batch of 16 (DP: seeded; exact: keyed) and then drops its links (as a crashed process would):
    the session aborts at once naming it, nothing is charged anywhere and no hold is left, every party closes the
    session, and the next batch runs on the same nodes."""
    cluster, ledgers = nodes
    p2 = cluster.nodes["p2"]

    async def drop(live):
        p2.pair_keys.forget()
        await p2.link.close()

    before = spent(ledgers, [*ASKED, "coordinator"])
    p2._run = drop
    try:
        began = time.monotonic()
        with pytest.raises(QueryError) as info:
            await batch(cluster, questions(16, epsilon=epsilon), sharing=sharing)
        assert time.monotonic() - began < TIMEOUT / 2  # at once, not at the deadline
    finally:
        del p2._run
    assert info.value.code == grpc.StatusCode.ABORTED and "p2 dropped out" in info.value.details
    await ledgers_applied(cluster, [*ASKED, "coordinator"])  # the sessions ended and the frees they queued applied
    assert all(ledgers[p].reserved() == {} for p in [*ASKED, "coordinator"])
    assert spent(ledgers, [*ASKED, "coordinator"]) == before
    released = await batch(cluster, questions(2), sharing=sharing)
    assert [r.value for r in released] == [in_the_clear(q) for q in questions(2)]


async def test_a_replayed_batch_proposal_is_refused_and_a_batch_not_sharing_its_session_too(nodes):
    """A coordinator re-sending a batch it proposed (same session id) is refused: the masks it would get are
    the same batch's. A proposal whose batch spec has another deadline is not one session: refused naming it."""
    cluster, _ = nodes
    coordinator = Speaker(cluster)
    deadline = time.time() + 30
    sid = b"m" * 16
    spec = QuerySpec(
        "sum", tuple(ASKED), column="value", bounds=(0, 100), max_records=10, sharing="keyed", session_id=sid
    )
    spec = dataclasses.replace(spec, deadline=deadline)
    other = dataclasses.replace(spec, statistic="count", bounds=(0.0, 1.0))
    propose = pb.Propose(spec=convert.spec_to_proto(spec), start=True, batch=[convert.spec_to_proto(other)])
    try:
        for p in ASKED:
            await coordinator.hub.send(p, sid, 0, sessions.PROPOSE, propose.SerializeToString())
        partials = [await coordinator.hub.receive(p, sid, 0, sessions.PARTIAL, timeout=10) for p in ASKED]
        length = spec.codec.length + other.codec.length
        assert all(len(bytes(x)) == 8 * length + 8 * (len(ASKED) - 1) for x in partials)  # one PARTIAL each
        replay = await coordinator.propose_raw("p1", sid, propose.SerializeToString())
        assert not replay.accepted and replay.status == pb.REFUSAL_STATUS_ALREADY_EXISTS
        bad = pb.Propose(spec=convert.spec_to_proto(dataclasses.replace(spec, session_id=b"n" * 16)), start=True)
        bad.batch.append(convert.spec_to_proto(dataclasses.replace(other, session_id=b"n" * 16, deadline=deadline + 1)))
        answer = await coordinator.propose_raw("p1", b"n" * 16, bad.SerializeToString())
        assert not answer.accepted and answer.status == pb.REFUSAL_STATUS_INVALID_ARGUMENT
        assert "batch[1]" in answer.reason and "deadline" in answer.reason
    finally:
        await coordinator.close()


async def test_a_batch_is_one_propose_and_one_partial_per_party(nodes):
    cluster, _ = nodes
    posted: collections.Counter = collections.Counter()
    names = ["coordinator", *ASKED]
    for name in names:
        real = cluster.nodes[name].link.post

        def counting(peer, sid, rnd, kind, *a, _real=real, _name=name, **kw):
            if kind.startswith("sum."):  # the session's kinds (pair key hellos aside)
                posted[(_name, kind)] += 1
            return _real(peer, sid, rnd, kind, *a, **kw)

        cluster.nodes[name].link.post = counting
    try:
        released = await batch(cluster, questions(16), sharing="keyed")
    finally:
        for name in names:
            del cluster.nodes[name].link.post
    expected = {("coordinator", sessions.PROPOSE): len(ASKED)} | {(p, sessions.PARTIAL): 1 for p in ASKED}
    assert posted == expected  # no ANSWER, START or SHARE: one message each way for 16 statistics
    assert {r.sharing for r in released} == {"keyed"}


async def test_mpcdp_query_also_runs_a_full_mesh_batch(nodes, tmp_path, capsys):
    cluster, _ = nodes
    path = federation_file(cluster.federation, tmp_path / "federation.toml")
    argv = ["query", "--federation", str(path), "--parties", ",".join(ASKED)]
    argv += ["--statistic", "sum", "--column", "value", "--bounds", "0,100", "--also", "--statistic count"]
    argv += ["--also", "--statistic histogram --column team --categories infra,product"]
    capsys.readouterr()
    assert await asyncio.to_thread(cli.main, [*argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    asked = [SUM, COUNT, HISTOGRAM]
    assert [d["result"][d["statistic"]] for d in doc] == [in_the_clear(q) for q in asked]
    assert [d["index"] for d in doc] == [0, 1, 2] and {d["quorum"] for d in doc} == {None}
    assert {d["batch_size"] for d in doc} == {3}
    assert await asyncio.to_thread(cli.main, [*argv[:-2], "--also", "--statistic count --sharing full"]) == 2
    assert "--sharing is the session's" in capsys.readouterr().err


async def test_a_question_giving_a_session_keyword_is_refused_in_words(nodes):
    cluster, _ = nodes
    with pytest.raises(QueryError) as info:
        await batch(cluster, [SUM, dict(COUNT, sharing="full", colluders=2)])
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        info.value.details
        == "a question of a batch: colluders, sharing are the session's: give it once, to query_batch"
    )


async def test_a_batch_a_party_refuses_by_policy_reads_none_of_its_records(nodes, monkeypatch):
    """The review's DoS: 256 statistics on a column the policy does not offer made a party read (and hold) every
    statistic's records on its event loop before refusing. The policy is now checked for every statistic first."""
    cluster, _ = nodes
    p3 = cluster.nodes["p3"]
    reads = []
    real = p3.table.records
    monkeypatch.setattr(p3.table, "records", lambda spec: reads.append(spec) or real(spec))
    monkeypatch.setattr(p3, "policy", dataclasses.replace(p3.policy, columns=("value",)))
    with pytest.raises(QueryError) as info:
        await batch(cluster, [SUM] * 200 + [VECTOR], sharing="seeded")
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "p3 refused: statistic 200 of the batch (sum): column 'x,y,z' is not offered by this party" in (
        info.value.details
    )
    assert reads == []


async def test_a_batch_longer_together_than_the_parties_allow_is_refused_before_it_starts(nodes):
    cluster, _ = nodes
    wide = dict(statistic="sum", column="value", bounds=(0, 1), dimension=1 << 20)
    with pytest.raises(QueryError) as info:
        await batch(cluster, [wide, wide, wide])  # 3 x 2^20 elements; the policies allow 2^21
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "its statistics need vectors of 3145728 elements together; the parties allow at most 2097152" in (
        info.value.details
    )
