"""The registries: one error listing the choices, CLI choices, wire values; a new statistic is one class."""

from dataclasses import dataclass

import numpy as np
import pytest

from mpcdp import ring
from mpcdp.dp.loss import PrivacyLoss
from mpcdp.dp.mechanisms import CENTRAL_MECHANISMS
from mpcdp.protocol import QuerySpec, SpecError, run_in_memory
from mpcdp.protocol.intervals import around
from mpcdp.protocol.noise import describe, mechanisms
from mpcdp.protocol.statistics import STATISTICS, Block, Engine, LinearStatistic, Reads, Statistic
from mpcdp.registry import Registry, UnknownName


@dataclass(frozen=True)
class Item:
    name: str
    wire: int | None = None


def test_get_names_and_wire_values():
    r = Registry[Item]("widget")
    r.register(Item("a", 1))
    r.register(Item("b", 2))
    r.register(Item("c"))
    assert r.names() == ("a", "b", "c") and len(r) == 3 and "b" in r and "z" not in r and 3 not in r
    assert r.get("b") == Item("b", 2) and r.by_wire(2) == Item("b", 2) and r.wire("a") == 1
    with pytest.raises(UnknownName, match="unknown widget 'z'; choose one of: a, b, c"):
        r.get("z")
    with pytest.raises(UnknownName, match=r"unknown widget wire value 0; known: 1 \(a\), 2 \(b\)"):
        r.by_wire(0)
    with pytest.raises(UnknownName, match="has no wire value"):
        r.wire("c")


@pytest.mark.parametrize(
    "item, match",
    [(Item("a"), "registered twice"), (Item("d", 1), "already 'a'"), (Item("e", 0), "positive"), (Item(""), "name")],
)
def test_a_clash_or_a_bad_item_is_refused(item, match):
    r = Registry[Item]("widget")
    r.register(Item("a", 1))
    with pytest.raises(ValueError, match=match):
        r.register(item)
    assert r.names() == ("a",)


def test_the_statistics_and_mechanisms_the_wire_and_the_cli_name():
    assert STATISTICS.names()[:5] == ("sum", "count", "mean", "variance", "histogram")
    assert [STATISTICS.wire(n) for n in STATISTICS.names()[:5]] == [1, 2, 3, 4, 5]
    assert CENTRAL_MECHANISMS.names() == ("discrete_laplace", "skellam")
    assert [CENTRAL_MECHANISMS.wire(n) for n in CENTRAL_MECHANISMS.names()] == [1, 2]
    with pytest.raises(SpecError, match="statistic: unknown statistic 'mode'; choose one of: sum, count"):
        QuerySpec("mode", parties=("a", "b"))


class SumOfSquares(LinearStatistic):
    """A statistic the library does not have: the sum of squared records (one class, one registration)."""

    name = "test-sum-of-squares"
    wire = 99

    def blocks(self, spec):
        fixed = ring.FixedPoint(spec.frac_bits)
        mag = max(abs(float(b)) for b in spec.bounds)
        return (Block("sum_sq", spec.dimension, fixed.scale, fixed.encode_bound(mag * mag), spread=True),)

    def encode(self, codec, records):
        x = codec.clip(records)
        codec.check_count(x.shape[0])
        return codec.fixed.encode(x * x).sum(axis=0, dtype=np.uint64)

    def decode(self, spec, parts, as_value):
        return {self.name: as_value(parts["sum_sq"])}

    def intervals(self, spec, result, width):
        return {self.name: around(result[self.name], width["sum_sq"])}


@pytest.fixture
def sum_of_squares():
    STATISTICS.register(SumOfSquares())
    yield
    STATISTICS._items.pop(SumOfSquares.name)  # the registry is global: leave it as found
    STATISTICS._by_wire.pop(SumOfSquares.wire)


def test_a_new_linear_statistic_is_one_class_and_one_registration(sum_of_squares):
    assert SumOfSquares.reads is Reads.NUMBERS and SumOfSquares.engine is Engine.SECURE_SUM
    data = {"a": [1.0, 2.0], "b": [3.0], "c": [0.5]}
    exact = QuerySpec("test-sum-of-squares", parties=("a", "b", "c"), bounds=(0, 4), max_records=2)
    assert run_in_memory(exact, data).release.value == pytest.approx(14.25)
    noisy = QuerySpec("test-sum-of-squares", parties=("a", "b", "c"), bounds=(0, 4), max_records=2, epsilon=1.0)
    assert [b.name for b, _ in mechanisms(noisy)] == ["sum_sq"]
    release = run_in_memory(noisy, data).release
    low, high = describe(noisy, release.result).intervals["test-sum-of-squares"]
    assert low < release.value < high


class Median(Statistic):
    name = "test-median"
    wire = 98
    engine = Engine.HONEST_MAJORITY


def test_a_comparison_statistic_is_registered_but_not_run_by_a_secure_sum():
    STATISTICS.register(Median())
    try:
        assert "test-median" in STATISTICS.names()
        with pytest.raises(SpecError, match="computed by the honest-majority engine"):
            QuerySpec("test-median", parties=("a", "b"))
    finally:
        STATISTICS._items.pop("test-median")
        STATISTICS._by_wire.pop(98)


def test_a_spec_accepts_a_privacy_loss_as_its_epsilon():
    loss = PrivacyLoss.of("0.5", "1e-6")
    spec = QuerySpec("count", parties=("a", "b"), epsilon=loss, mechanism="skellam")
    assert spec.loss == loss and (spec.epsilon, spec.delta) == (0.5, 1e-6)
    with pytest.raises(SpecError, match="per added or removed record"):
        QuerySpec("count", parties=("a", "b"), epsilon=PrivacyLoss.pure(1.0, relation=loss.relation.RESPONDENT))
    with pytest.raises(SpecError, match="delta: skellam noise gives approximate DP"):
        QuerySpec("count", parties=("a", "b"), epsilon=1.0, mechanism="skellam")
