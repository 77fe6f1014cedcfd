"""Pair keys: one secret key per pair of parties, agreed once over their mutually authenticated link.

A keyed session (:attr:`mpcdp.protocol.spec.Sharing.KEYED`) sends no message between parties: each party
masks its partial sum with one PRG expansion per peer of their pair key, bound to the session id and the
pair (:func:`mpcdp.sharing.mask_pairwise`). The key is agreed the first time a session needs it and reused
by every later session on the same link:

- Each end draws an ephemeral X25519 key pair and sends its public key (kind ``pair.hello``) on the link
  (:mod:`services.link`), whose other end is authenticated by its certificate: only parties of the
  federation take part (a hello from anyone else, e.g. the coordinator, is refused and audited; an outsider
  cannot open a link at all).
- Both ends derive ``key = HKDF-SHA256(X25519(own private, peer public), info = both certificate names and
  both public keys, in name order)``, 32 bytes. Each end sends one hello per agreement: one that starts it,
  or one that answers the peer's (a hello arriving while none of ours waits for an answer means the peer
  forgot the key, e.g. after a link drop, and starts again).
- The key lives only in this process's memory: never written to disk, never sent, never told the
  coordinator. It is forgotten as soon as the last stream to that peer drops (:meth:`services.link.Hub.on_drop`);
  the next session agrees a fresh one. Concurrent sessions that need the same key wait on one agreement.
- Its public id (:attr:`PairKey.id`, 8 bytes of SHA-256 over the key) is what a party reports with its
  keyed partial sum, so the coordinator can check that both ends of every pair masked with the same key
  (a link re-established mid-session gives its ends different keys; the session aborts naming the pair).
  The id (:func:`mpcdp.sharing.pair_key_id`) reveals nothing usable about the key (a preimage of SHA-256).

Source: pairwise key agreement then per-session PRG expansion bound to the session id, as in secure
aggregation (Bonawitz et al., CCS 2017) and Google's SecAgg implementation.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mpcdp.prg import RandomSource, system_random
from mpcdp.sharing import pair_key_id
from services import audit
from services.link import Hub, LinkError

HELLO = "pair.hello"
TAG = bytes(16)  # the "session" of the hello messages: none, the link's own
PUBLIC_BYTES = 32
_INFO = b"mpcdp/v1/pair-key"


@dataclass(frozen=True)
class PairKey:
    """A pair key (kept out of reprs, logs and tracebacks) and its public id."""

    secret: bytes = field(repr=False)
    id: bytes


class PairKeyError(Exception):
    """No pair key with ``peer``: its link failed, or it did not answer in time."""

    def __init__(self, peer: str, reason: str):
        super().__init__(f"{peer}: {reason}")
        self.peer = peer
        self.reason = reason


def _public(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def derive(me: str, peer: str, private: X25519PrivateKey, mine: bytes, theirs: bytes) -> PairKey:
    """The pair key of ``me`` and ``peer`` from an X25519 exchange (ValueError for a degenerate public key)."""
    shared = private.exchange(X25519PublicKey.from_public_bytes(theirs))
    (lo, lo_public), (hi, hi_public) = sorted(((me, mine), (peer, theirs)))
    info = _INFO
    for part in (lo.encode(), hi.encode(), lo_public, hi_public):
        info += struct.pack(">H", len(part)) + part
    secret = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)
    return PairKey(secret, pair_key_id(secret))


@dataclass
class _Agreement:
    """Our hello sent to a peer, waiting for theirs."""

    private: X25519PrivateKey = field(repr=False)
    public: bytes
    done: asyncio.Future


class PairKeys:
    """A party's pair keys with the other parties, over its link ``hub``; ``allowed(peer)``: whether ``peer``
    may hold a pair key with this party (the other parties of the federation)."""

    def __init__(self, hub: Hub, allowed: Callable[[str], bool], rng: RandomSource | None = None):
        self.hub = hub
        self.me = hub.me
        self._allowed = allowed
        self._rng = rng or system_random("pair-keys")
        self._keys: dict[str, PairKey] = {}
        self._agreeing: dict[str, _Agreement] = {}
        hub.on(HELLO, self._hello)
        hub.on_drop(self._dropped)

    def known(self, peer: str) -> PairKey | None:
        """The key agreed with ``peer`` on the current link, if any."""
        return self._keys.get(peer)

    async def keys(self, peers: Sequence[str], timeout: float) -> dict[str, PairKey]:
        """The pair key with each of ``peers``, agreeing those not held yet (at once, one agreement per peer
        however many sessions ask); PairKeyError naming the first peer whose agreement failed or was late."""
        held = {p: self._keys.get(p) for p in peers}
        missing = [p for p, k in held.items() if k is None]
        if not missing:  # the usual case: every key agreed by an earlier session
            return held  # type: ignore[return-value]
        waits: dict[asyncio.Future, str] = {}
        for p in missing:
            if not self._allowed(p):
                raise PairKeyError(p, "not a party of this federation: no pair key")
            agreement = self._agreeing.get(p) or self._start(p)
            waits[asyncio.shield(agreement.done)] = p
        done, pending = await asyncio.wait(waits, timeout=max(timeout, 0.0), return_when=asyncio.FIRST_EXCEPTION)
        for f in pending:
            f.cancel()
        agreed: dict[str, PairKey] = {}
        for f in done:
            if f.exception() is not None:
                raise PairKeyError(waits[f], str(f.exception()).split(": ", 1)[-1])
            agreed[waits[f]] = f.result()
        if pending:
            late = sorted(waits[f] for f in pending)
            raise PairKeyError(late[0], f"no pair key agreed with {', '.join(late)} in time")
        return {p: held[p] or agreed[p] for p in peers}

    def _start(self, peer: str) -> _Agreement:
        """Send our hello for a new agreement with ``peer``."""
        private = X25519PrivateKey.from_private_bytes(self._rng.bytes(32))
        agreement = _Agreement(private, _public(private), asyncio.get_running_loop().create_future())
        self._agreeing[peer] = agreement
        sent = self.hub.post(peer, TAG, 0, HELLO, agreement.public)
        sent.add_done_callback(functools.partial(self._unsent, peer, agreement))
        return agreement

    def _unsent(self, peer: str, agreement: _Agreement, sent: asyncio.Future) -> None:
        error = None if sent.cancelled() else sent.exception()
        if error is not None:
            self._fail(peer, agreement, error if isinstance(error, LinkError) else LinkError(peer, str(error)))

    def _fail(self, peer: str, agreement: _Agreement, error: Exception) -> None:
        if self._agreeing.get(peer) is agreement:
            del self._agreeing[peer]
        if not agreement.done.done():
            agreement.done.set_exception(error)
            agreement.done.exception()  # retrieved: a session that stopped waiting does not leave it unread

    def _hello(self, peer: str, _sid: bytes, _round: int, payload: memoryview) -> None:
        """A peer's public key: completes our agreement, or starts (and at once completes) one it began."""
        if not self._allowed(peer):
            audit.record("denied", caller=peer, message="a pair key offered by a node that is not a party")
            return
        if len(payload) != PUBLIC_BYTES:
            audit.record("invalid", caller=peer, message=f"a pair key hello of {len(payload)} bytes")
            return
        agreement = self._agreeing.pop(peer, None)
        if agreement is None:  # the peer starts an agreement (first contact, or it forgot the key): answer it
            self._keys.pop(peer, None)
            agreement = self._start(peer)
            del self._agreeing[peer]
        try:
            key = derive(self.me, peer, agreement.private, agreement.public, bytes(payload))
        except ValueError:  # a low-order point: no shared secret
            audit.record("invalid", caller=peer, message="a degenerate pair key hello")
            self._fail(peer, agreement, LinkError(peer, "its pair key hello is degenerate"))
            return
        self._keys[peer] = key
        if not agreement.done.done():
            agreement.done.set_result(key)

    def forget(self) -> None:
        """Forget every key and fail every agreement in progress (the node is closing its links)."""
        for peer in {*self._keys, *self._agreeing}:
            self._dropped(peer, LinkError(peer, "the link closed"))

    def _dropped(self, peer: str, error: LinkError) -> None:
        """The link to ``peer`` is gone: forget its key (the next session agrees a new one)."""
        self._keys.pop(peer, None)
        agreement = self._agreeing.get(peer)
        if agreement is not None:
            with contextlib.suppress(asyncio.InvalidStateError):
                self._fail(peer, agreement, error)
