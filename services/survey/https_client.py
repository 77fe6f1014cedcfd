"""The respondent over HTTPS: redeem an invitation for a token, then send each aggregator its report with it.

Server-authenticated TLS only (no client certificate): the token is the admission. HTTP/2 when the server
offers it. The token's blinding state and then the token itself wait in an owner-only outbox file beside
the prepared submission, so a retry after a lost answer re-sends the same TokenRequest (the issuer
answers it again) or the same token (each aggregator answers "duplicate"), never a second one.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

from mpcdp.prg import RandomSource
from mpcdp.survey.definition import Survey
from mpcdp.survey.respondent import Refused, Unavailable
from mpcdp.tokens import IssuerPublicKey, PendingToken
from mpcdp.tokens.admission import SurveyAdmission
from services.survey.admission import b64url, from_b64url
from services.survey.files import write_private

_RETRY = {429, 500, 502, 503, 504}


def http_client(ca: Path | None = None, insecure: bool = False, timeout: float = 60.0) -> httpx.AsyncClient:
    """An HTTP/2-capable client trusting ``ca`` (the survey CA) or the system's roots."""
    verify: bool | ssl.SSLContext = False if insecure else ssl.create_default_context(cafile=str(ca) if ca else None)
    return httpx.AsyncClient(http2=True, verify=verify, timeout=timeout)


def endpoints_of(path: str | Path) -> dict:
    """The endpoints file: ``{"survey", "issuer": URL, "aggregators": {name: URL}}``."""
    doc = json.loads(Path(path).read_text())
    if not isinstance(doc.get("aggregators"), dict) or not isinstance(doc.get("issuer"), str):
        raise ValueError(f"{path}: an endpoints file has an issuer URL and an aggregators object")
    return doc


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{response.status_code} {body.get('error')}: {body.get('message')}"
    except ValueError:
        return f"{response.status_code}: {response.text[:200]}"


def _tls_name(name: str | None) -> dict | None:
    """Check the server's certificate for ``name`` (a node name in the survey CA) instead of the URL's host."""
    return {"sni_hostname": name} if name else None


async def _post(client: httpx.AsyncClient, url: str, doc: dict, who: str, tls_name: str | None) -> httpx.Response:
    try:
        response = await client.post(url, json=doc, extensions=_tls_name(tls_name))
    except httpx.HTTPError as exc:
        raise Unavailable(f"{who}: {type(exc).__name__}: {exc}") from None
    if response.status_code in _RETRY:
        raise Unavailable(f"{who}: {_reason(response)}")
    return response


class TokenOutbox:
    """The token of one submission, from TokenRequest to finalized token, kept in an owner-only file."""

    def __init__(self, path: Path, admission: SurveyAdmission, submission_id: bytes, tls_name: str | None = None):
        self.path, self.admission, self.submission_id = Path(path), admission, submission_id
        self.tls_name = tls_name

    def _load(self) -> dict:
        if not self.path.exists():
            return {}
        doc = json.loads(self.path.read_text())
        return doc if doc.get("submission_id") == self.submission_id.hex() else {}

    async def token(self, client: httpx.AsyncClient, issuer_url: str, invitation: str, rng: RandomSource) -> bytes:
        doc = self._load()
        if "token" in doc:
            return bytes.fromhex(doc["token"])
        if "request" not in doc:  # a fresh TokenRequest, kept before it is sent
            request, pending = self.admission.request(self.submission_id, rng)
            doc = {
                "submission_id": self.submission_id.hex(),
                "request": request.hex(),
                "token_input": pending.token_input.hex(),
                "inv": pending.inv.hex(),
            }
            write_private(self.path, json.dumps(doc))
        pending = PendingToken(self.admission.issuer, bytes.fromhex(doc["token_input"]), bytes.fromhex(doc["inv"]))
        url = f"{issuer_url}/v1/surveys/{self.admission.survey_id}/tokens"
        body = {"invitation": invitation, "token_request": b64url(bytes.fromhex(doc["request"]))}
        response = await _post(client, url, body, "issuer", self.tls_name)
        if response.status_code != 200:
            raise Refused(f"the issuer refused the invitation: {_reason(response)}")
        token = pending.finalize(from_b64url(response.json()["token_response"]))
        write_private(self.path, json.dumps({"submission_id": self.submission_id.hex(), "token": token.hex()}))
        return token


async def fetch_issuer_key(
    client: httpx.AsyncClient, base_url: str, survey: Survey, tls_name: str | None = None
) -> IssuerPublicKey:
    """The survey's issuer public key from a server's published definition (checked against the digest)."""
    try:
        response = await client.get(f"{base_url}/v1/surveys/{survey.id}", extensions=_tls_name(tls_name))
    except httpx.HTTPError as exc:
        raise Unavailable(f"{base_url}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise Refused(f"{base_url} does not publish survey {survey.id!r}: {_reason(response)}")
    doc = response.json()
    if doc.get("digest") != survey.digest.hex():
        raise Refused(f"{base_url} runs another definition of survey {survey.id!r}: fetch the current survey file")
    if not doc.get("issuer"):
        raise Refused(f"survey {survey.id!r} admits no respondents by token at {base_url}")
    return IssuerPublicKey.from_spki(from_b64url(doc["issuer"]["public_key"]))


class HttpsTransport:
    """:class:`mpcdp.survey.respondent.Transport` over the aggregators' HTTPS intake, one POST per report.

    ``check_names``: check each aggregator's certificate for its node name (a survey-CA certificate)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        urls: Mapping[str, str],
        tokens: Mapping[bytes, bytes],
        check_names: bool = False,
    ):
        self.client, self.urls, self.tokens, self.check_names = client, dict(urls), dict(tokens), check_names

    async def send(
        self,
        aggregator: str,
        survey: Survey,
        batches: Sequence[Sequence[tuple[bytes, bytes]]],
        on_ack: Callable[[int, list[str]], None],
    ) -> None:
        url = f"{self.urls[aggregator]}/v1/surveys/{survey.id}/reports"
        tls_name = aggregator if self.check_names else None
        for index, batch in enumerate(batches):
            if len(batch) > 1:  # a relay's batch: one request, one transaction, refused together
                entries = [
                    {"submission_id": sid.hex(), "report": b64url(report), "token": b64url(self.tokens[sid])}
                    for sid, report in batch
                ]
                doc = {"digest": survey.digest.hex(), "reports": entries}
                response = await _post(self.client, f"{url}/batch", doc, aggregator, tls_name)
                if response.status_code != 200:
                    raise Refused(f"{aggregator} refused the reports: {_reason(response)}")
                on_ack(index, response.json()["outcomes"])
                continue
            outcomes = []
            for sid, report in batch:
                doc = {
                    "digest": survey.digest.hex(),
                    "submission_id": sid.hex(),
                    "report": b64url(report),
                    "token": b64url(self.tokens[sid]),
                }
                response = await _post(self.client, url, doc, aggregator, tls_name)
                if response.status_code in (200, 201):
                    outcomes.append(response.json()["outcome"])
                elif response.status_code == 409 and response.json().get("error") == "conflict":
                    outcomes.append("conflict")
                else:
                    raise Refused(f"{aggregator} refused the report: {_reason(response)}")
            on_ack(index, outcomes)
