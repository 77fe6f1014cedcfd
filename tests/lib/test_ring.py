"""Z_2^64 arithmetic, fixed point and the headroom check."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcdp import ring

u64 = st.integers(0, ring.MODULUS - 1)
vectors = st.lists(u64, min_size=1, max_size=32)


@given(vectors, vectors)
def test_add_sub_neg_wrap_mod_2_64(a, b):
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    ra, rb = ring.as_ring(np.array(a, dtype=object)), ring.as_ring(np.array(b, dtype=object))
    assert ring.add(ra, rb).tolist() == [(x + y) % ring.MODULUS for x, y in zip(a, b, strict=True)]
    assert ring.sub(ra, rb).tolist() == [(x - y) % ring.MODULUS for x, y in zip(a, b, strict=True)]
    assert ring.neg(ra).tolist() == [(-x) % ring.MODULUS for x in a]


@given(st.lists(st.integers(ring.SIGNED_MIN, ring.SIGNED_MAX), min_size=1, max_size=16))
def test_signed_round_trip(values):
    assert ring.to_signed(ring.as_ring(np.array(values, dtype=np.int64))).tolist() == values


@given(st.integers(0, 40), st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=16))
def test_fixed_point_round_trip_within_resolution(frac_bits, xs):
    fp = ring.FixedPoint(frac_bits)
    back = fp.decode(fp.encode(xs))
    assert np.all(np.abs(back - np.array(xs)) <= fp.resolution / 2 + 1e-9 * np.abs(xs))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_encode_refuses_non_finite(bad):
    with pytest.raises(ValueError, match="NaN or infinite"):
        ring.FixedPoint(16).encode([1.0, bad])


def test_encode_refuses_values_beyond_the_ring():
    with pytest.raises(ring.HeadroomError):
        ring.FixedPoint(20).encode([2.0**44])


@settings(max_examples=300, deadline=None)  # each example is microseconds; a loaded machine is not a failure
@given(st.integers(1, 2**20), st.floats(0, 1e12, allow_nan=False), st.integers(0, 40), st.integers(0, 2**40))
def test_headroom_rejects_exactly_the_overflowing_cases(count, bound, frac_bits, tail):
    worst_units = int(np.rint(bound * 2**frac_bits))
    overflows = count * worst_units + tail > ring.SIGNED_MAX
    if overflows:
        with pytest.raises(ring.HeadroomError, match="overflow risk"):
            ring.check_headroom(count, bound, frac_bits, tail)
        return
    ring.check_headroom(count, bound, frac_bits, tail)
    # accepted => the worst cases really decode correctly
    for sign in (1, -1):
        worst = np.full(count, sign * worst_units, dtype=np.int64).view(np.uint64).sum(dtype=np.uint64)
        total = ring.add(worst, ring.as_ring(np.array([sign * tail], dtype=np.int64)))
        assert int(ring.to_signed(total).reshape(-1)[0]) == sign * (count * worst_units + tail)


def test_headroom_message_is_actionable():
    with pytest.raises(ring.HeadroomError, match="lower the bound"):
        ring.check_headroom(1000, 1e12, 40)


@pytest.mark.parametrize("frac_bits", [0, 3, 16, 40])
def test_encoding_in_place_equals_encoding_a_copy(frac_bits):
    fp = ring.FixedPoint(frac_bits)
    rng = np.random.default_rng(frac_bits)
    x = rng.normal(0, 1e3, (3, 5001)) * rng.choice([1.0, 1e-3, 1e6], (3, 5001))
    x = np.clip(x, -(2.0 ** (62 - frac_bits)), 2.0 ** (62 - frac_bits))
    expected = np.rint(x * fp.scale).astype(np.int64).view(np.uint64)
    given_up = x.copy()
    got = fp.encode(given_up, in_place=True)
    assert np.shares_memory(got, given_up) and np.array_equal(got, expected)
    assert np.array_equal(fp.encode(x), expected) and np.array_equal(fp.encode(x[:, ::2]), expected[:, ::2])
    with pytest.raises(ring.HeadroomError):
        ring.FixedPoint(20).encode(np.array([1.0, 2.0**44]), in_place=True)
    with pytest.raises(ValueError, match="NaN"):
        fp.encode(np.array([1.0, np.nan]), in_place=True)


@pytest.mark.parametrize("frac_bits", [0, 16, 40])
@pytest.mark.parametrize("shape", [(1, 200_003), (3, 70_001), (0, 5), (1, 1)])
def test_encoding_clipped_in_one_pass_equals_clipping_then_encoding(frac_bits, shape):
    """Pieces of every size (a tail shorter than a piece, rows), values on both sides of each bound and
    halves that round: the same elements as ``encode(np.clip(...))``, and the records left as they were."""
    rng = np.random.default_rng(frac_bits)
    records = rng.uniform(-1500.0, 1500.0, shape)
    records.flat[:: max(records.size // 7, 1)] = 2.5  # a half: rounds to even
    kept = records.copy()
    codec = ring.FixedPoint(frac_bits)
    got = codec.encode_clipped(records, -1000.0, 999.5)
    assert got.dtype == ring.DTYPE and got.shape == records.shape
    assert np.array_equal(got, codec.encode(np.clip(records, -1000.0, 999.5)))
    assert np.array_equal(records, kept)


@pytest.mark.parametrize("frac_bits", [0, 16])
@pytest.mark.parametrize("at", [0, (1 << 16) + 5, 200_002])
def test_encoding_clipped_refuses_nan_as_encode_does_and_clips_infinities(frac_bits, at):
    """A NaN in any piece is refused with encode's error (it became -2^63 with only a RuntimeWarning); an
    infinity clips to its bound, as through ``encode(np.clip(...))``."""
    codec = ring.FixedPoint(frac_bits)
    records = np.linspace(-5.0, 5.0, 200_003)
    records[at] = np.nan
    with pytest.raises(ValueError, match="cannot encode NaN"):
        codec.encode(np.clip(records, -1.0, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the error, not a warning
        with pytest.raises(ValueError, match="cannot encode NaN"):
            codec.encode_clipped(records, -1.0, 1.0)
    records[at] = -np.inf
    records[-1] = np.inf
    assert np.array_equal(codec.encode_clipped(records, -1.0, 1.0), codec.encode(np.clip(records, -1.0, 1.0)))


def test_encoding_clipped_refuses_bounds_beyond_the_ring_or_unordered():
    with pytest.raises(ring.HeadroomError):
        ring.FixedPoint(16).encode_clipped(np.zeros(4), -(2.0**48), 0.0)
    with pytest.raises(ValueError, match="finite"):
        ring.FixedPoint(0).encode_clipped(np.zeros(4), 0.0, np.inf)
    with pytest.raises(ValueError, match="ordered"):
        ring.FixedPoint(0).encode_clipped(np.zeros(4), 1.0, 0.0)
