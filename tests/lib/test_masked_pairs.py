"""Pair seeds without a key agreement per neighbour (mpcdp.protocol.masked): the two halves give both ends one
seed bound to the session and both names, the pad in a party's report turns its recovery key (and only it) into
that seed, a report or a rebuilt secret that does not fit is refused, and the mask stream is keyed by the seed."""

from __future__ import annotations

import numpy as np
import pytest

from mpcdp.prg import Prg
from mpcdp.protocol import PartyPolicy, ProtocolError, QuerySpec, Status, shamir
from mpcdp.protocol.masked import (
    KEY_BYTES,
    SHORT_MASK_WORDS,
    MaskedCoordinator,
    MaskedParty,
    MaskedQuery,
    Report,
    commitment,
    fold_masks,
    pair_seed,
    pair_seed_from_key,
    pair_stream,
)

EXACT = PartyPolicy(allow_exact=True)
SID = bytes(range(16))


def keyed_sessions(n: int = 8, quorum: int = 6):
    parties = tuple(f"p{i:02d}" for i in range(n))
    query = MaskedQuery.of(QuerySpec("sum", parties, bounds=(0, 100), colluders=1, session_id=SID), quorum)
    sessions = {p: MaskedParty(p, query, [float(i)], EXACT, rng=Prg.from_int(i + 1)) for i, p in enumerate(parties)}
    for s in sessions.values():
        s.accept()
    for s in sessions.values():
        for msg in s.key_shares():
            sessions[msg.recipient].receive_keys(msg)
    return query, sessions


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
    query, sessions = keyed_sessions()
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
    query, sessions = keyed_sessions()
    coordinator = MaskedCoordinator(query)
    for p in sessions:
        coordinator.record_response(p, True)
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

    query, sessions = keyed_sessions(8, quorum=6)
    coordinator = MaskedCoordinator(query)
    for p in sessions:
        coordinator.record_response(p, True)
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


@pytest.mark.parametrize("dimension", [1, SHORT_MASK_WORDS + 44])
def test_a_dropped_partys_masks_are_removed_on_short_and_long_vectors(dimension):
    from mpcdp.protocol.masked import run_masked_in_memory

    parties = tuple(f"p{i:02d}" for i in range(10))
    spec = QuerySpec("sum", parties, dimension=dimension, bounds=(0, 100), session_id=SID)
    query = MaskedQuery.of(spec, 8)
    data = {p: np.full((1, dimension), float(i)) for i, p in enumerate(parties)}
    run = run_masked_in_memory(query, data, drop={"p03": "mask", "p07": "reveal"}, rng=lambda p: Prg.from_int(len(p)))
    want = sum(i for i in range(10) if i != 3)
    assert np.array_equal(np.atleast_1d(run.release.value), np.full(dimension, float(want)))


def test_the_pads_alone_do_not_unmask_a_counted_party():
    """The attack on the pads: a coordinator holding every report (both pads of each edge) and a counted
    party's masked input, and even given its self-mask seed, cannot strip its pair masks from the pads without
    the recovery keys: neither pad, nor the XOR of an edge's two pads, is the pair seed; with the key it can."""
    from mpcdp.protocol.masked import _xor, self_purpose
    from mpcdp.protocol.statistics import codec_for

    query, sessions = keyed_sessions()
    coordinator = MaskedCoordinator(query)
    for p in sessions:
        coordinator.record_response(p, True)
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
