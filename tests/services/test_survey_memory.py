"""A survey aggregator's memory stays bounded under concurrent large batches, and is given back.

The attack from issue 9: six concurrent 54 MiB Submit batches took an aggregator
from 393 MB to 1.9 GB resident, and it kept the memory. Here a real aggregator
process (sqlite store) gets 12 streams at once over one connection (beyond its
streams per connection), a burst of six streams of two batches just under its
message limit, the six 54 MiB batches, and 18 streams over six connections
(beyond its calls in flight); its peak (VmHWM) and its resident size afterwards
(VmRSS) are read from /proc.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from mpcdp.survey.definition import parse_survey
from mpcdp.survey.respondent import BATCH_BYTES
from services.survey.limits import MAX_MESSAGE
from services.survey.simulation import LocalSurvey, loopback_survey_text
from services.survey.transport import _busy
from services.wire.mpcdp.v1 import survey_pb2

WIDTH = 256  # 2 KiB shares
TEXT = loopback_survey_text(
    f"""
[[question]]
id = "q"
kind = "choice"
options = [{", ".join(f'"o{i}"' for i in range(WIDTH))}]
""",
    "big",
)
SUBMIT = "/mpcdp.v1.SurveyAggregator/Submit"


def memory_mib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) // 1024
    return out


def batch_bytes(survey, first_id: int, size_bytes: int) -> bytes:
    """One serialized SubmitBatch of about ``size_bytes`` (made once, sent as raw bytes)."""
    n = size_bytes // (8 * WIDTH + 24)
    share = bytes(range(256)) * (8 * WIDTH // 256)
    return survey_pb2.SubmitBatch(
        survey=survey_pb2.SurveyRef(survey_id=survey.id, digest=survey.digest),
        submissions=[
            survey_pb2.Submission(submission_id=(first_id + i).to_bytes(16, "big"), share=share) for i in range(n)
        ],
    ).SerializeToString()


async def stream(channel, batches: list[bytes]) -> str:
    """One Submit call with raw bytes both ways, retried like a respondent's transport when the aggregator
    is busy or refused the stream (UNAVAILABLE); the final outcome."""
    for attempt in range(10):
        call = channel.stream_stream(SUBMIT)(iter(batches), timeout=120)
        try:
            async for _ in call:
                pass
            return "OK"
        except grpc.aio.AioRpcError as exc:
            if not (_busy(exc) or exc.code() == grpc.StatusCode.UNAVAILABLE):
                return exc.code().name
        await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
    return "gave up"


PER_BATCH = (MAX_MESSAGE - (512 << 10)) // (8 * WIDTH + 24)
MAX_CALLS = 12


async def load(address: str, survey) -> tuple[list[str], ...]:
    options = [("grpc.max_send_message_length", 256 << 20), ("grpc.max_receive_message_length", 256 << 20)]

    def batch(k: int, size: int = MAX_MESSAGE - (512 << 10)) -> bytes:
        return batch_bytes(survey, k << 32, size)

    async with grpc.aio.insecure_channel(address, options=options) as channel:
        # 12 streams at once over one connection, each with a respondent's largest batch: beyond
        # --max-streams they wait in the client (gRPC would otherwise buffer a message for each)
        queued = await asyncio.gather(*(stream(channel, [batch(1000 + s, BATCH_BYTES)]) for s in range(12)))
        # a burst of six streams of two batches
        burst = await asyncio.gather(*(stream(channel, [batch(s * 10 + b) for b in range(2)]) for s in range(6)))
        # the attack of the issue: six 54 MiB batches at once
        huge = batch_bytes(survey, 0, 54 << 20)
        attack = await asyncio.gather(*(stream(channel, [huge]) for _ in range(6)))
        del huge
    # 18 streams over six connections: beyond --max-calls the aggregator turns calls away
    channels = [grpc.aio.insecure_channel(address, options=options) for _ in range(6)]
    flood = await asyncio.gather(*(stream(channels[s % 6], [batch(2000 + s, BATCH_BYTES)]) for s in range(18)))
    await asyncio.gather(*(c.close() for c in channels))
    return queued, burst, attack, flood


@pytest.mark.slow
def test_aggregator_memory_is_bounded_under_concurrent_large_batches_and_given_back(tmp_path):
    assert BATCH_BYTES < MAX_MESSAGE  # what respondents send fits what aggregators accept
    survey = parse_survey(TEXT)
    path = tmp_path / "big.toml"
    path.write_text(TEXT)
    run = LocalSurvey(survey, path, tmp_path, insecure=True, aggregator_args=("--max-calls", str(MAX_CALLS)))
    try:
        run.launch("agg-a")  # the other aggregator is not needed to store shares
        run.wait_serving("agg-a")
        pid = run.procs["agg-a"].pid
        address = {a.name: a.address for a in run.survey.aggregators}["agg-a"]
        before = memory_mib(pid)["VmRSS"]
        queued, burst, attack, flood = asyncio.run(load(address, run.survey))
        time.sleep(0.5)
        after = memory_mib(pid)
        stored = asyncio.run(_count(run))
    finally:
        run.stop()
    assert queued == ["OK"] * 12  # one connection: extra streams waited their turn (or were refused, then retried)
    assert burst == ["OK"] * 6
    assert attack == ["RESOURCE_EXHAUSTED"] * 6  # 54 MiB is over the aggregator's limit
    assert flood == ["OK"] * 18  # turned away past --max-calls, then in on a retry
    assert stored == 12 * PER_BATCH + 30 * (BATCH_BYTES // (8 * WIDTH + 24))
    # the unbounded server peaked ~900 MiB above its start on the attack alone, and took ~9 MiB per waiting stream
    print(f"aggregator memory: start {before} MiB, after {after}")
    assert after["VmHWM"] - before < 250, (before, after)
    assert after["VmRSS"] - before < 80, (before, after)  # given back, not kept at the peak


async def _count(run) -> int:
    client = run.coordinator()
    try:
        reply = await client.stub("agg-a").Status(
            survey_pb2.SurveyRef(survey_id=run.survey.id, digest=run.survey.digest), timeout=30
        )
        return reply.submissions
    finally:
        await client.close()
