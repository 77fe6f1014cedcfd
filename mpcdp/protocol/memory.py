"""An in-memory driver: one whole query across n simulated parties, no sockets.

It plays the network: routes each message to its recipient and each answer to
the coordinator, exactly as the gRPC services do, so the state machines are
exercised end to end in tests and in the in-process demo.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..prg import SEED_BYTES, RandomSource, system_random
from ..sharing import pair_key_id
from .coordinator import CoordinatorSession, Release
from .errors import ProtocolError
from .messages import Response
from .party import PartyPolicy, PartySession
from .spec import QuerySpec, Sharing


@dataclass
class Run:
    """The outcome of an in-memory query, with every node's final state (for inspection)."""

    release: Release
    parties: dict[str, PartySession]
    coordinator: CoordinatorSession
    releases: list[Release] = field(default_factory=list)  # one per statistic of a batch (the first: release)


def run_in_memory(
    spec: QuerySpec,
    data: Mapping[str, object],
    policies: Mapping[str, PartyPolicy] | None = None,
    rng: RandomSource | None = None,
    batch: Sequence[QuerySpec] = (),
    batch_data: Mapping[str, Sequence[object]] | None = None,
) -> Run:
    """Run ``spec`` over ``data`` (party name -> its records) and return the release.

    Each party draws its own noise piece for a DP spec (from ``rng``, the
    CSPRNG by default), exactly as over the network. A refusal or a protocol error aborts every
    session and is re-raised. A keyed spec's pair keys are drawn here from ``rng`` (over the network each
    pair agrees its own, :mod:`services.pair_keys`). ``batch``: more statistics in the same session, with each
    party's records for them in ``batch_data`` (one release each in :attr:`Run.releases`).
    """
    missing = [p for p in spec.parties if p not in data]
    if missing:
        raise ValueError(f"no data for parties: {', '.join(missing)}")
    policies = policies or {}
    coordinator = CoordinatorSession(spec, tuple(batch))
    parties = {
        p: PartySession(
            p,
            spec,
            data[p],
            policies.get(p, PartyPolicy(allow_exact=True)),
            rng=rng,
            batch=tuple(batch),
            batch_records=tuple((batch_data or {}).get(p, ())),
        )
        for p in spec.parties
    }
    keyed = spec.sharing is Sharing.KEYED
    try:
        for name, party in parties.items():
            try:
                party.accept()
                if not keyed:  # keyed: the partial sum is the acceptance
                    coordinator.record_response(Response(spec.session_id, name, True))
            except ProtocolError as exc:
                if party.state != "refused":
                    raise
                coordinator.record_response(Response(spec.session_id, name, False, str(exc)))
        if keyed:
            source = rng or system_random("pair-keys")
            pairs = {frozenset((a, b)): source.bytes(SEED_BYTES) for a in spec.parties for b in spec.parties if a < b}
            for name, party in parties.items():
                keys = {p: pairs[frozenset((name, p))] for p in party.peers}
                coordinator.receive_partial(party.masked_partial(keys))
                coordinator.record_key_ids(name, {p: pair_key_id(k) for p, k in keys.items()})
            return _released(coordinator, parties)
        outbox = [m for party in parties.values() for m in party.make_shares()]
        for msg in outbox:
            parties[msg.recipient].receive_share(msg)
        for party in parties.values():
            coordinator.receive_partial(party.partial_sum())
        return _released(coordinator, parties)
    except ProtocolError:
        for party in parties.values():
            party.abort()
        if coordinator.state != "aborted":
            coordinator.abort("protocol error")
        raise


def _released(coordinator: CoordinatorSession, parties: dict[str, PartySession]) -> Run:
    released = coordinator.releases()
    return Run(released[0], parties, coordinator, released)
