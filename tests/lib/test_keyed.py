"""Keyed sharing in memory: pairwise masks from pair keys, what one partial sum (or a strict subset's sum)
reveals, the coordinator's pair key check, and the budget charged as a keyed partial sum leaves."""

import itertools

import numpy as np
import pytest
from scipy import stats

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
    Status,
    run_in_memory,
)
from mpcdp.sharing import SHORT_MASK_WORDS, mask_key, mask_pairwise, pair_key_id, pair_stream
from tests.support.stats import P_MIN

RAISES = {"alice": 3800, "bob": 2514, "carol": 2982, "dave": 3390}
THREE = ("alice", "bob", "carol")


def keyed(**kw):
    base = dict(statistic="sum", parties=THREE, bounds=(0, 10_000), sharing="keyed")
    base.update(kw)
    return QuerySpec(**base)


def pair_keys(parties, seed=7):
    rng = Prg.from_int(seed, "pair-keys")
    return {frozenset(p): rng.bytes(32) for p in itertools.combinations(parties, 2)}


def keys_of(me, parties, pairs):
    return {p: pairs[frozenset((me, p))] for p in parties if p != me}


def partials(spec, records, pairs, seed=0):
    out = {}
    for i, p in enumerate(spec.parties):
        party = PartySession(p, spec, records[p], PartyPolicy(allow_exact=True), rng=Prg.from_int(seed + i))
        party.accept()
        out[p] = party.masked_partial(keys_of(p, spec.parties, pairs)).vector
    return out


@pytest.mark.parametrize("statistic", ["mean", "sum"])
def test_keyed_sessions_release_the_clear_answer(statistic):
    spec = keyed(statistic=statistic, parties=tuple(RAISES))
    run = run_in_memory(spec, {p: [v] for p, v in RAISES.items()}, rng=Prg.from_int(1))
    assert run.release.result["sum"] == sum(RAISES.values())
    assert all(p.state == "done" for p in run.parties.values())


def test_the_masks_cancel_only_in_the_full_sum_and_are_bound_to_the_session():
    pairs = pair_keys(THREE)
    vectors = {p: ring.zeros(5) for p in THREE}
    for p in THREE:
        mask_pairwise(vectors[p], p, keys_of(p, THREE, pairs), b"s" * 16)
    assert not ring.total(vectors.values()).any()  # every mask added once and subtracted once
    assert all(v.any() for v in vectors.values())
    other = ring.zeros(5)
    mask_pairwise(other, "alice", keys_of("alice", THREE, pairs), b"t" * 16)
    assert not np.array_equal(other, vectors["alice"])  # another session: other masks
    with pytest.raises(ValueError, match="itself"):
        mask_pairwise(ring.zeros(1), "alice", {"alice": b"k" * 32}, b"s" * 16)


@pytest.mark.parametrize("length", [3, SHORT_MASK_WORDS + 5])
def test_keyed_masks_are_the_shared_pair_streams_keyed_per_session_and_pair(length):
    """One mask mechanism for both protocols: a keyed mask is the many-party pair stream (mpcdp.sharing.fold_masks)
    under a key derived from the pair key, the whole session binding and the pair, the same from either end;
    on both sides of the short-vector path."""
    pairs = pair_keys(THREE)
    alice = ring.zeros(length)
    mask_pairwise(alice, "alice", keys_of("alice", THREE, pairs), b"s" * 16)
    want = ring.zeros(length)
    for peer in ("bob", "carol"):  # alice sorts first: she adds both masks
        key = mask_key(pairs[frozenset(("alice", peer))], b"s" * 16, "alice", peer)
        assert key == mask_key(pairs[frozenset(("alice", peer))], b"s" * 16, peer, "alice")
        np.add(want, pair_stream(key).uint64(length), out=want)
    assert np.array_equal(alice, want)
    k = pairs[frozenset(("alice", "bob"))]
    distinct = {
        mask_key(k, b"s" * 16, "alice", "bob"),
        mask_key(k, b"t" * 16, "alice", "bob"),  # another session
        mask_key(k, b"s" * 16, "alice", "carol"),  # another pair
        mask_key(bytes(32), b"s" * 16, "alice", "bob"),  # another pair key
    }
    assert len(distinct) == 4


def _uniform_pvalue(values: np.ndarray) -> float:
    """Chi-square p-value of uint64 values against uniform, on their top 4 bits and their low 4 bits."""
    top = np.bincount((values >> np.uint64(60)).astype(int), minlength=16)
    low = np.bincount((values & np.uint64(15)).astype(int), minlength=16)
    return min(stats.chisquare(top).pvalue, stats.chisquare(low).pvalue)


