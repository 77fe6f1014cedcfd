"""Protocol errors with a status a transport can map to its own codes.

Messages are written for people and never contain an input, a share or an
exact intermediate: only names, lengths, states and parameters.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """The failure classes of the protocol (named after the gRPC status codes they map to)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"  # malformed: wrong length, NaN, bad spec
    FAILED_PRECONDITION = "FAILED_PRECONDITION"  # wrong phase or closed session
    PERMISSION_DENIED = "PERMISSION_DENIED"  # not on the party list, refused by policy
    NOT_FOUND = "NOT_FOUND"  # unknown session
    ALREADY_EXISTS = "ALREADY_EXISTS"  # duplicate message
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"  # past the session deadline
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"  # privacy budget exhausted
    ABORTED = "ABORTED"  # the session was aborted


class ProtocolError(Exception):
    """A refused message or step; ``status`` says which kind, the text says what to do."""

    def __init__(self, status: Status, message: str):
        super().__init__(message)
        self.status = status


class SpecError(ValueError):
    """An invalid query spec. ``field`` names the offending field."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"invalid query spec: {field_name}: {message}")
        self.field = field_name
