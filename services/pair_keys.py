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
  both public keys, in name order)``, 32 bytes. A hello says whether it starts an agreement or answers one,
  and an answer echoes (a hash of) the public key it answers: each end sends one hello per agreement, a
  start is answered only when none of ours is pending (two crossing starts complete each other), and an
  answer that matches nothing of ours is never answered, so hellos never answer each other for ever. Such a
  stale answer (our start was given up, or failed by a link drop, while it was on its way) means the peer
  holds a key we do not: we start a new agreement at once (one start per stale answer, rate-limited like
  the answer), which replaces it there before its next session masks with it. A start
  arriving while we hold a key means the peer forgot it (e.g. after a link drop): we answer with a fresh
  key pair. An answer to the start our current key came from (the peer forgot and answered it again)
  replaces the key. An agreement not answered within ``AGREEMENT_SECONDS`` (or by the deadline of a session
  waiting on it) is given up, and the next session starts a new one.
- Rate limit: a hello costs work (an X25519 key pair, an exchange, an answer) and replaces the key, so the
  hellos a peer sends beyond answers to our own starts (its starts we answer, its answers that replace our
  key, malformed ones) are limited per peer to a burst of ``PEER_HELLO_BURST`` and then
  ``PEER_HELLOS_PER_SECOND``; the rest are dropped (audited once per run of drops). At most one agreement
  of ours per peer is in flight (later sessions wait on it). A flood of hellos thus costs a bounded number
  of agreements; an honest peer re-agrees a handful of times at most after a drop, well within the burst.
- The key lives only in this process's memory: never written to disk, never sent, never told the
  coordinator. It is forgotten as soon as the last stream to that peer drops (:meth:`services.link.Hub.on_drop`);
  the next session agrees a fresh one. Concurrent sessions that need the same key wait on one agreement.
  Keyed sessions send nothing on the party links after the agreement; the servers' idle-stream watchdog
  leaves a link that spoke open (:mod:`services.server`), so a quiet link keeps its keys.
- Replays: a key outlives many sessions, so a party must never mask two vectors under one key and one
  binding; the masks are bound to the whole spec and the party node refuses a used session id while its
  deadline is ahead (:meth:`services.party_node.PartyNode._forget_expired`).
- Its public id (:attr:`PairKey.id`, 8 bytes of SHA-256 over the key) is what a party reports with its
  keyed partial sum, so the coordinator can check that both ends of every pair masked with the same key
  (a link re-established mid-session gives its ends different keys; the session aborts naming the pair).
  The id (:func:`mpcdp.sharing.pair_key_id`) reveals nothing usable about the key (a preimage of SHA-256).
- With ``--insecure`` (no TLS, names as claimed) anyone on the network may claim a party's name and get its
  pair keys: like everything else there, for local testing only.

Source: pairwise key agreement then per-session PRG expansion bound to the session id, as in secure
aggregation (Bonawitz et al., CCS 2017) and Google's SecAgg implementation.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import struct
import time
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
START, ANSWER = b"S", b"A"  # a hello's first byte
ECHO_BYTES = 8  # an answer's echo of the start it answers
AGREEMENT_SECONDS = 10.0  # an agreement not answered by then is given up (the next session starts a new one)
PEER_HELLO_BURST = 4  # hellos a peer may send at once that cost us an agreement (see the module doc) ...
PEER_HELLOS_PER_SECOND = 1.0  # ... and then this many per second
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


def _echo(public: bytes) -> bytes:
    return hashlib.sha256(b"mpcdp/v1/pair-hello" + public).digest()[:ECHO_BYTES]


@dataclass
class _Agreement:
    """Our half of an agreement: our key pair, and (while it waits for the peer's hello) the future the
    sessions wait on."""

    private: X25519PrivateKey = field(repr=False)
    public: bytes
    done: asyncio.Future
    started: float = 0.0  # loop time our start was sent


