"""Prio3 (mpcdp.vdaf): fields, XOF, FLP, the VDAF's steps and encodings, and the attacks it stops.

Byte-level conformance is in test_vdaf_vectors.py (draft-08 vectors) and test_vdaf_interop.py
(@divviup/prio3 0.8.0 in Node).
"""

import contextlib

import numpy as np
import pytest

from mpcdp.prg import Prg
from mpcdp.vdaf import (
    DecodeError,
    Field,
    Field64,
    Field128,
    Prio3Count,
    Prio3Histogram,
    Prio3MultiHotHistogram,
    Prio3Sum,
    Prio3SumVec,
    VerifyError,
    XofTurboShake128,
)
from mpcdp.vdaf.flp import FlpGeneric
from mpcdp.vdaf.xof import _public_turboshake, turboshake128

VERIFY_KEY = bytes(range(16))
FIELDS = [Field64, Field128]


def _prep_batch(vdaf, agg_id, reports):
    """Aggregator ``agg_id``'s batch preparation of ``(nonce, public share, input shares)`` reports, from the wire."""
    encode_public, encode_share = vdaf.encode_public_share, vdaf.encode_input_share
    wire = [(n, encode_public(ps), encode_share(s[agg_id])) for n, ps, s in reports]
    return vdaf.prep_init_encoded_batch(VERIFY_KEY, agg_id, None, wire)


