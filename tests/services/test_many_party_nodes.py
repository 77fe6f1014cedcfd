"""The many-party protocol between real party and coordinator nodes (TLS gRPC servers in this process, each
with its own links, ledger and policy): parties killed at every phase, below the quorum, impersonation on
the links, a late masked input. One cluster of 20 parties serves the module; each test names the parties
it asks (a killed party stays dead)."""

from __future__ import annotations

import asyncio
import math
import sys

import grpc
import pytest
import pytest_asyncio

from mpcdp.protocol import QuerySpec
from mpcdp.protocol.masked import MaskedQuery
from mpcdp.protocol.quorum import survivor_loss
from services import many_party
from services.analyst import QueryError
from services.link import LinkError
from tests.support.federation import federation_file, ledgered_cluster, ledgers_applied

pytestmark = pytest.mark.asyncio(loop_scope="module")

NAMES = [f"p{i:02d}" for i in range(1, 21)]
VALUES = {p: 100.0 + 7 * i for i, p in enumerate(NAMES)}
TIMEOUT = 20.0  # seconds: a round waits at most an eighth of what is left (~2.5 s) for a party that went quiet.
# Only the tests where a party goes quiet with its links up wait for round timers (a killed party's links break,
# and rounds stop waiting for it at once; everyone else answering closes a round at once), so a timer this long
# costs those few tests only, and leaves a loaded machine's stalls (load 20) far from dropping an honest party.
POLICY = {"allow_exact": True, "max_records": 10, "max_epsilon": 8.0, "epsilon_budget": 50.0}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def nodes(tmp_path_factory):
    cluster, ledgers, _ = await ledgered_cluster(
        tmp_path_factory, {p: {"value": [v]} for p, v in VALUES.items()}, POLICY
    )
    yield cluster, ledgers
    await cluster.close()


async def ask(cluster, parties, quorum, epsilon=None):
    return await cluster.query(
        "sum", column="value", bounds=(0, 1000), parties=parties, quorum=quorum, epsilon=epsilon, timeout=TIMEOUT
    )


class Fault:
    """Makes a party node misbehave at one of its many-party messages (by its link kind): ``kill`` cuts the
    node off (its server stops, its links close) after the message was written (``after``) or instead of
    sending it; ``silence`` sends neither it nor any later many-party message, the links staying up (a hung
    party: only the round timers notice); ``delay`` sends it that many seconds late, or (``until``) once the
    party sends a message of the kind ``until``; ``rewrite`` changes every message before it goes."""

    def __init__(self, cluster, party, kind, action, after=False, delay=0.0, rewrite=None, until=None):
        self.cluster, self.party, self.kind, self.action = cluster, party, kind, action
        self.after, self.delay, self.rewrite, self.until = after, delay, rewrite, until
        self.sent_until = asyncio.Event()
        self.node = cluster.nodes[party]
        self.dead = False
        self._post = self.node.link.post
        self.node.link.post = self.post
        self.fired = asyncio.Event()

    def post(self, peer, session, round, kind, payload):
        if self.dead:
            raise LinkError(peer, "the node was killed")
        if self.rewrite is not None and kind.startswith("many/") and kind != many_party.PROPOSE:
            payload = many_party.encode(self.rewrite(many_party.decode(bytes(payload))))
        if kind == self.kind:
            self.fired.set()
        if kind == self.until:
            self.sent_until.set()
        if self.action == "silence" and self.fired.is_set():
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        if kind != self.kind:
            return self._post(peer, session, round, kind, payload)
        done = asyncio.get_running_loop().create_future()
        self.acting = asyncio.ensure_future(self._act(done, peer, session, round, kind, payload))
        return done

    async def _act(self, done, peer, session, round, kind, payload):
        if self.action == "delay":
            await (self.sent_until.wait() if self.until else asyncio.sleep(self.delay))
        if self.action == "delay" or self.after:
            await self._post(peer, session, round, kind, payload)
        if self.action == "kill":
            await self.kill()
        done.set_result(None)

    async def kill(self):
        if not self.dead:
            self.dead = True
            await self.cluster.servers[self.party].stop(None)
            await self.node.link.close()


async def test_everyone_counted_when_nobody_drops(nodes):
    cluster, _ = nodes
    parties = NAMES[:5]
    result = await ask(cluster, parties, quorum=4)
    assert result.value == sum(VALUES[p] for p in parties)
    assert result.parties == tuple(parties) and result.dropped == () and result.quorum == 4
    assert "counted 5 of 5 parties (quorum 4)" in result.to_text()


async def test_concurrent_quorum_queries_share_the_links(nodes):
    cluster, _ = nodes
    first, second = await asyncio.gather(ask(cluster, NAMES[:5], quorum=4), ask(cluster, NAMES[1:5], quorum=3))
    assert first.value == sum(VALUES[p] for p in NAMES[:5]) and first.dropped == ()
    assert second.value == sum(VALUES[p] for p in NAMES[1:5]) and second.dropped == ()


