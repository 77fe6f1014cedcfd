"""Comparison statistics among real party processes over the party links (services/mpc_node.py)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

import grpc
import pytest

from mpcdp.dp.ledger import PrivacyLedger
from services.analyst import QueryError, fetch
from services.simulation import CLIENT, LocalFederation


def spent(f: LocalFederation, name: str) -> float:
    """The epsilon node ``name`` has charged to its ledger (one dataset per node)."""
    path = f.dir / "state" / f"{name}.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        (dataset,) = db.execute("SELECT dataset FROM budgets").fetchone()
    return float(PrivacyLedger(path, dataset, f.epsilon_budget).spent().epsilon)


def test_exact_comparisons_are_queries_kept_for_fetch():
    data = {"alice": [3, 0], "bob": [1], "carol": [4, -7]}
    with LocalFederation(data, column="bid", timeout=10.0, allow_exact_nonlinear=True) as f:
        top = f.query("max")
        assert (top.value, top.exact, top.epsilon, top.parties) == (4, True, None, ("alice", "bob", "carol"))
        assert f.query("min").value == -7
        assert f.query("argmax").value == "carol"
        assert f.query("second-price").result == {"second-price": 3, "winner": "carol"}  # carol's 4 stays secret
        # 5 records, sum 1: at least 1/5 of the count (exactly reached) -> YES; 0.3 -> NO
        assert f.query("threshold", fraction=0.2).value == "YES"
        assert f.query("threshold", fraction=0.3).value == "NO"
        again = fetch(f.federation, CLIENT, top.session_id)
        assert (again.statistic, again.result, again.session_id) == ("max", {"max": 4}, top.session_id)
        with pytest.raises(QueryError) as refused:
            f.query("max", epsilon=1.0)
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT and "epsilon" in refused.value.details
        with pytest.raises(QueryError) as refused:
            f.query("threshold", fraction=0.5, column="salary")
        assert refused.value.code == grpc.StatusCode.NOT_FOUND


def test_dp_selection_and_median_charge_every_ledger_once_a_crash_charges_nothing_and_the_budget_holds():
    ballots = {"p1": ["infra"] * 30 + ["sales"] * 2, "p2": ["infra"] * 20, "p3": ["product"] * 5, "p4": ["sales"]}
    with LocalFederation(ballots, column="team", timeout=20.0, epsilon_budget=2.5) as f:
        chosen = f.query("noisy-argmax", epsilon=1.0, categories=["infra", "product", "sales"])
        assert (chosen.value, chosen.exact, chosen.epsilon, chosen.mechanism) == (
            "infra",
            False,
            1.0,
            "discrete_laplace",
        )
        names = ["coordinator", "p1", "p2", "p3", "p4"]
        assert {n: spent(f, n) for n in names} == {n: 1.0 for n in names}
        assert fetch(f.federation, CLIENT, chosen.session_id).value == "infra"
        assert {n: spent(f, n) for n in names} == {n: 1.0 for n in names}  # fetching again costs nothing
        with pytest.raises(QueryError) as exact:
            f.query("max")  # the federation did not opt in to exact nonlinear releases
        assert exact.value.code == grpc.StatusCode.PERMISSION_DENIED and "allow_exact_nonlinear" in exact.value.details

        f.kill("p3")  # a party gone: the session aborts, nothing is released and no ledger is charged
        with pytest.raises(QueryError) as failed:
            f.query("noisy-argmax", epsilon=1.0, categories=["infra", "product", "sales"], timeout=3.0)
        assert failed.value.code in (grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE)
        assert "p3" in failed.value.details
        assert {n: spent(f, n) for n in names} == {n: 1.0 for n in names}
        f.launch("p3")
        f.wait_serving("p3")

        assert f.query("noisy-argmax", epsilon=1.0, categories=["infra", "product", "sales"]).value == "infra"
        with pytest.raises(QueryError) as over:
            f.query("noisy-argmax", epsilon=1.0, categories=["infra", "product", "sales"])
        assert over.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED  # the coordinator's ledger, before any party
        assert over.value.details.startswith("coordinator: ") and "budget" in over.value.details
        assert {n: spent(f, n) for n in names} == {n: 2.0 for n in names}

    salaries = {f"q{i}": [1000 * i + k for k in range(30)] for i in range(1, 4)}  # 90 records, 45 below 2015
    with LocalFederation(salaries, column="salary", timeout=20.0) as f:
        median = f.query("median", epsilon=4.0, edges=[0.0, 1000.0, 2015.0, 3000.0, 4000.0])
        assert median.value == 2015.0 and median.epsilon == 4.0
        assert {n: spent(f, n) for n in ("coordinator", "q1", "q2", "q3")} == dict.fromkeys(
            ("coordinator", "q1", "q2", "q3"), 4.0
        )


def test_demos_the_referendum_prints_yes_only_and_the_auction_only_the_winning_bid(capsys):
    from services.cli import main

    assert main(["demo", "referendum"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("referendum: YES")
    assert not any(ch.isdigit() for ch in out)  # no count, no share of the vote
    assert main(["demo", "auction"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("winning bid: 3800")
    assert not any(bid in out for bid in ("2514", "2982", "3390", "alice"))
    # `mpcdp demo vickrey` asks the second-price query tested above among party processes


def test_simulate_prints_the_top_bid_only_and_refuses_two_parties(capsys):
    from services.cli import main

    top = ["simulate", "--parties", "4", "--values", "3800,2514,2982,3390", "--statistic", "max", "--timeout", "120"]
    assert main(top) == 0  # a generous deadline: the suite runs on two busy cores
    out = capsys.readouterr().out
    assert "max: 3800" in out
    assert not any(bid in out for bid in ("2514", "2982", "3390"))
    assert main(["simulate", "--parties", "2", "--values", "1,2", "--statistic", "max"]) == 2
    assert "at least 3 parties" in capsys.readouterr().err
    assert main(["simulate", "--parties", "3", "--values", "1,0,1", "--statistic", "threshold"]) == 2
    assert "needs --threshold" in capsys.readouterr().err


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
            _ = r.result
