"""The many-party query (issue 14): sparse graph, Shamir shares, quorum, masked inputs, dropouts, attacks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mpcdp.prg import Prg
from mpcdp.protocol import PartyPolicy, ProtocolError, QuerySpec, Status, shamir
from mpcdp.protocol.graph import (
    SharingGraph,
    hypergeometric_tail,
    plan_graph,
    window_all_removed,
)
from mpcdp.protocol.masked import (
    PHASES,
    MaskedCoordinator,
    MaskedParty,
    MaskedQuery,
    commitment,
    pair_seed_from_key,
    run_masked_in_memory,
    self_purpose,
)
from mpcdp.protocol.quorum import Quorum, survivor_loss
from mpcdp.protocol.statistics import codec_for
from mpcdp.sharing import fold_masks
from tests.support.masked import accepted_with_keys, all_masked
from tests.support.shamir import rebuild

EXACT = PartyPolicy(allow_exact=True)


def names(n: int) -> tuple[str, ...]:
    return tuple(f"p{i:04d}" for i in range(n))


def seeded(p: str) -> Prg:
    return Prg.from_int(int(p[1:]) + 1, "party")


def exact_sum(n: int, quorum: int | None = None, colluders: int = 1, bounds=(0, 1000)) -> MaskedQuery:
    spec = QuerySpec("sum", names(n), bounds=bounds, colluders=colluders, session_id=bytes(range(16)))
    return MaskedQuery.of(spec, quorum)


# -- the graph and its bounds -------------------------------------------------------------------------


def test_hypergeometric_tail_is_exact():
    for population, marked, draws, at_least in [(99, 10, 22, 3), (999, 333, 102, 72), (50, 5, 10, 1)]:
        want = stats.hypergeom.sf(at_least - 1, population, marked, draws)
        assert math.isclose(2 ** hypergeometric_tail(population, marked, draws, at_least), want, rel_tol=1e-9)
    assert hypergeometric_tail(10, 2, 5, 3) == -math.inf
    assert hypergeometric_tail(10, 2, 5, 0) == 0.0


def test_window_bound_holds_empirically():
    """The union bound on a run of w removed places in a random ordering is above the observed rate."""
    n, removed, w, trials = 30, 12, 4, 4000
    rng = np.random.default_rng(7)  # the test's own sampling, not the protocol's randomness
    hits = 0
    for _ in range(trials):
        mask = np.zeros(n, dtype=bool)
        mask[rng.choice(n, removed, replace=False)] = True
        ring_ = np.concatenate([mask, mask[: w - 1]])
        hits += any(ring_[i : i + w].all() for i in range(n))
    bound = 2 ** window_all_removed(n, removed, w)
    assert hits / trials <= bound


def test_degree_grows_like_log_n():
    degrees = {n: plan_graph(n, 1, n // 10).degree for n in (100, 300, 1000)}
    assert degrees[1000] < 100 and degrees[1000] <= 1.5 * degrees[100], degrees
    for n, c, d in [(100, 1, 10), (1000, 1, 100), (1000, 100, 100), (1000, 333, 100), (300, 30, 30)]:
        plan = plan_graph(n, c, d)
        assert plan.security_log2 <= -40 and plan.correctness_log2 <= -20
        assert plan.threshold > 0 and (plan.complete or plan.degree % 2 == 0)
    assert plan_graph(1000, 333, 100).degree < 200  # a third colluding: still far from the complete graph


def test_complete_graph_when_small_and_refusals():
    plan = plan_graph(4, 1, 1)
    assert plan.complete and plan.threshold == 2
    with pytest.raises(ValueError, match="no honest survivor"):
        plan_graph(10, 5, 5)
    with pytest.raises(ValueError, match="cannot tolerate"):
        plan_graph(4, 2, 1)


def test_graph_is_regular_symmetric_and_drawn_from_the_session():
    parties = names(200)
    g = SharingGraph(parties, 16, b"a" * 16)
    for p in parties:
        near = g.neighbours(p)
        assert len(near) == 16 and p not in near
        assert all(p in g.neighbours(q) for q in near)
    assert SharingGraph(parties, 16, b"a" * 16).neighbours("p0000") == g.neighbours("p0000")
    assert SharingGraph(parties, 16, b"b" * 16).neighbours("p0000") != g.neighbours("p0000")


def test_neighbourhoods_are_uniform():
    """Over many sessions, each other party is p0000's neighbour with probability k / (n - 1)."""
    parties, k, sessions = names(21), 4, 2000
    counts = np.zeros(20)
    for s in range(sessions):
        for q in SharingGraph(parties, k, s.to_bytes(16, "big")).neighbours("p0000"):
            counts[int(q[1:]) - 1] += 1
    expected = sessions * k / 20
    assert stats.chisquare(counts, np.full(20, expected)).pvalue > 1e-3


