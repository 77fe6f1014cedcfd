"""The comparison queries' wire adapter (services/mpc_node.py): specs from the wire, releases onto it."""

from __future__ import annotations

import grpc
import pytest

from services import convert, mpc_node
from services.wire.mpcdp.v1 import federation_pb2 as pb

PARTIES = ["alice", "bob", "carol"]


def wire_spec(statistic: str, **kw) -> pb.QuerySpec:
    return pb.QuerySpec(
        statistic=convert.statistic_wire(statistic), column="bid", parties=PARTIES, session_id=bytes(16), **kw
    )


def test_a_threshold_without_its_fraction_is_refused_and_a_fraction_of_zero_is_a_threshold():
    with pytest.raises(mpc_node.CompareRefused) as refused:
        mpc_node.spec_from_proto(wire_spec("threshold"))
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT and "fraction" in str(refused.value)
    assert mpc_node.spec_from_proto(wire_spec("threshold", fraction=0.0)).fraction == 0.0
    with pytest.raises(mpc_node.CompareRefused, match="not used by max"):
        mpc_node.spec_from_proto(wire_spec("max", fraction=0.5))


def test_only_comparison_statistics_go_to_the_parties_and_dp_ones_carry_their_loss():
    assert mpc_node.comparison_of(wire_spec("mean")) is None
    assert mpc_node.comparison_of(wire_spec("max")).name == "max"
    spec = mpc_node.spec_from_proto(wire_spec("median", epsilon=0.5, edges=[1.0, 2.0], colluders=1))
    assert spec.charge is not None and float(spec.charge.epsilon) == 0.5
    with pytest.raises(mpc_node.CompareRefused, match="delta"):
        mpc_node.spec_from_proto(wire_spec("median", epsilon=0.5, delta=1e-6, edges=[1.0, 2.0]))


def test_a_release_travels_as_exact_integers_and_labels_with_its_epsilon():
    from services import releases

    exact = mpc_node.spec_from_proto(wire_spec("second-price"))
    (part,) = mpc_node.release_parts(exact, releases.entries({"second-price": 2**62 - 1, "winner": "alice"}))
    reply = part.reply
    assert not reply.HasField("epsilon") and reply.mechanism == pb.MECHANISM_UNSPECIFIED
    values = {e.name: e.value for e in reply.entries}
    assert values["second-price"].integer == 2**62 - 1 and values["winner"].label == "alice"
    dp = mpc_node.spec_from_proto(wire_spec("noisy-argmax", epsilon=1.0, categories=["a", "b"]))
    (part,) = mpc_node.release_parts(dp, releases.entries({"noisy-argmax": "b"}))
    assert part.reply.epsilon == 1.0 and part.reply.mechanism == pb.MECHANISM_DISCRETE_LAPLACE
