"""One long-lived, mutually authenticated connection per pair of nodes, carrying the messages of many sessions.

A :class:`Hub` is a node's end of every link. ``await hub.send(peer, session,
round, kind, payload)`` delivers an opaque message (bytes, or a numpy array
sent as its raw bytes, or a tuple of those sent as their concatenation) to
``peer``; ``await hub.receive(peer, session, round, kind)`` returns the
message ``peer`` sent under that tag, whenever it arrived (before or after
the call). Messages are cut into frames of at most
``chunk_bytes`` and reassembled by one assembler that checks every offset
and length; ``hub.expect(..., sink)`` instead hands each piece to ``sink``
as it arrives (a running sum folds the bytes in with no assembly buffer).

Links are TLS connections of their own, not gRPC calls (:mod:`services.link_transport`). Where they
listen: when its node's gRPC server starts (:func:`services.server.start`), a hub opens its listener
on the server's host, on a free port or the one its node's ``link_port`` names (:meth:`Hub.serve_beside`,
``listen_port``), and closes it, with every link a peer opened to it, when that server stops. How a peer
finds it: the hub answers ``Link/Port`` (a unary gRPC call, ``mpcdp.v1.Link`` in the proto) on its node's
gRPC address, which the federation file gives; a dialer asks once per peer over its authenticated
channel, keeps the answer, and asks again when the port cannot be reached (a node restarted). So links go
wherever the gRPC server runs, ``mpcdp simulate`` and the demo included, and a fixed ``link_port`` is
needed only by a firewall.

The first ``send`` (or ``receive``) to a peer dials it (one TLS handshake) and keeps the connection;
a peer's frames may come on the connection this node dialled or on one the peer dialled, whichever
exists. Each end's first write on a connection (its hello) carries its hub's random epoch: a connection the
peer dials with another epoch than its older ones is a restarted peer's, and those are closed (:meth:`Hub._hello`:
a host that died sent no FIN, and our writes would go on into its dead connection). When both ends dial each other
at once (one epoch), the pair settles on the connection the lower name dialled; the other is read until both ends
write no more on it, then closed with a farewell saying why (:meth:`Hub._settle`: no message in flight is lost,
none is split between the two). A peer's messages are handed on in the order it posted them, across that switch
too: what comes on the kept connection waits until the retired one is done with (:meth:`Hub._waits`; for at most
``pending_seconds``, then the retired one is closed: :meth:`Hub._held_too_long`). Both ends
present their node certificates (TLS 1.3, the federation's CA:
:meth:`services.tls.Identity.link_context`), and a connection is the peer's only when its
certificate names it (:func:`services.tls.certificate_name`, the rule of gRPC's ``caller``): the
dialer refuses a listener whose certificate names another node than the one it dialled, and the
listener takes the dialer's name from its certificate and accepts only the names ``allowed`` says. A
handshake that fails (a certificate from another CA, an expired one, none, not TLS 1.3, too slow) is
audited on either end (``handshake_failed``, rate-limited: :class:`services.audit.Throttle`); a dialer whose own
certificate the listener refuses learns it only at its first read (TLS 1.3 checks the client's certificate after
the client's handshake is done), and audits it then, its error saying why.
The dialer's first write (a hello with no frames) names it; every write names its sender, and a
``sender`` that disagrees with the certificate is refused. Under ``--insecure`` (plain TCP) the name a
dialer's first write claims is taken on trust, as gRPC's ``caller`` does. A listener closes a
connection whose handshake and hello take longer than ``handshake_seconds`` each, takes a first
record (the hello) of at most ``FIRST_RECORD_BYTES`` (no buffer for a stranger's long record),
holds at most ``MAX_UNGREETED`` connections still waiting for their hello (a new one beyond is closed
at once) and ``MAX_LINKS_PER_PEER`` per peer name (a hello beyond is refused, unless
its epoch is new: a restarted peer's old links are closed), and any connection
is closed when a record stays half read for ``pending_seconds``; a link in use is
never closed for being quiet (a keyed session sends nothing on the party links; closing them would
drop the pair keys), and TCP keepalives notice a peer that vanished (``TCP_USER_TIMEOUT``, as long as they take:
also while our writes wait for its acknowledgements).

Frames are raw bytes: a write is :func:`encode`'s layout (the sender's name, then each frame's
header, session id, kind and payload), carried as one length-prefixed record, whose length is
checked against ``MAX_WRITE_BYTES`` before anything is allocated for it; TLS decrypts a long
record straight into one buffer sized from its prefix, and :func:`decode` reads the frames as views
of it. A payload is not copied on its way out (TLS encrypts it where it lies) nor before a sink; a
malformed write (or prefix) closes the connection, telling the peer why (a farewell record).

Sending: ``hub.post(...)`` queues a message for a peer and returns a future
that is done once it is written (``send`` awaits it). One writer per peer
drains the queue in order; whatever was queued meanwhile (the messages of
every session in flight to that peer) goes out in one write of up to
``chunk_bytes``, so the per-write cost is paid per batch, not per message.
A payload is read when its frame is written, not when it is posted: it
must not change until its future is done (a message given up after its
first frame was written keeps a copy of the rest, or drops it if droppable;
the frame of it in the write under way, if any, is read until that write ends).

Pushed kinds: ``hub.on(kind, handler)`` hands every complete message of
``kind`` to ``handler(peer, session, round, payload)`` instead of holding it
for a ``receive``: the way a message that starts something (a coordinator's
proposal, a many-party protocol's next step) reaches a node that cannot know
when to ask. A kind is either pushed or received, never both.

Bounds: a message longer than ``max_message_bytes`` is refused; messages
nobody has asked for yet are held for ``pending_seconds`` (after that a
peer's early frames are dropped), at most ``max_held_messages`` per peer,
each charged ``HELD_COST`` plus the length its first frame announces against
the peer's ``max_pending_bytes`` (what holding it may take, not what has
arrived: an empty message is not free), and writes held for the order of
its connections are charged what holding them takes against that same
allowance; beyond either bound the peer's connection is closed. A session id is 16 bytes and a kind at most 32 (a frame
otherwise is malformed; a ``post`` otherwise raises LinkError), a write
of more than ``MAX_FRAMES_PER_WRITE`` frames is malformed (so what one
write can make a node do at once is bounded; a hub's own writes batch no
more), a write is checked whole before any of its frames is acted on, and
none of its frames is acted on once its connection is closed (but a write held for the order of a peer's
connections, :meth:`Hub._waits`, that came whole is, unless its connection was refused); and
``close_session`` drops everything of a session and ignores its later
frames. A connection that breaks fails the receives waiting on that peer, so a
protocol round sees a dropped peer at once rather than at its deadline; and
``hub.on_drop(callback)`` tells ``callback(peer, error)`` when the last
connection to a peer is gone (for a node whose sessions wait on pushed
messages, not on receives). A pushed-kind handler that raises loses that
one message (logged, audited as an error), never the link. At most
``max_queued_bytes`` (each message charged ``QUEUED_COST`` on top of its
payload) and ``max_queued_messages`` wait to be written to one peer (a post
beyond either fails at once: a slow or stuck peer makes its senders fail,
not queue);
a message whose poster gave up before it was written is not written, and
``droppable`` ones (a session's shares and partial sums) go with their
session's ``close_session``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import socket
import ssl
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import grpc
import numpy as np

from mpcdp.protocol.spec import SESSION_ID_BYTES
from services import audit, link_transport
from services.channels import Channels
from services.futures import retrieved
from services.link_transport import Closed, Connection
from services.node_limits import Limits
from services.streams import Assembler, StreamError, as_bytes, chunks
from services.tls import Identity, caller, handshake_failure
from services.wire.mpcdp.v1 import federation_pb2 as pb
from services.wire.mpcdp.v1 import federation_pb2_grpc as pb_grpc

log = logging.getLogger("mpcdp.link")
CHUNK_BYTES = 1 << 20
MAX_MESSAGE_BYTES = 1 << 27  # 128 MiB: a vector of 2^24 ring elements
MAX_PENDING_BYTES = 1 << 28  # per peer, of messages nobody asked for yet
MAX_QUEUED_BYTES = 1 << 29  # per peer, of messages posted and not yet written (a slow or stuck peer)
PENDING_SECONDS = 120.0
HELD_COST = 256  # bytes charged per message nobody asked for, on top of its announced length: its box and key
MAX_HELD_MESSAGES = 4096  # per peer, of messages nobody asked for yet
HELD_WRITE_COST = 256  # bytes charged per write held for the order of a peer's connections: its entry and record
HELD_FRAME_COST = 512  # and per frame of it, besides its payload: the frame, its views and strings (~600 B measured)
QUEUED_COST = 256  # bytes charged per message queued for a peer, on top of its payload: its frames and future
MAX_QUEUED_MESSAGES = 16384  # per peer, of messages posted and not yet written
MAX_KIND_BYTES = 32  # a kind's UTF-8 (every protocol's kinds are short names)
RETIRE = "~link.retire"  # the kind of the link's own frame: its sender writes no more on this connection (_settle)
HELLO = "~link.hello"  # the link's own frame first on a connection, each way: its sender's epoch (_hello)
EPOCH_BYTES = 16  # a hub's random epoch: a new one is a peer that restarted, not a second connection of the same
NO_SESSION = bytes(SESSION_ID_BYTES)  # the session id of the link's own frames
CLOSED_REMEMBERED = 100_000
MAX_WRITE_BYTES = 4 * CHUNK_BYTES  # the longest write (record) a link takes: a batch is at most about chunk_bytes
MAX_FRAMES_PER_WRITE = 4096  # a write of more frames is malformed (a hub's own writes never batch more)
FIRST_RECORD_BYTES = 4096  # the longest first record a listener takes (a hello is a few bytes): before it, no buffer
MAX_LINKS_PER_PEER = 4  # connections one peer name may hold to a listener at once (simultaneous open needs 2)
MAX_UNGREETED = 64  # connections a listener holds at once whose hello has not come (handshakes included)
HANDSHAKE_SECONDS = 10.0  # a listener's bound on a TLS handshake, and then on the dialer's hello
DIAL_SECONDS = 20.0  # a dialer's bound on asking a peer's port and on connecting to it
HANDSHAKE_AUDITS = 20  # failed TLS handshakes audited one by one per window (then counted: a flood fills no disk)
HANDSHAKE_AUDIT_SECONDS = 60.0

SERVICE = pb.DESCRIPTOR.services_by_name["Link"].full_name
VERSION = 1
_WRITE = struct.Struct("<BH")  # a write: format version, length of the sender's name (its UTF-8 follows)
_FRAME = struct.Struct("<HHIQQI")  # a frame: session id length, kind length, round, offset, total, payload length


class Frame(NamedTuple):
    """One piece of a message on a link: bytes ``[offset, offset + len(payload))`` of a ``total``-byte message."""

    session_id: bytes
    round: int
    kind: str
    offset: int
    total: int
    payload: bytes | memoryview


def encode(sender: str, frames: Iterable[Frame]) -> bytes:
    """One write of a link as one buffer: :func:`encoded`'s pieces joined."""
    return b"".join(encoded(sender, frames))


