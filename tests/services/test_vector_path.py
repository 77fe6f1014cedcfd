"""The vector path of a secure sum: records sent from where their bytes lie (services.link_transport,
services.link, services.sessions), and what a connection's reader does with records split across reads."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

import numpy as np
import pytest

from services import link, link_transport
from services.link import Hub, LinkError
from services.sessions import keyed_partial
from services.tls import Identity

SID = b"v" * 16


class Recorder:
    """A connection's owner that keeps what it is told."""

    def __init__(self):
        self.records: list[bytes] = []
        self.invalids: list[str] = []
        self.ends: list[BaseException | None] = []
        self.got = asyncio.Event()

    def received(self, connection, record: memoryview) -> None:
        self.records.append(bytes(record))
        self.got.set()

    def invalid(self, connection, reason: str) -> None:
        self.invalids.append(reason)
        connection.close()

    def ended(self, connection, error) -> None:
        self.ends.append(error)
        self.got.set()


def pair(max_record: int = 1 << 22, owner: Recorder | None = None):
    """Two plain connections on loopback; the second one's records go to ``owner`` (returned)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        a = socket.create_connection(listener.getsockname())
        b, _ = listener.accept()
    a.setblocking(False)
    b.setblocking(False)
    owner = owner or Recorder()
    sender = link_transport.Connection(Recorder(), max_record, a, None)
    receiver = link_transport.Connection(owner, max_record, b, None)
    receiver.start()
    return sender, receiver, owner


async def until_records(owner: Recorder, n: int) -> None:
    for _ in range(500):
        if len(owner.records) >= n or owner.ends:
            return
        owner.got.clear()
        await asyncio.wait_for(owner.got.wait(), 5)


async def test_a_record_given_as_pieces_arrives_whole_and_its_long_pieces_are_sent_from_their_own_memory():
    sender, receiver, owner = pair()
    vector = np.arange(50_000, dtype=np.uint64)  # 400,000 bytes: two write pieces and a rest
    sent: list[memoryview] = []
    real = sender._send

    async def spy(view: memoryview) -> None:
        sent.append(view)
        await real(view)

    sender._send = spy  # type: ignore[method-assign]
    await sender.write([b"ab", memoryview(vector).cast("B"), b"cd", b""])
    await until_records(owner, 1)
    assert owner.records == [b"ab" + vector.tobytes() + b"cd"]
    # the prefix and the short first piece in one send; the vector in WRITE_PIECE_BYTES pieces of its own
    # memory (no join copied it); the short tail after it in one more send
    assert bytes(sent[0]) == link_transport.PREFIX.pack(4 + vector.nbytes) + b"ab"
    long_sends = sent[1:-1]
    piece = link_transport.WRITE_PIECE_BYTES
    assert [len(v) for v in long_sends] == [piece, vector.nbytes % piece]
    assert all(v.obj is vector for v in long_sends)
    assert bytes(sent[-1]) == b"cd"
    sender.close()
    receiver.close()


async def test_a_record_of_one_buffer_and_an_empty_record_still_arrive():
    sender, receiver, owner = pair()
    await sender.write(b"")
    await sender.write(bytearray(b"x" * 70_000))  # longer than the staging buffer: a buffer of its own
    await sender.write(())
    await until_records(owner, 3)
    assert owner.records == [b"", b"x" * 70_000, b""]
    sender.close()
    receiver.close()


def lone_hub(written: list) -> Hub:
    hub = Hub(Identity("bob", None, insecure=True), lambda peer: "nowhere", lambda peer: True)

    async def open_(peer):
        async def write(pieces):
            written.append(pieces)

        return link._Stream(write, lambda: None)

    hub._stream = open_  # type: ignore[method-assign]
    return hub


async def test_a_keyed_partial_is_posted_as_the_vector_where_it_lies_then_its_key_ids():
    """The ids follow the vector in frames of their own: no copy of the vector is made to append them."""
    written: list = []
    hub = lone_hub(written)
    vector = np.arange(300_000, dtype=np.uint64)  # 2.4 MB: three frames of at most 1 MiB
    ids = [b"\x01" * 8, b"\x02" * 8]
    payload = keyed_partial(vector, ids)
    await asyncio.wait_for(hub.post("carol", SID, 0, "sum.partial", payload), 5)
    pieces = [p for write in written for p in write]
    frames = [f for write in written for f in link.decode(b"".join(write))[1]]
    assert [f.offset for f in frames] == [0, 1 << 20, 2 << 20, vector.nbytes]
    assert {f.total for f in frames} == {vector.nbytes + 16}
    assert b"".join(bytes(f.payload) for f in frames) == vector.tobytes() + b"".join(ids)
    vector_pieces = [p for p in pieces if isinstance(p, memoryview) and len(p) >= 1 << 16]
    assert sum(map(len, vector_pieces)) == vector.nbytes
    assert all(np.shares_memory(np.frombuffer(p, np.uint8), vector) for p in vector_pieces)


async def test_a_tuple_payload_with_empty_parts_is_one_message_of_their_concatenation():
    written: list = []
    hub = lone_hub(written)
    await asyncio.wait_for(hub.post("carol", SID, 0, "k", (b"", b"abc", b"", b"de")), 5)
    await asyncio.wait_for(hub.post("carol", SID, 1, "k", (b"", b"")), 5)
    frames = [f for write in written for f in link.decode(b"".join(write))[1]]
    first = [f for f in frames if f.round == 0]
    assert [(f.offset, f.total, bytes(f.payload)) for f in first] == [(0, 5, b"abc"), (3, 5, b"de")]
    assert [(f.offset, f.total, bytes(f.payload)) for f in frames if f.round == 1] == [(0, 0, b"")]


async def test_an_empty_tuple_payload_is_the_empty_message_and_the_peers_link_goes_on():
    """``()`` is one empty frame, as ``b""`` is: with no frame at all the writer died on it and every later message
    to that peer waited behind it for ever."""
    written: list = []
    hub = lone_hub(written)
    await asyncio.wait_for(hub.post("carol", SID, 0, "k", ()), 5)
    await asyncio.wait_for(hub.post("carol", SID, 1, "k", b"hello"), 5)
    frames = [f for write in written for f in link.decode(b"".join(write))[1]]
    assert [(f.round, f.offset, f.total, bytes(f.payload)) for f in frames] == [(0, 0, 0, b""), (1, 0, 5, b"hello")]


async def test_a_writer_that_fails_unexpectedly_fails_its_messages_logs_and_the_next_post_is_written(caplog):
    """A bug under the writer (here the stream's write raising a TypeError) fails the messages it was writing,
    with a log line, and closes the connection (a record may be half written); the next post goes out."""
    written: list = []
    cancelled: list[int] = []
    hub = Hub(Identity("bob", None, insecure=True), lambda peer: "nowhere", lambda peer: True)

    async def open_(peer):
        async def write(pieces):
            if not written and not cancelled:
                raise TypeError("a bug")
            written.append(pieces)

        return link._Stream(write, lambda *reason: cancelled.append(1))

    hub._stream = open_  # type: ignore[method-assign]
    with caplog.at_level("ERROR", logger="mpcdp.link"), pytest.raises(LinkError, match="sending failed"):
        await asyncio.wait_for(hub.post("carol", SID, 0, "k", b"first"), 5)
    assert cancelled == [1]
    assert any("writer of the link to carol failed" in r.getMessage() for r in caplog.records)
    await asyncio.wait_for(hub.post("carol", SID, 1, "k", b"second"), 5)
    frames = [f for write in written for f in link.decode(b"".join(write))[1]]
    assert [(f.round, bytes(f.payload)) for f in frames] == [(1, b"second")]


async def test_a_message_its_session_drops_mid_write_is_done_only_once_that_write_has_read_its_buffer():
    """close_session while the first frame of a droppable message is being written (a slow socket): the frame is
    read from the poster's array until the write ends, so the future fails only then (the poster may reuse its
    buffer once the future is done: the module doc); the message's other frames are not written."""
    gate = asyncio.Event()
    sent: list[bytes] = []
    hub = Hub(Identity("bob", None, insecure=True), lambda peer: "nowhere", lambda peer: True)

    async def open_(peer):
        async def write(pieces):
            await gate.wait()
            sent.append(b"".join(bytes(p) for p in pieces))

        return link._Stream(write, lambda: None)

    hub._stream = open_  # type: ignore[method-assign]
    vector = np.arange(300_000, dtype=np.uint64)  # three frames of at most 1 MiB
    done = hub.post("coordinator", SID, 0, "sum.partial", vector, droppable=True)
    for _ in range(5):
        await asyncio.sleep(0)  # the writer starts the first frame's write
    hub.close_session(SID)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not done.done()  # its first frame is still being read from ``vector``
    gate.set()
    with pytest.raises(LinkError, match="session closed"):
        await asyncio.wait_for(done, 5)
    await asyncio.sleep(0.01)
    [frames] = [list(link.decode(write)[1]) for write in sent]
    assert [(f.offset, bytes(f.payload)) for f in frames] == [(0, vector.tobytes()[: 1 << 20])]
    assert not hub._outboxes["coordinator"].messages and hub._outboxes["coordinator"].queued == 0


