"""The carrier of the federation links: length-prefixed records on TLS connections, each read into one buffer.

A link (:mod:`services.link`) is one TCP connection, mutually authenticated by TLS 1.3 with the
federation's certificates (:meth:`services.tls.Identity.link_context`; plain TCP under ``--insecure``).
On it each side sends records: a 4-byte little-endian length, then that many bytes. A record is either
a write of :func:`services.link.encode`'s form (its first byte is its format, 1) or a farewell
(``FAREWELL``, then why the sender closes the connection, UTF-8), so a refused peer learns why.

Reading (:class:`Connection`, an asyncio ``BufferedProtocol``): TLS decrypts straight into the buffer
the protocol offers. Small records are read into a staging buffer and handed on as copies of their
bytes; a record too long for it gets one buffer of its own, sized from its prefix once the prefix is
checked against the link's limit (``max_record``: a longer prefix closes the connection before
anything is allocated), and the rest of it is decrypted into that buffer directly. Nothing is
handed on after a connection is closed. Writing: a record is given to the transport as its prefix
and then pieces of its bytes of at most ``WRITE_PIECE_BYTES`` (no copy to join them; TLS encrypts
each piece when given, and OpenSSL's output buffer grows by reallocating, which for a whole MiB at
once costs the sender about twice the CPU), and a writer waits while the transport's buffer is above
its high-water mark.

Connections are kept alive by TCP keepalives (a peer that vanished is noticed within about
``keepalive_time + keepalive_timeout`` seconds, as the gRPC servers' HTTP/2 pings did); a listener
closes a connection whose TLS handshake takes longer than its handshake timeout (asyncio's
``ssl_handshake_timeout``), and the link closes one whose first record does not follow in that time.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Protocol

import numpy as np

PREFIX = struct.Struct("<I")
FAREWELL = 0  # a record's first byte: a farewell (a write's is its format version, 1)
STAGING_BYTES = 64 << 10
WRITE_HIGH_WATER = 4 << 20  # bytes a transport may buffer before a writer waits
WRITE_PIECE_BYTES = 256 << 10  # what TLS encrypts at once: a 1 MiB piece costs the sender about twice the CPU
MAX_FAREWELL_BYTES = 1000


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


class Connection(asyncio.BufferedProtocol):
    """One link connection (module doc). ``peer`` is the name of the node at its other end once known;
    ``certified`` the name its certificate gives (empty without TLS)."""

    def __init__(self, owner: Owner, max_record: int, keepalive: tuple[float, float] | None = None):
        self.owner = owner
        self.max_record = max_record
        self.keepalive = keepalive
        self.peer: str | None = None
        self.certified = ""
        self.farewell: str | None = None  # the reason the other end gave for closing, if it did
        self.stream: object | None = None  # what the link registered for this connection
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._ended = False
        self._staging = bytearray(STAGING_BYTES)
        self._view = memoryview(self._staging)
        self._start = self._end = 0  # unread bytes of the staging buffer
        self._body: memoryview | None = None  # a long record being read into its own buffer
        self._filled = 0
        self._paused: asyncio.Future | None = None
        self._writing = asyncio.Lock()
        self._scratch = bytearray(4096)  # what a closed connection reads into (and drops)

    # -- asyncio's side ---------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        from services.tls import certificate_name

        self.certified = certificate_name(transport.get_extra_info("ssl_object"))
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None and self.keepalive is not None:
            _keep_alive(sock, *self.keepalive)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.closed:
            return memoryview(self._scratch)
        if self._body is not None:
            return self._body[self._filled :]
        if self._start:  # move the unread bytes to the front: the rest of the buffer is free
            n = self._end - self._start
            self._view[:n] = self._view[self._start : self._end]
            self._start, self._end = 0, n
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        if self.closed:
            return
        if self._body is not None:
            self._filled += nbytes
            if self._filled == len(self._body):
                body, self._body = self._body, None
                self.owner.received(self, body)
            return
        self._end += nbytes
        self._records()

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
                return
        if self._start == self._end:
            self._start = self._end = 0

    def eof_received(self) -> bool:
        return False  # the other end finished: close ours

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake(exc or Closed("the connection closed"))
        self._end_once(exc)

    def pause_writing(self) -> None:
        if self._paused is None:
            self._paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake(None)

    # -- the link's side ----------------------------------------------------------------

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send one record; returns once the transport took it (waiting while its buffer is full)."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise Closed("the connection closed")
        view = memoryview(data).cast("B")
        async with self._writing:  # one record at a time: another writer waits for this one's last piece
            transport = self.transport
            transport.write(PREFIX.pack(len(view)))
            for at in range(0, len(view), WRITE_PIECE_BYTES):  # TLS encrypts each piece as it is given
                if self._paused is not None:
                    await asyncio.shield(self._paused)
                if self.closed:
                    raise Closed("the connection closed")
                transport.write(view[at : at + WRITE_PIECE_BYTES])
            if self._paused is not None:
                await asyncio.shield(self._paused)

    def close(self, reason: str | None = None) -> None:
        """Close the connection; ``reason``: send it as a farewell first, and let TLS close cleanly (otherwise
        the connection is aborted at once, as a process exit would)."""
        if self.closed:
            return
        self.closed = True
        transport = self.transport
        if transport is not None:
            if reason is None:
                transport.abort()
            else:
                text = bytes([FAREWELL]) + reason.encode()[:MAX_FAREWELL_BYTES]
                with contextlib.suppress(Exception):
                    transport.writelines([PREFIX.pack(len(text)), text])
                transport.close()
        self._wake(Closed("the connection closed"))
        self._end_once(None)

    def _wake(self, error: BaseException | None) -> None:
        paused, self._paused = self._paused, None
        if paused is not None and not paused.done():
            if error is None:
                paused.set_result(None)
            else:
                paused.set_exception(error)
                paused.exception()  # retrieved: nobody may be waiting

    def _end_once(self, error: BaseException | None) -> None:
        if not self._ended:
            self._ended = True
            self.owner.ended(self, error)


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


def listening_socket(host: str) -> socket.socket:
    """A socket listening on a free port of ``host`` (``""``, ``::``: every interface, IPv4 and IPv6 on one
    port, as gRPC's ``[::]`` does; a name: its first address, which a dialer tries among the others)."""
    if host in ("", "::"):
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            return _listen(sock, ("::", 0))
        except OSError:  # a host without IPv6
            host = "0.0.0.0"
    family, kind, proto, _, address = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
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
