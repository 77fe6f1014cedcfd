"""Pair seeds without a key agreement per neighbour (mpcdp.protocol.masked): the two halves give both ends one
seed bound to the session and both names, the pad in a party's report turns its recovery key (and only it) into
that seed, a report or a rebuilt secret that does not fit is refused, and the mask stream is keyed by the seed."""

from __future__ import annotations

import numpy as np
import pytest

from mpcdp.prg import Prg, fold_streams
from mpcdp.protocol import PartyPolicy, ProtocolError, QuerySpec, Status, shamir
from mpcdp.protocol.masked import (
    KEY_BYTES,
    MaskedCoordinator,
    MaskedParty,
    MaskedQuery,
    Report,
    commitment,
    pair_seed,
    pair_seed_from_key,
)
from mpcdp.sharing import SHORT_MASK_WORDS, fold_masks, pair_stream
from tests.support.masked import accepted_with_keys, all_masked

EXACT = PartyPolicy(allow_exact=True)
SID = bytes(range(16))


def own_seed(p: str) -> Prg:
    """Each party its own random source (parties drawing alike would hide a mix-up of their secrets)."""
    return Prg.from_int(int(p[1:]) + 1)


def parties_of(n: int = 8, quorum: int = 6) -> tuple[MaskedQuery, dict[str, MaskedParty]]:
    """n parties p00, p01, ... (party i holds i) of a sum with one colluder."""
    parties = tuple(f"p{i:02d}" for i in range(n))
    query = MaskedQuery.of(QuerySpec("sum", parties, bounds=(0, 100), colluders=1, session_id=SID), quorum)
    return query, {p: MaskedParty(p, query, [float(i)], EXACT, rng=own_seed(p)) for i, p in enumerate(parties)}


def keyed_sessions(n: int = 8, quorum: int = 6) -> tuple[MaskedQuery, dict[str, MaskedParty], MaskedCoordinator]:
    query, sessions = parties_of(n, quorum)
    return query, sessions, accepted_with_keys(query, sessions)


def test_a_pair_seed_is_the_same_from_either_end_and_bound_to_session_names_and_halves():
    a, b = bytes([1]) * 32, bytes([2]) * 32
    seed = pair_seed(SID, "x", a, "y", b)
    assert seed == pair_seed(SID, "y", b, "x", a) and len(seed) == KEY_BYTES
    others = {
        pair_seed(bytes(16), "x", a, "y", b),
        pair_seed(SID, "x", a, "z", b),
        pair_seed(SID, "x", b, "y", a),
        pair_seed(SID, "x", a, "y", bytes(32)),
        pair_seed(SID, "x/", a, "y", b),  # names are length-bound, not joined
    }
    assert seed not in others and len(others) == 5


def test_both_ends_of_every_edge_hold_one_pair_seed_and_the_pad_gives_it_back_from_the_key_only():
    query, sessions, _ = keyed_sessions()
    reports = {p: s.report() for p, s in sessions.items()}
    for p, s in sessions.items():
        assert reports[p].heard == query.graph.neighbours(p)
        for q in reports[p].heard:
            seed = s._pair_seed(q)
            assert seed == sessions[q]._pair_seed(p)
            assert pair_seed_from_key(s._key, reports[p], q) == seed  # the dropped party's recovery
            assert reports[p].pad(q) != seed and reports[p].pad(q) != reports[q].pad(p)
            assert pair_seed_from_key(sessions[q]._key, reports[p], q) != seed  # another party's key: no
    assert reports["p00"].key_commitment == commitment(sessions["p00"]._key, SID, "p00", "key")


@pytest.mark.parametrize(
    "change",
    [
        dict(pads=b""),  # no pad for the names heard
        dict(key_commitment=b"short"),
        dict(heard=("p01", "p01")),  # a name twice
    ],
    ids=["pads", "commitment", "duplicate"],
)
def test_a_malformed_report_is_refused(change):
    _, sessions, coordinator = keyed_sessions()
    good = sessions["p00"].report()
    fields = {**good.__dict__, **change}
    if change.get("heard"):
        fields["pads"] = good.pads[: KEY_BYTES * 2]
    with pytest.raises(ProtocolError) as err:
        coordinator.record_report(Report(**fields))
    assert err.value.status == Status.INVALID_ARGUMENT
    coordinator.record_report(good)


