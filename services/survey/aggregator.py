"""The aggregator node: a party node in the aggregator role of a survey (DESIGN.md, protocol 2).

It stores each respondent's share durably before acknowledging it, and at
close gives the coordinator one partial sum over exactly the counted
submissions plus its own piece of the distributed central noise. It checks
the survey's minimum size itself rather than trusting the coordinator.

Memory is bounded whatever the clients do (the defaults are in :mod:`services.survey.limits`): a
message is at most ``MAX_MESSAGE`` (the server's limit, :mod:`services.server`), and a Submit
stream reads its next batch only once it holds one of ``INTAKE_BATCHES``
intake slots shared by all streams, so at most that many batches are decoded
and being stored at a time; the others wait unread. gRPC still buffers up to
one message per waiting stream, so a connection may carry at most
``MAX_STREAMS`` calls at once (``--max-streams``; further ones wait in the
client, by HTTP/2 flow control) and the server takes at most ``MAX_CALLS``
calls over all connections (``--max-calls``); beyond that gRPC refuses them,
and respondents retry after a random back-off. After each batch the freed heap is given back to the
system (glibc ``malloc_trim``), so the node's resident memory returns to its
resting size after a burst instead of staying at its peak.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn

import grpc
import numpy as np

from mpcdp.dp.ledger import BudgetExceeded
from mpcdp.prg import RandomSource
from mpcdp.survey.definition import Survey
from mpcdp.survey.noise import check_headroom
from mpcdp.survey.release import BelowMinimum, check_minimum
from services import audit, streams
from services.survey.budget import SurveyLedger
from services.survey.store import ID_BYTES, PutStatus, ShareStore, StoreError
from services.tls import caller
from services.wire.mpcdp.v1 import survey_pb2, survey_pb2_grpc

_OUTCOME = {
    PutStatus.ACCEPTED: survey_pb2.SubmitAck.ACCEPTED,
    PutStatus.DUPLICATE: survey_pb2.SubmitAck.DUPLICATE,
    PutStatus.CONFLICT: survey_pb2.SubmitAck.CONFLICT,
}
_STATUS = {
    StoreError.UNKNOWN_SURVEY: grpc.StatusCode.NOT_FOUND,
    StoreError.MISMATCH: grpc.StatusCode.FAILED_PRECONDITION,
    StoreError.CLOSED: grpc.StatusCode.FAILED_PRECONDITION,
    StoreError.NOT_CLOSED: grpc.StatusCode.FAILED_PRECONDITION,
    StoreError.RELEASED: grpc.StatusCode.FAILED_PRECONDITION,
}
INTAKE_BATCHES = 2  # batches decoded and being stored at once, over all Submit streams


def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim with
        return None


_TRIM = _malloc_trim()


def give_memory_back() -> None:
    """Return the heap's free pages to the system (glibc keeps freed memory of large batches otherwise)."""
    if _TRIM is not None:
        _TRIM(0)


def _status(state) -> survey_pb2.SurveyStatus:
    """A store's survey state on the wire (SurveyState ``SURVEY_STATE_<STATE>``, mpcdp.survey.lifecycle)."""
    return survey_pb2.SurveyStatus(
        state=f"SURVEY_STATE_{state.state.upper()}",  # the enum value by its name
        submissions=state.count,
    )


def split_ids(blob: bytes) -> list[bytes]:
    if len(blob) % ID_BYTES:
        raise ValueError(f"id lists are concatenated {ID_BYTES}-byte ids")
    return [blob[i : i + ID_BYTES] for i in range(0, len(blob), ID_BYTES)]


