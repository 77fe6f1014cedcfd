"""Noise calibration is checked when a DP spec is made: ring headroom with the noise tail, and
parameters at which the distributed noise cannot be sampled."""

import pytest

from mpcdp.dp.distributed import DistributedSkellam
from mpcdp.protocol import QuerySpec, SpecError

PARTIES = ("a", "b", "c")


def test_skellam_large_sensitivity_is_a_clear_error_not_a_crash():
    # the quadratic's textbook root cancels to 0 here (ZeroDivisionError before the fix)
    with pytest.raises(ValueError, match="rho is too small"):
        DistributedSkellam(0.5, 2**30, 3, 1)
    assert DistributedSkellam(0.5, 2**20, 3, 1).piece_mean > 0


def test_dp_spec_refuses_noise_that_would_overflow_the_ring():
    # the data alone fit (4 * 2047 * 2^50 < 2^63), the discrete Laplace tail does not
    four = PARTIES + ("d",)
    with pytest.raises(SpecError, match="overflow risk") as err:
        QuerySpec("sum", parties=four, bounds=(0, 2**34), max_records=2047, epsilon=1.0)
    assert err.value.field == "bounds"
    QuerySpec("sum", parties=four, bounds=(0, 2**34), max_records=2047)  # exact: fits


def test_dp_spec_refuses_uncalibratable_noise_with_advice():
    with pytest.raises(SpecError, match="fewer frac_bits") as err:
        QuerySpec(
            "mean", parties=PARTIES, bounds=(0, 10_000), frac_bits=16, epsilon=1.0, delta=1e-6, mechanism="skellam"
        )
    assert err.value.field == "epsilon"
    QuerySpec("mean", parties=PARTIES, bounds=(0, 10_000), frac_bits=4, epsilon=1.0, delta=1e-6, mechanism="skellam")