def encoded(sender: str, frames: Iterable[Frame]) -> list[bytes | memoryview]:
    """One write of a link as the pieces the link sends one after the other (no copy joins them): ``sender``'s
    name, then each frame's header, session id, kind and payload (the payload where it lies)."""
    name = sender.encode()
    parts: list[bytes | memoryview] = [_WRITE.pack(VERSION, len(name)), name]
    for f in frames:
        kind = f.kind.encode()
        parts += [_FRAME.pack(len(f.session_id), len(kind), f.round, f.offset, f.total, len(f.payload)), f.session_id]
        parts += [kind, f.payload]
    return parts


class FrameError(ValueError):
    """A write that is not of :func:`encode`'s form."""


def decode(data: bytes | memoryview) -> tuple[str, Iterator[Frame]]:
    """The sender named by one write and its frames, each payload a view of ``data`` (no copy). A write that
    is not of this form (another version, a length running past its end, a name or kind that is not UTF-8)
    raises FrameError as its frames are read."""
    view = memoryview(data)
    if len(view) < _WRITE.size:
        raise FrameError("a write shorter than its header")
    version, n = _WRITE.unpack_from(view)
    if version != VERSION:
        raise FrameError(f"a write of format {version}, not {VERSION}")
    at = _WRITE.size + n
    if at > len(view):
        raise FrameError("a sender's name runs past the end of its write")
    return _text(view[_WRITE.size : at]), _frames(view, at)


def _frames(view: memoryview, at: int) -> Iterator[Frame]:
    end = len(view)
    count = 0
    while at < end:
        count += 1
        if count > MAX_FRAMES_PER_WRITE:  # before the frame is read: the work per write is bounded
            raise FrameError(f"more than {MAX_FRAMES_PER_WRITE} frames in one write")
        if at + _FRAME.size > end:
            raise FrameError("a frame header runs past the end of its write")
        sid_n, kind_n, round, offset, total, n = _FRAME.unpack_from(view, at)
        a = at + _FRAME.size
        b = a + sid_n
        c = b + kind_n
        at = c + n
        if at > end:
            raise FrameError("a frame runs past the end of its write")
        if sid_n != SESSION_ID_BYTES or kind_n > MAX_KIND_BYTES:
            raise FrameError(
                f"a session id of {sid_n} bytes or a kind of {kind_n} (not {SESSION_ID_BYTES}, <= {MAX_KIND_BYTES})"
            )
        yield Frame(bytes(view[a:b]), round, _text(view[b:c]), offset, total, view[c:at])


def _text(view: memoryview) -> str:
    try:
        return str(view, "utf-8")
    except UnicodeDecodeError:
        raise FrameError("a name or kind that is not UTF-8") from None


class LinkError(Exception):
    """A message could not be sent or received: the peer is unreachable, dropped, or sent garbage.
    ``unreachable``: the peer could not be reached (neither its port asked nor its link connected)."""

    def __init__(self, peer: str, message: str, unreachable: bool = False):
        super().__init__(f"{peer}: {message}")
        self.peer = peer
        self.reason = message
        self.unreachable = unreachable


class TooLong(LinkError):
    """A message announced longer than its receiver takes (``Hub.receive``'s ``max_bytes``)."""

    def __init__(self, peer: str, total: int, limit: int):
        super().__init__(peer, f"a message of {total} bytes where at most {limit} were expected")
        self.total = total
        self.limit = limit


@dataclass
class _Inbox:
    """One message being received: its pieces checked by ``assembler`` (services.streams), then kept in
    ``buffer`` or, once someone asked with a sink, passed to ``sink`` as they come."""

    total: int = -1
    assembler: Assembler | None = None
    buffer: bytearray | memoryview | None = None
    sink: Callable[[int, memoryview], None] | None = None
    held: int = 0  # bytes counted against the peer's pending allowance
    limit: int = -1  # the most bytes the asker takes (-1: up to max_message_bytes)
    refused: bool = False  # announced longer than ``limit``: its frames are dropped as they come
    done: asyncio.Future | None = None
    since: float = field(default_factory=time.monotonic)

    def future(self) -> asyncio.Future:
        if self.done is None:
            self.done = asyncio.get_running_loop().create_future()
        return self.done

    @property
    def filled(self) -> int:
        return self.assembler.filled if self.assembler is not None else 0

    def piece(self, offset: int, view: memoryview) -> None:
        """The assembler's sink: to the asker's sink, or into the buffer until someone asks."""
        if self.sink is not None:
            self.sink(offset, view)
        elif self.buffer is None and len(view) == self.total:
            self.buffer = bytearray(view)  # a one-frame message: one copy
        else:
            if self.buffer is None:  # not bytearray(total): zeroing megabytes that are overwritten at once
                self.buffer = np.empty(self.total, dtype=np.uint8).data
            self.buffer[offset : offset + len(view)] = view


