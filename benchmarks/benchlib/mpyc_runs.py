"""The MPyC side of a benchmark: the benchmark script itself started as n MPyC parties on loopback.

``run_parties`` starts ``python SCRIPT -M<n>`` (MPyC's own demos' way) with an environment variable that
tells the script it is a party (``main_or_party``); each party runs the workload ``reps`` times and party 0
prints one ``RESULT`` line (``report``): the median seconds and every run's.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable

REPS_ENV = "MPCDP_BENCH_MPYC_REPS"
RESULT = "RESULT "


def reps() -> int:
    """How many times a party runs the workload."""
    return int(os.environ.get(REPS_ENV, "1"))


def report(times: list[float]) -> None:
    """Party 0's RESULT line."""
    print(RESULT + json.dumps({"seconds": statistics.median(times), "runs": times}), flush=True)


def run_parties(script: str, parties: int, env: dict[str, str], reps: int, timeout: float) -> tuple[dict, str]:
    """Run ``script`` as ``parties`` MPyC parties with ``env`` added: party 0's result and all the output
    (where MPyC writes its byte counts)."""
    out = subprocess.run(
        [sys.executable, script, f"-M{parties}"],
        env={**os.environ, **env, REPS_ENV: str(reps)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    for line in out.stdout.splitlines():
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT) :]), out.stdout + out.stderr
    raise RuntimeError(f"MPyC run failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")


def main_or_party(party_env: str, party: Callable[[], None], main: Callable[[], int]) -> None:
    """A benchmark script's entry point: an MPyC party when ``run_parties`` started it (``party_env`` set),
    else the benchmark."""
    if os.environ.get(party_env):
        party()
    else:
        sys.exit(main())
