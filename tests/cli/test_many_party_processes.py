"""The many-party protocol between real `mpcdp party` and `mpcdp coordinator` processes (their federation file,
ledgers, session logs and audit logs): parties killed with SIGKILL before and during a query."""

import json
import subprocess
import sys
import threading

import grpc
import pytest

from services.analyst import QueryError
from services.simulation import LocalFederation

VALUES = {f"p{i}": [100.0 * i] for i in range(1, 7)}


def counted_sum(result) -> float:
    return sum(VALUES[p][0] for p in result.parties)


def test_party_processes_killed_before_and_during_a_query_the_quorum_still_releases():
    # 30 s: rounds close as soon as every party answered, and a killed party's broken links stop them waiting,
    # so the timeout costs nothing here; its round timers (~3.75 s) cover the first query's fresh TLS dials
    # between 6 new processes on a loaded machine (that first query asserts nobody dropped)
    with LocalFederation(VALUES, column="value", timeout=30.0) as fed:
        result = fed.query("sum", bounds=(0, 1000), quorum=4)
        assert result.value == 2100 and result.parties == tuple(VALUES) and result.dropped == ()
        fed.kill("p6")  # before the query: unreachable, counted as dropped
        result = fed.query("sum", bounds=(0, 1000), quorum=4, epsilon=1.0)
        assert result.dropped == ("p6",) and result.epsilon > 1.0  # restated for the 5 counted
        assert abs(result.value - counted_sum(result)) < 10 * result.noise_std["sum"]
        fetch = [sys.executable, "-m", "services.cli", "query", "--federation", str(fed.path), "--json"]
        kept = subprocess.run([*fetch, "--fetch", result.session_id], capture_output=True, text=True, timeout=60)
        assert kept.returncode == 0, kept.stderr
        doc = json.loads(kept.stdout)  # the coordinator kept the release: counted, dropped and restated epsilon
        assert doc["dropped"] == ["p6"] and doc["quorum"] == 4 and doc["epsilon"] == result.epsilon
        # during the query: p5 dies somewhere in its rounds; the release is the exact sum of whom it names
        killer = threading.Timer(0.05, fed.kill, ["p5"])
        killer.start()
        try:
            result = fed.query("sum", bounds=(0, 1000), quorum=4)
        finally:
            killer.join()
        assert "p6" in result.dropped and result.value == counted_sum(result)
        assert set(result.parties) >= {"p1", "p2", "p3", "p4"}
        fed.kill("p4")  # three left of a quorum of four
        with pytest.raises(QueryError) as info:
            fed.query("sum", bounds=(0, 1000), quorum=4)
        assert info.value.code == grpc.StatusCode.ABORTED and "the query's quorum is 4" in info.value.details
