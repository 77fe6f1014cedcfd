"""gRPC adapters for surveys: the respondents' transport and the coordinator's close.

Both talk to the aggregators listed in the survey file over mutual TLS
(:mod:`services.tls`), or plaintext behind ``--insecure``.
"""

from __future__ import annotations

import asyncio

import grpc
import numpy as np

from mpcdp import ring
from mpcdp.survey import noise
from mpcdp.survey.definition import Survey
from mpcdp.survey.release import BelowMinimum, QuestionResult, check_minimum, estimate, intersect
from mpcdp.survey.respondent import Refused, Unavailable
from services import audit
from services.channels import Channels
from services.streams import Assembler
from services.survey.aggregator import split_ids
from services.survey.store import ID_BYTES
from services.tls import Identity
from services.wire.mpcdp.v1 import survey_pb2, survey_pb2_grpc

_OUTCOMES = {
    survey_pb2.SubmitAck.ACCEPTED: "accepted",
    survey_pb2.SubmitAck.DUPLICATE: "duplicate",
    survey_pb2.SubmitAck.CONFLICT: "conflict",
}
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _busy(exc: grpc.aio.AioRpcError) -> bool:
    """An aggregator at its limit of calls in flight: worth retrying later. gRPC refuses such a call
    itself, as RESOURCE_EXHAUSTED, or (when the refusal cuts a message being sent) as INTERNAL from its
    core; the aggregator's own errors never use these words."""
    details = exc.details() or ""
    return (exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "Concurrent RPC limit" in details) or (
        exc.code() == grpc.StatusCode.INTERNAL and details == "Internal error from Core"
    )


def ref(survey: Survey) -> survey_pb2.SurveyRef:
    return survey_pb2.SurveyRef(survey_id=survey.id, digest=survey.digest)


class _Channels:
    """The survey's aggregators by name, one channel each (:class:`services.channels.Channels`)."""

    def __init__(self, identity: Identity, survey: Survey):
        self.identity = identity
        self.survey = survey
        addresses = {a.name: a.address for a in survey.aggregators}
        self._channels = Channels(identity, addresses.__getitem__)

    def stub(self, name: str) -> survey_pb2_grpc.SurveyAggregatorStub:
        return self._channels.stub(name, survey_pb2_grpc.SurveyAggregatorStub)

    async def close(self) -> None:
        await self._channels.close()


class GrpcTransport(_Channels):
    """:class:`mpcdp.survey.respondent.Transport` over the aggregators' Submit streams."""

    def __init__(self, identity: Identity, survey: Survey, timeout: float = 60.0):
        super().__init__(identity, survey)
        self.timeout = timeout

    async def send(self, aggregator, survey, batches, on_ack) -> None:
        survey_ref = ref(survey)

        async def requests():
            for batch in batches:
                yield survey_pb2.SubmitBatch(
                    survey=survey_ref,
                    submissions=[survey_pb2.Submission(submission_id=sid, share=share) for sid, share in batch],
                )

        try:
            call = self.stub(aggregator).Submit(requests(), timeout=self.timeout, wait_for_ready=True)
            async for ack in call:
                on_ack(ack.batch, [_OUTCOMES[o] for o in ack.outcomes])
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _RETRYABLE or _busy(exc):
                raise Unavailable(f"{aggregator}: {exc.code().name}: {exc.details()}") from None
            raise Refused(f"{aggregator} refused the submissions: {exc.code().name}: {exc.details()}") from None


class CoordinatorClient(_Channels):
    """The survey coordinator: close intake, intersect the ids, collect noisy partial sums, debias."""

    def __init__(self, identity: Identity, survey: Survey, timeout: float = 120.0):
        super().__init__(identity, survey)
        self.timeout = timeout

    async def _all(self, fn):
        names = self.survey.aggregator_names
        return dict(zip(names, await asyncio.gather(*(fn(n) for n in names)), strict=True))

    async def status(self) -> dict[str, survey_pb2.SurveyStatus]:
        return await self._all(lambda n: self.stub(n).Status(ref(self.survey), timeout=self.timeout))

    async def close_and_release(self) -> list[QuestionResult]:
        """Close the survey everywhere and return the per-question results.

        Refuses (:class:`BelowMinimum`) without changing anything when some
        aggregator holds fewer shares than the survey's minimum.
        """
        survey = self.survey
        counts = {n: s.submissions for n, s in (await self.status()).items()}
        if min(counts.values()) < survey.min_respondents:
            reason = (
                f"survey {survey.id!r}: {min(counts.values())} submissions at the emptiest "
                f"aggregator, below the minimum of {survey.min_respondents}; nothing was changed"
            )
            audit.record("refused", survey=survey.id, reason=reason)
            raise BelowMinimum(reason)
        await self._all(lambda n: self.stub(n).Close(ref(survey), timeout=self.timeout))
        ids = await self._all(self._ids)
        inter = intersect(ids)
        check_minimum(survey, inter.count)
        noise.check_headroom(survey, inter.count)
        partials = await self._all(
            lambda n: self.stub(n).Release(
                survey_pb2.ReleaseRequest(
                    survey=ref(survey), count=inter.count, set_digest=inter.digest, exclude=b"".join(inter.exclude[n])
                ),
                timeout=self.timeout,
            )
        )
        total = ring.total(np.frombuffer(p.vector, dtype="<u8").astype(np.uint64) for p in partials.values())
        audit.record(
            "released", survey=survey.id, respondents=inter.count, aggregators=",".join(survey.aggregator_names)
        )
        return estimate(survey, total, inter.count)

    async def _ids(self, name: str) -> list[bytes]:
        ids = Assembler(None, ID_BYTES)  # refuses a piece that is not whole ids
        async for chunk in self.stub(name).ListIds(ref(self.survey), timeout=self.timeout):
            ids.add(chunk.ids)
        return split_ids(bytes(ids.bytes()))
