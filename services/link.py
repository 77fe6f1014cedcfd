"""One long-lived, mutually authenticated stream per pair of nodes, carrying the messages of many sessions.

A :class:`Hub` is a node's end of every link. ``await hub.send(peer, session,
round, kind, payload)`` delivers an opaque message (bytes, or a numpy array
sent as its raw bytes) to ``peer``; ``await hub.receive(peer, session, round,
kind)`` returns the message ``peer`` sent under that tag, whenever it
arrived (before or after the call). Messages are cut into frames of at most
``chunk_bytes`` and reassembled by one assembler that checks every offset
and length; ``hub.expect(..., sink)`` instead hands each piece to ``sink``
as it arrives (a running sum folds the bytes in with no assembly buffer).

Links: the first ``send`` to a peer opens the gRPC stream ``Link/Open`` on
one channel to it (one TLS handshake) and keeps it; a peer's frames may come
on the stream this node opened or on one the peer opened, whichever exists.
Who sent a frame is the certificate's name of the stream's other end, never
a field of the write (a ``sender`` name that disagrees is refused), and a
hub accepts streams only from the names ``allowed`` says.

Frames are raw bytes, not protobuf messages: ``Link/Open`` has no
serializers, and a write is :func:`encode`'s layout (the sender's name, then
each frame's header, session id, kind and payload), read back by
:func:`decode` as views of the bytes gRPC delivered. A payload is copied once
on its way out and not at all before a sink; a malformed write closes the
stream as INVALID_ARGUMENT.

Sending: ``hub.post(...)`` queues a message for a peer and returns a future
that is done once it is written (``send`` awaits it). One writer per peer
drains the queue in order; whatever was queued meanwhile (the messages of
every session in flight to that peer) goes out in one gRPC write of up to
``chunk_bytes``, so the per-write cost of gRPC is paid per batch, not per
message. A payload is read when its frame is written, not when it is posted:
it must not change until its future is done (a message given up after its
first frame was written keeps a copy of the rest).

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
arrived: an empty message is not free); beyond either bound the peer's
stream is closed. A session id is 16 bytes and a kind at most 32 (a frame
otherwise is malformed; a ``post`` otherwise raises LinkError), and a
write is checked whole before any of its frames is acted on; and
``close_session`` drops everything of a session and ignores its later
frames. A stream that breaks fails the receives waiting on that peer, so a
protocol round sees a dropped peer at once rather than at its deadline; and
``hub.on_drop(callback)`` tells ``callback(peer, error)`` when the last
stream to a peer is gone (for a node whose sessions wait on pushed
messages, not on receives). A pushed-kind handler that raises loses that
one message (logged, audited as an error), never the link. At most
``max_queued_bytes`` wait to be written to one peer (a post beyond that
fails at once: a slow or stuck peer makes its senders fail, not queue);
a message whose poster gave up before it was written is not written, and
``droppable`` ones (a session's shares and partial sums) go with their
session's ``close_session``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import grpc
import numpy as np

from mpcdp.protocol.spec import SESSION_ID_BYTES
from services import audit
from services.channels import Channels
from services.streams import Assembler, StreamError, as_bytes, chunks
from services.tls import Identity, caller

log = logging.getLogger("mpcdp.link")
CHUNK_BYTES = 1 << 20
MAX_MESSAGE_BYTES = 1 << 27  # 128 MiB: a vector of 2^24 ring elements
MAX_PENDING_BYTES = 1 << 28  # per peer, of messages nobody asked for yet
MAX_QUEUED_BYTES = 1 << 29  # per peer, of messages posted and not yet written (a slow or stuck peer)
PENDING_SECONDS = 120.0
HELD_COST = 256  # bytes charged per message nobody asked for, on top of its announced length: its box and key
MAX_HELD_MESSAGES = 4096  # per peer, of messages nobody asked for yet
MAX_KIND_BYTES = 32  # a kind's UTF-8 (every protocol's kinds are short names)
CLOSED_REMEMBERED = 100_000
OPTIONS = [("grpc.max_receive_message_length", 4 * CHUNK_BYTES), ("grpc.max_send_message_length", 4 * CHUNK_BYTES)]

SERVICE = "mpcdp.v1.Link"
METHOD = f"/{SERVICE}/Open"
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
    """One write of a link: ``sender``'s name, then each frame's header, session id, kind and payload (the one
    copy of the payload on the way out; gRPC carries the result as it is, with no protobuf in between)."""
    name = sender.encode()
    parts: list[bytes | memoryview] = [_WRITE.pack(VERSION, len(name)), name]
    for f in frames:
        kind = f.kind.encode()
        parts += [_FRAME.pack(len(f.session_id), len(kind), f.round, f.offset, f.total, len(f.payload)), f.session_id]
        parts += [kind, f.payload]
    return b"".join(parts)


class FrameError(ValueError):
    """A write that is not of :func:`encode`'s form."""


