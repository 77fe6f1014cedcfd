"""Many parties in one process (services/swarm.py): dropouts at every phase, tasks killed at random moments,
per-party bytes that do not grow with n beyond the graph's degree."""

from __future__ import annotations

import asyncio

import pytest

from mpcdp.prg import Prg
from mpcdp.protocol import QuerySpec
from mpcdp.protocol.masked import MaskedQuery
from services import many_party, swarm


def query(n: int, quorum: int, epsilon=None, seed: int = 0) -> tuple[MaskedQuery, dict]:
    parties = tuple(f"party-{i + 1}" for i in range(n))
    spec = QuerySpec("sum", parties, bounds=(0, 1000), epsilon=epsilon, session_id=seed.to_bytes(16, "big"))
    return MaskedQuery.of(spec, quorum), {p: [float(i + 1)] for i, p in enumerate(parties)}


def rng(p: str) -> Prg:
    return Prg.from_int(int(p.split("-")[1]), "party")


def run(q, data, **kw) -> swarm.SwarmRun:
    return asyncio.run(swarm.run_swarm(q, data, rng=rng, round_timeout=0.5, **kw))


def test_everyone_finishes():
    q, data = query(40, 36)
    result = run(q, data)
    assert result.release.value == sum(range(1, 41)) and len(result.release.parties) == 40
    assert result.error == "" and result.late == []


def test_a_party_stopping_at_every_phase():
    q, data = query(40, 33)
    parties = q.spec.parties
    stop = {parties[5 * i + 2]: phase for i, phase in enumerate(many_party.PHASES)}
    result = run(q, data, stop=stop)
    uncounted = {p for p, phase in stop.items() if phase != "reveal"}  # after its masked input: counted
    assert result.release.value == sum(i + 1 for i, p in enumerate(parties) if p not in uncounted)
    assert set(result.release.extras["dropped"]) == uncounted
    late = next(p for p, phase in stop.items() if phase == "late")
    assert result.late == [late]  # its masked input came after the cut and was refused


def test_below_the_quorum_the_query_aborts_with_a_reason():
    q, data = query(20, 18)
    stop = {p: "mask" for p in q.spec.parties[:3]}
    result = run(q, data, stop=stop)
    assert result.release is None and "quorum is 18" in result.error


@pytest.mark.parametrize("seed", range(3))
def test_parties_killed_at_random_moments(seed):
    """Tasks cancelled wherever they are: the release is exactly the sum over the parties it names as
    counted, or the query aborts (below the quorum, or the counted not linked by their masks); never a wrong
    answer."""
    q, data = query(60, 50, seed=seed)
    picker = Prg.from_int(seed, "kill")
    victims = [q.spec.parties[int(i) % 60] for i in picker.uint64(8)]
    when = {p: float(t % 400) / 1000 for p, t in zip(victims, picker.uint64(8), strict=True)}  # 0 - 0.4 s
    result = run(q, data, kill_after=when)
    if result.release is None:
        assert "quorum" in result.error or "do not link them all" in result.error
        return
    counted = result.release.parties
    assert result.release.value == sum(data[p][0] for p in counted)
    assert set(q.spec.parties) - set(counted) <= set(when)


def test_dp_release_names_who_was_counted_and_their_loss():
    q, data = query(30, 25, epsilon=1.0)
    stop = {"party-3": "mask", "party-4": "keys"}
    result = run(q, data, stop=stop)
    doc = swarm.report(result, q.spec, data)
    assert doc["counted"] == 28 and sorted(doc["dropped"]) == ["party-3", "party-4"]
    assert 1.0 < doc["epsilon"] <= q.charge.epsilon_delta()[0]
    assert doc["in_the_clear"] == sum(range(1, 31)) - 7
    assert "epsilon for the 28 counted parties" in swarm.to_text(doc)


def test_bytes_per_party_follow_the_degree_not_n():
    small_q, small_data = query(100, 90)
    big_q, big_data = query(300, 270)
    small, big = run(small_q, small_data), run(big_q, big_data)
    per_neighbour_small = small.party_bytes() / small_q.plan.degree
    per_neighbour_big = big.party_bytes() / big_q.plan.degree
    assert big_q.plan.degree < 1.5 * small_q.plan.degree  # 3x the parties
    assert per_neighbour_big < 1.5 * per_neighbour_small
    assert big.release.value == sum(range(1, 301))


def test_a_batch_runs_in_one_session():
    q, data = query(30, 27)
    spec = q.spec
    count = QuerySpec("count", spec.parties, max_records=2, session_id=spec.session_id)
    batched = MaskedQuery.of(spec, 27, batch=(count,))
    result = run(batched, data, batch_data={p: ([1.0, 2.0],) for p in spec.parties}, stop={"party-9": "report"})
    assert result.error == "" and [r.value for r in result.releases] == [sum(range(1, 31)) - 9, 58]


