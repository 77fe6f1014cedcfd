"""The respondent's side of a survey: randomize locally, encode, share, deliver with safe retries.

    client = SurveyClient(survey, transport)
    prepared = client.prepare({"vote": "Left", "salary": 52_000})
    await client.deliver([prepared])

``prepare`` applies each question's local DP mechanism on the device, encodes
the sheet into one ring vector and splits it into one additive share per
aggregator, all under a fresh 16-byte submission id. For a survey with
``proofs = "prio3"`` each aggregator gets instead one Prio3 report per question
(:mod:`mpcdp.survey.proved`), proving the randomized answer valid. ``deliver`` sends each
aggregator its share under that id and retries what was not acknowledged.
A retry re-sends the *same* prepared submission (keep it until delivered:
:meth:`PreparedSubmission.to_json`), so an aggregator that already stored it
acknowledges a duplicate and nothing is counted twice; a fresh ``prepare``
for the same person would be a new respondent. A submission that reaches
only some aggregators is not counted at all.

The transport is injected (:class:`Transport`): this module does no I/O.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .. import ring
from ..prg import RandomSource, system_random
from ..sharing import share
from .definition import Survey
from .proved import shard_sheet
from .sheet import check_answers

ID_BYTES = 16
BATCH_BYTES = 4 << 20  # at most this many share bytes per batch: half an aggregator's 8 MiB message limit
Item = tuple[bytes, bytes]  # (submission id, share blob)


class Unavailable(Exception):
    """A transport failure worth retrying (the aggregator is down or unreachable)."""


class Refused(Exception):
    """An aggregator refused a batch outright (closed or unknown survey, malformed share)."""


class Conflict(Exception):
    """An aggregator already holds a different share under one of our submission ids."""


class Transport(Protocol):
    async def send(
        self,
        aggregator: str,
        survey: Survey,
        batches: Sequence[Sequence[Item]],
        on_ack: Callable[[int, list[str]], None],
    ) -> None:
        """Stream ``batches`` to ``aggregator``; call ``on_ack(index, outcomes)`` as each is stored.

        Outcomes are "accepted", "duplicate" or "conflict". Raises
        :class:`Unavailable` on a transport failure, :class:`Refused` when the
        aggregator rejects a batch.
        """


@dataclass(frozen=True)
class PreparedSubmission:
    """A randomized, shared answer sheet, ready to (re)send: one share per aggregator.

    The shares stay out of the repr: together they give the randomized answers.
    """

    survey_id: str
    submission_id: bytes
    shares: dict[str, bytes] = field(repr=False)

    def to_json(self) -> str:
        return json.dumps(
            {
                "survey": self.survey_id,
                "id": self.submission_id.hex(),
                "shares": {k: v.hex() for k, v in self.shares.items()},
            }
        )

    @classmethod
    def from_json(cls, text: str) -> PreparedSubmission:
        d = json.loads(text)
        return cls(d["survey"], bytes.fromhex(d["id"]), {k: bytes.fromhex(v) for k, v in d["shares"].items()})


class SurveyClient:
    """Prepares and delivers submissions to one survey. ``rng`` defaults to the OS CSPRNG."""

    def __init__(self, survey: Survey, transport: Transport | None = None, rng: RandomSource | None = None):
        self.survey = survey
        self.transport = transport
        self.rng = rng or system_random("survey-client")

    def prepare(self, answers: Mapping[str, object]) -> PreparedSubmission:
        """Validate, randomize locally, encode and share one answer sheet."""
        return self.prepare_many([answers])[0]

    def prepare_many(self, sheets: Sequence[Mapping[str, object]]) -> list[PreparedSubmission]:
        """:meth:`prepare` for many respondents at once (a simulation or a relay), vectorised."""
        for sheet in sheets:
            check_answers(self.survey, sheet)
        n = len(sheets)
        blocks = [q.randomize([s[q.id] for s in sheets], self.rng) for q in self.survey.questions]
        names = self.survey.aggregator_names
        if self.survey.verified:  # one Prio3 report per aggregator, each question proved valid
            out = []
            for i in range(n):
                sid = self.rng.bytes(ID_BYTES)
                reports = shard_sheet(self.survey, sid, [b[i] for b in blocks], self.rng)
                out.append(PreparedSubmission(self.survey.id, sid, dict(zip(names, reports, strict=True))))
            return out
        vectors = ring.as_ring(np.concatenate(blocks, axis=1)) if n else ring.zeros(0)
        parts = share(vectors, len(names), self.rng)
        ids = self.rng.bytes(ID_BYTES * n)
        blobs = [np.ascontiguousarray(p, dtype="<u8") for p in parts]
        return [
            PreparedSubmission(
                self.survey.id,
                ids[i * ID_BYTES : (i + 1) * ID_BYTES],
                {name: blob[i].tobytes() for name, blob in zip(names, blobs, strict=True)},
            )
            for i in range(n)
        ]

    async def deliver(
        self,
        submissions: Sequence[PreparedSubmission],
        batch_size: int = 1000,
        attempts: int = 5,
        on_ack: Callable[[str, int], None] | None = None,
    ) -> None:
        """Send every submission to every aggregator, retrying unacknowledged batches.

        Batches hold at most ``batch_size`` submissions and ``BATCH_BYTES`` bytes of shares.

        ``on_ack(aggregator, n)`` reports n more submissions stored there.
        Raises :class:`Conflict` if an aggregator holds another share under one
        of these ids, :class:`Unavailable` if an aggregator stays unreachable
        for ``attempts`` tries (what it did acknowledge stays stored).
        """
        if self.transport is None:
            raise ValueError("transport: this client was made without one; it can only prepare")
        if batch_size < 1 or attempts < 1:
            raise ValueError("batch_size and attempts must be at least 1")
        for s in submissions:
            if s.survey_id != self.survey.id:
                raise ValueError(f"submissions: one is for survey {s.survey_id!r}, not {self.survey.id!r}")
        await asyncio.gather(
            *(
                self._deliver_to(name, submissions, batch_size, attempts, on_ack)
                for name in self.survey.aggregator_names
            )
        )

    def _backoff(self, attempt: int) -> float:
        """Seconds before retry ``attempt + 1``: 0.2 s doubling to at most 10 s, times a random 0.5-1.5
        (so respondents turned away by a busy aggregator do not all come back at once)."""
        jitter = 0.5 + int(self.rng.uint64(1)[0] >> np.uint64(11)) / 2**53
        return float(min(0.2 * 2**attempt, 10.0) * jitter)

    async def _deliver_to(
        self,
        name: str,
        submissions: Sequence[PreparedSubmission],
        batch_size: int,
        attempts: int,
        on_ack: Callable[[str, int], None] | None,
    ) -> None:
        assert self.transport is not None, "deliver() checked it"
        transport = self.transport
        items = [(s.submission_id, s.shares[name]) for s in submissions]
        item_bytes = len(items[0][1]) + ID_BYTES if items else 1
        per_batch = max(1, min(batch_size, BATCH_BYTES // item_bytes))
        pending = {i: items[i : i + per_batch] for i in range(0, len(items), per_batch)}
        conflicts = 0

        def acked(index: int, outcomes: list[str]) -> None:
            nonlocal conflicts
            batch_start = order[index]
            conflicts += outcomes.count("conflict")
            if on_ack:
                on_ack(name, len(pending[batch_start]))
            del pending[batch_start]

        for attempt in range(attempts):
            order = sorted(pending)
            try:
                await transport.send(name, self.survey, [pending[i] for i in order], acked)
                break
            except Unavailable:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(self._backoff(attempt))
        if conflicts:
            raise Conflict(f"{name} already holds a different share under {conflicts} of these submission ids")
