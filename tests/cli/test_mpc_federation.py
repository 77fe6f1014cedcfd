"""Comparison statistics among real party processes over the party links (services/mpc_node.py)."""

from __future__ import annotations

import asyncio

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


class _MemoryLinks:
    """Every party's end of in-memory links with the Hub's send/receive signature; a party can go silent."""

    def __init__(self):
        self.boxes: dict[tuple, asyncio.Future] = {}
        self.silent_from: dict[str, int] = {}  # party -> first round it no longer sends

    def _box(self, key):
        if key not in self.boxes:
            self.boxes[key] = asyncio.get_running_loop().create_future()
        return self.boxes[key]

    def end(self, me: str):
        links = self

        class End:
            async def send(self, peer, session, round, kind, payload):
                if round < links.silent_from.get(me, 1 << 30):
                    links._box((me, peer, session, round, kind)).set_result(bytes(payload))

            async def receive(self, peer, session, round, kind):
                return await links._box((peer, me, session, round, kind))

        return End()


def _runs(names, statistic, inputs, sid=b"s" * 16):
    from mpcdp.mpc.engine import Engine
    from mpcdp.mpc.memory import seeded_rngs
    from mpcdp.mpc.session import PartyRun

    rngs = seeded_rngs(len(names), 5)
    return [
        PartyRun(Engine(len(names), p, sid, rngs[p]), statistic.program(statistic.prepare(p, x)))
        for p, x in enumerate(inputs)
    ]


def test_drive_runs_the_engine_over_links_and_a_peer_silent_mid_run_aborts_everyone_with_no_result():
    from mpcdp.mpc.statistics import Extremum
    from mpcdp.protocol import ProtocolError
    from services.mpc_node import drive

    names = ["a", "b", "c"]
    bids = [[7, 0, 0], [0, -3, 0], [0, 0, 5]]

    async def go(links, runs, seconds):
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        return await asyncio.gather(
            *(drive(links.end(n), names, r, b"s" * 16, lambda: end - loop.time()) for n, r in zip(names, runs)),
            return_exceptions=True,
        )

    runs = _runs(names, Extremum(), bids)
    assert asyncio.run(go(_MemoryLinks(), runs, 10.0)) == [None] * 3
    assert [Extremum().release(r.result) for r in runs] == [7, 7, 7]
    rounds = runs[0].round

    links = _MemoryLinks()
    links.silent_from["c"] = rounds // 2  # c stops sending half-way through the comparison
    runs = _runs(names, Extremum(), bids)
    outcomes = asyncio.run(go(links, runs, 0.5))
    assert all(isinstance(o, asyncio.TimeoutError) for o in outcomes)
    for r in runs:
        assert r.done and r.aborted
        with pytest.raises(ProtocolError):
            r.result
