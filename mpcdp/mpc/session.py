"""One party's run of one engine program, as a state machine a transport drives.

    run = PartyRun(engine, program)          # program: Engine -> round generator
    out = run.start()                         # list[Round] to send (the key set-up round)
    while not run.done:
        out = run.step(received_rounds)       # the Rounds addressed to this party this round
    run.result

Every round each party sends exactly one Round to every peer (empty when it
has nothing for it), so an adapter calls ``step`` once it holds one Round
from each peer, and a peer that stalls is noticed by everyone.

Each ``step`` checks every message (session, round number, recipient, no
duplicate sender) before the program sees it, and a failed check aborts the
run: ``done`` with no result, so nothing partial is ever released.

A session may run several programs one after another on the same
:class:`Engine`: keys are dealt once, by the first, and round numbers run on
across programs, so a message of an earlier program can never be taken for
one of a later one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..protocol.errors import ProtocolError, Status
from .engine import Engine, Outbox, Program
from .messages import Round

_EMPTY = np.zeros(0, dtype=np.uint64)


class PartyRun:
    """Drives ``setup`` then ``program(engine)`` one round per :meth:`step`."""

    def __init__(self, engine: Engine, program: Callable[[Engine], Program[Any]]):
        self.engine = engine
        self.done = False
        self.aborted: str | None = None
        self._result: Any = None
        self._gen = self._whole(program)
        self._started = False

    @property
    def round(self) -> int:
        return self.engine.round

    def _whole(self, program: Callable[[Engine], Program[Any]]) -> Program[Any]:
        if not self.engine.ready:
            yield from self.engine.setup()
        return (yield from program(self.engine))

    @property
    def result(self) -> Any:
        if not self.done or self.aborted is not None:
            raise ProtocolError(Status.FAILED_PRECONDITION, "the engine run has not finished with a result")
        return self._result

    def _outgoing(self, outbox: Outbox) -> list[Round]:
        """One Round to every peer, empty when the program has nothing for it: one per peer per round."""
        e = self.engine
        return [Round(e.session_id, self.round, e.me, to, outbox.get(to, _EMPTY)) for to in range(e.n) if to != e.me]

    def start(self) -> list[Round]:
        if self._started:
            raise ProtocolError(Status.FAILED_PRECONDITION, "the engine run was already started")
        self._started = True
        return self._outgoing(next(self._gen))

    def step(self, messages: list[Round]) -> list[Round]:
        """Deliver this round's messages; returns the next round's (empty once done)."""
        if not self._started or self.done:
            raise ProtocolError(Status.FAILED_PRECONDITION, "no engine round is waiting for messages")
        inbox = {}
        try:
            for m in messages:
                if m.session_id != self.engine.session_id:
                    raise ProtocolError(Status.INVALID_ARGUMENT, "a message from another session")
                if m.round != self.round or m.recipient != self.engine.me:
                    raise ProtocolError(
                        Status.INVALID_ARGUMENT,
                        f"a message for round {m.round}, party {m.recipient} reached "
                        f"party {self.engine.me} in round {self.round}",
                    )
                if m.sender in inbox or not 0 <= m.sender < self.engine.n or m.sender == self.engine.me:
                    raise ProtocolError(Status.INVALID_ARGUMENT, f"unexpected message from party {m.sender}")
                inbox[m.sender] = m.words
            missing = [p for p in range(self.engine.n) if p != self.engine.me and p not in inbox]
            if missing:
                raise ProtocolError(
                    Status.INVALID_ARGUMENT,
                    f"round {self.round}: no message from part{'ies' if len(missing) > 1 else 'y'} "
                    + ", ".join(map(str, missing)),
                )
            self.engine.round += 1
            outbox = self._gen.send(inbox)
        except StopIteration as stop:
            self.done = True
            self._result = stop.value
            return []
        except ProtocolError as err:
            self.abort(str(err))
            raise
        except Exception as err:  # a bug or bad input in the program: stop for good all the same
            self.abort(f"the engine program failed: {err}")
            raise
        return self._outgoing(outbox)

    def abort(self, reason: str) -> None:
        """Stop for good (a peer failed, a deadline passed): no result will ever be returned."""
        self.done = True
        self.aborted = reason
        self._gen.close()
