"""Admission to one survey by token: one token admits one submission, at every aggregator.

A token (RFC 9578 type 2) is bound to one submission of one survey through its challenge:

- ``issuer_name`` = the survey id (UTF-8);
- ``origin_info`` = the aggregator names joined by ``,`` (survey order);
- ``redemption_context`` = SHA-256(``mpcdp/token/v1`` ‖ survey digest ‖ submission id).

The respondent picks the submission id first, builds this challenge, and exchanges an invitation for a
blind signature on a token input carrying SHA-256(challenge) (:func:`~mpcdp.tokens.privacy_pass.request_token`):
the issuer sees neither the challenge nor the id, so it cannot link the token to the invitation or the report
(RFC 9474 blindness). Every aggregator then checks the token against the survey's issuer public key and the
challenge of the submission it came with: a token cannot be moved to another submission, another survey or
another set of aggregators, and each aggregator records it spent (:mod:`mpcdp.tokens.spent`) in the
transaction that stores the report. Same guarantee as the signature: only the issuer key mints tokens.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mpcdp.prg import RandomSource
from mpcdp.tokens.errors import InvalidToken
from mpcdp.tokens.privacy_pass import (
    IssuerPublicKey,
    PendingToken,
    Token,
    TokenChallenge,
    request_token,
    verify_token,
)
from mpcdp.tokens.spent import token_hash

CONTEXT_LABEL = b"mpcdp/token/v1"
SUBMISSION_ID_BYTES = 16


@dataclass(frozen=True)
class SurveyAdmission:
    """The token binding of one survey: its issuer key, id, digest and aggregators."""

    issuer: IssuerPublicKey
    survey_id: str
    survey_digest: bytes
    aggregators: tuple[str, ...]

    @property
    def issuer_name(self) -> bytes:
        return self.survey_id.encode()

    @property
    def origin_info(self) -> bytes:
        return ",".join(self.aggregators).encode()

    def challenge(self, submission_id: bytes) -> bytes:
        """The encoded TokenChallenge a token for ``submission_id`` is issued under."""
        if len(submission_id) != SUBMISSION_ID_BYTES:
            raise InvalidToken(f"a submission id is {SUBMISSION_ID_BYTES} bytes")
        binding = CONTEXT_LABEL + self.survey_digest + bytes(submission_id)
        return TokenChallenge.bound(self.issuer_name, self.origin_info, binding).encode()

    def request(self, submission_id: bytes, rng: RandomSource) -> tuple[bytes, PendingToken]:
        """The respondent's TokenRequest for ``submission_id`` and what finalizes its answer."""
        return request_token(self.issuer, self.challenge(submission_id), rng)

    def verify(self, token: bytes) -> Token:
        """Type, issuer key and signature (no binding): raises InvalidToken."""
        return verify_token(self.issuer, token)

    def bound_to(self, token: Token, submission_id: bytes) -> bool:
        """Whether a verified token was issued for ``submission_id`` of this survey."""
        return token.challenge_digest == hashlib.sha256(self.challenge(submission_id)).digest()


@dataclass(frozen=True)
class CheckedToken:
    """A token whose type, issuer key and signature verified: its spent-set key, and whether it was
    issued for the submission it came with."""

    key: bytes
    bound: bool


def check_batch(admission: SurveyAdmission, items: list[tuple[bytes, bytes]]) -> list[CheckedToken]:
    """Verify the tokens of (submission id, token) pairs (CPU only, no state): raises InvalidToken for
    the first token that is malformed, from another issuer key, or forged; a token issued for another
    submission or survey verifies but comes back not ``bound`` (the caller refuses it and counts it)."""
    out = []
    for submission_id, token in items:
        decoded = admission.verify(token)
        out.append(CheckedToken(token_hash(decoded), admission.bound_to(decoded, submission_id)))
    return out
