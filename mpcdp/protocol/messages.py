"""The messages of the peer protocol (DESIGN.md, protocol 1), transport-free.

Every message carries the session id; transports encode these into the
``mpcdp.v1`` protobufs and back without adding meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    """One party's share for one other party: a 32-byte seed (seeded mode) or a full vector."""

    session_id: bytes
    sender: str
    recipient: str
    seed: bytes | None = None
    vector: np.ndarray | None = None

    def __post_init__(self):
        if (self.seed is None) == (self.vector is None):
            raise ValueError("a share carries exactly one of seed or vector")


@dataclass(frozen=True)
class PartialSum:
    """The sum of all shares one party holds: uniformly random on its own."""

    session_id: bytes
    sender: str
    vector: np.ndarray


@dataclass(frozen=True)
class Abort:
    """An explicit abort with a diagnostic; ``culprit`` names the party at fault, if known."""

    session_id: bytes
    sender: str
    reason: str
    culprit: str = ""