def long_record(i: int, n: int = 200_000) -> bytes:
    return bytes([i]) * n


async def test_a_long_record_split_across_many_reads_arrives_whole():
    sender, receiver, owner = pair()
    first = link_transport.PREFIX.pack(200_000) + long_record(1)
    for at in range(0, len(first), 7_919):  # many short sends, each its own read
        sender.sock.sendall(first[at : at + 7_919])
        await asyncio.sleep(0)
    await sender.write(long_record(2, 150_000))
    await until_records(owner, 2)
    assert owner.records == [long_record(1), long_record(2, 150_000)]
    sender.close()
    receiver.close()


async def test_a_connection_closed_in_the_middle_of_a_long_record_hands_on_nothing():
    sender, receiver, owner = pair()
    sender.sock.sendall(link_transport.PREFIX.pack(200_000) + long_record(1, 120_000))
    await asyncio.sleep(0.05)
    sender.close()
    await until_records(owner, 1)
    assert owner.records == [] and receiver.closed and receiver._body is None
    assert str(owner.ends[0]) == "the connection ended 120000 bytes into a record of 200000"


class BrokenRead:
    """An SSL object whose ``read`` fails as no documented error would (say, its signature changed in CPython)."""

    def read(self, n, buffer):
        raise TypeError("read() takes at most 1 argument (2 given)")


