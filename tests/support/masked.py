"""A many-party session driven by hand to a given round (mpcdp.protocol.masked), for tests that then tamper
with one message: every party accepts and exchanges its keys; then, optionally, reports and masks."""

from __future__ import annotations

from collections.abc import Mapping

from mpcdp.protocol.masked import MaskedCoordinator, MaskedParty, MaskedQuery


def accepted_with_keys(query: MaskedQuery, sessions: Mapping[str, MaskedParty]) -> MaskedCoordinator:
    """A coordinator that every party in ``sessions`` has accepted, after the parties exchanged their key
    shares (the first two phases of a masked session, no drop)."""
    coordinator = MaskedCoordinator(query)
    for p, s in sessions.items():
        s.accept()
        coordinator.record_response(p, True)
    for s in sessions.values():
        for msg in s.key_shares():
            sessions[msg.recipient].receive_keys(msg)
    return coordinator


def all_masked(query: MaskedQuery, sessions: Mapping[str, MaskedParty]) -> MaskedCoordinator:
    """:func:`accepted_with_keys`, then every party reports and sends its masked input (next: the unmask)."""
    coordinator = accepted_with_keys(query, sessions)
    for s in sessions.values():
        coordinator.record_report(s.report())
    for roster in coordinator.rosters():
        coordinator.receive_masked(sessions[roster.party].masked_input(roster))
    return coordinator
