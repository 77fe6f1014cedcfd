"""The coordinator of a verified (Prio3) survey: close, intersect, verify every batch, release.

A report counts only if every aggregator holds it (the intersection of their ids) **and**
its proofs verified; the others are never dropped silently: the release reports how many
failed verification, were malformed, or were not held by every aggregator.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc

from mpcdp.survey import noise, proved
from mpcdp.survey.release import BelowMinimum, QuestionResult, check_minimum, estimate, id_set_digest
from services import audit
from services.survey.transport import CoordinatorClient, ref
from services.wire.mpcdp.v1 import survey_pb2, survey_pb2_grpc

BATCH = 1000  # reports verified per PrepareBatch call
RETRIES = 8  # PrepareBatch attempts while an aggregator restarts
IN_FLIGHT = 2  # batches being verified at once: one aggregator's preparation overlaps another's


@dataclass(frozen=True)
class Verification:
    counted: int  # held by every aggregator and verified
    rejected: int  # a proof failed (or the aggregators' joint randomness disagreed)
    malformed: int  # some aggregator could not decode its part
    incomplete: int  # held by some aggregators only

    def line(self) -> str:
        return (
            f"counted {self.counted} reports; rejected: {self.rejected} reports failed verification; "
            f"{self.malformed} malformed; {self.incomplete} not held by every aggregator"
        )

    def as_dict(self) -> dict:
        return {
            "counted": self.counted,
            "rejected": self.rejected,
            "malformed": self.malformed,
            "incomplete": self.incomplete,
        }


class VerifiedCoordinator(CoordinatorClient):
    """:class:`CoordinatorClient` for surveys with ``proofs = "prio3"``; ``verification`` holds the counts."""

    verification: Verification | None = None
    batch = BATCH
    in_flight = IN_FLIGHT
    _verifier: survey_pb2_grpc.SurveyVerifierStub | None = None

    async def close_and_release(self) -> list[QuestionResult]:
        survey = self.survey
        await self._refuse_below_minimum()
        await self._all(lambda n: self.stub(n).Close(ref(survey), timeout=self.timeout))
        held = await self._all(self._ids)
        common = sorted(set.intersection(*(set(ids) for ids in held.values())))
        incomplete = len(set().union(*held.values())) - len(common)
        slots = asyncio.Semaphore(self.in_flight)

        async def prepare(ids):
            async with slots:
                return await self._prepare(ids)

        batches = await asyncio.gather(
            *(prepare(common[start : start + self.batch]) for start in range(0, len(common), self.batch))
        )
        verdicts = [v for batch in batches for v in batch]
        accepted = [sid for sid, v in zip(common, verdicts, strict=True) if v == proved.ACCEPTED]
        self.verification = Verification(
            len(accepted), verdicts.count(proved.REJECTED), verdicts.count(proved.MALFORMED), incomplete
        )
        check_minimum(survey, len(accepted))
        noise.check_headroom(survey, len(accepted))
        partials = await self._all(
            lambda n: self.stub(n).Release(
                survey_pb2.ReleaseRequest(survey=ref(survey), count=len(accepted), set_digest=id_set_digest(accepted)),
                timeout=self.timeout,
            )
        )
        merged = proved.add_aggregates(survey, [proved.decode_aggregate(survey, p.vector) for p in partials.values()])
        audit.record(
            "released",
            survey=survey.id,
            respondents=len(accepted),
            aggregators=",".join(survey.aggregator_names),
            rejected=self.verification.rejected,
            malformed=self.verification.malformed,
            incomplete=incomplete,
        )
        return estimate(survey, proved.totals_vector(survey, merged, len(accepted)), len(accepted))

    async def _refuse_below_minimum(self) -> None:
        """Change nothing when some aggregator holds fewer reports than the survey's minimum."""
        fewest = min(s.submissions for s in (await self.status()).values())
        if fewest < self.survey.min_respondents:
            reason = (
                f"survey {self.survey.id!r}: {fewest} submissions at the emptiest aggregator, below the "
                f"minimum of {self.survey.min_respondents}; nothing was changed"
            )
            audit.record("refused", survey=self.survey.id, reason=reason)
            raise BelowMinimum(reason)

    async def _prepare(self, ids: list[bytes]) -> list[int]:
        """Ask the leader to verify one batch; retried while an aggregator is unavailable (a restart)."""
        if self._verifier is None:  # the leader: the survey's first aggregator
            self._verifier = self._channels.stub(self.survey.aggregators[0].name, survey_pb2_grpc.SurveyVerifierStub)
        request = survey_pb2.PrepareRequest(survey=ref(self.survey), ids=b"".join(ids))
        for attempt in range(RETRIES):
            try:
                result = await self._verifier.PrepareBatch(request, timeout=self.timeout, wait_for_ready=True)
                return list(result.verdicts)
            except grpc.aio.AioRpcError as exc:
                if (
                    exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                    or attempt == RETRIES - 1
                ):
                    raise
                await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
        raise AssertionError("unreachable")


def coordinator_for(identity, survey, timeout: float = 120.0) -> CoordinatorClient:
    """The coordinator client a survey needs: verified batches for ``proofs = "prio3"``, sums otherwise."""
    return (VerifiedCoordinator if survey.verified else CoordinatorClient)(identity, survey, timeout)
