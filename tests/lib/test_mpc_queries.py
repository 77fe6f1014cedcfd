"""Comparison queries (mpcdp.mpc.queries): each registered statistic against plaintext, its refusals, its policy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpcdp.dp.loss import PrivacyLoss, Relation
from mpcdp.mpc import compare
from mpcdp.mpc.memory import engines, run_in_memory
from mpcdp.mpc.queries import (
    COMPARISONS,
    ComparisonRefused,
    ComparisonSpec,
    refusal,
    run_locally,
    whole_numbers,
)
from mpcdp.mpc.statistics import Extremum
from mpcdp.protocol import PartyPolicy
from mpcdp.protocol.statistics import STATISTICS, Engine

FAST = settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SID = bytes(range(16))
values = st.one_of(
    st.integers(compare.VALUE_MIN, compare.VALUE_MAX),
    st.sampled_from([compare.VALUE_MIN, compare.VALUE_MAX, 0, -1]),
    st.integers(-3, 3),
)


def spec(statistic: str, n: int = 4, **kw) -> ComparisonSpec:
    return ComparisonSpec(statistic, "v", tuple(f"p{i}" for i in range(n)), SID, 1e12, **kw)


def test_every_comparison_is_registered_once_with_its_wire_value_after_the_linear_statistics():
    assert COMPARISONS.names() == (
        "max",
        "min",
        "argmax",
        "threshold",
        "second-price",
        "noisy-argmax",
        "quantile",
        "median",
    )
    assert [COMPARISONS.wire(n) for n in COMPARISONS.names()] == [6, 7, 8, 9, 10, 11, 12, 13]
    assert {c.name for c in COMPARISONS if c.private} == {"noisy-argmax", "quantile", "median"}
    assert all(STATISTICS.get(c.name) is c and STATISTICS.by_wire(c.wire) is c for c in COMPARISONS)
    assert {c.engine for c in COMPARISONS} == {Engine.HONEST_MAJORITY}
    assert all(c.summary for c in COMPARISONS)


@pytest.mark.parametrize("n", (3, 5, 7))
@FAST
@given(data=st.data())
def test_each_party_a_bidder_max_min_argmax_and_second_price_match_plaintext(n, data):
    columns = [data.draw(st.lists(values, min_size=1, max_size=3)) for _ in range(n)]
    best = [max(c) for c in columns]
    lowest = [min(c) for c in columns]
    winner = best.index(max(best))  # ties: the first listed party
    s = spec("max", n)
    assert run_locally(s, columns, seed=1) == {"max": max(best)}
    assert run_locally(spec("min", n), columns, seed=2) == {"min": min(lowest)}
    assert run_locally(spec("argmax", n), columns, seed=3) == {"argmax": s.parties[winner]}
    second = sorted(best)[-2]
    assert run_locally(spec("second-price", n), columns, seed=4) == {
        "second-price": second,
        "winner": s.parties[winner],
    }


@pytest.mark.parametrize("n", (3, 5))
@FAST
@given(data=st.data(), fraction=st.sampled_from([0.0, 0.2, 0.5, 2 / 3, 1.0]))
def test_threshold_says_yes_exactly_when_the_sum_reaches_the_fraction_of_the_count(n, data, fraction):
    columns = [data.draw(st.lists(st.integers(-2, 3), min_size=0, max_size=4)) for _ in range(n)]
    total, count = sum(map(sum, columns)), sum(map(len, columns))
    yes = total >= fraction * count
    assert run_locally(spec("threshold", n, fraction=fraction), columns, seed=5) == {
        "threshold": "YES" if yes else "NO"
    }


def test_noisy_argmax_and_the_dp_median_find_the_clear_answer_at_a_large_epsilon():
    categories = ("infra", "product", "sales")
    columns = [["infra"] * 3 + ["product"] * 40, ["product"] * 35, ["sales"] * 10, ["other"] * 99]  # "other": no vote
    s = spec("noisy-argmax", epsilon=8.0, categories=categories)
    assert {run_locally(s, columns, seed=k)["noisy-argmax"] for k in range(3)} == {"product"}
    records = [list(range(0, 100)), list(range(100, 200)), list(range(200, 300)), list(range(300, 400))]
    edges = tuple(float(e) for e in range(0, 401, 50))
    assert run_locally(spec("median", epsilon=8.0, edges=edges), records, seed=6) == {"median": 200.0}
    assert run_locally(spec("quantile", epsilon=8.0, quantile=0.25, edges=edges), records, seed=7) == {
        "quantile": 100.0
    }


def test_the_dp_statistics_state_a_pure_loss_within_the_epsilon_and_the_exact_ones_none():
    for name, extra in (("noisy-argmax", {"categories": ("a", "b")}), ("median", {"edges": (0.0, 1.0)})):
        s = spec(name, 5, epsilon=0.5, colluders=2, **extra)
        loss = s.loss()
        assert loss is not None and s.charge == PrivacyLoss.pure("0.5", Relation.RECORD)
        assert loss.relation is Relation.RECORD and loss.epsilon <= s.charge.epsilon
    assert spec("max").loss() is None and spec("max").charge is None and spec("max").is_exact


@pytest.mark.parametrize(
    ("statistic", "kw", "field"),
    [
        ("mode", {}, "statistic"),
        ("max", {"epsilon": 1.0}, "epsilon"),
        ("noisy-argmax", {"categories": ("a", "b")}, "epsilon"),
        ("noisy-argmax", {"epsilon": 1.0, "categories": ("a",)}, "categories"),
        ("noisy-argmax", {"epsilon": 1.0, "categories": ("a", "a")}, "categories"),
        ("noisy-argmax", {"epsilon": 1.0, "categories": ("a", "b"), "colluders": 2}, "colluders"),
        ("median", {"epsilon": math.inf, "edges": (0.0, 1.0)}, "epsilon"),
        ("threshold", {}, "fraction"),
        ("threshold", {"fraction": 1.5}, "fraction"),
        ("max", {"fraction": 0.5}, "fraction"),
        ("max", {"categories": ("a", "b")}, "categories"),
        ("quantile", {"epsilon": 1.0, "edges": (0.0, 1.0)}, "quantile"),
        ("quantile", {"epsilon": 1.0, "quantile": 1.0, "edges": (0.0, 1.0)}, "quantile"),
        ("median", {"epsilon": 1.0, "quantile": 0.3, "edges": (0.0, 1.0)}, "quantile"),
        ("median", {"epsilon": 1.0, "edges": (1.0, 1.0)}, "edges"),
        ("median", {"epsilon": 1.0, "edges": (0.0, math.nan)}, "edges"),
    ],
)
def test_a_spec_is_refused_naming_the_field(statistic, kw, field):
    with pytest.raises(ComparisonRefused) as refused:
        spec(statistic, **kw)
    assert refused.value.field == field


def test_the_engine_needs_three_distinct_parties_and_a_full_session_id():
    with pytest.raises(ComparisonRefused, match="at least 3 parties"):
        spec("max", 2)
    with pytest.raises(ComparisonRefused, match="twice"):
        ComparisonSpec("max", "v", ("a", "b", "a"), SID, 1e12)
    with pytest.raises(ComparisonRefused, match="16 bytes"):
        ComparisonSpec("max", "v", ("a", "b", "c"), b"short", 1e12)


def test_a_column_that_cannot_be_compared_is_refused_without_showing_its_values():
    with pytest.raises(ComparisonRefused) as refused:
        whole_numbers([3800, "2514.5"], "bid")
    assert "2514" not in str(refused.value) and "'bid'" in str(refused.value)
    with pytest.raises(ComparisonRefused):
        whole_numbers([float(2**63)], "bid")
    assert whole_numbers(["3800", 2514.0], "bid") == [3800, 2514]


def test_the_policy_makes_exact_releases_opt_in_and_caps_epsilon():
    exact, dp = spec("max"), spec("noisy-argmax", epsilon=2.0, categories=("a", "b"))
    assert "allow_exact_nonlinear" in (refusal(PartyPolicy(), exact) or "")
    assert "allow_exact_nonlinear" in (refusal(PartyPolicy(allow_exact=True), exact) or "")  # sums' opt-in only
    assert refusal(PartyPolicy(allow_exact_nonlinear=True), exact) is None
    assert refusal(PartyPolicy(), dp) is None
    assert "exceeds" in (refusal(PartyPolicy(max_epsilon=1.0), dp) or "")
    assert "not allowed" in (refusal(PartyPolicy(statistics=("max",)), dp) or "")
    assert "not offered" in (refusal(PartyPolicy(columns=("w",)), dp) or "")
    assert "colluders" in (refusal(PartyPolicy(min_colluders=2), dp) or "")


def test_each_party_counts_the_opening_rounds_it_sent_so_a_late_abort_can_be_charged():
    session = engines(3, session_id=SID)
    program = Extremum().program(np.array([1, 0, 0], dtype=np.uint64))
    assert [e.openings for e in session] == [0, 0, 0]
    run_in_memory(3, [program] * 3, session=session)
    assert [e.openings for e in session] == [1, 1, 1]
