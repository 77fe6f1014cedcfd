"""The honest-majority engine against plaintext: every operation, for n = 3, 5 and 7 parties."""

from __future__ import annotations

import functools
import math
from itertools import combinations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpcdp import ring
from mpcdp.mpc import compare
from mpcdp.mpc.access import Access
from mpcdp.mpc.engine import U64, Engine
from mpcdp.mpc.memory import run_in_memory, seeded_rngs
from mpcdp.mpc.messages import Round
from mpcdp.mpc.session import PartyRun
from mpcdp.prg import Prg
from mpcdp.protocol.errors import ProtocolError
from mpcdp.sharing import share

PARTIES = (3, 5, 7)
EDGES = [compare.VALUE_MIN, compare.VALUE_MAX, 0, -1, 1, compare.VALUE_MIN + 1, compare.VALUE_MAX - 1]
values = st.one_of(st.integers(compare.VALUE_MIN, compare.VALUE_MAX), st.sampled_from(EDGES), st.integers(-3, 3))
FAST = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(n: int, inputs: list, body, seed: int = 0):
    """Share each input additively among n parties, run ``body(e, *my_parts)``, return party 0's result."""
    parts = [
        share(ring.as_ring(np.asarray(x, dtype=np.int64)), n, Prg.from_int(seed + i)) for i, x in enumerate(inputs)
    ]
    programs = [functools.partial(lambda p, e: body(e, *[s[p] for s in parts]), p) for p in range(n)]
    results, trace = run_in_memory(n, programs, seeded_rngs(n, seed + 100))
    for other in results[1:]:  # every party opens the same thing
        assert same(results[0], other)
    return results[0], trace


def same(a, b) -> bool:
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return (a is None and b is None) or np.array_equal(a, b)


def signed(words):
    return ring.to_signed(np.asarray(words, dtype=U64))


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7])
def test_access_structure_is_a_threshold_t_scheme(n):
    acc = Access(n)
    assert 2 * acc.t < n
    for coalition in combinations(range(n), acc.t):  # t parties miss exactly one share: their own index
        held = set().union(*(acc.held(p) for p in coalition))
        assert set(range(len(acc.indices))) - held == {acc.indices.index(frozenset(coalition))}
    for coalition in combinations(range(n), acc.t + 1):  # t + 1 parties hold everything
        assert set().union(*(acc.held(p) for p in coalition)) == set(range(len(acc.indices)))
    assigned = sorted((p, a, b) for p in range(n) for a, bs in acc.products[p] for b in bs)
    assert len(assigned) == len(acc.indices) ** 2  # every cross term computed exactly once


def test_access_refuses_fewer_than_three_parties():
    with pytest.raises(ValueError, match="at least 3"):
        Access(2)


@pytest.mark.parametrize("n", PARTIES)
@FAST
@given(data=st.data())
def test_arithmetic_and_comparisons_match_plaintext(n, data):
    size = data.draw(st.integers(1, 9))
    x = np.array(data.draw(st.lists(values, min_size=size, max_size=size)), dtype=np.int64)
    y = np.array(data.draw(st.lists(values, min_size=size, max_size=size)), dtype=np.int64)

    def body(e, xp, yp):
        xs = yield from e.reshare(xp)
        ys = yield from e.reshare(yp)
        prod = yield from e.mul(xs, ys)
        bits = yield from compare.to_bits(e, np.stack([xp, yp]))
        xb, yb = bits[:, 0], bits[:, 1]
        lt = yield from compare.less_than(e, xb, yb)
        gt = yield from compare.less_than(e, yb, xb)
        ge = yield from compare.greater_equal(e, xb, yb)
        eq = yield from compare.equal(e, xb, yb)
        (bigger,) = yield from compare.select(e, lt, [(yb, xb)])
        lt_ring = yield from compare.to_ring(e, lt)
        opened_ring = yield from e.open(np.stack([prod, xs + ys, lt_ring], axis=1))
        opened_bits = yield from e.open(np.stack([xb, lt, gt, eq, bigger, ge], axis=1), xor=True)
        return opened_ring, opened_bits

    (ring_out, bits_out), _ = run(n, [x, y], body, seed=size)
    assert np.array_equal(signed(ring_out[0]), x * y)  # wraps mod 2^64 on both sides
    assert np.array_equal(signed(ring_out[1]), x + y)
    assert np.array_equal(ring_out[2], (x < y).astype(np.uint64))
    assert np.array_equal(signed(bits_out[0]), x)  # bit decomposition is exact
    assert np.array_equal(bits_out[1], (x < y).astype(np.uint64))
    assert np.array_equal(bits_out[2], (x > y).astype(np.uint64))
    assert np.array_equal(bits_out[3], (x == y).astype(np.uint64))
    assert np.array_equal(signed(bits_out[4]), np.maximum(x, y))
    assert np.array_equal(bits_out[5], (x >= y).astype(np.uint64))


