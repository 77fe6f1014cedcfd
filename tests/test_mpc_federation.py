"""Comparison statistics among real party processes over the party links (services/mpc_node.py)."""

from __future__ import annotations

import grpc
import pytest

from services.simulation import LocalFederation


def test_max_min_argmax_and_threshold_among_three_party_processes_then_a_crash_aborts_and_the_next_works():
    data = {"alice": [3, 0], "bob": [1], "carol": [4, -7]}
    with LocalFederation(data, column="bid", timeout=10.0, allow_exact_nonlinear=True) as f:
        assert f.compare("max") == "4"
        assert f.compare("min") == "-7"
        assert f.compare("argmax") == "carol"
        # 5 records, sum 1: at least 1/5 of the count (exactly reached) -> YES; 0.3 -> NO
        assert f.compare("threshold", fraction=0.2) == "YES"
        assert f.compare("threshold", fraction=0.3) == "NO"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            f.compare("median")
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        f.kill("bob")  # a party gone: the session aborts, nobody releases anything
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            f.compare("max", timeout=3.0)
        assert failed.value.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE)
        assert "bob" in failed.value.details()

        f.launch("bob")
        f.wait_serving("bob")
        assert f.compare("max") == "4"


def test_exact_nonlinear_releases_are_opt_in_in_the_party_policy():
    votes = {"p1": [1, 0, 0], "p2": [0, 0], "p3": [1, 0]}
    with LocalFederation(votes, column="vote", timeout=10.0) as f:  # default policy: no exact nonlinear release
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            f.compare("max")
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "allow_exact_nonlinear" in refused.value.details()


def test_simulate_prints_the_top_bid_only_and_refuses_two_parties(capsys):
    from services.cli import main

    assert main(["simulate", "--parties", "4", "--values", "3800,2514,2982,3390", "--statistic", "max"]) == 0
    out = capsys.readouterr().out
    assert "max: 3800" in out
    assert not any(bid in out for bid in ("2514", "2982", "3390"))
    assert main(["simulate", "--parties", "2", "--values", "1,2", "--statistic", "max"]) == 2
    assert "at least 3 parties" in capsys.readouterr().err
