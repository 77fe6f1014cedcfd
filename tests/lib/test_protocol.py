"""The peer protocol in memory: the seed's example, statistics, refusals and bad specs."""

import math

import numpy as np
import pytest

from mpcdp import ring
from mpcdp.prg import Prg
from mpcdp.protocol import (
    CoordinatorSession,
    PartialSum,
    PartyPolicy,
    PartySession,
    ProtocolError,
    QuerySpec,
    Response,
    ShareMessage,
    SpecError,
    Status,
    run_in_memory,
)
from mpcdp.protocol.coordinator import KeptTotals

RAISES = {"alice": 3800, "bob": 2514, "carol": 2982, "dave": 3390}
PARTIES = tuple(RAISES)


def spec(**kw):
    base = dict(statistic="mean", parties=PARTIES, bounds=(0, 10_000))
    base.update(kw)
    return QuerySpec(**base)


@pytest.mark.parametrize("sharing", ["keyed", "seeded", "full"])
def test_four_engineers(sharing):
    run = run_in_memory(spec(sharing=sharing), {p: [v] for p, v in RAISES.items()}, rng=Prg.from_int(1))
    assert run.release.result["sum"] == 12686
    assert run.release.value == 3171.5
    assert run.release.result["count"] == 4


def _contains(obj, needle, seen=None):
    """Does ``needle`` (an int) appear anywhere in obj's reachable state?"""
    seen = seen if seen is not None else set()
    if id(obj) in seen:
        return False
    seen.add(id(obj))
    if isinstance(obj, (int, float, np.integer, np.floating)) and not isinstance(obj, bool):
        return float(obj) == needle
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "iuf":
            fx = ring.FixedPoint(16)
            as_signed = obj.view(np.int64) if obj.dtype == np.uint64 else obj
            return bool(np.any(as_signed == needle) or np.any(as_signed == needle * fx.scale))
        return False
    if isinstance(obj, dict):
        return any(_contains(k, needle, seen) or _contains(v, needle, seen) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return any(_contains(v, needle, seen) for v in obj)
    if hasattr(obj, "__dict__"):
        return _contains(vars(obj), needle, seen)
    return False


def test_no_party_state_holds_another_partys_raise():
    run = run_in_memory(spec(), {p: [v] for p, v in RAISES.items()}, rng=Prg.from_int(5))
    for holder, session in run.parties.items():
        for owner, value in RAISES.items():
            if owner != holder:
                assert not _contains(session, value), f"{holder} holds {owner}'s raise"
        assert not _contains(session, RAISES[holder])  # records are dropped after sharing
    assert not any(_contains(run.coordinator, v) for v in RAISES.values())


def test_statistics():
    data = {"a": [1.5, 2.0, 9.0], "b": [4.0, -3.0]}
    s = dict(parties=("a", "b"), bounds=(0, 5), max_records=3)
    clipped = np.clip([1.5, 2.0, 9.0, 4.0, -3.0], 0, 5)
    r = run_in_memory(QuerySpec("sum", **s), data).release
    assert r.value == pytest.approx(clipped.sum())
    r = run_in_memory(QuerySpec("count", parties=("a", "b"), max_records=3), data).release
    assert r.value == 5
    r = run_in_memory(QuerySpec("variance", **s), data).release
    assert r.value == pytest.approx(np.var(clipped, ddof=1), abs=1e-3)
    assert r.result["mean"] == pytest.approx(clipped.mean(), abs=1e-4)
    hist = QuerySpec("histogram", parties=("a", "b"), categories=("yes", "no"), max_records=3)
    r = run_in_memory(hist, {"a": ["yes", "no", "maybe"], "b": ["yes"]}).release
    assert r.value == {"yes": 2, "no": 1}


def test_vector_mean():
    s = QuerySpec("mean", parties=("a", "b", "c"), dimension=3, bounds=(-10, 10), max_records=2)
    data = {"a": [[1, 2, 3], [3, 2, 1]], "b": [[-1, 0, 1]], "c": [[0, 0, 20]]}
    r = run_in_memory(s, data).release
    assert r.value == pytest.approx([0.75, 1.0, 3.75])


def test_refusal_by_policy_aborts_and_names_the_party():
    strict = {"bob": PartyPolicy(allow_exact=False)}
    with pytest.raises(ProtocolError) as err:
        run_in_memory(spec(), {p: [v] for p, v in RAISES.items()}, policies=strict)
    assert err.value.status == Status.ABORTED and "bob refused" in str(err.value)
    assert "set an epsilon" in str(err.value)


def test_policy_bounds_the_vector_length_a_query_may_cost():
    wide = QuerySpec("mean", parties=("a", "b"), dimension=1000, bounds=(0, 1))
    assert "at most 1000" in PartyPolicy(allow_exact=True, max_length=1000).refusal(wide)
    assert PartyPolicy(allow_exact=True, max_length=1001).refusal(wide) is None  # 1000 sums + 1 count


def test_party_rejects_bad_messages_and_keeps_state():
    s = spec(sharing="full")
    alice = PartySession("alice", s, [3800], PartyPolicy(allow_exact=True), rng=Prg.from_int(1))
    alice.accept()
    assert alice._sum is None  # no share held yet
    good = np.zeros(2, np.uint64)
    cases = [
        (ShareMessage(b"z" * 16, "bob", "alice", vector=good), Status.NOT_FOUND),
        (ShareMessage(s.session_id, "mallory", "alice", vector=good), Status.PERMISSION_DENIED),
        (ShareMessage(s.session_id, "bob", "carol", vector=good), Status.INVALID_ARGUMENT),
        (ShareMessage(s.session_id, "bob", "alice", vector=np.zeros(3, np.uint64)), Status.INVALID_ARGUMENT),
        (ShareMessage(s.session_id, "alice", "alice", vector=good), Status.PERMISSION_DENIED),
    ]
    for msg, status in cases:
        with pytest.raises(ProtocolError) as err:
            alice.receive_share(msg)
        assert err.value.status == status
        assert alice._sum is None
    alice.receive_share(ShareMessage(s.session_id, "bob", "alice", vector=good))
    with pytest.raises(ProtocolError) as err:
        alice.receive_share(ShareMessage(s.session_id, "bob", "alice", vector=good))
    assert err.value.status == Status.ALREADY_EXISTS
    with pytest.raises(ProtocolError, match="waiting for shares from carol, dave"):
        alice.make_shares()
        alice.partial_sum()


def test_deadline_and_phase_errors():
    s = spec(deadline=1000.0)
    p = PartySession("alice", s, [1], PartyPolicy(allow_exact=True))
    with pytest.raises(ProtocolError) as err:
        p.accept(now=1001.0)
    assert err.value.status == Status.DEADLINE_EXCEEDED and p.state == "proposed"
    with pytest.raises(ProtocolError) as err:
        p.partial_sum()
    assert err.value.status == Status.FAILED_PRECONDITION
    with pytest.raises(ProtocolError) as err:
        PartySession("mallory", s, [1])
    assert err.value.status == Status.PERMISSION_DENIED


def test_coordinator_rejects_bad_partials():
    s = spec()
    c = CoordinatorSession(s)
    with pytest.raises(ProtocolError):
        c.receive_partial(PartialSum(s.session_id, "alice", np.zeros(2, np.uint64)))  # wrong phase
    for p in PARTIES:
        c.record_response(Response(s.session_id, p, True))
    for msg, status in [
        (PartialSum(s.session_id, "mallory", np.zeros(2, np.uint64)), Status.PERMISSION_DENIED),
        (PartialSum(b"q" * 16, "alice", np.zeros(2, np.uint64)), Status.NOT_FOUND),
        (PartialSum(s.session_id, "alice", np.zeros(5, np.uint64)), Status.INVALID_ARGUMENT),
    ]:
        with pytest.raises(ProtocolError) as err:
            c.receive_partial(msg)
        assert err.value.status == status
    c.receive_partial(PartialSum(s.session_id, "alice", np.zeros(2, np.uint64)))
    with pytest.raises(ProtocolError) as err:
        c.receive_partial(PartialSum(s.session_id, "alice", np.zeros(2, np.uint64)))
    assert err.value.status == Status.ALREADY_EXISTS
    assert c.missing == ["bob", "carol", "dave"]
    with pytest.raises(ProtocolError, match="waiting for bob, carol, dave"):
        c.release()


def test_nan_records_refused_at_accept():
    p = PartySession("alice", spec(), [float("nan")], PartyPolicy(allow_exact=True))
    with pytest.raises(ValueError, match="NaN"):
        p.accept()


@pytest.mark.parametrize(
    "field,kw,match",
    [
        ("statistic", dict(statistic="mode"), "unknown statistic"),
        ("parties", dict(parties=("solo",)), "at least 2"),
        ("parties", dict(parties=("a", "a")), "distinct"),
        ("parties", dict(parties=("a", "b c")), "names"),
        ("session_id", dict(session_id=b"short"), "16 random bytes"),
        ("dimension", dict(dimension=0), "dimension"),
        ("bounds", dict(bounds=(5, 1)), "lo must not exceed hi"),
        ("bounds", dict(bounds=(0, math.inf)), "finite"),
        (
            "bounds",
            dict(bounds=(0, 1e15), frac_bits=20),
            r"too large for the ring at frac_bits=20: bounds must lie within",
        ),
        ("bounds", dict(bounds=(0, 1e308)), r"within \+-2\^47"),  # was an OverflowError
        ("bounds", dict(bounds=(0, 1e6), max_records=1 << 30), "overflow risk"),
        ("categories", dict(categories=("x",)), "only a histogram"),
        ("categories", dict(statistic="histogram"), "declared"),
        ("frac_bits", dict(frac_bits=60), "frac_bits"),
        ("max_records", dict(max_records=0), "positive"),
        ("epsilon", dict(epsilon=0.0), "between 1e-09 and 1e"),
        ("epsilon", dict(epsilon=-1.0), "between"),
        ("epsilon", dict(epsilon=1e-300), r"between 1e-09 and 1e\+06"),  # was an OverflowError
        ("epsilon", dict(epsilon=1e300), "between"),
        ("epsilon", dict(epsilon="a lot"), "decimal number"),
        ("epsilon", dict(epsilon=float("nan")), "> 0"),
        ("delta", dict(delta=1.5), r"\[0, 1\)"),
        ("mechanism", dict(mechanism="gaussian"), "unknown central mechanism"),
        ("delta", dict(epsilon=1.0, mechanism="skellam"), "delta > 0"),
        ("colluders", dict(colluders=4), "at least one honest"),
        ("colluders", dict(colluders=0), "colluders"),
        ("sharing", dict(sharing="shamir"), "sharing"),
        ("deadline", dict(deadline=-5), "deadline"),
        ("column", dict(column=""), "column"),
    ],
)
def test_each_bad_field_gets_its_own_error(field, kw, match):
    with pytest.raises(SpecError, match=match) as err:
        spec(**kw)
    assert err.value.field == field


def test_check_deadline_refuses_none_past_and_too_far():
    s = spec()  # no deadline
    with pytest.raises(SpecError, match="needs a deadline") as err:
        s.check_deadline(1000.0)
    assert err.value.field == "deadline"
    near = spec(deadline=1100.0)
    near.check_deadline(1000.0)
    with pytest.raises(SpecError, match="already passed"):
        near.check_deadline(1100.0)
    with pytest.raises(SpecError, match="at most 60 s"):
        near.check_deadline(1000.0, max_seconds=60)
    with pytest.raises(SpecError, match="deadline"):
        spec(deadline=0)


def _partials(s, records):
    """Each party's partial sum of a session run in memory (shares delivered by hand)."""
    parties = {
        p: PartySession(p, s, records[p], PartyPolicy(allow_exact=True), rng=Prg.from_int(i))
        for i, p in enumerate(s.parties)
    }
    for p in parties.values():
        p.accept()
    for msg in [m for p in parties.values() for m in p.make_shares()]:
        parties[msg.recipient].receive_share(msg)
    return {name: p.partial_sum().vector for name, p in parties.items()}


def test_coordinator_folds_partials_given_in_pieces_as_it_folds_whole_ones():
    length = 10_001
    s = spec(statistic="sum", dimension=length, bounds=(0, 1000), frac_bits=0, parties=("alice", "bob", "carol"))
    records = {
        p: ((np.arange(length) * (i + 1)) % 1000).reshape(1, length).astype(float) for i, p in enumerate(s.parties)
    }
    partials = _partials(s, records)
    expected = sum(r[0] for r in records.values())
    whole = CoordinatorSession(s)
    for p in s.parties:
        whole.record_response(Response(s.session_id, p, True))
    for p, v in partials.items():
        v.flags.writeable = False  # only read: the first one is summed into a new array, not into itself
        whole.receive_partial(PartialSum(s.session_id, p, v))
    assert np.array_equal(whole.release(arrays=True).value, expected)

    pieces = CoordinatorSession(s)
    pieces.record_response(Response(s.session_id, "alice", True))
    alice = partials["alice"]
    for start, stop in [(0, 1), (1, 4000), (4000, length)]:  # while bob and carol still answer: one round trip
        pieces.receive_piece(s.session_id, "alice", start, alice[start:stop])
    pieces.end_partial(s.session_id, "alice")
    assert pieces.missing == ["bob", "carol"]
    with pytest.raises(ProtocolError) as err:
        pieces.receive_piece(s.session_id, "bob", 0, partials["bob"][:5])
    assert err.value.status == Status.FAILED_PRECONDITION  # bob has not accepted
    for p in ("bob", "carol"):
        pieces.record_response(Response(s.session_id, p, True))
    pieces.receive_partial(PartialSum(s.session_id, "bob", partials["bob"]))
    carol = partials["carol"]
    pieces.receive_piece(s.session_id, "carol", 0, carol[:100])
    for offset, piece, status in [
        (0, carol[100:200], Status.INVALID_ARGUMENT),  # out of order
        (100, carol[100:].astype(np.int64), Status.INVALID_ARGUMENT),  # not ring elements
        (100, np.zeros(length, np.uint64), Status.INVALID_ARGUMENT),  # past the vector's end
    ]:
        with pytest.raises(ProtocolError) as err:
            pieces.receive_piece(s.session_id, "carol", offset, piece)
        assert err.value.status == status
    with pytest.raises(ProtocolError) as err:
        pieces.end_partial(s.session_id, "carol")  # 100 of 10001 elements
    assert err.value.status == Status.INVALID_ARGUMENT
    with pytest.raises(ProtocolError) as err:
        pieces.receive_partial(PartialSum(s.session_id, "carol", carol))
    assert err.value.status == Status.ALREADY_EXISTS
    pieces.receive_piece(s.session_id, "carol", 100, carol[100:])
    pieces.end_partial(s.session_id, "carol")
    with pytest.raises(ProtocolError) as err:
        pieces.receive_piece(s.session_id, "carol", length, carol[:0])
    assert err.value.status == Status.ALREADY_EXISTS
    assert np.array_equal(pieces.release(arrays=True).value, expected)


def test_pieces_of_several_partial_sums_interleaved_at_any_cut_sum_right_without_a_zeroed_total():
    """The total is not zeroed: the first piece to reach an element is copied there, later ones added. Pieces of
    three senders interleave at different cuts (and one whole partial sum comes in between)."""
    length = 10_001
    s = spec(statistic="sum", dimension=length, bounds=(0, 1000), frac_bits=0, parties=("alice", "bob", "carol"))
    records = {
        p: ((np.arange(length) * (i + 3)) % 1000).reshape(1, length).astype(float) for i, p in enumerate(s.parties)
    }
    partials = _partials(s, records)
    expected = sum(r[0] for r in records.values())
    orders = [
        [("bob", 0, 10), ("alice", 0, 3000), ("carol", 0, 5), ("bob", 10, 6000), ("alice", 3000, length)],
        [("alice", 0, 1), ("carol", 0, 9000), ("bob", 0, 20), ("alice", 1, 4000), ("bob", 20, length)],
    ]
    rest = [
        [("carol", 5, 9000), ("bob", 6000, length), ("carol", 9000, length)],
        [("alice", 4000, length), ("carol", 9000, length)],
    ]
    totals = KeptTotals()  # one coordinator's: each session after the first folds into the last one's dirty total
    for first, then in zip(orders, rest, strict=True):
        session = CoordinatorSession(s, totals=totals)
        for p in s.parties:
            session.record_response(Response(s.session_id, p, True))
        for p, start, stop in first + then:
            session.receive_piece(s.session_id, p, start, partials[p][start:stop])
        for p in s.parties:
            session.end_partial(s.session_id, p)
        assert np.array_equal(session.release(arrays=True).value, expected)
    mixed = CoordinatorSession(s, totals=totals)
    for p in s.parties:
        mixed.record_response(Response(s.session_id, p, True))
    mixed.receive_piece(s.session_id, "alice", 0, partials["alice"][:700])
    mixed.receive_partial(PartialSum(s.session_id, "bob", partials["bob"]))  # whole, past what was written
    mixed.receive_piece(s.session_id, "alice", 700, partials["alice"][700:])
    mixed.receive_piece(s.session_id, "carol", 0, partials["carol"])
    for p in ("alice", "carol"):
        mixed.end_partial(s.session_id, p)
    assert np.array_equal(mixed.release(arrays=True).value, expected)


def test_a_party_hands_its_running_sum_over_and_keeps_nothing():
    s = spec(statistic="sum", dimension=3, bounds=(0, 10), frac_bits=0, parties=("alice", "bob"))
    alice = PartySession("alice", s, [[1.0, 2.0, 3.0]], PartyPolicy(allow_exact=True), rng=Prg.from_int(1))
    bob = PartySession("bob", s, [[4.0, 5.0, 6.0]], PartyPolicy(allow_exact=True), rng=Prg.from_int(2))
    for p in (alice, bob):
        p.accept()
    (to_bob,) = alice.make_shares()
    bob.receive_share(to_bob)  # before bob made his own shares: his running sum starts from it
    (to_alice,) = bob.make_shares()
    alice.receive_share(to_alice)
    a, b = alice.partial_sum(), bob.partial_sum()
    assert alice._sum is None and bob._sum is None
    assert ring.to_signed(ring.add(a.vector, b.vector)).tolist() == [5, 7, 9]


def _summed(s, partials, cut: int, totals: KeptTotals | None = None) -> CoordinatorSession:
    """A session with every partial sum of ``partials`` folded in, each in two pieces cut at ``cut``."""
    session = CoordinatorSession(s, totals=totals)
    for p in s.parties:
        session.record_response(Response(s.session_id, p, True))
        session.receive_piece(s.session_id, p, 0, partials[p][:cut])
        session.receive_piece(s.session_id, p, cut, partials[p][cut:])
        session.end_partial(s.session_id, p)
    return session


def test_a_closed_sessions_total_is_the_next_ones_and_an_earlier_release_is_not_changed():
    """The next session of the same length folds into the total a released (or aborted) one left, uninitialised
    as it is (its old sums are overwritten, never added to); the release made from it keeps its own values."""
    totals = KeptTotals()
    length = 10_007  # 80 kB: above the smallest total kept
    s = spec(statistic="sum", dimension=length, bounds=(0, 1000), frac_bits=0, parties=("alice", "bob", "carol"))
    first_records = {p: np.full((1, length), 100.0 * (i + 1)) for i, p in enumerate(s.parties)}
    second_records = {
        p: ((np.arange(length) * (i + 7)) % 1000).reshape(1, length).astype(float) for i, p in enumerate(s.parties)
    }
    first = _summed(s, _partials(s, first_records), 17, totals)
    (total,) = [first._total]
    released = first.release(arrays=True).value
    assert len(totals) == 1 and totals.nbytes == total.nbytes
    assert np.array_equal(released, np.full(length, 600.0))
    second = _summed(s, _partials(s, second_records), 4_000, totals)
    assert second._total is total and not len(totals)
    assert np.array_equal(second.release(arrays=True).value, sum(r[0] for r in second_records.values()))
    assert np.array_equal(released, np.full(length, 600.0))
    aborted = CoordinatorSession(s, totals=totals)
    aborted.record_response(Response(s.session_id, "alice", True))
    aborted.receive_piece(s.session_id, "alice", 0, np.arange(10, dtype=np.uint64))
    assert aborted._total is total  # kept again by the second release
    aborted.abort("gone")
    assert len(totals) == 1 and totals.nbytes == total.nbytes
    again = _summed(s, _partials(s, first_records), 1, totals)
    assert again._total is total
    assert np.array_equal(again.release(arrays=True).value, released)


def test_a_total_a_release_still_reads_is_not_kept(monkeypatch):
    """A codec whose release is a view of the total (none today) leaves it to the release: the next session
    takes a new array."""
    totals = KeptTotals()
    s = spec(statistic="sum", dimension=10_000, bounds=(0, 1000), frac_bits=0, parties=("alice", "bob", "carol"))
    records = {p: np.full((1, 10_000), 5.0) for p in s.parties}
    session = _summed(s, _partials(s, records), 50, totals)
    total = session._total
    monkeypatch.setattr(type(s.codec), "decode", lambda codec, total, arrays=False: {"sum": total[:10]})
    assert np.shares_memory(session.release().value, total)
    assert not len(totals)
