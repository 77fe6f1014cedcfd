"""A survey's token binding (mpcdp.tokens.admission): one token admits one submission of one survey at its
aggregators, and nothing else."""

from __future__ import annotations

import hashlib

import pytest

from mpcdp.prg import Prg
from mpcdp.tokens import InvalidToken, Issuer, TokenChallenge, generate_issuer_key
from mpcdp.tokens.admission import CONTEXT_LABEL, CheckedToken, SurveyAdmission, check_batch
from mpcdp.tokens.spent import token_hash

ISSUER = Issuer(generate_issuer_key())
DIGEST = hashlib.sha256(b"survey").digest()
ADMISSION = SurveyAdmission(ISSUER.public_key, "poll", DIGEST, ("agg-a", "agg-b"))


def token(admission: SurveyAdmission, sid: bytes, issuer: Issuer = ISSUER) -> bytes:
    request, pending = admission.request(sid, Prg.from_int(1, sid.hex()))
    return pending.finalize(issuer.issue(request))


def test_the_challenge_is_rfc_9577s_encoding_of_the_binding():
    sid = bytes(range(16))
    expected = TokenChallenge.bound(b"poll", b"agg-a,agg-b", CONTEXT_LABEL + DIGEST + sid).encode()
    assert ADMISSION.challenge(sid) == expected
    # the bytes themselves, pinned (tokens already issued must keep verifying): token type 2, issuer name
    # "poll" (2-byte length), the 32-byte redemption context (1-byte length), origin info (2-byte length)
    assert expected.hex() == (
        "0002"
        + "0004"
        + b"poll".hex()
        + "20"
        + "3f3ad65fccb44cd0aa38351a19f4d7a25b3df15df87d53e961d21633ac4ac9ef"
        + "000b"
        + b"agg-a,agg-b".hex()
    )
    assert TokenChallenge.decode(expected).redemption_context == hashlib.sha256(CONTEXT_LABEL + DIGEST + sid).digest()
    with pytest.raises(InvalidToken, match="16 bytes"):
        ADMISSION.challenge(b"short")


def test_a_token_admits_its_own_submission_of_its_own_survey_only():
    sid, other_sid = b"\x01" * 16, b"\x02" * 16
    t = token(ADMISSION, sid)
    key = token_hash(ADMISSION.verify(t))
    assert check_batch(ADMISSION, [(sid, t)]) == [CheckedToken(key, bound=True)]
    assert check_batch(ADMISSION, [(other_sid, t)]) == [CheckedToken(key, bound=False)]  # verified, not bound
    for other in (
        SurveyAdmission(ISSUER.public_key, "poll-2", DIGEST, ("agg-a", "agg-b")),  # another survey, same issuer
        SurveyAdmission(ISSUER.public_key, "poll", hashlib.sha256(b"v2").digest(), ("agg-a", "agg-b")),
        SurveyAdmission(ISSUER.public_key, "poll", DIGEST, ("agg-a", "agg-c")),  # other aggregators
    ):
        assert check_batch(other, [(sid, t)]) == [CheckedToken(key, bound=False)]
    foreign = SurveyAdmission(Issuer(generate_issuer_key()).public_key, "poll", DIGEST, ("agg-a", "agg-b"))
    with pytest.raises(InvalidToken, match="another issuer key"):
        check_batch(foreign, [(sid, t)])