async def test_a_read_that_fails_unexpectedly_ends_the_connection_with_its_error():
    """The connection reads through a private API: an unexpected exception from it closes the connection with that
    error (its messages fail at once) instead of escaping, which left the reader registered and called forever."""
    sender, receiver, owner = pair()
    receiver._tls = BrokenRead()
    sender.sock.sendall(b"anything")
    await until_records(owner, 1)
    assert receiver.closed and len(owner.ends) == 1 and isinstance(owner.ends[0], TypeError)
    sender.close()


def stub_hub(write) -> Hub:
    """A hub whose link to any peer is a stand-in stream calling ``write(pieces)`` for each write."""
    hub = Hub(Identity("bob", None, insecure=True), lambda peer: "nowhere", lambda peer: True)

    async def open_(peer):
        return link._Stream(write, lambda *reason: None)

    hub._stream = open_  # type: ignore[method-assign]
    return hub


async def test_a_message_posted_with_prepare_is_read_only_below_what_prepare_made_final():
    """prepare(end) runs before each frame goes to a write, with that frame's end: a payload made final only as
    it is asked (a partial sum masked slice by slice) never has a byte read before its turn. Here the payload is
    zeros until prepare writes its final bytes: every written byte is final, and prepare was asked each frame's
    end in order."""
    final = np.arange(300_000, dtype=np.uint64)  # three frames of at most 1 MiB
    vector = np.zeros_like(final)
    asked: list[int] = []
    sent: list[bytes] = []

    def prepare(end: int) -> None:
        asked.append(end)
        upto = -(-end // 8)
        vector[:upto] = final[:upto]

    async def write(pieces):
        sent.append(b"".join(bytes(p) for p in pieces))  # read as the write happens
        await asyncio.sleep(0)

    hub = stub_hub(write)
    await asyncio.wait_for(hub.post("coordinator", SID, 0, "sum.partial", (vector, b"ids"), prepare=prepare), 5)
    frames = [f for write in sent for f in link.decode(write)[1]]
    assert b"".join(bytes(f.payload) for f in frames) == final.tobytes() + b"ids"
    assert asked == [f.offset + len(f.payload) for f in frames] == sorted(asked)


class GatedPost:
    """A 300,000-element message posted with ``prepare`` to a stand-in stream whose writes wait for ``gate``: its
    buffer holds zeros until prepare makes it ``final`` up to the end asked (``asked``); ``sent``: the writes."""

    def __init__(self, droppable: bool = False):
        self.final = np.arange(300_000, dtype=np.uint64)
        self.vector = np.zeros_like(self.final)
        self.asked: list[int] = []
        self.gate = asyncio.Event()
        self.sent: list[bytes] = []
        self.hub = stub_hub(self._write)
        self.done = self.hub.post(
            "coordinator", SID, 0, "sum.partial", self.vector, prepare=self._prepare, droppable=droppable
        )

    def _prepare(self, end: int) -> None:
        self.asked.append(end)
        self.vector[: -(-end // 8)] = self.final[: -(-end // 8)]

    async def _write(self, pieces):
        await self.gate.wait()
        self.sent.append(b"".join(bytes(p) for p in pieces))

    def frames(self) -> list:
        return [f for write in self.sent for f in link.decode(write)[1]]


async def test_a_prepared_message_given_up_mid_write_is_made_final_to_its_end_before_its_rest_is_copied():
    """The poster gives up after the first frame went to a write: the rest of the message is copied (the poster
    may then reuse its buffer) and still written; prepare is asked for the whole message first, so the copy
    holds final bytes, never what the buffer held before."""
    m = GatedPost()
    for _ in range(5):
        await asyncio.sleep(0)  # the first frame is in a write
    assert m.asked == [1 << 20]
    m.done.cancel()
    await asyncio.sleep(0)  # its done callbacks run
    assert m.asked == [1 << 20, m.final.nbytes]  # made final to its end before the rest was copied
    m.vector[(1 << 20) // 8 :] = 7  # the poster reuses its buffer beyond the frame under way: the copy goes out
    m.gate.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert b"".join(bytes(f.payload) for f in m.frames()) == m.final.tobytes()


async def test_a_droppable_prepared_message_given_up_mid_write_drops_its_rest_unmasked_and_uncopied():
    """review-vecpipe F9: a party's keyed partial given up after its first frame (its session over) had the rest of
    its 2^21 elements masked and copied on the event loop (58 ms). A droppable message's rest is now dropped, as
    close_session drops it: prepare is not asked beyond the frame under way, nothing of the rest is written (the
    frames written do not cover the message, so no receiver takes it as whole), and the next message goes out."""
    m = GatedPost(droppable=True)
    for _ in range(5):
        await asyncio.sleep(0)  # the first frame is in a write
    m.done.cancel()
    await asyncio.sleep(0)  # its done callbacks run
    assert m.asked == [1 << 20] and not m.vector[(1 << 20) // 8 :].any()  # the rest neither made final nor copied
    m.gate.set()
    await asyncio.wait_for(m.hub.post("coordinator", b"w" * 16, 0, "next", b"after"), 5)
    frames = m.frames()
    mine = [f for f in frames if f.session_id == SID]
    assert [f.offset for f in mine] == [0] and len(mine[0].payload) < m.final.nbytes
    assert b"".join(bytes(f.payload) for f in mine) == m.final.tobytes()[: 1 << 20]
    assert [bytes(f.payload) for f in frames if f.session_id != SID] == [b"after"]


@pytest.fixture(scope="module")
def tls_certs(tmp_path_factory):
    from services.tls import init_certs

    out = tmp_path_factory.mktemp("certs")
    init_certs(["alice", "bob"], out)
    return out


async def tls_pair(certs, owner: Recorder):
    """A TLS 1.3 connection on loopback, handshake done: (bob's sending Connection, alice's receiving one, which
    hands its records to ``owner``)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        a = socket.create_connection(listener.getsockname())
        b, _ = listener.accept()
    a.setblocking(False)
    b.setblocking(False)
    client = Identity("bob", certs).link_context(server=False).wrap_socket(a, do_handshake_on_connect=False)
    server = (
        Identity("alice", certs)
        .link_context(server=True)
        .wrap_socket(b, server_side=True, do_handshake_on_connect=False)
    )
    await asyncio.gather(link_transport.handshake(client, 5), link_transport.handshake(server, 5))
    sender = link_transport.Connection(Recorder(), 1 << 23, client, None)
    receiver = link_transport.Connection(owner, 1 << 23, server, None)
    receiver.start()
    return sender, receiver


async def test_tls_records_are_read_through_the_sockets_own_tls_object_and_arrive_whole(tls_certs):
    """A TLS connection reads with OpenSSL's read on the socket's SSL object (not ssl.py's recv_into): a long record
    of hundreds of TLS records, short ones around it, arrive whole and in order."""
    owner = Recorder()
    sender, receiver = await tls_pair(tls_certs, owner)
    assert receiver._tls is not None and receiver._tls is receiver.sock._sslobj
    long = np.arange(3 * (1 << 20) // 8 + 3, dtype=np.uint64)
    await sender.write(b"first")
    await sender.write([b"head", memoryview(long).cast("B")])
    await sender.write(b"last")
    await until_records(owner, 3)
    assert owner.records == [b"first", b"head" + long.tobytes(), b"last"] and not owner.ends
    sender.close()


async def test_a_tls_peer_that_vanishes_without_close_notify_ends_the_connection_as_a_close(tls_certs):
    """A ragged end (the TCP connection closed under TLS, no close_notify) at a record boundary is read as the end,
    with no error, as ssl.py's recv_into reads it (suppress_ragged_eofs)."""
    owner = Recorder()
    sender, receiver = await tls_pair(tls_certs, owner)
    await sender.write(b"whole")
    await until_records(owner, 1)
    raw = socket.socket(fileno=sender.sock.detach())  # the TCP socket under TLS, closed without TLS's goodbye
    raw.close()
    await until_records(owner, 2)
    assert owner.records == [b"whole"] and owner.ends == [None] and receiver.closed


def cut(connection: link_transport.Connection) -> None:
    """Close the TCP connection under ``connection``'s TLS, without TLS's close_notify."""
    socket.socket(fileno=connection.sock.detach()).close()


@pytest.mark.parametrize(
    "sent, why",
    [
        ((3 << 20, (1 << 20) + 123), f"ended {(1 << 20) + 123} bytes into a record of {3 << 20}"),  # its own buffer
        ((1000, 999), "ended 1003 bytes into a record"),  # in the staging buffer (its prefix counted)
    ],
    ids=["long", "short"],
)
async def test_a_tls_connection_cut_in_the_middle_of_a_record_hands_nothing_on_and_ends_with_an_error(
    tls_certs, sent, why
):
    """A ragged end in the middle of a record is a truncation, not a peer's orderly close: nothing of the record is
    handed on, and the owner is told the connection ended with an error (it was told None, as for a close)."""
    owner = Recorder()
    sender, receiver = await tls_pair(tls_certs, owner)
    announced, given = sent
    sender.sock.setblocking(True)
    sender.sock.sendall(link_transport.PREFIX.pack(announced) + b"x" * given)
    await asyncio.sleep(0.05)
    cut(sender)
    await until_records(owner, 1)
    assert owner.records == [] and receiver.closed and receiver._body is None
    assert len(owner.ends) == 1 and isinstance(owner.ends[0], ConnectionError) and why in str(owner.ends[0])


async def test_a_tls_close_notify_in_the_middle_of_a_record_hands_nothing_on_and_ends_with_an_error(tls_certs):
    owner = Recorder()
    sender, receiver = await tls_pair(tls_certs, owner)
    sender.sock.setblocking(True)
    sender.sock.sendall(link_transport.PREFIX.pack(200_000) + b"z" * 100_000)
    await asyncio.sleep(0.05)
    sender.sock.setblocking(False)
    with contextlib.suppress(ssl.SSLError, OSError):
        sender.sock.unwrap()  # close_notify, then nothing more
    await until_records(owner, 1)
    assert owner.records == [] and receiver.closed
    assert len(owner.ends) == 1 and "ended 100000 bytes into a record of 200000" in str(owner.ends[0])


async def test_bytes_injected_into_a_tls_stream_end_the_connection_with_an_error(tls_certs):
    """A network attacker's forged TLS record fails its MAC: the reader ends with that error, nothing handed on."""
    owner = Recorder()
    sender, _ = await tls_pair(tls_certs, owner)
    raw = socket.socket(fileno=sender.sock.detach())
    raw.setblocking(True)
    raw.sendall(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)  # an application-data record with a forged body
    await until_records(owner, 1)
    assert owner.records == [] and len(owner.ends) == 1 and isinstance(owner.ends[0], ssl.SSLError)
    raw.close()