# --- fields ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_roots_of_unity_have_exact_order(field):
    p = field.modulus
    assert pow(field.generator, field.gen_order, p) == 1 and pow(field.generator, field.gen_order // 2, p) != 1
    for n in (2, 8, 1 << 20):
        w = field.root(n)
        assert pow(w, n, p) == 1 and pow(w, n // 2, p) == p - 1
    with pytest.raises(ValueError, match="no root of unity of order 6"):
        field.root(6)


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_ntt_evaluates_at_roots_and_inverts(field):
    rng = np.random.default_rng(1)  # test data only, not secrets
    for n in (1, 2, 16):
        coeffs = [int(x) % field.modulus for x in rng.integers(0, 2**62, n)]
        values = field.ntt(coeffs)
        w = field.root(n)
        assert values == [field.poly_eval(coeffs, pow(w, k, field.modulus)) for k in range(n)]
        assert field.ntt(values, inverse=True) == coeffs


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_lagrange_basis_and_inverses(field):
    p, n, t = field.modulus, 8, 123456789
    coeffs = [(3**i + 7) % p for i in range(n)]
    basis = field.lagrange_at(n, t)
    assert sum(v * b for v, b in zip(field.ntt(coeffs), basis)) % p == field.poly_eval(coeffs, t)
    xs = [5, p - 1, 2**40 + 3]
    assert field.batch_inv(xs) == [pow(x, -1, p) for x in xs]
    column = np.array(xs, dtype=object)
    assert list(field.inv(column)) == [pow(x, -1, p) for x in xs]
    assert list(field.power(column, 13)) == [pow(x, 13, p) for x in xs]


def test_field_decoding_refuses_bad_bytes():
    assert Field64.decode_vec(Field64.encode_vec([0, 5, Field64.modulus - 1])) == [0, 5, Field64.modulus - 1]
    with pytest.raises(DecodeError, match="not below the Field64 modulus"):
        Field64.decode_vec(Field64.modulus.to_bytes(8, "little"))
    with pytest.raises(DecodeError, match="17 bytes is not a whole number of Field128 elements"):
        Field128.decode_vec(bytes(17))


# --- XOF -------------------------------------------------------------------------------------------------
def test_direct_turboshake_equals_the_public_api():
    for n, k in ((0, 1), (1, 16), (167, 168), (168, 300), (1000, 33), (10, 5000), (3, 7)):
        message = bytes(i % 251 for i in range(n))
        assert turboshake128(message, k) == _public_turboshake(message, k)


def test_rejection_sampling_keeps_stream_order():
    """A toy field (p = 97 in one byte) rejects a quarter of the bytes: the vector must be the
    accepted bytes in stream order, read one at a time as the draft does."""
    toy = Field(name="Toy", modulus=97, encoded_size=1, gen_order=32, generator=1)
    seed, dst, binder = bytes(16), b"dst", b"binder"
    vec = XofTurboShake128.expand_into_vec(toy, seed, dst, binder, 200)
    xof, expected = XofTurboShake128(seed, dst, binder), []
    while len(expected) < 200:
        x = xof.next(1)[0] & 127
        if x < 97:
            expected.append(x)
    assert vec == expected
    assert XofTurboShake128.expand_into_vec(Field128, seed, dst, binder, 9) == XofTurboShake128(
        seed, dst, binder
    ).next_vec(Field128, 9)
    with pytest.raises(ValueError, match="seeds are 16 bytes"):
        XofTurboShake128.derive_seed(bytes(15), dst, binder)


# --- FLP --------------------------------------------------------------------------------------------------
CIRCUITS = {
    "Count": (lambda s: Prio3Count(s), [0, 1, 1], 2),
    "Sum": (lambda s: Prio3Sum(s, 16), [0, 65535, 300], 65835),
    "SumVec": (lambda s: Prio3SumVec(s, 3, 4, 4), [[15, 0, 1], [1, 2, 3], [0, 0, 0]], [16, 2, 4]),
    "Histogram": (lambda s: Prio3Histogram(s, 10, 3), [0, 9, 9], [1, 0, 0, 0, 0, 0, 0, 0, 0, 2]),
    "MultiHotHistogram": (
        lambda s: Prio3MultiHotHistogram(s, 6, 3, 2),
        [[1, 1, 1, 0, 0, 0], [0] * 6, [0, 1, 0, 0, 0, 1]],
        [1, 2, 1, 0, 0, 1],
    ),
}

# encoded measurements no honest client can produce (each with an honestly computed proof)
FORGED = {
    "Count": [[2], [-1], [10**6]],
    "Sum": [[2] + [0] * 15, [-1] + [0] * 15, [10**6] + [0] * 15],
    "SumVec": [[2] + [0] * 11, [1] * 11 + [-1]],
    "Histogram": [[1, 1] + [0] * 8, [0] * 10, [10**6] + [0] * 9, [2, -1] + [0] * 8],
    "MultiHotHistogram": [
        [1, 1, 1, 1, 0, 0, 1, 1],  # 4 buckets set, count bits claim 3 (offset 0)
        [1, 1, 1, 1, 0, 0, 0, 0],  # 4 set, count bits claim 0
        [2, 0, 0, 0, 0, 0, 0, 1],
    ],  # a bucket of 2
}


@pytest.mark.parametrize("kind", CIRCUITS)
def test_flp_decides_valid_and_invalid_measurements(kind):
    vdaf = CIRCUITS[kind][0](2)
    flp: FlpGeneric = vdaf.flp
    p = flp.field.modulus
    rng = Prg.from_int(7, purpose=kind)

    def check(meas):
        prove_rand = [int.from_bytes(rng.bytes(8), "little") for _ in range(flp.PROVE_RAND_LEN)]
        query_rand = [int.from_bytes(rng.bytes(8), "little") + 2 for _ in range(flp.QUERY_RAND_LEN)]
        joint_rand = [int.from_bytes(rng.bytes(8), "little") for _ in range(flp.JOINT_RAND_LEN)]
        proof = flp.prove(meas, prove_rand, joint_rand)
        assert len(proof) == flp.PROOF_LEN
        return flp.decide(flp.query(meas, proof, query_rand, joint_rand, 1))

    for m in CIRCUITS[kind][1]:
        assert check(flp.encode(m))
    for meas in FORGED[kind]:
        assert not check([x % p for x in meas])


def test_flp_refuses_a_query_point_on_the_interpolation_nodes():
    flp = Prio3Count(2).flp
    proof = flp.prove([1], [3, 4], [])
    with pytest.raises(VerifyError, match="root of unity"):
        flp.query([1], proof, [1], [], 1)


# --- Prio3 end to end -------------------------------------------------------------------------------------
def _prepare(vdaf, nonce, public_share, input_shares, verify_keys=None):
    keys = verify_keys or [VERIFY_KEY] * vdaf.SHARES
    states, shares = zip(
        *(vdaf.prep_init(keys[j], j, None, nonce, public_share, s) for j, s in enumerate(input_shares))
    )
    msg = vdaf.prep_shares_to_prep(None, shares)
    return [vdaf.prep_next(st, msg) for st in states]


def _wire(vdaf, nonce, public_share, input_shares):
    """A report through its encodings, as aggregators receive it."""
    return (
        nonce,
        vdaf.decode_public_share(vdaf.encode_public_share(public_share)),
        [vdaf.decode_input_share(j, vdaf.encode_input_share(s)) for j, s in enumerate(input_shares)],
    )


@pytest.mark.parametrize("shares", [2, 3, 5])
@pytest.mark.parametrize("kind", CIRCUITS)
def test_round_trip_per_report_and_in_batch(kind, shares):
    make, measurements, expected = CIRCUITS[kind]
    vdaf = make(shares)
    rng = Prg.from_int(shares, purpose=kind)
    reports = [_wire(vdaf, *vdaf.shard_random(m, rng)) for m in measurements]
    out = [_prepare(vdaf, *r) for r in reports]
    agg = [vdaf.aggregate(None, [o[j] for o in out]) for j in range(shares)]
    agg = [vdaf.decode_agg_share(vdaf.encode_agg_share(a)) for a in agg]
    assert vdaf.unshard(None, agg, len(reports)) == expected

    # the batch path straight from the wire gives the same prep shares and messages
    batches = [_prep_batch(vdaf, j, reports) for j in range(shares)]
    for i, (nonce, public_share, input_shares) in enumerate(reports):
        single = [vdaf.prep_init(VERIFY_KEY, j, None, nonce, public_share, s) for j, s in enumerate(input_shares)]
        assert [b[i][1] for b in batches] == [s[1] for s in single]
        assert [b[i][0] for b in batches] == [s[0] for s in single]
    msgs = vdaf.prep_shares_to_prep_batch(None, [[b[i][1] for b in batches] for i in range(len(reports))])
    assert [[vdaf.prep_next(b[i][0], m) for b in batches] for i, m in enumerate(msgs)] == out

    wire_shares = [[vdaf.encode_prep_share(b[i][1]) for b in batches] for i in range(len(reports))]
    assert vdaf.prep_shares_to_prep_encoded_batch(None, wire_shares) == msgs


@pytest.mark.parametrize("shares", [2, 3, 5])
@pytest.mark.parametrize("kind", CIRCUITS)
def test_forged_measurements_with_honest_proofs_are_rejected(kind, shares):
    """The attack of issue 11: a client encodes an out-of-range vector and proves it as well as it
    can. Every aggregator's share looks random, but the combined verifier rejects it."""
    vdaf = CIRCUITS[kind][0](shares)
    rng = Prg.from_int(100 + shares, purpose=kind)
    reports = []
    for meas in FORGED[kind]:
        nonce = rng.bytes(16)
        report = _wire(vdaf, nonce, *vdaf.shard_encoded(meas, nonce, rng.bytes(vdaf.RAND_SIZE)))
        with pytest.raises(VerifyError, match="does not verify: its measurement is not valid"):
            _prepare(vdaf, *report)
        reports.append(report)
    batches = [_prep_batch(vdaf, j, reports) for j in range(shares)]
    msgs = vdaf.prep_shares_to_prep_batch(None, [[b[i][1] for b in batches] for i in range(len(reports))])
    assert all(isinstance(m, VerifyError) for m in msgs)
    wire_shares = [[vdaf.encode_prep_share(b[i][1]) for b in batches] for i in range(len(reports))]
    assert all(isinstance(m, VerifyError) for m in vdaf.prep_shares_to_prep_encoded_batch(None, wire_shares))


def test_one_forged_report_moves_the_aggregate_by_nothing():
    """200 honest Histogram reports and 20 forged ones (10^6 in one cell, two cells, none): the
    accepted aggregate is exactly the honest histogram and 20 reports are rejected."""
    vdaf = Prio3Histogram(3, 5, 2)
    rng = Prg.from_int(11)
    honest = [int.from_bytes(rng.bytes(1), "little") % 5 for _ in range(200)]
    reports = [vdaf.shard_random(m, rng) for m in honest]
    for k in range(20):
        meas = [[10**6, 0, 0, 0, 0], [1, 0, 1, 0, 0], [0] * 5, [0, 0, 0, 0, -1]][k % 4]
        nonce = rng.bytes(16)
        reports.append((nonce, *vdaf.shard_encoded(meas, nonce, rng.bytes(vdaf.RAND_SIZE))))
    batches = [_prep_batch(vdaf, j, reports) for j in range(3)]
    msgs = vdaf.prep_shares_to_prep_batch(None, [[b[i][1] for b in batches] for i in range(len(reports))])
    accepted = [i for i, m in enumerate(msgs) if not isinstance(m, VerifyError)]
    assert accepted == list(range(200))
    agg = [vdaf.aggregate(None, [vdaf.prep_next(batches[j][i][0], msgs[i]) for i in accepted]) for j in range(3)]
    assert vdaf.unshard(None, agg, len(accepted)) == [honest.count(b) for b in range(5)]


def test_tampered_reports_are_rejected():
    vdaf = Prio3Histogram(2, 10, 3)
    rng = Prg.from_int(5)
    nonce, public_share, (leader, helper) = vdaf.shard_random(3, rng)
    p = vdaf.field.modulus

    proofs = list(leader.proofs_share)
    proofs[-1] = (proofs[-1] + 1) % p  # a changed gadget polynomial coefficient
    with pytest.raises(VerifyError, match="does not verify"):
        _prepare(vdaf, nonce, public_share, [type(leader)(leader.meas_share, proofs, leader.blind), helper])

    meas = list(leader.meas_share)  # a changed measurement share: another (invalid) measurement
    meas[0] = (meas[0] + 1) % p
    with pytest.raises(VerifyError):
        _prepare(vdaf, nonce, public_share, [type(leader)(meas, leader.proofs_share, leader.blind), helper])

    parts = list(public_share.joint_rand_parts)  # a lying joint randomness part
    parts[1] = bytes(16)
    with pytest.raises(VerifyError):
        _prepare(vdaf, nonce, type(public_share)(tuple(parts)), [leader, helper])

    with pytest.raises(VerifyError):  # aggregators that disagree on the verify key
        _prepare(vdaf, nonce, public_share, [leader, helper], verify_keys=[VERIFY_KEY, bytes(16)])

    with pytest.raises(VerifyError):  # another report's nonce (replayed shares)
        _prepare(vdaf, rng.bytes(16), public_share, [leader, helper])
    assert _prepare(vdaf, nonce, public_share, [leader, helper])  # the untouched report still verifies


def test_decoding_refuses_malformed_messages():
    vdaf = Prio3Sum(2, 8)
    rng = Prg.from_int(9)
    nonce, public_share, shares = vdaf.shard_random(200, rng)
    leader = vdaf.encode_input_share(shares[0])
    assert len(leader) == vdaf.input_share_size(0)
    assert len(vdaf.encode_input_share(shares[1])) == vdaf.input_share_size(1)
    with pytest.raises(DecodeError, match=f"leader input share: expected {len(leader)} bytes, got {len(leader) - 1}"):
        vdaf.decode_input_share(0, leader[:-1])
    with pytest.raises(DecodeError, match="helper input share: expected 48 bytes"):
        vdaf.decode_input_share(1, bytes(47))
    with pytest.raises(DecodeError, match="not below the Field128 modulus"):
        vdaf.decode_input_share(0, b"\xff" * 16 + leader[16:])
    with pytest.raises(DecodeError, match="public share: expected 32 bytes"):
        vdaf.decode_public_share(bytes(31))
    with pytest.raises(DecodeError, match="prep share"):
        vdaf.decode_prep_share(bytes(10))
    with pytest.raises(DecodeError, match="prep message: expected 16 bytes"):
        vdaf.decode_prep_msg(b"")
    with pytest.raises(DecodeError, match="aggregator 1 needs a helper input share"):
        vdaf.prep_init(VERIFY_KEY, 1, None, nonce, public_share, shares[0])
    with pytest.raises(ValueError, match=r"aggregator id must be in \[0, 2\)"):
        vdaf.decode_input_share(2, bytes(48))
    with pytest.raises(ValueError, match="nonce: expected 16 bytes"):
        vdaf.shard(1, bytes(8), bytes(vdaf.RAND_SIZE))


@pytest.mark.parametrize(
    "make,bad,message",
    [
        (lambda: Prio3Count(2), 2, "a Count measurement is 0 or 1"),
        (lambda: Prio3Sum(2, 8), 256, r"a Sum measurement must be an integer \[0, 256\)"),
        (lambda: Prio3Sum(2, 8), -1, r"a Sum measurement must be an integer \[0, 256\)"),
        (lambda: Prio3Histogram(2, 4, 2), 4, "bucket index"),
        (lambda: Prio3SumVec(2, 2, 2, 2), [1, 4], r"a SumVec entry must be an integer \[0, 4\)"),
        (lambda: Prio3SumVec(2, 2, 2, 2), [1], "has 2 entries"),
        (lambda: Prio3MultiHotHistogram(2, 4, 2, 2), [1, 1, 1, 0], "at most 2 buckets"),
    ],
)
def test_honest_clients_cannot_shard_invalid_measurements(make, bad, message):
    vdaf = make()
    with pytest.raises(ValueError, match=message):
        vdaf.shard_random(bad, Prg.from_int(1))


def test_instance_parameters_are_checked():
    with pytest.raises(ValueError, match="2 to 255 aggregators"):
        Prio3Count(1)
    with pytest.raises(ValueError, match="2 to 255 aggregators"):
        Prio3Count(256)
    with pytest.raises(ValueError, match="chunk_length must be an integer"):
        Prio3Histogram(2, 10, 0)
    _nonce, _public_share, shares = Prio3Count(2).shard_random(1, Prg.from_int(1))
    assert "<" in repr(shares[0]) and str(shares[0].meas_share[0]) not in repr(shares[0])


def test_a_degenerate_query_point_refuses_the_report(monkeypatch):
    """If the verifier's random point t is an interpolation node (t^P = 1, probability ~2^-60),
    the query would leak gadget outputs: the report is refused, alone or in a batch."""
    vdaf = Prio3Histogram(2, 4, 2)
    rng = Prg.from_int(4)
    reports = [vdaf.shard_random(1, rng) for _ in range(3)]
    bad_nonce, query_dst = reports[1][0], vdaf._dst[5]

    class DegenerateXof(XofTurboShake128):  # the query point of one report becomes t = 1
        @classmethod
        def expand_into_vec(cls, field, seed, dst, binder, length):
            if dst == query_dst and binder.endswith(bad_nonce):
                return [1] * length
            return super().expand_into_vec(field, seed, dst, binder, length)

        @classmethod
        def expand_into_matrix(cls, field, seeds, dst, binders, length):
            matrix, rows = super().expand_into_matrix(field, seeds, dst, binders, length)
            for k, binder in enumerate(binders):
                if dst == query_dst and binder.endswith(bad_nonce):
                    matrix[k] = 1
            return matrix, rows

    monkeypatch.setattr(vdaf, "Xof", DegenerateXof)
    with pytest.raises(VerifyError, match="root of unity"):
        vdaf.prep_init(VERIFY_KEY, 0, None, *reports[1][:2], reports[1][2][0])
    with pytest.raises(VerifyError, match="report 1 of the batch"):
        _prep_batch(vdaf, 0, reports)
    assert len(_prep_batch(vdaf, 0, reports[::2])) == 2


def test_the_wire_batch_refuses_malformed_reports_in_place():
    vdaf = Prio3Histogram(2, 10, 3)
    rng = Prg.from_int(12)
    reports = [vdaf.shard_random(m, rng) for m in (1, 2, 3, 4, 5)]
    wire = [[n, vdaf.encode_public_share(ps), vdaf.encode_input_share(s[0])] for n, ps, s in reports]
    wire[1][2] = wire[1][2][:-1]  # truncated share
    wire[2][2] = b"\xff" * 16 + wire[2][2][16:]  # an element above p
    wire[3][0] = bytes(15)  # a bad nonce
    results = vdaf.prep_init_encoded_batch(VERIFY_KEY, 0, None, [tuple(w) for w in wire])
    assert [type(r).__name__ for r in results] == ["tuple", "DecodeError", "DecodeError", "DecodeError", "tuple"]
    assert "expected" in str(results[1]) and "modulus" in str(results[2]) and "nonce" in str(results[3])
    for i in (0, 4):
        n, ps, s = reports[i]
        assert results[i] == vdaf.prep_init(VERIFY_KEY, 0, None, n, ps, s[0])


def test_helper_expansion_falls_back_to_rejection_sampling(monkeypatch):
    """An XOF output element at or above p (probability 2^-62 per element) makes the vectorised
    expansion redo that report's row by rejection sampling, in stream order."""
    from mpcdp.vdaf import xof as module

    vdaf = Prio3SumVec(3, 3, 2, 2)
    rng = Prg.from_int(13)
    reports = [vdaf.shard_random([1, 2, 3], rng) for _ in range(3)]
    seeds = {reports[1][2][2].meas_seed, reports[1][2][2].proofs_seed}
    real, spoiled = module.turboshake128, set()

    def above_p_once(message, length):  # report 1's first expansions read all-ones words
        seed = next((x for x in seeds if x in message and x not in spoiled), None)
        if seed is not None:
            spoiled.add(seed)
            return b"\xff" * length
        return real(message, length)

    monkeypatch.setattr(module, "turboshake128", above_p_once)
    batch = _prep_batch(vdaf, 2, reports)
    monkeypatch.setattr(module, "turboshake128", real)
    assert spoiled == seeds
    assert batch == [vdaf.prep_init(VERIFY_KEY, 2, None, n, ps, s[2]) for n, ps, s in reports]


def test_several_proofs_per_report():
    """PROOFS > 1 (draft 08 allows up to 255; its instances use 1): every proof must verify."""
    from mpcdp.vdaf import Prio3
    from mpcdp.vdaf.circuits import Count, Histogram

    for circuit, good, bad in ((Count(), 1, [2]), (Histogram(5, 2), 3, [1, 1, 0, 0, 0])):
        vdaf = Prio3("test", 0xFFFF0000, circuit, shares=3, proofs=3)
        rng = Prg.from_int(21)
        nonce, public_share, shares = vdaf.shard_random(good, rng)
        assert len(shares[0].proofs_share) == 3 * vdaf.flp.PROOF_LEN
        assert _prepare(vdaf, *_wire(vdaf, nonce, public_share, shares))
        nonce = rng.bytes(16)
        forged = _wire(vdaf, nonce, *vdaf.shard_encoded(bad, nonce, rng.bytes(vdaf.RAND_SIZE)))
        with pytest.raises(VerifyError):
            _prepare(vdaf, *forged)
        batches = [_prep_batch(vdaf, j, [forged]) for j in range(3)]
        assert isinstance(vdaf.prep_shares_to_prep_batch(None, [[b[0][1] for b in batches]])[0], VerifyError)


@pytest.mark.parametrize("kind", ["Count", "Histogram"])
def test_untrusted_bytes_raise_only_vdaf_errors(kind):
    """Aggregators decode what clients send: any byte string either decodes or raises a
    DecodeError (a VdafError with a reason), and well-formed garbage fails verification, never
    with another exception."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from mpcdp.vdaf import VdafError

    vdaf = CIRCUITS[kind][0](2)
    sizes = [vdaf.input_share_size(0), vdaf.input_share_size(1)]

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(st.data())
    def check(data):
        agg_id = data.draw(st.sampled_from([0, 1]))
        length = data.draw(st.sampled_from([0, 1, sizes[agg_id] - 1, sizes[agg_id], sizes[agg_id] + 1]))
        blob = data.draw(st.binary(min_size=length, max_size=length))
        public = data.draw(st.binary(max_size=64))
        for decode, arg in (
            (lambda b: vdaf.decode_input_share(agg_id, b), blob),
            (vdaf.decode_public_share, public),
            (vdaf.decode_prep_share, blob),
            (vdaf.decode_prep_msg, public),
            (vdaf.decode_agg_share, blob),
        ):
            with contextlib.suppress(VdafError):
                decode(arg)
        [result] = vdaf.prep_init_encoded_batch(VERIFY_KEY, agg_id, None, [(bytes(16), public, blob)])
        assert isinstance(result, (tuple, VdafError))

        # well-formed random shares for both aggregators: verification fails (or, rarely, passes)
        shares = [data.draw(st.binary(min_size=n, max_size=n)) for n in sizes]
        public_len = 16 * vdaf.SHARES if vdaf.uses_joint_rand else 0
        public = data.draw(st.binary(min_size=public_len, max_size=public_len))
        try:
            prepared = [
                vdaf.prep_init_encoded_batch(VERIFY_KEY, j, None, [(bytes(16), public, shares[j])])[0] for j in range(2)
            ]
            if all(isinstance(p, tuple) for p in prepared):
                msg = vdaf.prep_shares_to_prep(None, [p[1] for p in prepared])
                vdaf.prep_next(prepared[0][0], msg)
        except VdafError:
            pass

    check()


def test_prep_shares_from_the_wire_refuse_bad_lengths_and_elements_in_place():
    vdaf = Prio3Histogram(2, 10, 3)
    rng = Prg.from_int(12)
    reports = [vdaf.shard_random(m, rng) for m in (1, 2, 3)]
    batches = [_prep_batch(vdaf, j, reports) for j in range(2)]
    wire = [[vdaf.encode_prep_share(b[i][1]) for b in batches] for i in range(3)]
    size = vdaf.field.encoded_size
    wire[0][1] = wire[0][1][:-1]  # a byte short
    wire[1][0] = b"\xff" * size + wire[1][0][size:]  # an element above the modulus
    out = vdaf.prep_shares_to_prep_encoded_batch(None, wire)
    assert isinstance(out[0], DecodeError) and isinstance(out[1], DecodeError)
    assert out[2] == vdaf.prep_shares_to_prep(None, [b[2][1] for b in batches])