def test_one_partial_sum_and_the_sum_of_any_strict_subset_are_uniform_while_the_whole_sum_is_exact():
    """At a fixed seed, 3,000 sessions of the same inputs under the same pair keys: every strict subset's sum
    of partial sums (one party alone included) is uniform on Z_2^64; the whole sum is the clear sum every time.
    Unmasked, each subset's sum would be one constant: the test fails."""
    pairs = pair_keys(THREE)
    values = {"alice": 5, "bob": 7, "carol": 11}
    sessions = 3000
    sums = {s: np.empty(sessions, dtype=np.uint64) for n in (1, 2, 3) for s in itertools.combinations(THREE, n)}
    for k in range(sessions):
        spec = keyed(bounds=(0, 100), frac_bits=0, session_id=k.to_bytes(16, "big"))
        out = partials(spec, {p: [v] for p, v in values.items()}, pairs)
        for subset in sums:
            sums[subset][k] = ring.total(out[p] for p in subset)[0]
    for subset, observed in sums.items():
        if len(subset) == 3:
            assert (observed == sum(values.values())).all()
        else:
            assert _uniform_pvalue(observed) > P_MIN, subset
            assert len(np.unique(observed)) == sessions, subset  # no repeats in 2^64


def test_a_party_without_a_key_per_peer_or_outside_keyed_sharing_is_refused():
    spec = keyed()
    party = PartySession("alice", spec, [1.0], PartyPolicy(allow_exact=True), rng=Prg.from_int(1))
    party.accept()
    with pytest.raises(ProtocolError, match="one pair key per peer"):
        party.masked_partial({"bob": b"k" * 32})
    with pytest.raises(ProtocolError, match="no shares"):
        party.make_shares()
    with pytest.raises(ProtocolError, match="carries no shares"):
        party.receive_share(ShareMessage(spec.session_id, "bob", "alice", seed=b"k" * 32))
    assert party.state == "accepted"  # each refusal left it unchanged
    seeded = PartySession("alice", keyed(sharing="seeded"), [1.0], PartyPolicy(allow_exact=True))
    seeded.accept()
    with pytest.raises(ProtocolError, match="exchanges shares"):
        seeded.masked_partial({"bob": b"k" * 32, "carol": b"l" * 32})


def test_a_party_whose_policy_waits_for_every_answer_refuses_a_keyed_session():
    party = PartySession("alice", keyed(), [1.0], PartyPolicy(allow_exact=True, one_round=False))
    with pytest.raises(ProtocolError, match="one_round = false") as info:
        party.accept()
    assert info.value.status is Status.PERMISSION_DENIED and party.state == "refused"


def test_the_coordinator_takes_a_partial_sum_as_the_acceptance_and_checks_the_key_ids_pairwise():
    spec = keyed(bounds=(0, 100), frac_bits=0)
    pairs = pair_keys(THREE)
    out = partials(spec, {p: [1] for p in THREE}, pairs)
    ids = {p: {q: pair_key_id(k) for q, k in keys_of(p, THREE, pairs).items()} for p in THREE}

    good = CoordinatorSession(spec)
    assert good.state == "collecting-sums" and good.missing == list(THREE)
    for p in THREE:
        good.receive_partial(PartialSum(spec.session_id, p, out[p]))
        assert p in good.missing  # its key ids are still to come
        good.record_key_ids(p, ids[p])
    assert good.release().result["sum"] == 3

    with pytest.raises(ProtocolError, match="not collecting-responses"):
        CoordinatorSession(spec).record_response(Response(spec.session_id, "alice", True))
    refused = CoordinatorSession(spec)
    with pytest.raises(ProtocolError, match="bob refused"):
        refused.record_response(Response(spec.session_id, "bob", False, "no"))
    assert refused.state == "aborted"

    bad = CoordinatorSession(spec)
    bad.record_key_ids("alice", ids["alice"])
    with pytest.raises(ProtocolError, match="one pair key id per peer"):
        bad.record_key_ids("bob", {"alice": ids["bob"]["alice"]})
    with pytest.raises(ProtocolError, match="duplicate"):
        bad.record_key_ids("alice", ids["alice"])
    stale = dict(ids["carol"], alice=pair_key_id(b"x" * 32))  # carol re-agreed with alice mid-session
    with pytest.raises(ProtocolError, match="alice and carol masked with different pair keys") as info:
        bad.record_key_ids("carol", stale)
    assert (
        info.value.status is Status.ABORTED and bad.state == "aborted" and bad.culprit == ""
    )  # the pair is named, not one end
    with pytest.raises(ProtocolError, match="only a keyed session"):
        CoordinatorSession(keyed(sharing="seeded")).record_key_ids("alice", ids["alice"])


def test_a_refusing_peer_colluding_with_the_coordinator_yields_only_the_sum_of_those_who_answered():
    """carol refuses but hands her pair keys to the coordinator, which holds alice's and bob's keyed partial
    sums (sent before they knew carol refused). Removing carol's masks, it learns alice + bob (what the noise
    pieces are sized for: one colluder withheld), while alice's value stays behind the alice-bob mask it does
    not hold: uniform over 2,000 sessions. The same as a peer that accepts and withholds its partial sum."""
    pairs = pair_keys(THREE)
    values = {"alice": 5, "bob": 7}
    sessions = 2000
    alice_alone = np.empty(sessions, dtype=np.uint64)
    for k in range(sessions):
        spec = keyed(bounds=(0, 100), frac_bits=0, session_id=k.to_bytes(16, "big"))
        out = {}
        for i, p in enumerate(values):
            party = PartySession(p, spec, [values[p]], PartyPolicy(allow_exact=True), rng=Prg.from_int(i))
            party.accept()
            out[p] = party.masked_partial(keys_of(p, THREE, pairs)).vector
        unmasked = {}
        for p in values:  # the coordinator removes the mask p shares with carol, using carol's key
            carol_mask = ring.zeros(1)
            mask_pairwise(carol_mask, "carol", {p: pairs[frozenset((p, "carol"))]}, spec.digest)
            unmasked[p] = ring.total([out[p], carol_mask])
        assert ring.total(unmasked.values())[0] == 12  # the sum of the parties that answered
        alice_alone[k] = unmasked["alice"][0]
    assert _uniform_pvalue(alice_alone) > P_MIN and len(np.unique(alice_alone)) == sessions