class PairKeys:
    """A party's pair keys with the other parties, over its link ``hub``; ``allowed(peer)``: whether ``peer``
    may hold a pair key with this party (the other parties of the federation)."""

    def __init__(
        self,
        hub: Hub,
        allowed: Callable[[str], bool],
        rng: RandomSource | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.hub = hub
        self.me = hub.me
        self._allowed = allowed
        self._rng = rng or system_random("pair-keys")
        self._keys: dict[str, PairKey] = {}
        self._mine: dict[str, _Agreement] = {}  # our half of each current key (an answer to it may replace it)
        self._agreeing: dict[str, _Agreement] = {}  # our starts waiting for the peer's hello
        self._clock = clock
        self._allowance: dict[str, tuple[float, float]] = {}  # peer -> (hellos it may still send, as of when)
        self._limited: set[str] = set()  # peers whose last hello was dropped by the rate limit
        hub.on(HELLO, self._hello)
        hub.on_drop(self._dropped)

    def known(self, peer: str) -> PairKey | None:
        """The key agreed with ``peer`` on the current link, if any."""
        return self._keys.get(peer)

    async def keys(self, peers: Sequence[str], timeout: float) -> dict[str, PairKey]:
        """The pair key with each of ``peers``, agreeing those not held yet (at once, one agreement per peer
        however many sessions ask); PairKeyError naming the first peer whose agreement failed or was late
        (a late agreement is given up: the next session starts a new one)."""
        held = {p: self._keys.get(p) for p in peers}
        missing = [p for p, k in held.items() if k is None]
        if not missing:  # the usual case: every key agreed by an earlier session
            return held  # type: ignore[return-value]
        loop = asyncio.get_running_loop()
        waits: dict[asyncio.Future, tuple[str, _Agreement]] = {}
        for p in missing:
            if not self._allowed(p):
                raise PairKeyError(p, "not a party of this federation: no pair key")
            agreement = self._agreeing.get(p)
            if agreement is not None and loop.time() - agreement.started > AGREEMENT_SECONDS:
                self._fail(p, agreement, LinkError(p, f"no answer to a pair key hello in {AGREEMENT_SECONDS:g} s"))
                agreement = None
            agreement = agreement or self._start(p)
            waits[asyncio.shield(agreement.done)] = (p, agreement)
        done, pending = await asyncio.wait(waits, timeout=max(timeout, 0.0), return_when=asyncio.FIRST_EXCEPTION)
        for f in pending:
            f.cancel()
        agreed: dict[str, PairKey] = {}
        for f in done:
            if f.exception() is not None:
                raise PairKeyError(waits[f][0], str(f.exception()).split(": ", 1)[-1])
            agreed[waits[f][0]] = f.result()
        if pending:
            late = sorted(waits[f][0] for f in pending)
            for f in pending:  # given up: the next session sends a new hello
                peer, agreement = waits[f]
                self._fail(peer, agreement, LinkError(peer, "no answer to a pair key hello in time"))
            raise PairKeyError(late[0], f"no pair key agreed with {', '.join(late)} in time")
        return {p: held[p] or agreed[p] for p in peers}

    def _pair(self) -> tuple[X25519PrivateKey, bytes]:
        private = X25519PrivateKey.from_private_bytes(self._rng.bytes(32))
        return private, _public(private)

    def _start(self, peer: str) -> _Agreement:
        """Send our start of a new agreement with ``peer``."""
        private, public = self._pair()
        loop = asyncio.get_running_loop()
        agreement = _Agreement(private, public, loop.create_future(), loop.time())
        self._agreeing[peer] = agreement
        self._send(peer, agreement, START + public)
        return agreement

    def _send(self, peer: str, agreement: _Agreement, hello: bytes) -> None:
        sent = self.hub.post(peer, TAG, 0, HELLO, hello)
        sent.add_done_callback(functools.partial(self._unsent, peer, agreement))

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
        """A peer's start or answer (see the module doc)."""
        if not self._allowed(peer):
            audit.record("denied", caller=peer, message="a pair key offered by a node that is not a party")
            return
        data = bytes(payload)
        kind, theirs = data[:1], data[1 : 1 + PUBLIC_BYTES]
        pending = self._agreeing.get(peer)
        ours = (
            pending is not None
            and (  # it completes our own start: free (at most one start of ours in flight)
                (kind == START and len(data) == 1 + PUBLIC_BYTES)
                or (
                    kind == ANSWER
                    and len(data) == 1 + PUBLIC_BYTES + ECHO_BYTES
                    and data[-ECHO_BYTES:] == _echo(pending.public)
                )
            )
        )
        if not ours and not self._admit(peer):  # costs us an agreement (or an audit record): limited
            return
        if kind == START and len(data) == 1 + PUBLIC_BYTES:
            agreement = self._agreeing.pop(peer, None)
            if agreement is None:  # the peer starts (first contact, or it forgot the key): answer it
                private, public = self._pair()
                agreement = _Agreement(private, public, asyncio.get_running_loop().create_future())
                self._send(peer, agreement, ANSWER + public + _echo(theirs))
            # else: our starts crossed: each completes with the other's, no answer
        elif kind == ANSWER and len(data) == 1 + PUBLIC_BYTES + ECHO_BYTES:
            echo = data[1 + PUBLIC_BYTES :]
            pending, current = self._agreeing.get(peer), self._mine.get(peer)
            if pending is not None and echo == _echo(pending.public):
                agreement = self._agreeing.pop(peer)
            elif pending is None and current is not None and echo == _echo(current.public):
                agreement = current  # the peer forgot and answered our start again: its new key replaces ours
            else:  # answers no start of ours we still hold (given up, or failed by a link drop, while the answer
                # was on its way): the peer now holds a key we do not, which its next session would use at once
                # (a key id mismatch). Start afresh (unless a start of ours is pending already): our start
                # replaces that key at the peer, and its answer completes ours. Never answered itself.
                if pending is None:
                    self._start(peer)
                return
        else:
            audit.record("invalid", caller=peer, message=f"a pair key hello of {len(data)} bytes")
            return
        try:
            key = derive(self.me, peer, agreement.private, agreement.public, theirs)
        except ValueError:  # a low-order point: no shared secret
            audit.record("invalid", caller=peer, message="a degenerate pair key hello")
            self._fail(peer, agreement, LinkError(peer, "its pair key hello is degenerate"))
            return
        self._keys[peer] = key
        self._mine[peer] = agreement
        if not agreement.done.done():
            agreement.done.set_result(key)

    def _admit(self, peer: str) -> bool:
        """Whether a hello from ``peer`` that costs us an agreement is within its rate (a token bucket: a burst
        of ``PEER_HELLO_BURST``, refilled at ``PEER_HELLOS_PER_SECOND``); a drop is audited once per run."""
        now = self._clock()
        tokens, since = self._allowance.get(peer, (float(PEER_HELLO_BURST), now))
        tokens = min(float(PEER_HELLO_BURST), tokens + (now - since) * PEER_HELLOS_PER_SECOND)
        if tokens < 1.0:
            self._allowance[peer] = (tokens, now)
            if peer not in self._limited:
                self._limited.add(peer)
                audit.record("refused", caller=peer, reason="pair key hellos beyond the rate limit dropped")
            return False
        self._allowance[peer] = (tokens - 1.0, now)
        self._limited.discard(peer)
        return True

    def forget(self) -> None:
        """Forget every key and fail every agreement in progress (the node is closing its links)."""
        for peer in {*self._keys, *self._agreeing}:
            self._dropped(peer, LinkError(peer, "the link closed"))

    def _dropped(self, peer: str, error: LinkError) -> None:
        """The link to ``peer`` is gone: forget its key (the next session agrees a new one)."""
        self._keys.pop(peer, None)
        self._mine.pop(peer, None)
        agreement = self._agreeing.get(peer)
        if agreement is not None:
            with contextlib.suppress(asyncio.InvalidStateError):
                self._fail(peer, agreement, error)
