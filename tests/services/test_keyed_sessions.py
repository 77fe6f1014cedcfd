"""Keyed sessions on real TLS nodes: one message each way, pair keys agreed once per link and only between
parties, a pair key mismatch aborting naming the pair, fresh keys after a link drop, replays refused."""

from __future__ import annotations

import asyncio
import collections

import grpc
import pytest
import pytest_asyncio

from services import audit, convert, sessions
from services.link import LinkError
from services.pair_keys import HELLO, TAG, PairKey, PairKeyError
from services.party_node import PartyNode
from services.wire.mpcdp.v1 import federation_pb2 as pb
from tests.support.federation import MEAN, RAISES, Speaker, expect_error, make_cluster, session_spec, until


def parties(cluster) -> dict[str, PartyNode]:
    return {name: node for name, node in cluster.nodes.items() if isinstance(node, PartyNode)}


def count_posts(cluster) -> collections.Counter:
    """(sender, recipient, kind) of every message the nodes post from now on."""
    posted: collections.Counter = collections.Counter()
    for name, node in cluster.nodes.items():
        real = node.link.post
        node.link.post = lambda peer, sid, rnd, kind, *a, _real=real, _name=name, **kw: (
            posted.update([(_name, peer, kind)]),
            _real(peer, sid, rnd, kind, *a, **kw),
        )[1]
    return posted


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(certs):
    c = await make_cluster(certs)
    yield c
    await c.close()


async def test_a_keyed_query_is_one_message_each_way_and_concurrent_first_sessions_share_one_agreement(certs):
    data = {p: {"raise": [v, i]} for i, (p, v) in enumerate(RAISES.items())}
    c = await make_cluster(certs, data=data)
    c.nodes["coordinator"].coalesce = 0  # eight sessions, not run together (test_coalesce.py)
    try:
        posted = count_posts(c)
        async with c.client() as analyst:
            first = await asyncio.gather(
                *(analyst.query("sum", column="raise", bounds=(0, 10_000)) for _ in range(8))
            )  # eight first sessions at once: each pair agrees one key
        truth = sum(v for d in data.values() for v in d["raise"])
        assert [r.value for r in first] == [truth] * 8
        names = list(RAISES)
        for p in names:
            assert sorted(peer for (s, peer, kind) in posted if s == p and kind == HELLO) == sorted(
                q for q in names if q != p
            )
            assert posted[(p, "coordinator", sessions.PARTIAL)] == 8
        kinds = {kind for (_, _, kind) in posted}
        assert kinds == {HELLO, sessions.PROPOSE, sessions.PARTIAL}, kinds  # no ANSWER, START or SHARE
        nodes = parties(c)
        for a in names:
            for b in names:
                if a != b:  # both ends hold the same key
                    assert nodes[a].pair_keys.known(b) == nodes[b].pair_keys.known(a) is not None
        posted.clear()
        async with c.client() as analyst:
            again = await analyst.query("sum", column="raise", bounds=(0, 10_000))
        assert again.value == truth
        assert {kind for (_, _, kind) in posted} == {sessions.PROPOSE, sessions.PARTIAL}  # keys reused
    finally:
        await c.close()


async def test_a_pair_key_mismatch_aborts_naming_the_pair_and_the_next_query_runs(cluster):
    assert (await cluster.query()).value == pytest.approx(MEAN, abs=1e-3)
    alice = parties(cluster)["alice"]
    held = alice.pair_keys.known("bob")
    alice.pair_keys._keys["bob"] = PairKey(b"x" * 32, b"stale-id")  # as if alice re-agreed and bob did not
    await expect_error(cluster, grpc.StatusCode.ABORTED, "alice and bob masked with different pair keys")
    alice.pair_keys._keys["bob"] = held
    assert (await cluster.query()).value == pytest.approx(MEAN, abs=1e-3)


async def test_the_keys_differ_after_a_link_drops_and_the_next_query_agrees_new_ones(cluster):
    assert (await cluster.query()).value == pytest.approx(MEAN, abs=1e-3)
    nodes = parties(cluster)
    before = {p: nodes["bob"].pair_keys.known(p) for p in ("alice", "carol", "dave")}
    await nodes["bob"].close()  # every link of bob breaks and its keys are gone, as when its process dies
    await until(lambda: all(nodes[p].pair_keys.known("bob") is None for p in before))
    assert all(nodes["bob"].pair_keys.known(p) is None for p in before)
    assert (await cluster.query()).value == pytest.approx(MEAN, abs=1e-3)
    for p, old in before.items():
        new = nodes["bob"].pair_keys.known(p)
        assert new == nodes[p].pair_keys.known("bob") and new.id != old.id and new.secret != old.secret