def test_survivors_without_a_removed_window_stay_connected():
    parties, k = names(60), 6
    g = SharingGraph(parties, k, b"c" * 16)
    order = [parties[i] for i in g._order]
    rng = np.random.default_rng(3)
    for _ in range(200):
        removed = {order[i] for i in rng.choice(60, 25, replace=False)}
        longest, cur = 0, 0
        for i in range(120):
            cur = cur + 1 if order[i % 60] in removed else 0
            longest = max(longest, cur)
        alive = [p for p in parties if p not in removed]
        seen, todo = {alive[0]}, [alive[0]]
        while todo:
            for q in g.neighbours(todo.pop()):
                if q not in removed and q not in seen:
                    seen.add(q)
                    todo.append(q)
        if longest < k // 2:
            assert seen == set(alive)


# -- quorum ------------------------------------------------------------------------------------------


def test_survivor_loss_restates_the_guarantee():
    spec = QuerySpec("mean", names(20), bounds=(0, 10), epsilon=1.0, colluders=2)
    full = survivor_loss(spec, 20)
    assert full is not None and float(full.epsilon) <= 1.0 + 1e-9
    losses = [float(survivor_loss(spec, m).epsilon) for m in (20, 15, 10, 5, 3)]
    assert losses == sorted(losses) and losses[-1] > losses[0]
    assert survivor_loss(spec, 2) is None  # only the colluders' pieces: no guarantee
    assert Quorum(spec, 10).charge() == survivor_loss(spec, 10)
    with pytest.raises(ValueError, match="quorum"):
        Quorum(spec, 2)
    skellam = QuerySpec("sum", names(10), bounds=(0, 10), epsilon=1.0, delta=1e-6, mechanism="skellam")
    assert float(survivor_loss(skellam, 10).epsilon) <= 1.0 + 1e-9
    assert float(survivor_loss(skellam, 6).epsilon) > float(survivor_loss(skellam, 10).epsilon)