def test_the_masks_are_bound_to_the_whole_spec_so_a_replayed_id_with_a_new_deadline_reveals_nothing():
    """A session id proposed again with another deadline (or any other field changed) is another spec: its
    masks are unrelated, so the difference of two partial sums of one party under the same pair keys is uniform
    (before, masks bound to the session id alone cancelled in it and left the difference of the inputs)."""
    pairs = pair_keys(THREE)
    base = keyed(bounds=(0, 100), frac_bits=0, session_id=b"r" * 16, deadline=1e10)
    assert base.digest == keyed(bounds=(0, 100), frac_bits=0, session_id=b"r" * 16, deadline=1e10).digest
    others = [keyed(bounds=(0, 100), frac_bits=0, session_id=b"r" * 16, deadline=1e10 + k) for k in range(1, 2001)]
    assert len({s.digest for s in [base, *others]}) == len(others) + 1
    assert keyed(bounds=(0, 99), frac_bits=0, session_id=b"r" * 16, deadline=1e10).digest != base.digest
    first = partials(base, {p: [5] for p in THREE}, pairs)["alice"]
    replays = np.concatenate([partials(s, {p: [1] for p in THREE}, pairs)["alice"] for s in others])
    differences = np.subtract(first, replays)  # mod 2^64
    assert _uniform_pvalue(differences) > P_MIN and (differences != 4).all()


def test_a_keyed_spec_takes_at_most_64_parties():
    from mpcdp.protocol import SpecError
    from mpcdp.protocol.spec import MAX_KEYED_PARTIES

    many = tuple(f"p{i}" for i in range(MAX_KEYED_PARTIES + 1))
    with pytest.raises(SpecError, match="at most 64 parties"):
        keyed(parties=many)
    assert keyed(parties=many[:-1]).sharing == "keyed" and keyed(parties=many, sharing="seeded").n_parties == 65


@pytest.mark.parametrize("length", [1, 5, SHORT_MASK_WORDS + 3, 300_001])
def test_a_partial_sum_masked_slice_by_slice_is_the_one_masked_whole_at_any_cuts(length):
    """masked_stream masks in order as it is asked (each pair's stream continued from slice to slice): whatever
    the cuts, the elements are masked_partial's, only the masked prefix is handed out, and the masks still
    cancel in the full sum."""
    spec = keyed(dimension=length, bounds=(0, 10), frac_bits=0, max_records=1)
    pairs = pair_keys(THREE)
    records = {p: [np.arange(length) % (i + 3)] for i, p in enumerate(THREE)}
    whole = partials(spec, records, pairs)
    cuts = sorted({0, 1, length // 3, length // 3 + 1, 2 * length // 3, length - 1, length, length + 5})
    sliced = {}
    for i, p in enumerate(THREE):
        party = PartySession(p, spec, records[p], PartyPolicy(allow_exact=True), rng=Prg.from_int(i))
        party.accept()
        stream = party.masked_stream(keys_of(p, THREE, pairs))
        assert party.state == "done" and stream.masked == 0 and stream.length == length
        for cut in cuts:
            prefix = stream.upto(cut)
            assert stream.masked == min(cut, length) and prefix.size == stream.masked
            assert np.shares_memory(prefix, stream.vector) or not prefix.size  # a view: nothing copied
        sliced[p] = stream.vector
        np.testing.assert_array_equal(sliced[p], whole[p])
    expected = sum(np.arange(length) % (i + 3) for i in range(3))
    np.testing.assert_array_equal(ring.total(sliced.values()), expected.astype(np.uint64))


def test_a_masked_stream_is_refused_as_masked_partial_is():
    spec = keyed(parties=("alice", "bob"), bounds=(0, 10), epsilon=0.5)
    party = PartySession("alice", spec, [3.0], PartyPolicy(), rng=Prg.from_int(1))
    with pytest.raises(ProtocolError, match="accepted"):
        party.masked_stream({"bob": b"k" * 32})  # not accepted yet
    party.accept()
    with pytest.raises(ProtocolError, match="one pair key per peer"):
        party.masked_stream({})
    stream = party.masked_stream({"bob": b"k" * 32})
    assert stream.masked == 0  # nothing masked yet: each slice as the link asks for it
    with pytest.raises(ProtocolError, match="done"):
        party.masked_stream({"bob": b"k" * 32})  # once
