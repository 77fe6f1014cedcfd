"""The messages of one additive (full-mesh) secure-sum session on the long-lived links (:mod:`services.link`).

Every message is tagged with the session id, round 0 and one of these kinds; who sent it is the
certificate name of the link it came on, never a field. Pushed kinds reach a node's handler
(:meth:`services.link.Hub.on`) because it cannot know when to ask for them; the others are received.

=========  ===========================  =======  ==============================================================
kind       direction                    pushed   payload
=========  ===========================  =======  ==============================================================
PROPOSE    coordinator -> party         yes      ``Propose``: the spec, and whether to share at once; a batch's
                                                 further specs (:class:`mpcdp.protocol.spec.Batch`)
ANSWER     party -> coordinator         yes      ``ProposeResponse``: accepted (and whether it waits for START),
                                                 or refused with a status and words without local detail
START      coordinator -> party         no       empty: every party accepted (only to the parties that wait)
SHARE      party -> party               no       the share: a 32-byte PRG seed, or the packed uint64 vector
PARTIAL    party -> coordinator         yes      the partial sum, packed little-endian uint64 (a batch: every
                                                 statistic's, concatenated in the batch's order); in a keyed
                                                 session followed by the ids of the pair keys it was masked
                                                 with, 8 bytes per peer in the spec's party order
ABORT      either way                   yes      ``Abort`` (reason, culprit); a party answers the coordinator's
                                                 abort with its own, confirming it closed the session
=========  ===========================  =======  ==============================================================

A keyed session (every party's policy allows ``one_round``, and the analyst did not ask for another
sharing mode) is PROPOSE, then PARTIAL: one message each way, no message between parties (the pair keys,
:mod:`services.pair_keys`, are agreed once per link, not per session); a refusal is still an ANSWER, a
failure an ABORT. A seeded or full session is PROPOSE, ANSWER and the SHAREs at once, then PARTIAL; a
party whose policy says ``one_round = false`` waits for START before sharing. A batch of statistics is one
session like any other: one PROPOSE carrying every spec, one PARTIAL per party carrying every partial sum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mpcdp.protocol import ProtocolError, Status
from mpcdp.sharing import PAIR_KEY_ID_BYTES as KEY_ID_BYTES

PROPOSE = "sum.propose"
ANSWER = "sum.answer"
START = "sum.start"
SHARE = "sum.share"
PARTIAL = "sum.partial"
ABORT = "sum.abort"


def keyed_partial(vector: np.ndarray, key_ids: Sequence[bytes]) -> tuple[np.ndarray, bytes]:
    """A keyed PARTIAL's payload: the partial sum's ring elements, then the pair key ids (8 bytes each), as two
    parts of one message (:meth:`services.link.Hub.post`: the vector is sent where it lies, not copied to append
    the ids; on a big-endian host it is copied to little-endian here, so the node masks it whole first)."""
    if any(len(k) != KEY_ID_BYTES for k in key_ids):
        raise ValueError(f"a pair key id is {KEY_ID_BYTES} bytes")
    return np.ascontiguousarray(vector, dtype="<u8").reshape(-1), b"".join(key_ids)


class KeyedPartial:
    """A link sink (:meth:`services.link.Hub.expect`) for a keyed PARTIAL of ``elements`` ring elements and
    ``peers`` pair key ids: the elements go on to ``sink`` as they arrive (no assembly), the ids are kept."""

    def __init__(self, sink: Callable[[int, memoryview], None], elements: int, peers: int):
        self._sink = sink
        self._head = 8 * elements
        self._ids = bytearray(KEY_ID_BYTES * peers)
        self._filled = 0

    def __call__(self, offset: int, view: memoryview) -> None:
        end = offset + len(view)
        if offset < self._head:
            self._sink(offset, view[: self._head - offset])
        if end > self._head:
            start = max(self._head - offset, 0)
            at = offset + start - self._head
            if end - self._head > len(self._ids):
                self._filled = -1  # longer than announced by the spec: refused by ids()
                return
            self._ids[at : end - self._head] = view[start:]
            self._filled = max(self._filled, end - self._head) if self._filled >= 0 else -1

    def ids(self, peers: Sequence[str]) -> dict[str, bytes]:
        """The pair key id reported for each of ``peers`` (ProtocolError if the message was not that long)."""
        if self._filled != len(self._ids):
            raise ProtocolError(
                Status.INVALID_ARGUMENT,
                f"a keyed partial sum is {self._head} bytes and then {len(self._ids)} bytes of pair key ids",
            )
        return {p: bytes(self._ids[i * KEY_ID_BYTES : (i + 1) * KEY_ID_BYTES]) for i, p in enumerate(peers)}