# -- the protocol ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [3, 10, 60])
def test_exact_sum(n):
    query = exact_sum(n, quorum=max(2, n - n // 5))
    data = {p: [float(i)] for i, p in enumerate(query.spec.parties)}
    run = run_masked_in_memory(query, data, rng=seeded)
    assert run.release.value == sum(range(n))
    assert run.release.parties == query.spec.parties and run.release.extras["dropped"] == []


def test_sparse_graph_at_200_parties():
    query = exact_sum(200, quorum=180)
    assert not query.plan.complete and query.plan.degree < 60
    data = {p: [float(i % 7)] for i, p in enumerate(query.spec.parties)}
    assert run_masked_in_memory(query, data, rng=seeded).release.value == sum(i % 7 for i in range(200))


@pytest.mark.parametrize("phase", PHASES)
def test_a_party_dropping_at_each_phase_is_left_out(phase):
    query = exact_sum(30, quorum=24)
    data = {p: [float(i + 1)] for i, p in enumerate(query.spec.parties)}
    gone = query.spec.parties[7]
    run = run_masked_in_memory(query, data, drop={gone: phase}, rng=seeded)
    if phase == "reveal":  # its masked input arrived: it is counted, its neighbours' shares unmask it
        assert run.release.value == sum(range(1, 31)) and len(run.release.parties) == 30
        return
    assert run.release.value == sum(range(1, 31)) - 8
    assert gone not in run.release.parties and run.release.extras["dropped"] == [gone]
    assert len(run.release.parties) == 29


def test_drops_at_every_phase_at_once_in_a_sparse_graph():
    query = exact_sum(120, quorum=100)
    assert not query.plan.complete
    parties = query.spec.parties
    drop = {parties[3 * i]: phase for i, phase in enumerate(PHASES * 2)}  # 12 drops, each phase twice
    data = {p: [float(i)] for i, p in enumerate(parties)}
    run = run_masked_in_memory(query, data, drop=drop, rng=seeded)
    uncounted = {p for p, phase in drop.items() if phase != "reveal"}  # after its masked input: counted
    assert run.release.value == sum(i for i, p in enumerate(parties) if p not in uncounted)
    assert sorted(run.release.extras["dropped"]) == sorted(uncounted)


def test_below_quorum_aborts():
    query = exact_sum(10, quorum=8)
    drop = {p: "mask" for p in query.spec.parties[:3]}
    with pytest.raises(ProtocolError, match="quorum is 8") as err:
        run_masked_in_memory(query, {p: [1.0] for p in query.spec.parties}, drop=drop, rng=seeded)
    assert err.value.status == Status.ABORTED


def test_release_restates_the_loss_for_the_survivors():
    spec = QuerySpec("sum", names(12), bounds=(0, 10), epsilon=1.0, session_id=bytes(16))
    query = MaskedQuery.of(spec, quorum=8)
    drop = {"p0001": "mask", "p0002": "accept"}
    run = run_masked_in_memory(query, {p: [5.0] for p in spec.parties}, drop=drop, rng=seeded)
    want = survivor_loss(spec, 10)
    assert run.release.loss == want and run.release.epsilon == want.epsilon_delta()[0]
    assert 1.0 < run.release.epsilon <= query.charge.epsilon_delta()[0]


def test_dp_noise_from_survivors_is_centred_with_the_right_spread():
    """150 releases at fixed seeds: the mean is the true sum, the variance that of the counted pieces."""
    spec0 = QuerySpec("sum", names(6), bounds=(0, 1), epsilon=1.0, frac_bits=0)
    values = []
    for s in range(150):
        spec = QuerySpec("sum", names(6), bounds=(0, 1), epsilon=1.0, frac_bits=0, session_id=s.to_bytes(16, "big"))
        query = MaskedQuery.of(spec, quorum=4)
        run = run_masked_in_memory(
            query,
            {p: [1.0] for p in spec.parties},
            drop={"p0005": "mask"},
            rng=lambda p, s=s: Prg.from_int(1000 * s + int(p[1:]), "party"),
        )
        values.append(run.release.value - 5)
    from mpcdp.protocol.noise import mechanisms

    ((_, mech),) = mechanisms(spec0)
    sd = math.sqrt(mech.variance(5))
    assert abs(np.mean(values)) < 4 * sd / math.sqrt(150)
    assert 0.75 < np.std(values) / sd < 1.3


def test_late_input_is_refused_and_unmasked_only_down_to_its_self_mask(monkeypatch):
    """A party whose masked input comes after the cut: the coordinator refuses it; a curious coordinator
    that kept it anyway can strip the pairwise masks with the key the survivors helped rebuild, and is
    left with the input under the self mask, whose shares no honest party gives for an uncounted party."""
    query = exact_sum(16, quorum=12)
    parties = query.spec.parties
    late = parties[4]
    data = {p: [float(100 + i)] for i, p in enumerate(parties)}
    self_seeds = {}  # read as each party masks: a party forgets its secrets once it has revealed
    masked_input = MaskedParty.masked_input

    def recording(party, roster, now=-math.inf):
        self_seeds[party.me] = party._seed
        return masked_input(party, roster, now)

    monkeypatch.setattr(MaskedParty, "masked_input", recording)
    run = run_masked_in_memory(query, data, drop={late: "late"}, rng=seeded)
    assert run.release.value == sum(100 + i for i in range(16)) - 104
    y = run.late[late].vector.copy()
    with pytest.raises(ProtocolError) as err:
        run.coordinator.receive_masked(run.late[late])
    assert err.value.status == Status.FAILED_PRECONDITION
    # the curious coordinator: the key shares the honest survivors revealed rebuild the late party's key,
    # which turns the pads of its report into its pair seeds
    key = rebuild(run.coordinator._key_shares[late], query.plan.threshold)
    sid = query.spec.session_id
    for q in run.coordinator._rosters[late]:
        seed = pair_seed_from_key(key, run.coordinator._reports[late], q)
        fold_masks(y, *([seed], []) if query.sign(late, q) else ([], [seed]))
    codec = codec_for(query.spec)
    assert codec.decode(y)["sum"] != 104.0  # still under the self mask
    assert late not in run.coordinator._seed_shares  # nobody revealed a share of its self mask
    # the self mask is all that is left: with its seed (which no honest node ever gives out) the input shows
    assert run.parties[late]._seed == b""  # wiped after its reveal
    Prg(self_seeds[late], sid, self_purpose(late)).add_into(y, subtract=True)
    assert codec.decode(y)["sum"] == 104.0


def test_a_party_answers_one_unmask_request_only():
    query = exact_sum(8, quorum=6)
    parties = query.spec.parties
    sessions = {p: MaskedParty(p, query, [1.0], EXACT, rng=seeded(p)) for p in parties}
    coordinator = all_masked(query, sessions)
    first = next(u for u in coordinator.unmask() if u.party == "p0000")
    assert first.counted == query.graph.neighbours("p0000") and first.total == 8  # its neighbours, not all n
    reveal = sessions["p0000"].reveal(first)
    assert set(reveal.seed_shares) == set(query.graph.neighbours("p0000")) and not reveal.key_shares
    # a second request that calls a counted neighbour dropped would hand out its key share too: refused
    second = type(first)(first.session_id, first.party, first.counted[:-1], first.total, first.counted[-1:])
    with pytest.raises(ProtocolError) as err:
        sessions["p0000"].reveal(second)
    assert err.value.status == Status.FAILED_PRECONDITION


def test_a_request_naming_a_party_both_counted_and_dropped_is_refused():
    """Both kinds of share of one party would rebuild both its key and its self mask: one request cannot ask."""
    query = exact_sum(8, quorum=6)
    sessions = {p: MaskedParty(p, query, [1.0], EXACT, rng=seeded(p)) for p in query.spec.parties}
    coordinator = all_masked(query, sessions)
    first = next(u for u in coordinator.unmask() if u.party == "p0000")
    both = type(first)(first.session_id, first.party, first.counted, first.total, first.counted[:1])
    with pytest.raises(ProtocolError) as err:
        sessions["p0000"].reveal(both)
    assert err.value.status == Status.INVALID_ARGUMENT and sessions["p0000"].state == "masked"


def test_key_shares_are_handed_out_only_for_the_dropped_parties_whose_masks_must_go():
    """Need to know (SecAgg gives key shares for U2 minus U3 only): a party that dropped before reporting has no
    mask on any counted input, so no honest party hands out a share of its recovery key; one that reported and
    dropped before masking is unmasked from t shares of its key; the coordinator refuses a key share it did not
    ask for."""
    from mpcdp.protocol.masked import Reveal

    query = exact_sum(16, quorum=12)
    silent, dropped = "p0001", "p0002"
    run = run_masked_in_memory(
        query, {p: [1.0] for p in query.spec.parties}, drop={silent: "report", dropped: "mask"}, rng=seeded
    )
    assert run.release.value == 14
    assert set(run.coordinator._key_shares) == {dropped}  # the silent party's key: no share of it anywhere
    assert len(run.coordinator._key_shares[dropped]) >= query.plan.threshold
    # a reveal carrying a key share of the silent party is refused
    sessions = {p: MaskedParty(p, query, [1.0], EXACT, rng=seeded(p)) for p in query.spec.parties}
    coordinator = accepted_with_keys(query, sessions)
    for p, s in sessions.items():
        if p != silent:
            coordinator.record_report(s.report())
    for roster in coordinator.rosters():
        coordinator.receive_masked(sessions[roster.party].masked_input(roster))
    unmask = next(u for u in coordinator.unmask() if silent in query.graph.neighbours(u.party))
    reveal = sessions[unmask.party].reveal(unmask)
    assert silent not in reveal.key_shares
    nosy = Reveal(reveal.session_id, reveal.party, reveal.seed_shares, {silent: bytes(shamir.SHARE_BYTES)})
    with pytest.raises(ProtocolError) as err:
        coordinator.receive_reveal(nosy)
    assert err.value.status == Status.INVALID_ARGUMENT and "wrong kind" in str(err.value)


def test_a_party_left_with_too_few_masks_does_not_send_its_input():
    """A slow party whose keys reached its neighbours only after they reported is on nobody's roster, and its
    own roster is empty: its masked input would be x + PRG(b), and b is rebuilt for every counted party, so
    the coordinator would read x. Below the threshold a party does not mask (as SecAgg+), the coordinator does
    not wait for it, and the query completes without it."""
    query = exact_sum(8, quorum=6)
    parties = query.spec.parties
    slow = parties[3]
    sessions = {p: MaskedParty(p, query, [float(10 + i)], EXACT, rng=seeded(p)) for i, p in enumerate(parties)}
    coordinator = MaskedCoordinator(query)
    for p, s in sessions.items():
        s.accept()
        coordinator.record_response(p, True)
    outboxes = {p: s.key_shares() for p, s in sessions.items()}
    for p, box in outboxes.items():
        for msg in box if p != slow else ():
            sessions[msg.recipient].receive_keys(msg)
    for s in sessions.values():
        coordinator.record_report(s.report())  # nobody heard the slow party yet
    for msg in outboxes[slow]:
        sessions[msg.recipient].receive_keys(msg)  # its keys, too late to be on anyone's report
    rosters = {r.party: r for r in coordinator.rosters()}
    assert rosters[slow].neighbours == ()
    with pytest.raises(ProtocolError) as err:
        sessions[slow].masked_input(rosters[slow])
    assert err.value.status == Status.FAILED_PRECONDITION and "not sent" in str(err.value)
    for p, roster in rosters.items():
        if p != slow:
            coordinator.receive_masked(sessions[p].masked_input(roster))
    assert coordinator.waiting_count == 0 and coordinator.waiting_for == []  # the slow party is not waited for
    for unmask in coordinator.unmask():
        coordinator.receive_reveal(sessions[unmask.party].reveal(unmask))
    release = coordinator.release()
    assert slow not in release.parties and release.value == sum(10 + i for i in range(8)) - 13


def test_colluding_neighbours_at_the_threshold_unmask_a_party_and_below_it_cannot():
    """(S1) is the condition that matters: t colluding neighbours rebuild a party's key and self mask and
    read its input from its masked vector; t - 1 rebuild nothing (the rebuilt key is not the party's)."""
    query = exact_sum(12, quorum=12, colluders=3)  # complete graph, t = colluders + 1 = 4
    t = query.plan.threshold
    parties = query.spec.parties
    data = {p: [float(10 * i)] for i, p in enumerate(parties)}
    sessions = {p: MaskedParty(p, query, data[p], EXACT, rng=seeded(p)) for p in parties}
    coordinator = accepted_with_keys(query, sessions)
    reports = {p: s.report() for p, s in sessions.items()}
    for r in reports.values():
        coordinator.record_report(r)
    inputs = {r.party: sessions[r.party].masked_input(r) for r in coordinator.rosters()}
    victim = parties[0]
    codec = codec_for(query.spec)

    def attack(colluders):
        shares_key = {query.point(c): sessions[c]._shares[victim][0] for c in colluders}
        shares_seed = {query.point(c): sessions[c]._shares[victim][1] for c in colluders}
        sid = query.spec.session_id
        try:
            key = rebuild(shares_key, len(colluders))
            seed = rebuild(shares_seed, len(colluders))
        except ValueError:
            return None
        if commitment(key, sid, victim, "key") != reports[victim].key_commitment:
            return None
        y = inputs[victim].vector.copy()
        Prg(seed, sid, self_purpose(victim)).add_into(y, subtract=True)
        for q in query.graph.neighbours(victim):
            s = pair_seed_from_key(key, reports[victim], q)
            fold_masks(y, *([s], []) if query.sign(victim, q) else ([], [s]))
        return codec.decode(y)["sum"]

    near = query.graph.neighbours(victim)
    assert attack(near[:t]) == data[victim][0]
    assert attack(near[: t - 1]) is None


def test_a_batch_of_statistics_in_one_session():
    """Three statistics over different columns share one key exchange; each release is what its own
    query gives, the counted set is the same, and the charge composes the three losses."""
    parties = names(24)
    sid = bytes(range(16))
    total = QuerySpec("sum", parties, bounds=(0, 100), session_id=sid)
    mean = QuerySpec("mean", parties, column="age", bounds=(0, 100), max_records=3, session_id=sid)
    hist = QuerySpec("histogram", parties, column="vote", categories=("a", "b", "c"), max_records=3, session_id=sid)
    query = MaskedQuery.of(total, 20, batch=(mean, hist))
    data = {p: [float(i)] for i, p in enumerate(parties)}
    batch = {p: ([20.0 + i, 30.0 + i], ["a", "c", "c"] if i % 2 else ["b"]) for i, p in enumerate(parties)}
    run = run_masked_in_memory(query, data, drop={parties[5]: "mask"}, rng=seeded, batch_data=batch)
    counted = [i for i, p in enumerate(parties) if p != parties[5]]
    sums, means, hists = run.coordinator.releases
    assert sums.value == sum(counted)
    assert means.value == sum(50.0 + 2 * i for i in counted) / (2 * len(counted))
    assert hists.value == {"a": 11, "b": 12, "c": 22}
    assert sums.parties == means.parties == hists.parties and parties[5] not in hists.parties
    dp = [
        QuerySpec(
            s.statistic,
            parties,
            column=s.column,
            bounds=s.bounds,
            categories=s.categories,
            max_records=s.max_records,
            epsilon=0.5,
            session_id=sid,
        )
        for s in (total, mean, hist)
    ]
    dp_query = MaskedQuery.of(dp[0], 20, batch=tuple(dp[1:]))
    assert float(dp_query.charge.epsilon) == pytest.approx(sum(float(Quorum(s, 20).charge().epsilon) for s in dp))
    with pytest.raises(ValueError, match="share parties"):
        MaskedQuery.of(total, 20, batch=(QuerySpec("sum", parties[:-1], session_id=sid),))


def _isolate(query: MaskedQuery) -> tuple[dict, MaskedCoordinator, str, list[str]]:
    """Every party reported, party u's keys having reached only ``t`` of its neighbours before that (its
    other edges are late), so its roster will be just those ``t``: sessions, coordinator, u, those t."""
    parties, t = query.spec.parties, query.plan.threshold
    u = parties[0]
    partners = list(query.graph.neighbours(u))[:t]
    sessions = {p: MaskedParty(p, query, [float(100 + i)], EXACT, rng=seeded(p)) for i, p in enumerate(parties)}
    coordinator = MaskedCoordinator(query)
    for p, s in sessions.items():
        s.accept()
        coordinator.record_response(p, True)
    late = []
    for p, box in {p: s.key_shares() for p, s in sessions.items()}.items():
        for msg in box:
            if p == u and msg.recipient not in partners:
                late.append(msg)  # u's keys reach the others only after they reported
            else:
                sessions[msg.recipient].receive_keys(msg)
    for s in sessions.values():
        coordinator.record_report(s.report())
    for msg in late:
        sessions[msg.recipient].receive_keys(msg)
    return sessions, coordinator, u, partners


def test_a_counted_party_whose_mask_partners_all_dropped_is_not_unmasked():
    """(H1 of the review) u masks with t partners only (its other edges came late), and they drop after
    reporting. Were u counted, the coordinator would rebuild u's self mask (u is counted) and its partners'
    keys (dropped, with a counted neighbour): every mask on u's vector, so u's input in clear. The counted
    parties' roster graph does not link u to anyone counted: the coordinator aborts before any share is asked
    for, and the curious coordinator's attack has nothing to work with."""
    query = exact_sum(8, quorum=6)
    sessions, coordinator, u, partners = _isolate(query)
    rosters = {r.party: r for r in coordinator.rosters()}
    assert set(rosters[u].neighbours) == set(partners)
    for p, roster in rosters.items():
        if p not in partners:  # the partners drop after reporting
            coordinator.receive_masked(sessions[p].masked_input(roster))
    with pytest.raises(ProtocolError) as err:
        coordinator.unmask()
    assert err.value.status == Status.ABORTED and "do not link" in str(err.value)
    assert coordinator.state != "unmasking" and not coordinator.counted  # no unmask request exists


def test_counted_parties_split_in_two_groups_by_late_edges_are_not_unmasked():
    """The general form: the coordinator would learn the sum of each connected component of the counted
    parties' roster graph. Two groups whose cross-group keys all came late are not unmasked."""
    query = exact_sum(8, quorum=6)
    parties = query.spec.parties
    left, right = set(parties[:4]), set(parties[4:])
    sessions = {p: MaskedParty(p, query, [float(i)], EXACT, rng=seeded(p)) for i, p in enumerate(parties)}
    coordinator = MaskedCoordinator(query)
    for p, s in sessions.items():
        s.accept()
        coordinator.record_response(p, True)
    late = []
    for box in [s.key_shares() for s in sessions.values()]:
        for msg in box:
            crossing = (msg.sender in left) != (msg.recipient in left)
            (late.append(msg) if crossing else sessions[msg.recipient].receive_keys(msg))
    for s in sessions.values():
        coordinator.record_report(s.report())
    for msg in late:
        sessions[msg.recipient].receive_keys(msg)
    for roster in coordinator.rosters():
        assert set(roster.neighbours) <= (left if roster.party in left else right)
        coordinator.receive_masked(sessions[roster.party].masked_input(roster))
    with pytest.raises(ProtocolError) as err:
        coordinator.unmask()
    assert err.value.status == Status.ABORTED and "2 groups" in str(err.value)


def _to_reveals(n: int, quorum: int) -> tuple[dict, MaskedCoordinator, list]:
    query = exact_sum(n, quorum=quorum)
    sessions = {p: MaskedParty(p, query, [1.0], EXACT, rng=seeded(p)) for p in query.spec.parties}
    coordinator = all_masked(query, sessions)
    return sessions, coordinator, [sessions[u.party].reveal(u) for u in coordinator.unmask()]


@pytest.mark.parametrize("share", [b"\x01", b"\xff" * shamir.SHARE_BYTES], ids=["short", "not-a-field-element"])
def test_a_malformed_reveal_share_is_refused_naming_its_party(share):
    """A share of the wrong length, or not a field element, is refused when it arrives (a ProtocolError naming
    the party, which the driver drops like any bad message), not a ValueError at the release."""
    from mpcdp.protocol.masked import Reveal

    _, coordinator, reveals = _to_reveals(6, quorum=5)
    bad = reveals[0]
    forged = Reveal(bad.session_id, bad.party, {k: share for k in bad.seed_shares}, bad.key_shares)
    with pytest.raises(ProtocolError) as err:
        coordinator.receive_reveal(forged)
    assert err.value.status == Status.INVALID_ARGUMENT and bad.party in str(err.value)
    for reveal in reveals:  # the genuine one still counts: the forged one was not recorded
        coordinator.receive_reveal(reveal)
    assert coordinator.release().value == 6


def test_inconsistent_reveal_shares_fail_the_release_as_a_protocol_error():
    """Field elements that do not rebuild the committed secret (garbage: a hash of each share, as field elements):
    a ProtocolError, not a ValueError."""
    import hashlib

    from mpcdp.protocol.masked import Reveal

    def garbage(share: bytes) -> bytes:
        words = np.frombuffer(hashlib.sha512(share).digest()[: shamir.SHARE_BYTES], ">u4") % shamir.PRIME
        return words.astype(">u4").tobytes()

    _, coordinator, reveals = _to_reveals(6, quorum=5)
    for reveal in reveals:
        seeds = {k: garbage(s) for k, s in reveal.seed_shares.items()}
        coordinator.receive_reveal(Reveal(reveal.session_id, reveal.party, seeds, reveal.key_shares))
    with pytest.raises(ProtocolError) as err:
        coordinator.release()
    assert err.value.status == Status.INVALID_ARGUMENT and "self-mask seed" in str(err.value)
