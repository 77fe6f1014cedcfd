"""Errors of the token layer, each with a message a respondent or an operator can act on.

All derive from :class:`TokenError` (a ``ValueError``), so a service maps the whole family to one
"refused" status and shows the message, never an exception name.
"""


class TokenError(ValueError):
    """A token, token request, invitation or blind-signature input was refused."""


class BlindSignatureError(TokenError):
    """RFC 9474 refused an input: wrong size, not invertible, message too long, or a signature
    that does not verify."""


class InvalidToken(TokenError):
    """A token is malformed, of another type, from another issuer key, for another challenge, or
    its signature does not verify."""


class TokenReused(TokenError):
    """A token that was already spent was presented again."""


class InvitationRefused(TokenError):
    """An invitation code is unknown or was already used for another token request."""


class TokenRequired(TokenError):
    """A submission came without a token to a survey that admits respondents by token only."""