def test_key_shares_of_another_secret_fail_the_commitment_check():
    """Key shares that fit together but rebuild a key other than the committed one are refused at the release
    (a share check by range alone would have let them through)."""
    from mpcdp.protocol.masked import Reveal

    query, sessions, coordinator = keyed_sessions(8, quorum=6)
    for s in sessions.values():
        coordinator.record_report(s.report())
    dropped = "p03"
    for roster in coordinator.rosters():
        if roster.party != dropped:
            coordinator.receive_masked(sessions[roster.party].masked_input(roster))
    t = query.plan.threshold
    forged = shamir.split([bytes([7]) * 32], [query.point(p) for p in query.spec.parties], t, Prg.from_int(99))[0]
    forged_bytes = dict(zip(query.spec.parties, shamir.share_bytes(forged), strict=True))
    for unmask in coordinator.unmask():
        reveal = sessions[unmask.party].reveal(unmask)
        keys = {d: forged_bytes[unmask.party] if d == dropped else s for d, s in reveal.key_shares.items()}
        coordinator.receive_reveal(Reveal(reveal.session_id, reveal.party, reveal.seed_shares, keys))
    with pytest.raises(ProtocolError) as err:
        coordinator.release()
    assert err.value.status == Status.INVALID_ARGUMENT and f"{dropped}'s recovery key" in str(err.value)


def test_the_pair_stream_is_aes_ctr_keyed_by_the_seed_from_the_counter_block_two():
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    seed = pair_seed(SID, "x", bytes(32), "y", bytes([1]) * 32)
    a, b = pair_stream(seed), pair_stream(seed)
    assert np.array_equal(a.uint64(3), b.uint64(3))
    ctr = Cipher(algorithms.AES(seed[:16]), modes.CTR((2).to_bytes(16, "big"))).encryptor()
    assert pair_stream(seed).bytes(48) == ctr.update(bytes(48))
    assert not np.array_equal(pair_stream(bytes(32)).uint64(3), pair_stream(seed).uint64(3))
    with pytest.raises(ValueError, match="16 bytes"):
        Prg.keyed(bytes(32))


@pytest.mark.parametrize("length", [1, SHORT_MASK_WORDS, SHORT_MASK_WORDS + 1, 3000])
def test_masks_on_either_side_of_the_short_length_cancel_and_are_the_pair_stream(length):
    seeds = [pair_seed(SID, "x", bytes([i]) * 32, "y", bytes(32)) for i in range(3)]
    y = np.arange(length, dtype=np.uint64)
    fold_masks(y, seeds[:2], seeds[2:])
    words = [pair_stream(s).uint64(length) for s in seeds]  # one stream, made either way
    assert np.array_equal(y, np.arange(length, dtype=np.uint64) + words[0] + words[1] - words[2])
    fold_masks(y, seeds[2:], seeds[:2])
    assert np.array_equal(y, np.arange(length, dtype=np.uint64))


def released_with_drops(dimension: int, rng=own_seed) -> tuple[np.ndarray | None, float]:
    """Ten parties (party i holds i), p03 drops before masking, p07 after (no reveal): the released vector
    (None if the release failed) and the sum it must be."""
    from mpcdp.protocol.masked import run_masked_in_memory

    parties = tuple(f"p{i:02d}" for i in range(10))
    spec = QuerySpec("sum", parties, dimension=dimension, bounds=(0, 100), session_id=SID)
    data = {p: np.full((1, dimension), float(i)) for i, p in enumerate(parties)}
    try:
        run = run_masked_in_memory(MaskedQuery.of(spec, 8), data, drop={"p03": "mask", "p07": "reveal"}, rng=rng)
    except (ProtocolError, ValueError):
        return None, 0.0
    return np.atleast_1d(run.release.value), float(sum(i for i in range(10) if i != 3))


@pytest.mark.parametrize("dimension", [1, SHORT_MASK_WORDS + 44])
def test_a_dropped_partys_masks_are_removed_on_short_and_long_vectors(dimension):
    value, want = released_with_drops(dimension)
    assert value is not None and np.array_equal(value, np.full(dimension, want))


