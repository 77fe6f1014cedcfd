"""What a dropped party costs a many-party query on real processes (``mpcdp party`` / ``mpcdp coordinator``).

Eight party processes and a coordinator on loopback (mutual TLS, ledgers, session logs), through
:class:`services.simulation.LocalFederation`. For each query timeout (the round timer is an eighth of it):
the additive query with every party, the many-party query (quorum 6) with every party, then with one party
hung (SIGSTOP: its links stay up, only the round timers notice) and killed (SIGKILL: its links break, the
rounds stop waiting for it at once). Median wall seconds per query; the release is checked each time.
Writes benchmarks/results/dropouts.json.

    python benchmarks/dropouts.py
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
VALUES = {f"p{i}": [100.0 * i] for i in range(1, 9)}
QUORUM = 6
TIMEOUTS = (10.0, 30.0)
REPS = 5


def timed(fed, reps: int, dropped: tuple[str, ...] = (), **kw) -> float:
    seconds = []
    for _ in range(reps):
        start = time.perf_counter()
        result = fed.query("sum", bounds=(0, 1000), **kw)
        seconds.append(time.perf_counter() - start)
        counted = [p for p in VALUES if p not in dropped]
        if result.value != sum(VALUES[p][0] for p in counted) or tuple(result.dropped) != dropped:
            raise RuntimeError(f"wrong release: {result}")
    return statistics.median(seconds)


def main() -> int:
    from services.simulation import LocalFederation

    rows = []
    for timeout in TIMEOUTS:
        with LocalFederation(VALUES, column="value", timeout=timeout) as fed:
            timed(fed, 1)  # warm: links and TLS sessions up
            timed(fed, 1, quorum=QUORUM)
            row = {
                "timeout_seconds": timeout,
                "round_timer_seconds": timeout / 8,
                "additive_everyone": timed(fed, REPS),
                "quorum_everyone": timed(fed, REPS, quorum=QUORUM),
            }
            pid = fed.procs["p8"].pid
            os.kill(pid, signal.SIGSTOP)
            row["quorum_one_hung"] = timed(fed, 1, ("p8",), quorum=QUORUM)
            os.kill(pid, signal.SIGKILL)
            fed.procs.pop("p8").wait()
            row["quorum_one_killed"] = timed(fed, REPS, ("p8",), quorum=QUORUM)
            row["load_average"] = os.getloadavg()[0]
        print(json.dumps(row), flush=True)
        rows.append(row)
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "parties": len(VALUES),
        "quorum": QUORUM,
        "rows": rows,
        "note": "median wall seconds per query (the hung case: one query); a hung party makes the key round wait "
        "one round timer (its neighbours wait that long for its keys), a killed one costs nothing: its link breaks",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dropouts.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS / 'dropouts.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