def decode(data: bytes) -> tuple[str, Iterator[Frame]]:
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
    while at < end:
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
    ``unreachable``: the transport could not reach the peer (gRPC UNAVAILABLE)."""

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
    """One open stream to a peer: either our call's write, or the servicer context's."""

    def __init__(self, write, cancel):
        self._write = write
        self._cancel = cancel

    async def write(self, data: bytes) -> None:
        """Write one :func:`encode`-d write."""
        await self._write(data)

    def cancel(self) -> None:
        self._cancel()


@dataclass
class _Message:
    """One message queued for a peer: its frames still to write, the future done once they are written."""

    frames: list[Frame]
    done: asyncio.Future
    session: bytes
    droppable: bool  # bulk data of its session: dropped when the session closes
    started: bool = False  # a frame of it was handed to a write

    @property
    def size(self) -> int:
        return sum(len(f.payload) for f in self.frames)


@dataclass
class _Outbox:
    """The messages queued for one peer, their bytes, and the task writing them."""

    messages: deque[_Message] = field(default_factory=deque)
    queued: int = 0  # payload bytes of the frames still to write
    writer: asyncio.Task | None = None


class Hub:
    """A node's links to its peers (see the module doc). ``address(peer)`` is where ``peer`` listens."""

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
    ):
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
        self._streams: dict[str, list[_Stream]] = {}
        self._dialing: dict[str, asyncio.Future] = {}
        self._channels = Channels(identity, address, OPTIONS)
        self._readers: set[asyncio.Task] = set()
        self._serving: set[asyncio.Task] = set()  # the Open calls peers made to this hub
        self._inbox: dict[tuple[str, bytes, int, str], _Inbox] = {}
        self._pending: dict[str, int] = {}  # bytes held per peer for messages nobody asked for
        self._held: dict[str, OrderedDict[tuple, _Inbox]] = {}  # per peer, those messages in arrival order
        self._closed: OrderedDict[bytes, None] = OrderedDict()
        self._handlers: dict[str, Callable[[str, bytes, int, memoryview], None]] = {}
        self._outboxes: dict[str, _Outbox] = {}
        self._drop_callbacks: list[Callable[[str, LinkError], None]] = []

    def service(self) -> tuple:
        """What :func:`services.server.start` needs to serve this hub's end of the links."""
        return (add_to_server, self, SERVICE)

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
        self, peer: str, session: bytes, round: int, kind: str, payload, droppable: bool = False
    ) -> asyncio.Future:
        """Queue one message for ``peer``; the future is done once it is written (LinkError if the link
        cannot carry it). Messages to one peer are written in the order they were posted. A message whose
        future is cancelled (its poster gave up) before its first frame is written is not written; a
        ``droppable`` one (bulk data of its session) is dropped, its future failed, by ``close_session``.
        When more than ``max_queued_bytes`` wait for the peer (slow or stuck), the future fails at once."""
        if len(session) != SESSION_ID_BYTES or len(kind.encode()) > MAX_KIND_BYTES or not 0 <= round < 1 << 32:
            raise LinkError(
                peer, f"a session id is {SESSION_ID_BYTES} bytes, a kind at most {MAX_KIND_BYTES}, a round below 2**32"
            )
        data = as_bytes(payload)
        total = len(data)
        if total > self.max_message_bytes:
            raise LinkError(peer, f"message of {total} bytes exceeds the link's {self.max_message_bytes}")
        box = self._outboxes.setdefault(peer, _Outbox())
        done = asyncio.get_running_loop().create_future()
        if box.messages and box.queued + total > self.max_queued_bytes:
            _fail(done, LinkError(peer, f"more than {self.max_queued_bytes} bytes wait to be written to this peer"))
            return done
        frames = [
            Frame(session, round, kind, offset, total, piece) for offset, piece in chunks(data, 1, self.chunk_bytes)
        ]
        message = _Message(frames, done, session, droppable)
        box.messages.append(message)
        box.queued += total
        done.add_done_callback(functools.partial(_given_up, box, message))
        if box.writer is None or box.writer.done():
            box.writer = asyncio.ensure_future(self._write(peer, box))
        return done

    async def _write(self, peer: str, box: _Outbox) -> None:
        """Write ``box``'s messages in order, as many as fit ``chunk_bytes`` per gRPC write."""
        stream: _Stream | None = None
        written: list[asyncio.Future] = []
        try:
            stream = await self._stream(peer)
            await asyncio.sleep(0)  # one turn of the loop: what other sessions post meanwhile joins this write
            while box.messages:
                batch: list[Frame] = []
                written, size = [], 0
                while box.messages and (not batch or size + len(box.messages[0].frames[0].payload) <= self.chunk_bytes):
                    message = box.messages[0]
                    if message.done.cancelled() and not message.started:  # its poster gave up: not written
                        _unqueue(box, message)
                        continue
                    message.started = True
                    frame = message.frames.pop(0)
                    batch.append(frame)
                    size += len(frame.payload)
                    box.queued -= len(frame.payload)
                    if not message.frames:
                        box.messages.popleft()
                        written.append(message.done)
                if not batch:
                    break
                await stream.write(encode(self.me, batch))
                for done in written:
                    if not done.done():
                        done.set_result(None)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError, LinkError) as exc:
            if not isinstance(exc, LinkError):
                exc = _broken(peer, exc, "link broke while sending")
                if stream is not None:
                    self._drop(peer, stream, exc)
            self._fail_outbox(box, written, exc)
        except asyncio.CancelledError:
            self._fail_outbox(box, written, LinkError(peer, "the link closed"))
            raise
        finally:
            box.writer = None

    @staticmethod
    def _fail_outbox(box: _Outbox, written: list, error: LinkError) -> None:
        """Fail every message of the batch that failed and every message still queued in ``box``."""
        pending = written + [m.done for m in box.messages]
        box.messages.clear()
        box.queued = 0
        for done in pending:
            if not done.done():
                _fail(done, error)

    async def _stream(self, peer: str) -> _Stream:
        streams = self._streams.get(peer)
        if streams:
            return streams[-1]
        if peer not in self._dialing:
            self._dialing[peer] = asyncio.ensure_future(self._dial(peer))
        try:
            return await asyncio.shield(self._dialing[peer])
        finally:
            if self._dialing.get(peer) is not None and self._dialing[peer].done():
                self._dialing.pop(peer, None)

    async def _dial(self, peer: str) -> _Stream:
        try:
            channel = self._channels.channel(peer)
        except Exception as exc:  # an unknown name: the federation file's own error says which
            raise LinkError(peer, str(exc)) from None
        call = open_call(channel)
        stream = _Stream(call.write, call.cancel)
        self._streams.setdefault(peer, []).append(stream)
        task = asyncio.ensure_future(self._read(peer, stream, call))
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)
        return stream

    async def _read(self, peer: str, stream: _Stream, frames) -> str | None:
        """Dispatch a stream's frames until it ends; then fail whatever waits on ``peer``. Returns
        why the peer's frames were refused, if they were."""
        error, refused = LinkError(peer, "the link closed"), None
        try:
            async for data in frames:
                try:
                    sender, batch = decode(data)
                    if sender and sender != peer:
                        raise LinkError(peer, f"a frame claims to come from {sender!r}")
                    for frame in list(batch):  # the whole write checked before any frame of it is acted on
                        self._dispatch(peer, frame)
                except FrameError as exc:
                    raise LinkError(peer, f"a malformed write ({exc})") from None
        except grpc.aio.AioRpcError as exc:
            error = _broken(peer, exc, "link broke")
            if error.unreachable:
                self._channels.forget(peer)
        except LinkError as exc:
            error, refused = exc, exc.reason
            stream.cancel()
        except asyncio.CancelledError:
            pass
        finally:
            self._drop(peer, stream, error)
        return refused

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

    # -- the servicer: a peer's stream to us ----------------------------------------

    async def Open(self, request_iterator, context):
        first = await context.read()
        if first is grpc.aio.EOF:
            return
        try:
            claimed, _ = decode(first)
        except FrameError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"a malformed write ({exc})")
        who = caller(context, claimed, self.identity.insecure)
        if not self._allowed(who) or (claimed and claimed != who):
            audit.record("denied", caller=who, message="link refused")
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{who!r} may not open a link to {self.me!r}")
        stream = _Stream(context.write, lambda: None)
        self._streams.setdefault(who, []).append(stream)
        serving = asyncio.current_task()
        if serving is not None:  # so that close() ends the peers' streams too, as a process exit would
            self._serving.add(serving)
            serving.add_done_callback(self._serving.discard)

        async def frames():
            yield first
            while (frame := await context.read()) is not grpc.aio.EOF:
                yield frame

        refused = await self._read(who, stream, frames())
        if refused:
            audit.record("invalid", caller=who, message=refused)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refused)

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
                if not message.done.done():
                    _fail(message.done, LinkError(peer, "session closed"))

    async def close(self) -> None:
        """End every link of this hub (ours and the peers' streams to it), as a process exit would."""
        for peer, box in self._outboxes.items():
            if box.writer is not None:
                box.writer.cancel()  # one cancelled before it ran never runs its own clean-up: done here
                box.writer = None
            self._fail_outbox(box, [], LinkError(peer, "the link closed"))
        for streams in list(self._streams.values()):
            for s in list(streams):
                s.cancel()
        for task in [*self._readers, *self._serving]:
            task.cancel()
        self._streams.clear()  # before the first await: a caller cancelled meanwhile leaves no stale stream
        await self._channels.close()