async def test_only_parties_of_the_federation_obtain_a_pair_key(cluster, monkeypatch):
    events = []
    real = audit.record
    monkeypatch.setattr(audit, "record", lambda event, **f: (events.append((event, f)), real(event, **f)))
    alice = parties(cluster)["alice"]
    public = bytes(range(1, 33))
    coordinator = Speaker(cluster)  # allowed to link to a party, but not a party
    try:
        await coordinator.hub.send("alice", TAG, 0, HELLO, public)
        with pytest.raises(TimeoutError):  # no hello comes back
            await coordinator.hub.receive("alice", TAG, 0, HELLO, timeout=0.5)
    finally:
        await coordinator.close()
    assert alice.pair_keys.known("coordinator") is None
    assert ("denied", {"caller": "coordinator", "message": "a pair key offered by a node that is not a party"}) in (
        events
    )
    mallory = Speaker(cluster, "mallory")  # a valid certificate, not in the federation: no link at all
    try:
        with pytest.raises(LinkError, match="PERMISSION_DENIED"):  # the link is refused, nothing comes back
            await mallory.hub.send("alice", TAG, 0, HELLO, public)
            await mallory.hub.receive("alice", TAG, 0, HELLO, timeout=5)
    finally:
        await mallory.close()
    assert alice.pair_keys.known("mallory") is None
    with pytest.raises(PairKeyError, match="not a party"):
        await alice.pair_keys.keys(["coordinator"], timeout=1.0)


async def test_a_keyed_session_is_answered_by_partial_sums_and_its_id_is_refused_again_after_a_restart(certs, tmp_path):
    from services.ledgers import SessionLog

    def durable(f, name, table, identity, **kw):
        return PartyNode(f, name, table, identity, sessions=SessionLog(tmp_path / f"{name}.sessions"), **kw)

    spec = session_spec("keyed", session_id=b"k" * 16)
    propose = pb.Propose(spec=convert.spec_to_proto(spec), start=True).SerializeToString()
    c = await make_cluster(certs, party_cls=durable)
    try:
        coordinator = Speaker(c)
        for p in spec.parties:
            await coordinator.hub.send(p, spec.session_id, 0, sessions.PROPOSE, propose)
        for p in spec.parties:  # each party's answer is its partial sum, with its pair key ids
            partial = await coordinator.hub.receive(p, spec.session_id, 0, sessions.PARTIAL, timeout=10)
            assert len(partial) == 8 * 2 + 8 * 3  # mean: sum and count, then one key id per peer
        replay = await coordinator.propose("bob", spec)  # the same id again, without a restart
        assert not replay.accepted and replay.status == pb.REFUSAL_STATUS_ALREADY_EXISTS
        await coordinator.close()
    finally:
        await c.close()
    restarted = await make_cluster(certs, party_cls=durable)
    try:
        coordinator = Speaker(restarted)
        for p in spec.parties:
            replay = await coordinator.propose(p, spec, start=True)
            assert not replay.accepted and replay.status == pb.REFUSAL_STATUS_ALREADY_EXISTS, p
        await coordinator.close()
        assert (await restarted.query()).value == pytest.approx(MEAN, abs=1e-3)
    finally:
        await restarted.close()


async def _keyed_partials(speaker, spec, who) -> dict:
    """Propose a keyed ``spec`` to ``who`` as the coordinator; each party's partial sum's ring elements."""
    import numpy as np

    propose = pb.Propose(spec=convert.spec_to_proto(spec), start=True).SerializeToString()
    for p in who:
        await speaker.hub.send(p, spec.session_id, 0, sessions.PROPOSE, propose)
    out = {}
    for p in who:
        raw = await speaker.hub.receive(p, spec.session_id, 0, sessions.PARTIAL, timeout=10)
        out[p] = np.frombuffer(bytes(raw), dtype="<u8")[: spec.codec.length].copy()
    return out