class AggregatorService(survey_pb2_grpc.SurveyAggregatorServicer):
    """``noise_rng(survey)`` gives the generator of this aggregator's noise piece for a survey
    (None: the CSPRNG); the piece itself is always drawn by the store's release."""

    def __init__(
        self,
        name: str,
        surveys: Mapping[str, Survey],
        store: ShareStore,
        noise_rng: Callable[[Survey], RandomSource] | None = None,
        coordinator: str = "coordinator",
        insecure: bool = False,
        intake_batches: int = INTAKE_BATCHES,
        ledger: SurveyLedger | None = None,
    ):
        self.name = name
        self.ledger = ledger  # charged at each release (services.survey.budget); None: tests of the store alone
        self._intake = asyncio.Semaphore(intake_batches)
        # one thread for all store work: every store serialises it anyway, and one thread keeps one malloc
        # arena (memory freed in a pool of threads' arenas is not given back to the system)
        self._store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self.surveys = dict(surveys)
        self.store = store
        self.noise_rng = noise_rng
        self.coordinator = coordinator
        self.insecure = insecure
        for survey in self.surveys.values():
            if name not in survey.aggregator_names:
                raise ValueError(f"{name!r} is not an aggregator of survey {survey.id!r}")
            store.register(survey.id, survey.digest, survey.width)

    @staticmethod
    async def _refuse(context, code: grpc.StatusCode, reason: str, survey: str = "") -> NoReturn:
        """Abort the call, with an audit record of the refusal (who, which survey, why; never a share)."""
        if code == grpc.StatusCode.PERMISSION_DENIED:
            audit.record("denied", caller=caller(context), reason=reason)
        else:
            audit.record("refused", survey=survey, status=code.name, reason=reason)
        await context.abort(code, reason)
        raise AssertionError("context.abort() returned")  # it raises: the call ends here

    async def _survey(self, ref, context) -> Survey:
        survey = self.surveys.get(ref.survey_id)
        if survey is None:
            await self._refuse(
                context, grpc.StatusCode.NOT_FOUND, f"this aggregator runs no survey {ref.survey_id!r}", ref.survey_id
            )
        if ref.digest != survey.digest:
            await self._refuse(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"survey {survey.id!r}: your definition differs from this aggregator's "
                "(digest mismatch); fetch the current survey file",
                survey.id,
            )
        return survey

    async def _coordinator_only(self, context) -> None:
        if not self.insecure and caller(context) != self.coordinator:
            await self._refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"only the coordinator {self.coordinator!r} may see the state of, close or release a survey",
            )

    async def _run(self, context, survey: str, fn, *args):
        try:
            return await asyncio.get_running_loop().run_in_executor(self._store_thread, fn, *args)
        except StoreError as exc:
            await self._refuse(context, _STATUS[exc.reason], str(exc), survey)
        except BudgetExceeded as exc:  # the survey's ledger holds a release over another set
            await self._refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), survey)
        except (ValueError, BelowMinimum) as exc:
            code = (
                grpc.StatusCode.FAILED_PRECONDITION
                if isinstance(exc, BelowMinimum)
                else grpc.StatusCode.INVALID_ARGUMENT
            )
            await self._refuse(context, code, str(exc), survey)

    async def Submit(self, request_iterator, context):
        batches = aiter(request_iterator)
        index = 0
        while True:
            async with self._intake:  # the next batch is read (decoded) only with a slot held
                batch = await anext(batches, None)
                if batch is None:
                    return
                survey = await self._survey(batch.survey, context)
                if not self.insecure and caller(context) in (self.coordinator, *survey.aggregator_names):
                    await self._refuse(  # a node's certificate is no respondent's: it could answer at will
                        context,
                        grpc.StatusCode.PERMISSION_DENIED,
                        "aggregator and coordinator certificates cannot submit reports",
                    )
                items = [(s.submission_id, s.share) for s in batch.submissions]
                del batch
                statuses = await self._run(context, survey.id, self.store.put, survey.id, items)
                del items
                give_memory_back()
            yield survey_pb2.SubmitAck(batch=index, outcomes=[_OUTCOME[s] for s in statuses])
            index += 1

    async def Status(self, request, context):
        # the count over time would tell anyone polling it when someone answered: the coordinator's only
        await self._coordinator_only(context)
        survey = await self._survey(request, context)
        state = await self._run(context, survey.id, self.store.state, survey.id)
        return _status(state)

    async def Close(self, request, context):
        await self._coordinator_only(context)
        survey = await self._survey(request, context)
        state = await self._run(context, survey.id, self.store.close, survey.id)
        audit.record("closed", survey=survey.id, respondents=state.count)
        return _status(state)

    async def ListIds(self, request, context):
        await self._coordinator_only(context)
        survey = await self._survey(request, context)
        ids = await self._run(context, survey.id, lambda: list(self.store.ids(survey.id)))
        for _, piece in streams.chunks(b"".join(ids), ID_BYTES):  # ~1 MiB of whole ids per message
            yield survey_pb2.IdChunk(ids=bytes(piece))

    async def Release(self, request, context):
        await self._coordinator_only(context)
        survey = await self._survey(request.survey, context)

        def release():
            check_minimum(survey, request.count)
            check_headroom(survey, request.count)
            exclude = split_ids(request.exclude)
            rng = self.noise_rng(survey) if self.noise_rng else None  # None: the CSPRNG
            vector = self.store.release(survey, exclude, request.count, request.set_digest, rng)
            if self.ledger is not None:  # recorded, then charged before the share leaves (a replay: no charge)
                self.ledger.charge_release(survey, request.set_digest)
            return vector

        vector = await self._run(context, survey.id, release)
        audit.record("released", survey=survey.id, respondents=request.count, excluded=len(request.exclude) // ID_BYTES)
        return survey_pb2.PartialSum(vector=np.asarray(vector, dtype="<u8").tobytes())
