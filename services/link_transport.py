"""The carrier of the federation links: length-prefixed records on TLS connections, each read into one buffer.

A link (:mod:`services.link`) is one TCP connection, mutually authenticated by TLS 1.3 with the
federation's certificates (:meth:`services.tls.Identity.link_context`; plain TCP under ``--insecure``).
On it each side sends records: a 4-byte little-endian length, then that many bytes. A record is either
a write of :func:`services.link.encode`'s form (its first byte is its format, 1) or a farewell
(``FAREWELL``, then why the sender closes the connection, UTF-8), so a refused peer learns why.

Reading (:class:`Connection`): each connection is a non-blocking ``ssl.SSLSocket`` (a plain socket under
``--insecure``) watched by the event loop (``add_reader``), not asyncio's SSL transport: OpenSSL reads
the socket itself and decrypts straight into the buffer the connection offers (to the socket's own SSL
object's ``read``: ssl.py's ``recv_into`` costs two Python frames per 16 KiB TLS record; a ragged end is
read as the end, as there), where asyncio's transport copies every byte into a memory BIO first
(measured: more CPU per MiB on both ends, benchmarks/link_transport.py). An end in the middle of a record
(ragged or not) is reported as an error: a truncation, not the peer's orderly close. Small records are read into a
staging buffer and handed on as copies of their bytes; a record too long for it gets one buffer of its
own, sized from its prefix once the prefix is checked against the link's limit (``max_record``: a longer
prefix closes the connection before anything is allocated), and the rest of it is decrypted into that
buffer directly; one not complete within ``record_seconds`` closes the connection (its buffer is not held
for a peer that stopped half-way). Nothing is handed on after a connection is closed. Writing: a record
is given as one buffer or as a list of buffers (a write's headers and its payloads where they lie:
nothing joins them into one copy first); its prefix and its short pieces go out joined, its long pieces
in pieces of at most ``WRITE_PIECE_BYTES`` from their own memory, each ``send`` encrypting and writing
it; a writer waits while the socket is full (TLS then takes the same bytes again), and one record is
written at a time.

Connections are kept alive by TCP keepalives (a peer that vanished is noticed within about
``keepalive_time + keepalive_timeout`` seconds, as the gRPC servers' HTTP/2 pings did); a listener
closes a connection whose TLS handshake takes longer than its handshake timeout (:func:`handshake`),
and the link closes one whose first record does not follow in as long again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from typing import Protocol

import numpy as np

from services.tls import certificate_name

PREFIX = struct.Struct("<I")
FAREWELL = 0  # a record's first byte: a farewell (a write's is its format version, 1)
STAGING_BYTES = 64 << 10
READ_TURN_BYTES = 256 << 10  # read at most about this much per turn of the event loop (less than a longest write:
# the records, so the frames, one connection hands on per turn are bounded; a long record takes several turns)
WRITE_PIECE_BYTES = 256 << 10  # what TLS encrypts at once: a 1 MiB piece costs the sender about twice the CPU
SMALL_PIECE_BYTES = 16 << 10  # a record's pieces up to this long are sent joined with their neighbours (one TLS
# record, one send), longer ones from where they are
MAX_FAREWELL_BYTES = 1000


Buffer = bytes | bytearray | memoryview


class Closed(ConnectionError):
    """A write on a connection that is closed."""


class Owner(Protocol):
    """What a :class:`Connection` tells: each record, and its end (once)."""

    def received(self, connection: Connection, record: memoryview) -> None: ...

    def invalid(self, connection: Connection, reason: str) -> None: ...

    def ended(self, connection: Connection, error: BaseException | None) -> None: ...


def allocate(n: int) -> memoryview:
    """An uninitialised buffer of ``n`` bytes (zeroing megabytes that are overwritten at once costs more)."""
    return np.empty(n, np.uint8).data.cast("B")


class Connection:
    """One link connection (module doc) on a connected, non-blocking socket (an ``ssl.SSLSocket`` whose handshake
    is done, or a plain one). ``peer`` is the name of the node at its other end once known; ``certified`` the
    name its certificate gives (empty without TLS). :meth:`start` begins reading."""

    def __init__(
        self,
        owner: Owner,
        max_record: int,
        sock: socket.socket,
        keepalive: tuple[float, float] | None,
        record_seconds: float | None = None,
    ):
        self.owner = owner
        self.max_record = max_record  # the longest record taken (a link may change it between records)
        self.record_seconds = record_seconds  # a long record not complete within this is refused (None: no bound)
        self.sock = sock
        self.peer: str | None = None
        self.certified = certificate_name(sock if isinstance(sock, ssl.SSLSocket) else None)
        self.farewell: str | None = None  # the reason the other end gave for closing, if it did
        self.stream: object | None = None  # what the link registered for this connection
        self.closed = False
        self._ended = False
        self._loop = asyncio.get_running_loop()
        self._fd = sock.fileno()
        # TLS: OpenSSL's read on the socket's own SSL object, not ssl.py's recv_into (two Python frames and four
        # checks per TLS record, and a long record is 64 TLS records per MiB); None: a plain socket's recv_into
        self._tls = getattr(sock, "_sslobj", None) if isinstance(sock, ssl.SSLSocket) else None
        self._staging = bytearray(STAGING_BYTES)
        self._view = memoryview(self._staging)
        self._start = self._end = 0  # unread bytes of the staging buffer
        self._body: memoryview | None = None  # a long record being read into its own buffer
        self._filled = 0
        self._slow: asyncio.TimerHandle | None = None  # refuses the long record being read if it takes too long
        self._writing = asyncio.Lock()
        self._writable: asyncio.Future | None = None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if keepalive is not None:
            _keep_alive(sock, *keepalive)

    def start(self) -> None:
        self._loop.add_reader(self._fd, self._readable)

    # -- reading ---------------------------------------------------------------------

    def _readable(self) -> None:
        """Read what the socket has (TLS decrypting straight into the long record's own buffer, or into the
        staging buffer's free space), up to ``READ_TURN_BYTES`` per turn of the loop. A long record's bytes
        take no call per read (a TLS record: 16 KiB) beyond the read itself."""
        taken = 0
        tls = self._tls
        while not self.closed:
            body = self._body
            buffer = body[self._filled :] if body is not None else self._staging_space()
            try:
                n = tls.read(len(buffer), buffer) if tls is not None else self.sock.recv_into(buffer)
            except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                return
            except ssl.SSLEOFError:  # the peer closed without TLS's close_notify: the end (as ssl.py reads it)
                n = 0
            except ssl.SSLWantWriteError:  # TLS must send first (a key update, the socket full): try again soon
                self._loop.remove_reader(self._fd)  # (not add_writer: a waiting writer holds that slot)
                self._loop.call_later(0.001, self._resume_reading)
                return
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError: a broken or forged record
                self._lost(exc)
                return
            except Exception as exc:  # unexpected (the SSL object's read is private: a CPython change): the connection
                self._lost(exc)  # ends with it, rather than the loop calling this reader again at once, forever
                return
            if n == 0:
                self._lost(self._cut())
                return
            taken += n
            if body is None:
                self._end += n
                self._records()
            else:
                self._filled += n
                if self._filled == len(body):
                    self._body = None
                    self._stop_timer()
                    self.owner.received(self, body)
            if taken >= READ_TURN_BYTES:  # others' turn; what TLS holds decrypted is read at the next one
                self._loop.call_soon(self._readable)
                return

    def _cut(self) -> ConnectionError | None:
        """How the peer's end of the stream is reported: at a record boundary, as an orderly end (None); with a
        record half read (TLS's close_notify or not), as the truncation it is."""
        if self._body is not None:
            return ConnectionError(f"the connection ended {self._filled} bytes into a record of {len(self._body)}")
        if self._end > self._start:
            return ConnectionError(f"the connection ended {self._end - self._start} bytes into a record")
        return None

    def _resume_reading(self) -> None:
        if not self.closed:
            self._loop.add_reader(self._fd, self._readable)
            self._readable()

    def _staging_space(self) -> memoryview:
        """The staging buffer's free space (the unread bytes moved to its front first)."""
        if self._start:
            n = self._end - self._start
            self._view[:n] = self._view[self._start : self._end]
            self._start, self._end = 0, n
        return self._view[self._end :]

    def _records(self) -> None:
        """Hand on every whole record in the staging buffer; a long one starts its own buffer."""
        while not self.closed and self._end - self._start >= PREFIX.size:
            (n,) = PREFIX.unpack_from(self._view, self._start)
            if n > self.max_record:  # before anything is allocated for it
                self.owner.invalid(self, f"a record of {n} bytes exceeds the link's {self.max_record}")
                return
            at = self._start + PREFIX.size
            if self._end - at >= n:
                self._start = at + n
                self.owner.received(self, memoryview(bytes(self._view[at : at + n])))  # a copy: the buffer is reused
            elif PREFIX.size + n <= len(self._staging):
                return  # the rest comes into the staging buffer
            else:
                have = self._end - at
                self._body = allocate(n)
                self._body[:have] = self._view[at : self._end]
                self._filled = have
                self._start = self._end = 0
                if self.record_seconds is not None:
                    self._slow = self._loop.call_later(self.record_seconds, self._too_slow)
                return
        if self._start == self._end:
            self._start = self._end = 0

    def _too_slow(self) -> None:
        """A long record still half read after ``record_seconds``: its buffer is not held any longer."""
        self._slow = None
        if self._body is not None and not self.closed:
            seconds = self.record_seconds or 0.0
            self.owner.invalid(self, f"a record of {len(self._body)} bytes not complete within {seconds:g} s")

    def _stop_timer(self) -> None:
        if self._slow is not None:
            self._slow.cancel()
            self._slow = None

    # -- writing ---------------------------------------------------------------------

    async def write(self, data: Buffer | list[Buffer] | tuple[Buffer, ...]) -> None:
        """Send one record: ``data``, or the concatenation of a list or tuple of buffers (sent where they are, never
        joined into one: a small piece goes out together with its small neighbours and the prefix, a long one in
        pieces of ``WRITE_PIECE_BYTES`` straight from its own memory). Returns once the socket took all of it
        (waiting while it is full); the buffers must not change until then."""
        views = list(map(_bytes_of, data)) if isinstance(data, (list, tuple)) else [_bytes_of(data)]
        small: list[memoryview | bytes] = [PREFIX.pack(sum(map(len, views)))]
        async with self._writing:  # one record at a time: another writer waits for this one's last piece
            for view in views:
                if len(view) <= SMALL_PIECE_BYTES:
                    small.append(view)
                    continue
                await self._send(memoryview(b"".join(small)))
                small = []
                for at in range(0, len(view), WRITE_PIECE_BYTES):
                    await self._send(view[at : at + WRITE_PIECE_BYTES])
            if small:
                await self._send(memoryview(b"".join(small)))

    async def _send(self, view: memoryview) -> None:
        while view:
            if self.closed:
                raise Closed("the connection closed")
            try:
                view = view[self.sock.send(view) :]
            except (ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
                await self._wait(writable=True)  # TLS takes the same bytes again: its record is half sent
            except ssl.SSLWantReadError:
                await self._wait(writable=False)
            except (OSError, ValueError) as exc:
                self._lost(exc)
                raise Closed(f"the connection broke ({exc})") from None

    async def _wait(self, writable: bool) -> None:
        """Until the socket can take more (or, for TLS, has something to read first)."""
        waiter = self._loop.create_future()
        self._writable = waiter
        if writable:
            self._loop.add_writer(self._fd, _set, waiter)
        else:
            self._loop.call_later(0.001, _set, waiter)
        try:
            await waiter
        finally:
            self._writable = None
            if writable and not self.closed:
                self._loop.remove_writer(self._fd)

    # -- ending ----------------------------------------------------------------------

    def close(self, reason: str | None = None) -> None:
        """Close the connection; ``reason``: send it as a farewell first (as far as the socket takes it at once)."""
        if self.closed:
            return
        if reason is not None:
            text = bytes([FAREWELL]) + reason.encode()[:MAX_FAREWELL_BYTES]
            with contextlib.suppress(OSError, ValueError):
                if not self._writing.locked():  # never into the middle of a record being written
                    self.sock.send(PREFIX.pack(len(text)) + text)
        self._lost(None)

    def _lost(self, error: BaseException | None) -> None:
        if self.closed:
            return
        self.closed = True
        self._stop_timer()
        self._body = None
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)  # the writer sees ``closed``
        with contextlib.suppress(OSError):
            self.sock.close()
        if not self._ended:
            self._ended = True
            self.owner.ended(self, error)


async def handshake(sock: ssl.SSLSocket, timeout: float) -> None:
    """Complete ``sock``'s TLS handshake on the event loop within ``timeout`` seconds (TimeoutError)."""
    loop = asyncio.get_running_loop()
    fd = sock.fileno()

    async def run() -> None:
        while True:
            try:
                sock.do_handshake()
                return
            except ssl.SSLWantReadError:
                add, remove = loop.add_reader, loop.remove_reader
            except ssl.SSLWantWriteError:
                add, remove = loop.add_writer, loop.remove_writer
            ready = loop.create_future()
            add(fd, _set, ready)
            try:
                await ready
            finally:
                remove(fd)

    await asyncio.wait_for(run(), timeout)


async def dial(host: str, port: int, context: ssl.SSLContext | None, name: str, timeout: float) -> socket.socket:
    """A connected, non-blocking socket to ``host:port`` (each of its addresses in turn), its TLS handshake done
    when ``context`` is given (``name``: the server name it asks for)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"{host} has no address")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, address), timeout)
            if context is None:
                return sock
            tls = context.wrap_socket(sock, server_hostname=name, do_handshake_on_connect=False)
            try:
                await handshake(tls, timeout)
            except BaseException:
                tls.close()
                raise
            return tls
        except (OSError, TimeoutError) as exc:
            sock.close()
            error = exc if isinstance(exc, OSError) else OSError(f"no answer within {timeout:g} s")
    raise error


def _bytes_of(data: Buffer) -> memoryview:
    return memoryview(data).cast("B")


def _set(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def farewell(record: memoryview) -> str | None:
    """The reason a farewell record gives (None: the record is a write)."""
    if len(record) and record[0] == FAREWELL:
        return bytes(record[1:]).decode(errors="replace")
    return None


def _keep_alive(sock: socket.socket, idle: float, timeout: float) -> None:
    """TCP keepalives on ``sock``: probes after ``idle`` quiet seconds, the peer dropped after about ``timeout``
    more without an answer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            probes = 2
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(int(idle), 1))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(int(timeout / probes), 1))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, probes)


def host_of(address: str) -> str:
    """The host of a ``host:port`` address (an IPv6 host without its brackets)."""
    host = address.rsplit(":", 1)[0] if ":" in address else address
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def listening_socket(host: str, port: int = 0) -> socket.socket:
    """A socket listening on ``port`` (0: a free port) of ``host`` (``""``, ``::``: every interface, IPv4 and IPv6
    on one port, as gRPC's ``[::]`` does; a name: its first address, which a dialer tries among the others)."""
    if host in ("", "::"):
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            return _listen(sock, ("::", port))
        except OSError:  # a host without IPv6
            host = "0.0.0.0"
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    return _listen(socket.socket(family, kind, proto), address)


def _listen(sock: socket.socket, address: tuple) -> socket.socket:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