@pytest.mark.parametrize("dimension", [1, SHORT_MASK_WORDS + 44])
def test_a_coordinator_that_mixes_up_parties_secrets_fails_the_test_above(monkeypatch, dimension):
    """The test above catches a release that removes one party's rebuilt self mask for another (each party has
    its own random source); with every party drawing alike, as it once did, the mix-up went unseen."""
    rebuild = MaskedCoordinator._rebuild

    def mixed_up(self, shares, parties, what):
        secrets = rebuild(self, shares, parties, what)
        return secrets[1:] + secrets[:1]  # party i's secret used for party i - 1

    monkeypatch.setattr(MaskedCoordinator, "_rebuild", mixed_up)
    value, want = released_with_drops(dimension)
    assert value is None or not np.array_equal(value, np.full(dimension, want))
    value, want = released_with_drops(dimension, rng=lambda p: Prg.from_int(len(p)))  # all parties alike
    assert value is not None and np.array_equal(value, np.full(dimension, want))


def test_the_pads_alone_do_not_unmask_a_counted_party():
    """The attack on the pads: a coordinator holding every report (both pads of each edge) and a counted
    party's masked input, and even given its self-mask seed, cannot strip its pair masks from the pads without
    the recovery keys: neither pad, nor the XOR of an edge's two pads, is the pair seed; with the key it can."""
    from mpcdp.protocol.masked import _xor, self_purpose
    from mpcdp.protocol.statistics import codec_for

    query, sessions, coordinator = keyed_sessions()
    reports = {p: s.report() for p, s in sessions.items()}
    for r in reports.values():
        coordinator.record_report(r)
    inputs = {r.party: sessions[r.party].masked_input(r) for r in coordinator.rosters()}
    victim = "p02"
    codec = codec_for(query.spec)

    def strip(seed_of) -> float:
        y = inputs[victim].vector.copy()
        Prg(sessions[victim]._seed, SID, self_purpose(victim)).add_into(y, subtract=True)
        for q in reports[victim].heard:
            fold_masks(y, *([seed_of(q)], []) if query.sign(victim, q) else ([], [seed_of(q)]))
        return codec.decode(y)["sum"]

    assert strip(lambda q: reports[victim].pad(q)) != 2.0
    assert strip(lambda q: _xor(reports[victim].pad(q), reports[q].pad(victim))) != 2.0
    assert strip(lambda q: pair_seed_from_key(sessions[victim]._key, reports[victim], q)) == 2.0


@pytest.mark.parametrize(
    "change",
    [dict(key_share=b"\xff" * shamir.SHARE_BYTES), dict(seed_share=b"\x01"), dict(half=b"short")],
    ids=["key-share-not-in-field", "seed-share-short", "half-short"],
)
def test_a_neighbours_malformed_share_is_refused_on_arrival_naming_the_sender(change):
    """p07 sends p00 a share that is not a field element (or is short): p00 refuses p07's keys when they
    arrive, naming p07, so p00 does not hear p07 and its reveal (which would have forwarded the bad share and
    been refused, naming p00) is accepted; the release goes ahead without p07."""
    from dataclasses import replace

    query, sessions = parties_of(8, quorum=6)
    coordinator = MaskedCoordinator(query)
    for p, s in sessions.items():
        s.accept()
        coordinator.record_response(p, True)
    refused = []
    for p, s in sessions.items():
        for msg in s.key_shares():
            if p == "p07" and msg.recipient == "p00":
                with pytest.raises(ProtocolError) as err:
                    sessions["p00"].receive_keys(replace(msg, **change))
                refused.append(err.value)
            else:
                sessions[msg.recipient].receive_keys(msg)
    (err,) = refused
    assert err.status == Status.INVALID_ARGUMENT and "p07" in str(err) and "p00" not in str(err)
    assert sessions["p00"].missing == ["p07"]
    for s in sessions.values():
        coordinator.record_report(s.report())
    for roster in coordinator.rosters():
        if roster.party != "p07":  # the sender of the bad share drops
            coordinator.receive_masked(sessions[roster.party].masked_input(roster))
    for unmask in coordinator.unmask():
        coordinator.receive_reveal(sessions[unmask.party].reveal(unmask))  # p00's reveal included
    assert coordinator.release().value == sum(range(7))