def open_call(channel: grpc.aio.Channel):
    """A new ``Link/Open`` stream on ``channel``: writes and reads are :func:`encode`-d bytes, which gRPC carries
    as they are (no serializer)."""
    return channel.stream_stream(METHOD, _registered_method=True)()


def add_to_server(hub: Hub, server: grpc.aio.Server) -> None:
    """Serve ``hub``'s end of the links on ``server`` (the ``add_..._to_server`` of :func:`services.server.start`):
    the ``Link/Open`` method with no serializers, so a write reaches :meth:`Hub.Open` as the bytes sent."""
    handlers = {"Open": grpc.stream_stream_rpc_method_handler(hub.Open)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)  # as generated code does: matched in gRPC's core


def _given_up(box: _Outbox, message: _Message, done: asyncio.Future) -> None:
    """A message's poster cancelled its future: not written, unless a frame of it already was; then its other
    frames are copied now, so the caller may change its buffer once the future is done, as the module doc says."""
    if not done.cancelled():
        return
    if message.started:
        message.frames[:] = [f._replace(payload=bytes(f.payload)) for f in message.frames]
    else:
        _unqueue(box, message)


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


def _broken(peer: str, exc, what: str) -> LinkError:
    """The LinkError for a stream that failed with ``exc``."""
    unreachable = isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE
    return LinkError(peer, f"{what} ({_describe(exc)})", unreachable)


def _describe(exc) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return "stream closed"
