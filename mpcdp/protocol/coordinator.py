"""The coordinator's side of the peer protocol, as a state machine with no I/O.

    collecting-responses --all accepted--> collecting-sums --all in--> released
             any state --abort (naming the culprit)--> aborted

The coordinator never sees an input or a share: only the parties' answers and
their partial sums, each uniformly random on its own. Their total is the
(noisy, under DP) aggregate, which it decodes and post-processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import ring
from ..dp.loss import PrivacyLoss
from .errors import ProtocolError, Status
from .messages import PartialSum, Response
from .spec import QuerySpec
from .statistics import codec_for


@dataclass(frozen=True)
class Release:
    """What a query returns: the answer and what it cost (``loss``; None for an exact release, whose
    ``epsilon`` is None too: the floats are the loss's wire and display form)."""

    statistic: str
    result: dict[str, Any]
    parties: tuple[str, ...]
    epsilon: float | None
    delta: float
    mechanism: str | None
    extras: dict[str, Any] = field(default_factory=dict)
    loss: PrivacyLoss | None = None

    @property
    def value(self) -> Any:
        """The headline number: the requested statistic itself."""
        return self.result[self.statistic]


class CoordinatorSession:
    """The coordinator's state in one session."""

    def __init__(self, spec: QuerySpec):
        self.spec = spec
        self.state = "collecting-responses"
        self._statistic = codec_for(spec)
        self._accepted: set[str] = set()
        self._partials: dict[str, np.ndarray] = {}
        self.abort_reason = ""

    @property
    def length(self) -> int:
        return self._statistic.length

    def _require(self, state: str) -> None:
        if self.state != state:
            raise ProtocolError(Status.FAILED_PRECONDITION, f"session is {self.state}, not {state}")

    def _check_sender(self, session_id: bytes, party: str) -> None:
        if session_id != self.spec.session_id:
            raise ProtocolError(Status.NOT_FOUND, "message for another session")
        if party not in self.spec.parties:
            raise ProtocolError(Status.PERMISSION_DENIED, f"{party!r} is not a party of this session")

    def record_response(self, response: Response) -> None:
        """Note a party's accept/refuse. A refusal aborts the session, naming the party."""
        self._require("collecting-responses")
        self._check_sender(response.session_id, response.party)
        if not response.accepted:
            self.abort(f"{response.party} refused: {response.reason}", response.party)
            raise ProtocolError(Status.ABORTED, self.abort_reason)
        self._accepted.add(response.party)
        if self._accepted == set(self.spec.parties):
            self.state = "collecting-sums"

    @property
    def missing(self) -> list[str]:
        """Parties whose current-phase message has not arrived."""
        have = self._accepted if self.state == "collecting-responses" else self._partials
        return [p for p in self.spec.parties if p not in have]

    def receive_partial(self, msg: PartialSum, now: float = -math.inf) -> None:
        self._require("collecting-sums")
        self._check_sender(msg.session_id, msg.sender)
        if now > self.spec.deadline:
            raise ProtocolError(Status.DEADLINE_EXCEEDED, "the session's deadline has passed")
        if msg.sender in self._partials:
            raise ProtocolError(Status.ALREADY_EXISTS, f"duplicate partial sum from {msg.sender!r}")
        vec = np.asarray(msg.vector)
        if vec.size != self.length or vec.dtype.kind not in "iu":
            raise ProtocolError(Status.INVALID_ARGUMENT, f"partial sums are {self.length} ring elements")
        self._partials[msg.sender] = ring.as_ring(vec.reshape(-1))

    def release(self, extras: dict[str, Any] | None = None, arrays: bool = False) -> Release:
        """Combine all partial sums, decode and post-process. Closes the session.

        ``arrays``: vector entries of the result as float64 arrays rather than lists."""
        self._require("collecting-sums")
        if self.missing:
            raise ProtocolError(Status.FAILED_PRECONDITION, f"still waiting for {', '.join(self.missing)}")
        total = ring.total(self._partials[p] for p in self.spec.parties)
        self._partials.clear()
        self.state = "released"
        spec = self.spec
        return Release(
            statistic=spec.statistic,
            result=self._statistic.decode(total, arrays=arrays),
            parties=spec.parties,
            epsilon=spec.epsilon,
            delta=spec.delta,
            mechanism=None if spec.is_exact else spec.mechanism,
            extras=dict(extras or {}),
            loss=spec.loss,
        )

    def abort(self, reason: str, culprit: str = "") -> None:
        self._partials.clear()
        self.abort_reason = reason
        self.culprit = culprit
        self.state = "aborted"