def test_the_coordinators_short_masks_take_memory_bounded_by_the_length_not_the_number_of_seeds():
    """Removing thousands of masks at the short-vector length makes them in batches of at most MASK_BATCH_BYTES:
    the peak is the same for 60 and for 600 seeds (it was 600 x (8 L + 16) bytes at once: 19.7 MB at L = 4096),
    and the sum is still every pair stream's."""
    import tracemalloc

    from mpcdp.sharing import MASK_BATCH_BYTES

    seeds = [pair_seed(SID, "x", i.to_bytes(32, "big"), "y", bytes(32)) for i in range(600)]
    peaks = {}
    for count in (60, 600):
        out = np.zeros(SHORT_MASK_WORDS, np.uint64)
        tracemalloc.start()
        fold_masks(out, seeds[: count // 2], seeds[count // 2 : count])
        peaks[count] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[600] < 1.5 * peaks[60] and peaks[600] < 2 * MASK_BATCH_BYTES + 16 * 8 * SHORT_MASK_WORDS, peaks
    want = np.zeros(SHORT_MASK_WORDS, np.uint64)
    fold_streams(want, [pair_stream(s) for s in seeds[:300]], [pair_stream(s) for s in seeds[300:]])
    assert np.array_equal(out, want)


def test_one_inconsistent_share_does_not_abort_a_release_with_more_than_t_shares_in_hand():
    """A neighbour reveals a wrong self-mask share (a field element, consistent in form): with more than t
    shares of that seed in hand the coordinator rebuilds it from t that fit the commitment; the release is
    right. Every share wrong still aborts (test_key_shares_of_another_secret_fail_the_commitment_check)."""
    from mpcdp.protocol.masked import Reveal

    query, sessions = parties_of(8, quorum=6)
    coordinator = all_masked(query, sessions)
    t, victim = query.plan.threshold, "p02"
    holders = sorted(query.point(p) for p in query.graph.neighbours(victim))
    assert len(holders) > t
    liar = query.spec.parties[holders[1] - 1]  # among the first t shares of p02's seed
    for unmask in coordinator.unmask():
        reveal = sessions[unmask.party].reveal(unmask)
        if unmask.party == liar:
            wrong = (np.frombuffer(reveal.seed_shares[victim], ">u4") + 1) % shamir.PRIME
            seeds = {**reveal.seed_shares, victim: wrong.astype(">u4").tobytes()}
            reveal = Reveal(reveal.session_id, reveal.party, seeds, reveal.key_shares)
        coordinator.receive_reveal(reveal)
    assert coordinator.release().value == sum(range(8))


def test_a_party_forgets_its_secrets_once_it_has_revealed_and_when_it_aborts():
    query, sessions = parties_of(8, quorum=6)
    coordinator = all_masked(query, sessions)
    sessions["p05"].abort()
    for unmask in coordinator.unmask():
        if unmask.party != "p05":
            sessions[unmask.party].reveal(unmask)
    for s in sessions.values():
        held = (s._key, s._seed, s._halves, s._keys, s._pair_seeds, s._shares)
        assert held == (b"", b"", {}, {}, {}, {}), s.me


@pytest.mark.parametrize("first_block", [-1, 1 << 128], ids=["negative", "past-128-bits"])
def test_a_keyed_stream_refuses_a_first_block_outside_the_counter(first_block):
    with pytest.raises(ValueError, match="128-bit counter block"):
        Prg.keyed(bytes(16), first_block=first_block)


def test_a_keyed_stream_from_any_first_block_adds_no_cached_mode():
    """Only the counter modes in use are kept; another first block gives the right stream, nothing cached."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from mpcdp import prg

    held = dict(prg._CTR_FROM)
    ctr = Cipher(algorithms.AES(bytes(16)), modes.CTR((5).to_bytes(16, "big"))).encryptor()
    assert Prg.keyed(bytes(16), first_block=5).bytes(32) == ctr.update(bytes(32))
    assert held == prg._CTR_FROM