@pytest.mark.parametrize("n", PARTIES)
@FAST
@given(data=st.data())
def test_tournaments_match_plaintext_with_ties_to_the_lowest_index(n, data):
    m = data.draw(st.integers(1, 11))
    x = np.array(data.draw(st.lists(values, min_size=m, max_size=m)), dtype=np.int64)

    def body(e, xp):
        bits = yield from compare.to_bits(e, xp)
        hi, hi_at = yield from compare.extremum(e, bits)
        lo, lo_at = yield from compare.extremum(e, bits, smallest=True)
        top, top_at, second = yield from compare.top_two(e, bits)
        return (yield from e.open(np.stack([hi, hi_at, lo, lo_at, top, top_at, second], axis=1), xor=True))

    out, _ = run(n, [x], body, seed=m)
    out = signed(out)
    assert out[0] == x.max() and out[1] == int(np.argmax(x))  # argmax: the first of the maxima
    assert out[2] == x.min() and out[3] == int(np.argmin(x))
    assert out[4] == x.max() and out[5] == int(np.argmax(x))
    expected_second = np.sort(x)[-2] if m > 1 else compare.SENTINEL
    assert out[6] == expected_second


@pytest.mark.parametrize("n", PARTIES)
def test_batched_tournaments_are_independent_instances(n):
    rng = np.random.default_rng(n)  # test data only
    x = rng.integers(-5, 5, size=(6, 5))

    def body(e, xp):
        bits = yield from compare.to_bits(e, xp)
        best, at = yield from compare.extremum(e, bits)
        return (yield from e.open(np.stack([best, at], axis=1), xor=True))

    out, _ = run(n, [x], body)
    assert np.array_equal(signed(out[0]), x.max(axis=1))
    assert np.array_equal(out[1], np.argmax(x, axis=1))


@pytest.mark.parametrize("n", PARTIES)
def test_random_bits_are_shared_uniform_bits(n):
    def body(e):
        return (yield from e.open(e.random_bits((4000,)), xor=True))

    words, trace = run(n, [], body)
    bits = np.unpackbits(words.view(np.uint8))
    assert trace.rounds == 2  # key set-up + the opening: drawing random bits costs no round
    assert abs(bits.mean() - 0.5) < 4 * math.sqrt(0.25 / bits.size)
    again, _ = run(n, [], body, seed=1)
    assert not np.array_equal(words, again)


def csa(n):
    return {3: 1, 5: 3, 7: 4}[n]


@pytest.mark.parametrize("n", PARTIES)
def test_round_counts_are_the_documented_ones(n):
    x = np.arange(8)

    def rounds(body):
        return run(n, [x], body)[1].rounds - 1  # minus the key set-up round

    def only(op):
        def body(e, xp):
            yield from op(e, xp)
            return None

        return body

    def bits_then(op):
        def body(e, xp):
            b = yield from compare.to_bits(e, xp)
            yield from op(e, b)

        return body

    to_bits = 1 + csa(n) + 1 + 6
    assert rounds(only(lambda e, xp: e.reshare(xp))) == 1
    assert rounds(only(lambda e, xp: e.mul(e.constant(xp), e.constant(xp)))) == 1
    assert rounds(only(lambda e, xp: e.open(e.constant(xp)))) == 1
    assert rounds(only(compare.to_bits)) == to_bits
    assert rounds(bits_then(lambda e, b: compare.less_than(e, b, b))) == to_bits + 7
    assert rounds(bits_then(lambda e, b: compare.equal(e, b, b))) == to_bits + 6
    assert rounds(bits_then(lambda e, b: compare.to_ring(e, b))) == to_bits + compare.to_ring_rounds(n)
    assert rounds(bits_then(compare.extremum)) == to_bits + 10 + 8  # m = 8: one radix-4 level, one pair
    assert [compare.extremum_rounds(m) for m in (1, 2, 3, 4, 5, 16, 17, 1000)] == [0, 8, 10, 10, 18, 20, 28, 50]
    assert rounds(bits_then(compare.top_two)) == to_bits + 2 * (10 + 8) + 6 + 1


@pytest.mark.parametrize("n", PARTIES)
def test_a_multiplication_sends_n_minus_t_minus_one_words_per_party_per_element(n):
    t = (n - 1) // 2
    size = 1000

    def body(e, xp):
        c = e.constant(xp)
        yield from e.mul(c, c)

    parts = [share(ring.as_ring(np.arange(size)), n, Prg.from_int(1))]
    programs = [functools.partial(lambda p, e: body(e, parts[0][p]), p) for p in range(n)]
    _, trace = run_in_memory(n, programs, seeded_rngs(n, 2), record=True)
    words = sum(m.words.size for msgs in trace.received for m in msgs if m.round == 1)
    assert words == n * (n - t - 1) * size


def test_round_message_encodes_and_refuses_malformed_bytes():
    m = Round(b"sid", 7, 1, 2, np.arange(5, dtype=np.uint64))
    back = Round.decode(m.encode())
    assert (back.session_id, back.round, back.sender, back.recipient) == (b"sid", 7, 1, 2)
    assert np.array_equal(back.words, m.words)
    assert "words" not in repr(m)  # shares stay out of logs and tracebacks
    data = m.encode()
    for bad in (data[:10], data[:-8], b"XXXX" + data[4:], data + b"\0" * 8):
        with pytest.raises(ProtocolError):
            Round.decode(bad)