class _Stream:
    """One open connection to a peer (dialled by either end): how to write on it and how to close it, who dialled
    it, and where it stands if it is being retired (:meth:`Hub._settle`)."""

    def __init__(self, write, cancel, dialler: str = ""):
        self._write = write
        self._cancel = cancel
        self.dialler = dialler  # the name of the node that dialled it
        self.writers = 0  # this hub's writers using it now
        self.retiring = False  # no new writer takes it: the other connection of the pair carries both ways
        self.retire_sent = False  # this hub (the lower name) said it writes no more on it
        self.peer_retired = False  # the peer (the lower name) said so
        self.epoch: bytes | None = None  # the peer's epoch, as its hello on this connection said (None: not yet)
        self.hello: asyncio.Future | None = None  # our hello's write on it (a listener's): every other write after it
        self.unanswered: asyncio.TimerHandle | None = None  # closes a dialled connection whose peer never says hello
        self.address = ""  # the peer's host:port, for a connection this hub dialled
        self.failure = ""  # why it ended, when the link knows better than the socket's error (a refused certificate)
        self.refused = False  # closed by :meth:`Hub.invalid`: its held writes are not acted on
        self.held = 0  # how many of its writes are held for the order of the peer's connections (Hub._waits)

    async def write(self, data: bytes | list[bytes | memoryview]) -> None:
        """Write one write, :func:`encode`-d or as its :func:`encoded` pieces."""
        if self.hello is not None:
            await asyncio.shield(self.hello)
        await self._write(data)

    def cancel(self, reason: str | None = None) -> None:
        self._cancel(reason)


@dataclass
class _Message:
    """One message queued for a peer: its frames still to write, the future done once they are written."""

    frames: list[Frame]
    done: asyncio.Future
    session: bytes
    droppable: bool  # bulk data of its session: dropped when the session closes
    started: bool = False  # a frame of it was handed to a write
    prepare: Callable[[int], object] | None = None  # makes its payload final up to a byte (Hub.post)

    @property
    def size(self) -> int:
        """What it is charged in its outbox while queued: its payload still to write, plus ``QUEUED_COST``."""
        return QUEUED_COST + sum(len(f.payload) for f in self.frames)


@dataclass
class _Outbox:
    """The messages queued for one peer, their bytes, and the task writing them."""

    messages: deque[_Message] = field(default_factory=deque)
    queued: int = 0  # what its messages are charged (_Message.size)
    writer: asyncio.Task | None = None
    # messages close_session dropped with a frame in the write under way: failed once that write ends (it reads
    # their payload until then)
    dropped: list[tuple[asyncio.Future, LinkError]] = field(default_factory=list)


