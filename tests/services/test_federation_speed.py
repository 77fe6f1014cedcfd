"""The fast paths of the federation: one round trip, the two-round fallback, and what a refusal leaves behind."""

from __future__ import annotations

import grpc
import pytest

from services import audit
from tests.support.federation import MEAN, RAISES, expect_error, make_cluster


class Counting:
    """A party that counts the START messages it waited for before sharing."""

    waited = 0

    async def _started(self, live):
        from services.party_node import PartyNode

        type(self).waited += 1
        return await PartyNode._started(self, live)


async def test_one_round_by_default_and_two_rounds_where_a_party_policy_says_so(certs):
    from services.party_node import PartyNode

    for one_round, rounds in ((True, 0), (False, 4)):
        cls = type("Counted", (Counting, PartyNode), {"waited": 0})
        policy = {"allow_exact": True, "max_records": 100, "one_round": one_round}
        c = await make_cluster(certs, policy=policy, party_cls=cls)
        try:
            assert (await c.query()).value == pytest.approx(MEAN, abs=1e-3)
            assert cls.waited == rounds  # each of the 4 parties waited for START only without one_round
        finally:
            await c.close()


async def test_a_refusal_after_others_shared_releases_nothing_and_charges_nothing(certs, tmp_path):
    """In one round, alice, bob and dave share before carol refuses: the shares they sent are random on
    their own, carol drops the ones she got, nobody's partial sum leaves (each waits for carol's share),
    and no ledger is charged."""
    from mpcdp.dp.ledger import PrivacyLedger

    ledgers = {
        name: PrivacyLedger(tmp_path / f"{name}.db", "raises", 0.5 if name == "carol" else 5.0)
        for name in ["coordinator", *RAISES]
    }
    events = []
    real = audit.record
    audit.record = lambda event, **fields: (events.append((event, fields)), real(event, **fields))
    c = await make_cluster(certs, ledgers=ledgers)
    try:
        err = await expect_error(c, grpc.StatusCode.RESOURCE_EXHAUSTED, "carol", epsilon=1.0)
        assert "budget" in err.details
        assert {n: float(ledger.spent().epsilon) for n, ledger in ledgers.items()} == {n: 0.0 for n in ledgers}
        assert not [f for e, f in events if e == "released"]  # no partial sum sent, no release
        for name in RAISES:
            assert not c.nodes[name]._live and not any(k[1] for k in c.nodes[name].link._inbox)
        r = await c.query(epsilon=1.0, parties=["alice", "bob", "dave"])  # the same nodes answer the next
        assert r.parties == ("alice", "bob", "dave")
    finally:
        audit.record = real
        await c.close()
