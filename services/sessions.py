"""The messages of one additive (full-mesh) secure-sum session on the long-lived links (:mod:`services.link`).

Every message is tagged with the session id, round 0 and one of these kinds; who sent it is the
certificate name of the link it came on, never a field. Pushed kinds reach a node's handler
(:meth:`services.link.Hub.on`) because it cannot know when to ask for them; the others are received.

=========  ===========================  =======  ==============================================================
kind       direction                    pushed   payload
=========  ===========================  =======  ==============================================================
PROPOSE    coordinator -> party         yes      ``Propose``: the spec, and whether to share at once
ANSWER     party -> coordinator         yes      ``ProposeResponse``: accepted (and whether it waits for START),
                                                 or refused with a status and words without local detail
START      coordinator -> party         no       empty: every party accepted (only to the parties that wait)
SHARE      party -> party               no       the share: a 32-byte PRG seed, or the packed uint64 vector
PARTIAL    party -> coordinator         yes      the partial sum, packed little-endian uint64
ABORT      either way                   yes      ``Abort`` (reason, culprit); a party answers the coordinator's
                                                 abort with its own, confirming it closed the session
=========  ===========================  =======  ==============================================================

A one-round session (every party's policy allows ``one_round``) is PROPOSE, ANSWER and the SHAREs at
once, then PARTIAL: one round trip from the coordinator's point of view.
"""

from __future__ import annotations

PROPOSE = "sum.propose"
ANSWER = "sum.answer"
START = "sum.start"
SHARE = "sum.share"
PARTIAL = "sum.partial"
ABORT = "sum.abort"
