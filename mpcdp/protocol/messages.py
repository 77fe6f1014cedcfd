"""The messages of the peer protocol (docs/design.md, "The federation query"), transport-free.

Every message carries the session id; transports encode these into the
``mpcdp.v1`` protobufs and back without adding meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Response:
    """A party's answer to a proposed spec: accept, or refuse with a reason."""

    session_id: bytes
    party: str
    accepted: bool
    reason: str = ""


@dataclass(frozen=True)
class ShareMessage:
    """One party's share for one other party: a 32-byte seed (seeded mode) or a full vector.

    The seed and the vector stay out of the repr, so a logged message or a traceback cannot show them.
    """

    session_id: bytes
    sender: str
    recipient: str
    seed: bytes | None = field(default=None, repr=False)
    vector: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.seed is None) == (self.vector is None):
            raise ValueError("a share carries exactly one of seed or vector")


@dataclass(frozen=True)
class PartialSum:
    """The sum of all shares one party holds: uniformly random on its own (and kept out of the repr)."""

    session_id: bytes
    sender: str
    vector: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Abort:
    """An explicit abort with a diagnostic; ``culprit`` names the party at fault, if known."""

    session_id: bytes
    sender: str
    reason: str
    culprit: str = ""