async def test_parties_killed_at_every_phase_the_release_is_the_sum_of_the_counted(nodes):
    """p06 dies after accepting, p07 after sending its keys (before reporting), p08 once rostered (before its
    masked input), p09 after its masked input (counted: its neighbours reveal its self-mask seed), p10 as it
    reveals (counted). The release is exactly the sum over the parties it names."""
    cluster, _ = nodes
    parties = NAMES[:10]
    faults = [
        Fault(cluster, "p06", "many/answer", "kill", after=True),
        Fault(cluster, "p07", "many/report", "kill"),
        Fault(cluster, "p08", "many/masked", "kill"),
        Fault(cluster, "p09", "many/masked", "kill", after=True),
        Fault(cluster, "p10", "many/reveal", "kill"),
    ]
    result = await ask(cluster, parties, quorum=5)
    assert [f.party for f in faults if not f.fired.is_set()] == [], result
    counted = [p for p in parties if p not in ("p06", "p07", "p08")]
    assert result.parties == tuple(counted) and result.dropped == ("p06", "p07", "p08")
    assert result.value == sum(VALUES[p] for p in counted)
    assert "dropped: p06, p07, p08" in result.to_text()


async def test_below_the_quorum_the_query_aborts_and_every_reservation_is_freed(nodes):
    cluster, ledgers = nodes
    parties = NAMES[10:14]
    Fault(cluster, "p14", "many/answer", "kill", after=True)
    with pytest.raises(QueryError) as info:
        await ask(cluster, parties, quorum=4, epsilon=1.0)
    assert info.value.code == grpc.StatusCode.ABORTED
    assert "only 3 of 4 parties exchanged keys with their neighbours; the query's quorum is 4" in info.value.details
    for _ in range(100):  # the parties free their reservations as the coordinator's abort reaches them
        if not any(ledgers[p].reserved() for p in [*parties[:3], "coordinator"]):
            break
        await asyncio.sleep(0.05)
    for name in [*parties[:3], "coordinator"]:
        assert ledgers[name].reserved() == {} and ledgers[name].spent().epsilon == 0, name


async def test_a_dp_release_restates_epsilon_for_the_counted_and_charges_the_worst_case(nodes):
    cluster, ledgers = nodes
    parties = [*NAMES[10:13], "p15", "p16"]
    Fault(cluster, "p16", "many/report", "kill")
    result = await ask(cluster, parties, quorum=4, epsilon=1.0)
    assert result.parties == (*NAMES[10:13], "p15") and result.dropped == ("p16",)
    spec = QuerySpec("sum", tuple(parties), bounds=(0, 1000), epsilon=1.0, max_records=10)
    restated = survivor_loss(spec, 4).epsilon_delta(spec.delta)[0]
    assert result.epsilon > 1.0 and math.isclose(result.epsilon, restated)
    worst = MaskedQuery.of(spec, 4).charge.epsilon_delta()[0]
    for name in [*result.parties, "coordinator"]:
        assert math.isclose(ledgers[name].spent().epsilon, worst) and ledgers[name].reserved() == {}, name
    error = abs(result.value - sum(VALUES[p] for p in result.parties))
    assert error < 10 * result.noise_std["sum"]  # noise, not a mask left in (that would be ~2^64 / 2^16 off)


async def test_a_party_impersonating_another_is_refused(nodes):
    """p17 signs every many-party message it sends with p18's name (its answer, keys, report, masked
    input, reveal). The coordinator and the other parties go by the link's certificate, so all of it is
    dropped: p17 counts as dropped, p18 (honest) is counted once, with its own input only."""
    cluster, _ = nodes
    parties = NAMES[16:20]

    def as_p18(msg):
        fields = {"party": "p18"} if hasattr(msg, "party") else {"sender": "p18"} if hasattr(msg, "sender") else {}
        return type(msg)(**{**msg.__dict__, **fields})

    Fault(cluster, "p17", "none", "none", rewrite=as_p18)
    result = await ask(cluster, parties, quorum=3)
    assert result.parties == ("p18", "p19", "p20") and result.dropped == ("p17",)
    assert result.value == sum(VALUES[p] for p in result.parties)


async def test_a_hung_party_only_makes_the_rounds_wait_for_their_timers(nodes):
    """p20 answers and then sends nothing, its links staying up: the parties report when their round timer
    runs out, the coordinator closes the key round on its timer, and the release leaves p20 out."""
    cluster, _ = nodes
    parties = ["p18", "p19", "p20", "p01", "p02"]
    Fault(cluster, "p20", "many/keys", "silence")
    started = asyncio.get_running_loop().time()
    result = await ask(cluster, parties, quorum=4)
    assert result.parties == ("p18", "p19", "p01", "p02") and result.dropped == ("p20",)
    assert result.value == sum(VALUES[p] for p in result.parties)
    assert asyncio.get_running_loop().time() - started < TIMEOUT  # a few round timers of ~TIMEOUT / 8