def _comparison_runs(n, sid=b"s"):
    parts = share(ring.as_ring(np.array([3, -4])), n, Prg.from_int(5))

    def body(p):
        def program(e):
            b = yield from compare.to_bits(e, parts[p])
            return (yield from e.open(compare.shr(b, 63), xor=True))

        return program

    rngs = seeded_rngs(n, 9)
    return [PartyRun(Engine(n, p, sid, rngs[p]), body(p)) for p in range(n)]


def _deliver(runs, outgoing, drop=None, tamper=None):
    inboxes = [[] for _ in runs]
    for msgs in outgoing:
        for m in msgs:
            if m.sender == drop:
                continue
            m = tamper(m) if tamper else m
            inboxes[m.recipient].append(Round.decode(m.encode()))
    return inboxes


@pytest.mark.parametrize("fault", ["stalled", "other session", "replayed round", "short message"])
def test_a_faulty_peer_aborts_the_run_with_nothing_released_and_the_next_run_works(fault):
    n = 3
    runs = _comparison_runs(n)
    outgoing = [r.start() for r in runs]
    for _ in range(4):  # a few honest rounds, mid-comparison
        inboxes = _deliver(runs, outgoing)
        outgoing = [r.step(inboxes[p]) for p, r in enumerate(runs)]
    tamper = {
        "stalled": None,
        "other session": lambda m: Round(b"other", m.round, m.sender, m.recipient, m.words),
        "replayed round": lambda m: Round(m.session_id, m.round - 1, m.sender, m.recipient, m.words),
        "short message": lambda m: Round(m.session_id, m.round, m.sender, m.recipient, m.words[:-1]),
    }[fault]
    inboxes = _deliver(runs, outgoing, drop=2 if fault == "stalled" else None, tamper=tamper)
    failed = []
    for p, r in enumerate(runs):
        if p == 2 and fault == "stalled":
            continue
        try:
            r.step(inboxes[p])
        except ProtocolError:
            failed.append(p)
    if fault == "short message":
        assert failed  # whoever expected those words notices at once
    else:
        assert failed == ([0, 1] if fault == "stalled" else [0, 1, 2])  # every live party does
    for r in runs:
        if not r.done:
            r.abort("a peer aborted")  # what a transport does when a peer aborts or its deadline passes
        assert r.done and r.aborted
        with pytest.raises(ProtocolError):
            _ = r.result  # nothing partial
        with pytest.raises(ProtocolError):
            r.step([])
    fresh = _comparison_runs(n, sid=b"next")  # the next session is unaffected
    outgoing = [r.start() for r in fresh]
    while not all(r.done for r in fresh):
        inboxes = _deliver(fresh, outgoing)
        outgoing = [r.step(inboxes[p]) for p, r in enumerate(fresh)]
    assert np.array_equal(fresh[0].result, [0, 1])


def test_a_session_runs_several_programs_with_one_key_set_up_and_running_round_numbers():
    from mpcdp.mpc.memory import engines

    n = 3
    values = np.tile([5, -2], 32)
    parts = share(ring.as_ring(values), n, Prg.from_int(3))
    session = engines(n, seeded_rngs(n, 4))

    def program(p):
        def run(e):
            b = yield from compare.to_bits(e, parts[p])
            return (yield from e.open(compare.shr(b, 63), xor=True))

        return run

    first, t1 = run_in_memory(n, [program(p) for p in range(n)], session=session, record=True)
    second, t2 = run_in_memory(n, [program(p) for p in range(n)], session=session, record=True)
    assert np.array_equal(first[0], values < 0) and np.array_equal(second[0], values < 0)
    assert t2.rounds == t1.rounds - 1  # no second key set-up
    assert min(m.round for msgs in t2.received for m in msgs) == t1.rounds  # round numbers run on
    last = [
        np.concatenate([m.words for msgs in t.received for m in msgs if m.round == t.rounds - 1 + start])
        for t, start in ((t1, 0), (t2, t1.rounds))
    ]
    assert not np.array_equal(*last)  # fresh masks in the second run


def test_a_failing_program_aborts_its_run():
    def program(e):
        yield from e.open(e.constant(np.arange(3)))
        raise ValueError("bad input")

    rngs = seeded_rngs(3, 1)
    runs = [PartyRun(Engine(3, p, b"s", rngs[p]), program) for p in range(3)]
    outgoing = [r.start() for r in runs]
    for _ in range(2):
        inboxes = _deliver(runs, outgoing)
        try:
            outgoing = [r.step(inboxes[p]) for p, r in enumerate(runs)]
        except ValueError:
            break
    assert runs[0].done and runs[0].aborted and "bad input" in runs[0].aborted
    with pytest.raises(ProtocolError):
        _ = runs[0].result