class Hub:
    """A node's links to its peers (see the module doc). ``address(peer)`` is where ``peer``'s gRPC server
    listens (its links' port is asked there)."""

    def __init__(
        self,
        identity: Identity,
        address: Callable[[str], str],
        allowed: Callable[[str], bool],
        chunk_bytes: int = CHUNK_BYTES,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        pending_seconds: float = PENDING_SECONDS,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
        max_held_messages: int = MAX_HELD_MESSAGES,
        max_queued_messages: int = MAX_QUEUED_MESSAGES,
        handshake_seconds: float = HANDSHAKE_SECONDS,
    ):
        if not 0 < chunk_bytes <= MAX_WRITE_BYTES // 2:
            raise ValueError(f"chunk_bytes must be in 1..{MAX_WRITE_BYTES // 2}")
        self.identity = identity
        self.me = identity.name
        self._address = address
        self._allowed = allowed
        self.chunk_bytes = chunk_bytes
        self.max_message_bytes = max_message_bytes
        self.max_pending_bytes = max_pending_bytes
        self.pending_seconds = pending_seconds
        self.max_queued_bytes = max_queued_bytes
        self.max_held_messages = max_held_messages
        self.max_queued_messages = max_queued_messages
        self.handshake_seconds = handshake_seconds
        self.port = 0  # where this hub's links listen (0: not listening; see serve_beside)
        self.listen_port = 0  # the port serve_beside listens on (0: a free one; a federation file's link_port)
        self.listener_name = "link listener"  # what the audit log calls its listener (a node may have two hubs)
        self.epoch = secrets.token_bytes(EPOCH_BYTES)  # this hub's: said in each hello (a restart makes a new one)
        self._streams: dict[str, list[_Stream]] = {}
        # per peer, writes that came on a connection the peer writes on after another (the one it leaves), held
        # until that other one ends or the peer says it writes no more there (_waits): messages keep their order
        self._waiting: dict[str, deque[tuple[Connection, list[Frame], int]]] = {}  # and what each is charged
        self._releasing: set[str] = set()  # peers whose held writes are being acted on (_release_waiting)
        self._overdue: dict[str, asyncio.TimerHandle] = {}  # per peer holding writes: when the hold has lasted too long
        self._dialing: dict[str, asyncio.Future] = {}
        self._channels = Channels(identity, address)  # to ask peers for their links' port
        self._ports: dict[str, int] = {}  # peers' links' ports, as they said
        self._contexts: dict[bool, ssl.SSLContext] = {}  # TLS contexts, made at first use (server: True)
        self._limits = Limits()
        self._failed_handshakes = audit.Throttle(HANDSHAKE_AUDITS, HANDSHAKE_AUDIT_SECONDS)
        self._flushing: asyncio.TimerHandle | None = None  # writes the count of failed handshakes left unaudited
        self._listener: socket.socket | None = None
        self._accepter: asyncio.Task | None = None  # accepts the peers' connections
        self._admitting: set[asyncio.Task] = set()  # their handshakes
        self._watcher: asyncio.Task | None = None  # stops listening when the gRPC server stops
        self._connections: set[Connection] = set()  # every open one, dialled or accepted
        self._accepted: set[Connection] = set()  # those peers dialled to this hub
        self._of_peer: dict[str, set[Connection]] = {}  # the open ones registered for each peer (retiring included)
        self._ungreeted: set[Connection] = set()  # those of them whose hello has not come yet
        self._inbox: dict[tuple[str, bytes, int, str], _Inbox] = {}
        self._pending: dict[str, int] = {}  # bytes held per peer for messages nobody asked for
        self._held: dict[str, OrderedDict[tuple, _Inbox]] = {}  # per peer, those messages in arrival order
        self._closed: OrderedDict[bytes, None] = OrderedDict()
        self._handlers: dict[str, Callable[[str, bytes, int, memoryview], None]] = {}
        self._outboxes: dict[str, _Outbox] = {}
        self._drop_callbacks: list[Callable[[str, LinkError], None]] = []

    def service(self) -> tuple:
        """What :func:`services.server.start` needs to serve this hub's end of the links: the ``Link`` service
        (its ``Port``), and this hub, which :meth:`serve_beside` the server starts listening."""
        return (pb_grpc.add_LinkServicer_to_server, self, SERVICE)

    def on_drop(self, callback: Callable[[str, LinkError], None]) -> None:
        """Call ``callback(peer, error)`` (on the event loop) whenever the last stream to ``peer`` ends; ``error``
        says why (``error.unreachable``: the peer could not be reached)."""
        self._drop_callbacks.append(callback)

    def on(self, kind: str, handler: Callable[[str, bytes, int, memoryview], None]) -> None:
        """Push each complete message of ``kind`` to ``handler(peer, session, round, payload)`` (called on
        the event loop, so it must not block: it schedules whatever work the message starts)."""
        self._handlers[kind] = handler

    # -- sending ------------------------------------------------------------------

    async def send(self, peer: str, session: bytes, round: int, kind: str, payload) -> None:
        """Deliver one message to ``peer`` (raises LinkError if the link cannot carry it)."""
        await self.post(peer, session, round, kind, payload)

    def post(
        self,
        peer: str,
        session: bytes,
        round: int,
        kind: str,
        payload,
        droppable: bool = False,
        prepare: Callable[[int], object] | None = None,
    ) -> asyncio.Future:
        """Queue one message for ``peer``; the future is done once it is written (LinkError if the link
        cannot carry it). Messages to one peer are written, and handed on there, in the order they were posted. A
        message whose future is cancelled (its poster gave up) before its first frame is written is not written, nor
        is the rest of a ``droppable`` one cancelled after (its session is over); a ``droppable`` one (bulk data
        of its session) is dropped, its future failed, by ``close_session`` (once the write under way ends, if a
        frame of it is in that write). The payload is read until the future is
        done, except after the poster cancels it: the frame in the write under way, if any, is read until that
        write ends. ``prepare(end)``, if given, is called before each frame is handed to a write, with that
        frame's end (a byte offset in the message): the payload below ``end`` must be final when it returns, and
        only then is it read (a party masks its partial sum slice by slice as the slices leave); and once with
        the message's end before the rest of a message (not droppable) given up after its first frame is copied.
        When more than ``max_queued_bytes`` (each message charged ``QUEUED_COST`` on top of its payload: an empty
        one is not free) or ``max_queued_messages`` wait for the peer (slow or stuck), the future fails at once."""
        if len(session) != SESSION_ID_BYTES or len(kind.encode()) > MAX_KIND_BYTES or not 0 <= round < 1 << 32:
            raise LinkError(
                peer, f"a session id is {SESSION_ID_BYTES} bytes, a kind at most {MAX_KIND_BYTES}, a round below 2**32"
            )
        parts = [as_bytes(p) for p in payload] if isinstance(payload, tuple) else [as_bytes(payload)]
        parts = parts or [as_bytes(b"")]  # (): the empty message, one empty frame as b"" (no frame wedged the writer)
        total = sum(len(p) for p in parts)
        if total > self.max_message_bytes:
            raise LinkError(peer, f"message of {total} bytes exceeds the link's {self.max_message_bytes}")
        box = self._outboxes.get(peer) or self._outboxes.setdefault(peer, _Outbox())
        done = asyncio.get_running_loop().create_future()
        if box.messages and box.queued + QUEUED_COST + total > self.max_queued_bytes:
            full = f"{self.max_queued_bytes} bytes"
        elif len(box.messages) >= self.max_queued_messages:
            full = f"{self.max_queued_messages} messages"
        else:
            full = ""
        if full:
            _fail(done, LinkError(peer, f"more than {full} wait to be written to this peer"))
            return done
        frames: list[Frame] = []
        at = 0
        for part in parts:  # a tuple's parts in frames of their own (no copy joins them): offsets run on
            if len(part) <= self.chunk_bytes:  # one frame (the usual, short message)
                if part or not (total or frames):
                    frames.append(Frame(session, round, kind, at, total, part))
            else:
                frames += [Frame(session, round, kind, at + o, total, p) for o, p in chunks(part, 1, self.chunk_bytes)]
            at += len(part)
        message = _Message(frames, done, session, droppable, prepare=prepare)
        box.messages.append(message)
        box.queued += message.size
        done.add_done_callback(functools.partial(_given_up, box, message))
        if box.writer is None or box.writer.done():
            box.writer = asyncio.ensure_future(self._write(peer, box))
        return done

    async def _write(self, peer: str, box: _Outbox) -> None:
        """Write ``box``'s messages in order, as many as fit ``chunk_bytes`` per write."""
        stream: _Stream | None = None
        written: list[asyncio.Future] = []
        writing = False
        try:
            stream = await self._stream(peer)
            stream.writers += 1
            await asyncio.sleep(0)  # one turn of the loop: what other sessions post meanwhile joins this write
            while box.messages:
                if stream.retiring and not box.messages[0].started:  # between messages: on to the kept connection
                    stream.writers -= 1
                    self._retire_step(peer, stream)
                    stream = None
                    stream = await self._stream(peer)
                    stream.writers += 1
                batch: list[Frame] = []
                written, size = [], 0
                while box.messages and (not batch or self._fits(batch, size, box.messages[0].frames[0])):
                    message = box.messages[0]
                    if message.done.cancelled() and not message.started:  # its poster gave up: not written
                        _unqueue(box, message)
                        continue
                    message.started = True
                    if message.prepare is not None:  # its payload below this frame's end made final first
                        message.prepare(message.frames[0].offset + len(message.frames[0].payload))
                    frame = message.frames.pop(0)
                    batch.append(frame)
                    size += _size(frame)
                    box.queued -= len(frame.payload)
                    if not message.frames:
                        box.messages.popleft()
                        box.queued -= QUEUED_COST
                        written.append(message.done)
                if not batch:
                    break
                writing = True
                await stream.write(encoded(self.me, batch))
                writing = False
                for done in written:
                    if not done.done():
                        done.set_result(None)
                _fail_dropped(box)
        except (Closed, OSError, LinkError) as exc:
            if not isinstance(exc, LinkError):
                exc = LinkError(
                    peer, (stream.failure if stream is not None else "") or f"link broke while sending ({exc})"
                )
                if stream is not None:
                    self._drop(peer, stream, exc)
            self._fail_outbox(box, written, exc)
        except Exception as exc:  # a bug: its messages fail, the next post starts a new writer (never a wedged box)
            log.exception("the writer of the link to %s failed", peer)
            error = LinkError(peer, f"sending failed ({type(exc).__name__})")
            if writing and stream is not None:  # a record may be half written: the connection cannot go on
                self._drop(peer, stream, error)
                stream.cancel()
            self._fail_outbox(box, written, error)
        except asyncio.CancelledError:
            self._fail_outbox(box, written, LinkError(peer, "the link closed"))
            raise
        finally:
            box.writer = None
            if stream is not None:
                stream.writers -= 1
                self._retire_step(peer, stream)

    def _fits(self, batch: list[Frame], size: int, frame: Frame) -> bool:
        """Whether ``frame`` joins ``batch``: within ``chunk_bytes`` and ``MAX_FRAMES_PER_WRITE``."""
        return size + _size(frame) <= self.chunk_bytes and len(batch) < MAX_FRAMES_PER_WRITE

    @staticmethod
    def _fail_outbox(box: _Outbox, written: list, error: LinkError) -> None:
        """Fail every message of the batch that failed and every message still queued in ``box``."""
        pending = written + [m.done for m in box.messages]
        box.messages.clear()
        box.queued = 0
        for done in pending:
            if not done.done():
                _fail(done, error)
        _fail_dropped(box)

    async def _stream(self, peer: str) -> _Stream:
        streams = self._streams.get(peer)
        if streams:  # the one the lower name dialled, if any: the one a simultaneous open settles on (_settle)
            lower = min(self.me, peer)
            return next((s for s in reversed(streams) if s.dialler == lower), streams[-1])
        if peer not in self._dialing:
            self._dialing[peer] = asyncio.ensure_future(self._dial(peer))
        try:
            return await asyncio.shield(self._dialing[peer])
        finally:
            if self._dialing.get(peer) is not None and self._dialing[peer].done():
                self._dialing.pop(peer, None)

    async def _dial(self, peer: str) -> _Stream:
        """Connect to ``peer``'s links (asking its port first if we do not know it), check that the certificate
        it presents names it, and say who we are (the hello)."""
        try:
            host = link_transport.host_of(self._address(peer))
        except Exception as exc:  # an unknown name: the federation file's own error says which
            raise LinkError(peer, str(exc)) from None
        known = peer in self._ports
        try:
            connection = await self._reach(peer, host)
        except LinkError:
            if not known:
                raise
            connection = await self._reach(peer, host)  # it restarted on another port: asked again
        stream = self._register(connection, peer, self.me)
        with contextlib.suppress(OSError):
            stream.address = _address_text(connection.sock.getpeername())
        stream.unanswered = asyncio.get_running_loop().call_later(self.handshake_seconds, self._unanswered, connection)
        try:
            await stream.write(self._hello_write())
        except Closed as exc:
            raise LinkError(peer, f"its link closed at once ({exc})") from None
        return stream

    def _hello_write(self) -> bytes:
        """The first write on a connection, each way: who we are (the write's sender) and our epoch."""
        return encode(self.me, [Frame(NO_SESSION, 0, HELLO, 0, EPOCH_BYTES, self.epoch)])

    def _unanswered(self, connection: Connection) -> None:
        """A connection we dialled whose peer did not say hello in time (it died as we dialled): closed, so that no
        writer of ours stays on it."""
        stream = connection.stream
        if isinstance(stream, _Stream) and stream.epoch is None and not connection.closed:
            connection.close()

    async def _reach(self, peer: str, host: str) -> Connection:
        """A connection to ``peer``'s links whose certificate names it; a port that reaches another listener is
        forgotten (the next dial asks again)."""
        connection = await self._connect(peer, host, await self._port(peer))
        if self._secure and connection.certified != peer:
            connection.close()
            self._ports.pop(peer, None)
            raise LinkError(peer, f"its link presented a certificate for {connection.certified!r}, not for {peer!r}")
        return connection

    async def _port(self, peer: str) -> int:
        """The port ``peer``'s links listen on, as it says over its authenticated gRPC channel (kept)."""
        if peer not in self._ports:
            try:
                stub = self._channels.stub(peer, pb_grpc.LinkStub)
                reply = await stub.Port(pb.LinkPortRequest(), timeout=DIAL_SECONDS)
            except grpc.aio.AioRpcError as exc:
                unreachable = exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                if unreachable:
                    self._channels.forget(peer)
                why = f"cannot ask for its links' port ({exc.code().name}: {exc.details()})"
                raise LinkError(peer, why, unreachable) from None
            self._ports[peer] = reply.port
        return self._ports[peer]

    async def _connect(self, peer: str, host: str, port: int) -> Connection:
        try:
            sock = await link_transport.dial(host, port, self._context(server=False), peer, DIAL_SECONDS)
        except OSError as exc:  # refused, unreachable, or a TLS handshake that failed
            self._ports.pop(peer, None)
            self._channels.forget(peer)
            if isinstance(exc, ssl.SSLError):  # the listener's certificate refused, or ours by it
                self._handshake_failed(
                    f"{host}:{port}", f"link dialled to {peer}", handshake_failure(exc, DIAL_SECONDS)
                )
            raise LinkError(peer, f"cannot connect to its links at {host}:{port} ({exc})", unreachable=True) from None
        connection = self._connection(sock)
        connection.start()
        return connection

    @property
    def _secure(self) -> bool:
        return not self.identity.insecure

    def _context(self, server: bool) -> ssl.SSLContext | None:
        """This node's TLS context for a link (None under --insecure), made once."""
        if not self._secure:
            return None
        if server not in self._contexts:
            self._contexts[server] = self.identity.link_context(server)
        return self._contexts[server]

    def _connection(self, sock: socket.socket) -> Connection:
        keepalive = (self._limits.keepalive_time, self._limits.keepalive_timeout)
        connection = Connection(self, MAX_WRITE_BYTES, sock, keepalive, record_seconds=self.pending_seconds)
        if hasattr(socket, "TCP_USER_TIMEOUT"):  # a dead peer noticed while our writes wait for its ACKs too
            with contextlib.suppress(OSError):  # (keepalives probe only a quiet connection): as long as they take
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(sum(keepalive) * 1000))
        self._connections.add(connection)
        return connection

    def _register(self, connection: Connection, peer: str, dialler: str) -> _Stream:
        """``connection`` (dialled by ``dialler``) carries ``peer``'s frames (and ours to it) from now on."""
        connection.peer = peer
        stream = _Stream(connection.write, connection.close, dialler)
        connection.stream = stream
        self._streams.setdefault(peer, []).append(stream)
        self._of_peer.setdefault(peer, set()).add(connection)
        return stream

    # -- a simultaneous open: two connections of one pair settle on one ---------------------

    def _hello(self, peer: str, stream: _Stream, epoch: bytes) -> None:
        """The peer said its epoch on ``stream``. On a connection the peer dialled, another epoch than its other
        connections' is a peer that restarted: those are its old process's (dead, or about to be) and are closed, so
        that no writer of ours stays on one whose far end is gone (a host that died sends no FIN). (The answer to our
        own dial closes nothing: we dial a peer only when no connection to it is left.) Then the pair settles."""
        stream.epoch = epoch
        if stream.unanswered is not None:
            stream.unanswered.cancel()
            stream.unanswered = None
        if stream.dialler == peer:
            for connection in self._connections_of(peer):
                old = connection.stream
                if isinstance(old, _Stream) and old.epoch is not None and old.epoch != epoch:
                    log.info("%s restarted: its connections from before are closed", peer)
                    self._ports.pop(peer, None)
                    connection.close(f"{peer!r} restarted: this connection is its old process's")
        self._settle(peer)

    def _connections_of(self, peer: str) -> list[Connection]:
        """Every open connection of ``peer`` (retiring ones included): a few, whatever the hub's number of peers."""
        return list(self._of_peer.get(peer, ()))

    def _settle(self, peer: str) -> None:
        """When both ends dialled each other at once, the pair settles on the connection the lower name dialled
        (both ends decide alike, once each knows the other's epoch on both: a connection of another epoch is a
        restarted peer's, :meth:`_hello`, not a simultaneous open): the other is retired. A retired connection
        takes no new writer, but is read until it closes (a writer on it leaves between messages, never in the
        middle of one): the lower name, once no writer of its own is on it, says it writes no more there
        (:data:`RETIRE`), and the higher name, which dialled it, closes it with a farewell saying why once no writer
        of its own is on it either and it heard that. So no message in flight is lost (everything written before a
        RETIRE, or a farewell, arrives before it) and no write is cut by the close; and what comes on the kept
        connection waits until the retired one is done with (:meth:`_waits`), so messages keep their order."""
        streams = self._streams.get(peer, [])
        lower = min(self.me, peer)
        kept = {s.epoch for s in streams if s.dialler == lower and s.epoch is not None}
        for stream in [s for s in streams if s.dialler != lower and s.epoch in kept]:
            streams.remove(stream)
            stream.retiring = True
            log.debug("%s and %s dialled each other at once: the link %s dialled is kept", self.me, peer, lower)
            self._retire_step(peer, stream)

    def _waits(self, peer: str, connection: Connection) -> bool:
        """Whether writes on ``connection`` wait: it is one the lower name dialled, and the peer may still write on a
        connection the higher name dialled (the one a simultaneous open retires), which it wrote on first. Once
        ``connection`` ended, its held writes (they came whole) wait only for the other's hello: the peer may not
        have settled before the break, and then never retires the other (it goes on writing there)."""
        stream = connection.stream
        lower = min(self.me, peer)
        mine = self._of_peer.get(peer, ())  # ``connection`` is no longer among them once it ended
        if not isinstance(stream, _Stream) or stream.dialler != lower or len(mine) - (connection in mine) < 1:
            return False
        for other in self._connections_of(peer):
            was = other.stream
            if other is connection or not isinstance(was, _Stream) or was.dialler == lower:
                continue
            if was.epoch is None:
                return True  # its hello not heard yet: what the peer wrote on it first is yet to come
            if was.epoch == stream.epoch and not connection.closed and not (peer == lower and was.peer_retired):
                return True  # open, and the peer may write more on it (the higher name: until it closes it)
        return False

    def _hold_write(self, peer: str, connection: Connection, stream: _Stream, frames: list[Frame]) -> None:
        """Keep a write until the connection the peer wrote on before is done with. It is charged what holding it
        takes (``HELD_WRITE_COST``, and ``HELD_FRAME_COST`` plus its payload per frame) against the peer's one
        allowance, ``max_pending_bytes``, which its messages nobody asked for share (:meth:`_hold`)."""
        charge = HELD_WRITE_COST + sum(len(f.payload) + HELD_FRAME_COST for f in frames)
        pending = self._pending.get(peer, 0) + charge
        if pending > self.max_pending_bytes:
            raise LinkError(peer, f"more than {self.max_pending_bytes} bytes held for the order of its connections")
        self._pending[peer] = pending
        stream.held += 1
        if peer not in self._waiting:
            self._waiting[peer] = deque()
            self._overdue[peer] = asyncio.get_running_loop().call_later(self.pending_seconds, self._held_too_long, peer)
        self._waiting[peer].append((connection, frames, charge))

    def _held_too_long(self, peer: str) -> None:
        """``peer``'s writes have been held for ``pending_seconds``: the connections they wait for (ones the peer
        should have retired or closed by now: an honest peer takes a round trip) are closed as invalid, so the held
        writes are acted on, in order (:meth:`ended`)."""
        self._overdue.pop(peer, None)
        waiting = self._waiting.get(peer)
        if not waiting:
            return
        head = waiting[0][0]
        lower = min(self.me, peer)
        for other in self._connections_of(peer):
            stream = other.stream
            if other is not head and isinstance(stream, _Stream) and stream.dialler != lower:
                reason = f"writes waited {self.pending_seconds:g} s for this link, retired, to be done with"
                self.invalid(other, reason)
        if self._waiting.get(peer) and peer not in self._overdue:  # still held (not expected): looked at again
            self._overdue[peer] = asyncio.get_running_loop().call_later(self.pending_seconds, self._held_too_long, peer)

    def _release_waiting(self, peer: str) -> None:
        """Act on the writes held for ``peer`` that need wait no longer, in the order they came. A call from inside
        one of them (its RETIRE) returns at once: the outer call goes on with the rest of that write first."""
        if peer in self._releasing:
            return
        self._releasing.add(peer)
        try:
            waiting = self._waiting.get(peer)
            while waiting and not self._waits(peer, waiting[0][0]):
                connection, frames, charge = waiting.popleft()
                self._pending[peer] = max(self._pending.get(peer, 0) - charge, 0)
                if isinstance(connection.stream, _Stream):
                    connection.stream.held -= 1
                self._act(peer, connection, frames, held=True)
            if not waiting:
                self._waiting.pop(peer, None)
                overdue = self._overdue.pop(peer, None)
                if overdue is not None:
                    overdue.cancel()
        finally:
            self._releasing.discard(peer)

    def _retire_step(self, peer: str, stream: _Stream) -> None:
        """Move a retiring connection on once no writer of ours is on it: the lower name says RETIRE; the higher
        name, having heard it, closes the connection."""
        if not stream.retiring or stream.writers:
            return
        if stream.dialler == self.me:  # the higher name: it closes once the lower name writes no more here
            if stream.peer_retired:
                stream.cancel(f"{peer!r} and {self.me!r} dialled each other at once: the link {peer!r} dialled is kept")
        elif not stream.retire_sent:
            stream.retire_sent = True
            retire = asyncio.ensure_future(stream.write(encode(self.me, [Frame(NO_SESSION, 0, RETIRE, 0, 0, b"")])))
            retire.add_done_callback(retrieved)

    def _retired(self, peer: str, connection: Connection) -> None:
        """The peer writes no more on ``connection`` (a connection we dialled): closed once we write no more
        on it either."""
        stream = connection.stream
        if isinstance(stream, _Stream) and stream.dialler == self.me:
            stream.peer_retired = True
            self._retire_step(peer, stream)

    # -- listening: the peers' connections to us ---------------------------------------

    async def serve_beside(self, server: grpc.aio.Server, host: str, limits: Limits) -> None:
        """Listen for links on ``host`` (the gRPC server's; on ``listen_port``, else a free port) until ``server`` stops
        (:func:`services.server.start` calls this once the server runs)."""
        self._limits = limits
        self._context(server=True)  # a missing certificate fails the start, not the first link
        try:
            self._listener = link_transport.listening_socket(host, self.listen_port)
        except OSError as exc:
            where = f"{host or '*'}:{self.listen_port or 'a free port'}"
            refused = OSError(f"cannot listen for links on {where}: {exc.strerror or exc}")  # one line, no [Errno]
            refused.errno = exc.errno
            raise refused from None
        self.port = self._listener.getsockname()[1]
        self._accepter = asyncio.ensure_future(self._accept(self._listener))
        self._watcher = asyncio.ensure_future(self._stop_with(server))

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, address = await loop.sock_accept(listener)
            except OSError:  # out of descriptors, say: the peer dials again
                await asyncio.sleep(0.1)
                continue
            if len(self._admitting) + len(self._ungreeted) >= MAX_UNGREETED:  # many half-open: new ones closed
                log.debug("a link connection closed at once: %d wait for their hello", MAX_UNGREETED)
                sock.close()
                continue
            task = asyncio.ensure_future(self._admit(sock, _address_text(address)))
            self._admitting.add(task)
            task.add_done_callback(self._admitting.discard)

    async def _admit(self, sock: socket.socket, address: str) -> None:
        """A peer's new connection (from ``address``): its TLS handshake within ``handshake_seconds``, then its
        hello within as long again (:meth:`_greet`), or it is closed. A failed handshake is audited."""
        sock.setblocking(False)
        context = self._context(server=True)
        if context is not None:
            try:
                sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                await link_transport.handshake(sock, self.handshake_seconds)
            except (OSError, TimeoutError, asyncio.CancelledError) as exc:  # another CA, plaintext, too slow
                sock.close()
                if not isinstance(exc, asyncio.CancelledError):
                    log.debug("a link handshake failed: %s", exc)
                    why = handshake_failure(exc, self.handshake_seconds)
                    self._handshake_failed(address, self.listener_name, why)
                return
        connection = self._connection(sock)
        connection.max_record = FIRST_RECORD_BYTES  # until the hello came: no buffer for a stranger's long record
        self._accepted.add(connection)
        self._ungreeted.add(connection)
        timer = asyncio.get_running_loop().call_later(self.handshake_seconds, self._unannounced, connection)
        connection.stream = timer  # replaced by the stream once the hello came
        connection.start()

    def _handshake_failed(self, address: str, where: str, reason: str) -> None:
        """Audit a failed TLS handshake (at most ``HANDSHAKE_AUDITS`` a window; the count of the rest is audited
        when the window ends, so that a flood of them cannot fill the disk)."""
        throttle = self._failed_handshakes
        written = throttle.record(
            "handshake_failed", peer=address, listener=where, port=self.port or None, reason=reason
        )
        if not written and self._flushing is None:
            self._flushing = asyncio.get_running_loop().call_later(throttle.window_left, self._flush_handshakes)

    def _flush_handshakes(self) -> None:
        self._flushing = None
        self._failed_handshakes.flush()

    async def _stop_with(self, server: grpc.aio.Server) -> None:
        while await server.wait_for_termination(timeout=3600.0):  # with a timeout gRPC shields its own future
            pass  # from our cancellation (at close); without one, cancelling us would break the server's stop
        self._stop_listening()

    def _stop_listening(self) -> None:
        """Close the listener and every link a peer dialled to us (as the gRPC server's stop ended theirs)."""
        if self._accepter is not None:
            self._accepter.cancel()
            self._accepter = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.port = 0
        if self._flushing is not None:
            self._flushing.cancel()
            self._flush_handshakes()
        for task in list(self._admitting):
            task.cancel()
        for connection in list(self._accepted):
            connection.close()

    def _unannounced(self, connection: Connection) -> None:
        """A connection whose handshake and hello did not come in time (a half-open one)."""
        if connection.peer is None:
            audit.record("idle_closed", caller=connection.certified, seconds=self.handshake_seconds)
            connection.close()

    def _greet(self, connection: Connection, record: memoryview) -> str | None:
        """A dialer's first write: who it is (its certificate's name; under --insecure the name the write
        claims), if ``allowed`` takes it (None: the connection is refused and closed)."""
        try:
            claimed, frames = decode(record)
            first = next(frames, None)
        except FrameError as exc:
            self.invalid(connection, f"a malformed write ({exc})")
            return None
        who = connection.certified if self._secure else claimed
        if not who or not self._allowed(who) or (claimed and claimed != who):
            audit.record("denied", caller=who, message="link refused")
            connection.close(f"{who!r} may not open a link to {self.me!r}")
            return None
        if len(self._of_peer.get(who, ())) >= MAX_LINKS_PER_PEER and self._restarted(who, first):
            for old in self._connections_of(who):  # its old process's, dead (or about to be): no room left for it
                old.close(f"{who!r} restarted: this connection is its old process's")
        if len(self._of_peer.get(who, ())) >= MAX_LINKS_PER_PEER:  # retiring ones too (_settle)
            audit.record("denied", caller=who, message="link refused: too many links")
            connection.close(f"{who!r} has {MAX_LINKS_PER_PEER} links to {self.me!r} already")
            return None
        timer = connection.stream
        if isinstance(timer, asyncio.TimerHandle):
            timer.cancel()
        self._ungreeted.discard(connection)
        connection.max_record = MAX_WRITE_BYTES
        stream = self._register(connection, who, who)
        stream.hello = asyncio.ensure_future(connection.write(self._hello_write()))  # our epoch, before anything else
        stream.hello.add_done_callback(retrieved)
        return who

    def _restarted(self, peer: str, hello: Frame | None) -> bool:
        """Whether a new connection's ``hello`` says an epoch none of ``peer``'s open connections has (a restarted
        process: :meth:`_hello` would close them, once the connection is taken)."""
        if hello is None or hello.kind != HELLO or len(hello.payload) != EPOCH_BYTES:
            return False
        epoch = bytes(hello.payload)
        return all(isinstance(c.stream, _Stream) and c.stream.epoch != epoch for c in self._connections_of(peer))

    async def Port(self, request: pb.LinkPortRequest, context) -> pb.LinkPort:
        """Where this hub's links listen, for a node ``allowed`` to link (under --insecure: for anyone)."""
        who = caller(context, None, self.identity.insecure)
        if self._secure and not self._allowed(who):
            audit.record("denied", caller=who, message="link port refused")
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{who!r} may not link to {self.me!r}")
        if not self.port:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.me!r} has no link listener")
        return pb.LinkPort(port=self.port)

    # -- a connection's records (services.link_transport.Owner) -----------------------------

    def received(self, connection: Connection, record: memoryview) -> None:
        """One record from a connection: a farewell (the peer closes it, saying why) or a write, checked whole,
        then dispatched frame by frame."""
        reason = link_transport.farewell(record)
        if reason is not None:
            connection.farewell = reason
            connection.close()
            return
        peer = connection.peer or self._greet(connection, record)
        stream = connection.stream
        if peer is None or not isinstance(stream, _Stream):
            return
        try:
            try:
                sender, batch = decode(record)
                if sender and sender != peer:
                    raise LinkError(peer, f"a frame claims to come from {sender!r}")
                frames = list(batch)  # the whole write checked before any frame of it is acted on
            except FrameError as exc:
                raise LinkError(peer, f"a malformed write ({exc})") from None
            if stream.epoch is None:  # the peer's first write: its hello (a peer that says no epoch has the empty one)
                hello = frames[0] if frames and frames[0].kind == HELLO else None
                if hello is not None and len(hello.payload) != EPOCH_BYTES:
                    raise LinkError(peer, f"a hello whose epoch is not {EPOCH_BYTES} bytes")
                self._hello(peer, stream, bytes(hello.payload) if hello is not None else b"")
                frames = frames[1:] if hello is not None else frames
                self._release_waiting(peer)
            if not frames or connection.closed:
                return
            if stream.held or self._waits(peer, connection):  # behind its own held writes, or held itself
                self._hold_write(peer, connection, stream, frames)
                return
        except LinkError as exc:
            self.invalid(connection, exc.reason)
            return
        self._act(peer, connection, frames)

    def _act(self, peer: str, connection: Connection, frames: list[Frame], held: bool = False) -> None:
        """Act on one write's frames, in order (the link's own, or dispatched). A ``held`` write came whole before
        its connection ended, and is acted on unless the connection was refused (:meth:`invalid`)."""
        stream = connection.stream
        try:
            for frame in frames:
                if stream.refused if held and isinstance(stream, _Stream) else connection.closed:
                    break  # a handler (or a bound) closed it: the rest of the write is not acted on
                if frame.kind == RETIRE:
                    self._retired(peer, connection)
                    self._release_waiting(peer)
                    continue
                if frame.kind == HELLO:
                    raise LinkError(peer, "a second hello on one connection")
                self._dispatch(peer, frame)
        except LinkError as exc:
            self.invalid(connection, exc.reason)

    def linked(self, peer: str) -> bool:
        """Whether a link to ``peer`` is open."""
        return bool(self._streams.get(peer))

    def refuse(self, peer: str, reason: str) -> None:
        """Close every connection of ``peer`` for breaking a rule of the link's user (audited, the peer told why)."""
        for connection in [c for c in self._connections if c.peer == peer]:
            self.invalid(connection, reason)

    def invalid(self, connection: Connection, reason: str) -> None:
        """A peer sent what a link refuses: audited, and the connection closed, telling the peer why."""
        audit.record("invalid", caller=connection.peer or connection.certified, message=reason)
        peer = connection.peer
        if isinstance(connection.stream, _Stream):  # ended (run by the close) tells the node's sessions why
            connection.stream.refused, connection.stream.failure = True, reason
        connection.close(reason)
        if peer is not None and isinstance(connection.stream, _Stream):
            self._drop(peer, connection.stream, LinkError(peer, reason))

    def ended(self, connection: Connection, error: BaseException | None) -> None:
        """A connection is closed (by either end, or broken): whatever waits on its peer fails, unless another
        connection to the peer lives on."""
        self._connections.discard(connection)
        dialled = connection not in self._accepted
        self._accepted.discard(connection)
        self._ungreeted.discard(connection)
        if isinstance(connection.stream, asyncio.TimerHandle):
            connection.stream.cancel()
        peer = connection.peer
        if peer is None or not isinstance(connection.stream, _Stream):
            return
        mine = self._of_peer.get(peer)
        if mine is not None:
            mine.discard(connection)
            if not mine:
                del self._of_peer[peer]
        if connection.stream.refused:
            why = connection.stream.failure
        elif connection.farewell is not None:
            why = f"the peer closed the link: {connection.farewell}"
            if dialled and not connection.stream.retiring:  # perhaps refused at our hello: a stale port reaching
                self._ports.pop(peer, None)  # another hub (two hubs of one node share its certificate): asked again
        elif dialled and connection.stream.epoch is None and isinstance(error, ssl.SSLError) and self._secure:
            # TLS 1.3: the listener checks our certificate after our handshake is done; its refusal is an alert on
            # our first read (or write), before its hello
            reason = handshake_failure(error, self.handshake_seconds)
            self._handshake_failed(connection.stream.address, f"link dialled to {peer}", reason)
            refused = _certificate_alert(error)
            what = "its link refused our TLS handshake" if refused else "TLS failed before its hello"
            why = connection.stream.failure = f"{what}: {reason}"
        elif error is not None:
            why = f"link broke ({error})"
        else:
            why = "the link closed"
        if connection.stream.unanswered is not None:
            connection.stream.unanswered.cancel()
        self._drop(peer, connection.stream, LinkError(peer, why))
        self._release_waiting(peer)  # what waited for this connection to end

    def _drop(self, peer: str, stream: _Stream, error: LinkError | None = None) -> None:
        streams = self._streams.get(peer, [])
        if stream not in streams:
            return  # dropped already (by its writer and then its reader)
        streams.remove(stream)
        if not streams:
            error = error or LinkError(peer, "the link closed")
            self._streams.pop(peer, None)
            for (p, *_), box in list(self._inbox.items()):
                if p == peer and box.done is not None and not box.done.done():
                    _fail(box.done, error)
            for key, box in list(self._held.get(peer, {}).items()):  # its rest will never come: no stream carries it
                if box.assembler is None or not box.assembler.done:
                    self._forget(key, box)
            for callback in self._drop_callbacks:
                callback(peer, error)

    # -- receiving -----------------------------------------------------------------

    def _dispatch(self, peer: str, frame: Frame) -> None:
        sid = frame.session_id
        if self.is_closed(sid) and frame.kind not in self._handlers:  # a pushed kind: its handler decides
            return
        if frame.total > self.max_message_bytes:  # before it takes a box
            raise LinkError(peer, f"message of {frame.total} bytes exceeds {self.max_message_bytes}")
        key = (peer, sid, frame.round, frame.kind)
        box = self._inbox.get(key)
        if box is None:
            self._expire(peer)
            box = _Inbox()
            self._hold(peer, key, box, frame.total)  # nobody asked yet: charged, or refused before it is kept
            self._inbox[key] = box
        if box.refused:
            return
        if box.assembler is None:
            if 0 <= box.limit < frame.total:
                return self._refuse(key, box, frame.total)
            box.total = frame.total
            box.assembler = Assembler(frame.total, 1, max_length=self.max_message_bytes, sink=box.piece)
        if frame.total != box.total:
            raise LinkError(peer, "frames of one message disagree on its length")
        try:
            box.assembler.add(frame.payload, frame.offset)  # a view of the write gRPC handed over: no copy
        except StreamError as exc:
            raise LinkError(peer, f"frames out of order or beyond their message's length ({exc})") from None
        if box.assembler.done:
            self._complete(key, box)

    def _complete(self, key, box: _Inbox) -> None:
        handler = self._handlers.get(key[3])
        if handler is not None:
            self._forget(key, box)
            try:
                handler(key[0], key[1], key[2], memoryview(box.buffer if box.buffer is not None else bytearray()))
            except Exception:  # a bug in one handler: that message is lost, the link and its other sessions live on
                log.exception("the handler of a %r message from %s failed", key[3], key[0])
                audit.record("error", caller=key[0], session=key[1].hex(), message=f"a {key[3]!r} message failed")
            return
        fut = box.future()
        if not fut.done():
            fut.set_result(
                memoryview(box.buffer if box.buffer is not None else bytearray()) if box.sink is None else None
            )

    def _hold(self, peer: str, key: tuple, box: _Inbox, total: int) -> None:
        """Charge a message nobody asked for against ``peer``: ``HELD_COST`` plus its announced length (what
        holding it may take, whatever has arrived yet), and at most ``max_held_messages`` of them."""
        held = self._held.setdefault(peer, OrderedDict())
        if len(held) >= self.max_held_messages:
            raise LinkError(peer, f"more than {self.max_held_messages} messages sent ahead of their sessions")
        charge = HELD_COST + total
        pending = self._pending.get(peer, 0) + charge
        if pending > self.max_pending_bytes:
            raise LinkError(peer, f"more than {self.max_pending_bytes} bytes sent ahead of their sessions")
        self._pending[peer] = pending
        box.held, box.since = charge, time.monotonic()
        held[key] = box

    def _expire(self, peer: str) -> None:
        """Forget a peer's messages nobody asked for within ``pending_seconds`` (the oldest first: the cost is
        the number forgotten, not the number held)."""
        held = self._held.get(peer)
        old = time.monotonic() - self.pending_seconds
        while held:
            key, box = next(iter(held.items()))
            if box.since >= old:
                break
            self._forget(key, box)

    def _forget(self, key, box: _Inbox) -> None:
        self._inbox.pop(key, None)
        self._release(key, box)

    def _release(self, key: tuple, box: _Inbox) -> None:
        """Someone asked for the message (or it is dropped): its bytes no longer count as pending."""
        if box.held:
            peer = key[0]
            self._pending[peer] = max(self._pending.get(peer, 0) - box.held, 0)
            box.held = 0
            held = self._held.get(peer)
            if held is not None:
                held.pop(key, None)

    def _refuse(self, key: tuple, box: _Inbox, total: int) -> None:
        """A message announced longer than its asker takes: failed at its first frame, its bytes dropped."""
        box.refused, box.buffer, box.assembler = True, None, None
        self._release(key, box)
        fut = box.future()
        if not fut.done():
            _fail(fut, TooLong(key[0], total, box.limit))

    async def receive(
        self,
        peer: str,
        session: bytes,
        round: int,
        kind: str,
        timeout: float | None = None,
        max_bytes: int | None = None,
    ) -> memoryview:
        """The message ``peer`` sent under this tag (waiting for it up to ``timeout`` s; LinkError if
        the link to ``peer`` breaks meanwhile, or if the message is longer than ``max_bytes``, as soon as
        its first frame says so: TooLong). Each message is received once."""
        key = (peer, session, round, kind)
        box = self._inbox.setdefault(key, _Inbox())
        self._release(key, box)
        if max_bytes is not None:
            box.limit = max_bytes
            if box.total > max_bytes:
                self._refuse(key, box, box.total)
        fut = box.future()
        if not fut.done() and not self._streams.get(peer) and peer not in self._dialing:
            await self._stream(peer)  # so a peer that cannot be reached fails the receive at once
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        finally:
            if self._inbox.get(key) is box and fut.done() and not box.refused:  # refused: its frames dropped
                self._inbox.pop(key, None)

    async def expect(
        self,
        peer: str,
        session: bytes,
        round: int,
        kind: str,
        sink: Callable[[int, memoryview], None],
        timeout: float | None = None,
    ) -> int:
        """Hand the pieces of ``peer``'s message to ``sink(offset, bytes)`` as they arrive (pieces that
        came earlier first); returns the message's length once it is complete."""
        key = (peer, session, round, kind)
        box = self._inbox.setdefault(key, _Inbox())
        self._release(key, box)
        if box.buffer is not None and box.filled:
            sink(0, memoryview(box.buffer)[: box.filled])  # the pieces that came before the ask
        box.buffer = None
        box.sink = sink
        fut = box.future()
        if box.assembler is not None and box.assembler.done and not fut.done():
            fut.set_result(None)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
            return box.total
        finally:
            if self._inbox.get(key) is box and fut.done():
                self._inbox.pop(key, None)

    def is_closed(self, session: bytes) -> bool:
        """Whether ``session`` was closed here (among the last ``CLOSED_REMEMBERED``)."""
        return session in self._closed

    def close_session(self, session: bytes) -> None:
        """Drop everything held for ``session`` (and its droppable messages not yet written); its later
        frames are ignored."""
        self._closed[session] = None
        while len(self._closed) > CLOSED_REMEMBERED:
            self._closed.popitem(last=False)
        for key, box in list(self._inbox.items()):
            if key[1] == session:
                if box.done is not None and not box.done.done():
                    _fail(box.done, LinkError(key[0], "session closed"))
                self._forget(key, box)
        for peer, out in self._outboxes.items():
            dropped = [m for m in out.messages if m.droppable and m.session == session]
            for message in dropped:
                _unqueue(out, message)
                if message.done.done():
                    continue
                if message.started:  # a frame of it is in the write under way, read from the poster's buffer
                    out.dropped.append((message.done, LinkError(peer, "session closed")))
                else:
                    _fail(message.done, LinkError(peer, "session closed"))

    async def close(self) -> None:
        """End every link of this hub (ours and the peers' connections to it), as a process exit would. Its
        listener lives as long as its gRPC server (peers may link again while the node serves, as they could
        call it), and stops with it."""
        for peer, box in self._outboxes.items():
            if box.writer is not None:
                box.writer.cancel()  # one cancelled before it ran never runs its own clean-up: done here
                box.writer = None
            self._fail_outbox(box, [], LinkError(peer, "the link closed"))
        self._streams.clear()  # before the first await: a caller cancelled meanwhile leaves no stale stream
        self._waiting.clear()
        for overdue in self._overdue.values():
            overdue.cancel()
        self._overdue.clear()
        self._of_peer.clear()
        for dialing in self._dialing.values():
            dialing.cancel()
        for connection in list(self._connections):
            connection.close()
        await self._channels.close()