async def test_a_keyed_session_id_is_remembered_until_its_deadline_and_a_later_replay_has_unrelated_masks(
    certs, monkeypatch
):
    """The reviewer's attack: with the record of closed ids trimmed by count (here after one), the same id with a
    fresh deadline was accepted under the same pair keys, and the difference of alice's two partial sums was her
    raise. Now an id is kept while its deadline is ahead (replay refused), and once it passed a replay with a new
    deadline is another spec, masked with unrelated streams."""
    import time

    import numpy as np

    from services import party_node

    monkeypatch.setattr(party_node, "CLOSED_REMEMBERED", 1)  # stands for 100,000 sessions later
    c = await make_cluster(certs)
    coordinator = Speaker(c)  # an honest-but-curious coordinator keeping what it receives
    try:
        sid = b"r" * 16
        first = await _keyed_partials(coordinator, session_spec("keyed", session_id=sid), RAISES)
        await _keyed_partials(coordinator, session_spec("keyed", session_id=b"o" * 16), RAISES)
        replay = session_spec("keyed", session_id=sid, bounds=(0, 1), deadline=time.time() + 60)
        answer = await coordinator.propose("alice", replay, start=True)
        assert not answer.accepted and answer.status == pb.REFUSAL_STATUS_ALREADY_EXISTS
        alice = parties(c)["alice"]
        assert alice._used(sid)
        later = time.time() + 300  # the first session's deadline (60 s) and the slack have passed on alice's clock
        alice._clock = lambda: time.time() + 300
        await _keyed_partials(coordinator, session_spec("keyed", session_id=b"p" * 16, deadline=later + 60), ["alice"])
        assert not alice._used(sid)  # forgotten now: its own deadline check refuses a replay as it was
        again = session_spec("keyed", session_id=sid, bounds=(0, 1), deadline=later + 60)
        second = await _keyed_partials(coordinator, again, ["alice"])
        leaked = np.array([(RAISES["alice"] - 1) << 16, 0], dtype=np.uint64)  # what equal masks would leave
        assert not np.array_equal(np.subtract(first["alice"], second["alice"]), leaked)
    finally:
        await coordinator.close()
        await c.close()


async def test_quiet_party_links_keep_their_pair_keys_under_the_idle_stream_watchdog(certs):
    """Keyed sessions send nothing on the party links; the servers' idle watchdog closed them (1 s here), the keys
    were forgotten at different moments at the two ends, and sessions in flight aborted with a key mismatch (the
    reviewer's repro). A link that spoke is now left open: no abort, no new agreement."""
    from services.node_limits import Limits

    c = await make_cluster(certs, limits=Limits(idle_timeout=1.0))
    try:
        await c.query()
        posted = count_posts(c)
        loop = asyncio.get_running_loop()
        end = loop.time() + 3.0
        outcomes: collections.Counter = collections.Counter()
        while loop.time() < end:  # queries keep flowing; the party links carry only keepalives
            for r in await asyncio.gather(*(c.query() for _ in range(8)), return_exceptions=True):
                outcomes["ok" if not isinstance(r, BaseException) else str(r)[:120]] += 1
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # and quiet for longer than the idle timeout
        assert (await c.query()).value == pytest.approx(MEAN, abs=1e-3)
        assert set(outcomes) == {"ok"}, dict(outcomes)
        assert not [k for k in posted if k[2] == HELLO], "a key was agreed again"
    finally:
        await c.close()


class FakeHub:
    """Two hub ends whose messages wait in ``wire`` until the test delivers them (the reviewer's harness)."""

    def __init__(self, me, wire):
        self.me, self.wire, self.handlers, self.drops = me, wire, {}, []

    def on(self, kind, handler):
        self.handlers[kind] = handler

    def on_drop(self, callback):
        self.drops.append(callback)

    def post(self, peer, sid, rnd, kind, payload):
        self.wire.append((self.me, peer, sid, rnd, kind, bytes(payload)))
        sent = asyncio.get_running_loop().create_future()
        sent.set_result(None)
        return sent


def fake_pair(wire):
    from mpcdp.prg import Prg
    from services.pair_keys import PairKeys

    hubs = {n: FakeHub(n, wire) for n in ("alice", "bob")}
    keys = {n: PairKeys(h, lambda who: who in hubs, Prg.from_int(i, "k")) for i, (n, h) in enumerate(hubs.items())}

    def deliver(msg):
        sender, peer, sid, rnd, kind, payload = msg
        hubs[peer].handlers[kind](sender, sid, rnd, memoryview(payload))

    return hubs, keys, deliver