async def test_a_late_masked_input_is_not_added(nodes):
    """p15's masked input leaves after the round closed (held until p15 has the unmask request and sends its
    reveal: after the cut, however loaded the machine): the coordinator refuses it and releases the sum of the
    others; p15 still helps unmask them."""
    cluster, _ = nodes
    parties = [*NAMES[:5], "p15"]
    Fault(cluster, "p15", "many/masked", "delay", until="many/reveal")
    result = await ask(cluster, parties, quorum=5)
    assert result.parties == tuple(NAMES[:5]) and result.dropped == ("p15",)
    assert result.value == sum(VALUES[p] for p in NAMES[:5])


async def test_parties_refuse_a_quorum_whose_worst_case_epsilon_exceeds_their_maximum(nodes):
    """epsilon 1 with a quorum of 3 of 5: counted alone, their three noise pieces give far more than the parties'
    max_epsilon of 8, which is what each party would be charged: every party refuses, nothing is reserved."""
    cluster, ledgers = nodes
    with pytest.raises(QueryError) as info:
        await ask(cluster, NAMES[:5], quorum=3, epsilon=1.0)
    assert info.value.code == grpc.StatusCode.ABORTED
    assert "p01 refused: epsilon" in info.value.details
    assert "if only the quorum of 3 is counted exceeds this party's per-query maximum 8" in info.value.details
    assert all(ledgers[p].reserved() == {} for p in NAMES[:5])


async def test_a_quorum_no_graph_can_keep_is_refused_before_anyone_is_asked(nodes):
    cluster, _ = nodes
    with pytest.raises(QueryError) as info:
        await ask(cluster, NAMES[:3], quorum=1)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "quorum" in info.value.details


async def test_a_quorum_on_a_comparison_is_refused_by_the_client(nodes):
    cluster, _ = nodes
    with pytest.raises(QueryError) as info:
        await cluster.query("max", column="value", parties=NAMES[:3], quorum=3)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "under MPC" in info.value.details


async def test_mpcdp_query_quorum_prints_the_counted_parties(nodes, tmp_path):
    import json

    cluster, _ = nodes
    path = federation_file(cluster.federation, tmp_path / "federation.toml")
    parties = ",".join(NAMES[:4])
    args = ["--federation", str(path), "--statistic", "sum", "--column", "value", "--bounds", "0,1000"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "query",
        *args,
        "--parties",
        parties,
        "--quorum",
        "3",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    doc = json.loads(out)
    assert doc["parties"] == NAMES[:4] and doc["dropped"] == [] and doc["quorum"] == 3
    assert doc["result"]["sum"] == sum(VALUES[p] for p in NAMES[:4])


async def test_a_coordinator_failure_aborts_the_parties_and_tells_the_analyst_plainly(nodes, monkeypatch):
    """Any failure inside the coordinator's session (here a bug when closing the key round), not only a
    ProtocolError: every party is told to abort (and frees its reservation at once, not at the deadline), and
    the analyst gets ABORTED with words, not a Python exception's name."""
    from mpcdp.protocol.masked import MaskedCoordinator

    def broken(self):
        raise RuntimeError("a bug in the coordinator")

    monkeypatch.setattr(MaskedCoordinator, "rosters", broken)
    cluster, ledgers = nodes
    parties = NAMES[:5]
    started = asyncio.get_running_loop().time()
    with pytest.raises(QueryError) as info:
        await ask(cluster, parties, quorum=4, epsilon=1.0)
    assert info.value.code == grpc.StatusCode.ABORTED, info.value.details
    assert "RuntimeError" not in info.value.details and "session aborted" in info.value.details
    for _ in range(100):  # the abort reaches the parties: their reservations go long before the deadline
        if not any(ledgers[p].reserved() for p in [*parties, "coordinator"]):
            break
        await asyncio.sleep(0.05)
    assert all(ledgers[p].reserved() == {} for p in [*parties, "coordinator"])
    assert asyncio.get_running_loop().time() - started < TIMEOUT / 2


async def test_a_party_whose_link_to_the_coordinator_breaks_aborts_and_frees_its_reservation(nodes):
    """p11's link to the coordinator breaks (its Hub reports the drop) as it sends its keys: nothing it sends can
    reach the coordinator any more, so it aborts its session at once and frees its reservation, instead of
    holding it to the deadline; the others are counted without it."""
    from services.link import LinkError

    cluster, ledgers = nodes
    parties = [*NAMES[:3], "p11", "p12"]
    node = cluster.nodes["p11"]
    post = node.link.post

    def breaking(peer, session, round, kind, payload):
        if kind == "many/keys":
            node.link.post = post
            many_party._router(node.link)._dropped("coordinator", LinkError("coordinator", "the link broke"))
        return post(peer, session, round, kind, payload)

    node.link.post = breaking
    spent = ledgers["p11"].spent().epsilon
    result = await ask(cluster, parties, quorum=4, epsilon=1.0)
    assert result.dropped == ("p11",) and "p11" not in result.parties
    await ledgers_applied(cluster, ["p11"])  # its session ended and the free it queued applied
    assert ledgers["p11"].reserved() == {} and ledgers["p11"].spent().epsilon == spent  # well before the deadline
