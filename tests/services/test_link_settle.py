"""Two connections of one pair: a peer that restarted (review-tidy F1) and a simultaneous open's switch (F2)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque

import pytest

from services.link import MAX_LINKS_PER_PEER, NO_SESSION, RETIRE, Frame, Hub, encode
from services.link_transport import Closed, Connection
from services.server import start
from services.tls import Identity, init_certs
from tests.support.federation import until

SID = b"s" * 16


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    out = tmp_path_factory.mktemp("certs")
    init_certs(["alice", "bob"], out)
    return out


class Nodes:
    """Hubs served by gRPC servers of their own; ``addresses`` says where each name serves now."""

    def __init__(self, certs):
        self.certs = certs
        self.addresses: dict[str, str] = {}
        self.servers: list = []
        self.hubs: list[Hub] = []

    async def node(self, name: str, **options) -> Hub:
        identity = Identity(name, self.certs)
        hub = Hub(identity, self.addresses.__getitem__, lambda who: who in ("alice", "bob"), **options)
        server, port = await start(identity, "127.0.0.1:0", [hub.service()])
        self.addresses[name] = f"127.0.0.1:{port}"
        self.servers.append(server)
        self.hubs.append(hub)
        return hub

    async def close(self) -> None:
        for hub in self.hubs:
            await hub.close()
        for server in self.servers:
            await server.stop(None)


async def test_a_restarted_higher_named_peer_is_served_though_its_old_link_is_a_black_hole(certs):
    """F1: alice < bob, on the link alice dialled. bob's host dies without a FIN (its end is never read again) and
    a new bob dials alice. alice keeps the new bob's connection (another epoch in its hello: a restart, not a
    simultaneous open) and closes her dead one, so her next message reaches the new bob (it went into the dead
    connection, lost for TCP's retry time, ~15 min)."""
    nodes = Nodes(certs)
    try:
        alice = await nodes.node("alice")
        old_bob = await nodes.node("bob")
        await alice.send("bob", SID, 0, "x", b"hello")  # alice dials: the pair's link is the one alice dialled
        assert bytes(await old_bob.receive("alice", SID, 0, "x", timeout=5)) == b"hello"
        for connection in list(old_bob._connections):  # a black hole: never read, never closed
            asyncio.get_running_loop().remove_reader(connection._fd)
        bob = await nodes.node("bob")  # restarted: a new gRPC address, a new link port
        await bob.send("alice", SID, 1, "y", b"i am back")  # bob dials alice
        assert bytes(await alice.receive("bob", SID, 1, "y", timeout=5)) == b"i am back"
        await asyncio.wait_for(alice.send("bob", SID, 2, "z", b"reply"), 5)
        assert bytes(await bob.receive("alice", SID, 2, "z", timeout=5)) == b"reply"
        await until(lambda: len([c for c in alice._connections if c.peer == "bob"]) == 1, seconds=5)
    finally:
        await nodes.close()


async def test_link_sockets_give_up_on_unacknowledged_writes_within_the_keepalive_bound(certs):
    """F1: TCP_USER_TIMEOUT on each link socket, so a dead peer is noticed while writes are pending too (keepalives
    only probe a quiet connection): keepalive_time + keepalive_timeout."""
    nodes = Nodes(certs)
    try:
        alice, bob = await nodes.node("alice"), await nodes.node("bob")
        await alice.send("bob", SID, 0, "x", b"hi")
        await bob.receive("alice", SID, 0, "x", timeout=5)
        limits = alice._limits
        expected = int((limits.keepalive_time + limits.keepalive_timeout) * 1000)
        for hub in (alice, bob):
            (connection,) = hub._connections
            assert connection.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == expected
    finally:
        await nodes.close()


@pytest.mark.parametrize("trial", range(6))
async def test_messages_posted_back_to_back_arrive_in_order_across_a_simultaneous_open(certs, trial):
    """F2: bob posts a long pushed message, then a short one. While his writer is inside the long one, alice's own
    dial lands: the pair settles on alice's connection and bob's writer moves there for the short one. alice holds
    what comes on the kept connection until bob's retired one has ended, so the short one never overtakes the long
    one (it did in about one run in three)."""
    nodes = Nodes(certs)
    try:
        alice, bob = await nodes.node("alice"), await nodes.node("bob")
        alice._ports["bob"], bob._ports["alice"] = bob.port, alice.port
        order: list[str] = []
        alice.on("p", lambda peer, sid, rnd, payload: order.append(f"{rnd}:{len(payload)}"))
        big = bytes(32 << 20)
        sent = [bob.post("alice", SID, 1, "p", big), bob.post("alice", SID, 2, "p", b"after")]
        box = bob._outboxes["alice"]
        while not (box.messages and box.messages[0].started):  # bob's writer is in the middle of the long one
            await asyncio.sleep(0.001)
        await until(lambda: any(c.peer == "bob" for c in alice._accepted), seconds=10)
        loop = asyncio.get_running_loop()
        slow = [c for c in alice._accepted if c.peer == "bob"]  # bob's dial: alice reads it slowly (a slow path)
        for connection in slow:
            loop.remove_reader(connection._fd)
        await alice._dial("bob")  # alice's own dial (her port question was slower) lands meanwhile
        await until(lambda: any(getattr(c.stream, "retiring", False) for c in bob._connections), seconds=10)
        for connection in slow:
            loop.add_reader(connection._fd, connection._readable)
        await asyncio.wait_for(asyncio.gather(*sent), 30)
        await until(lambda: len(order) == 2, seconds=15)
        assert order == [f"1:{len(big)}", "2:5"]
        await until(lambda: len(alice._connections) == 1 and len(bob._connections) == 1, seconds=10)
    finally:
        await nodes.close()


async def test_a_held_write_is_acted_on_though_the_kept_connection_broke_first(certs):
    """review-links F1: bob (the higher name) holds alice's write on the kept connection A while his own dial B is
    unanswered; A then breaks at bob. The held message arrived whole: it is acted on once B is done with (alice's
    hello on it), not thrown away (it was, with no drop reported: B was still open)."""
    nodes = Nodes(certs)
    try:
        alice = await nodes.node("alice")
        bob = await nodes.node("bob", handshake_seconds=60)
        alice._ports["bob"], bob._ports["alice"] = bob.port, alice.port
        loop = asyncio.get_running_loop()
        b = await bob._dial("alice")
        (bconn,) = [c for c in bob._connections if c.stream is b]
        loop.remove_reader(bconn._fd)  # alice's answer on B unread: B's epoch unknown at bob
        await until(lambda: any(c.peer == "bob" for c in alice._accepted), seconds=5)
        await alice._dial("bob")  # A
        await asyncio.wait_for(alice.post("bob", SID, 7, "x", b"m"), 5)
        await until(lambda: bob._waiting.get("alice"), seconds=5)
        drops: list[str] = []
        bob.on_drop(lambda peer, err: drops.append(err.reason))
        (aconn,) = [c for c in bob._connections if c.peer == "alice" and c is not bconn]
        aconn._lost(ConnectionResetError("a simulated network break"))
        loop.add_reader(bconn._fd, bconn._readable)
        assert bytes(await bob.receive("alice", SID, 7, "x", timeout=5)) == b"m"
        assert drops == [] and bob.linked("alice")  # B lives on, and carries the link
    finally:
        await nodes.close()


class _CountingDeque(deque):
    """A deque that counts the times it is walked through."""

    walks = 0

    def __iter__(self):
        type(self).walks += 1
        return super().__iter__()


async def _held_pair(nodes: Nodes, **options) -> tuple[Hub, Connection, Connection]:
    """alice and a bob who never closes the connection he dialled after a simultaneous open: what he writes on the
    kept one is held at alice. Returns alice and bob's connections: the kept one (alice's dial) and his own."""
    alice = await nodes.node("alice", **options)
    bob = await nodes.node("bob")
    bob._retire_step = lambda peer, stream: None  # type: ignore[method-assign]
    await bob.send("alice", SID, 0, "x", b"b0")  # bob dials
    assert bytes(await alice.receive("bob", SID, 0, "x", timeout=5)) == b"b0"
    await alice._dial("bob")  # the pair settles on alice's dial; bob's is retiring at both ends
    await until(lambda: any(getattr(c.stream, "retiring", False) for c in bob._connections), seconds=5)
    (kept,) = [c for c in bob._connections if c.stream.dialler == "alice"]
    (own,) = [c for c in bob._connections if c.stream.dialler == "bob"]
    return alice, kept, own


def _empty(kind: str, round: int) -> bytes:
    return encode("bob", [Frame(kind.encode() * 16, round, kind, 0, 0, b"")])


async def test_a_record_on_a_retired_connection_does_not_walk_the_held_writes(certs):
    """review-links F2: every record on a retired connection walked every held write (100k held writes made 50
    one-byte records cost alice's loop 1.3 s); it is a count per connection now."""
    nodes = Nodes(certs)
    try:
        alice, kept, own = await _held_pair(nodes)
        for i in range(50):
            await kept.write(_empty("h", i))
        await until(lambda: len(alice._waiting.get("bob", ())) == 50, seconds=10)
        alice._waiting["bob"] = _CountingDeque(alice._waiting["bob"])
        got: list[int] = []
        alice.on("q", lambda peer, sid, rnd, payload: got.append(rnd))
        for i in range(5):
            await own.write(_empty("q", i))
        await until(lambda: len(got) == 5, seconds=10)
        assert _CountingDeque.walks == 0
    finally:
        await nodes.close()


async def test_held_writes_are_charged_their_cost_against_the_peers_one_allowance(certs):
    """review-links F2: a held write was charged 256 bytes (it takes about 600) on top of the peer's allowance for
    messages nobody asked for; it is charged its cost against that same allowance. 32 KiB unasked plus 60 empty held
    writes (36 KiB at 600 each) exceed alice's 64 KiB: the kept connection is refused (it was not)."""
    nodes = Nodes(certs)
    try:
        alice, kept, own = await _held_pair(nodes, max_pending_bytes=64 << 10)
        drops: list[str] = []
        alice.on_drop(lambda peer, err: drops.append(err.reason))
        await own.write(encode("bob", [Frame(b"u" * 16, 0, "u", 0, 32 << 10, bytes(32 << 10))]))
        await until(lambda: alice._pending.get("bob", 0) >= 32 << 10, seconds=5)
        for i in range(60):
            with contextlib.suppress(Closed):
                await kept.write(_empty("h", i))
        await until(lambda: kept.closed, seconds=5)
        # review-links F4: the node's own sessions learn why (they read "the link closed")
        assert drops == [f"more than {64 << 10} bytes held for the order of its connections"]
    finally:
        await nodes.close()


async def test_a_peer_that_never_closes_its_retired_connection_has_it_closed_after_pending_seconds(certs):
    """review-links F3: holding had no time bound: bob's writes on the kept connection waited for as long as he kept
    the retired one open. After ``pending_seconds`` alice closes it (audited) and acts on what she held, in order."""
    nodes = Nodes(certs)
    try:
        alice, kept, own = await _held_pair(nodes, pending_seconds=1.0)
        got: list[int] = []
        alice.on("h", lambda peer, sid, rnd, payload: got.append(rnd))
        for i in range(3):
            await kept.write(_empty("h", i))
        await until(lambda: len(alice._waiting.get("bob", ())) == 3, seconds=5)
        assert got == []
        await until(lambda: got == [0, 1, 2], seconds=5)
        await until(lambda: own.closed, seconds=5)  # alice's farewell read at bob
        assert not kept.closed and len(alice._of_peer["bob"]) == 1
    finally:
        await nodes.close()


async def test_a_retire_inside_a_held_write_does_not_let_later_writes_overtake_its_rest(certs):
    """review-links F5: held write [h0, RETIRE, h1] then [h2]: the RETIRE re-entered the release, which acted on h2
    before h1. A liar reorders only its own messages, but order is the link's promise."""
    nodes = Nodes(certs)
    try:
        alice, kept, own = await _held_pair(nodes)
        got: list[int] = []
        alice.on("h", lambda peer, sid, rnd, payload: got.append(rnd))
        h = [Frame(b"h" * 16, i, "h", 0, 0, b"") for i in range(3)]
        await kept.write(encode("bob", [h[0], Frame(NO_SESSION, 0, RETIRE, 0, 0, b""), h[1]]))
        await kept.write(encode("bob", [h[2]]))
        await until(lambda: len(alice._waiting.get("bob", ())) == 2, seconds=5)
        own.close()  # bob's retired connection done with: alice acts on what she held
        await until(lambda: len(got) == 3, seconds=5)
        assert got == [0, 1, 2]
    finally:
        await nodes.close()


async def test_a_restarted_peer_at_the_per_peer_limit_is_taken_and_its_old_links_closed(certs):
    """review-links F6: the per-peer limit was checked before the hello, so a restarted peer whose old process left
    MAX_LINKS_PER_PEER links (dead without a FIN) was refused until keepalives reaped them. A hello of an epoch none
    of them has is a restart: they are closed, the new link taken."""
    nodes = Nodes(certs)
    try:
        alice, old = await nodes.node("alice"), await nodes.node("bob")
        old._ports["alice"] = alice.port
        for _ in range(MAX_LINKS_PER_PEER):
            old._streams.pop("alice", None)
            await old._dial("alice")
        await until(lambda: len(alice._of_peer.get("bob", ())) == MAX_LINKS_PER_PEER, seconds=5)
        new = await nodes.node("bob")  # the restarted process: another epoch
        new._ports["alice"] = alice.port
        await new.send("alice", SID, 1, "x", b"new")
        assert bytes(await alice.receive("bob", SID, 1, "x", timeout=5)) == b"new"
        await until(lambda: len(alice._of_peer.get("bob", ())) == 1, seconds=5)
    finally:
        await nodes.close()


@pytest.mark.parametrize(
    ("reason", "said"),
    [
        ("DECRYPTION_FAILED_OR_BAD_RECORD_MAC", "TLS failed before its hello: TLS error: decryption failed or bad"),
        ("SSLV3_ALERT_BAD_CERTIFICATE", "its link refused our TLS handshake: the peer refused this node's certificate"),
    ],
)
async def test_a_dialled_link_that_fails_tls_before_the_hello_says_whether_our_certificate_was_refused(
    certs, reason, said
):
    """review-links F7: any TLS error on a dialled connection before the peer's hello read "its link refused our TLS
    handshake", a corrupted first record (a bad MAC) too; only a certificate alert says so now."""
    nodes = Nodes(certs)
    try:
        alice, bob = await nodes.node("alice"), await nodes.node("bob")
        bob._ports["alice"] = alice.port
        stream = await bob._dial("alice")
        (connection,) = [c for c in bob._connections if c.stream is stream]
        asyncio.get_running_loop().remove_reader(connection._fd)  # alice's hello unread
        error = ssl.SSLError(1, f"[SSL: {reason}] a TLS failure")
        error.reason = reason
        connection._lost(error)
        assert stream.failure.startswith(said)
    finally:
        await nodes.close()