def _certificate_alert(error: ssl.SSLError) -> bool:
    """Whether a TLS error is the peer's alert refusing our certificate (not a corrupted record, say)."""
    reason = error.reason or ""
    return "CERTIFICATE" in reason or reason in ("TLSV1_ALERT_UNKNOWN_CA", "TLSV1_ALERT_DECRYPT_ERROR")


def _address_text(address) -> str:
    """A socket address as ``host:port`` (``[host]:port`` for IPv6)."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


def _size(frame: Frame) -> int:
    """What ``frame`` adds to a write: its payload, header, session id and kind."""
    return len(frame.payload) + _FRAME.size + len(frame.session_id) + len(frame.kind) * 4  # a kind: <= 4 bytes a char


def _given_up(box: _Outbox, message: _Message, done: asyncio.Future) -> None:
    """A message's poster cancelled its future: not written, unless a frame of it already was. Then a droppable
    message's other frames are dropped, as :meth:`Hub.close_session` drops them (its session is over; the receiver
    never takes a message whose frames do not cover it as whole), and any other's are copied now, so the caller may
    change its buffer once the future is done, as the module doc says."""
    if not done.cancelled():
        return
    if message.started and message.droppable:  # nothing more of it is made final (prepare) or copied
        _unqueue(box, message)
    elif message.started:
        if message.prepare is not None and message.frames:  # copied final: its payload made so to its end first
            message.prepare(message.frames[-1].offset + len(message.frames[-1].payload))
        message.frames[:] = [f._replace(payload=bytes(f.payload)) for f in message.frames]
    else:
        _unqueue(box, message)


def _fail_dropped(box: _Outbox) -> None:
    """Fail the messages ``close_session`` dropped while a frame of theirs was in the write that just ended."""
    dropped, box.dropped = box.dropped, []
    for done, error in dropped:
        if not done.done():
            _fail(done, error)


def _unqueue(box: _Outbox, message: _Message) -> None:
    """Take a message out of its outbox (its remaining frames are not written)."""
    if message in box.messages:
        box.messages.remove(message)
        box.queued -= message.size


def _fail(future: asyncio.Future, error: LinkError) -> None:
    """Fail a receive's future; whoever awaits it gets ``error``, and if nobody does any more (its receive
    was cancelled) asyncio does not log it as never retrieved (at garbage collection, at any moment)."""
    future.set_exception(error)
    future.exception()  # marks it retrieved; awaiting it still raises
