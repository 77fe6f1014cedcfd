"""Durable survey ingestion: submissions per second into one aggregator process on loopback.

Writes benchmarks/results/survey_ingest.json. One run measures the same
pipeline (respondent client -> gRPC stream over mutual TLS -> aggregator
process -> store, acknowledged only after commit) with three stores: SQLite
(WAL, synchronous=FULL), PostgreSQL (synchronous commit) and no storage at
all (memory), and reports each durable rate as a ratio to the memory one.
The shares are random bytes of the example poll's width, prepared before the
clock starts, so only ingestion is timed. PostgreSQL is measured when
MPCDP_TEST_POSTGRES holds a DSN (.ci/run starts a server), else recorded as
skipped. Target: >= 10,000 durable submissions/s per aggregator on this
2-core machine (anchor: about 1-2k reports/s published for Divvi Up's janus).

    python benchmarks/survey_ingest.py [--n 200000] [--batch 1000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from mpcdp.prg import Prg
from mpcdp.survey.definition import parse_survey
from services.survey.simulation import LocalSurvey

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "election_poll.toml"
OUT = Path(__file__).parent / "results" / "survey_ingest.json"
TARGET = 10_000


def make_items(n: int, width: int, seed: int) -> list[tuple[bytes, bytes]]:
    rng = Prg.from_int(seed, "bench")
    ids, shares = rng.bytes(16 * n), rng.bytes(8 * width * n)
    step = 8 * width
    return [(ids[16 * i : 16 * (i + 1)], shares[step * i : step * (i + 1)]) for i in range(n)]


async def stream(run: LocalSurvey, name: str, items, batch: int) -> float:
    transport = run.transport()
    batches = [items[i : i + batch] for i in range(0, len(items), batch)]
    acked = 0

    def on_ack(_index, outcomes):
        nonlocal acked
        acked += outcomes.count("accepted")

    try:
        start = time.perf_counter()
        await transport.send(name, run.survey, batches, on_ack)
        elapsed = time.perf_counter() - start
    finally:
        await transport.close()
    if acked != len(items):
        raise RuntimeError(f"{name} accepted {acked} of {len(items)} submissions")
    return elapsed


def unverified(text: str) -> str:
    """The example poll without proofs: this benchmark measures the ingestion of unverified ring shares
    (verified reports, end to end: benchmarks/survey_verify.py)."""
    return text.replace('proofs = "prio3"', "")


def measure(store: str, n: int, batch: int, repeats: int, seed: int) -> dict:
    survey = parse_survey(unverified(EXAMPLE.read_text()))
    name = survey.aggregator_names[0]
    best = float("inf")
    for r in range(repeats):
        items = make_items(n, survey.width, seed + r)
        with tempfile.TemporaryDirectory(prefix="mpcdp-bench-") as tmp:
            path = Path(tmp) / "poll.toml"
            path.write_text(unverified(EXAMPLE.read_text()))
            with LocalSurvey(survey, path, Path(tmp), store) as run:
                best = min(best, asyncio.run(stream(run, name, items, batch)))
            if store.startswith("postgres"):
                _drop_schemas(store, survey.aggregator_names)
    return {"submissions": n, "seconds": round(best, 3), "per_second": round(n / best)}


def _drop_schemas(dsn: str, names) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as db:
        for name in names:
            db.execute(f'DROP SCHEMA IF EXISTS "mpcdp_{name.replace("-", "_")}" CASCADE')


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="submissions per measurement")
    ap.add_argument("--batch", type=int, default=1000, help="submissions per streamed batch")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs per store")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    memory = measure("memory", args.n, args.batch, args.repeats, args.seed)
    results = {"memory (no storage)": memory}
    sqlite = measure("sqlite", args.n, args.batch, args.repeats, args.seed)
    results["sqlite (WAL, synchronous=FULL)"] = {
        **sqlite,
        "ratio_to_memory": round(sqlite["per_second"] / memory["per_second"], 3),
        "meets_target": sqlite["per_second"] >= TARGET,
    }
    dsn = os.environ.get("MPCDP_TEST_POSTGRES")
    if dsn:
        pg = measure(dsn, args.n, args.batch, args.repeats, args.seed)
        results["postgresql (synchronous commit)"] = {
            **pg,
            "ratio_to_memory": round(pg["per_second"] / memory["per_second"], 3),
            "meets_target": pg["per_second"] >= TARGET,
        }
    else:
        results["postgresql (synchronous commit)"] = {"skipped": "MPCDP_TEST_POSTGRES is not set"}
    doc = {
        "benchmark": "durable survey submissions per second into one aggregator process on loopback",
        "pipeline": "client -> gRPC bidirectional stream (mutual TLS) -> aggregator -> store; ack after commit",
        "target_per_second": TARGET,
        "anchor": "about 1-2k reports/s published for Divvi Up's janus",
        "batch": args.batch,
        "share_bytes": 8 * parse_survey(unverified(EXAMPLE.read_text())).width,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "results": results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
