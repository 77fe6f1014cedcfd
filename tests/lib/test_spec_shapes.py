"""A spec whose every field but the session id and deadline passed validation before is checked only on those
two (QuerySpec._shape): what changes from query to query. Nothing else may slip through that cache."""

import dataclasses
import math

import pytest

from mpcdp.protocol.spec import _VALID_SHAPES, QuerySpec, Sharing, SpecError

PARTIES = ("alice", "bob", "carol")


def valid(**fields) -> QuerySpec:
    return QuerySpec("sum", PARTIES, bounds=(0, 1000), frac_bits=0, sharing="keyed", deadline=2e9, **fields)


def remembered() -> QuerySpec:
    """A valid spec whose shape is remembered (the next of its shape is not validated whole)."""
    valid()
    return valid()


def test_a_shape_validated_once_is_not_validated_whole_again_and_its_sharing_is_normalized(monkeypatch):
    first = valid()
    whole = []
    monkeypatch.setattr(QuerySpec, "_validate", lambda spec: whole.append(spec))
    again = valid()
    assert whole == [] and again.sharing is Sharing.KEYED and again.session_id != first.session_id
    valid(max_records=2)  # another shape
    assert len(whole) == 1


@pytest.mark.parametrize(
    "fields, field",
    [
        (dict(session_id=b"short"), "session_id"),
        (dict(session_id="0" * 16), "session_id"),
        (dict(deadline=math.nan), "deadline"),
        (dict(deadline=-1.0), "deadline"),
        (dict(deadline="soon"), "deadline"),
    ],
)
def test_a_remembered_shape_still_checks_its_session_id_and_deadline(fields, field):
    base = remembered()
    with pytest.raises(SpecError) as caught:
        dataclasses.replace(base, **fields)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "fields, field",
    [
        (dict(dimension=1.0), "dimension"),  # equal to 1 and hashed alike, but not an integer
        (dict(dimension=True), None),  # equal to 1 too: whatever validation says of it, the cache says the same
        (dict(max_records=0), "max_records"),
        (dict(frac_bits=1.0), "frac_bits"),
        (dict(epsilon=True), "epsilon"),
        (dict(colluders=3), "colluders"),
        (dict(parties=("alice", "alice", "carol")), "parties"),
        (dict(bounds=(0, math.nan)), "bounds"),
    ],
)
def test_a_field_differing_from_a_valid_shape_only_in_type_or_value_is_validated_whole(fields, field):
    base = remembered()

    def uncached():
        _VALID_SHAPES.clear()
        return dataclasses.replace(base, **fields)

    outcomes = []
    for make in (lambda: dataclasses.replace(base, **fields), uncached):
        try:
            outcomes.append(make().sharing)
        except SpecError as exc:
            outcomes.append(exc.field)
    assert outcomes[0] == outcomes[1]  # with the valid shape remembered or not: the same verdict
    if field is not None:
        assert outcomes[0] == field


def test_an_unhashable_field_is_refused_as_before():
    with pytest.raises(SpecError):
        QuerySpec("sum", PARTIES, bounds=(0, [1]), deadline=2e9)


def test_specs_of_one_shape_share_a_codec_that_reads_only_their_shape():
    import numpy as np

    from mpcdp.protocol.statistics import codec_for

    one, other = remembered(), dataclasses.replace(remembered(), session_id=b"\x01" * 16, deadline=3e9)
    assert one.codec is other.codec and other.sharing is Sharing.KEYED
    own = codec_for(other)  # what the other spec's own codec says
    records = np.array([[2000.0]])  # clipped to the bounds
    np.testing.assert_array_equal(other.codec.encode(records), own.encode(records))
    total = other.codec.encode(records)
    assert other.codec.decode(total) == own.decode(total)
    assert valid(max_records=7).codec is not one.codec
