"""Verified surveys across aggregators (DAP-like): the leader prepares each batch with the helpers.

The coordinator asks the leader (the survey's first aggregator) to verify one batch of the
counted ids (``PrepareBatch``). The leader runs its own prep_init, gathers every helper's
prep shares over mutual TLS (``PrepInit``, which only the leader may call), decides the
verdicts (:func:`mpcdp.survey.proved.decide`), **stores them**, then tells every helper
(``PrepFinish``); each aggregator counts the batch's accepted reports into its aggregate
share in one transaction keyed by the batch id. prep_init is pure, so no prep state is
stored: after a kill -9 anywhere the coordinator asks again, the leader replays its stored
verdicts (or prepares afresh if it had decided nothing), and a batch already counted is not
counted again.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping

import grpc

from mpcdp.survey import proved
from mpcdp.survey.definition import Survey
from mpcdp.survey.lifecycle import Refusal
from services import audit
from services.channels import Channels
from services.survey.aggregator import split_ids
from services.survey.reports import ReportStore, batch_id
from services.survey.store import StoreError
from services.tls import Identity, caller
from services.wire.mpcdp.v1 import survey_pb2, survey_pb2_grpc

_CODES = {
    StoreError.UNKNOWN_SURVEY: grpc.StatusCode.NOT_FOUND,
    StoreError.MISMATCH: grpc.StatusCode.FAILED_PRECONDITION,
    Refusal.CLOSED: grpc.StatusCode.FAILED_PRECONDITION,
    Refusal.NOT_CLOSED: grpc.StatusCode.FAILED_PRECONDITION,
    Refusal.RELEASED: grpc.StatusCode.FAILED_PRECONDITION,
    Refusal.KEY: grpc.StatusCode.PERMISSION_DENIED,
}
_CACHED_BATCHES = 8  # helpers keep their last prep_init results between PrepInit and PrepFinish


class VerifierService(survey_pb2_grpc.SurveyVerifierServicer):
    def __init__(
        self,
        name: str,
        surveys: Mapping[str, Survey],
        store: ReportStore,
        identity: Identity,
        coordinator: str = "coordinator",
        insecure: bool = False,
        timeout: float = 120.0,
    ):
        self.name, self.store, self.identity = name, store, identity
        self.surveys = {k: s for k, s in surveys.items() if s.verified}
        self.coordinator, self.insecure, self.timeout = coordinator, insecure, timeout
        self._addresses: dict[str, str] = {}  # the aggregators of every survey verified here
        self._channels = Channels(identity, self._addresses.__getitem__)
        self._cache: OrderedDict[bytes, proved.PrepInit] = OrderedDict()

    async def _refuse(self, context, code, reason: str, survey: str = ""):
        audit.record("refused", survey=survey, status=code.name, reason=reason)
        await context.abort(code, reason)

    async def _survey(self, ref, context, allowed: str | None = None) -> Survey:
        """The survey of ``ref``, if the caller is ``allowed`` (default: the survey's leader)."""
        survey = self.surveys.get(ref.survey_id)
        if survey is None or ref.digest != survey.digest:
            await self._refuse(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"this aggregator verifies no survey {ref.survey_id!r} with that definition",
                ref.survey_id,
            )
        assert survey is not None, "refused above"
        allowed = allowed or survey.aggregator_names[0]
        if not self.insecure and caller(context) != allowed:
            audit.record("denied", caller=caller(context), reason=f"only {allowed} may call this")
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"only {allowed!r} may call this")
        return survey

    async def _run(self, context, survey: str, fn, *args):
        try:
            return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
        except (StoreError, Refusal) as exc:
            await self._refuse(context, _CODES[exc.reason], str(exc), survey)
        except ValueError as exc:
            await self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc), survey)

    def _stub(self, survey: Survey, name: str) -> survey_pb2_grpc.SurveyVerifierStub:
        self._addresses.update({a.name: a.address for a in survey.aggregators})
        return self._channels.stub(name, survey_pb2_grpc.SurveyVerifierStub)

    def _init(self, survey: Survey, ids: list[bytes], key: bytes) -> proved.PrepInit:
        bid = batch_id(ids)
        if bid not in self._cache:
            reports = self.store.reports(survey.id, ids)
            self._cache[bid] = proved.prep_init(survey, self.store.index[survey.id], key, ids, reports)
            while len(self._cache) > _CACHED_BATCHES:
                self._cache.popitem(last=False)
        return self._cache[bid]

    def _finish(self, survey: Survey, ids: list[bytes], key: bytes, verdicts: bytes, messages: list[bytes]) -> int:
        if self.store.finished(survey.id, batch_id(ids)) is None:
            init = self._init(survey, ids, key)
            totals = proved.finish(survey, init, list(verdicts), messages)
            self.store.finish(survey.id, ids, verdicts, proved.encode_aggregate(survey, totals))
        self._cache.pop(batch_id(ids), None)
        return sum(v == proved.ACCEPTED for v in verdicts)

    async def _helper(self, context, survey: Survey, name: str, method: str, request):
        """Call helper ``name``; its failure fails this batch with the same status (UNAVAILABLE: retry)."""
        try:
            return await getattr(self._stub(survey, name), method)(request, timeout=self.timeout, wait_for_ready=True)
        except grpc.aio.AioRpcError as exc:
            await self._refuse(context, exc.code(), f"helper {name}: {exc.details()}", survey.id)

    async def PrepareBatch(self, request, context):
        survey = await self._survey(request.survey, context, self.coordinator)
        if survey.aggregator_names[0] != self.name:
            await self._refuse(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{self.name} does not lead survey {survey.id!r}",
                survey.id,
            )
        ids = await self._run(context, survey.id, split_ids, request.ids)
        key = await self._run(context, survey.id, self.store.verify_key, survey.id, None, True)
        decided = await self._run(context, survey.id, self.store.decided, survey.id, batch_id(ids))
        ref = request.survey
        helpers = survey.aggregator_names[1:]
        if decided is None:
            own = self._run(context, survey.id, self._init, survey, ids, key)
            theirs = [
                self._helper(
                    context,
                    survey,
                    h,
                    "PrepInit",
                    survey_pb2.PrepInitRequest(survey=ref, ids=request.ids, verify_key=key),
                )
                for h in helpers
            ]
            own_init, *their_inits = await asyncio.gather(own, *theirs)
            verdict_list, messages = await self._run(
                context, survey.id, proved.decide, survey, [own_init.shares, *[list(t.shares) for t in their_inits]]
            )
            verdicts = bytes(verdict_list)
            await self._run(context, survey.id, self.store.decide, survey.id, ids, verdicts, messages)
        else:
            verdicts, messages = decided
        finish = survey_pb2.PrepFinishRequest(survey=ref, ids=request.ids, verdicts=verdicts, messages=messages)
        await asyncio.gather(*(self._helper(context, survey, h, "PrepFinish", finish) for h in helpers))
        await self._run(context, survey.id, self._finish, survey, ids, key, verdicts, messages)
        return survey_pb2.PrepareResult(verdicts=verdicts)

    async def PrepInit(self, request, context):
        survey = await self._survey(request.survey, context)
        ids = await self._run(context, survey.id, split_ids, request.ids)
        key = await self._run(context, survey.id, self.store.verify_key, survey.id, request.verify_key)
        init = await self._run(context, survey.id, self._init, survey, ids, key)
        return survey_pb2.PrepInitResponse(shares=init.shares)

    async def PrepFinish(self, request, context):
        survey = await self._survey(request.survey, context)
        ids = await self._run(context, survey.id, split_ids, request.ids)
        key = await self._run(context, survey.id, self.store.verify_key, survey.id)
        accepted = await self._run(
            context, survey.id, self._finish, survey, ids, key, request.verdicts, list(request.messages)
        )
        return survey_pb2.PrepFinishResponse(accepted=accepted)

    async def close(self) -> None:
        await self._channels.close()
