"""HTTPS for surveys: report intake and invitation redemption, beside the aggregators' gRPC (Starlette on hypercorn).

The contract (paths, JSON bodies, status codes, CORS) is the README's "HTTPS API" section; in short:

- ``GET  /v1/surveys/{id}`` — the published definition: the survey file, its digest, the issuer public key;
- ``POST /v1/surveys/{id}/reports`` (aggregator) — one report with its token, stored by the same store and
  library lifecycle as a gRPC ``Submit`` (the token spent in the transaction that stores the report);
- ``POST /v1/surveys/{id}/reports/batch`` (aggregator) — up to 1,000 reports with their tokens, stored in one
  transaction or refused together (a relay's path);
- ``POST /v1/surveys/{id}/tokens`` (issuer) — an invitation code and a TokenRequest for a blind signature;
- ``GET /healthz``; ``GET /metrics`` (to loopback clients only: counts over time would tell when someone answered).

HTTP/1.1 and HTTP/2 (ALPN over TLS; h2c in plaintext for loopback experiments). Every request body is
bounded (413), every client address is rate-limited by a token bucket and every token or invitation by
a count per minute (429 with ``Retry-After``); CORS only for the configured origins. Errors are
``{"error": code, "message": sentence}`` and are counted (``/metrics``) and audited; nothing is stored
on any error.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from mpcdp.survey.definition import Survey
from mpcdp.survey.lifecycle import Refusal
from mpcdp.tokens import InvalidToken, InvitationRefused, TokenRequired, TokenReused
from mpcdp.tokens.admission import CheckedToken, SurveyAdmission, check_batch
from services import audit
from services.survey.admission import IssuerDir, b64url, from_b64url, public_key_document
from services.survey.limits import MAX_BATCH, MAX_TOKEN_BODY, HttpLimits
from services.survey.store import ID_BYTES, PutStatus, StoreError

WINDOW = 60.0


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.code, self.retry_after = status, code, retry_after


class RateLimiter:
    """A token bucket per client address and a per-minute count per token; memory bounded (LRU)."""

    def __init__(self, limits: HttpLimits, clock: Callable[[], float] = time.monotonic, size: int = 100_000):
        self.limits, self.clock, self.size = limits, clock, size
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._uses: OrderedDict[bytes, tuple[float, int]] = OrderedDict()

    def _keep(self, table: OrderedDict, key, value) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.size:
            table.popitem(last=False)

    def address(self, address: str) -> None:
        now = self.clock()
        level, last = self._buckets.get(address, (self.limits.burst, now))
        level = min(self.limits.burst, level + (now - last) * self.limits.rate)
        if level < 1:
            self._keep(self._buckets, address, (level, now))
            wait = math.ceil((1 - level) / max(self.limits.rate, 1e-3))
            raise HttpError(429, "rate_limited", "too many requests from your address: wait and retry", wait)
        self._keep(self._buckets, address, (level - 1, now))

    def token(self, key: bytes, what: str) -> None:
        now = self.clock()
        start, count = self._uses.get(key, (now, 0))
        if now - start >= WINDOW:
            start, count = now, 0
        if count >= self.limits.per_token:
            wait = math.ceil(WINDOW - (now - start))
            raise HttpError(429, "rate_limited", f"this {what} was tried too often: wait a minute and retry", wait)
        self._keep(self._uses, key, (start, count + 1))


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _error(exc: HttpError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return JSONResponse({"error": exc.code, "message": str(exc)}, status_code=exc.status, headers=headers)


async def read_json(request: Request, limit: int) -> dict:
    """The request's JSON object, refusing a body over ``limit`` bytes (413) before reading it all."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise HttpError(415, "unsupported_media_type", "send a JSON body (Content-Type: application/json)")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HttpError(413, "too_large", f"the body is larger than this server's limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HttpError(413, "too_large", f"the body is larger than this server's limit of {limit} bytes")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise HttpError(400, "malformed", "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise HttpError(400, "malformed", "the body is not a JSON object")
    return doc


def _optional(doc: dict, name: str, decode: Callable[[str], bytes]) -> bytes | None:
    value = doc.get(name)
    if value is None or value == "":
        return None
    try:
        return decode(value)
    except (ValueError, TypeError):
        raise HttpError(400, "malformed", f"the field {name!r} is not encoded as the API says") from None


def _field(doc: dict, name: str, decode: Callable[[str], bytes]) -> bytes:
    value = _optional(doc, name, decode)
    if value is None:
        raise HttpError(400, "malformed", f"the field {name!r} is missing")
    return value


def _hex(text: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not hex")
    return bytes.fromhex(text)


class GroupCommit:
    """Stores the reports of concurrent requests together: one transaction, so one fsync, for all that wait.

    Each request's token was verified and bound before it joined (a bad one is refused alone); if a group's
    transaction still refuses (a race on one submission id or token, the survey closing), its reports are
    stored one by one, so each request gets its own answer."""

    def __init__(self, store, executor: ThreadPoolExecutor, max_group: int = 256):
        self.store, self.executor, self.max_group = store, executor, max_group
        self._waiting: list[tuple[str, tuple[bytes, bytes], bytes, CheckedToken, asyncio.Future]] = []
        self._running = False
        self.transactions = 0  # groups stored (each one transaction, unless it fell back to one per report)

    async def put(self, survey_id: str, item: tuple[bytes, bytes], token: bytes, checked: CheckedToken) -> PutStatus:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((survey_id, item, token, checked, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                group, self._waiting = self._waiting[: self.max_group], self._waiting[self.max_group :]
                outcomes = await loop.run_in_executor(self.executor, self._store, group)
                for (*_, future), outcome in zip(group, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._running = False

    def _store(self, group) -> list:
        by_survey: dict[str, list[int]] = {}
        for i, (survey_id, *_) in enumerate(group):
            by_survey.setdefault(survey_id, []).append(i)
        outcomes: list = [None] * len(group)
        for survey_id, picks in by_survey.items():
            parts = [group[i] for i in picks]
            self.transactions += 1
            try:
                statuses = self.store.put(  # a refusal is counted below, report by report, not here too
                    survey_id, [p[1] for p in parts], [p[2] for p in parts], [p[3] for p in parts], count=False
                )
                for i, status in zip(picks, statuses, strict=True):
                    outcomes[i] = status
            except Exception:
                for i in picks:
                    _, item, token, checked, _ = group[i]
                    try:
                        (outcomes[i],) = self.store.put(survey_id, [item], [token], [checked])
                    except Exception as exc:
                        outcomes[i] = exc
        return outcomes


class SurveyHttp:
    """The HTTPS face of an aggregator (``store``: its :class:`~services.survey.reports.ReportStore`) and/or an
    issuer (``issuers``).

    Reports go through ``store.put`` — the call the gRPC ``Submit`` makes, under the same library lifecycle —
    grouped by :class:`GroupCommit`; store work runs on ``executor`` threads, off the event loop."""

    def __init__(
        self,
        surveys: Mapping[str, Survey],
        sources: Mapping[str, str],
        *,
        aggregator: str | None = None,
        store=None,
        admissions: Mapping[str, SurveyAdmission] | None = None,
        issuers: Mapping[str, IssuerDir] | None = None,
        endpoints: dict | None = None,
        cors_origins: tuple[str, ...] = (),
        limits: HttpLimits | None = None,
        executor: ThreadPoolExecutor | None = None,
    ):
        self.surveys, self.sources = dict(surveys), dict(sources)
        self.aggregator, self.store = aggregator, store
        self.admissions = dict(admissions or {})
        self.issuers = dict(issuers or {})
        for issuer in self.issuers.values():
            self.admissions.setdefault(issuer.survey.id, issuer.admission)
        self.endpoints = endpoints
        self.limits = limits = limits or HttpLimits()
        self.limiter = RateLimiter(limits)
        self.metrics: Counter[str] = Counter()
        self.executor = executor or ThreadPoolExecutor(max_workers=2, thread_name_prefix="https")
        self.intake = GroupCommit(store, self.executor) if store is not None else None
        routes = [
            Route("/healthz", self.health, methods=["GET"]),
            Route("/metrics", self.render_metrics, methods=["GET"]),
            Route("/v1/surveys/{survey_id}", self.definition, methods=["GET"]),
        ]
        if store is not None:
            routes.append(Route("/v1/surveys/{survey_id}/reports", self.report, methods=["POST"]))
            routes.append(Route("/v1/surveys/{survey_id}/reports/batch", self.report_batch, methods=["POST"]))
        if self.issuers:
            routes.append(Route("/v1/surveys/{survey_id}/tokens", self.token, methods=["POST"]))
        self.app = Starlette(
            routes=routes,
            middleware=[
                Middleware(
                    CORSMiddleware,
                    allow_origins=list(cors_origins),
                    allow_methods=["GET", "POST"],
                    allow_headers=["content-type"],
                    max_age=600,
                )
            ],
        )

    # -- plumbing --------------------------------------------------------------------------------
    async def _handle(self, request: Request, what: str, work) -> Response:
        self.metrics[f"{what}_requests"] += 1
        survey_id = request.path_params.get("survey_id", "")
        try:
            self.limiter.address(request.client.host if request.client else "")
            return await work(request)
        except HttpError as exc:
            self.metrics[f"{what}_refused_{exc.code}"] += 1
            if exc.code != "rate_limited":  # a flood is counted, not written line by line to the audit log
                audit.record("refused", survey=survey_id, status=str(exc.status), reason=f"{exc.code}: {exc}")
            return _error(exc)

    def _survey(self, request: Request) -> Survey:
        survey = self.surveys.get(request.path_params["survey_id"])
        if survey is None:
            raise HttpError(404, "unknown_survey", f"this server runs no survey {request.path_params['survey_id']!r}")
        return survey

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # -- routes ----------------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def render_metrics(self, request: Request) -> Response:
        # counts over time tell when someone answered (as a survey's Status would): for the operator, on this host
        if not _is_loopback(request.client.host if request.client else ""):
            return _error(HttpError(404, "not_found", "metrics are served to this host only"))
        counts = dict(self.metrics)
        if self.intake is not None:
            counts["intake_transactions"] = self.intake.transactions
        return PlainTextResponse("".join(f"mpcdp_https_{k} {v}\n" for k, v in sorted(counts.items())))

    async def definition(self, request: Request) -> Response:
        async def work(request):
            survey = self._survey(request)
            admission = self.admissions.get(survey.id)
            issuer = None
            if admission is not None:
                issuer = {
                    **public_key_document(survey.id, admission.issuer),
                    "name": admission.issuer_name.decode(),
                    "origin_info": admission.origin_info.decode(),
                    "token_type": 2,
                }
                del issuer["survey"]
            return JSONResponse(
                {
                    "survey": survey.id,
                    "title": survey.title,
                    "digest": survey.digest.hex(),
                    "proofs": survey.proofs,
                    "toml": self.sources.get(survey.id, ""),
                    "aggregators": list(survey.aggregator_names),
                    "issuer": issuer,
                    "endpoints": self.endpoints,
                }
            )

        return await self._handle(request, "definition", work)

    def _intake_survey(self, request: Request) -> Survey:
        survey = self._survey(request)
        if survey.id not in self.admissions:
            reason = f"this aggregator takes no HTTPS reports for survey {survey.id!r} (it has no issuer key)"
            raise HttpError(404, "unknown_survey", reason)
        return survey

    @staticmethod
    def _check_digest(doc: dict, survey: Survey) -> None:
        if _field(doc, "digest", _hex) != survey.digest:
            raise HttpError(
                412, "digest_mismatch", f"your definition of survey {survey.id!r} differs from this aggregator's"
            )

    def _entry(self, doc: dict) -> tuple[bytes, bytes, bytes | None]:
        """(submission id, report, token or None) of one report's JSON object; rate-limits its token."""
        if not isinstance(doc, dict):
            raise HttpError(400, "malformed", "each report is a JSON object")
        sid = _field(doc, "submission_id", _hex)
        if len(sid) != ID_BYTES:
            raise HttpError(400, "malformed", f"a submission id is {ID_BYTES} bytes ({2 * ID_BYTES} hex digits)")
        token = _optional(doc, "token", from_b64url)
        if token is not None:
            self.limiter.token(hashlib.sha256(token).digest(), "token")
        return sid, _field(doc, "report", from_b64url), token

    @staticmethod
    def _store_refusal(exc: Exception) -> HttpError:
        """The HTTP answer to a refusal of the store (the same refusals a gRPC Submit gets)."""
        if isinstance(exc, TokenRequired):
            return HttpError(401, "token_missing", str(exc))
        if isinstance(exc, TokenReused):
            return HttpError(403, "token_reused", str(exc))
        if isinstance(exc, InvalidToken):
            return HttpError(403, "token_invalid", str(exc))
        if isinstance(exc, (StoreError, Refusal)):
            if exc.reason == StoreError.UNKNOWN_SURVEY:
                return HttpError(404, "unknown_survey", str(exc))
            return HttpError(409, "closed", str(exc))
        return HttpError(400, "malformed", str(exc))

    async def report(self, request: Request) -> Response:
        async def work(request):
            survey = self._intake_survey(request)
            doc = await read_json(request, self.limits.max_body)
            self._check_digest(doc, survey)
            sid, report, token = self._entry(doc)
            if token is None:
                await self._refused(survey.id, "token-missing")
                raise HttpError(401, "token_missing", f"survey {survey.id!r} admits respondents by token only")
            size = self.store.report_size(survey.id)  # checked before the token and the group commit it would fail
            if len(report) != size:
                await self._refused(survey.id, "malformed")
                raise HttpError(400, "malformed", f"this aggregator's reports of survey {survey.id!r} are {size} bytes")
            checked = await self._check_token(survey, sid, token)
            assert self.intake is not None  # this route exists only with a store
            try:
                status = await self.intake.put(survey.id, (sid, report), token, checked)
            except (ValueError, StoreError, Refusal) as exc:
                raise self._store_refusal(exc) from None
            if status == PutStatus.CONFLICT:
                raise HttpError(409, "conflict", "this submission id is already stored with another report")
            self.metrics[f"reports_{status.name.lower()}"] += 1
            if status == PutStatus.ACCEPTED:
                return JSONResponse({"outcome": "accepted"}, status_code=201)
            return JSONResponse({"outcome": "duplicate"}, status_code=200)

        return await self._handle(request, "reports", work)

    async def report_batch(self, request: Request) -> Response:
        """Many reports, each with its token, stored in one transaction or refused together (a relay's path,
        like a gRPC Submit batch): 200 with one outcome per report, in order."""

        async def work(request):
            survey = self._intake_survey(request)
            doc = await read_json(request, self.limits.max_batch_body)
            self._check_digest(doc, survey)
            entries = doc.get("reports")
            if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_BATCH:
                raise HttpError(400, "malformed", f"'reports' is a list of 1 to {MAX_BATCH} reports")
            parsed = [self._entry(e) for e in entries]
            items = [(sid, report) for sid, report, _ in parsed]
            tokens = [token or b"" for _, _, token in parsed]
            try:
                statuses = await self._run(self.store.put, survey.id, items, tokens)
            except (ValueError, StoreError, Refusal) as exc:
                raise self._store_refusal(exc) from None
            for status in statuses:
                self.metrics[f"reports_{status.name.lower()}"] += 1
            return JSONResponse({"outcomes": [status.value for status in statuses]})

        return await self._handle(request, "batches", work)

    async def _refused(self, survey_id: str, reason: str) -> None:
        await self._run(self.store.count_refusal, survey_id, reason)

    async def _check_token(self, survey: Survey, sid: bytes, token: bytes) -> CheckedToken:
        """Verify a report's token before it joins a group commit, so that one bad token never refuses a group:
        forged, truncated, another issuer's (403 token_invalid), already spent (403 token_reused)."""
        admission = self.admissions[survey.id]

        def check() -> CheckedToken:
            (checked,) = check_batch(admission, [(sid, token)])
            return checked

        try:
            checked = await self._run(check)
        except InvalidToken as exc:
            await self._refused(survey.id, "token-invalid")
            raise HttpError(403, "token_invalid", str(exc)) from None
        if not checked.bound:
            reused = await self._run(self.store.spent, checked.key)
            await self._refused(survey.id, "token-reused" if reused else "token-invalid")
            if reused:
                raise HttpError(403, "token_reused", "this token was already used: a token admits one report")
            raise HttpError(403, "token_invalid", "this token was issued for another submission or survey")
        return checked

    async def token(self, request: Request) -> Response:
        async def work(request):
            survey = self._survey(request)
            issuer = self.issuers.get(survey.id)
            if issuer is None:
                raise HttpError(404, "unknown_survey", f"this server issues no tokens for survey {survey.id!r}")
            doc = await read_json(request, MAX_TOKEN_BODY)
            code = doc.get("invitation")
            if not isinstance(code, str) or not code:
                raise HttpError(400, "malformed", "the field 'invitation' is missing")
            token_request = _field(doc, "token_request", from_b64url)
            self.limiter.token(hashlib.sha256(b"invitation:" + code.encode()).digest(), "invitation")
            try:
                response = await self._run(issuer.invitations.redeem, code, token_request, issuer.issuer)
            except InvitationRefused as exc:
                raise HttpError(403, "invitation_refused", str(exc)) from None
            except InvalidToken as exc:
                raise HttpError(400, "malformed", str(exc)) from None
            self.metrics["tokens_issued"] += 1
            return JSONResponse({"token_response": b64url(response)})

        return await self._handle(request, "tokens", work)


async def serve(
    app,
    bind: str,
    shutdown: asyncio.Event,
    certfile: Path | None = None,
    keyfile: Path | None = None,
) -> None:
    """Serve ``app`` on ``bind`` (HOST:PORT) until ``shutdown`` is set: TLS with HTTP/2 and HTTP/1.1 by ALPN
    when given a certificate, else plaintext HTTP/1.1 and h2c."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [bind]
    config.accesslog = None
    config.errorlog = None
    config.include_server_header = False
    config.keep_alive_timeout = 30
    # hypercorn closes a connection after 1,000 requests (its default), cutting HTTP/2 streams in flight: a relay
    # or the benchmark sends more than that on one connection
    config.keep_alive_max_requests = 1_000_000
    config.h11_max_incomplete_size = 16 << 10  # request line and headers
    config.h2_max_concurrent_streams = 32
    if certfile is not None:
        config.certfile, config.keyfile = str(certfile), str(keyfile)
    await hypercorn_serve(app, config, shutdown_trigger=shutdown.wait)
