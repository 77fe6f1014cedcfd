"""Anonymous single-use admission tokens: RFC 9474 blind RSA and RFC 9578 Privacy Pass token type 2.

- :mod:`~mpcdp.tokens.blind_rsa` — RSABSSA-SHA384 (all four variants of RFC 9474 section 5);
- :mod:`~mpcdp.tokens.privacy_pass` — publicly verifiable tokens (token type 0x0002);
- :mod:`~mpcdp.tokens.invitations` — one-time invitation codes, each redeemable for one token;
- :mod:`~mpcdp.tokens.spent` — record verified tokens spent in the caller's transaction, refusing reuse;
- :mod:`~mpcdp.tokens.admission` — a survey's token binding: one token admits one submission.

Pure library: no network, no grpc; SQLite files are owner-only.
"""

from mpcdp.tokens.errors import (
    BlindSignatureError,
    InvalidToken,
    InvitationRefused,
    TokenError,
    TokenRequired,
    TokenReused,
)
from mpcdp.tokens.invitations import Invitations, MemoryInvitations, SQLiteInvitations
from mpcdp.tokens.privacy_pass import (
    Issuer,
    IssuerPublicKey,
    PendingToken,
    Token,
    TokenChallenge,
    generate_issuer_key,
    request_token,
    verify_token,
)

__all__ = [
    "BlindSignatureError",
    "InvalidToken",
    "InvitationRefused",
    "Invitations",
    "Issuer",
    "IssuerPublicKey",
    "MemoryInvitations",
    "PendingToken",
    "SQLiteInvitations",
    "Token",
    "TokenChallenge",
    "TokenError",
    "TokenRequired",
    "TokenReused",
    "generate_issuer_key",
    "request_token",
    "verify_token",
]
