"""All n parties of an engine program in one process: the reference driver, counting rounds and bytes.

Every message goes through :meth:`Round.encode` and :meth:`Round.decode`, so
the byte counts are those a transport would carry (before its own framing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..prg import Prg, RandomSource, system_random
from .engine import Engine, Program
from .messages import Round
from .session import PartyRun


@dataclass
class Trace:
    """What a run cost: rounds (the key set-up round included), messages and encoded bytes."""

    rounds: int = 0
    messages: int = 0
    bytes: int = 0
    received: list[list[Round]] = field(default_factory=list)  # per party, when recorded


def engines(n: int, rngs: Sequence[RandomSource] | None = None, session_id: bytes = b"mpc-memory") -> list[Engine]:
    """One engine per party for one session; ``rngs[p]`` is party p's randomness (default: system CSPRNG)."""
    rngs = list(rngs) if rngs is not None else [system_random("mpc") for _ in range(n)]
    return [Engine(n, p, session_id, rngs[p]) for p in range(n)]


def run_in_memory(
    n: int,
    programs: Sequence[Callable[[Engine], Program[Any]]],
    rngs: Sequence[RandomSource] | None = None,
    session_id: bytes = b"mpc-memory",
    record: bool = False,
    session: Sequence[Engine] | None = None,
) -> tuple[list[Any], Trace]:
    """Run ``programs[p]`` as party p (one program per party); returns their results and the trace.

    A new session (fresh :func:`engines`, so one key set-up round first) unless
    ``session`` passes the engines of one already set up. ``record`` keeps
    every message each party receives (for privacy tests).
    """
    if len(programs) != n:
        raise ValueError(f"need one program per party: {n} parties, {len(programs)} programs")
    session = list(session) if session is not None else engines(n, rngs, session_id)
    runs = [PartyRun(session[p], programs[p]) for p in range(n)]
    trace = Trace(received=[[] for _ in range(n)] if record else [])
    outgoing = [r.start() for r in runs]
    while not all(r.done for r in runs):
        inboxes: list[list[Round]] = [[] for _ in range(n)]
        for msgs in outgoing:
            for m in msgs:
                data = m.encode()
                trace.messages += 1
                trace.bytes += len(data)
                got = Round.decode(data)
                inboxes[got.recipient].append(got)
                if record:
                    trace.received[got.recipient].append(got)
        trace.rounds += 1
        outgoing = [r.step(inboxes[p]) for p, r in enumerate(runs)]
        if len({r.done for r in runs}) > 1:
            raise RuntimeError("parties finished in different rounds: the programs are not in lockstep")
    return [r.result for r in runs], trace


def seeded_rngs(n: int, seed: int) -> list[Prg]:
    """Reproducible per-party randomness for tests and simulations."""
    return [Prg.from_int(seed, purpose=f"mpc/party/{p}") for p in range(n)]
