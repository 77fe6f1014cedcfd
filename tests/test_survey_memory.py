"""A survey aggregator's memory stays bounded under concurrent large batches, and is given back.

The attack from issue 9: six concurrent 54 MiB Submit batches took an aggregator
from 393 MB to 1.9 GB resident, and it kept the memory. Here a real aggregator
process (sqlite store) gets the same six batches, then a legitimate burst of
six streams of batches just under its message limit; its peak (VmHWM) and its
resident size afterwards (VmRSS) are read from /proc.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from mpcdp.client import BATCH_BYTES
from mpcdp.survey.definition import parse_survey
from services.survey.aggregator import MAX_MESSAGE
from services.survey.simulation import LocalSurvey
from services.wire.mpcdp.v1 import survey_pb2, survey_pb2_grpc

WIDTH = 256  # 2 KiB shares
TEXT = f"""
[survey]
id = "big"
min_respondents = 1
[[aggregator]]
name = "agg-a"
address = "127.0.0.1:1"
[[aggregator]]
name = "agg-b"
address = "127.0.0.1:2"
[[question]]
id = "q"
kind = "choice"
options = [{", ".join(f'"o{i}"' for i in range(WIDTH))}]
"""
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
        submissions=[survey_pb2.Submission(submission_id=(first_id + i).to_bytes(16, "big"), share=share)
                     for i in range(n)]).SerializeToString()


async def stream(channel, batches: list[bytes]) -> str:
    call = channel.stream_stream(SUBMIT)(iter(batches), timeout=120)  # raw bytes both ways
    try:
        async for _ in call:
            pass
        return "OK"
    except grpc.aio.AioRpcError as exc:
        return exc.code().name


async def load(address: str, survey) -> tuple[list[str], list[str]]:
    options = [("grpc.max_send_message_length", 256 << 20), ("grpc.max_receive_message_length", 256 << 20)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        huge = batch_bytes(survey, 0, 54 << 20)
        attack = await asyncio.gather(*(stream(channel, [huge]) for _ in range(6)))
        del huge
        legit = [[batch_bytes(survey, (s * 10 + b) << 32, MAX_MESSAGE - (512 << 10)) for b in range(2)]
                 for s in range(6)]
        burst = await asyncio.gather(*(stream(channel, batches) for batches in legit))
    return attack, burst


@pytest.mark.slow
def test_aggregator_memory_is_bounded_under_concurrent_large_batches_and_given_back(tmp_path):
    assert BATCH_BYTES < MAX_MESSAGE  # what respondents send fits what aggregators accept
    survey = parse_survey(TEXT)
    path = tmp_path / "big.toml"
    path.write_text(TEXT)
    run = LocalSurvey(survey, path, tmp_path, insecure=True)
    try:
        run.launch("agg-a")  # the other aggregator is not needed to store shares
        run.wait_serving("agg-a")
        pid = run.procs["agg-a"].pid
        address = {a.name: a.address for a in run.survey.aggregators}["agg-a"]
        before = memory_mib(pid)["VmRSS"]
        attack, burst = asyncio.run(load(address, run.survey))
        time.sleep(0.5)
        after = memory_mib(pid)
        stored = asyncio.run(_count(run))
    finally:
        run.stop()
    assert attack == ["RESOURCE_EXHAUSTED"] * 6  # 54 MiB is over the aggregator's limit
    assert burst == ["OK"] * 6
    assert stored == 12 * ((MAX_MESSAGE - (512 << 10)) // (8 * WIDTH + 24))
    # ~90 MiB of shares went in; the unbounded server peaked ~900 MiB above its start on the attack alone
    assert after["VmHWM"] - before < 250, (before, after)
    assert after["VmRSS"] - before < 80, (before, after)  # given back, not kept at the peak


async def _count(run) -> int:
    client = run.coordinator()
    try:
        reply = await client.stub("agg-a").Status(survey_pb2.SurveyRef(survey_id=run.survey.id,
                                                                       digest=run.survey.digest), timeout=30)
        return reply.submissions
    finally:
        await client.close()