def test_parties_in_two_worker_processes_over_the_links():
    """40 parties in 2 worker processes, the coordinator here, every message between processes over the
    mutually authenticated links; one party stops before masking and is left out."""
    q, data = query(40, 36)
    stop = {"party-6": "mask"}
    result = asyncio.run(swarm.run_across_processes(q, data, workers=2, stop=stop, round_timeout=3.0))
    assert result.error == "" and result.release.value == sum(range(1, 41)) - 6
    assert result.release.extras["dropped"] == ["party-6"]
    assert 0 < result.party_bytes() < 10_000  # counted by the workers too


def test_the_wire_form_of_every_message_round_trips():
    import numpy as np

    from mpcdp.protocol.masked import KeyShares, MaskedInput, Report, Reveal, Roster, Unmask
    from mpcdp.protocol.shamir import SHARE_BYTES

    sid = b"s" * 16
    for msg in (
        KeyShares(sid, "a", "b", b"k" * 32, b"x" * SHARE_BYTES, b"y" * SHARE_BYTES),
        Report(sid, "a", b"k" * 32, b"s" * 32, ("b", "c"), b"p" * 64),
        Report(sid, "a", b"k" * 32, b"s" * 32, (), b""),
        Roster(sid, "a", ("c",)),
        Unmask(sid, "c", ("a", "b"), 10, ("d",)),
        Unmask(sid, "c", (), 10, ()),
        Reveal(sid, "a", {"b": b"x" * SHARE_BYTES}, {}),
        many_party.Answer("a", False, "refused: policy"),
        many_party.Abort("quorum"),
    ):
        assert many_party.decode(many_party.encode(msg)) == msg
    vec = np.arange(5, dtype=np.uint64) * (1 << 60)
    got = many_party.decode(many_party.encode(MaskedInput(sid, "a", vec)))
    assert np.array_equal(got.vector, vec) and got.vector.dtype == np.uint64
    with pytest.raises(ValueError):
        many_party.decode(b"\x09")
    with pytest.raises(ValueError, match="pad per name"):  # a pad missing for a name heard
        many_party.decode(many_party.encode(Report(sid, "a", b"k" * 32, b"s" * 32, ("b", "c"), b"p" * 32)))


def test_the_answer_round_waits_for_the_quorum_past_an_idle_timer():
    """(review M2) No party answers within the coordinator's first round timer (a loaded host, a fresh
    federation's first dials): the answer round keeps waiting while fewer than the quorum accepted, up to its
    share of the deadline, instead of closing empty and aborting with "only 0 of 8 parties exchanged keys"."""
    import time

    from mpcdp.protocol import PartyPolicy
    from mpcdp.protocol.masked import MaskedParty

    parties = tuple(f"party-{i + 1}" for i in range(8))
    spec = QuerySpec("sum", parties, bounds=(0, 1000), session_id=bytes(16), deadline=time.time() + 30)
    q = MaskedQuery.of(spec, 6)
    timer = 0.2

    async def main():
        net = swarm.LocalNetwork([many_party.COORDINATOR, *parties])
        coordinator = many_party.CoordinatorDriver(q, net, timer)

        async def slow_parties():
            await asyncio.sleep(3 * timer)  # nothing for three round timers
            policy = PartyPolicy(allow_exact=True)
            drivers = [
                many_party.PartyDriver(MaskedParty(p, q, [1.0], policy, rng=rng(p)), net, timer) for p in parties
            ]
            await asyncio.gather(*(d.run() for d in drivers))

        late = asyncio.ensure_future(slow_parties())
        release = await coordinator.run()
        await late
        return release

    release = asyncio.run(main())
    assert release.value == 8 and release.parties == parties


def test_a_party_task_that_fails_is_reported_not_swallowed(monkeypatch, caplog):
    """(review small finding 7) A party's task that stops on an exception (a bug, not a dropout) is read and
    logged, and the run names it; the query still completes over the others."""
    run_party = many_party.PartyDriver.run

    async def buggy(self):
        if self.me == "party-3":
            raise RuntimeError("a bug in party-3's driver")
        await run_party(self)

    monkeypatch.setattr(many_party.PartyDriver, "run", buggy)
    q, data = query(12, 10)
    with caplog.at_level("ERROR", logger="mpcdp.many"):
        result = run(q, data)
    assert result.release is not None and "party-3" in result.release.extras["dropped"]
    assert "a bug in party-3's driver" in result.failed["party-3"] and list(result.failed) == ["party-3"]
    assert any("party party-3 stopped" in r.getMessage() for r in caplog.records)