async def test_a_stale_hello_does_not_start_an_endless_exchange_and_both_ends_agree():
    """Crossing starts, then bob's end drops before alice's start reaches it: before, every hello arriving while
    none was pending was answered, so the two answered each other for ever. A hello now says start or answer and
    an answer echoes the start it answers; an answer to nothing pending is dropped (or, answering the start of the
    current key, replaces it)."""
    wire = []
    hubs, keys, deliver = fake_pair(wire)
    a = asyncio.ensure_future(keys["alice"].keys(["bob"], 5))
    b = asyncio.ensure_future(keys["bob"].keys(["alice"], 5))
    await asyncio.sleep(0)
    hello_a, hello_b = wire.pop(0), wire.pop(0)
    deliver(hello_b)  # alice completes with bob's start
    await asyncio.wait_for(a, 1)
    for callback in hubs["bob"].drops:  # bob's streams drop (and come back) before alice's start reaches it
        callback("alice", LinkError("alice", "the link dropped"))
    with pytest.raises(PairKeyError):
        await asyncio.wait_for(b, 1)
    deliver(hello_a)  # delivered on bob's new stream: bob answers it
    exchanged = 0
    while wire and exchanged < 100:
        deliver(wire.pop(0))
        exchanged += 1
    assert exchanged <= 1
    assert keys["alice"].known("bob") == keys["bob"].known("alice") is not None


async def test_an_answer_arriving_after_its_start_was_dropped_leaves_no_key_on_one_end_only():
    """The flake of the Dropping-keyed faulty-party test: alice's start reaches bob, which answers (bob holds the
    key), but alice's link drops (failing her agreement) before the answer, which comes on the new stream, is
    read. Before, alice dropped that answer as stale: bob kept a key alice did not have, bob's next session
    masked with it at once while alice agreed a new one, and the session aborted on a key id mismatch."""
    wire = []
    hubs, keys, deliver = fake_pair(wire)
    a = asyncio.ensure_future(keys["alice"].keys(["bob"], 5))
    await asyncio.sleep(0)
    deliver(wire.pop(0))  # alice's start: bob answers and holds the key
    assert keys["bob"].known("alice") is not None
    for callback in hubs["alice"].drops:  # alice's end of the link drops before she reads the answer
        callback("bob", LinkError("bob", "the link dropped"))
    with pytest.raises(PairKeyError):
        await asyncio.wait_for(a, 1)
    exchanged = 0
    while wire and exchanged < 100:  # the answer arrives on the new stream, and what it sets off
        deliver(wire.pop(0))
        exchanged += 1
    assert exchanged <= 3
    assert keys["alice"].known("bob") == keys["bob"].known("alice") is not None
    got = await asyncio.gather(keys["alice"].keys(["bob"], 1), keys["bob"].keys(["alice"], 1))
    assert got[0]["bob"].id == got[1]["alice"].id and not wire, "both ends mask with the same key, no new hello"


async def test_an_agreement_whose_answer_never_came_is_given_up_and_the_next_session_starts_again():
    wire = []
    _, keys, _ = fake_pair(wire)
    with pytest.raises(PairKeyError, match="in time"):
        await keys["alice"].keys(["bob"], 0.05)
    wire.clear()  # alice's start reached bob, whose answer was lost
    with pytest.raises(PairKeyError, match="in time"):
        await keys["alice"].keys(["bob"], 0.05)
    assert [m[4] for m in wire] == [HELLO], "the second session sent no new start"


