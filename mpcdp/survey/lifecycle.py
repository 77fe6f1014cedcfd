"""An aggregator's survey state machine, the rules every store persists (pure: no I/O).

    open --first report--> collecting --close--> preparing --all batches verified--> closed --release--> released

A survey without proofs (shares of the ring) has nothing to verify: ``close`` takes it straight to
``closed``. Both stores (:mod:`services.survey.store` for ring shares, :mod:`services.survey.reports`
for Prio3 reports) load this value, ask it, and save what it returns: the rules live only here.

* ``open`` / ``collecting``: reports are stored (``collecting`` once one is held).
* ``preparing``: intake stopped (the id set is final); batches are verified under the
  verify key the leader drew *after* intake stopped, so no respondent can know it.
* ``closed``: every counted batch is verified; the aggregate share is final.
* ``released``: one noisy aggregate share was given, bound to the digest of the
  accepted report set; asking again with that digest replays it, with another is
  refused (two releases over sets differing in one report would reveal it).
"""

from __future__ import annotations

from dataclasses import dataclass

STATES = ("open", "collecting", "preparing", "closed", "released")


class Refusal(Exception):
    """A step the survey's state does not allow; ``reason`` names the rule (for status codes)."""

    CLOSED = "closed"
    NOT_CLOSED = "not-closed"
    RELEASED = "released"
    KEY = "verify-key"

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Lifecycle:
    survey: str
    state: str = "open"
    verify_key: bytes | None = None
    released_digest: bytes | None = None

    def submit(self, reports: int) -> Lifecycle:
        if self.state not in ("open", "collecting"):
            raise Refusal(Refusal.CLOSED, f"survey {self.survey!r} is {self.state}: no more submissions")
        return Lifecycle(self.survey, "collecting" if reports else self.state)

    def close(self, verify: bool = True) -> Lifecycle:
        """Stop intake (idempotent once past collecting): on to preparation, or with nothing to
        ``verify`` (ring shares) straight to closed."""
        if self.state in ("open", "collecting"):
            return Lifecycle(self.survey, "preparing" if verify else "closed")
        return self

    def final_ids(self) -> None:
        """Refuse to list the stored ids while intake is open (the set the coordinator intersects must be final)."""
        if self.state in ("open", "collecting"):
            raise Refusal(Refusal.NOT_CLOSED, f"survey {self.survey!r} is still open: close it first")

    def prepare(self, verify_key: bytes) -> Lifecycle:
        """Verify a batch under ``verify_key``: the first key is kept, another is refused."""
        if self.state in ("open", "collecting"):
            raise Refusal(Refusal.NOT_CLOSED, f"survey {self.survey!r} is still taking submissions: close it first")
        if self.state == "released":
            raise Refusal(Refusal.RELEASED, f"survey {self.survey!r} was released: nothing more is verified")
        if self.verify_key is not None and self.verify_key != verify_key:
            raise Refusal(Refusal.KEY, f"survey {self.survey!r} is verified under another key")
        return Lifecycle(self.survey, "preparing", verify_key)

    def verified(self) -> Lifecycle:
        """All batches of the counted set are verified: the aggregate is final."""
        if self.state not in ("preparing", "closed"):
            raise Refusal(
                Refusal.NOT_CLOSED if self.state in ("open", "collecting") else Refusal.RELEASED,
                f"survey {self.survey!r} is {self.state}: it cannot be finalised now",
            )
        return Lifecycle(self.survey, "closed", self.verify_key)

    def release(self, digest: bytes) -> Lifecycle:
        """Release bound to ``digest`` (the accepted set): once, replayed for the same digest only."""
        if self.state == "released":
            if digest != self.released_digest:
                raise Refusal(
                    Refusal.RELEASED,
                    f"survey {self.survey!r} was already released over another "
                    "set of reports; a second release could reveal a respondent",
                )
            return self
        self.final_ids()
        if self.state != "closed":
            raise Refusal(Refusal.NOT_CLOSED, f"survey {self.survey!r} is {self.state}: verify every batch first")
        return Lifecycle(self.survey, "released", self.verify_key, digest)
