"""A party's privacy-ledger rules live in its node, the one place (the library's sessions keep no ledger): a seeded
session reserves at accept and charges its reservation before its partial sum leaves, a keyed one charges its loss
before its partial sum leaves, a many-party party reserves its worst case after its checks and charges it before its
masked input leaves; every change by group commit, off the event loop; a party that cannot pay refuses in its
ledger's words and holds nothing. (Aborts freeing, batches charged once: test_federation_grpc, test_mesh_batch,
test_many_party_nodes.)"""

from __future__ import annotations

import threading
import time

import pytest
import pytest_asyncio

from mpcdp.dp.ledger import PrivacyLedger
from services.analyst import QueryError
from services.party_node import PartyNode
from tests.support.federation import ledgered_cluster, until

pytestmark = pytest.mark.asyncio(loop_scope="module")

NAMES = [f"p{i}" for i in range(1, 6)]
POLICY = {"max_records": 10, "max_epsilon": 8.0}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def nodes(tmp_path_factory):
    data = {p: {"value": [1.0 + i, 2.0]} for i, p in enumerate(NAMES)}
    cluster, ledgers, state = await ledgered_cluster(tmp_path_factory, data, POLICY)
    cluster.nodes["coordinator"].coalesce = 0  # every query its own session, in the sharing asked
    yield cluster, ledgers, state
    await cluster.close()


class Applied:
    """The ledger operations each node applies (by name), each checked to run off the event loop's thread."""

    def __init__(self, ledgers: dict[str, PrivacyLedger], monkeypatch, delay: float = 0.0):
        self.ops: dict[str, list[str]] = {name: [] for name in ledgers}
        loop_thread = threading.current_thread()
        for name, ledger in ledgers.items():
            apply = ledger.apply

            def spied(ops, _apply=apply, _name=name):
                assert threading.current_thread() is not loop_thread, "a ledger change on the event loop"
                self.ops[_name].extend(type(op).__name__ for op in ops)
                time.sleep(delay)  # a slow disk
                return _apply(ops)

            monkeypatch.setattr(ledger, "apply", spied)


@pytest.mark.parametrize("sharing", ["seeded", "keyed"])
async def test_an_additive_party_charges_on_disk_before_its_partial_sum_leaves(nodes, monkeypatch, sharing):
    cluster, ledgers, _ = nodes
    parties = NAMES[:3]
    applied = Applied({p: ledgers[p] for p in parties}, monkeypatch)
    at_send: dict[str, bool] = {}
    send = PartyNode._send_partial

    async def sending(node, live, payload, prepare=None):
        at_send[node.me] = node.ledger.has_charge(live.spec.session_id.hex())
        return await send(node, live, payload, prepare)

    monkeypatch.setattr(PartyNode, "_send_partial", sending)
    async with cluster.client() as client:
        result = await client.query(
            "sum", column="value", bounds=(0, 10), epsilon=0.25, parties=parties, sharing=sharing, timeout=10.0
        )
    assert at_send == {p: True for p in parties}
    expected = ["Reserve", "ChargeReserved"] if sharing == "seeded" else ["ChargeNow"]
    for p in parties:
        assert applied.ops[p] == expected, (p, applied.ops[p])
        assert [c.label for c in ledgers[p].history()][-1] == result.session_id
        assert ledgers[p].reserved() == {}


async def test_a_many_party_party_reserves_and_charges_by_group_commit(nodes, monkeypatch):
    cluster, ledgers, _ = nodes
    applied = Applied({p: ledgers[p] for p in NAMES}, monkeypatch)
    before = {p: len(ledgers[p].history()) for p in NAMES}
    async with cluster.client() as client:
        result = await client.query("sum", column="value", bounds=(0, 10), epsilon=0.25, parties=NAMES, quorum=4)
    assert result.parties == tuple(NAMES)
    for p in NAMES:
        assert applied.ops[p] == ["Reserve", "ChargeReserved"], (p, applied.ops[p])
        assert len(ledgers[p].history()) == before[p] + 1 and ledgers[p].history()[-1].label == result.session_id
        assert ledgers[p].reserved() == {}


async def test_a_many_party_party_that_cannot_pay_refuses_in_its_ledgers_words_and_holds_nothing(nodes, monkeypatch):
    cluster, ledgers, state = nodes
    p5 = cluster.nodes["p5"]
    poor = PrivacyLedger(state / "p5-poor.db", "values", 0.1)
    monkeypatch.setattr(p5, "ledger", poor)
    with pytest.raises(QueryError) as info:
        async with cluster.client() as client:
            await client.query("sum", column="value", bounds=(0, 10), epsilon=0.25, parties=NAMES, quorum=5)
    assert "p5 refused: privacy budget exceeded" in info.value.details, info.value.details
    await until(lambda: all(not ledgers[p].reserved() for p in [*NAMES[:4], "coordinator"]))
    assert poor.reserved() == {} and poor.history() == []


async def test_when_the_analyst_hears_of_an_abort_every_reservation_is_already_free(nodes, monkeypatch):
    """p3 cannot pay, so the coordinator aborts a seeded session that p1 and p2 had reserved for: they confirm the
    abort once their frees are applied, and the coordinator frees its own before it replies, so that the next query
    finds every budget free (with slow disks the frees came after the analyst heard: a flake at load)."""
    cluster, ledgers, state = nodes
    parties = NAMES[:3]
    monkeypatch.setattr(cluster.nodes["p3"], "ledger", PrivacyLedger(state / "p3-poor.db", "values", 0.1))
    Applied({n: ledgers[n] for n in ["p1", "p2", "coordinator"]}, monkeypatch, delay=0.3)
    with pytest.raises(QueryError) as info:
        async with cluster.client() as client:
            await client.query(
                "sum", column="value", bounds=(0, 10), epsilon=0.25, parties=parties, sharing="seeded", timeout=10.0
            )
    assert "p3 refused: privacy budget exceeded" in info.value.details, info.value.details
    assert {n: ledgers[n].reserved() for n in ["p1", "p2", "coordinator"]} == {"p1": {}, "p2": {}, "coordinator": {}}