async def test_a_flood_of_hellos_costs_a_bounded_number_of_agreements_and_honest_ones_still_agree(monkeypatch):
    """Review M7: each hello a peer starts costs an X25519 key pair, an exchange and an answer, and replaces the
    key. 1,000 starts from alice (fresh public keys, as a flooding party would send) make bob answer at most
    PEER_HELLO_BURST of them at one instant, and one more per 1 / PEER_HELLOS_PER_SECOND; a real agreement
    afterwards still completes (an answer to bob's own start is never limited)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from services import pair_keys as module
    from services.pair_keys import ANSWER, PEER_HELLO_BURST, PEER_HELLOS_PER_SECOND, START, _public

    derived = collections.Counter()
    real_derive = module.derive
    monkeypatch.setattr(module, "derive", lambda me, *a: (derived.update([me]), real_derive(me, *a))[1])
    wire = []
    _, keys, deliver = fake_pair(wire)
    now = [0.0]
    keys["bob"]._clock = lambda: now[0]
    flood = [("alice", "bob", TAG, 0, HELLO, START + _public(X25519PrivateKey.generate())) for _ in range(1000)]
    for hello in flood:
        deliver(hello)
    answers = [m for m in wire if m[0] == "bob" and m[5][:1] == ANSWER]
    assert len(answers) == derived["bob"] == PEER_HELLO_BURST
    now[0] += 3 / PEER_HELLOS_PER_SECOND  # three seconds later: three more, however many were sent
    for hello in flood:
        deliver(hello)
    assert derived["bob"] == PEER_HELLO_BURST + 3
    assert all(deliver(hello) is None for hello in flood) and derived["bob"] == PEER_HELLO_BURST + 3  # no refill
    wire.clear()
    keys["bob"]._dropped("alice", LinkError("alice", "the link dropped"))
    bob = asyncio.ensure_future(keys["bob"].keys(["alice"], 5))  # bob starts: alice's answer is not limited
    await asyncio.sleep(0)
    deliver(wire.pop(0))  # bob's start reaches alice, who answers
    deliver(wire.pop(0))
    assert (await asyncio.wait_for(bob, 1))["alice"] == keys["alice"].known("bob")


async def test_a_party_that_refuses_costs_the_others_at_most_one_keyed_query(certs, tmp_path):
    """A keyed partial sum is charged as it leaves, so a party that refuses (carol: her budget is spent) would
    make every query cost the others epsilon with nothing released (the reviewer's repro: 4.0 each after five).
    The coordinator now runs seeded sessions for a party that refused a keyed one, and for any party whose
    policy in the federation file refuses the query: at most the first query costs the others."""
    from mpcdp.dp.ledger import PrivacyLedger
    from mpcdp.protocol import PartyPolicy
    from services.federation import Policy

    ledgers = {
        name: PrivacyLedger(tmp_path / f"{name}.db", "raises", 0.5 if name == "carol" else 10.0)
        for name in ["coordinator", *RAISES]
    }
    c = await make_cluster(certs, ledgers=ledgers)
    try:
        for _ in range(5):
            await expect_error(c, grpc.StatusCode.RESOURCE_EXHAUSTED, "carol", epsilon=1.0)
        spent = {n: float(ledger.spent().epsilon) for n, ledger in ledgers.items()}
        assert spent["coordinator"] == spent["carol"] == 0.0
        assert all(spent[p] <= 1.0 for p in ("alice", "bob", "dave")), spent
        # a policy the federation file states (carol offers no "raise" column) is seen before any proposal
        coordinator, carol = c.nodes["coordinator"], c.nodes["carol"]
        coordinator._refused.clear()
        nodes = tuple(
            n.model_copy(update={"policy": Policy(columns=("other",))}) if n.name == "carol" else n
            for n in c.federation.nodes
        )
        coordinator.federation = c.federation.model_copy(update={"nodes": nodes})
        carol.policy = PartyPolicy(allow_exact=True, columns=("other",))
        await expect_error(c, grpc.StatusCode.PERMISSION_DENIED, "carol", "column", epsilon=1.0)
        assert {n: float(ledger.spent().epsilon) for n, ledger in ledgers.items()} == spent
    finally:
        await c.close()


async def test_a_keyed_query_run_seeded_says_so_in_its_release_and_why(certs, cluster):
    """The coordinator runs a keyed query seeded where a party's policy waits for every acceptance (review M5):
    the release, its JSON and its text say which sharing ran and why; a query run as asked adds no line."""
    import json

    c = await make_cluster(certs, policy={"allow_exact": True, "max_records": 100, "one_round": False})
    try:
        fell = await c.query(sharing="keyed")
        assert fell.sharing == "seeded"
        assert (
            fell.sharing_note == "alice's policy sends no partial sum before every party accepted (one_round = false)"
        )
        assert f"sharing: seeded instead of keyed ({fell.sharing_note})" in fell.to_text().splitlines()
        assert json.loads(fell.to_json())["sharing_note"] == fell.sharing_note
        seeded = await c.query(sharing="seeded")
        assert (seeded.sharing, seeded.sharing_note) == ("seeded", "")
    finally:
        await c.close()
    keyed = await cluster.query()
    assert (keyed.sharing, keyed.sharing_note) == ("keyed", "")
    assert not any(line.startswith("sharing:") for line in keyed.to_text().splitlines())
