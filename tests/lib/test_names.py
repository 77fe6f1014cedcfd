"""One name rule for parties, nodes, surveys, questions and tables."""

import pytest

from mpcdp.names import InvalidName, check_name, is_name
from mpcdp.protocol import QuerySpec, SpecError


@pytest.mark.parametrize("name", ["alice", "A", "node-1", "db_2.local", "x" * 63, "0day"])
def test_names_that_follow_the_rule(name):
    assert is_name(name) and check_name(name, "party name") == name


@pytest.mark.parametrize("name", ["", "-x", ".hidden", "_x", "x" * 64, "a b", "a/b", "é", "a;", None, 3])
def test_names_that_break_it(name):
    assert not is_name(name)
    with pytest.raises(InvalidName, match=r"party name .* is not a valid name: use 1-63 characters"):
        check_name(name, "party name")


def test_a_spec_uses_the_rule_for_its_parties():
    QuerySpec("count", parties=("alice", "bob.example"), epsilon=1.0)
    with pytest.raises(SpecError, match="parties"):
        QuerySpec("count", parties=("alice", "-bob"), epsilon=1.0)
